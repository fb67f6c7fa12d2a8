//! `ordersaga bench actors`: the inventory service's actors under load, with
//! no Kafka, against journal-only appends of the same batches measured in
//! the same run, then passivation over many more aggregates than fit in
//! memory.
//!
//! The run, in an actix system, stores on real files under the data
//! directory (`inventory`, `baseline`, `touch`):
//! 1. **Setup** (not measured): `AddProduct` for each of the `aggregates`
//!    products, through the service.
//! 2. **baseline**: `commands` restock batches (the event, its outbox
//!    record, the processed reply: what the service writes for a restock)
//!    appended straight to a journal, `concurrency` in flight, to streams
//!    drawn as the actors phase draws its products, one append at a time
//!    per stream.
//! 3. **actors**: `commands` `Restock` commands of one unit through
//!    `Service::submit`, products drawn with a Zipf-like skew, `concurrency`
//!    in flight (closed loop): router, entity, idempotency check, decide,
//!    append, apply, reply.
//! 4. **baseline_end**: the baseline again. The headline divides the
//!    actors' commands/s by the mean of the two baselines, which bracket it
//!    on a machine shared with others.
//! 5. **Passivation** (`touch.rs`): `touch` distinct products with at most
//!    `max_entities` in memory, in three passes (new, cold from the
//!    journal, cold from a snapshot), the resident set and the live
//!    entities read at 10 %, 50 % and 100 % of each pass.
//! 6. **Checks**: every product replayed from its store has exactly the
//!    stock its accepted commands give it (all of the load phase's, a
//!    sample of the passivation phase's).
//!
//! `sampler.rs` draws; `workload.rs` makes ids, commands and batches;
//! `load.rs` runs the closed loops; `touch.rs` the passivation phase;
//! `memory.rs` reads the resident set; `check.rs` the stores;
//! `report.rs` holds the numbers.

mod check;
mod load;
mod memory;
mod report;
mod sampler;
mod touch;
mod workload;

pub use check::TOUCH_CHECK_SAMPLE;
pub use report::{
    ActorsBenchReport, Checkpoint, LoadPhase, PassivationReport, StockCheck, TouchPass, GOAL,
};
pub use sampler::{SplitMix64, Zipf};
pub use touch::SNAPSHOT_EVERY;

use super::BenchError;
use crate::ops::progress;
use load::{send, Loop};
use ordersaga_actors::aggregates::Product;
use ordersaga_actors::{Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::Outcome;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use workload::{add_product, product, Domain};

/// Most products the load phase accepts (the sampler keeps 8 bytes per
/// product, the baseline a lock per stream).
pub const MAX_AGGREGATES: usize = 1_000_000;
/// Most commands per load phase.
pub const MAX_COMMANDS: usize = 100_000_000;
/// Most aggregates the passivation phase touches.
pub const MAX_TOUCH: usize = 100_000_000;
/// Most commands in flight.
pub const MAX_CONCURRENCY: usize = 100_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct ActorsBenchConfig {
    /// Products of the load phase.
    pub aggregates: usize,
    /// Zipf exponent of the products drawn (0: uniform).
    pub skew: f64,
    /// Commands in flight at once, in every phase.
    pub concurrency: usize,
    /// Commands per load phase (and appends per baseline).
    pub commands: usize,
    /// Distinct aggregates the passivation phase touches (0: skip it).
    pub touch: usize,
    /// The router's limit on entities in memory in the passivation phase.
    pub max_entities: usize,
    /// Where the stores live.
    pub data_dir: PathBuf,
    /// Seed of the draws and of the ids.
    pub seed: u64,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl ActorsBenchConfig {
    /// Checks the numbers; every problem is an error naming the option.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.aggregates == 0 || self.aggregates > MAX_AGGREGATES {
            return Err(format!("--aggregates must be between 1 and {MAX_AGGREGATES}").into());
        }
        if !self.skew.is_finite() || !(0.0..=10.0).contains(&self.skew) {
            return Err(format!("--skew must be between 0 and 10, not {}", self.skew).into());
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(format!("--concurrency must be between 1 and {MAX_CONCURRENCY}").into());
        }
        if self.commands == 0 || self.commands > MAX_COMMANDS {
            return Err(format!("--commands must be between 1 and {MAX_COMMANDS}").into());
        }
        if self.touch > MAX_TOUCH {
            return Err(format!("--touch must be at most {MAX_TOUCH}").into());
        }
        if self.max_entities == 0 {
            return Err("--max-entities must be at least 1".into());
        }
        Ok(())
    }
}

/// Runs the bench; must be called inside an actix system. Fails only when a
/// phase cannot run at all (a store that does not open, a setup command
/// refused); failed commands and broken checks are in the report.
pub async fn run(config: &ActorsBenchConfig) -> Result<ActorsBenchReport, BenchError> {
    config.validate()?;
    let open = |name: &str| {
        Journal::open(JournalConfig::new(config.data_dir.join(name)))
            .map_err(|e| BenchError::from(format!("cannot open the {name} store: {e}")))
    };
    let service_config = ServiceConfig::default();
    let mut report = ActorsBenchReport {
        seed: config.seed,
        aggregates: config.aggregates,
        skew: config.skew,
        concurrency: config.concurrency,
        commands: config.commands,
        event_format: format!("{:?}", service_config.event_format).to_lowercase(),
        ..ActorsBenchReport::default()
    };
    let zipf = Arc::new(Zipf::new(config.aggregates, config.skew)?);
    report.hottest_share = zipf.probability(0);
    let spec = |phase: &str| Loop {
        commands: config.commands,
        concurrency: config.concurrency,
        seed: config.seed,
        zipf: zipf.clone(),
        bar: progress::bar(config.progress, Some(config.commands as u64), phase),
    };

    let inventory = open("inventory")?;
    let event_format = service_config.event_format;
    let service = Service::<Product>::start(inventory.clone(), service_config);
    let started = Instant::now();
    setup(&service, config).await?;
    report.setup_products = config.aggregates;
    report.setup_seconds = started.elapsed().as_secs_f64();

    let baseline = open("baseline")?;
    let versions: Arc<Vec<tokio::sync::Mutex<u64>>> = Arc::new(
        (0..config.aggregates)
            .map(|_| tokio::sync::Mutex::new(0))
            .collect(),
    );
    let restocked: Arc<Vec<AtomicU64>> =
        Arc::new((0..config.aggregates).map(|_| AtomicU64::new(0)).collect());

    let measured = spec("baseline");
    report.baseline = load::journal_only(
        "baseline",
        &baseline,
        &measured,
        versions.clone(),
        event_format,
    )
    .await?;
    measured.bar.finish_and_clear();
    let measured = spec("actors");
    report.actors = load::actors(&service, &measured, restocked.clone()).await?;
    measured.bar.finish_and_clear();
    let measured = spec("baseline");
    report.baseline_end =
        load::journal_only("baseline_end", &baseline, &measured, versions, event_format).await?;
    measured.bar.finish_and_clear();
    report.compare();

    service.shutdown().await;
    drop(service);
    drop(baseline);
    check::load_products(&inventory, config.seed, &restocked, &mut report.stock)?;
    // The load stores close here, so that their page caches are not in the
    // passivation phase's resident set.
    drop(inventory);

    if config.touch > 0 {
        let touch = open("touch")?;
        let passivation = touch::run(&touch, config).await?;
        let complete = passivation.passes.iter().all(|p| p.failed == 0);
        report.passivation = Some(passivation);
        if complete {
            check::touched_products(&touch, config.seed, config.touch, &mut report.stock)?;
        } else {
            report.stock.violations.push(
                "the passivation phase had failed commands; its products were not checked".into(),
            );
        }
    }
    report.all_answered = [&report.baseline, &report.actors, &report.baseline_end]
        .iter()
        .all(|p| p.answered == p.commands && p.failed == 0 && p.rejected == 0)
        && report.passivation.as_ref().is_none_or(|p| {
            p.passes
                .iter()
                .all(|pass| pass.failed == 0 && pass.accepted == pass.commands)
        });
    Ok(report)
}

/// Creates the load phase's products, `concurrency` at a time.
async fn setup(service: &Service<Product>, config: &ActorsBenchConfig) -> Result<(), BenchError> {
    let bar = progress::bar(config.progress, Some(config.aggregates as u64), "setup");
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..config.concurrency.min(config.aggregates) {
        let (service, next, bar, config) =
            (service.clone(), next.clone(), bar.clone(), config.clone());
        workers.push(actix_rt::spawn(async move {
            let mut retries = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= config.aggregates {
                    return Ok::<_, BenchError>(());
                }
                let command = add_product(product(config.seed, Domain::Load, index), index);
                let reply = send(&service, command, &mut retries)
                    .await
                    .map_err(|e| format!("setup: adding product #{index}: {e}"))?;
                if let Outcome::Rejected(rejection) = reply.outcome {
                    return Err(format!(
                        "setup: adding product #{index} was refused ({}): is {} a store of an earlier run with the same seed?",
                        rejection.code,
                        config.data_dir.display()
                    )
                    .into());
                }
                bar.inc(1);
            }
        }));
    }
    for worker in workers {
        worker
            .await
            .map_err(|e| format!("a setup worker did not finish: {e}"))??;
    }
    bar.finish_and_clear();
    Ok(())
}
