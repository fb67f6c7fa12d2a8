//! Options and helpers shared by the subcommands that run services.

use super::CliError;
use crate::kafka::embedded::EmbeddedBroker;
use crate::kafka::KafkaConfig;
use crate::node::NodeOptions;
use clap::Args;
use ordersaga_events::Format;
use std::path::PathBuf;

/// How topics are laid out.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Partitions of each topic ordersaga creates.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor of each topic ordersaga creates.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
    /// Prefix every topic and consumer group with `NAMESPACE.`.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Do not create topics through the admin API: they exist already, or the
    /// cluster creates them on first use.
    #[arg(long)]
    pub no_create_topics: bool,
}

impl KafkaArgs {
    /// The Kafka config for `brokers`.
    pub fn config(&self, brokers: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.to_string(),
            partitions: self.partitions,
            replication: self.replication,
            namespace: self.namespace.clone(),
            auto_create_topics: self.no_create_topics,
        }
    }
}

/// The cluster to run on: `brokers` when given, or else an embedded broker
/// started now, on which `topics` are created up front (it has no
/// CreateTopics API). The embedded broker runs as long as the caller keeps
/// the returned handle.
pub fn cluster(
    brokers: Option<&str>,
    config: impl FnOnce(&str) -> KafkaConfig,
    topics: &[String],
) -> Result<(KafkaConfig, Option<EmbeddedBroker>), CliError> {
    match brokers {
        Some(brokers) => Ok((config(brokers), None)),
        None => {
            let broker = EmbeddedBroker::start()?;
            let mut kafka = config(&broker.bootstrap_servers());
            kafka.auto_create_topics = true;
            broker.create_topics(&kafka, topics)?;
            Ok((kafka, Some(broker)))
        }
    }
}

/// How services store and publish.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Where the stores live, one directory per service.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

impl ServiceArgs {
    /// Node options for `kafka`.
    pub fn node_options(&self, kafka: KafkaConfig) -> NodeOptions {
        self.tuning.node_options(kafka, &self.data)
    }
}

/// Event encoding, snapshots and saga timing.
#[derive(Debug, Args)]
pub struct TuningArgs {
    /// Encoding of records on the event topics: bincode or json.
    #[arg(long, default_value = "bincode")]
    pub event_format: Format,
    /// Snapshot every N events per aggregate (0: never).
    #[arg(long, default_value_t = 100)]
    pub snapshot_every: u64,
    /// How long a saga step waits for its replies before a retry, in
    /// milliseconds (each retry waits twice as long).
    #[arg(long, default_value_t = 5_000)]
    pub saga_step_timeout_ms: u64,
    /// Attempts per saga step before it compensates (or, for a compensation,
    /// parks the saga as stuck).
    #[arg(long, default_value_t = 3)]
    pub saga_attempts: u32,
}

impl TuningArgs {
    /// Node options for `kafka` with stores under `data`.
    pub fn node_options(&self, kafka: KafkaConfig, data: &std::path::Path) -> NodeOptions {
        let mut options = NodeOptions::new(kafka, data);
        options.service.event_format = self.event_format;
        options.service.snapshot_every = self.snapshot_every;
        options.saga = ordersaga_events::saga::SagaPolicy {
            step_timeout_ms: self.saga_step_timeout_ms,
            max_attempts: self.saga_attempts.max(1),
        };
        options
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
