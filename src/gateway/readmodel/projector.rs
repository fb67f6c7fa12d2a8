//! Live projection: a task that reads the three event topics into the read
//! model, record by record, for as long as the gateway runs.
//!
//! It resumes every partition at the offset stored with the rows (exactly
//! once: see `apply.rs`), or at the beginning when the store was projected
//! from another cluster or holds nothing. A cluster that cannot be reached
//! is logged once and asked again with a growing pause; nothing panics or
//! spins. Progress is visible as lag per partition (the high watermark
//! minus the next offset to apply) and as "caught up": once, the projection
//! reached the high watermarks that held when it started, which is what
//! readiness waits for.
//!
//! The partitions are those the topics had when the projection reached the
//! cluster; partitions added to a topic later are read after a restart.

use super::error::ReadModelError;
use super::record::{Applied, ProjectedRecord, ProjectionCounters};
use super::source::{EventSource, HighWatermarks, Partition};
use super::store::{ReadModel, Source};
use crate::kafka::{KafkaConfig, TransportError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The client id of the projection's consumer.
const CLIENT_ID: &str = "ordersaga-gateway-readmodel";
/// The shortest and longest pause before asking a failing cluster or store
/// again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long [`Projector::stop`] waits for the task before abandoning it.
const STOP_BOUND: Duration = Duration::from_secs(10);

/// How far the projection is behind the event topics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lag {
    /// `(physical topic, partition, records not applied yet)`: the high
    /// watermark minus the next offset to apply, never negative; in topic
    /// and partition order. Empty until the projection has reached the
    /// cluster once.
    pub per_partition: Vec<(String, i32, i64)>,
    /// The sum.
    pub total: i64,
}

/// One partition's position.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The next offset to apply.
    next: i64,
    /// The high watermark when the projection started: "caught up" once
    /// `next` reaches it.
    target: i64,
}

/// What the task shares with the handle.
struct Shared {
    counters: Mutex<ProjectionCounters>,
    progress: Mutex<BTreeMap<Partition, Progress>>,
    highs: HighWatermarks,
    caught_up: watch::Sender<bool>,
}

impl Shared {
    /// Books one applied record, and notes when the projection catches up.
    fn booked(&self, record: &ProjectedRecord, applied: &Applied) {
        if let Ok(mut counters) = self.counters.lock() {
            counters.count(record, applied);
        }
        let Ok(mut progress) = self.progress.lock() else {
            return;
        };
        if let Some(p) = progress.get_mut(&(record.topic.clone(), record.partition)) {
            p.next = p.next.max(record.offset.saturating_add(1));
        }
        self.check_caught_up(&progress);
    }

    fn check_caught_up(&self, progress: &BTreeMap<Partition, Progress>) {
        if !*self.caught_up.borrow() && progress.values().all(|p| p.next >= p.target) {
            tracing::info!(
                partitions = progress.len(),
                "the read model caught up with the event topics"
            );
            self.caught_up.send_replace(true);
        }
    }
}

/// The live projection of the event topics into a [`ReadModel`]. Dropping
/// it stops the task too; [`Projector::stop`] waits for it.
pub struct Projector {
    model: ReadModel,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Taken by the first [`Projector::stop`].
    handle: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Projector {
    /// Starts projecting into `model` on the current runtime. Only making
    /// the consumer can fail here; reaching the cluster happens in the task,
    /// which keeps trying, so this returns at once even when the cluster is
    /// down.
    pub async fn start(kafka: &KafkaConfig, model: ReadModel) -> Result<Projector, TransportError> {
        let source = EventSource::new(kafka, CLIENT_ID)?;
        let shared = Arc::new(Shared {
            counters: Mutex::new(ProjectionCounters::default()),
            progress: Mutex::new(BTreeMap::new()),
            highs: source.highs.clone(),
            caught_up: watch::channel(false).0,
        });
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(run(source, model.clone(), Arc::clone(&shared), stopped));
        Ok(Projector {
            model,
            shared,
            stop,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// The read model it projects into.
    pub fn model(&self) -> &ReadModel {
        &self.model
    }

    /// How far the projection is behind, per partition and in total. The
    /// high watermarks come from the consumer's statistics (every 5 s) and
    /// the start, so the lag may be a few seconds old; never negative.
    pub fn lag(&self) -> Lag {
        let highs = self.shared.highs.snapshot();
        let progress = self
            .shared
            .progress
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let per_partition: Vec<(String, i32, i64)> = progress
            .into_iter()
            .map(|((topic, partition), p)| {
                let high = highs
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(0)
                    .max(p.target);
                (topic, partition, high.saturating_sub(p.next).max(0))
            })
            .collect();
        let total = per_partition.iter().map(|(_, _, lag)| lag).sum();
        Lag {
            per_partition,
            total,
        }
    }

    /// Whether the projection has reached, once, the high watermarks that
    /// held when it started: the read model is as fresh as the topics were
    /// then. For readiness.
    pub fn caught_up(&self) -> bool {
        *self.shared.caught_up.borrow()
    }

    /// Waits until [`Projector::caught_up`] or `bound` passes; whether it
    /// caught up.
    pub async fn wait_caught_up(&self, bound: Duration) -> bool {
        let mut caught_up = self.shared.caught_up.subscribe();
        let reached = tokio::time::timeout(bound, caught_up.wait_for(|reached| *reached)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// What this projector has applied so far, by outcome.
    pub fn counters(&self) -> ProjectionCounters {
        self.shared.counters.lock().map(|c| *c).unwrap_or_default()
    }

    /// Stops the task and waits for it, at most 10 s; the record being
    /// applied is finished or not started, never half-applied. Takes
    /// `&self` so that a shared projector can be stopped; stopping again
    /// returns at once.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        let Some(mut handle) = handle else {
            return;
        };
        if tokio::time::timeout(STOP_BOUND, &mut handle).await.is_err() {
            tracing::warn!(
                bound_secs = STOP_BOUND.as_secs(),
                "the read-model projection did not stop in time; abandoning it"
            );
            handle.abort();
        }
    }
}

/// Logs a failing dependency once per outage, and paces the retries.
struct Outage {
    failing: bool,
    backoff: Duration,
}

impl Outage {
    fn new() -> Self {
        Self {
            failing: false,
            backoff: BACKOFF_MIN,
        }
    }

    /// Notes a failure; the pause before the next try.
    fn failed(&mut self, what: &str, err: &dyn std::fmt::Display) -> Duration {
        if self.failing {
            tracing::debug!(cause = %err, "{what} still failing");
        } else {
            tracing::warn!(cause = %err, "{what} failed; the read-model projection keeps trying");
            self.failing = true;
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        pause
    }

    fn recovered(&mut self, what: &str) {
        if self.failing {
            tracing::info!("{what} works again");
        }
        self.failing = false;
        self.backoff = BACKOFF_MIN;
    }
}

/// Whether a stop was asked (or the handle dropped) within `pause`.
async fn pause(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        _ = stop.wait_for(|stopped| *stopped) => true,
        _ = tokio::time::sleep(pause) => false,
    }
}

/// Where each partition resumes and where "caught up" is.
struct Plan {
    from: BTreeMap<Partition, Option<i64>>,
    progress: BTreeMap<Partition, Progress>,
}

/// Asks the cluster what the topics hold, binds the store to this cluster
/// (clearing it when it was projected from another), and plans where each
/// partition resumes.
async fn prepare(source: &EventSource, model: &ReadModel) -> Result<Plan, ReadModelError> {
    let cluster_id = source.cluster_id().await?;
    let partitions = source.partitions().await?;
    let marks = source.watermarks(&partitions).await?;
    let bound = Source::new(cluster_id.clone(), source.topics.clone());
    if model.bind(&bound)? {
        tracing::info!(cluster_id = %cluster_id, store = %model.path().display(), "the read model is new to this cluster: projecting from the beginning");
    }
    // Offsets are checked against the cluster's identity only, not against
    // the partitions' ends: Tansu 0.6 reports an end below offsets it has
    // served (see `EventSource::cluster_id`).
    let stored = model.offsets()?;
    let mut plan = Plan {
        from: BTreeMap::new(),
        progress: BTreeMap::new(),
    };
    for (partition, &(low, high)) in &marks {
        let start = match stored.get(partition).copied() {
            Some(next) if next >= low => Some(next),
            Some(next) => {
                tracing::warn!(topic = %partition.0, partition = partition.1, next, low, "records the read model had not applied are gone from the topic; resuming at its start (stream gaps will be reported)");
                None
            }
            None => None,
        };
        plan.from.insert(partition.clone(), start);
        let next = start.unwrap_or(low);
        plan.progress
            .insert(partition.clone(), Progress { next, target: high });
    }
    Ok(plan)
}

/// Applies `record`, retrying a failing store until it works or a stop is
/// asked; whether to go on.
async fn apply_until_done(
    model: &ReadModel,
    shared: &Shared,
    record: &ProjectedRecord,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut outage = Outage::new();
    loop {
        match model.apply(record) {
            Ok(applied) => {
                outage.recovered("applying to the read model");
                shared.booked(record, &applied);
                return true;
            }
            Err(err) => {
                let wait = outage.failed("applying to the read model", &err);
                if pause(stop, wait).await {
                    return false;
                }
            }
        }
    }
}

/// The projection task.
async fn run(
    source: EventSource,
    model: ReadModel,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut outage = Outage::new();
    let what = "reaching the event topics";
    let plan = loop {
        let prepared = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => None,
            prepared = prepare(&source, &model) => Some(prepared),
        };
        let prepared = match prepared {
            None => return source.close(),
            Some(prepared) => prepared.and_then(|plan| source.assign(&plan.from).map(|()| plan)),
        };
        match prepared {
            Ok(plan) => break plan,
            Err(err) => {
                let wait = outage.failed(what, &err);
                if pause(&mut stop, wait).await {
                    return source.close();
                }
            }
        }
    };
    outage.recovered(what);
    if let Ok(mut progress) = shared.progress.lock() {
        *progress = plan.progress;
        shared.check_caught_up(&progress);
    }
    let what = "reading the event topics";
    loop {
        let received = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            received = source.consumer.recv() => received.map(|m| ProjectedRecord::from_message(&m)),
        };
        match received {
            Ok(record) => {
                outage.recovered(what);
                if !source.check(&record) {
                    continue;
                }
                if !apply_until_done(&model, &shared, &record, &mut stop).await {
                    break;
                }
            }
            Err(err) => {
                let wait = outage.failed(what, &err);
                if pause(&mut stop, wait).await {
                    break;
                }
            }
        }
    }
    if let Err(err) = model.flush().await {
        tracing::warn!(cause = %err, "cannot flush the read model; the last records are read again");
    }
    source.close();
}
