//! Durable appends per second: raw sled with one flush per append (the
//! baseline a naive store pays) against the journal, which commits every
//! append queued while the previous group was written in one sled
//! transaction and makes them durable with one shared flush. A lone
//! appender that finds the journal idle commits its own group on its own
//! thread; under load the journal's writer thread commits the groups.
//!
//! Both write real files in temp dirs. Run with `cargo bench --bench journal`
//! (`-- --warm-up-time 1 --measurement-time 5` for a quicker look).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ordersaga_actors::journal::{AppendBatch, OutboxRecord, StreamAppend};
use ordersaga_actors::{Journal, JournalConfig};
use ordersaga_events::codec::{encode, encode_event, Format};
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, Outcome, Reply, StreamId, StreamKind,
    Versioned,
};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Appends each appender makes per measured iteration.
const APPENDS_PER_APPENDER: u64 = 8;

/// The encoded envelope a deposit command stores: the bytes both sides write.
fn envelope(stream: StreamId, sequence: u64, cause: CommandId) -> Vec<u8> {
    let envelope = Envelope {
        event_id: EventId::new(),
        stream,
        sequence,
        recorded_at: chrono::Utc::now(),
        correlation_id: CorrelationId::new(),
        causation_id: cause,
        schema_version: UserEvent::SCHEMA_VERSION,
        payload: UserEvent::Deposited { amount: Cents(100) },
    };
    encode_event(Format::Bincode, &envelope).expect("encode envelope")
}

/// A full one-event command batch: event, outbox record, reply.
fn batch(stream: StreamId, version: u64) -> AppendBatch {
    let command_id = CommandId::new();
    let bytes = envelope(stream, version + 1, command_id);
    let reply = Reply {
        command_id,
        correlation_id: CorrelationId::new(),
        stream,
        outcome: Outcome::Accepted {
            sequences: vec![version + 1],
        },
        result: None,
    };
    AppendBatch {
        events: Some(StreamAppend {
            stream,
            expected_version: version,
            events: vec![bytes.clone()],
            unique: Vec::new(),
        }),
        outbox: vec![OutboxRecord {
            topic: Service::Users.events_topic().to_owned(),
            key: Some(stream.id.to_string().into_bytes()),
            payload: Some(bytes),
            headers: Vec::new(),
        }],
        processed: Some((command_id, encode(Format::Bincode, &reply).expect("reply"))),
        offset: None,
        schedule: None,
        archive: Vec::new(),
        secrets: Vec::new(),
        lists: Vec::new(),
    }
}

fn durable_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_appends");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    // (a) Baseline: one insert and one flush per append, sequentially.
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path().join("raw"))
        .open()
        .expect("open sled");
    let tree = db.open_tree("events").expect("tree");
    let stream = StreamId::new(StreamKind::User, Uuid::new_v4());
    let mut sequence = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("sled_insert_flush", |b| {
        b.iter(|| {
            sequence += 1;
            let bytes = envelope(stream, sequence, CommandId::new());
            let mut key = stream.to_key().to_vec();
            key.extend_from_slice(&sequence.to_be_bytes());
            tree.insert(key, bytes).expect("insert");
            db.flush().expect("flush");
        })
    });
    drop((tree, db));

    // (b) The journal: C appenders (tokio tasks on a two-worker runtime),
    // each on its own stream, one-event batches.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for appenders in [1u64, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal =
            Journal::open(JournalConfig::new(dir.path().join("journal"))).expect("open journal");
        group.throughput(Throughput::Elements(appenders * APPENDS_PER_APPENDER));
        group.bench_with_input(
            BenchmarkId::new("journal_group_commit", appenders),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let mut tasks = Vec::new();
                            for _ in 0..appenders {
                                let journal = journal.clone();
                                tasks.push(tokio::spawn(async move {
                                    // A fresh stream per iteration: no version
                                    // bookkeeping across iterations.
                                    let stream = StreamId::new(StreamKind::User, Uuid::new_v4());
                                    for version in 0..APPENDS_PER_APPENDER {
                                        journal
                                            .append(batch(stream, version))
                                            .await
                                            .expect("append");
                                    }
                                }));
                            }
                            for task in tasks {
                                task.await.expect("appender");
                            }
                        }
                        start.elapsed()
                    })
                })
            },
        );
        let stats = journal.stats();
        eprintln!(
            "journal, {appenders} appender(s): {} commits in {} flushes, {:.1} events per flush",
            stats.commits,
            stats.flushes,
            stats.events_per_flush()
        );
    }
    group.finish();
}

criterion_group!(benches, durable_appends);
criterion_main!(benches);
