//! The embedded broker: librdkafka's in-process mock cluster.
//!
//! For trying things out and fast tests, with nothing to install. It listens
//! on a real loopback port, so any Kafka client can connect to it while the
//! process runs. It keeps little data (about 5 MB per partition) and starts
//! empty on every run; real runs and benchmarks use a real broker.

use super::KafkaConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A running mock cluster; it stops when dropped. It is not `Send`: keep it on
/// the thread that created it.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster.
    pub fn start() -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            cluster: MockCluster::new(1)?,
        })
    }

    /// The `bootstrap.servers` string clients connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates the logical topics `names` (namespaced by `config`) with the
    /// configured partitions; existing topics are left alone. Topics it does
    /// not know beforehand (reply topics) it creates on first use.
    pub fn create_topics(
        &self,
        config: &KafkaConfig,
        names: &[String],
    ) -> Result<(), rdkafka::error::KafkaError> {
        for name in names {
            match self
                .cluster
                .create_topic(&config.name(name), config.partitions, 1)
            {
                Ok(()) => {}
                Err(rdkafka::error::KafkaError::MockCluster(
                    rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                )) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The Kafka config for clients of this broker: its address, topics
    /// created on first use.
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig {
            auto_create_topics: true,
            ..KafkaConfig::new(self.bootstrap_servers())
        }
    }

    /// Takes the broker down (requests fail) until [`EmbeddedBroker::up`]:
    /// for outage tests.
    pub fn down(&self) -> Result<(), rdkafka::error::KafkaError> {
        self.cluster.broker_down(1)
    }

    /// Brings the broker back after [`EmbeddedBroker::down`].
    pub fn up(&self) -> Result<(), rdkafka::error::KafkaError> {
        self.cluster.broker_up(1)
    }

    /// Makes the next produce requests fail, one error each, in order: for
    /// fault tests (an `OUT_OF_ORDER_SEQUENCE_NUMBER` is what a broker that
    /// lost its producer state answers).
    pub fn fail_produce_requests(&self, errors: &[rdkafka::types::RDKafkaRespErr]) {
        self.cluster
            .request_errors(rdkafka::types::RDKafkaApiKey::Produce, errors);
    }
}
