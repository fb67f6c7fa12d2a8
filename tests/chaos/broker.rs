//! The broker of a chaos run: the test's own Tansu with sqlite storage (so
//! that it can be killed and started again on the same file), or the
//! embedded broker (`ORDERSAGA_CHAOS_BROKER=embedded`), whose outage is the
//! mock cluster's broker going down and up.

use crate::support::OwnTansu;
use ordersaga::kafka::embedded::EmbeddedBroker;
use ordersaga::kafka::topics::ensure_topics;
use ordersaga::kafka::KafkaConfig;

/// Which broker, and its handle.
pub enum ChaosBroker {
    /// A real broker process.
    Tansu(OwnTansu),
    /// The mock cluster, in this process (it must stay on this thread).
    Embedded(EmbeddedBroker),
}

impl ChaosBroker {
    /// The broker `ORDERSAGA_CHAOS_BROKER` names: `tansu` (default) or
    /// `embedded`. Tansu keeps its storage in `dir`.
    pub fn from_env(dir: &std::path::Path) -> Self {
        match std::env::var("ORDERSAGA_CHAOS_BROKER").as_deref() {
            Ok("embedded") => ChaosBroker::Embedded(EmbeddedBroker::start().unwrap()),
            Ok("tansu") | Ok("") | Err(_) => ChaosBroker::Tansu(OwnTansu::start(dir)),
            Ok(other) => panic!("unknown ORDERSAGA_CHAOS_BROKER {other:?} (tansu or embedded)"),
        }
    }

    /// One line about the broker.
    pub fn describe(&self) -> String {
        match self {
            ChaosBroker::Tansu(tansu) => {
                format!("Tansu with sqlite storage at {}", tansu.brokers())
            }
            ChaosBroker::Embedded(broker) => {
                format!("the embedded broker at {}", broker.bootstrap_servers())
            }
        }
    }

    /// The run's topic layout.
    pub fn kafka(&self) -> KafkaConfig {
        match self {
            ChaosBroker::Tansu(tansu) => KafkaConfig::new(tansu.brokers()),
            ChaosBroker::Embedded(broker) => broker.config(),
        }
        .with_namespace("chaos")
    }

    /// What the services need to be told about this broker.
    ///
    /// The embedded broker has no CreateTopics API (the run makes them up
    /// front), and its group coordinator does not hand a restarted static
    /// member its old partitions: they wait until the dead member's session
    /// expires, so there the session timeout bounds a restart's recovery,
    /// and a short one is used.
    pub fn service_args(&self) -> Vec<String> {
        match self {
            ChaosBroker::Tansu(_) => Vec::new(),
            ChaosBroker::Embedded(_) => ["--no-create-topics", "--session-timeout-ms", "6000"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// Creates the logical `topics`.
    pub async fn create_topics(&self, kafka: &KafkaConfig, topics: &[String]) {
        match self {
            ChaosBroker::Tansu(_) => ensure_topics(kafka, topics).await.unwrap(),
            ChaosBroker::Embedded(broker) => broker.create_topics(kafka, topics).unwrap(),
        }
    }

    /// Kills the broker.
    pub fn down(&mut self) {
        match self {
            ChaosBroker::Tansu(tansu) => tansu.down(),
            ChaosBroker::Embedded(broker) => broker.down().unwrap(),
        }
    }

    /// Starts it again.
    pub fn up(&mut self) {
        match self {
            ChaosBroker::Tansu(tansu) => tansu.up(),
            ChaosBroker::Embedded(broker) => broker.up().unwrap(),
        }
    }
}
