//! The `ordersaga` binary: see `ordersaga --help`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = ordersaga::cli::Cli::parse();
    ordersaga::cli::init_tracing(cli.verbose);
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
