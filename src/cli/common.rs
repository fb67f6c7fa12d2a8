//! Options and helpers shared by the subcommands that run services.

use super::CliError;
use crate::kafka::embedded::EmbeddedBroker;
use crate::kafka::KafkaConfig;
use crate::node::{NodeOptions, RunningService};
use clap::Args;
use ordersaga_events::saga::SagaPolicy;
use ordersaga_events::Format;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// How long a consumer's fetch may wait at the broker, in milliseconds:
    /// lower cuts latency per hop, but costs the broker a fetch per
    /// partition this often even when idle.
    #[arg(long, default_value_t = 100)]
    pub fetch_wait_ms: u64,
    /// How long the outbox relay holds a record to batch it with more, in
    /// milliseconds. 0 sends at once; records still leave in batches under
    /// load.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub linger_ms: u64,
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
            fetch_wait: Duration::from_millis(self.fetch_wait_ms.max(1)),
            linger: Duration::from_millis(self.linger_ms),
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
    #[command(flatten)]
    pub membership: MembershipArgs,
}

impl ServiceArgs {
    /// Node options for `kafka`.
    pub fn node_options(&self, kafka: KafkaConfig) -> NodeOptions {
        let mut options = self.tuning.node_options(kafka, &self.data);
        self.membership.apply(&mut options);
        options
    }
}

/// How an instance belongs to its consumer groups.
#[derive(Debug, Args)]
pub struct MembershipArgs {
    /// The static member id of this instance in its consumer groups. By
    /// default it is derived from the service and its store, so a restart on
    /// the same store takes its partitions back at once. Give each instance
    /// of a service its own.
    #[arg(long)]
    pub instance_id: Option<String>,
    /// How long the broker keeps the partitions of an instance it no longer
    /// hears from, in milliseconds. A restart within it gets them back at
    /// once; an instance that never returns holds them this long. On Tansu
    /// 0.6 keep it well above 6 s: a static member's join and sync pause 3 s
    /// each there, and a shorter session never completes a rejoin.
    #[arg(long, default_value_t = 30_000)]
    pub session_timeout_ms: u64,
    /// How long a consumer may own no partition before the service warns that
    /// it is deaf and reports itself not ready, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub deaf_after_ms: u64,
    /// How often the instance announces itself on `services.heartbeats`, in
    /// milliseconds; `ordersaga services` counts it down after three
    /// silent periods.
    #[arg(long, default_value_t = 2_000)]
    pub heartbeat_ms: u64,
}

impl MembershipArgs {
    fn apply(&self, options: &mut NodeOptions) {
        options.instance_id = self.instance_id.clone();
        options.consumer.session_timeout = Duration::from_millis(self.session_timeout_ms);
        options.deaf_after = Duration::from_millis(self.deaf_after_ms);
        options.heartbeat_period = Duration::from_millis(self.heartbeat_ms.max(10));
    }
}

/// Prints a line on standard output each time `service` becomes ready or
/// stops being ready, until the process ends. Scripts and supervisors can
/// wait for the `ready` line.
pub fn announce_readiness(service: &RunningService, started: Instant) {
    let name = service.name.name();
    let mut readiness = service.readiness();
    actix::spawn(async move {
        let mut was_ready = false;
        loop {
            let now = readiness.borrow_and_update().clone();
            if now.ready != was_ready {
                was_ready = now.ready;
                if now.ready {
                    let owned: Vec<String> = now
                        .consumers
                        .iter()
                        .map(|c| format!("{} {:?}", c.topic, c.partitions))
                        .collect();
                    println!(
                        "ready {name} after {} ms: {}",
                        started.elapsed().as_millis(),
                        owned.join(", ")
                    );
                } else {
                    let idle: Vec<&str> = now.idle().map(|c| c.topic.as_str()).collect();
                    println!("not ready {name}: no partition of {}", idle.join(", "));
                }
            }
            if readiness.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Event encoding, snapshots and saga timing.
#[derive(Debug, Args)]
pub struct TuningArgs {
    /// Encoding of records on the event topics: json (readable from any
    /// language) or bincode (smaller, for Rust consumers).
    #[arg(long, default_value = "json")]
    pub event_format: Format,
    /// Snapshot every N events per aggregate (0: never).
    #[arg(long, default_value_t = 100)]
    pub snapshot_every: u64,
    /// How long a saga step waits for its replies before its first resend,
    /// in milliseconds. Each resend waits twice as long, up to four times
    /// this.
    #[arg(long, default_value_t = SagaPolicy::DEFAULT_STEP_TIMEOUT_MS)]
    pub saga_step_timeout_ms: u64,
    /// How long a saga step keeps resending before it gives up, in
    /// milliseconds: a forward step then compensates, a compensation parks
    /// the saga as stuck. A downstream outage shorter than this delays an
    /// order but does not cancel it.
    #[arg(long, default_value_t = SagaPolicy::DEFAULT_BUDGET_MS)]
    pub saga_step_budget_ms: u64,
}

impl TuningArgs {
    /// Node options for `kafka` with stores under `data`.
    pub fn node_options(&self, kafka: KafkaConfig, data: &std::path::Path) -> NodeOptions {
        let mut options = NodeOptions::new(kafka, data);
        options.service.event_format = self.event_format;
        options.service.snapshot_every = self.snapshot_every;
        options.saga = SagaPolicy::with_budget(self.saga_step_timeout_ms, self.saga_step_budget_ms);
        options
    }
}

/// The longest a stop may take before the process gives up on it.
pub const STOP_BOUND: Duration = Duration::from_secs(30);

/// Stops `services`, each within [`STOP_BOUND`] at most. A stop that does
/// not finish in time ends the process with status 1: the store is
/// consistent at every commit, and what was not published stays in the
/// outbox for the next start. Waiting any longer would leave a supervisor
/// with a process that neither works nor exits.
pub async fn stop_within_bound(services: Vec<RunningService>) {
    for service in services {
        let name = service.name.name();
        if tokio::time::timeout(STOP_BOUND, service.stop())
            .await
            .is_err()
        {
            tracing::error!(
                service = name,
                bound_s = STOP_BOUND.as_secs(),
                "the stop did not finish in time; exiting anyway (the store is consistent, the outbox keeps what was not published)"
            );
            eprintln!(
                "error: {name} did not stop within {} s",
                STOP_BOUND.as_secs()
            );
            std::process::exit(1);
        }
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
