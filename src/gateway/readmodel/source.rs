//! The event topics as the read model reads them: one consumer assigned
//! every partition of `users.events`, `orders.events` and
//! `inventory.events` (by explicit assignment, outside any consumer group:
//! each gateway reads everything into its own store), and what the cluster
//! says about them (its id, the partitions, their watermarks).
//!
//! librdkafka's calls that ask the cluster block, so they run on blocking
//! threads, each bounded by [`ASK_TIMEOUT`].

use super::error::ReadModelError;
use super::record::ProjectedRecord;
use crate::kafka::clients::{self, Membership};
use crate::kafka::resume::ResumePoints;
use crate::kafka::KafkaConfig;
use ordersaga_events::topics::Service;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one question to the cluster may take. Short, since a failed
/// question is asked again, and a process that stops waits for the
/// question in flight.
pub(crate) const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A (physical topic, partition).
pub(crate) type Partition = (String, i32);

/// The high watermarks the consumer's statistics last reported, per
/// partition: the live half of the projection's lag, gathered by librdkafka
/// from its fetches at no extra request.
#[derive(Clone, Default)]
pub(crate) struct HighWatermarks(Arc<Mutex<HashMap<Partition, i64>>>);

impl HighWatermarks {
    /// The last high watermark seen of each partition.
    pub(crate) fn snapshot(&self) -> HashMap<Partition, i64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn raise(&self, partition: Partition, high: i64) {
        if let Ok(mut map) = self.0.lock() {
            let entry = map.entry(partition).or_insert(high);
            *entry = (*entry).max(high);
        }
    }
}

/// The consumer's context: records each fetched partition's high watermark
/// from librdkafka's periodic statistics.
pub(crate) struct SourceContext {
    highs: HighWatermarks,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                // The internal partition (-1) and partitions not fetched
                // report no watermark.
                if partition.partition >= 0 && partition.hi_offset >= 0 {
                    self.highs
                        .raise((topic.clone(), partition.partition), partition.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

/// The consumer of the three event topics.
pub(crate) struct EventSource {
    pub(crate) consumer: Arc<StreamConsumer<SourceContext>>,
    /// The physical event topics, sorted.
    pub(crate) topics: Vec<String>,
    pub(crate) highs: HighWatermarks,
    /// The partitions resumed at a stored offset, checked on their first
    /// records (see `kafka/resume.rs`).
    resume: ResumePoints,
    /// The bootstrap servers (part of a mock cluster's identity).
    brokers: String,
}

/// The physical names of the three event topics, sorted.
pub(crate) fn event_topics(kafka: &KafkaConfig) -> Vec<String> {
    let mut topics: Vec<String> = Service::ALL
        .into_iter()
        .map(|s| kafka.name(s.events_topic()))
        .collect();
    topics.sort();
    topics
}

impl EventSource {
    /// A consumer for `client_id`. Nothing is asked of the cluster yet.
    ///
    /// It is made by [`clients::consumer`] for its settings (no auto-commit,
    /// `auto.offset.reset=earliest` so that an offset the topic no longer
    /// holds resumes at its start, statistics every 5 s), in a group of its
    /// own that it never joins: partitions are assigned, not subscribed.
    pub(crate) fn new(
        kafka: &KafkaConfig,
        client_id: &str,
    ) -> Result<EventSource, rdkafka::error::KafkaError> {
        let highs = HighWatermarks::default();
        let membership = Membership {
            group: kafka.name(&format!("{client_id}-{}", uuid::Uuid::new_v4().simple())),
            instance_id: None,
            session_timeout: Duration::from_secs(30),
        };
        let consumer = clients::consumer(
            kafka,
            client_id,
            &membership,
            SourceContext {
                highs: highs.clone(),
            },
        )?;
        Ok(EventSource {
            consumer: Arc::new(consumer),
            topics: event_topics(kafka),
            highs,
            resume: ResumePoints::default(),
            brokers: kafka.brokers.clone(),
        })
    }

    /// Runs a blocking librdkafka call on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        what: String,
        call: impl FnOnce(&StreamConsumer<SourceContext>) -> Result<T, rdkafka::error::KafkaError>
            + Send
            + 'static,
    ) -> Result<T, ReadModelError> {
        let consumer = Arc::clone(&self.consumer);
        match tokio::task::spawn_blocking(move || call(&consumer)).await {
            Ok(result) => result.map_err(|e| ReadModelError::kafka(what, e)),
            Err(err) => Err(ReadModelError::Source(format!("{what}: {err}"))),
        }
    }

    /// What identifies the cluster: its id, and for librdkafka's mock
    /// cluster (the embedded broker) its address too. The mock cluster's id
    /// is made from a heap address, so two runs may share one; its port is
    /// new on every run. (A stored offset cannot be checked against the
    /// partition's end instead: Tansu 0.6 reports the end as the last
    /// batch's base offset + 1, below offsets it has already served.)
    pub(crate) async fn cluster_id(&self) -> Result<String, ReadModelError> {
        let id = self
            .blocking("the cluster id".into(), |c| {
                Ok(c.client().fetch_cluster_id(ASK_TIMEOUT))
            })
            .await?;
        let id = id.ok_or_else(|| {
            ReadModelError::Source("the cluster did not say its id (is it reachable?)".into())
        })?;
        Ok(identity(id, &self.brokers))
    }

    /// Every partition of the three topics. A topic without partitions (not
    /// created yet) is an error: the caller asks again later.
    pub(crate) async fn partitions(&self) -> Result<Vec<Partition>, ReadModelError> {
        let mut all = Vec::new();
        for topic in &self.topics {
            let name = topic.clone();
            let metadata = self
                .blocking(format!("the metadata of {topic}"), move |c| {
                    c.fetch_metadata(Some(&name), ASK_TIMEOUT)
                })
                .await?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none())
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            if count == 0 {
                return Err(ReadModelError::Source(format!(
                    "topic {topic} has no partitions (does it exist yet?)"
                )));
            }
            all.extend((0..count as i32).map(|p| (topic.clone(), p)));
        }
        Ok(all)
    }

    /// The (low, high) watermarks of each partition, as the cluster says now.
    pub(crate) async fn watermarks(
        &self,
        partitions: &[Partition],
    ) -> Result<BTreeMap<Partition, (i64, i64)>, ReadModelError> {
        let mut marks = BTreeMap::new();
        for (topic, partition) in partitions {
            let (name, p) = (topic.clone(), *partition);
            let mark = self
                .blocking(
                    format!("the watermarks of {topic}[{partition}]"),
                    move |c| c.fetch_watermarks(&name, p, ASK_TIMEOUT),
                )
                .await?;
            self.highs.raise((topic.clone(), *partition), mark.1);
            marks.insert((topic.clone(), *partition), mark);
        }
        Ok(marks)
    }

    /// Assigns every partition in `from`, each at its offset (`None`: the
    /// beginning).
    pub(crate) fn assign(
        &self,
        from: &BTreeMap<Partition, Option<i64>>,
    ) -> Result<(), ReadModelError> {
        let mut list = TopicPartitionList::new();
        self.resume.clear();
        for ((topic, partition), offset) in from {
            // A stored offset is resumed a little early, in case it is
            // inside a batch.
            let offset = match offset {
                Some(offset) => Offset::Offset(self.resume.start_at(topic, *partition, *offset)),
                None => Offset::Beginning,
            };
            list.add_partition_offset(topic, *partition, offset)
                .map_err(|e| ReadModelError::kafka(format!("seek {topic}[{partition}]"), e))?;
        }
        self.consumer
            .assign(&list)
            .map_err(|e| ReadModelError::kafka("assign the event topics' partitions", e))
    }

    /// Whether to apply `record`, skip it (before its partition's resume
    /// point) or seek its partition back (the broker left records out after
    /// the resume point); the seek is made here.
    pub(crate) fn check(&self, record: &ProjectedRecord) -> bool {
        let at = (record.topic.as_str(), record.partition, record.offset);
        let rewound = || {
            crate::gateway::metrics::gateway_metrics()
                .projection_rewinds
                .with_label_values(&[&record.topic])
                .inc()
        };
        self.resume
            .admit(self.consumer.as_ref(), "gateway", at, rewound)
    }

    /// Lets go of the consumer off the async threads: closing a librdkafka
    /// client can wait for its broker threads.
    pub(crate) fn close(self) {
        let consumer = self.consumer;
        drop(tokio::task::spawn_blocking(move || drop(consumer)));
    }
}

/// The identity of the cluster `id` reached at `brokers` (see
/// [`EventSource::cluster_id`]).
fn identity(id: String, brokers: &str) -> String {
    if id.starts_with(MOCK_CLUSTER) {
        format!("{id}@{brokers}")
    } else {
        id
    }
}

/// How librdkafka's mock cluster names itself.
const MOCK_CLUSTER: &str = "mockCluster";

#[cfg(test)]
mod identity_tests {
    use super::identity;

    #[test]
    fn a_mock_cluster_is_known_by_its_address_too() {
        assert_eq!(identity("tansu_cluster".into(), "h:1"), "tansu_cluster");
        assert_ne!(
            identity("mockCluster7f00".into(), "127.0.0.1:1"),
            identity("mockCluster7f00".into(), "127.0.0.1:2"),
            "two embedded brokers that share an id are two clusters"
        );
    }
}
