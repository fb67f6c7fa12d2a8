//! `ordersaga bench`: orders through the whole saga at one or more
//! concurrency levels, against a single-command baseline and the raw broker
//! measured in the same run (see [`crate::bench`]).

use super::common::{cluster, KafkaArgs, TuningArgs};
use super::CliError;
use crate::bench::levels::parse_concurrency;
use crate::bench::{self, BenchConfig, BenchReport, LevelReport, PhaseStats};
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
    /// Orders to place at each level (and baseline commands, raw records and
    /// pings to send). In a sweep a level places `--rounds` × its
    /// concurrency, at least 100 and at most this.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=bench::MAX_ORDERS as u64))]
    pub orders: u64,
    /// Requests in flight at once: one level (`64`) or a sweep
    /// (`1,16,64,256,1024`), run in ascending order against the same
    /// services.
    #[arg(long, value_name = "C[,C…]", default_value = "64", value_parser = levels)]
    pub concurrency: Levels,
    /// In a sweep, orders each level places per slot of concurrency.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rounds: u64,
    /// Write the charts (latency.svg, sweep.svg) into this directory.
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
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

/// The concurrency levels of `--concurrency`.
#[derive(Clone, Debug)]
pub struct Levels(pub Vec<usize>);

fn levels(text: &str) -> Result<Levels, String> {
    parse_concurrency(text).map(Levels)
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
        concurrency: args.concurrency.0.clone(),
        rounds: usize::try_from(args.rounds)?,
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

    if let Some(dir) = &args.svg {
        for path in bench::chart::write(&report, dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    outcome(&report)
}

/// A run fails when an order did not end (stalled, or never placed because
/// an earlier level stalled) or an invariant is broken; a missing reply,
/// echo or raw record fails it earlier, as an error of the run. The goals
/// never fail a run.
fn outcome(report: &BenchReport) -> Result<(), CliError> {
    if report.unfinished > 0 {
        return Err(format!(
            "{} of {} orders did not end within the stall timeout",
            report.unfinished, report.planned_orders
        )
        .into());
    }
    if !report.invariants_ok {
        return Err(format!(
            "{} invariants broken: {}",
            report.violations.len(),
            report.violations.join("; ")
        )
        .into());
    }
    Ok(())
}

fn row(what: &str, stats: &PhaseStats) {
    let l = &stats.latency;
    println!(
        "  {what:<22} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>6}",
        stats.ended,
        stats.per_sec,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        stats
            .cpu_us_per_request
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}")),
        stats
            .cores_busy
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
    );
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}×"))
}

fn print_level(l: &LevelReport) {
    println!(
        "  concurrency {}: {} orders; {} completed, {} aborted, {} unfinished, {} ended otherwise",
        l.concurrency, l.orders, l.completed, l.aborted, l.unfinished, l.unexpected_outcomes
    );
    println!(
        "  {:<22} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "", "ended", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "CPU µs", "cores"
    );
    row("raw broker (1 hop)", &l.raw);
    row("ping-pong (2 hops)", &l.ping_pong);
    row("single command", &l.baseline);
    let c = &l.confirmed;
    println!(
        "  {:<22} {:>7} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        "saga: order confirmed", c.count, "", c.p50_ms, c.p90_ms, c.p99_ms, c.p999_ms, c.max_ms
    );
    row("saga: finished", &l.saga);
    println!(
        "  saga ÷ single command: throughput {}, p50 {} (confirmed p50 {}); single command p50 ÷ ping-pong p50 {}",
        times(l.ratios.throughput),
        times(l.ratios.p50),
        times(l.ratios.confirmed_p50),
        times(l.ratios.baseline_vs_ping_pong_p50),
    );
    println!(
        "  CPU per saga ÷ CPU per single command: {} (CPU µs: the bench process's CPU time per request over the phase, an outside broker not included; cores: that CPU ÷ the phase's wall time)",
        times(l.ratios.cpu_per_order_vs_command),
    );
    println!(
        "  Kafka records per order: {} ({} records during the saga load, heartbeats not counted)\n",
        l.records
            .per_order
            .map_or_else(|| "n/a".to_string(), |r| format!("{r:.1}")),
        l.records.total
    );
    if l.hops.iter().any(|hop| hop.samples > 0) {
        println!(
            "  where completed sagas spent their time (from the stores):\n  {:<36} {:<10} {:>9} {:>9} {:>9}",
            "hop", "via", "p50 ms", "p90 ms", "p99 ms"
        );
        for hop in &l.hops {
            let via = match hop.via {
                bench::hops::Via::Kafka => "kafka",
                bench::hops::Via::InProcess => "in process",
                bench::hops::Via::Total => "total",
            };
            println!(
                "  {:<36} {:<10} {:>9.1} {:>9.1} {:>9.1}",
                hop.name, via, hop.p50_ms, hop.p90_ms, hop.p99_ms
            );
        }
        println!();
    }
}

fn print_table(r: &BenchReport) {
    let broker = if r.embedded_broker {
        format!("embedded broker at {}", r.brokers)
    } else {
        format!("Kafka at {}", r.brokers)
    };
    let levels: Vec<String> = r.concurrency.iter().map(|c| c.to_string()).collect();
    println!(
        "ordersaga bench: concurrency {}, {} orders per level (rounds {}), {} users, {} products, fail-stock {}%, fail-funds {}%",
        levels.join(","), r.orders, r.rounds, r.users, r.products, r.fail_stock_pct, r.fail_funds_pct
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
    for level in &r.levels {
        print_level(level);
    }
    match &r.knee {
        Some(knee) if knee.reached => println!(
            "  knee: concurrency {} ({:.0} orders/s); the next level grew less than {}×",
            knee.concurrency,
            knee.per_sec,
            bench::knee::MATERIAL_GROWTH
        ),
        Some(knee) => println!(
            "  knee: not reached; throughput still grew at concurrency {} ({:.0} orders/s)",
            knee.concurrency, knee.per_sec
        ),
        None => println!("  knee: no level measured"),
    }
    for goal in &r.goals {
        let verdict = match goal.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        println!(
            "  goal {:<28} {:>9} (goal {}): {verdict}",
            goal.name,
            goal.value
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}")),
            goal.target
        );
    }
    let reasons: Vec<String> = r
        .abort_reasons
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!(
        "\n  orders: {} completed, {} aborted ({}), {} unfinished of {} planned; planned {} / {} stock / {} funds, {} ended otherwise",
        r.completed,
        r.aborted,
        if reasons.is_empty() { "-".to_string() } else { reasons.join(", ") },
        r.unfinished,
        r.planned_orders,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn finished() -> BenchReport {
        BenchReport {
            planned_orders: 10,
            completed: 8,
            aborted: 2,
            invariants_ok: true,
            ..BenchReport::default()
        }
    }

    #[test]
    fn given_every_order_ended_and_the_invariants_held_then_the_run_succeeds() {
        assert!(outcome(&finished()).is_ok());
    }

    #[test]
    fn given_unfinished_orders_then_the_run_fails_saying_how_many() {
        let report = BenchReport {
            unfinished: 3,
            ..finished()
        };
        let err = outcome(&report).unwrap_err().to_string();
        assert!(err.contains("3 of 10 orders"), "{err}");
    }

    #[test]
    fn given_a_broken_invariant_then_the_run_fails_naming_it() {
        let report = BenchReport {
            invariants_ok: false,
            violations: vec!["stock of product p is 3, expected 4".to_string()],
            ..finished()
        };
        let err = outcome(&report).unwrap_err().to_string();
        assert!(err.contains("stock of product p"), "{err}");
    }

    #[test]
    fn given_unmet_goals_then_the_run_still_succeeds() {
        let report = BenchReport {
            goals: crate::bench::goals::Headline::default().goals(),
            ..finished()
        };
        assert!(report.goals.iter().all(|g| g.met != Some(true)));
        assert!(outcome(&report).is_ok());
    }
}
