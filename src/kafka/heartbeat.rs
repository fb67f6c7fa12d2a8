//! Heartbeats: every service instance says, on `services.heartbeats`, that it
//! is up, where it answers HTTP, which command partitions it owns and whether
//! it is ready; and, when it stops cleanly, that it is leaving.
//!
//! The record is plain JSON ([`Heartbeat`], documented with an example in
//! `docs/HEARTBEATS.md`), keyed by the instance id, so that any Kafka client
//! can follow the instances of a system; [`crate::registry::Registry`] is the
//! Rust reader. A heartbeat goes out at start, every period after that, and
//! at once when the instance's readiness or partitions change, so a reader
//! learns of a rebalance without waiting for the next period.
//!
//! Heartbeats are best effort: they have their own producer with a bounded
//! delivery timeout, a failed one is logged once per outage and never holds
//! up the service, and a late one carries its old timestamp, which readers
//! take as the time it speaks for.

use super::clients::{self, CONNECT_TIMEOUT};
use super::liveness::{Ownership, Readiness};
use super::KafkaConfig;
use chrono::{DateTime, Utc};
use ordersaga_events::topics::{Service as ServiceName, HEARTBEATS};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The default heartbeat period.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(2);

/// How long a stop waits for its `leaving` record to be acknowledged. Well
/// under the consumers' drain timeout, which runs at the same time, so the
/// farewell does not lengthen a stop.
pub const LEAVING_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the partition count of the command topic is asked for again
/// (partitions can be added to a topic, never removed).
const PARTITION_COUNT_REFRESH: Duration = Duration::from_secs(30);

/// Whether the instance is working or on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Running; it sends another heartbeat within `period_ms`.
    Up,
    /// Stopping cleanly: the last record it sends. Readers drop it at once.
    Leaving,
}

/// One heartbeat record, as JSON on `services.heartbeats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The service (`users`, `orders`, `inventory`).
    pub service: String,
    /// The instance's static member id; also the record key.
    pub instance_id: String,
    /// Where the instance answers HTTP (`host:port`), if it does.
    #[serde(default)]
    pub http: Option<String>,
    /// The ordersaga version the instance runs.
    pub version: String,
    /// When the instance finished starting (its consumers were running).
    pub started_at: DateTime<Utc>,
    /// When this record was made.
    pub sent_at: DateTime<Utc>,
    /// How often the instance sends heartbeats, in milliseconds. Readers
    /// count it down after three periods without one.
    pub period_ms: u64,
    /// `up` or `leaving`.
    pub state: State,
    /// The (physical) topic the service consumes commands from.
    pub commands_topic: String,
    /// The partitions of `commands_topic` this instance owns, sorted.
    pub partitions: Vec<i32>,
    /// How many partitions `commands_topic` has; `null` until known.
    #[serde(default)]
    pub partition_count: Option<i32>,
    /// Every consumer of the instance owns partitions.
    pub ready: bool,
    /// Why it is not ready (empty when ready).
    #[serde(default)]
    pub reasons: Vec<String>,
}

/// What an instance says about itself that does not change while it runs.
#[derive(Clone, Debug)]
pub struct HeartbeatInfo {
    /// Which service.
    pub service: ServiceName,
    /// The instance's static member id.
    pub instance_id: String,
    /// Where it answers HTTP, if it does.
    pub http: Option<String>,
    /// When it finished starting.
    pub started_at: DateTime<Utc>,
}

impl HeartbeatInfo {
    /// An instance of `service` called `instance_id`, started now.
    pub fn new(service: ServiceName, instance_id: impl Into<String>, http: Option<String>) -> Self {
        Self {
            service,
            instance_id: instance_id.into(),
            http,
            started_at: Utc::now(),
        }
    }
}

/// The heartbeats of one running instance: made with [`Beats::new`], run
/// with [`Beats::run`] until told to stop.
pub struct Beats {
    producer: FutureProducer,
    topic: String,
    commands_topic: String,
    info: HeartbeatInfo,
    period: Duration,
    ownerships: Vec<Ownership>,
    readiness: watch::Receiver<Readiness>,
    partition_count: Option<i32>,
    /// A partition count being fetched, and when the last fetch started.
    fetching: Option<JoinHandle<Option<i32>>>,
    fetched_at: Option<Instant>,
    /// The last delivery failed: the next success is logged too.
    failing: bool,
    /// Delivery outcomes, reported by one small task per heartbeat: the
    /// loop never waits for an acknowledgement.
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

/// How a heartbeat's delivery ended: the error, if it failed.
type Outcome = Result<(), String>;

/// What a heartbeat says that can change between periods: a change is sent
/// at once.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Changing {
    partitions: Vec<i32>,
    ready: bool,
    reasons: Vec<String>,
}

impl Beats {
    /// Heartbeats for `info`, every `period`, reporting the command-topic
    /// partitions among `ownerships` and the service's `readiness`. Makes
    /// the heartbeat producer.
    pub fn new(
        kafka: &KafkaConfig,
        info: HeartbeatInfo,
        period: Duration,
        ownerships: &[Ownership],
        readiness: watch::Receiver<Readiness>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let client_id = format!("ordersaga-{}-heartbeat", info.service.name());
        let commands_topic = kafka.name(info.service.commands_topic());
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        Ok(Self {
            producer: clients::simple_producer(kafka, &client_id)?,
            topic: kafka.name(HEARTBEATS),
            ownerships: ownerships
                .iter()
                .filter(|o| o.topic == commands_topic)
                .cloned()
                .collect(),
            commands_topic,
            info,
            // A zero period would spin.
            period: period.max(Duration::from_millis(10)),
            readiness,
            partition_count: None,
            fetching: None,
            fetched_at: None,
            failing: false,
            outcomes_tx,
            outcomes,
        })
    }

    /// Sends a heartbeat now and every period, and another whenever the
    /// partitions or readiness change, until `stop`; then sends the
    /// `leaving` record, waiting at most [`LEAVING_TIMEOUT`] for it.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut next = Instant::now();
        let mut last: Option<Changing> = None;
        let mut readiness_open = true;
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = tokio::time::sleep_until(next) => {}
                Some(outcome) = self.outcomes.recv() => {
                    self.note(outcome);
                    continue;
                }
                changed = self.readiness.changed(), if readiness_open => {
                    // The liveness task ends first on a stop: periods only.
                    readiness_open = changed.is_ok();
                    // The liveness task republishes every second, changed
                    // or not: only a real change is worth a record.
                    if last.as_ref() == Some(&self.changing()) {
                        continue;
                    }
                }
            }
            let beat = self.beat(State::Up).await;
            last = Some(self.changing());
            if let Some(delivery) = self.enqueue(&beat) {
                let outcomes = self.outcomes_tx.clone();
                tokio::spawn(async move {
                    let _ = outcomes.send(outcome_of(delivery.await));
                });
            }
            next = Instant::now() + self.period;
        }
        let beat = self.beat(State::Leaving).await;
        // While heartbeats do not get through (broker down, topic missing),
        // the farewell is tried briefly: it must not hold up the stop.
        let bound = if self.failing {
            LEAVING_TIMEOUT / 8
        } else {
            LEAVING_TIMEOUT
        };
        if let Some(delivery) = self.enqueue(&beat) {
            match tokio::time::timeout(bound, delivery).await {
                Ok(delivered) => self.note(outcome_of(delivered)),
                Err(_) => tracing::warn!(
                    topic = %self.topic,
                    bound_ms = bound.as_millis() as u64,
                    "the leaving record was not acknowledged in time; readers count this instance down after three periods instead"
                ),
            }
        }
        if let Some(fetch) = self.fetching.take() {
            fetch.abort();
        }
    }

    /// The partitions and readiness now.
    fn changing(&self) -> Changing {
        let mut partitions: Vec<i32> = self
            .ownerships
            .iter()
            .flat_map(|o| o.current().partitions)
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        let readiness = self.readiness.borrow();
        Changing {
            partitions,
            ready: readiness.ready,
            reasons: readiness.reasons(),
        }
    }

    /// A heartbeat in `state` as of now.
    async fn beat(&mut self, state: State) -> Heartbeat {
        self.refresh_partition_count().await;
        let Changing {
            partitions,
            ready,
            reasons,
        } = self.changing();
        Heartbeat {
            service: self.info.service.name().to_string(),
            instance_id: self.info.instance_id.clone(),
            http: self.info.http.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.info.started_at,
            sent_at: Utc::now(),
            period_ms: self.period.as_millis() as u64,
            state,
            commands_topic: self.commands_topic.clone(),
            partitions,
            partition_count: self.partition_count,
            ready,
            reasons,
        }
    }

    /// Picks up a finished partition-count fetch and starts the next one
    /// when due. librdkafka blocks for metadata, so it is asked off the
    /// async thread, and a heartbeat never waits for it.
    async fn refresh_partition_count(&mut self) {
        if let Some(fetch) = self.fetching.take_if(|f| f.is_finished()) {
            // Finished: this await does not wait.
            if let Ok(Some(count)) = fetch.await {
                self.partition_count = Some(count);
            }
        }
        let due = match (self.partition_count, self.fetched_at) {
            (None, _) | (_, None) => true,
            (Some(_), Some(at)) => at.elapsed() >= PARTITION_COUNT_REFRESH,
        };
        if self.fetching.is_none() && due {
            let client = self.producer.clone();
            let topic = self.commands_topic.clone();
            self.fetched_at = Some(Instant::now());
            self.fetching = Some(tokio::task::spawn_blocking(move || {
                let metadata = client
                    .client()
                    .fetch_metadata(Some(&topic), CONNECT_TIMEOUT)
                    .ok()?;
                let topic = metadata.topics().iter().find(|t| t.name() == topic)?;
                // A topic the broker does not know has no partitions.
                Some(topic.partitions().len() as i32).filter(|n| *n > 0)
            }));
        }
    }

    /// Hands `beat` to the producer; the future tells how its delivery
    /// ends (within the producer's message timeout).
    fn enqueue(&mut self, beat: &Heartbeat) -> Option<DeliveryFuture> {
        let payload = match serde_json::to_vec(beat) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(cause = %err, "cannot encode a heartbeat");
                return None;
            }
        };
        let record = FutureRecord::to(&self.topic)
            .key(&beat.instance_id)
            .payload(&payload);
        match self.producer.send_result(record) {
            Ok(delivery) => Some(delivery),
            Err((err, _)) => {
                self.note(Err(err.to_string()));
                None
            }
        }
    }

    /// Logs the first failed delivery of an outage, and the recovery.
    fn note(&mut self, outcome: Outcome) {
        match (outcome, self.failing) {
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!(topic = %self.topic, "heartbeats are delivered again");
            }
            (Err(cause), false) => {
                self.failing = true;
                tracing::warn!(topic = %self.topic, %cause, "a heartbeat was not delivered; readers may count this instance down until heartbeats get through");
            }
            _ => {}
        }
    }
}

/// A delivery's end as an [`Outcome`].
fn outcome_of(
    delivered: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        impl std::fmt::Debug,
    >,
) -> Outcome {
    match delivered {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((err, _))) => Err(err.to_string()),
        Err(cancelled) => Err(format!("{cancelled:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::liveness::ConsumerState;

    #[test]
    fn the_record_reads_as_documented() {
        let json = r#"{
            "service": "users",
            "instance_id": "ordersaga-users-3f2a9c1d7b4e",
            "http": "10.0.0.7:8080",
            "version": "0.1.0",
            "started_at": "2025-01-01T12:00:00Z",
            "sent_at": "2025-01-01T12:05:00.250Z",
            "period_ms": 2000,
            "state": "up",
            "commands_topic": "users.commands",
            "partitions": [0, 2],
            "partition_count": 3,
            "ready": true,
            "reasons": []
        }"#;
        let beat: Heartbeat = serde_json::from_str(json).unwrap();
        assert_eq!(beat.state, State::Up);
        assert_eq!(beat.partitions, [0, 2]);
        let again: Heartbeat = serde_json::from_slice(&serde_json::to_vec(&beat).unwrap()).unwrap();
        assert_eq!(again, beat);
        let leaving = r#""leaving""#;
        assert_eq!(
            serde_json::from_str::<State>(leaving).unwrap(),
            State::Leaving
        );
    }

    #[test]
    fn reasons_name_the_consumers_that_own_nothing() {
        let readiness = Readiness {
            ready: false,
            consumers: vec![
                ConsumerState {
                    group: "g1".into(),
                    topic: "t1".into(),
                    partitions: vec![0],
                    deaf: false,
                },
                ConsumerState {
                    group: "g2".into(),
                    topic: "t2".into(),
                    partitions: vec![],
                    deaf: true,
                },
            ],
        };
        assert_eq!(readiness.reasons(), ["g2 owns no partition of t2 (deaf)"]);
    }
}
