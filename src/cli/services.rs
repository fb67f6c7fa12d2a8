//! `ordersaga services`: the live service instances of a cluster, from their
//! heartbeats on `services.heartbeats` ([`crate::registry`]).

use super::common::{shutdown_signal, KafkaArgs};
use super::CliError;
use crate::registry::{Instance, Registry, Since};
use chrono::{DateTime, Utc};
use clap::Args;
use std::io::IsTerminal;
use std::time::Duration;

/// How long the first answer waits for the heartbeats already on the topic.
const CATCH_UP: Duration = Duration::from_secs(10);

/// How often `--watch` looks again. Expiry happens with time alone, so the
/// view is refreshed on a clock, not only when a heartbeat comes.
const REFRESH: Duration = Duration::from_secs(1);

/// Arguments of `services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Kafka bootstrap servers (`host:port,…`).
    #[arg(long)]
    pub brokers: String,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Keep the view up to date until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// JSON lines instead of a table: one per live instance; with --watch,
    /// one `{"at": …, "instances": […]}` line each time the set of instances
    /// or what they own changes.
    #[arg(long)]
    pub json: bool,
    /// How far back to read heartbeats, in milliseconds. It must span three
    /// heartbeat periods of the slowest instance to show it at once.
    #[arg(long, default_value_t = 60_000)]
    pub window_ms: u64,
}

/// Prints the live instances, once or until Ctrl-C.
pub fn run(args: ServicesArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let kafka = args.kafka.config(&args.brokers);
        let since = Since::Window(Duration::from_millis(args.window_ms));
        let registry = Registry::start(&kafka, since).await?;
        if !registry.caught_up(CATCH_UP).await {
            eprintln!(
                "warning: not every heartbeat was read within {} s; the list may be short",
                CATCH_UP.as_secs()
            );
        }
        if !args.watch {
            let live = registry.all_live();
            if args.json {
                for instance in &live {
                    println!("{}", serde_json::to_string(instance)?);
                }
            } else {
                print!("{}", table(&live, Utc::now()));
            }
            return Ok(());
        }
        let stop = shutdown_signal();
        tokio::pin!(stop);
        let mut shown: Option<Vec<Shape>> = None;
        let clear = std::io::stdout().is_terminal();
        loop {
            let live = registry.all_live();
            let now = Utc::now();
            if args.json {
                let shape: Vec<Shape> = live.iter().map(Shape::of).collect();
                if shown.as_ref() != Some(&shape) {
                    shown = Some(shape);
                    // Written out, so the instances keep the field order of
                    // the one-shot lines (a `json!` map would sort them).
                    println!(
                        "{{\"at\":{},\"instances\":{}}}",
                        serde_json::to_string(&now)?,
                        serde_json::to_string(&live)?
                    );
                }
            } else {
                if clear {
                    // Clear the screen and go home: a table that stays put.
                    print!("\x1b[2J\x1b[H");
                } else {
                    println!();
                }
                println!("{} (Ctrl-C to stop)", now.format("%H:%M:%S"));
                print!("{}", table(&live, now));
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    })
}

/// What `--watch --json` reports a change of: not the times, which change
/// with every heartbeat.
#[derive(PartialEq, Eq)]
struct Shape {
    service: String,
    instance_id: String,
    http: Option<String>,
    partitions: Vec<i32>,
    partition_count: Option<i32>,
    ready: bool,
    reasons: Vec<String>,
}

impl Shape {
    fn of(instance: &Instance) -> Self {
        let beat = &instance.heartbeat;
        Self {
            service: beat.service.clone(),
            instance_id: beat.instance_id.clone(),
            http: beat.http.clone(),
            partitions: beat.partitions.clone(),
            partition_count: beat.partition_count,
            ready: beat.ready,
            reasons: beat.reasons.clone(),
        }
    }
}

/// The live instances as a table with a header, as of `now`.
fn table(live: &[Instance], now: DateTime<Utc>) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "INSTANCE".to_string(),
        "HTTP".to_string(),
        "PARTITIONS".to_string(),
        "READY".to_string(),
        "LAST SEEN".to_string(),
    ]];
    for instance in live {
        let beat = &instance.heartbeat;
        let partitions = beat
            .partitions
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let partitions = match (partitions.is_empty(), beat.partition_count) {
            (true, _) => "none".to_string(),
            (false, Some(count)) => format!("{partitions} of {count}"),
            (false, None) => partitions,
        };
        let ready = if beat.ready {
            "yes".to_string()
        } else {
            format!("no: {}", beat.reasons.join("; "))
        };
        let age = (now - instance.last_seen).num_milliseconds().max(0);
        rows.push([
            beat.service.clone(),
            beat.instance_id.clone(),
            beat.http.clone().unwrap_or_else(|| "-".to_string()),
            partitions,
            ready,
            format!("{:.1} s ago", age as f64 / 1000.0),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if live.is_empty() {
        out.push_str("(no live instances)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::heartbeat::{Heartbeat, State};

    #[test]
    fn the_table_has_one_aligned_row_per_instance() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let instance = Instance {
            heartbeat: Heartbeat {
                service: "users".into(),
                instance_id: "u1".into(),
                http: Some("127.0.0.1:8080".into()),
                version: "0.1.0".into(),
                started_at: at,
                sent_at: at,
                period_ms: 2000,
                state: State::Up,
                commands_topic: "users.commands".into(),
                partitions: vec![0, 2],
                partition_count: Some(3),
                ready: false,
                reasons: vec!["g owns no partition of t".into()],
            },
            last_seen: at,
        };
        let text = table(&[instance], at + chrono::TimeDelta::milliseconds(1500));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("SERVICE  INSTANCE  HTTP"));
        assert!(lines[1].contains("0,2 of 3"));
        assert!(lines[1].contains("no: g owns no partition of t"));
        assert!(lines[1].ends_with("1.5 s ago"));
        assert_eq!(lines[0].find("HTTP"), lines[1].find("127.0.0.1"));
        assert!(table(&[], at).contains("(no live instances)"));
    }
}
