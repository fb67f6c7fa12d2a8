//! Saga timeouts and resumption.
//!
//! The timer keeps the set of unfinished sagas. Every interval it looks at
//! each one and ticks those whose deadline has passed; the saga decides to
//! resend its unanswered commands (same ids) or to give up and compensate.
//! On start every saga stream in the store joins the set, which spawns its
//! child actor from the journal: unfinished sagas resume where they were.

use chrono::Utc;
use ordersaga_actors::aggregates::Saga;
use ordersaga_actors::{Execute, Journal, Service};
use ordersaga_events::saga::SagaCommand;
use ordersaga_events::{CommandEnvelope, SagaId, StreamKind};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The sagas not known to be finished. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct InFlightSagas(Arc<Mutex<HashSet<SagaId>>>);

impl InFlightSagas {
    /// Watches `saga`.
    pub fn insert(&self, saga: SagaId) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(saga);
        }
    }

    fn remove(&self, saga: &SagaId) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(saga);
        }
    }

    fn snapshot(&self) -> Vec<SagaId> {
        self.0
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// How many sagas are watched.
    pub fn len(&self) -> usize {
        self.0.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether no saga is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds every saga stored in `journal`; finished ones leave on the first
    /// tick.
    pub fn resume_from(&self, journal: &Journal) {
        for item in journal.streams(Some(StreamKind::Saga)) {
            match item {
                Ok((stream, _)) => self.insert(SagaId::from_uuid(stream.id)),
                Err(err) => tracing::error!(cause = %err, "cannot list saga streams"),
            }
        }
    }
}

/// Ticks due sagas every `interval` until `stop`.
pub async fn run(
    sagas: Service<Saga>,
    in_flight: InFlightSagas,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        if *stop.borrow() {
            return;
        }
        let now = Utc::now();
        let mut ticks = Vec::new();
        for saga_id in in_flight.snapshot() {
            let state = match sagas.state(saga_id.as_uuid()).await {
                Ok(recovered) => recovered.state,
                Err(err) => {
                    tracing::warn!(%saga_id, cause = %err, "cannot read a saga");
                    continue;
                }
            };
            if state.is_terminal() {
                in_flight.remove(&saga_id);
                continue;
            }
            if state.deadline().is_some_and(|deadline| deadline <= now) {
                let tick = CommandEnvelope::new(SagaCommand::Tick { saga_id, now });
                match sagas.submit(Execute::ephemeral(tick)) {
                    Ok(pending) => ticks.push(pending),
                    Err(err) => tracing::warn!(%saga_id, cause = %err, "cannot tick a saga"),
                }
            }
        }
        for tick in ticks {
            if let Err(err) = tick.await {
                tracing::warn!(cause = %err, "a saga tick failed");
            }
        }
    }
}
