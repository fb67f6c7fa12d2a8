//! Starts sagas from the orders store.
//!
//! Delivery guarantee: every `Placed` and `Cancelled` order event reaches its
//! saga exactly once in effect. The follower reads the store-wide log from a
//! checkpoint kept in the same store; the saga commands it sends have ids
//! derived from the event, so re-reading after a crash is harmless.
//!
//! Damage is handled one way, loudly: a log entry or an order event that
//! cannot be read is skipped with an error naming the store and position (or
//! stream), so one damaged order does not stop every other order's saga;
//! `ordersaga verify` lists the unreadable entry and the order left without a
//! saga. A storage error that may pass (the disk, sled) is waited out
//! instead.

use super::clock::Clock;
use chrono::{DateTime, Utc};
use ordersaga_actors::aggregates::{Order, Saga};
use ordersaga_actors::journal::{AppendBatch, ConsumedOffset, LogEntry};
use ordersaga_actors::recovery::decode_stored;
use ordersaga_actors::{Execute, Journal, JournalError, Service};
use ordersaga_events::order::OrderEvent;
use ordersaga_events::saga::{saga_of, SagaCommand, SagaEvent, SagaPolicy};
use ordersaga_events::{CommandEnvelope, CommandId, OrderId, StreamKind};
use std::time::Duration;
use tokio::sync::watch;

/// The checkpoint's name in the store's offsets table.
const CHECKPOINT: &str = "$orders-log";
/// Log entries read and handled per round.
const ROUND: usize = 256;

fn checkpoint(journal: &Journal) -> u64 {
    match journal.offset(CHECKPOINT, 0) {
        Ok(Some(stored)) => stored.next_offset.max(1) as u64,
        Ok(None) => 1,
        Err(err) => {
            tracing::error!(cause = %err, "cannot read the saga checkpoint; starting from the beginning");
            1
        }
    }
}

/// Follows the orders store until `stop`, starting sagas with `policy` at
/// `clock`'s time.
pub async fn run(
    journal: Journal,
    sagas: Service<Saga>,
    policy: SagaPolicy,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = checkpoint(&journal);
    // Order events add outbox records, so the outbox watch wakes us.
    let mut wake = journal.outbox_watch();
    while !*stop.borrow() {
        let entries: Vec<_> = journal.read_log(next).take(ROUND).collect();
        if entries.is_empty() {
            tokio::select! {
                _ = wake.changed() => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        let mut pending = Vec::new();
        // The last position handled in this round; the next round starts after it.
        let mut last = next - 1;
        let mut stalled = false;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err @ JournalError::Corrupt { .. }) => {
                    tracing::error!(
                        store = %journal.path().display(),
                        position = last + 1,
                        cause = %err,
                        "unreadable log entry: the saga follower skips it; an order placed there gets no saga (ordersaga verify lists it)"
                    );
                    last += 1;
                    continue;
                }
                Err(err) => {
                    tracing::warn!(store = %journal.path().display(), position = last + 1, cause = %err, "cannot read the log; the saga follower waits");
                    stalled = true;
                    break;
                }
            };
            count_saga_event(&entry);
            if let Some(envelope) = saga_input(&entry, policy, clock.now()) {
                match sagas.submit(Execute::new(envelope)) {
                    Ok(reply) => pending.push(reply),
                    Err(err) => {
                        tracing::warn!(cause = %err, "saga service busy; the follower retries");
                        stalled = true;
                        break;
                    }
                }
            }
            last = entry.position;
        }
        let mut complete = true;
        for reply in pending {
            if let Err(err) = reply.await {
                tracing::warn!(cause = %err, "a saga input failed; the follower retries this round");
                complete = false;
            }
        }
        if !complete {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if stalled {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if last + 1 == next {
            continue;
        }
        next = last + 1;
        let batch = AppendBatch {
            offset: Some(ConsumedOffset {
                topic: CHECKPOINT.into(),
                partition: 0,
                cluster_id: "local".into(),
                next_offset: next as i64,
            }),
            ..AppendBatch::default()
        };
        if let Err(err) = journal.append(batch).await {
            tracing::warn!(cause = %err, "cannot store the saga checkpoint");
        }
    }
}

/// Counts the saga events that move a saga between the states people
/// watch (started, completed, aborted, stuck, retried by an operator), as
/// the follower passes them in the log: `ordersaga_saga_events_total`.
fn count_saga_event(entry: &LogEntry) {
    if entry.stream.kind != StreamKind::Saga {
        return;
    }
    let Ok(envelope) = decode_stored::<Saga>(&entry.stream, entry.sequence, &entry.bytes) else {
        return;
    };
    let name = match envelope.payload {
        SagaEvent::Started { .. } => "started",
        SagaEvent::Completed => "completed",
        SagaEvent::Aborted { .. } => "aborted",
        SagaEvent::Stuck { .. } => "stuck",
        SagaEvent::RetryRequested { .. } => "retry_requested",
        _ => return,
    };
    crate::metrics::metrics()
        .saga_events
        .with_label_values(&[name])
        .inc();
}

/// The saga input an order event causes at `now`, if any.
fn saga_input(
    entry: &LogEntry,
    policy: SagaPolicy,
    now: DateTime<Utc>,
) -> Option<CommandEnvelope<SagaCommand>> {
    if entry.stream.kind != StreamKind::Order {
        return None;
    }
    let event = match decode_stored::<Order>(&entry.stream, entry.sequence, &entry.bytes) {
        Ok(envelope) => envelope,
        Err(err) => {
            tracing::error!(
                stream = %entry.stream,
                sequence = entry.sequence,
                position = entry.position,
                cause = %err,
                "undecodable order event: the saga follower skips it; its order gets no saga (ordersaga verify lists it)"
            );
            return None;
        }
    };
    let order_id = OrderId::from_uuid(entry.stream.id);
    let saga_id = saga_of(order_id);
    let command = match event.payload {
        OrderEvent::Placed { user_id, lines, .. } => SagaCommand::Start {
            saga_id,
            order_id,
            user_id,
            lines,
            policy,
            now,
        },
        OrderEvent::Cancelled { previous, .. } => SagaCommand::OrderCancelled {
            saga_id,
            previous,
            now,
        },
        _ => return None,
    };
    Some(CommandEnvelope {
        // One saga input per order event, however often it is read.
        command_id: CommandId::derived(event.event_id.as_uuid(), "saga-input"),
        correlation_id: event.correlation_id,
        reply_to: None,
        issued_at: now,
        command,
    })
}
