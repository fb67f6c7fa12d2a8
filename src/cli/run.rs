//! `ordersaga run`.

use super::CliError;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the services keep their stores (one directory per service).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
}

/// Runs the system.
pub fn run(args: RunArgs) -> Result<(), CliError> {
    let _ = args;
    Ok(())
}
