//! Small constructors for the Kafka clients, with every non-default setting
//! commented.

use super::KafkaConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::producer::FutureProducer;
use std::time::Duration;

/// How long start-up waits for the cluster to answer before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The partitioner of every producer that sends keyed records: the Java
/// client's default (murmur2 of the key), not librdkafka's default
/// (`consistent_random`, a CRC32). Kafka tools, clients in other languages
/// and [`crate::registry::partition_for`] then agree on the partition of a
/// key, so the registry can say which instance consumes an aggregate.
const PARTITIONER: &str = "murmur2_random";

fn base(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", client_id)
        // Prefer IPv4 loopback resolution quirks away: fail over fast.
        .set("socket.connection.setup.timeout.ms", "10000")
        // A request without an answer for this long is retried on a new
        // connection. librdkafka's 60 s default let requests that were in
        // flight when a broker went away stall their client for a minute
        // after it came back. Not much shorter: a saturated broker can take
        // seconds to answer, and a retry adds to its load. (Fetches wait at
        // most the fetch wait at the broker; produce retries are safe, the
        // producer is idempotent.)
        .set("socket.timeout.ms", "30000");
    c
}

/// The outbox relay's producer: idempotent, `acks=all`, retrying forever.
///
/// With idempotence librdkafka keeps per-partition order across retries and
/// never duplicates within a session, and `message.timeout.ms=0` makes it
/// retry (with backoff) through a broker outage instead of dropping records.
pub fn producer(
    config: &KafkaConfig,
    client_id: &str,
) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    base(config, client_id)
        .set("partitioner", PARTITIONER)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "2000")
        // No batching delay by default (see `KafkaConfig::linger`): under load
        // records batch up behind the requests in flight anyway.
        .set("linger.ms", config.linger.as_millis().to_string())
        .set("queue.buffering.max.messages", "200000")
        .create()
}

/// A plain producer for tools and tests (idempotent, `acks=all`, bounded
/// delivery timeout so a missing broker is reported, not waited on forever).
pub fn simple_producer(
    config: &KafkaConfig,
    client_id: &str,
) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    base(config, client_id)
        .set("partitioner", PARTITIONER)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
}

/// How a service's consumer belongs to its group.
#[derive(Clone, Debug)]
pub struct Membership {
    /// The physical group id.
    pub group: String,
    /// The static member id (`group.instance.id`), stable across restarts of
    /// the same instance. `None` makes a dynamic member.
    pub instance_id: Option<String>,
    /// How long the broker waits for a member's heartbeat before it gives
    /// that member's partitions to others.
    pub session_timeout: Duration,
}

/// A consumer in a group, whose offsets are stored by the caller.
///
/// Auto-commit is off: the journal is the source of truth for where to
/// resume, and the caller commits group offsets asynchronously only to make
/// lag visible to Kafka tooling. (An auto-commit on close would wait for an
/// unreachable broker and hold up a stop.)
///
/// With an instance id the consumer is a static member (KIP-345): a
/// restarted process that rejoins with the same id inside the session
/// timeout gets its partitions back at once, with no rebalance and no dead
/// member holding them. The price: a static member that never returns keeps
/// its partitions until its session expires, and a static member does not
/// leave the group when it closes.
pub fn consumer<C: ConsumerContext + 'static>(
    config: &KafkaConfig,
    client_id: &str,
    membership: &Membership,
    context: C,
) -> Result<StreamConsumer<C>, rdkafka::error::KafkaError> {
    let session_ms = membership.session_timeout.as_millis().max(1);
    let mut c = base(config, client_id);
    c.set("group.id", &membership.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.wait.max.ms",
            config.fetch_wait.as_millis().max(1).to_string(),
        )
        .set("session.timeout.ms", session_ms.to_string())
        // librdkafka's statistics every 5 s: the context reads each owned
        // partition's lag from them (`ordersaga_consumer_lag`).
        .set("statistics.interval.ms", "5000")
        // A third of the session, as Kafka recommends, and at most 1 s so a
        // rebalance is noticed quickly.
        .set(
            "heartbeat.interval.ms",
            (session_ms / 3).clamp(1, 1000).to_string(),
        );
    if let Some(instance_id) = &membership.instance_id {
        c.set("group.instance.id", instance_id);
    }
    c.create_with_context(context)
}

/// A consumer that reads topics by explicit assignment (no group offsets
/// are committed): for tools, benchmarks and tests that observe topics.
pub fn reader(
    config: &KafkaConfig,
    client_id: &str,
) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    base(config, client_id)
        .set("group.id", format!("{client_id}-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set(
            "fetch.wait.max.ms",
            config.fetch_wait.as_millis().max(1).to_string(),
        )
        .create()
}

/// An admin client.
pub fn admin(
    config: &KafkaConfig,
    client_id: &str,
) -> Result<AdminClient<DefaultClientContext>, rdkafka::error::KafkaError> {
    base(config, client_id).create()
}
