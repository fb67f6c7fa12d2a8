//! `ordersaga run`: all three services in this process, on the embedded
//! broker (nothing to install) or on a real cluster with `--brokers`.

use super::common::{
    announce_readiness, cluster, shutdown_signal, stop_within_bound, KafkaArgs, ServiceArgs,
};
use super::gateway::GatewayArgs;
use super::CliError;
use crate::gateway::jwt::TokenKeys;
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
    /// Where the API gateway serves HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub gateway_http: String,
    /// Do not start the API gateway.
    #[arg(long)]
    pub no_gateway: bool,
    #[command(flatten)]
    gateway: GatewayArgs,
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
        let mut topics = all_topics();
        topics.extend(crate::gateway::server::topics(&args.gateway.gateway_id));
        topics.sort();
        topics.dedup();
        let (kafka, embedded) = cluster(
            args.brokers.as_deref(),
            |brokers| args.kafka.config(brokers),
            &topics,
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
        let gateway = if args.no_gateway {
            None
        } else {
            // A key for this session unless one is configured: tokens die
            // with the process.
            let session_key = TokenKeys::generated(
                &args.gateway.jwt_issuer,
                std::time::Duration::from_secs(args.gateway.token_ttl_secs.max(1)),
            );
            let configured = args.gateway.jwt_key_file.is_some()
                || std::env::var_os(super::gateway::KEY_VARIABLE).is_some();
            let options = args.gateway.options(
                options.kafka.clone(),
                &args.gateway_http,
                options.data_dir.join("gateway"),
                (!configured).then_some(session_key),
            );
            let started = match options {
                Ok(options) => crate::gateway::start(options).await.map_err(CliError::from),
                Err(err) => Err(err),
            };
            match started {
                Ok(gateway) => {
                    println!("gateway http://{}", gateway.address);
                    Some(gateway)
                }
                Err(err) => {
                    stop_within_bound(running).await;
                    return Err(err);
                }
            }
        };
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
        if let Some(gateway) = gateway {
            gateway.stop().await;
        }
        stop_within_bound(running).await;
        println!("stopped");
        drop(embedded);
        demo
    })
}
