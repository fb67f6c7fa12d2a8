//! `ordersaga bench actors`: the inventory service's actors under load, no
//! Kafka, against journal-only appends of the same batches in the same run,
//! then passivation over many aggregates (see [`crate::bench::actors`]).

use super::bench::TempData;
use super::CliError;
use crate::bench::actors::{
    self, ActorsBenchConfig, ActorsBenchReport, LoadPhase, PassivationReport,
};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `bench actors`.
#[derive(Debug, Args)]
#[command(
    after_help = "Out-of-range numbers are refused with status 1, naming the option. Fails (status 1) when a command was not answered or failed, or a product's stock in the store differs from what its accepted commands give; the 0.7× goal is reported, never enforced."
)]
pub struct BenchActorsArgs {
    /// Products of the load phase.
    #[arg(long, default_value_t = 10_000)]
    pub aggregates: u64,
    /// Zipf exponent of the products drawn: product k (from 1) gets a share
    /// proportional to 1/k^skew; 0 is uniform.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    pub skew: f64,
    /// Commands (and journal-only appends) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: u64,
    /// Commands in the actors phase, and appends in each baseline.
    #[arg(long, default_value_t = 100_000)]
    pub commands: u64,
    /// Distinct aggregates the passivation phase touches (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub touch: u64,
    /// Most entities the router keeps in memory in the passivation phase.
    #[arg(long, default_value_t = 10_000)]
    pub max_entities: u64,
    /// Where the stores live. Default: a fresh temporary directory, removed
    /// afterwards.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed of the draws and of the products' ids (default: random; printed
    /// with the results).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object with every number instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the actors bench, prints its results; fails when a command was not
/// answered or a stock check failed.
pub fn run(args: BenchActorsArgs) -> Result<(), CliError> {
    let (data, _temp) = TempData::unless_given(args.data.as_ref(), "ordersaga-bench-actors");
    let config = ActorsBenchConfig {
        aggregates: usize::try_from(args.aggregates)?,
        skew: args.skew,
        concurrency: usize::try_from(args.concurrency)?,
        commands: usize::try_from(args.commands)?,
        touch: usize::try_from(args.touch)?,
        max_entities: usize::try_from(args.max_entities)?,
        data_dir: data,
        seed: args
            .seed
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0),
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    config.validate()?;
    let report = actix_rt::System::new().block_on(actors::run(&config))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if !report.all_answered {
        return Err("some commands were not answered, were refused or failed".into());
    }
    if !report.stock.violations.is_empty() {
        return Err(format!(
            "{} products' stock in the store differs from their commands",
            report.stock.violations.len()
        )
        .into());
    }
    Ok(())
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}×"))
}

fn row(p: &LoadPhase) {
    println!(
        "  {:<13} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>8}",
        p.phase,
        p.answered,
        p.per_sec,
        p.p50_ms,
        p.p90_ms,
        p.p99_ms,
        p.p999_ms,
        p.max_ms,
        p.commits_per_flush,
        p.overload_retries,
    );
}

fn print_table(r: &ActorsBenchReport) {
    println!(
        "ordersaga bench actors: {} restocks over {} products (skew {}, hottest {:.1} % of the load), concurrency {}, seed {}",
        r.commands,
        r.aggregates,
        r.skew,
        r.hottest_share * 100.0,
        r.concurrency,
        r.seed
    );
    println!(
        "  setup: {} products in {:.1} s; events topic copy in {}\n",
        r.setup_products, r.setup_seconds, r.event_format
    );
    println!(
        "  {:<13} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "phase",
        "answered",
        "per s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "batch/fl",
        "retries"
    );
    for phase in [&r.baseline, &r.actors, &r.baseline_end] {
        row(phase);
    }
    println!(
        "  actors ÷ journal-only (mean of both baselines, {:.0}/s; closing ÷ opening {}): {} (goal {:.1}×: {})\n",
        r.baseline_per_sec,
        times(r.baseline_drift),
        times(r.ratio),
        r.goal,
        match r.meets_goal {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "n/a",
        }
    );
    if let Some(p) = &r.passivation {
        print_passivation(p);
    }
    println!(
        "  stock: {} load products and {} passivation products replayed from their stores",
        r.stock.load_checked, r.stock.touch_checked
    );
    for violation in &r.stock.violations {
        println!("  VIOLATION {violation}");
    }
    for phase in [&r.baseline, &r.actors, &r.baseline_end] {
        if let Some(error) = &phase.first_error {
            println!(
                "  ERRORS in {}: {} rejected, {} failed; first: {error}",
                phase.phase, phase.rejected, phase.failed
            );
        }
    }
}

fn print_passivation(p: &PassivationReport) {
    println!(
        "  passivation: {} products, max_entities {}, snapshot every {} events",
        p.touched, p.max_entities, p.snapshot_every
    );
    println!(
        "  {:<9} {:>9} {:>11} {:>10} {:>12} {:>9} {:>9} {:>12}",
        "pass", "commands", "cold starts", "seconds", "cold/s", "p50 ms", "p99 ms", "passivated"
    );
    for pass in &p.passes {
        println!(
            "  {:<9} {:>9} {:>11} {:>10.1} {:>12.0} {:>9.2} {:>9.2} {:>12}",
            pass.pass,
            pass.commands,
            pass.cold_starts,
            pass.seconds,
            pass.cold_starts_per_sec,
            pass.cold_p50_ms,
            pass.cold_p99_ms,
            pass.passivations
        );
        if let Some(error) = &pass.first_error {
            println!("    ERRORS: {} failed; first: {error}", pass.failed);
        }
    }
    println!(
        "\n  {:<9} {:>8} {:>10} {:>12} {:>9} {:>14}",
        "pass", "percent", "touched", "in store", "RSS MiB", "live entities"
    );
    for c in &p.checkpoints {
        println!(
            "  {:<9} {:>7}% {:>10} {:>12} {:>9.1} {:>14}",
            c.pass, c.percent, c.touched, c.aggregates_stored, c.rss_mib, c.live_entities
        );
    }
    println!(
        "  RSS: {:.1} MiB before, peak {:.1} MiB, {:.1} MiB at the end; live entities: at most {}, {} at the end; {} passivations",
        p.rss_start_mib, p.rss_peak_mib, p.rss_end_mib, p.live_entities_max, p.live_entities_end, p.passivations
    );
    println!(
        "  snapshots before the snapshot pass: {} of {} sampled products\n",
        p.snapshots_found, p.snapshots_checked
    );
}
