//! `ordersaga bench http`: the gateway's read and order paths over HTTP,
//! against a trivial handler measured in the same run with the same client
//! (see [`crate::bench::http`]).

use super::bench::TempData;
use super::common::{cluster, KafkaArgs, TuningArgs};
use super::CliError;
use crate::bench::http::{self, HttpBenchConfig, HttpBenchReport, HttpPhase};
use crate::kafka::valid_topic_name;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `bench http`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without --namespace, every run uses a fresh random namespace, so it never sees another run's topics. Fails (status 1) when a request failed, a saga did not end, or an invariant is broken; the read path's 0.5× goal is reported, never enforced."
)]
pub struct BenchHttpArgs {
    /// Kafka bootstrap servers (`host:port,…`). Without it, an embedded broker
    /// is started in this process.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Requests per phase.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=http::MAX_REQUESTS as u64))]
    pub requests: u64,
    /// Orders placed in the orders phase. Default: --requests.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=http::MAX_REQUESTS as u64))]
    pub orders: Option<u64>,
    /// Requests in flight at once, in every phase (the baseline's too).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
    /// Users to create through the gateway (each costs two argon2 hashes:
    /// keep it small).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub users: u64,
    /// Products to create through the gateway.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub products: u64,
    /// HTTP worker threads of the gateway, and of the baseline server.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: u64,
    /// Where the stores live. Default: a fresh temporary directory, removed
    /// afterwards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Print one JSON object with every number instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Give up on a wait (readiness, routing, the sagas' ends) after this
    /// many seconds without news.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stall_timeout_secs: u64,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    tuning: TuningArgs,
}

/// Runs the HTTP bench, prints its results; fails when a request failed, a
/// saga did not end or an invariant is broken.
pub fn run(args: BenchHttpArgs) -> Result<(), CliError> {
    if args.kafka.partitions < 1 || args.kafka.replication < 1 {
        return Err("--partitions and --replication must be at least 1".into());
    }
    // A fresh namespace by default: a run never sees another run's topics.
    let namespace =
        args.kafka.namespace.clone().unwrap_or_else(|| {
            format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
        });
    if let Some(bad) = http::topics()
        .iter()
        .map(|t| format!("{namespace}.{t}"))
        .find(|t| !valid_topic_name(t))
    {
        return Err(format!("--namespace {namespace:?} makes an invalid topic name: {bad}").into());
    }
    let config = HttpBenchConfig {
        requests: usize::try_from(args.requests)?,
        orders: usize::try_from(args.orders.unwrap_or(args.requests))?,
        concurrency: usize::try_from(args.concurrency)?,
        users: usize::try_from(args.users)?,
        products: usize::try_from(args.products)?,
        workers: usize::try_from(args.workers)?,
        stall_timeout: Duration::from_secs(args.stall_timeout_secs),
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    config.validate()?;
    let (data, _temp) = TempData::unless_given(args.data.as_ref(), "ordersaga-bench-http");

    let report = actix_rt::System::new().block_on(async {
        // The embedded broker lives exactly as long as this block.
        let (kafka, embedded) = cluster(
            args.brokers.as_deref(),
            |brokers| {
                let mut kafka = args.kafka.config(brokers);
                kafka.namespace = Some(namespace);
                kafka
            },
            &http::topics(),
        )?;
        let options = args.tuning.node_options(kafka, &data);
        let mut report = http::run(&options, &config).await?;
        report.embedded_broker = embedded.is_some();
        drop(embedded);
        Ok::<_, CliError>(report)
    })?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.errors > 0 {
        return Err(format!("{} requests failed", report.errors).into());
    }
    if report.sagas.unfinished > 0 {
        return Err(format!(
            "{} orders' sagas did not end within the stall timeout",
            report.sagas.unfinished
        )
        .into());
    }
    if !report.invariants_ok {
        return Err(format!("{} invariants broken", report.violations.len()).into());
    }
    Ok(())
}

/// A ratio with two decimals, or four below 0.1 (the orders' throughput
/// ratio would read 0.00×).
fn times(ratio: Option<f64>) -> String {
    match ratio {
        None => "n/a".to_string(),
        Some(r) if r < 0.1 => format!("{r:.4}×"),
        Some(r) => format!("{r:.2}×"),
    }
}

fn row(p: &HttpPhase) {
    println!(
        "  {:<15} {:<33} {:>7} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8} {:>8} {:>7.0} {:>8} {:>6}",
        p.phase,
        p.request,
        p.ok,
        p.errors,
        p.per_sec,
        p.p50_ms,
        p.p90_ms,
        p.p99_ms,
        p.max_ms,
        times(p.throughput_ratio),
        times(p.p50_ratio),
        p.mean_body_bytes,
        p.cpu_us_per_request
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}")),
        p.cores_busy
            .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
    );
}

fn print_table(r: &HttpBenchReport) {
    let broker = if r.embedded_broker {
        format!("embedded broker at {}", r.brokers)
    } else {
        format!("Kafka at {}", r.brokers)
    };
    println!(
        "ordersaga bench http: {} requests per phase ({} orders), concurrency {}, {} HTTP workers (gateway and baseline), {} users, {} products",
        r.requests, r.orders_placed, r.concurrency, r.workers, r.users, r.products
    );
    println!(
        "  {broker}, namespace {}",
        r.namespace.as_deref().unwrap_or("-")
    );
    println!(
        "  setup: {} requests in {:.1} s\n",
        r.setup_requests, r.setup_seconds
    );
    println!(
        "  {:<15} {:<33} {:>7} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>6}",
        "phase",
        "request",
        "ok",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "req/s ÷",
        "p50 ÷",
        "bytes",
        "CPU µs",
        "cores"
    );
    for phase in &r.phases {
        row(phase);
    }
    println!(
        "  ÷: divided by the mean of the two baseline runs ({:.0} req/s, p50 {:.2} ms; closing ÷ opening req/s {}); bytes: mean answer body; CPU µs: the bench process's CPU time per request (client, servers, services; an outside broker not included); cores: that CPU ÷ the phase's wall time\n",
        r.reference.per_sec,
        r.reference.p50_ms,
        times(r.reference.drift)
    );
    let reads: Vec<String> = r
        .phases
        .iter()
        .filter_map(|p| {
            p.meets_read_goal.map(|met| {
                format!(
                    "{} {} ({})",
                    p.phase,
                    times(p.throughput_ratio),
                    if met { "meets it" } else { "below it" }
                )
            })
        })
        .collect();
    println!(
        "  read path vs the goal of {:.1}× the baseline's req/s: {}",
        r.read_goal,
        reads.join(", ")
    );
    println!(
        "  read_proxied vs baseline_proxy (the same two HTTP exchanges with nothing behind them): {} req/s; {} reads per downstream call",
        times(r.proxied_vs_trivial_proxy),
        r.proxied_reads_per_call
            .map_or_else(|| "n/a".to_owned(), |n| format!("{n:.1}"))
    );
    for phase in r.phases.iter().filter(|p| p.stale > 0) {
        println!(
            "  warning: {} of {}'s answers came from the read model (Ordersaga-Stale), not the owning service",
            phase.stale, phase.phase
        );
    }
    let cancelled: usize = r.orders.cancelled.values().sum();
    let reasons: Vec<String> = r
        .orders
        .cancelled
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!(
        "  orders: {} confirmed, {} cancelled{}, {} pending (202), {} other; sagas: {} completed, {} aborted, {} unfinished",
        r.orders.confirmed,
        cancelled,
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
        r.orders.pending,
        r.orders.other,
        r.sagas.completed,
        r.sagas.aborted,
        r.sagas.unfinished,
    );
    for phase in r.phases.iter().filter(|p| p.errors > 0) {
        let statuses: Vec<String> = phase
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        println!(
            "  ERRORS in {}: {} ({}); first: {}",
            phase.phase,
            phase.errors,
            statuses.join(", "),
            phase.first_error.as_deref().unwrap_or("-")
        );
    }
    if r.invariants_ok {
        println!("  invariants hold across the three stores");
    } else {
        for violation in &r.violations {
            println!("  VIOLATION {violation}");
        }
    }
}
