//! `ordersaga restore`: a service's store rebuilt from its events topic.
//!
//! The events topic is the store's changelog: every event the service
//! stored is published there, keyed by its aggregate, in stream order (see
//! `docs/TOPICS.md`). Restore reads every partition from its first offset
//! to its end, and writes the events into a new store with
//! [`NewStore`] (the same writer `import` uses: the same checks, the same
//! indexes, an empty outbox).
//!
//! - **The end** of a partition is where the consumer reports
//!   end-of-partition (`enable.partition.eof`), not the high watermark: on
//!   Tansu 0.6 the watermark is the base offset of the last batch + 1, below
//!   records it has already served. The service must be stopped (its store
//!   is what was lost): records produced during a restore may be missed.
//! - **Duplicates** (the same event id at the same stream and sequence: the
//!   relay publishes at least once, `republish` publishes again) are dropped.
//!   The same place with another event id is a conflict, and refused.
//! - **Gaps** mean lost records: a stream whose next sequence never comes is
//!   refused, naming the stream, what is missing and where the next one is.
//!   A partition whose first offset is not 0 lost its oldest records to
//!   retention (whole streams could be gone without a gap): refused too. The
//!   events topics must keep everything: `retention.ms=-1`,
//!   `retention.bytes=-1`, `cleanup.policy=delete` (compaction would keep
//!   only each aggregate's last event).
//! - Events of one stream that arrive ahead of an earlier one (a topic whose
//!   partition count changed puts a stream's later events elsewhere) wait
//!   for it; only those still waiting at the end are a gap.
//!
//! What the restored store lacks, and what that means when the service
//! starts on it:
//!
//! - **Only the accepted commands are remembered.** Each event names the
//!   command that caused it, and an accepted command's reply follows from
//!   its events, so the processed table is rebuilt for those: one delivered
//!   again is answered with its first reply, not applied twice. A rejected
//!   command (or one accepted with no event) left nothing on the topic and
//!   is decided again, against the restored state.
//! - **No consumer offsets.** The service resumes each command topic from
//!   its consumer group's committed offsets (committed every 5 s, so the
//!   commands of the last seconds before the loss come again), or, when the
//!   group has none, from the earliest retained command: everything again.
//! - **No password hashes**: users cannot log in until their passwords are
//!   set again.
//! - **A new store id**, so a new static member id: the lost instance's
//!   member keeps its partitions until its session times out.

use super::export::{service_of, AnyEvent, ToolError};
use super::import::{NewStore, NewStoreSummary};
use crate::kafka::KafkaConfig;
use indicatif::ProgressBar;
use ordersaga_actors::journal::{ImportError, Seen};
use ordersaga_events::topics::Service;
use ordersaga_events::StreamId;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the broker may stay silent (no record, no end of partition)
/// before the restore gives up.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);

/// What to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The cluster and namespace of the events topic.
    pub kafka: KafkaConfig,
    /// The service whose store to rebuild.
    pub service: Service,
    /// The data directory; the store is written to `DATA/SERVICE`, which
    /// must not exist or be empty.
    pub data: PathBuf,
    /// Only this partition (the streams one instance of a scaled-out
    /// service owns); every partition when `None`.
    pub partition: Option<i32>,
    /// How long the broker may stay silent before the restore gives up.
    pub idle: Duration,
}

/// What was read from one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionRead {
    /// The partition.
    pub partition: i32,
    /// Records read.
    pub records: u64,
    /// The offset after the last record read (its end).
    pub end: i64,
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    /// The service.
    pub service: String,
    /// The physical topic read.
    pub topic: String,
    /// Each partition read.
    pub partitions: Vec<PartitionRead>,
    /// Records read in all.
    pub records: u64,
    /// Duplicate records dropped.
    pub duplicates: u64,
    /// The new store.
    #[serde(flatten)]
    pub store: NewStoreSummary,
}

/// Where a record was: `topic partition P offset O`.
fn origin(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic} partition {partition} offset {offset}")
}

/// Events that came before their stream's earlier ones, by stream and
/// sequence, with where each was read.
type Parked = HashMap<StreamId, BTreeMap<u64, (String, AnyEvent)>>;

/// Rebuilds `options.service`'s store from its events topic; see the
/// module's notes. Ticks `bar` per record. On any error nothing is left in
/// the data directory.
pub fn restore(options: &RestoreOptions, bar: &ProgressBar) -> Result<RestoreSummary, ToolError> {
    let service = options.service;
    let topic = options.kafka.name(service.events_topic());
    let consumer = reader(&options.kafka)?;
    let partitions = partitions_of(&consumer, &topic, options)?;
    let mut assignment = TopicPartitionList::new();
    let mut expected_records = 0u64;
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(30))
            .map_err(|err| {
                format!("cannot read the offsets of {topic} partition {partition}: {err}")
            })?;
        if low > 0 {
            return Err(format!(
                "{topic} partition {partition} starts at offset {low}, not 0: its oldest records were \
                 deleted (retention), so whole streams may be missing; the events topics must keep \
                 everything (retention.ms=-1, cleanup.policy=delete) to restore from them"
            )
            .into());
        }
        expected_records += u64::try_from(high.max(0)).unwrap_or(0);
        assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    bar.set_length(expected_records);

    let mut store = NewStore::create(&options.data, service)?;
    let mut reads: BTreeMap<i32, PartitionRead> = partitions
        .iter()
        .map(|&p| {
            (
                p,
                PartitionRead {
                    partition: p,
                    ..PartitionRead::default()
                },
            )
        })
        .collect();
    let mut ended: BTreeSet<i32> = BTreeSet::new();
    let mut parked: Parked = HashMap::new();
    let (mut records, mut duplicates) = (0u64, 0u64);
    let mut heard = Instant::now();
    while ended.len() < partitions.len() {
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            if heard.elapsed() > options.idle {
                let waiting: Vec<i32> = partitions
                    .iter()
                    .copied()
                    .filter(|p| !ended.contains(p))
                    .collect();
                return Err(format!(
                    "no record and no end of partition from {} for {} s: partitions {waiting:?} of \
                     {topic} never reported their end (is the broker reachable?)",
                    options.kafka.brokers,
                    options.idle.as_secs()
                )
                .into());
            }
            continue;
        };
        heard = Instant::now();
        let message = match polled {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                ended.insert(partition);
                continue;
            }
            Err(err) => {
                // Transient (a broker restarting, a connection reset): the
                // consumer retries; a broker that stays away ends the wait.
                tracing::warn!(%topic, cause = %err, "consume error during restore");
                continue;
            }
        };
        let (partition, offset) = (message.partition(), message.offset());
        // A record after the end: the partition has more than it said.
        ended.remove(&partition);
        records += 1;
        bar.inc(1);
        if let Some(read) = reads.get_mut(&partition) {
            read.records += 1;
            read.end = offset + 1;
        }
        let at = origin(&topic, partition, offset);
        let Some(payload) = message.payload() else {
            return Err(format!(
                "{at}: a record without a value (a tombstone): an events topic holds none \
                 (was it compacted? its cleanup.policy must be delete)"
            )
            .into());
        };
        let event = AnyEvent::decode(payload)
            .map_err(|err| format!("{at}: not an event envelope: {err}"))?;
        if service_of(event.stream().kind) != service {
            return Err(format!(
                "{at}: {} is a stream of the {} store, not of {}",
                event.stream(),
                service_of(event.stream().kind).name(),
                service.name()
            )
            .into());
        }
        duplicates += take(&mut store, &mut parked, at, event)?;
    }
    if let Some((stream, waiting)) = parked.iter().find(|(_, w)| !w.is_empty()) {
        let (sequence, (at, _)) = waiting
            .iter()
            .next()
            .ok_or("a parked stream with no event")?;
        return Err(format!(
            "gap in {stream}: the topic has no event #{} (the next one found is #{sequence}, at {at}): \
             records were lost; refusing to restore",
            store.version(stream) + 1
        )
        .into());
    }
    let store = store.finish()?;
    Ok(RestoreSummary {
        service: service.name().to_string(),
        topic,
        partitions: reads.into_values().collect(),
        records,
        duplicates,
        store,
    })
}

/// Writes `event` (read at `at`) if it is its stream's next, then any
/// parked events it lets through; parks it if it came early. Returns the
/// duplicates dropped.
fn take(
    store: &mut NewStore,
    parked: &mut Parked,
    at: String,
    event: AnyEvent,
) -> Result<u64, ToolError> {
    let stream = event.stream();
    match store.check(&event) {
        Ok(Seen::Duplicate) => return Ok(1),
        Ok(Seen::New) => {}
        Err(ImportError::Gap { .. }) => {
            let waiting = parked.entry(stream).or_default();
            if let Some((first_at, first)) = waiting.get(&event.sequence()) {
                if first.event_id() == event.event_id() {
                    return Ok(1);
                }
                return Err(format!(
                    "{at}: conflict: {stream}#{} is event {} here and event {} at {first_at}",
                    event.sequence(),
                    event.event_id(),
                    first.event_id()
                )
                .into());
            }
            waiting.insert(event.sequence(), (at, event));
            return Ok(0);
        }
        Err(err) => return Err(format!("{at}: {err}").into()),
    }
    store.push(&event).map_err(|err| format!("{at}: {err}"))?;
    let mut duplicates = 0;
    // Events that waited for this one.
    while let Some(waiting) = parked.get_mut(&stream) {
        let next = store.version(&stream) + 1;
        let Some((at, event)) = waiting.remove(&next) else {
            break;
        };
        match store.check(&event) {
            Ok(Seen::Duplicate) => duplicates += 1,
            Ok(Seen::New) => store.push(&event).map_err(|err| format!("{at}: {err}"))?,
            Err(err) => return Err(format!("{at}: {err}").into()),
        }
    }
    if parked.get(&stream).is_some_and(BTreeMap::is_empty) {
        parked.remove(&stream);
    }
    Ok(duplicates)
}

/// A consumer that reads by explicit assignment, commits nothing, and
/// reports the end of each partition.
fn reader(kafka: &KafkaConfig) -> Result<BaseConsumer, ToolError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "ordersaga-restore")
        // Offsets are never committed; a group id is still required.
        .set(
            "group.id",
            format!("ordersaga-restore-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("socket.connection.setup.timeout.ms", "10000")
        .set("socket.timeout.ms", "30000")
        // Larger fetches: a restore reads whole partitions.
        .set("max.partition.fetch.bytes", "8388608")
        .set("fetch.wait.max.ms", "100")
        .create()?)
}

/// The partitions to read: every partition of `topic`, or the one asked for.
fn partitions_of(
    consumer: &BaseConsumer,
    topic: &str,
    options: &RestoreOptions,
) -> Result<Vec<i32>, ToolError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|err| {
            format!(
                "cannot read the metadata of {topic} from {}: {err}",
                options.kafka.brokers
            )
        })?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(format!("no topic {topic} on {}", options.kafka.brokers).into());
    };
    if let Some(err) = found.error() {
        return Err(format!(
            "no topic {topic} on {} ({:?}): is --namespace right?",
            options.kafka.brokers, err
        )
        .into());
    }
    let all: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if all.is_empty() {
        return Err(format!("{topic} has no partitions").into());
    }
    match options.partition {
        None => Ok(all),
        Some(partition) if all.contains(&partition) => Ok(vec![partition]),
        Some(partition) => {
            Err(format!("{topic} has no partition {partition} (it has {all:?})").into())
        }
    }
}
