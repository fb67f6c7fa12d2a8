//! The Kafka transport: topics, the outbox relay, command consumers and dead
//! letters. Services talk to each other only through these.
//!
//! Delivery guarantees, end to end:
//! - **Commands** are consumed at least once; the journal's processed-command
//!   table makes their effects exactly once, and the consumed offset is stored
//!   in the same transaction as those effects.
//! - **Events and replies** are published at least once, in order per key, by
//!   the [`relay`] from the journal's outbox. After a crash a record may be
//!   published again; consumers drop duplicates by the `event-id` header (or
//!   the envelope's `event_id`).

pub mod clients;
pub mod consumer;
pub mod deadletter;
pub mod decode;
pub mod embedded;
pub mod heartbeat;
pub mod key_order;
pub mod liveness;
pub mod offsets;
pub mod reach;
pub mod relay;
pub mod reply_topics;
pub mod resume;
pub mod topics;

/// Where the cluster is and how topics are laid out.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Partitions of each topic ordersaga creates. Default 3.
    pub partitions: i32,
    /// Replication factor of each topic ordersaga creates. Default 1.
    pub replication: i32,
    /// A prefix for every topic and consumer group (`NS.users.commands`), so
    /// several environments or test runs can share one cluster. Reply topics
    /// named in commands are prefixed too. Default none.
    pub namespace: Option<String>,
    /// The cluster creates topics on first use, so the admin API is not used.
    /// Set for the embedded broker, which has no CreateTopics API (its topics
    /// are made up front by [`embedded::EmbeddedBroker::create_topics`]).
    /// Default false.
    pub auto_create_topics: bool,
    /// How long a consumer's fetch may wait at the broker for records
    /// (`fetch.wait.max.ms`). Both Tansu and the embedded broker answer a
    /// fetch only when this wait ends, so it is a floor on every hop's
    /// latency; but each consumer sends a fetch per partition this often,
    /// and at 10 ms an idle system kept Tansu's sqlite engine at a full core
    /// (18 % at 100 ms, measured in ARCHITECTURE.md). Default 100 ms.
    pub fetch_wait: std::time::Duration,
    /// How long the outbox relay's producer holds a record to batch it with
    /// more (`linger.ms`). Default 0: a record leaves as soon as the relay
    /// hands it over, and under load records still travel in batches,
    /// because librdkafka fills the next request while earlier ones are in
    /// flight (measured in ARCHITECTURE.md, "Client settings").
    pub linger: std::time::Duration,
}

impl KafkaConfig {
    /// A config for `brokers` with default partitions and replication.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            partitions: 3,
            replication: 1,
            namespace: None,
            auto_create_topics: false,
            fetch_wait: std::time::Duration::from_millis(100),
            linger: std::time::Duration::ZERO,
        }
    }

    /// The same config with every topic and group under `namespace`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The physical name of a logical topic or group name.
    pub fn name(&self, logical: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{logical}"),
            None => logical.to_string(),
        }
    }

    /// The logical name of a physical topic (the inverse of [`KafkaConfig::name`]).
    pub fn logical<'a>(&self, physical: &'a str) -> &'a str {
        match &self.namespace {
            Some(ns) => physical
                .strip_prefix(ns.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(physical),
            None => physical,
        }
    }
}

/// Whether `name` is a legal Kafka topic name: 1 to 249 characters of ASCII
/// letters, digits, `.`, `_` and `-`, and not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why the transport could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker refused or never answered. Check `--brokers` and that the
    /// cluster is up.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Creating a topic failed for a reason other than it already existing.
    #[error("cannot create topic {topic}: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
    /// The service's store failed.
    #[error(transparent)]
    Journal(#[from] ordersaga_actors::JournalError),
    /// The HTTP face could not listen.
    #[error("cannot serve HTTP on {address}: {source}")]
    Http {
        /// The `--http` address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// No bootstrap address accepted a connection.
    #[error("cannot reach the Kafka cluster at {brokers}: {cause}")]
    Unreachable {
        /// The `--brokers` given.
        brokers: String,
        /// Why, per address.
        cause: String,
    },
}
