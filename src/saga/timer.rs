//! Saga timeouts and resumption.
//!
//! Every saga still waiting for replies sits in the orders store's deadline
//! index under its deadline, written in the saga's own transaction (see
//! `Aggregate::wake_at`). Every interval the timer reads the sagas that are
//! due, with one range scan of that index, and ticks each: the saga decides
//! to resend its unanswered commands (same ids) or to give up and
//! compensate, and its new deadline (or none) goes back into the index with
//! that decision. A tick's work grows with the due sagas, not with every
//! saga ever stored, and a restart resumes exactly the sagas still waiting:
//! the index is on disk.
//!
//! The timer reads its time from the service's [`Clock`]: the system clock
//! ticks every interval; a test's manual clock ticks only when the test asks.

use super::clock::{Clock, ManualClock};
use chrono::{DateTime, Utc};
use ordersaga_actors::aggregates::Saga;
use ordersaga_actors::recovery::replay;
use ordersaga_actors::{Execute, Journal, JournalError, Service};
use ordersaga_events::saga::SagaCommand;
use ordersaga_events::{CommandEnvelope, SagaId, StreamKind};
use std::time::Duration;
use tokio::sync::watch;

/// Most sagas ticked per interval; the rest are due at the next one.
const TICK_LIMIT: usize = 4_096;

/// Ticks due sagas until `stop`: every `interval` by the system clock, or
/// whenever the test asks, by a manual one (see [`Clock`]).
pub async fn run(
    journal: Journal,
    sagas: Service<Saga>,
    interval: Duration,
    clock: Clock,
    stop: watch::Receiver<bool>,
) {
    match clock {
        Clock::System => every(journal, sagas, interval, stop).await,
        Clock::Manual(clock) => on_request(journal, sagas, clock, stop).await,
    }
}

async fn every(
    journal: Journal,
    sagas: Service<Saga>,
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
        if let Err(err) = tick_due(&journal, &sagas, Utc::now()).await {
            warn_unreadable(&journal, &err);
        }
    }
}

/// Ticks once per request of `clock`'s test, at `clock`'s time, and reports
/// each tick back. Requests made while no timer ran are served first.
async fn on_request(
    journal: Journal,
    sagas: Service<Saga>,
    clock: ManualClock,
    mut stop: watch::Receiver<bool>,
) {
    let mut requests = clock.requests();
    let mut served = clock.served();
    loop {
        tokio::select! {
            _ = stop.changed() => {}
            _ = requests.wait_for(|&requested| requested > served) => {}
        }
        if *stop.borrow() {
            return;
        }
        let wanted = *requests.borrow();
        let due = match tick_due(&journal, &sagas, clock.now()).await {
            Ok(due) => Some(due),
            Err(err) => {
                warn_unreadable(&journal, &err);
                None
            }
        };
        clock.ticked(wanted, due);
        served = wanted;
    }
}

fn warn_unreadable(journal: &Journal, err: &JournalError) {
    tracing::warn!(store = %journal.path().display(), cause = %err, "cannot read the saga deadline index");
}

/// Ticks every saga due at `now`, with `now` as the tick's time; returns how
/// many were due.
pub async fn tick_due(
    journal: &Journal,
    sagas: &Service<Saga>,
    now: DateTime<Utc>,
) -> Result<usize, JournalError> {
    let due = journal.due(now.timestamp_millis(), TICK_LIMIT)?;
    let mut ticks = Vec::with_capacity(due.len());
    for stream in &due {
        let saga_id = SagaId::from_uuid(stream.id);
        let tick = CommandEnvelope::new(SagaCommand::Tick { saga_id, now });
        match sagas.submit(Execute::ephemeral(tick)) {
            Ok(pending) => ticks.push(pending),
            Err(err) => tracing::warn!(%saga_id, cause = %err, "cannot tick a saga"),
        }
    }
    for tick in ticks {
        if let Err(err) = tick.await {
            tracing::warn!(cause = %err, "a saga tick failed");
        }
    }
    Ok(due.len())
}

/// The marker of a store whose deadline index is complete.
const INDEXED: &str = "saga-deadlines-indexed";

/// Fills the deadline index of a store written before it existed: every
/// saga stream is read once, and the unfinished ones are entered. Done once
/// per store (a marker in the store says so); a store that never lacked the
/// index only sets the marker. Returns how many sagas were entered.
pub async fn index_existing(journal: &Journal) -> Result<usize, JournalError> {
    if journal.marker(INDEXED)? {
        return Ok(0);
    }
    let store = journal.clone();
    let entered = tokio::task::spawn_blocking(move || -> Result<usize, JournalError> {
        let mut entered = 0;
        for item in store.streams(Some(StreamKind::Saga)) {
            let (stream, _) = item?;
            let saga = match replay::<Saga>(&store, stream.id, None) {
                Ok(recovered) => recovered.state,
                Err(err) => {
                    tracing::error!(%stream, cause = %err, "cannot read a saga to index its deadline; verify reports it");
                    continue;
                }
            };
            let wake_at = ordersaga_actors::Aggregate::wake_at(&saga);
            if wake_at.is_some() && store.wake_at(&stream)? != wake_at {
                store.append_blocking(ordersaga_actors::journal::AppendBatch {
                    schedule: Some(ordersaga_actors::journal::Schedule { stream, wake_at }),
                    ..Default::default()
                })?;
                entered += 1;
            }
        }
        store.set_marker(INDEXED)?;
        Ok(entered)
    })
    .await
    .map_err(|e| JournalError::InvalidBatch(format!("indexing saga deadlines failed: {e}")))??;
    Ok(entered)
}
