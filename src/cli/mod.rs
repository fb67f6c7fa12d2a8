//! The command line: one file per subcommand.

mod bench;
mod bench_actors;
mod bench_http;
mod common;
mod deadletters;
mod export;
mod gateway;
mod history;
mod import;
mod journal_load;
mod replay;
mod republish;
mod restore;
mod run;
mod sagas;
mod serve;
mod services;
mod tail;
mod verify;

use clap::{Parser, Subcommand};

/// Why a subcommand failed; printed as `error: …` with exit status 1.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// ordersaga: an event-sourced order saga over actix actors, sled and Kafka.
#[derive(Debug, Parser)]
#[command(name = "ordersaga", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all three services in this process (embedded Kafka unless --brokers).
    Run(run::RunArgs),
    /// Run one service in this process against a Kafka cluster.
    Serve(serve::ServeArgs),
    /// Run the API gateway: the public HTTP front (JWT, rate limits,
    /// circuit breakers, read models).
    Gateway(gateway::GatewayCmdArgs),
    /// Inspect order sagas and retry stuck ones.
    Sagas(sagas::SagasArgs),
    /// List the live service instances, from their heartbeats.
    Services(services::ServicesArgs),
    /// Rebuild aggregates from their events (optionally as of a sequence or
    /// a time) and print their state; --check compares with the snapshot
    /// and the live recovery path.
    Replay(replay::ReplayArgs),
    /// A stream's events in order; for an order, its saga interleaved.
    History(history::HistoryArgs),
    /// Decode and print the records of any topic of the system.
    Tail(tail::TailArgs),
    /// Write a service's events as JSON lines (or bincode).
    Export(export::ExportArgs),
    /// Load an export into an empty store, checking sequences and ids.
    Import(import::ImportArgs),
    /// Publish a store's events to its events topic again, same event ids.
    Republish(republish::RepublishArgs),
    /// Rebuild a service's store from its events topic.
    Restore(restore::RestoreArgs),
    /// Inspect the dead-letter topic and send fixed records back.
    Deadletters(deadletters::DeadlettersArgs),
    /// Check the stores' integrity and the invariants across services.
    Verify(verify::VerifyArgs),
    /// Drive N orders through the whole saga at a chosen concurrency and
    /// compare them with single-command round trips measured in the same run.
    Bench(bench::BenchArgs),
    /// Print the version of the binary and of the wire contract.
    Version,
    /// Append to a store under load, printing each durable append (crash tests).
    #[command(name = "journal-load", hide = true)]
    JournalLoad(journal_load::JournalLoadArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Command::Run(args) => run::run(args),
            Command::Serve(args) => serve::run(args),
            Command::Gateway(args) => gateway::run(args),
            Command::Sagas(args) => sagas::run(args),
            Command::Services(args) => services::run(args),
            Command::Replay(args) => replay::run(args),
            Command::History(args) => history::run(args),
            Command::Tail(args) => tail::run(args),
            Command::Export(args) => export::run(args),
            Command::Import(args) => import::run(args),
            Command::Republish(args) => republish::run(args),
            Command::Restore(args) => restore::run(args),
            Command::Deadletters(args) => deadletters::run(args),
            Command::Verify(args) => verify::run(args),
            Command::Bench(args) => bench::run(args),
            Command::Version => {
                println!(
                    "ordersaga {} (event schema: user v{}, order v{}, inventory v{})",
                    env!("CARGO_PKG_VERSION"),
                    <ordersaga_events::user::UserEvent as ordersaga_events::Versioned>::SCHEMA_VERSION,
                    <ordersaga_events::order::OrderEvent as ordersaga_events::Versioned>::SCHEMA_VERSION,
                    <ordersaga_events::inventory::InventoryEvent as ordersaga_events::Versioned>::SCHEMA_VERSION,
                );
                Ok(())
            }
            Command::JournalLoad(args) => journal_load::run(args),
        }
    }
}

/// Installs the log subscriber (binaries only; libraries never do).
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},actix_server=warn"))
    });
    // Colour codes only for a terminal: logs redirected to a file stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
