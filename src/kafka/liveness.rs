//! Is a service listening? Partition ownership of its consumers, and
//! readiness.
//!
//! A consumer that owns no partition of its topic is alive but deaf: commands
//! pile up on the topic and nobody handles them. This happens when a broker
//! keeps a dead member's partitions, or when the group never settles. Each
//! consumer's rebalance callback records what it owns in an [`Ownership`];
//! [`watch`] turns the ownership of all a service's consumers into one
//! [`Readiness`], warns once (with the group and topic) when a consumer has
//! owned nothing for longer than a bound, and says when it hears again.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What one consumer owns right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// Partitions of the topic assigned to this consumer, sorted.
    pub partitions: Vec<i32>,
    /// When the assignment last changed.
    pub since: Instant,
}

/// One consumer's partition ownership, written by its rebalance callback.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ownership {
    /// The physical group id.
    pub group: String,
    /// The physical topic.
    pub topic: String,
    owned: Arc<std::sync::Mutex<Owned>>,
    changed: Arc<Notify>,
}

impl Ownership {
    /// A consumer of `topic` in `group` that owns nothing yet, on its own.
    pub fn new(group: impl Into<String>, topic: impl Into<String>) -> Self {
        Self::signalling(group, topic, Arc::new(Notify::new()))
    }

    /// Like [`Ownership::new`], notifying `changed` on every change, so that
    /// one watcher can follow several consumers.
    pub fn signalling(
        group: impl Into<String>,
        topic: impl Into<String>,
        changed: Arc<Notify>,
    ) -> Self {
        Self {
            group: group.into(),
            topic: topic.into(),
            owned: Arc::new(std::sync::Mutex::new(Owned {
                partitions: Vec::new(),
                since: Instant::now(),
            })),
            changed,
        }
    }

    /// Records a new assignment of `partitions` (of this topic).
    pub fn assigned(&self, mut partitions: Vec<i32>) {
        partitions.sort_unstable();
        partitions.dedup();
        if let Ok(mut owned) = self.owned.lock() {
            *owned = Owned {
                partitions,
                since: Instant::now(),
            };
        }
        // A stored permit: a change while the watcher is busy is not missed.
        self.changed.notify_one();
    }

    /// Records that every partition was taken away (revoked, or lost).
    pub fn revoked(&self) {
        self.assigned(Vec::new());
    }

    /// What the consumer owns now.
    pub fn current(&self) -> Owned {
        match self.owned.lock() {
            Ok(owned) => owned.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// One consumer as readiness sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerState {
    /// The physical group id.
    pub group: String,
    /// The physical topic.
    pub topic: String,
    /// Partitions owned now.
    pub partitions: Vec<i32>,
    /// Owned nothing for longer than the bound.
    pub deaf: bool,
}

/// Whether a service is doing its job: every consumer owns partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Every consumer owns at least one partition.
    pub ready: bool,
    /// Each consumer's state.
    pub consumers: Vec<ConsumerState>,
}

impl Readiness {
    fn of(consumers: Vec<ConsumerState>) -> Self {
        Self {
            ready: consumers.iter().all(|c| !c.partitions.is_empty()),
            consumers,
        }
    }

    /// The consumers that own nothing.
    pub fn idle(&self) -> impl Iterator<Item = &ConsumerState> {
        self.consumers.iter().filter(|c| c.partitions.is_empty())
    }

    /// Why the service is not ready, one reason per consumer that owns
    /// nothing (what heartbeats and `/ready` say).
    pub fn reasons(&self) -> Vec<String> {
        self.idle()
            .map(|c| {
                let deaf = if c.deaf { " (deaf)" } else { "" };
                format!("{} owns no partition of {}{deaf}", c.group, c.topic)
            })
            .collect()
    }
}

/// The readiness of a service whose consumers own `ownerships`, as of `now`,
/// where `deaf_after` is how long a consumer may own nothing before it counts
/// as deaf.
pub fn assess(ownerships: &[Ownership], deaf_after: Duration, now: Instant) -> Readiness {
    Readiness::of(
        ownerships
            .iter()
            .map(|o| {
                let owned = o.current();
                let idle_for = now.saturating_duration_since(owned.since);
                ConsumerState {
                    group: o.group.clone(),
                    topic: o.topic.clone(),
                    deaf: owned.partitions.is_empty() && idle_for >= deaf_after,
                    partitions: owned.partitions,
                }
            })
            .collect(),
    )
}

/// Keeps `readiness` up to date from `ownerships` (which signal `changed`)
/// until `stop`: on every assignment change, and once a second so that a consumer that stays without
/// partitions is found deaf after `deaf_after`. Logs one warning per deaf
/// spell (group, topic, how long) and one line when the consumer hears again.
pub async fn watch(
    service: &'static str,
    ownerships: Vec<Ownership>,
    changed: Arc<Notify>,
    deaf_after: Duration,
    readiness: watch::Sender<Readiness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut deaf_since: Vec<Option<Instant>> = vec![None; ownerships.len()];
    let started = Instant::now();
    let mut announced_ready = false;
    loop {
        let now = Instant::now();
        let state = assess(&ownerships, deaf_after, now);
        for (i, consumer) in state.consumers.iter().enumerate() {
            match (consumer.deaf, deaf_since[i]) {
                (true, None) => {
                    deaf_since[i] = Some(now);
                    tracing::warn!(
                        service,
                        group = %consumer.group,
                        topic = %consumer.topic,
                        bound_ms = deaf_after.as_millis() as u64,
                        "deaf: this consumer owns no partition of its topic, so nothing it should handle is handled; the service reports itself not ready"
                    );
                }
                (false, Some(since)) if !consumer.partitions.is_empty() => {
                    deaf_since[i] = None;
                    tracing::info!(
                        service,
                        group = %consumer.group,
                        topic = %consumer.topic,
                        partitions = ?consumer.partitions,
                        deaf_ms = now.duration_since(since).as_millis() as u64,
                        "hearing again: partitions assigned"
                    );
                }
                _ => {}
            }
        }
        if state.ready && !announced_ready {
            announced_ready = true;
            tracing::info!(
                service,
                after_ms = now.duration_since(started).as_millis() as u64,
                "ready: every consumer owns partitions"
            );
        }
        readiness.send_replace(state);
        tokio::select! {
            _ = stop.changed() => return,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_without_partitions_is_deaf_only_after_the_bound() {
        let o = Ownership::new("g", "t");
        let bound = Duration::from_secs(15);
        let start = o.current().since;
        let early = assess(
            std::slice::from_ref(&o),
            bound,
            start + Duration::from_secs(14),
        );
        assert!(!early.ready);
        assert!(!early.consumers[0].deaf, "not deaf before the bound");
        let late = assess(std::slice::from_ref(&o), bound, start + bound);
        assert!(late.consumers[0].deaf);
        o.assigned(vec![2, 0, 0]);
        let now = o.current().since + Duration::from_secs(60);
        let heard = assess(std::slice::from_ref(&o), bound, now);
        assert!(heard.ready);
        assert_eq!(heard.consumers[0].partitions, vec![0, 2]);
        assert!(!heard.consumers[0].deaf);
    }

    #[test]
    fn a_service_is_ready_only_when_every_consumer_owns_partitions() {
        let a = Ownership::new("g1", "t1");
        let b = Ownership::new("g2", "t2");
        a.assigned(vec![0]);
        let now = Instant::now();
        let state = assess(&[a.clone(), b.clone()], Duration::ZERO, now);
        assert!(!state.ready);
        assert_eq!(
            state.idle().map(|c| c.topic.as_str()).collect::<Vec<_>>(),
            ["t2"]
        );
        b.assigned(vec![1]);
        assert!(assess(&[a.clone(), b], Duration::ZERO, now).ready);
        a.revoked();
        assert!(!assess(&[a], Duration::ZERO, Instant::now()).ready);
    }
}
