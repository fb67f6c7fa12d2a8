//! Positions inside a record batch.
//!
//! A producer sends records in batches, and a consumer may stop, or be told
//! to resume, at an offset inside one. Kafka answers a fetch from such an
//! offset with the whole batch, and the client drops the records before
//! the offset. Tansu 0.6's memory storage answers it with the next batch
//! instead, so the rest of the batch is never delivered (fixed upstream
//! after 0.6, in "storage: return the batch containing a mid-batch fetch
//! offset"). These tests put positions inside a batch on purpose, on the
//! embedded broker and on a real one alike.

mod support;

use ordersaga::gateway::readmodel::{
    rebuild_into, ProjectedEvent, ProjectedRecord, Projector, ReadModel,
};
use ordersaga::kafka::KafkaConfig;
use ordersaga::node::{self, NodeOptions, RunningService};
use ordersaga::ops::tail::TopicReader;
use ordersaga::ops::tail_start::Start;
use ordersaga_actors::journal::{AppendBatch, ConsumedOffset, JournalConfig};
use ordersaga_actors::Journal;
use ordersaga_events::codec::{encode, Format};

use ordersaga_events::topics::{
    header, Service, INVENTORY_EVENTS, ORDERS_EVENTS, USERS_COMMANDS, USERS_EVENTS,
};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{CommandEnvelope, UserId};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::HashSet;
use std::time::Duration;
use support::{answered, Probe, TestBroker};

/// Records of one batch.
const IN_ONE_BATCH: i64 = 3;
const REPLIES: &str = "batches.replies";

/// A producer that lingers long enough to gather what is sent at once into
/// one batch per partition.
fn batching_producer(kafka: &KafkaConfig) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("linger.ms", "500")
        .set("enable.idempotence", "true")
        .create()
        .expect("a batching producer")
}

/// Produces `payloads` (with a content type, if any) to `partition` of the
/// logical `topic` at once; returns their offsets.
async fn produce(
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    payloads: &[(Vec<u8>, Option<Format>)],
) -> Vec<i64> {
    let physical = kafka.name(topic);
    let sends = payloads.iter().map(|(payload, format)| {
        let mut headers = OwnedHeaders::new();
        if let Some(format) = format {
            headers = headers.insert(Header {
                key: header::CONTENT_TYPE,
                value: Some(format.content_type()),
            });
        }
        producer.send(
            FutureRecord::<(), _>::to(&physical)
                .partition(partition)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(30),
        )
    });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|sent| sent.map_err(|(e, _)| e).expect("produced").offset)
        .collect()
}

/// Produces `n` records that are not events to `partition` of the logical
/// `topic`, as one batch from offset 0.
async fn one_batch(kafka: &KafkaConfig, topic: &str, partition: i32, n: i64) {
    let payloads: Vec<(Vec<u8>, Option<Format>)> = (0..n)
        .map(|i| (format!("not an event {i}").into_bytes(), None))
        .collect();
    let offsets = produce(
        &batching_producer(kafka),
        kafka,
        topic,
        partition,
        &payloads,
    )
    .await;
    assert_eq!(
        offsets,
        (0..n).collect::<Vec<_>>(),
        "one batch from offset 0"
    );
}

#[actix_rt::test]
async fn a_rebuild_reads_a_partitions_last_batch_whole() {
    // Given a partition whose only batch holds three records,
    let broker = TestBroker::from_env();
    let kafka = broker.kafka();
    broker
        .create_topics(&kafka, &[USERS_EVENTS, ORDERS_EVENTS, INVENTORY_EVENTS])
        .await;
    one_batch(&kafka, USERS_EVENTS, 0, IN_ONE_BATCH).await;

    // when the read model is rebuilt,
    let dir = tempfile::tempdir().unwrap();
    let model = ReadModel::open(dir.path().join("readmodel")).unwrap();
    let report = rebuild_into(&kafka, &model, false).await.expect("rebuild");

    // then it stopped after the batch, not inside it (where a projector
    // that follows would resume),
    let reached = model.offsets().unwrap();
    assert_eq!(
        reached.get(&(kafka.name(USERS_EVENTS), 0)),
        Some(&IN_ONE_BATCH),
        "{report}; reached {reached:?}"
    );
    // and each record was read once (none is an event).
    assert_eq!(report.counters.skipped, IN_ONE_BATCH as u64, "{report}");
}

#[actix_rt::test]
async fn a_projector_resuming_inside_a_batch_reads_the_rest_of_it() {
    // Given a read model bound to the cluster (rebuilt from empty topics),
    let broker = TestBroker::from_env();
    let kafka = broker.kafka();
    broker
        .create_topics(&kafka, &[USERS_EVENTS, ORDERS_EVENTS, INVENTORY_EVENTS])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let model = ReadModel::open(dir.path().join("readmodel")).unwrap();
    rebuild_into(&kafka, &model, false).await.expect("rebuild");
    // a partition whose only batch holds three records, and a stored
    // position after the first (inside the batch),
    one_batch(&kafka, USERS_EVENTS, 0, IN_ONE_BATCH).await;
    let partition = (kafka.name(USERS_EVENTS), 0);
    model
        .apply(&ProjectedRecord {
            topic: partition.0.clone(),
            partition: 0,
            offset: 0,
            event: ProjectedEvent::Undecodable("not an event 0".into()),
        })
        .unwrap();
    assert_eq!(model.offsets().unwrap().get(&partition), Some(&1));

    // when a projector starts on it,
    let projector = Projector::start(&kafka, model.clone()).await.unwrap();

    // then it reads the rest of the batch (nothing comes after it to show
    // a broker that left them out).
    let targets = [(partition, IN_ONE_BATCH)].into_iter().collect();
    assert!(
        model.wait_for_offsets(&targets, support::PATIENCE).await,
        "the projector stays at {:?}",
        model.offsets().unwrap()
    );
    assert_eq!(projector.counters().skipped, (IN_ONE_BATCH - 1) as u64);
    projector.stop().await;
}

#[actix_rt::test]
async fn tail_from_an_offset_inside_a_batch_shows_the_rest_of_it() {
    // Given a partition whose only batch holds three records,
    let broker = TestBroker::from_env();
    let kafka = broker.kafka();
    broker.create_topics(&kafka, &[USERS_EVENTS]).await;
    one_batch(&kafka, USERS_EVENTS, 0, IN_ONE_BATCH).await;

    // when it is tailed from offset 1,
    let mut reader = TopicReader::open(&kafka, USERS_EVENTS, Start::Offset(1), None).unwrap();

    // then the records at 1 and 2 are shown, and not the one before.
    let mut shown = Vec::new();
    while shown.len() < 2 {
        let message = tokio::time::timeout(support::PATIENCE, reader.next(false))
            .await
            .expect("the rest of the batch in time")
            .unwrap()
            .expect("a record");
        shown.push((message.partition(), message.offset()));
    }
    assert_eq!(shown, vec![(0, 1), (0, 2)]);
    reader.close().unwrap();
}

/// A registration of a fresh user, answered on [`REPLIES`], as record bytes.
fn registration() -> (uuid::Uuid, (Vec<u8>, Option<Format>)) {
    let user_id = UserId::new();
    let envelope = CommandEnvelope::new(UserCommand::Register {
        user_id,
        email: format!("{user_id}@example.com"),
        username: "batched".into(),
        password: Password::new("a long password"),
    })
    .reply_to(REPLIES);
    let bytes = encode(Format::Bincode, &envelope).unwrap();
    (
        envelope.command_id.as_uuid(),
        (bytes, Some(Format::Bincode)),
    )
}

/// Starts the users service on `options`, waiting (bounded) for the store
/// the test closed a moment ago to be let go of.
async fn start_users(options: &NodeOptions) -> RunningService {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match node::start(Service::Users, options).await {
            Ok(running) => return running,
            Err(err)
                if err.to_string().contains("acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(err) => panic!("start users: {err}"),
        }
    }
}

#[actix_rt::test]
async fn a_service_resuming_inside_a_batch_runs_the_rest_of_it() {
    // Given three registrations sent as one batch (offsets 0 to 2),
    let broker = TestBroker::from_env();
    let kafka = broker.users_topics(&[REPLIES]).await;
    let producer = batching_producer(&kafka);
    let commands: Vec<_> = (0..IN_ONE_BATCH).map(|_| registration()).collect();
    let records: Vec<_> = commands.iter().map(|(_, record)| record.clone()).collect();
    let offsets = produce(&producer, &kafka, USERS_COMMANDS, 0, &records).await;
    assert_eq!(offsets, vec![0, 1, 2]);
    // and a service whose store says the first one was done (its stored
    // position is 1, inside the batch),
    let dir = tempfile::tempdir().unwrap();
    let cluster_id = {
        let client = producer.clone();
        tokio::task::spawn_blocking(move || {
            client.client().fetch_cluster_id(Duration::from_secs(10))
        })
        .await
        .unwrap()
        .expect("the cluster id")
    };
    {
        let journal = Journal::open(JournalConfig::new(dir.path().join("users"))).unwrap();
        let batch = AppendBatch {
            offset: Some(ConsumedOffset {
                topic: kafka.name(USERS_COMMANDS),
                partition: 0,
                cluster_id,
                next_offset: 1,
            }),
            ..AppendBatch::default()
        };
        journal.append(batch).await.unwrap();
    }

    // when the service starts, and one more registration arrives later
    // (a broker that left records out shows it only by what comes next),
    let running = start_users(&NodeOptions::new(kafka.clone(), dir.path())).await;
    let (last, record) = registration();
    produce(&producer, &kafka, USERS_COMMANDS, 0, &[record]).await;

    // then the two after the stored position and the later one are
    // answered,
    let expected: HashSet<uuid::Uuid> = commands[1..]
        .iter()
        .map(|(id, _)| *id)
        .chain([last])
        .collect();
    let mut replies = Probe::new(&kafka, REPLIES);
    replies
        .until(
            "a reply to each command after the stored position",
            |seen| expected.is_subset(&answered(seen)),
        )
        .await;
    // and the one before it, done already, is not run again.
    assert!(
        !answered(&replies.seen).contains(&commands[0].0),
        "the command before the stored position ran again"
    );
    running.stop().await;
}
