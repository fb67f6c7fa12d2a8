//! `ordersaga tail TOPIC`: print the records of a topic, decoded, one per
//! line ([`crate::ops::tail`]).

use super::common::shutdown_signal;
use super::CliError;
use crate::kafka::KafkaConfig;
use crate::ops::tail::{tail, Start, TailOptions};
use clap::Args;
use std::time::Duration;

/// The cluster a tool reads, and the namespace its topics are in: the
/// reading half of [`super::common::KafkaArgs`] (a tool creates no topics).
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kafka bootstrap servers (`host:port,…`).
    #[arg(long)]
    pub brokers: String,
    /// The `--namespace` the services run with: topics (and a consumer
    /// group) are prefixed with `NAMESPACE.`.
    #[arg(long)]
    pub namespace: Option<String>,
    /// How long a fetch may wait at the broker, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub fetch_wait_ms: u64,
}

impl ClusterArgs {
    /// The Kafka config these arguments describe.
    pub fn config(&self) -> KafkaConfig {
        let mut kafka = KafkaConfig::new(&self.brokers);
        kafka.namespace = self.namespace.clone();
        kafka.fetch_wait = Duration::from_millis(self.fetch_wait_ms.max(1));
        kafka
    }
}

/// Arguments of `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The topic, by its name in the contract (`users.commands`,
    /// `orders.events`, `gateway.replies`, `ordersaga.deadletter`, …);
    /// --namespace adds its prefix.
    pub topic: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Where to start in each partition: beginning, end, N (this offset),
    /// -N (the last N records), @TIME (the first record at or after TIME:
    /// RFC 3339, epoch milliseconds, or a duration ago such as 15m).
    #[arg(
        short = 'o',
        long = "offset",
        default_value = "beginning",
        allow_hyphen_values = true
    )]
    pub offset: Start,
    /// Exit at the end of every partition instead of waiting for more.
    #[arg(short = 'e', long = "exit")]
    pub exit: bool,
    /// Exit after this many records.
    #[arg(short = 'c', long = "count")]
    pub count: Option<u64>,
    /// One JSON object per line (topic, partition, offset, timestamp, key,
    /// headers, kind, type, format, value) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Read in this consumer group and commit what was printed, so the next
    /// run in the group goes on from there; -o then applies only where the
    /// group has no offset (beginning or end).
    #[arg(long)]
    pub group: Option<String>,
}

/// Runs `tail`: records on standard output, warnings on standard error.
pub fn run(args: TailArgs) -> Result<(), CliError> {
    let kafka = args.cluster.config();
    let options = TailOptions {
        topic: args.topic,
        start: args.offset,
        exit_at_end: args.exit,
        count: args.count,
        json: args.json,
        group: args.group,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut out = std::io::stdout().lock();
        tail(
            &kafka,
            &options,
            &mut out,
            |warning| eprintln!("warning: {warning}"),
            shutdown_signal(),
        )
        .await
    })?;
    Ok(())
}
