//! How many records every topic of the run received: each partition's end,
//! read before and after a phase.
//!
//! **The end is read, not asked for.** Tansu 0.6 answers a watermark query
//! (ListOffsets "latest") with the base offset of the partition's last batch
//! plus one, below records it has already served, so watermark deltas would
//! miss up to a batch per partition. Its fetch answers carry the true end,
//! and librdkafka reports end-of-partition when a fetch reaches it; so each
//! count reads every partition from the previous count's end to its
//! end-of-partition and takes the highest offset read, plus one. Only the
//! records since the previous count are read, so a count costs what the
//! phase produced.

use super::BenchError;
use crate::kafka::{clients, KafkaConfig};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The end offset of every partition of the run's topics at one moment.
#[derive(Clone, Debug, Default)]
pub struct Ends {
    /// Physical topic and partition → the offset after the last record.
    ends: BTreeMap<(String, i32), i64>,
}

impl Ends {
    /// Records received since `before`, by logical topic (every topic of
    /// `self`, zero or not).
    pub fn since(&self, before: &Ends, kafka: &KafkaConfig) -> BTreeMap<String, u64> {
        let mut by_topic = BTreeMap::new();
        for ((topic, partition), &end) in &self.ends {
            let start = before
                .ends
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0);
            let received = u64::try_from(end - start).unwrap_or(0);
            *by_topic
                .entry(kafka.logical(topic).to_string())
                .or_insert(0) += received;
        }
        by_topic
    }
}

/// The physical topics of the run: every topic in its namespace, or, without
/// a namespace, the logical topics `known`.
fn run_topics(
    consumer: &Counter,
    kafka: &KafkaConfig,
    known: &[String],
) -> Result<Vec<(String, i32)>, BenchError> {
    let metadata = consumer
        .fetch_metadata(None, clients::CONNECT_TIMEOUT)
        .map_err(|err| format!("cannot list the topics of {}: {err}", kafka.brokers))?;
    let wanted: BTreeSet<String> = known.iter().map(|t| kafka.name(t)).collect();
    let prefix = kafka.namespace.as_ref().map(|ns| format!("{ns}."));
    let mut partitions = Vec::new();
    for topic in metadata.topics() {
        let ours = match &prefix {
            Some(prefix) => topic.name().starts_with(prefix.as_str()),
            None => wanted.contains(topic.name()),
        };
        if ours {
            for partition in topic.partitions() {
                partitions.push((topic.name().to_string(), partition.id()));
            }
        }
    }
    Ok(partitions)
}

/// The counter's client context: an end of partition is what the count
/// waits for, not an error to log (librdkafka also reports it as a global
/// error); every other error is logged as a warning.
struct Counting;

impl ClientContext for Counting {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::warn!(cause = %error, reason, "Kafka client error while counting records");
        }
    }
}

impl ConsumerContext for Counting {}

type Counter = BaseConsumer<Counting>;

fn counter(kafka: &KafkaConfig) -> Result<Counter, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "ordersaga-bench-count")
        // Nothing is committed; a group id is still required.
        .set(
            "group.id",
            format!("ordersaga-bench-count-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("socket.connection.setup.timeout.ms", "10000")
        .set("socket.timeout.ms", "30000")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(Counting)
}

/// Reads every partition of the run's topics (see [`run_topics`]) from its
/// end in `previous` (the beginning for a partition it lacks) to its
/// end-of-partition. Fails when some partition reports neither a record nor
/// its end for `idle`.
pub async fn read_ends(
    kafka: &KafkaConfig,
    known: &[String],
    previous: &Ends,
    idle: Duration,
) -> Result<Ends, BenchError> {
    let kafka = kafka.clone();
    let known = known.to_vec();
    let previous = previous.clone();
    tokio::task::spawn_blocking(move || read_ends_blocking(&kafka, &known, &previous, idle))
        .await
        .map_err(|err| format!("the record count stopped: {err}"))?
}

fn read_ends_blocking(
    kafka: &KafkaConfig,
    known: &[String],
    previous: &Ends,
    idle: Duration,
) -> Result<Ends, BenchError> {
    let lister = counter(kafka)?;
    let partitions = run_topics(&lister, kafka, known)?;
    drop(lister);
    let mut ends = Ends::default();
    // One consumer per topic: librdkafka's end-of-partition names only the
    // partition, so a consumer of one topic is what makes it unambiguous.
    // They all fetch at once, in librdkafka's threads.
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(partition);
    }
    let mut readers = Vec::with_capacity(by_topic.len());
    for (topic, partitions) in by_topic {
        let consumer = counter(kafka)?;
        let mut assignment = TopicPartitionList::new();
        for &partition in &partitions {
            let start = previous.ends.get(&(topic.clone(), partition)).copied();
            ends.ends
                .insert((topic.clone(), partition), start.unwrap_or(0));
            let offset = start.map_or(Offset::Beginning, Offset::Offset);
            assignment.add_partition_offset(&topic, partition, offset)?;
        }
        consumer.assign(&assignment)?;
        let waiting: BTreeSet<i32> = partitions.into_iter().collect();
        readers.push((topic, consumer, waiting));
    }
    let mut heard = Instant::now();
    while readers.iter().any(|(_, _, waiting)| !waiting.is_empty()) {
        let mut any = false;
        for (topic, consumer, waiting) in readers.iter_mut().filter(|r| !r.2.is_empty()) {
            while let Some(polled) = consumer.poll(Duration::from_millis(5)) {
                any = true;
                match polled {
                    Ok(message) => {
                        let key = (topic.clone(), message.partition());
                        let end = ends.ends.entry(key).or_insert(0);
                        *end = (*end).max(message.offset() + 1);
                    }
                    Err(KafkaError::PartitionEOF(partition)) => {
                        waiting.remove(&partition);
                    }
                    Err(err) => {
                        // Transient (a connection reset): the consumer
                        // retries; a broker that stays away ends the wait
                        // through `idle`.
                        tracing::warn!(%topic, cause = %err, "consume error while counting records");
                    }
                }
                if waiting.is_empty() {
                    break;
                }
            }
        }
        if any {
            heard = Instant::now();
        } else if heard.elapsed() > idle {
            let stuck: Vec<String> = readers
                .iter()
                .filter(|r| !r.2.is_empty())
                .map(|(topic, _, waiting)| format!("{topic} {waiting:?}"))
                .collect();
            return Err(format!(
                "counting records on {}: no record and no end of partition within {idle:?} from {}",
                kafka.brokers,
                stuck.join(", ")
            )
            .into());
        }
    }
    Ok(ends)
}
