//! The two closed loops of the load comparison, at the same concurrency on
//! the same actix runtime: restocks sent to the inventory service's router
//! (`Service::submit`), and the same batches appended straight to a
//! journal.

use super::report::LoadPhase;
use super::sampler::{mix, SplitMix64, Zipf};
use super::workload::{execute, product, refused_for_load, restock, restock_batch, Domain};
use crate::bench::BenchError;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use ordersaga_actors::aggregates::Product;
use ordersaga_actors::service::SubmitError;
use ordersaga_actors::{Aggregate, Execute, InventoryService, Journal, ServiceError};
use ordersaga_events::codec::Format;
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::{Outcome, Reply, StreamId};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Highest latency the histograms hold, microseconds (one hour).
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// What one worker of a closed loop counted.
pub(super) struct Tally {
    pub latencies: Histogram<u64>,
    pub accepted: usize,
    pub rejected: usize,
    pub failed: usize,
    pub retries: usize,
    pub first_error: Option<String>,
}

impl Tally {
    pub fn new() -> Result<Self, BenchError> {
        Ok(Self {
            latencies: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)?,
            accepted: 0,
            rejected: 0,
            failed: 0,
            retries: 0,
            first_error: None,
        })
    }

    pub fn record(&mut self, started: Instant) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latencies.saturating_record(micros.max(1));
    }

    pub fn fail(&mut self, what: String) {
        self.failed += 1;
        self.first_error.get_or_insert(what);
    }

    /// Adds another worker's counts to these.
    pub fn merge(&mut self, other: Tally) -> Result<(), BenchError> {
        self.latencies.add(&other.latencies)?;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.failed += other.failed;
        self.retries += other.retries;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// Waits for every worker and adds up their tallies.
pub(super) async fn gather(
    workers: Vec<tokio::task::JoinHandle<Result<Tally, BenchError>>>,
) -> Result<Tally, BenchError> {
    let mut total = Tally::new()?;
    for worker in workers {
        let tally = worker
            .await
            .map_err(|e| format!("a bench worker did not finish: {e}"))??;
        total.merge(tally)?;
    }
    Ok(total)
}

/// The shared inputs of one closed loop.
#[derive(Clone)]
pub(super) struct Loop {
    pub commands: usize,
    pub concurrency: usize,
    pub seed: u64,
    pub zipf: Arc<Zipf>,
    pub bar: ProgressBar,
}

impl Loop {
    /// The random source of worker `w`: its own stream of the run's seed.
    fn rng(&self, worker: usize, salt: u64) -> SplitMix64 {
        SplitMix64::new(mix(self.seed ^ mix(salt) ^ mix(worker as u64 + 1)))
    }
}

/// Sends `command` through the router and waits for its answer. A command
/// refused by a full mailbox (router or entity) did not run: it is sent
/// again, same command id, after letting the others move, and counted in
/// `retries`.
pub(super) async fn send(
    service: &InventoryService,
    command: InventoryCommand,
    retries: &mut usize,
) -> Result<Reply, ServiceError> {
    let (envelope, mut exec) = execute(command);
    loop {
        match service.submit(exec) {
            Ok(pending) => match pending.await {
                Err(err) if refused_for_load(&err) => {}
                answer => return answer,
            },
            Err(SubmitError::Overloaded(_)) => {}
            Err(SubmitError::Stopped(_)) => return Err(ServiceError::Stopped),
        }
        *retries += 1;
        tokio::task::yield_now().await;
        exec = Execute::new(envelope.clone());
    }
}

/// `commands` restocks of products drawn from `zipf`, `concurrency` in
/// flight, through `service`. `restocked[i]` counts the accepted restocks of
/// product `i` (for the stock check afterwards).
pub(super) async fn actors(
    service: &InventoryService,
    spec: &Loop,
    restocked: Arc<Vec<AtomicU64>>,
) -> Result<LoadPhase, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let flushes_before = service.journal().stats();
    let started = Instant::now();
    let mut workers = Vec::with_capacity(spec.concurrency);
    for w in 0..spec.concurrency {
        let (service, spec, next, restocked) = (
            service.clone(),
            spec.clone(),
            next.clone(),
            restocked.clone(),
        );
        workers.push(actix_rt::spawn(async move {
            let mut rng = spec.rng(w, 1);
            let mut tally = Tally::new()?;
            while next.fetch_add(1, Ordering::Relaxed) < spec.commands {
                let index = spec.zipf.sample(&mut rng);
                let command = restock(product(spec.seed, Domain::Load, index));
                let sent = Instant::now();
                let answer = send(&service, command, &mut tally.retries).await;
                tally.record(sent);
                match answer {
                    Ok(reply) => match reply.outcome {
                        Outcome::Accepted { .. } => {
                            tally.accepted += 1;
                            restocked[index].fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Rejected(rejection) => {
                            tally.rejected += 1;
                            tally.first_error.get_or_insert(format!(
                                "restock of product #{index} rejected: {}",
                                rejection.code
                            ));
                        }
                    },
                    Err(err) => tally.fail(format!("restock of product #{index}: {err}")),
                }
                spec.bar.inc(1);
            }
            Ok(tally)
        }));
    }
    let tally = gather(workers).await?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = service.journal().stats();
    Ok(LoadPhase::new(
        "actors",
        spec.commands,
        seconds,
        tally,
        stats.flushes - flushes_before.flushes,
        stats.commits - flushes_before.commits,
    ))
}

/// `commands` restock batches appended straight to `journal`, to streams
/// drawn from `zipf` as the actors phase draws its products, `concurrency`
/// in flight. A stream takes one append at a time, as an entity does: its
/// lock holds its version, so no append conflicts.
pub(super) async fn journal_only(
    phase: &'static str,
    journal: &Journal,
    spec: &Loop,
    versions: Arc<Vec<tokio::sync::Mutex<u64>>>,
    event_format: Format,
) -> Result<LoadPhase, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let flushes_before = journal.stats();
    let started = Instant::now();
    let mut workers = Vec::with_capacity(spec.concurrency);
    for w in 0..spec.concurrency {
        let (journal, spec, next, versions) = (
            journal.clone(),
            spec.clone(),
            next.clone(),
            versions.clone(),
        );
        workers.push(actix_rt::spawn(async move {
            // The same draws as the actors phase's worker `w`.
            let mut rng = spec.rng(w, 1);
            let mut tally = Tally::new()?;
            while next.fetch_add(1, Ordering::Relaxed) < spec.commands {
                let index = spec.zipf.sample(&mut rng);
                let stream = StreamId::new(
                    Product::KIND,
                    product(spec.seed, Domain::Baseline, index).as_uuid(),
                );
                let sent = Instant::now();
                let mut version = versions[index].lock().await;
                let appended = match restock_batch(stream, *version, event_format) {
                    Ok(batch) => journal.append(batch).await.map_err(|e| e.to_string()),
                    Err(err) => Err(format!("cannot encode the batch: {err}")),
                };
                match appended {
                    Ok(_) => {
                        *version += 1;
                        tally.accepted += 1;
                    }
                    Err(err) => tally.fail(format!("append to {stream}: {err}")),
                }
                drop(version);
                tally.record(sent);
                spec.bar.inc(1);
            }
            Ok(tally)
        }));
    }
    let tally = gather(workers).await?;
    let seconds = started.elapsed().as_secs_f64();
    let stats = journal.stats();
    Ok(LoadPhase::new(
        phase,
        spec.commands,
        seconds,
        tally,
        stats.flushes - flushes_before.flushes,
        stats.commits - flushes_before.commits,
    ))
}
