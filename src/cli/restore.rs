//! `ordersaga restore`: a service's store rebuilt from its events topic.
//! See [`crate::ops::restore`].

use super::common::KafkaArgs;
use super::serve::Which;
use super::CliError;
use crate::ops::progress;
use crate::ops::restore::{restore, RestoreOptions, RestoreSummary, DEFAULT_IDLE};
use clap::Args;
use ordersaga_events::topics::Service;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The service whose store to rebuild.
    #[arg(long)]
    pub service: Which,
    /// Kafka bootstrap servers (`host:port,…`).
    #[arg(long)]
    pub brokers: String,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The data directory of the new store: it is written to
    /// `DATA/SERVICE`, which must not exist or be empty. On any error
    /// nothing is left there.
    #[arg(long)]
    pub data: PathBuf,
    /// Restore only the streams of this partition of the events topic (what
    /// one instance of a scaled-out service owns).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Give up when the broker sends nothing for this long, in seconds.
    #[arg(long, default_value_t = DEFAULT_IDLE.as_secs())]
    pub idle_timeout_s: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `restore`.
pub fn run(args: RestoreArgs) -> Result<(), CliError> {
    let service: Service = args.service.into();
    let options = RestoreOptions {
        kafka: args.kafka.config(&args.brokers),
        service,
        data: args.data.clone(),
        partition: args.partition,
        idle: Duration::from_secs(args.idle_timeout_s.max(1)),
    };
    let bar = progress::bar(progress::visible(args.json), Some(0), "restore");
    let summary = restore(&options, &bar)?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(summary: &RestoreSummary) {
    let store = &summary.store;
    println!(
        "restored {} events of {} streams from {} ({} records in {} partitions, {} duplicates dropped) into {}",
        store.events,
        store.streams,
        summary.topic,
        summary.records,
        summary.partitions.len(),
        summary.duplicates,
        store.store.display()
    );
    println!(
        "indexes: {} archive and list entries built, {} accepted commands remembered from their events, {} sagas waiting for replies (their timer resends)",
        store.index_entries, store.commands_remembered, store.waiting_sagas
    );
    println!(
        "the outbox is empty (these events are on the topic already); the store has no consumer \
         offsets: the service resumes its command topics from its consumer group's committed \
         offsets; an accepted command delivered again is answered with its first reply, a \
         rejected one is decided again"
    );
    if store.accounts_without_password > 0 {
        println!(
            "note: {} user accounts have no password hash (hashes are never published): \
             their logins fail until their passwords are set again",
            store.accounts_without_password
        );
    }
}
