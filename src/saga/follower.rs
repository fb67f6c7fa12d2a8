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
use ordersaga_actors::service::PendingReply;
use ordersaga_actors::{Execute, Journal, JournalError, Service};
use ordersaga_events::order::OrderEvent;
use ordersaga_events::saga::{saga_of, SagaCommand, SagaEvent, SagaPolicy};
use ordersaga_events::{CommandEnvelope, CommandId, OrderId, StreamKind};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

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

/// Rounds whose saga inputs may be in flight at once: the follower reads
/// ahead while earlier sagas start, up to this many rounds.
const ROUNDS_IN_FLIGHT: usize = 8;

/// One round of log entries handed to saga inputs: the checkpoint may pass
/// `last` once every input is in.
struct Round {
    /// The first position of the round: where to read again if it fails.
    first: u64,
    /// The last position handled.
    last: u64,
    pending: Vec<PendingReply>,
    /// Bumped by every restart, so rounds read before one are dropped.
    generation: u64,
}

/// Follows the orders store until `stop`, starting sagas with `policy` at
/// `clock`'s time.
///
/// The reader does not wait for a round's sagas to start, nor for the
/// checkpoint, before reading on: a placed order reaches its saga one actor
/// step after it is in the log, however busy the store. A separate task
/// awaits each round's inputs in order and moves the checkpoint; when an
/// input fails, it sends the reader back to that round.
pub async fn run(
    journal: Journal,
    sagas: Service<Saga>,
    policy: SagaPolicy,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = checkpoint(&journal);
    let mut generation = 0u64;
    let (rounds, rounds_rx) = mpsc::channel::<Round>(ROUNDS_IN_FLIGHT);
    let (restart_tx, mut restart) = mpsc::unbounded_channel::<(u64, u64)>();
    let checkpoints = actix::spawn(keep_checkpoint(journal.clone(), rounds_rx, restart_tx));
    // Order events add outbox records, so the outbox watch wakes us.
    let mut wake = journal.outbox_watch();
    while !*stop.borrow() {
        let mut back = None;
        while let Ok((position, failed)) = restart.try_recv() {
            if failed == generation {
                back = Some(back.map_or(position, |b: u64| b.min(position)));
            }
        }
        if let Some(position) = back {
            next = position;
            generation += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let entries: Vec<_> = journal.read_log(next).take(ROUND).collect();
        if entries.is_empty() {
            tokio::select! {
                _ = wake.changed() => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        let first = next;
        let (pending, last, stalled) = start_round(&journal, &sagas, policy, &clock, next, entries);
        if last >= first {
            let round = Round {
                first,
                last,
                pending,
                generation,
            };
            if rounds.send(round).await.is_err() {
                break;
            }
            next = last + 1;
        }
        if stalled {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    drop(rounds);
    let _ = checkpoints.await;
}

/// Hands a round of log `entries` (from position `next`) to the sagas.
/// Returns the inputs in flight, the last position handled, and whether the
/// round stopped early (a busy saga service or a storage error).
fn start_round(
    journal: &Journal,
    sagas: &Service<Saga>,
    policy: SagaPolicy,
    clock: &Clock,
    next: u64,
    entries: Vec<Result<LogEntry, JournalError>>,
) -> (Vec<PendingReply>, u64, bool) {
    let mut pending = Vec::new();
    // The last position handled in this round; the next round starts after it.
    let mut last = next - 1;
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
                return (pending, last, true);
            }
        };
        count_saga_event(&entry);
        if let Some(envelope) = saga_input(&entry, policy, clock.now()) {
            match sagas.submit(Execute::new(envelope)) {
                Ok(reply) => pending.push(reply),
                Err(err) => {
                    tracing::warn!(cause = %err, "saga service busy; the follower retries");
                    return (pending, last, true);
                }
            }
        }
        last = entry.position;
    }
    (pending, last, false)
}

/// Awaits each round's saga inputs in order and stores the checkpoint after
/// it (once no later round is already waiting, so a busy store writes one
/// checkpoint for many rounds). A failed input sends the reader back to its
/// round, with the round's generation; rounds read before the reader went
/// back are dropped.
async fn keep_checkpoint(
    journal: Journal,
    mut rounds: mpsc::Receiver<Round>,
    restart: mpsc::UnboundedSender<(u64, u64)>,
) {
    let mut stored: Option<u64> = None;
    let mut done: Option<u64> = None;
    let mut dropped_through: Option<u64> = None;
    while let Some(round) = rounds.recv().await {
        if dropped_through.is_some_and(|g| round.generation <= g) {
            continue;
        }
        let mut complete = true;
        for reply in round.pending {
            if let Err(err) = reply.await {
                tracing::warn!(cause = %err, "a saga input failed; the follower reads its round again");
                complete = false;
            }
        }
        if !complete {
            dropped_through = Some(round.generation);
            let _ = restart.send((round.first, round.generation));
            continue;
        }
        done = Some(round.last + 1);
        if rounds.is_empty() && done != stored {
            if let Some(next) = done {
                store_checkpoint(&journal, next).await;
                stored = done;
            }
        }
    }
    if done != stored {
        if let Some(next) = done {
            store_checkpoint(&journal, next).await;
        }
    }
}

/// Stores where the follower starts after a restart. A checkpoint that is
/// behind only means reading some entries again: their saga inputs have
/// ids derived from the events, so they apply once.
async fn store_checkpoint(journal: &Journal, next: u64) {
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
