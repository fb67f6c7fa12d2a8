//! Small constructors for the Kafka clients, with every non-default setting
//! commented.

use super::KafkaConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::producer::FutureProducer;
use std::time::Duration;

/// How long a fetch may wait for records to arrive. librdkafka's default is
/// 500 ms, and both the embedded broker and Tansu answer a fetch only when
/// that wait runs out, which made every hop through Kafka cost half a
/// second. Commands are latency-sensitive: take what is there after 10 ms.
const FETCH_WAIT_MS: &str = "10";

/// How long start-up waits for the cluster to answer before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn base(config: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", client_id)
        // Prefer IPv4 loopback resolution quirks away: fail over fast.
        .set("socket.connection.setup.timeout.ms", "10000");
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
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("retry.backoff.ms", "100")
        .set("retry.backoff.max.ms", "2000")
        // Small batching delay: many records per request under load, little
        // latency when idle.
        .set("linger.ms", "2")
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
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
}

/// A consumer in `group`, whose offsets are stored by the caller.
///
/// Auto-commit stays on, but only offsets the caller explicitly stores after
/// processing are committed: the journal is the source of truth for where to
/// resume, and the committed group offsets make lag visible to Kafka tooling.
pub fn consumer<C: ConsumerContext + 'static>(
    config: &KafkaConfig,
    client_id: &str,
    group: &str,
    context: C,
) -> Result<StreamConsumer<C>, rdkafka::error::KafkaError> {
    base(config, client_id)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(context)
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
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .create()
}

/// An admin client.
pub fn admin(
    config: &KafkaConfig,
    client_id: &str,
) -> Result<AdminClient<DefaultClientContext>, rdkafka::error::KafkaError> {
    base(config, client_id).create()
}
