//! `ordersaga history STREAM`: a stream's events with sequence, time,
//! causation and correlation; an order's and its saga's interleaved in time.

use super::CliError;
use crate::ops::history::{history, locate, summary, time_text, Entry};
use crate::ops::replay::ReplayError;
use clap::Args;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Arguments of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The stream: `order:UUID` (with its saga), `saga:UUID` (with its
    /// order), `user:UUID`, `product:UUID`, or a bare UUID, looked up in the
    /// orders, users and inventory stores in turn.
    pub stream: String,
    /// The data directory (`DATA/users`, `DATA/orders`, `DATA/inventory`).
    /// The service must be stopped: a running one holds its store.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// One JSON object per event and line, with the event's whole payload.
    #[arg(long)]
    pub json: bool,
}

/// Runs `history`.
pub fn run(args: HistoryArgs) -> Result<(), CliError> {
    let (journal, stream) = locate(&args.data, &args.stream)?;
    let entries = history(&journal, stream)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let written = if args.json {
        json(&mut out, &entries)
    } else {
        text(&mut out, &entries)
    };
    match written.and_then(|()| out.flush()) {
        // `history … | head`: the reader has seen enough.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(ReplayError::Output(err).into()),
        Ok(()) => Ok(()),
    }
}

fn json(out: &mut impl Write, entries: &[Entry]) -> std::io::Result<()> {
    for entry in entries {
        writeln!(out, "{}", serde_json::to_string(entry)?)?;
    }
    Ok(())
}

/// A header naming the streams, then one line per event: time, stream
/// kind (the streams shown share one id), sequence, event, summary,
/// causation and correlation ids.
fn text(out: &mut impl Write, entries: &[Entry]) -> std::io::Result<()> {
    let mut streams: Vec<_> = entries.iter().map(|e| e.stream).collect();
    streams.sort();
    streams.dedup();
    let names: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
    writeln!(out, "{}: {} events", names.join(" + "), entries.len())?;
    let summaries: Vec<String> = entries.iter().map(|e| summary(&e.payload)).collect();
    let event_width = entries
        .iter()
        .map(|e| e.event.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let summary_width = summaries
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    writeln!(
        out,
        "{:<30}  {:<7}  {:>4}  {:<event_width$}  {:<summary_width$}  {:<36}  CORRELATION",
        "TIME", "STREAM", "SEQ", "EVENT", "DETAILS", "CAUSATION"
    )?;
    for (entry, details) in entries.iter().zip(&summaries) {
        // Pad by characters: a summary may hold a multi-byte `…`.
        let pad = summary_width.saturating_sub(details.chars().count());
        writeln!(
            out,
            "{:<30}  {:<7}  {:>4}  {:<event_width$}  {details}{:pad$}  {}  {}",
            time_text(entry.recorded_at),
            entry.stream.kind.name(),
            entry.sequence,
            entry.event,
            "",
            entry.causation_id,
            entry.correlation_id,
        )?;
    }
    Ok(())
}
