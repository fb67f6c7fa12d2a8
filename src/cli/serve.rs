//! `ordersaga serve SERVICE`: one service in this process, on a real cluster.
//! Run one process per service (or several per service: they share the work
//! through their consumer group).

use super::common::{shutdown_signal, KafkaArgs, ServiceArgs};
use super::CliError;
use crate::node;
use clap::{Args, ValueEnum};
use ordersaga_events::topics::Service as ServiceName;

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
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    options: ServiceArgs,
}

/// Runs one service until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<(), CliError> {
    actix_rt::System::new().block_on(async move {
        let options = args.options.node_options(args.kafka.config(&args.brokers));
        let name: ServiceName = args.service.into();
        let running = node::start(name, &options).await?;
        println!(
            "ordersaga {} is running on Kafka at {} (store {})",
            name.name(),
            args.brokers,
            options.data_dir.join(name.name()).display()
        );
        shutdown_signal().await;
        running.stop().await;
        println!("stopped");
        Ok(())
    })
}
