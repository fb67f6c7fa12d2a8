//! `ordersaga republish`: a stopped store's events published to its events
//! topic again, with the same event ids. See [`crate::ops::republish`].

use super::common::KafkaArgs;
use super::serve::Which;
use super::CliError;
use crate::kafka::KafkaConfig;
use crate::ops::progress;
use crate::ops::republish::{dry_run, republish, RepublishOptions, RepublishSummary, Start};
use crate::ops::tail::parse_time;
use chrono::{DateTime, Utc};
use clap::Args;
use ordersaga_events::topics::Service;
use ordersaga_events::Format;
use std::path::PathBuf;

/// Arguments of `republish`.
#[derive(Debug, Args)]
pub struct RepublishArgs {
    /// The data directory; the store is `DATA/SERVICE`. The service must be
    /// stopped: a running service holds its store's lock.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// The service whose events to publish again.
    #[arg(long)]
    pub service: Which,
    /// Publish every event from this global log position on (1: all).
    #[arg(long, conflicts_with = "since", required_unless_present = "since")]
    pub from: Option<u64>,
    /// Publish every event recorded at or after TIME (RFC 3339, epoch
    /// milliseconds, or an age: 15m, 2h, 7d).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Count what would be published, and publish nothing (no broker is
    /// contacted).
    #[arg(long)]
    pub dry_run: bool,
    /// Kafka bootstrap servers (`host:port,…`).
    #[arg(long, required_unless_present = "dry_run")]
    pub brokers: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Encoding of the published events: json (what the services publish by
    /// default) or bincode.
    #[arg(long, default_value = "json")]
    pub event_format: Format,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `republish`.
pub fn run(args: RepublishArgs) -> Result<(), CliError> {
    let service: Service = args.service.into();
    let start = match (args.from, args.since) {
        (Some(position), None) => Start::Position(position),
        (None, Some(since)) => Start::Since(since),
        _ => return Err("give exactly one of --from POSITION and --since TIME".into()),
    };
    let options = RepublishOptions {
        service,
        start,
        format: args.event_format,
    };
    let bar = progress::bar(progress::visible(args.json), Some(0), "republish");
    let summary = match (&args.brokers, args.dry_run) {
        (brokers, true) => {
            // The topic's name only: a dry run contacts no broker.
            let kafka = args.kafka.config(brokers.as_deref().unwrap_or(""));
            dry_run(
                &args.data,
                kafka.name(service.events_topic()),
                &options,
                &bar,
            )?
        }
        (Some(brokers), false) => {
            let kafka: KafkaConfig = args.kafka.config(brokers);
            republish(&args.data, &kafka, &options, &bar)?
        }
        (None, false) => return Err("--brokers is required (or --dry-run)".into()),
    };
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(service, &summary);
    }
    Ok(())
}

fn print_summary(service: Service, summary: &RepublishSummary) {
    let range = summary
        .positions
        .map_or("none".to_string(), |(a, b)| format!("{a}..={b}"));
    if summary.dry_run {
        println!(
            "dry run: would republish {} events of the {} store (log positions {range}) to {}; nothing was produced",
            summary.events,
            service.name(),
            summary.topic
        );
    } else {
        println!(
            "republished {} events of the {} store (log positions {range}) to {}, same event ids: \
             consumers that drop seen event ids ignore them",
            summary.events,
            service.name(),
            summary.topic
        );
    }
}
