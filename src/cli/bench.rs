//! `ordersaga bench`: N orders through the whole saga at a chosen concurrency,
//! against a single-command baseline measured in the same run (see
//! [`crate::bench`]).

use super::common::{cluster, KafkaArgs, TuningArgs};
use super::CliError;
use crate::bench::{self, BenchConfig, BenchReport, PhaseStats};
use crate::kafka::valid_topic_name;
use clap::{Args, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `bench`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Without --namespace, every run uses a fresh random namespace, so it never sees another run's topics."
)]
pub struct BenchArgs {
    /// Another bench instead of the saga's (`bench` alone runs the saga's).
    #[command(subcommand)]
    pub mode: Option<BenchMode>,
    /// Kafka bootstrap servers (`host:port,…`). Without it, an embedded broker
    /// is started in this process.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Orders to place (and baseline commands to send).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=bench::MAX_ORDERS as u64))]
    pub orders: u64,
    /// Orders (and baseline commands) in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// Users to create.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub users: u64,
    /// Products to create.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub products: u64,
    /// Percentage of orders that ask for more than a scarce product's stock.
    #[arg(long, value_name = "PCT", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fail_stock: u8,
    /// Percentage of orders placed by users who cannot pay.
    #[arg(long, value_name = "PCT", default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fail_funds: u8,
    /// Where the stores live. Default: a fresh temporary directory, removed
    /// afterwards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print one JSON object with every number instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seed of the order mix (default: random; printed with the results).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Give up on what is in flight after this many seconds without a single
    /// command or saga ending.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stall_timeout_secs: u64,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    tuning: TuningArgs,
}

/// The other benches.
#[derive(Debug, Subcommand)]
pub enum BenchMode {
    /// The gateway over HTTP: its read path and order path against a
    /// trivial actix-web handler, same client, same concurrency, same run.
    Http(super::bench_http::BenchHttpArgs),
    /// The actors without Kafka: commands straight into the inventory
    /// service's router against journal-only appends of the same batches,
    /// then passivation over many more aggregates than fit in memory.
    Actors(super::bench_actors::BenchActorsArgs),
}

/// A data directory made for this run, removed when dropped (after the
/// services have stopped, which the order of drops in [`run`] guarantees).
pub(super) struct TempData(pub(super) PathBuf);

impl TempData {
    /// The directory `given`, or else a fresh `PREFIX-…` one under the
    /// system's temporary directory, removed when the guard drops.
    pub(super) fn unless_given(given: Option<&PathBuf>, prefix: &str) -> (PathBuf, Option<Self>) {
        match given {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = std::env::temp_dir()
                    .join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
                (dir.clone(), Some(TempData(dir)))
            }
        }
    }
}

impl Drop for TempData {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            if err.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: cannot remove {}: {err}", self.0.display());
            }
        }
    }
}

/// Runs the bench, prints its results; fails when an order did not end or an
/// invariant is broken.
pub fn run(args: BenchArgs) -> Result<(), CliError> {
    if let Some(BenchMode::Http(http)) = args.mode {
        return super::bench_http::run(http);
    }
    if let Some(BenchMode::Actors(actors)) = args.mode {
        return super::bench_actors::run(actors);
    }
    if args.kafka.partitions < 1 || args.kafka.replication < 1 {
        return Err("--partitions and --replication must be at least 1".into());
    }
    // A fresh namespace by default: a run never sees another run's topics.
    let namespace =
        args.kafka.namespace.clone().unwrap_or_else(|| {
            format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
        });
    if !valid_topic_name(&format!("{namespace}.{}", bench::REPLIES)) {
        return Err(format!("--namespace {namespace:?} does not make valid topic names").into());
    }
    let config = BenchConfig {
        orders: usize::try_from(args.orders)?,
        concurrency: usize::try_from(args.concurrency)?,
        users: usize::try_from(args.users)?,
        products: usize::try_from(args.products)?,
        fail_stock_pct: args.fail_stock,
        fail_funds_pct: args.fail_funds,
        stall_timeout: Duration::from_secs(args.stall_timeout_secs),
        seed: args
            .seed
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0),
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    config.validate()?;
    let (data, _temp) = TempData::unless_given(args.data.as_ref(), "ordersaga-bench");

    let report = actix_rt::System::new().block_on(async {
        // The embedded broker lives exactly as long as this block.
        let (kafka, embedded) = cluster(
            args.brokers.as_deref(),
            |brokers| {
                let mut kafka = args.kafka.config(brokers);
                kafka.namespace = Some(namespace);
                kafka
            },
            &bench::topics(),
        )?;
        let options = args.tuning.node_options(kafka, &data);
        let mut report = bench::run(&options, &config).await?;
        report.embedded_broker = embedded.is_some();
        drop(embedded);
        Ok::<_, CliError>(report)
    })?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.unfinished > 0 {
        return Err(format!(
            "{} orders did not end within the stall timeout",
            report.unfinished
        )
        .into());
    }
    if !report.invariants_ok {
        return Err(format!("{} invariants broken", report.violations.len()).into());
    }
    Ok(())
}

fn row(what: &str, stats: &PhaseStats) {
    println!(
        "  {what:<22} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        stats.ended, stats.per_sec, stats.p50_ms, stats.p90_ms, stats.p99_ms, stats.max_ms
    );
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}×"))
}

fn print_table(r: &BenchReport) {
    let broker = if r.embedded_broker {
        format!("embedded broker at {}", r.brokers)
    } else {
        format!("Kafka at {}", r.brokers)
    };
    println!(
        "ordersaga bench: {} orders, concurrency {}, {} users, {} products, fail-stock {}%, fail-funds {}%",
        r.orders, r.concurrency, r.users, r.products, r.fail_stock_pct, r.fail_funds_pct
    );
    println!(
        "  {broker}, namespace {}, seed {}",
        r.namespace.as_deref().unwrap_or("-"),
        r.seed
    );
    println!(
        "  setup: {} commands in {:.1} s\n",
        r.setup_commands, r.setup_seconds
    );
    println!(
        "  {:<22} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "ended", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    row("baseline (deposit)", &r.baseline);
    row("saga (place → end)", &r.saga);
    println!(
        "  saga ÷ baseline: throughput {}, p50 latency {}\n",
        times(r.ratios.throughput),
        times(r.ratios.p50)
    );
    let reasons: Vec<String> = r
        .abort_reasons
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!(
        "  orders: {} completed, {} aborted ({}), {} unfinished; planned {} / {} stock / {} funds, {} ended otherwise",
        r.completed,
        r.aborted,
        if reasons.is_empty() { "-".to_string() } else { reasons.join(", ") },
        r.unfinished,
        r.expected.completed,
        r.expected.insufficient_stock,
        r.expected.insufficient_funds,
        r.unexpected_outcomes,
    );
    if r.invariants_ok {
        println!("  invariants hold across the three stores");
    } else {
        for violation in &r.violations {
            println!("  VIOLATION {violation}");
        }
    }
}
