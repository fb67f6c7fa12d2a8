//! `ordersaga verify`: integrity and invariants of the three stores.

use super::CliError;
use crate::verify;
use clap::Args;
use ordersaga_actors::Journal;
use std::path::PathBuf;

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data directory (with `users/`, `inventory/`, `orders/`). The
    /// services must be stopped: a store is opened by one process at a time.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Treat sagas that are still running as violations.
    #[arg(long)]
    pub finished: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Checks the stores; exits 1 when anything is wrong.
pub fn run(args: VerifyArgs) -> Result<(), CliError> {
    let open = |name: &str| -> Result<Journal, CliError> {
        let path = args.data.join(name);
        if !path.exists() {
            return Err(format!("no store at {}", path.display()).into());
        }
        Ok(Journal::open_path(path)?)
    };
    let report = verify::check(
        &open("users")?,
        &open("inventory")?,
        &open("orders")?,
        args.finished,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let sagas: Vec<String> = report
            .sagas
            .iter()
            .map(|(phase, count)| format!("{count} {phase}"))
            .collect();
        println!(
            "{} users, {} products, {} orders; sagas: {}",
            report.users,
            report.products,
            report.orders,
            if sagas.is_empty() {
                "none".to_owned()
            } else {
                sagas.join(", ")
            }
        );
        for violation in &report.violations {
            println!("VIOLATION {violation}");
        }
        if report.is_ok() {
            println!("every invariant holds");
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(format!("{} violations", report.violations.len()).into())
    }
}
