//! `ordersaga run`: all three services in this process, on the embedded
//! broker (nothing to install) or on a real cluster with `--brokers`.

use super::common::{
    announce_readiness, cluster, shutdown_signal, stop_within_bound, KafkaArgs, ServiceArgs,
};
use super::CliError;
use crate::kafka::topics::all_topics;
use crate::node::{self, RunningService};
use clap::Args;
use ordersaga_events::topics::Service as ServiceName;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kafka bootstrap servers (`host:port,…`). Without it, an embedded broker
    /// is started in this process.
    #[arg(long)]
    pub brokers: Option<String>,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    service: ServiceArgs,
    /// Create users and products, place orders that succeed, fail for stock
    /// and fail for funds, print each order's status and saga path, then stop.
    #[arg(long)]
    pub demo: bool,
}

/// Runs the three services until Ctrl-C or SIGTERM.
pub fn run(args: RunArgs) -> Result<(), CliError> {
    actix_rt::System::new().block_on(async move {
        let started = std::time::Instant::now();
        // The embedded broker lives exactly as long as this block.
        let (kafka, embedded) = cluster(
            args.brokers.as_deref(),
            |brokers| args.kafka.config(brokers),
            &all_topics(),
        )?;
        let brokers = kafka.brokers.clone();
        let options = args.service.node_options(kafka);
        let mut running: Vec<RunningService> = Vec::new();
        for name in ServiceName::ALL {
            match node::start(name, &options).await {
                Ok(service) => running.push(service),
                Err(err) => {
                    for service in running {
                        service.stop().await;
                    }
                    return Err(err.into());
                }
            }
        }
        match &embedded {
            Some(_) => println!("ordersaga is running on an embedded Kafka broker at {brokers}"),
            None => println!("ordersaga is running on Kafka at {brokers}"),
        }
        println!(
            "  stores under {}; topics: users|orders|inventory.commands and .events{}",
            options.data_dir.display(),
            options
                .kafka
                .namespace
                .as_ref()
                .map(|ns| format!(" (prefixed {ns}.)"))
                .unwrap_or_default()
        );
        println!("  any Kafka client can connect with bootstrap.servers={brokers}");
        for service in &running {
            if let Some(address) = service.http_address() {
                println!("http {} http://{address}", service.name.name());
            }
        }
        for service in &running {
            announce_readiness(service, started);
        }
        let demo = if args.demo {
            crate::demo::run(&options.kafka, &running).await
        } else {
            println!("  press Ctrl-C (or send SIGTERM) to stop");
            shutdown_signal().await;
            Ok(())
        };
        println!("stopping: finishing commands in flight and publishing the outbox…");
        stop_within_bound(running).await;
        println!("stopped");
        drop(embedded);
        demo
    })
}
