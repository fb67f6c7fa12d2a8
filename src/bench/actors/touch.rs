//! The passivation phase: many more aggregates than the router may keep in
//! memory, touched one after another in three passes, with the resident set
//! and the live entities read along the way.
//!
//! 1. `create`: `AddProduct` for each; every entity starts on an empty stream.
//! 2. `journal`: a restock for each, whose entity was evicted long ago and
//!    has no snapshot yet: it replays its stream from the journal. A second
//!    restock to the now live entity reaches [`SNAPSHOT_EVERY`] events since
//!    the recovery and takes a snapshot.
//! 3. `snapshot`: a restock for each; its entity recovers from that snapshot.
//!
//! Each product ends with [`INITIAL_STOCK`](super::workload::INITIAL_STOCK)
//! plus 3 units, at version 4.

use super::load::send;
use super::memory::{mib, resident_bytes, PeakSampler};
use super::report::{Checkpoint, PassivationReport, TouchPass};
use super::workload::{add_product, product, restock, Domain};
use super::ActorsBenchConfig;
use crate::bench::BenchError;
use crate::ops::progress;
use hdrhistogram::Histogram;
use ordersaga_actors::aggregates::Product;
use ordersaga_actors::recovery::stream_of;
use ordersaga_actors::{InventoryService, Journal, Service, ServiceConfig};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::{Outcome, ProductId};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The snapshot interval of the phase's service: small, so that the second
/// pass leaves a snapshot of every aggregate for the third.
pub const SNAPSHOT_EVERY: u64 = 2;

/// Where in each pass memory and entities are read, percent.
const CHECKPOINTS: [u8; 3] = [10, 50, 100];

/// At most this many aggregates are checked for a snapshot before the
/// third pass (an even sample).
const SNAPSHOT_SAMPLE: usize = 10_000;

/// Which pass, and what it sends to aggregate `id`: a cold command, then
/// any number of warm ones.
#[derive(Clone, Copy, Debug)]
enum Pass {
    Create,
    Journal,
    Snapshot,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Create => "create",
            Pass::Journal => "journal",
            Pass::Snapshot => "snapshot",
        }
    }

    fn commands(self, id: ProductId, index: usize) -> Vec<InventoryCommand> {
        match self {
            Pass::Create => vec![add_product(id, index)],
            Pass::Journal => vec![restock(id), restock(id)],
            Pass::Snapshot => vec![restock(id)],
        }
    }
}

/// Runs the three passes over `config.touch` aggregates in `journal`.
pub(super) async fn run(
    journal: &Journal,
    config: &ActorsBenchConfig,
) -> Result<PassivationReport, BenchError> {
    let rss_start = resident_bytes().unwrap_or(0);
    let peak = PeakSampler::start(Duration::from_millis(50));
    let service = Service::<Product>::start(
        journal.clone(),
        ServiceConfig {
            max_entities: config.max_entities,
            snapshot_every: SNAPSHOT_EVERY,
            ..ServiceConfig::default()
        },
    );
    let live_max = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (service, live_max, stop) = (service.clone(), live_max.clone(), stop.clone());
        actix_rt::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(live) = service.live_entities().await {
                    live_max.fetch_max(live, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let checkpoints = Arc::new(Mutex::new(Vec::new()));
    let mut report = PassivationReport {
        touched: config.touch,
        max_entities: config.max_entities,
        snapshot_every: SNAPSHOT_EVERY,
        rss_start_mib: mib(rss_start),
        ..PassivationReport::default()
    };
    let passes = async {
        for pass in [Pass::Create, Pass::Journal, Pass::Snapshot] {
            if let Pass::Snapshot = pass {
                (report.snapshots_checked, report.snapshots_found) = snapshots(journal, config)?;
            }
            let measured = one_pass(&service, config, pass, &checkpoints, &live_max).await?;
            report.passes.push(measured);
        }
        Ok::<_, BenchError>(())
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    passes?;
    report.live_entities_end = service.live_entities().await?;
    live_max.fetch_max(report.live_entities_end, Ordering::Relaxed);
    report.live_entities_max = live_max.load(Ordering::Relaxed);
    report.passivations = service.passivations();
    report.rss_peak_mib = mib(peak.peak());
    report.rss_end_mib = mib(resident_bytes().unwrap_or(0));
    report.checkpoints = std::mem::take(&mut *checkpoints.lock().map_err(|_| "checkpoints")?);
    service.shutdown().await;
    Ok(report)
}

/// One pass over every aggregate, `config.concurrency` at a time.
async fn one_pass(
    service: &InventoryService,
    config: &ActorsBenchConfig,
    pass: Pass,
    checkpoints: &Arc<Mutex<Vec<Checkpoint>>>,
    live_max: &Arc<AtomicUsize>,
) -> Result<TouchPass, BenchError> {
    let total = config.touch;
    let per_touch = pass.commands(product(0, Domain::Touch, 0), 0).len();
    let bar = progress::bar(config.progress, Some(total as u64), pass.name());
    let (next, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (cold_before, passivated_before) = (service.recoveries(), service.passivations());
    let started = Instant::now();
    let mut workers = Vec::with_capacity(config.concurrency);
    for _ in 0..config.concurrency {
        let (service, next, done, bar) = (service.clone(), next.clone(), done.clone(), bar.clone());
        let (checkpoints, live_max, seed) = (checkpoints.clone(), live_max.clone(), config.seed);
        workers.push(actix_rt::spawn(async move {
            let mut cold = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
            let (mut accepted, mut failed, mut retries) = (0usize, 0usize, 0usize);
            let mut first_error = None;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let id = product(seed, Domain::Touch, index);
                for (n, command) in pass.commands(id, index).into_iter().enumerate() {
                    let sent = Instant::now();
                    let answer = send(&service, command, &mut retries).await;
                    if n == 0 {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        cold.saturating_record(micros.max(1));
                    }
                    match answer {
                        Ok(reply) if matches!(reply.outcome, Outcome::Accepted { .. }) => {
                            accepted += 1
                        }
                        Ok(reply) => {
                            failed += 1;
                            first_error.get_or_insert(format!(
                                "{} pass, product #{index}: {:?}",
                                pass.name(),
                                reply.outcome
                            ));
                        }
                        Err(err) => {
                            failed += 1;
                            first_error.get_or_insert(format!(
                                "{} pass, product #{index}: {err}",
                                pass.name()
                            ));
                        }
                    }
                }
                bar.inc(1);
                let touched = done.fetch_add(1, Ordering::Relaxed) + 1;
                for percent in CHECKPOINTS {
                    if touched == threshold(total, percent) {
                        let live = service.live_entities().await?;
                        live_max.fetch_max(live, Ordering::Relaxed);
                        let point = Checkpoint {
                            pass: pass.name().to_string(),
                            percent,
                            touched,
                            aggregates_stored: match pass {
                                Pass::Create => touched,
                                _ => total,
                            },
                            rss_mib: mib(resident_bytes().unwrap_or(0)),
                            live_entities: live,
                        };
                        checkpoints.lock().map_err(|_| "checkpoints")?.push(point);
                    }
                }
            }
            Ok::<_, BenchError>((cold, accepted, failed, first_error))
        }));
    }
    let mut cold = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut measured = TouchPass {
        pass: pass.name().to_string(),
        aggregates: total,
        commands: total * per_touch,
        ..TouchPass::default()
    };
    for worker in workers {
        let (latencies, accepted, failed, first_error) = worker
            .await
            .map_err(|e| format!("a bench worker did not finish: {e}"))??;
        cold.add(&latencies)?;
        measured.accepted += accepted;
        measured.failed += failed;
        if measured.first_error.is_none() {
            measured.first_error = first_error;
        }
    }
    bar.finish_and_clear();
    measured.seconds = started.elapsed().as_secs_f64();
    measured.cold_starts = service.recoveries() - cold_before;
    measured.passivations = service.passivations() - passivated_before;
    measured.cold_starts_per_sec = measured.cold_starts as f64 / measured.seconds.max(1e-9);
    measured.cold_p50_ms = cold.value_at_quantile(0.5) as f64 / 1000.0;
    measured.cold_p99_ms = cold.value_at_quantile(0.99) as f64 / 1000.0;
    measured.cold_max_ms = cold.max() as f64 / 1000.0;
    Ok(measured)
}

/// How many touches make `percent` of `total` (at least one).
fn threshold(total: usize, percent: u8) -> usize {
    (total * usize::from(percent)).div_ceil(100).max(1)
}

/// How many of an even sample of the touched aggregates have a snapshot
/// (checked, found).
fn snapshots(journal: &Journal, config: &ActorsBenchConfig) -> Result<(usize, usize), BenchError> {
    let step = config.touch.div_ceil(SNAPSHOT_SAMPLE).max(1);
    let (mut checked, mut found) = (0, 0);
    for index in (0..config.touch).step_by(step) {
        let stream = stream_of::<Product>(product(config.seed, Domain::Touch, index).as_uuid());
        checked += 1;
        if journal.load_snapshot(&stream)?.is_some() {
            found += 1;
        }
    }
    Ok((checked, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_fall_on_the_touch_that_completes_their_share() {
        assert_eq!(threshold(1000, 10), 100);
        assert_eq!(threshold(1000, 100), 1000);
        assert_eq!(threshold(7, 10), 1);
        assert_eq!(threshold(7, 50), 4);
        assert_eq!(threshold(1, 10), 1);
    }
}
