//! `ordersaga journal-load` (hidden): appends to a store under load and prints
//! one line per durable append, so a crash test can kill it mid-write and check
//! that every acknowledged append survived.

use super::CliError;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `journal-load`.
#[derive(Debug, Args)]
pub struct JournalLoadArgs {
    /// The store directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Distinct streams written.
    #[arg(long, default_value_t = 64)]
    pub streams: usize,
    /// Appends in total; 0 runs until killed.
    #[arg(long, default_value_t = 0)]
    pub appends: u64,
}

/// Runs the load.
pub fn run(args: JournalLoadArgs) -> Result<(), CliError> {
    let _ = args;
    Err("journal-load is not implemented yet".into())
}
