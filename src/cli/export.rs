//! `ordersaga export`: a service's events as JSON lines (or bincode), for
//! `ordersaga import`. See [`crate::ops::export`] for the file format.

use super::serve::Which;
use super::CliError;
use crate::ops::export::{
    export, format_name, open_store, store_path, ExportOptions, ExportSummary,
};
use crate::ops::progress;
use crate::ops::tail::parse_time;
use chrono::{DateTime, Utc};
use clap::Args;
use ordersaga_events::topics::Service;
use ordersaga_events::Format;
use serde::Serialize;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The data directory; the store is `DATA/SERVICE`. The service must be
    /// stopped: a running service holds its store's lock.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// The service whose store to export.
    #[arg(long)]
    pub service: Which,
    /// Only events recorded at or after TIME (RFC 3339, epoch milliseconds,
    /// or an age: 15m, 2h, 7d). A partial export cannot be imported.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only events recorded before TIME (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Where to write: a file (written whole or not at all), or `-` for
    /// standard output (the default).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// json: one envelope per line, as on the events topics; bincode:
    /// compact length-prefixed frames, for `ordersaga import` only.
    #[arg(long, default_value = "json")]
    pub format: Format,
    /// Print the summary as JSON (on standard error when the export itself
    /// goes to standard output).
    #[arg(long)]
    pub json: bool,
}

/// The summary printed after an export.
#[derive(Serialize)]
struct Report<'a> {
    service: &'a str,
    store: &'a Path,
    output: String,
    format: Format,
    #[serde(flatten)]
    summary: &'a ExportSummary,
}

/// Runs `export`.
pub fn run(args: ExportArgs) -> Result<(), CliError> {
    let service: Service = args.service.into();
    let journal = open_store(&args.data, service)?;
    let options = ExportOptions {
        service,
        since: args.since,
        until: args.until,
        format: args.format,
    };
    let bar = progress::bar(
        progress::visible(args.json),
        Some(journal.log_head().saturating_sub(1)),
        "export",
    );
    let to_file = args.output.as_ref().filter(|p| p.as_os_str() != "-");
    let summary = match to_file {
        None => {
            let out = BufWriter::new(std::io::stdout().lock());
            export(&journal, out, &options, &bar)?
        }
        Some(path) => export_to_file(&journal, path, &options, &bar)?,
    };
    bar.finish_and_clear();
    let store = store_path(&args.data, service);
    let output = to_file.map_or("-".to_string(), |p| p.display().to_string());
    let report = Report {
        service: service.name(),
        store: &store,
        output,
        format: args.format,
        summary: &summary,
    };
    let text = if args.json {
        serde_json::to_string(&report)?
    } else {
        let range = summary
            .positions
            .map_or("none".to_string(), |(a, b)| format!("{a}..={b}"));
        format!(
            "exported {} events of {} streams from the {} store ({}), log positions {range}, to {} ({})",
            summary.events,
            summary.streams,
            service.name(),
            store.display(),
            report.output,
            format_name(args.format)
        )
    };
    // The summary never mixes with an export written to standard output.
    if to_file.is_some() {
        println!("{text}");
    } else {
        eprintln!("{text}");
    }
    Ok(())
}

/// Exports into `path` through a temporary file beside it, renamed into
/// place only when the export is complete: a failed export leaves no file
/// that could pass for one.
fn export_to_file(
    journal: &ordersaga_actors::Journal,
    path: &Path,
    options: &ExportOptions,
    bar: &indicatif::ProgressBar,
) -> Result<ExportSummary, CliError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let written = (|| -> Result<ExportSummary, CliError> {
        let file = std::fs::File::create(&partial)
            .map_err(|err| format!("cannot create {}: {err}", partial.display()))?;
        let mut out = BufWriter::new(file);
        let summary = export(journal, &mut out, options, bar)?;
        let file = out.into_inner().map_err(|err| err.into_error())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
            .map_err(|err| format!("cannot move the export to {}: {err}", path.display()))?;
        Ok(summary)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}
