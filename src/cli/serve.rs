//! `ordersaga serve SERVICE`: one service in this process, on a real cluster.
//! Run one process per service (or several per service: they share the work
//! through their consumer group).

use super::common::{
    announce_readiness, shutdown_signal, stop_within_bound, KafkaArgs, ServiceArgs,
};
use super::CliError;
use crate::node;
use clap::{Args, ValueEnum};
use ordersaga_events::topics::Service as ServiceName;
use std::time::Instant;

/// Which service to run.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Which {
    /// Accounts and money.
    Users,
    /// Orders and the order saga.
    Orders,
    /// Products and stock.
    Inventory,
}

impl From<Which> for ServiceName {
    fn from(which: Which) -> Self {
        match which {
            Which::Users => ServiceName::Users,
            Which::Orders => ServiceName::Orders,
            Which::Inventory => ServiceName::Inventory,
        }
    }
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service to run.
    pub service: Which,
    /// Kafka bootstrap servers (`host:port,…`).
    #[arg(long)]
    pub brokers: String,
    /// Where the instance's HTTP face listens (port 0 picks a free one;
    /// the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub http: String,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    options: ServiceArgs,
}

/// Runs one service until Ctrl-C or SIGTERM.
///
/// Prints `ready SERVICE after N ms: …` once every consumer owns partitions
/// (and `not ready …` whenever that stops being so). A signal during start-up
/// (while the broker does not answer, say) ends the process at once.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    actix_rt::System::new().block_on(async move {
        let started = Instant::now();
        let mut options = args.options.node_options(args.kafka.config(&args.brokers));
        options.http = Some(args.http.clone());
        let name: ServiceName = args.service.into();
        let running = tokio::select! {
            running = node::start(name, &options) => running?,
            _ = shutdown_signal() => {
                println!("stopped before {} started", name.name());
                return Ok(());
            }
        };
        println!(
            "ordersaga {} is running on Kafka at {} (store {}, instance {})",
            name.name(),
            args.brokers,
            options.data_dir.join(name.name()).display(),
            running.instance_id()
        );
        if let Some(address) = running.http_address() {
            println!("http {} http://{address}", name.name());
        }
        announce_readiness(&running, started);
        shutdown_signal().await;
        stop_within_bound(vec![running]).await;
        println!("stopped");
        Ok(())
    })
}
