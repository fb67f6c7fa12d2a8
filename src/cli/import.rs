//! `ordersaga import`: an export file into a new, empty store. See
//! [`crate::ops::import`].

use super::serve::Which;
use super::CliError;
use crate::ops::import::{import, ImportSummary};
use crate::ops::progress;
use clap::Args;
use ordersaga_events::topics::Service;
use std::io::BufReader;
use std::path::PathBuf;

/// Arguments of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The data directory; the new store is `DATA/SERVICE`, which must not
    /// exist or be empty. On any error nothing is left there.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// The service whose store to make; the export must be of it.
    #[arg(long)]
    pub service: Which,
    /// The export file (`ordersaga export`, either format); `-` reads
    /// standard input.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `import`.
pub fn run(args: ImportArgs) -> Result<(), CliError> {
    let service: Service = args.service.into();
    let bar = progress::bar(progress::visible(args.json), None, "import");
    let summary = if args.file.as_os_str() == "-" {
        let input = BufReader::new(std::io::stdin().lock());
        import(input, "standard input", &args.data, service, &bar)?
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|err| format!("cannot open {}: {err}", args.file.display()))?;
        let source = args.file.display().to_string();
        import(
            BufReader::with_capacity(1 << 20, file),
            &source,
            &args.data,
            service,
            &bar,
        )?
    };
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(summary: &ImportSummary) {
    let store = &summary.store;
    println!(
        "imported {} events of {} streams from {} into {} ({} index entries built, {} accepted commands remembered, {} sagas waiting for replies)",
        store.events,
        store.streams,
        summary.source,
        store.store.display(),
        store.index_entries,
        store.commands_remembered,
        store.waiting_sagas
    );
    println!(
        "the outbox is empty: these events are on the {} events topic already (ordersaga republish publishes them again)",
        summary.service
    );
    if store.accounts_without_password > 0 {
        println!(
            "note: {} user accounts have no password hash (hashes are never exported): \
             their logins fail until their passwords are set again",
            store.accounts_without_password
        );
    }
}
