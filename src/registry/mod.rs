//! Which service instances are alive, and which of them handles an aggregate:
//! a reader of the heartbeats ([`crate::kafka::heartbeat`]).
//!
//! A [`Registry`] reads `services.heartbeats` outside any consumer group, so
//! every registry sees every record, from the beginning or from a window
//! before now ([`Since`]). An instance is live while its last heartbeat is at
//! most [`EXPIRY_PERIODS`] of its own periods old; a `leaving` record takes
//! it out at once. The bookkeeping is a plain [`Directory`] that is told the
//! time, so expiry is tested without waiting.
//!
//! [`Registry::owner`] finds the instance that consumes an aggregate's
//! commands: the partition Kafka's default partitioner gives the aggregate's
//! key ([`partition_for`]), matched against the partitions each instance says
//! it owns. That holds because ordersaga's producers use librdkafka's
//! `murmur2_random` partitioner, which is the Java client's; a client that
//! sends commands with another partitioner (librdkafka's default is
//! `consistent_random`, a CRC32) puts keys elsewhere.

mod directory;
mod partitioner;

pub use directory::{Directory, Instance, EXPIRY_PERIODS};
pub use partitioner::{murmur2, partition_for, partition_of, to_positive};

use crate::kafka::clients::{self, CONNECT_TIMEOUT};
use crate::kafka::heartbeat::Heartbeat;
use crate::kafka::topics::ensure_topics;
use crate::kafka::{KafkaConfig, TransportError};
use crate::saga::clock::Clock;
use chrono::{DateTime, TimeDelta, Utc};
use ordersaga_events::topics::{Service as ServiceName, HEARTBEATS};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Where a registry starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// Every heartbeat still on the topic.
    Beginning,
    /// Heartbeats of this window before now (by record timestamp); enough
    /// to see every live instance if it spans [`EXPIRY_PERIODS`] periods.
    Window(Duration),
}

/// A live view of the heartbeats topic, kept up to date by a background
/// task that ends when the registry is dropped. Must be made inside a tokio
/// runtime.
pub struct Registry {
    directory: Arc<Mutex<Directory>>,
    clock: Clock,
    observed: watch::Receiver<u64>,
    caught_up: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Registry {
    /// Starts reading the heartbeats of `kafka`'s namespace from `since`,
    /// on the system clock.
    pub async fn start(kafka: &KafkaConfig, since: Since) -> Result<Self, TransportError> {
        Self::start_with_clock(kafka, since, Clock::System).await
    }

    /// Like [`Registry::start`], with time from `clock` (tests move it by
    /// hand).
    pub async fn start_with_clock(
        kafka: &KafkaConfig,
        since: Since,
        clock: Clock,
    ) -> Result<Self, TransportError> {
        // A registry may start before any service has made the topic.
        ensure_topics(kafka, &[HEARTBEATS.to_string()]).await?;
        let consumer = clients::reader(kafka, "ordersaga-registry")?;
        let topic = kafka.name(HEARTBEATS);
        let start_ms = match since {
            Since::Beginning => 0,
            // A window longer than the calendar reads everything.
            Since::Window(window) => TimeDelta::from_std(window)
                .ok()
                .and_then(|window| clock.now().checked_sub_signed(window))
                .map_or(0, |start| start.timestamp_millis().max(0)),
        };
        // librdkafka blocks for metadata and offsets: off the async thread.
        let (consumer, pending) =
            tokio::task::spawn_blocking(move || assign(consumer, &topic, since, start_ms))
                .await
                .map_err(|err| TransportError::Topic {
                    topic: kafka.name(HEARTBEATS),
                    reason: err.to_string(),
                })??;
        let directory = Arc::new(Mutex::new(Directory::new()));
        let (observed_tx, observed) = watch::channel(0);
        let (caught_up_tx, caught_up) = watch::channel(pending.is_empty());
        let task = tokio::spawn(follow(
            consumer,
            directory.clone(),
            clock.clone(),
            observed_tx,
            caught_up_tx,
            pending,
        ));
        Ok(Self {
            directory,
            clock,
            observed,
            caught_up,
            task,
        })
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        // The directory is consistent after every call: a panic elsewhere
        // does not spoil it.
        self.directory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live instances of `service` now.
    pub fn live(&self, service: ServiceName) -> Vec<Instance> {
        self.live_at(service, self.clock.now())
    }

    /// The live instances of `service` as of `now`.
    pub fn live_at(&self, service: ServiceName, now: DateTime<Utc>) -> Vec<Instance> {
        self.directory().live(service.name(), now)
    }

    /// Every live instance now, whatever its service.
    pub fn all_live(&self) -> Vec<Instance> {
        self.directory().all_live(self.clock.now())
    }

    /// The live instance of `service` that consumes `aggregate_id`'s commands
    /// now ([`Directory::owner`]).
    pub fn owner(&self, service: ServiceName, aggregate_id: Uuid) -> Option<Instance> {
        self.owner_at(service, aggregate_id, self.clock.now())
    }

    /// Like [`Registry::owner`], as of `now`.
    pub fn owner_at(
        &self,
        service: ServiceName,
        aggregate_id: Uuid,
        now: DateTime<Utc>,
    ) -> Option<Instance> {
        self.directory().owner(service.name(), aggregate_id, now)
    }

    /// The HTTP address of the instance to ask about `aggregate_id`: its
    /// owner, or (during a rebalance, or for `None`) the first live
    /// instance, which still answers from its store what it can. `None`
    /// when that instance does not answer HTTP or none is live. Copies
    /// only the address: the gateway asks this on every read.
    pub fn http_for(&self, service: ServiceName, aggregate_id: Option<Uuid>) -> Option<String> {
        let now = self.clock.now();
        let directory = self.directory();
        let owner = aggregate_id.and_then(|id| directory.owner_ref(service.name(), id, now));
        match owner {
            Some(owner) => owner.heartbeat.http.clone(),
            None => directory.first_http(service.name(), now),
        }
    }

    /// The last record of one instance, live or not (a `leaving` one too).
    pub fn last(&self, service: ServiceName, instance_id: &str) -> Option<Instance> {
        self.directory().last(service.name(), instance_id).cloned()
    }

    /// Counts the heartbeats taken in so far; changes with each one, so a
    /// caller can wait for news instead of sleeping.
    pub fn observed(&self) -> watch::Receiver<u64> {
        self.observed.clone()
    }

    /// Waits until every heartbeat that was on the topic when the registry
    /// started has been read, for at most `bound`. Returns whether it was.
    pub async fn caught_up(&self, bound: Duration) -> bool {
        let mut caught_up = self.caught_up.clone();
        tokio::time::timeout(bound, caught_up.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Assigns every partition of `topic` from `since`; returns the consumer and,
/// per partition with records to read, the end offset at start.
fn assign(
    consumer: StreamConsumer,
    topic: &str,
    since: Since,
    start_ms: i64,
) -> Result<(StreamConsumer, HashMap<i32, i64>), TransportError> {
    let metadata = consumer.fetch_metadata(Some(topic), CONNECT_TIMEOUT)?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len() as i32);
    if count == 0 {
        return Err(TransportError::Topic {
            topic: topic.to_string(),
            reason: "the cluster has no such topic: no service has run here with this namespace"
                .to_string(),
        });
    }
    let mut starts = TopicPartitionList::new();
    for partition in 0..count {
        let offset = match since {
            Since::Beginning => Offset::Beginning,
            Since::Window(_) => Offset::Offset(start_ms),
        };
        starts.add_partition_offset(topic, partition, offset)?;
    }
    if matches!(since, Since::Window(_)) {
        starts = match consumer.offsets_for_times(starts.clone(), CONNECT_TIMEOUT) {
            Ok(found) => found,
            Err(err) => {
                // Reading more than asked is correct, only slower.
                tracing::warn!(%topic, cause = %err, "the broker cannot look offsets up by time; reading heartbeats from the beginning");
                let mut all = TopicPartitionList::new();
                for partition in 0..count {
                    all.add_partition_offset(topic, partition, Offset::Beginning)?;
                }
                all
            }
        };
    }
    let mut pending = HashMap::new();
    for element in starts.elements() {
        let partition = element.partition();
        let (low, high) = consumer.fetch_watermarks(topic, partition, CONNECT_TIMEOUT)?;
        let from = match element.offset() {
            Offset::Offset(n) => n.max(low),
            // No record at or after the time: nothing to catch up on.
            Offset::End => high,
            _ => low,
        };
        if from < high {
            pending.insert(partition, high);
        }
    }
    consumer.assign(&starts)?;
    Ok((consumer, pending))
}

/// Reads heartbeats into `directory` for as long as the registry lives.
async fn follow(
    consumer: StreamConsumer,
    directory: Arc<Mutex<Directory>>,
    clock: Clock,
    observed: watch::Sender<u64>,
    caught_up: watch::Sender<bool>,
    mut pending: HashMap<i32, i64>,
) {
    let mut failing = false;
    loop {
        let message = match consumer.recv().await {
            Ok(message) => {
                failing = false;
                message
            }
            Err(err) => {
                if !failing {
                    failing = true;
                    tracing::warn!(cause = %err, "reading heartbeats failed; retrying");
                }
                // librdkafka reports a broker outage more than once: no spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match message.payload().map(serde_json::from_slice::<Heartbeat>) {
            Some(Ok(heartbeat)) => {
                let now = clock.now();
                let stamped = message
                    .timestamp()
                    .to_millis()
                    .and_then(DateTime::from_timestamp_millis);
                let seen_at = stamped.map_or(now, |at| at.min(now));
                directory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe(heartbeat, seen_at);
                observed.send_modify(|n| *n += 1);
            }
            Some(Err(err)) => {
                tracing::debug!(offset = message.offset(), cause = %err, "skipping a record that is not a heartbeat");
            }
            None => {}
        }
        // After the record is in the directory, so that a caller woken by
        // `caught_up` sees it.
        let partition = message.partition();
        if pending
            .get(&partition)
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            pending.remove(&partition);
            if pending.is_empty() {
                caught_up.send_replace(true);
            }
        }
    }
}
