//! `ordersaga replay`: rebuild one aggregate or all of a service's from
//! their events, optionally as of a sequence or a time, and print the state;
//! `--check` compares the replay with the snapshot and the live recovery
//! path instead.

use super::serve::Which;
use super::CliError;
use crate::ops::progress;
use crate::ops::replay::check::{check_all, check_stream, CheckTotals, Difference};
use crate::ops::replay::{
    default_jobs, open_store, parse_stream, replay_all, replay_stream, service_of, At, ReplayError,
    Replayed,
};
use chrono::SecondsFormat;
use clap::Args;
use ordersaga_events::topics::Service;
use ordersaga_events::StreamId;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The data directory (`DATA/users`, `DATA/orders`, `DATA/inventory`).
    /// The service must be stopped: a running one holds its store.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// The store to replay: users, orders (orders and their sagas) or
    /// inventory. A `--stream KIND:UUID` implies it.
    #[arg(long, value_enum)]
    pub service: Option<Which>,
    /// One aggregate: `KIND:UUID` (`order:…`, `saga:…`, `user:…`,
    /// `product:…`) or a bare UUID of the service's main kind. Without it,
    /// every aggregate of the service, one per line.
    #[arg(long)]
    pub stream: Option<String>,
    /// Replay as of a sequence number (events 1..=SEQ of each stream) or an
    /// RFC 3339 time (the events recorded at or before it).
    #[arg(long, value_name = "SEQ|TIME", conflicts_with = "check")]
    pub at: Option<At>,
    /// Compare the replay from scratch with the snapshot + tail recovery of
    /// the live service and with the stored snapshot; print each difference
    /// and exit 1 when there is any.
    #[arg(long)]
    pub check: bool,
    /// JSON, one object per line.
    #[arg(long)]
    pub json: bool,
    /// Threads replaying when every aggregate is (default: one per core).
    /// The output is in stream order whatever the number.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

/// Runs `replay`.
pub fn run(args: ReplayArgs) -> Result<(), CliError> {
    let (service, stream) = target(&args)?;
    let journal = open_store(&args.data, service)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let done = match (&stream, args.check) {
        (Some(stream), false) => one(
            &mut out,
            replay_stream(&journal, *stream, args.at)?,
            args.json,
        ),
        (None, false) => {
            let jobs = args.jobs.unwrap_or_else(default_jobs).max(1);
            all(&mut out, &journal, service, args.at, jobs, args.json)
        }
        (Some(stream), true) => {
            let mut totals = CheckTotals::default();
            let found = check_stream(&journal, *stream, &mut totals)?;
            for difference in &found {
                difference_line(&mut out, difference, args.json)?;
            }
            summary(&mut out, &totals, args.json)
        }
        (None, true) => {
            let bar = progress::bar(
                progress::visible(args.json),
                Some(journal.log_head().saturating_sub(1)),
                "check",
            );
            let totals = check_all(&journal, service, &bar, |difference| {
                // Rare lines, each out at once, with the bar out of the way.
                bar.suspend(|| {
                    difference_line(&mut out, difference, args.json)?;
                    Ok(out.flush()?)
                })
            });
            bar.finish_and_clear();
            totals.and_then(|totals| summary(&mut out, &totals, args.json))
        }
    };
    let done = done.and_then(|()| Ok(out.flush()?));
    match done {
        // `replay … | head`: the reader has seen enough.
        Err(ReplayError::Output(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The store and the stream (if one) the arguments name.
fn target(args: &ReplayArgs) -> Result<(Service, Option<StreamId>), CliError> {
    let named = args.service.map(Service::from);
    match (&args.stream, named) {
        (None, None) => Err("say which store: --service users|orders|inventory".into()),
        (None, Some(service)) => Ok((service, None)),
        (Some(text), Some(service)) => Ok((service, Some(parse_stream(service, text)?))),
        (Some(text), None) => {
            let stream: StreamId = text.trim().parse().map_err(|_| {
                format!("--stream {text:?} needs --service, or write it as KIND:UUID")
            })?;
            Ok((service_of(stream.kind), Some(stream)))
        }
    }
}

fn time(replayed: &Replayed) -> String {
    replayed
        .recorded_at
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| "-".to_owned())
}

/// One aggregate: a header line, then its state as indented JSON.
fn one(out: &mut impl Write, replayed: Replayed, json: bool) -> Result<(), ReplayError> {
    if json {
        writeln!(out, "{}", replayed.to_json())?;
        return Ok(());
    }
    if replayed.version == 0 {
        writeln!(
            out,
            "{}: no event yet at that point (the stream has {})",
            replayed.stream, replayed.head
        )?;
    } else {
        writeln!(
            out,
            "{} at version {} of {}, event #{} recorded {}",
            replayed.stream,
            replayed.version,
            replayed.head,
            replayed.version,
            time(&replayed)
        )?;
    }
    let state = serde_json::to_string_pretty(&replayed.state)
        .unwrap_or_else(|err| format!("(state not printable: {err})"));
    writeln!(out, "{state}")?;
    Ok(())
}

/// Every aggregate, one per line, with a progress bar on a terminal and the
/// totals and rate on stderr.
fn all(
    out: &mut impl Write,
    journal: &ordersaga_actors::Journal,
    service: Service,
    at: Option<At>,
    jobs: usize,
    json: bool,
) -> Result<(), ReplayError> {
    let started = Instant::now();
    // Every aggregate prints a line: on a terminal those lines are the
    // progress, and a bar drawn between them would garble both. The bar is
    // for output sent to a file or a pipe.
    let bar = progress::bar(
        progress::visible(json) && !std::io::stdout().is_terminal(),
        Some(journal.log_head().saturating_sub(1)),
        "replay",
    );
    let totals = replay_all(journal, service, at, jobs, &bar, |replayed| {
        if json {
            writeln!(out, "{}", replayed.to_json())?;
        } else {
            let state = serde_json::to_string(&replayed.state)
                .unwrap_or_else(|err| format!("(state not printable: {err})"));
            // The time of the last event is known only at a time cut.
            match replayed.recorded_at {
                Some(_) => writeln!(
                    out,
                    "{}  v{}/{}  {}  {}",
                    replayed.stream,
                    replayed.version,
                    replayed.head,
                    time(&replayed),
                    state
                )?,
                None => writeln!(
                    out,
                    "{}  v{}/{}  {}",
                    replayed.stream, replayed.version, replayed.head, state
                )?,
            }
        }
        Ok(())
    });
    bar.finish_and_clear();
    let totals = totals?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {} aggregates of {}, {} events, in {:.2} s ({:.0} events/s, {jobs} {})",
        totals.aggregates,
        service.name(),
        totals.events,
        seconds,
        totals.events as f64 / seconds.max(1e-9),
        if jobs == 1 { "thread" } else { "threads" }
    );
    Ok(())
}

fn difference_line(
    out: &mut impl Write,
    difference: &Difference,
    json: bool,
) -> Result<(), ReplayError> {
    if json {
        let line = serde_json::to_string(difference).unwrap_or_default();
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "DIFF {} {}: {}",
            difference.stream,
            difference.path.name(),
            difference.what
        )?;
    }
    Ok(())
}

/// The closing line of a check; an error (exit 1) when anything differed.
fn summary(out: &mut impl Write, totals: &CheckTotals, json: bool) -> Result<(), ReplayError> {
    if json {
        writeln!(out, "{}", serde_json::json!({ "totals": totals }))?;
    } else {
        writeln!(
            out,
            "checked {} aggregates ({} events, {} snapshots compared, {} of an older layout \
             ignored): {} differences",
            totals.aggregates,
            totals.events,
            totals.snapshots,
            totals.stale_snapshots,
            totals.differences
        )?;
    }
    if totals.differences > 0 {
        out.flush()?;
        return Err(ReplayError::Differences(totals.differences));
    }
    Ok(())
}
