//! In-process delivery of the saga's commands to its own order.
//!
//! The saga and its order live in the same store, so the saga's price,
//! confirm and cancel of the order need no Kafka round trip. The saga still
//! writes each such command to the outbox, in the transaction of the saga
//! event that decided it, under a local topic
//! ([`ordersaga_events::topics::LOCAL_PREFIX`]); the relay never publishes
//! those rows. This task delivers them instead:
//!
//! 1. the command goes to the local order service, with its deterministic
//!    id: the order aggregate applies it once (a redelivered id is answered
//!    from the processed table, as on the Kafka path);
//! 2. its reply goes to the saga as the same `SagaCommand::Reply` the reply
//!    consumer would make, with the same derived id, so a reply delivered
//!    twice reaches the saga once;
//! 3. only then is the row deleted.
//!
//! A crash at any point leaves the row in the outbox, and the next start
//! delivers it again: exactly once in effect, like the Kafka path, with one
//! round trip fewer through the broker per command. A failure without an
//! answer (a full mailbox, a storage error) is retried after a pause. Rows
//! are submitted in outbox order and an entity runs its commands in the
//! order they arrive; only a retried command can arrive after a later one
//! for the same order (a price after a cancel), which the order rejects and
//! the saga, built for replies in any order, ignores.

use super::clock::Clock;
use super::replies::reply_input;
use ordersaga_actors::aggregates::{Order, Saga};
use ordersaga_actors::journal::OutboxRecord;
use ordersaga_actors::{Execute, Journal, Service};
use ordersaga_events::codec::{decode, Format};
use ordersaga_events::order::OrderCommand;
use ordersaga_events::topics::{local_of, ORDERS_COMMANDS};
use ordersaga_events::{CommandEnvelope, Reply};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Most outbox rows scanned per round.
const ROUND: usize = 1_024;
/// Most local commands in flight at once: far below the router's mailbox.
const WINDOW: usize = 512;
/// Pause before a command that failed without an answer is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// How long a stop waits for deliveries in flight; what is left is
/// delivered on the next start.
const DRAIN: Duration = Duration::from_secs(5);

/// One delivery's end: its outbox position and whether the row needs
/// nothing more (the saga has the reply, or the row was set aside).
struct Done {
    position: u64,
    finished: bool,
}

/// Delivers the saga's local commands until `stop`.
pub async fn run(
    journal: Journal,
    orders: Service<Order>,
    sagas: Service<Saga>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    let mut wake = journal.outbox_watch();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    // Positions submitted and not yet ended: never submitted twice at once.
    let mut in_flight: BTreeSet<u64> = BTreeSet::new();
    // The first outbox position not yet looked at.
    let mut next = 0u64;
    // The earliest failed position, and when to look at it again.
    let mut retry: Option<(u64, tokio::time::Instant)> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some((from, at)) = retry {
            if tokio::time::Instant::now() >= at {
                next = next.min(from);
                retry = None;
            }
        }
        let mut scanned_any = false;
        if in_flight.len() < WINDOW {
            match journal.outbox_batch(next, ROUND) {
                Ok(batch) => {
                    // Unreadable rows are the relay's to quarantine.
                    let last = batch
                        .records
                        .last()
                        .map(|(p, _)| *p)
                        .into_iter()
                        .chain(batch.corrupt.iter().map(|bad| bad.position))
                        .max();
                    for (position, record) in batch.records {
                        if in_flight.len() >= WINDOW {
                            next = position;
                            break;
                        }
                        next = position + 1;
                        if in_flight.contains(&position) || !is_order_command(&record) {
                            continue;
                        }
                        in_flight.insert(position);
                        deliver(
                            &journal, &orders, &sagas, &clock, position, record, &done_tx,
                        );
                    }
                    if let Some(last) = last {
                        scanned_any = true;
                        if in_flight.len() < WINDOW {
                            next = next.max(last + 1);
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(store = %journal.path().display(), cause = %err, "cannot read the outbox for local saga commands");
                }
            }
        }
        if scanned_any && in_flight.len() < WINDOW {
            // More may be waiting past this round.
            tokio::task::yield_now().await;
            drain_done(&journal, &mut done_rx, &mut in_flight, &mut retry);
            continue;
        }
        let pause = retry
            .map(|(_, at)| at.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = stop.changed() => {}
            _ = wake.changed() => {}
            Some(done) = done_rx.recv() => {
                ended(&journal, done, &mut in_flight, &mut retry);
            }
            // A safety net for a missed wake-up, and the retry's pause.
            _ = tokio::time::sleep(pause) => {}
        }
        drain_done(&journal, &mut done_rx, &mut in_flight, &mut retry);
    }
    let deadline = tokio::time::Instant::now() + DRAIN;
    while !in_flight.is_empty() {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(done)) => ended(&journal, done, &mut in_flight, &mut retry),
            _ => {
                tracing::warn!(
                    left = in_flight.len(),
                    "stopping with local saga commands in flight; they are delivered on the next start"
                );
                break;
            }
        }
    }
}

/// Whether `record` is a saga command to be delivered to a local order.
fn is_order_command(record: &OutboxRecord) -> bool {
    local_of(&record.topic) == Some(ORDERS_COMMANDS)
}

fn drain_done(
    journal: &Journal,
    done_rx: &mut mpsc::UnboundedReceiver<Done>,
    in_flight: &mut BTreeSet<u64>,
    retry: &mut Option<(u64, tokio::time::Instant)>,
) {
    while let Ok(done) = done_rx.try_recv() {
        ended(journal, done, in_flight, retry);
    }
}

/// A delivery ended: delete its row, or plan to try it again.
fn ended(
    journal: &Journal,
    done: Done,
    in_flight: &mut BTreeSet<u64>,
    retry: &mut Option<(u64, tokio::time::Instant)>,
) {
    in_flight.remove(&done.position);
    if done.finished {
        // A row left behind by a failed delete is delivered again later: the
        // order answers from its processed table and the saga drops the
        // duplicate reply.
        if let Err(err) = journal.outbox_remove(&[done.position]) {
            tracing::warn!(store = %journal.path().display(), position = done.position, cause = %err, "cannot delete a delivered local saga command");
        }
        return;
    }
    let at = tokio::time::Instant::now() + RETRY_AFTER;
    *retry = Some(match *retry {
        Some((from, when)) => (from.min(done.position), when.min(at)),
        None => (done.position, at),
    });
}

/// Delivers one row in the background; the end is sent to `done`.
fn deliver(
    journal: &Journal,
    orders: &Service<Order>,
    sagas: &Service<Saga>,
    clock: &Clock,
    position: u64,
    record: OutboxRecord,
    done: &mpsc::UnboundedSender<Done>,
) {
    let payload = record.payload.unwrap_or_default();
    let mut command: CommandEnvelope<OrderCommand> = match decode(&payload) {
        Ok(command) => command,
        Err(err) => {
            // Written by this program a moment ago, so this is damage: set
            // the row aside where `verify` reports it, and go on.
            tracing::error!(store = %journal.path().display(), position, cause = %err, "an unreadable local saga command; quarantining it");
            if let Err(err) = journal
                .quarantine_outbox(position, &format!("undecodable local saga command: {err}"))
            {
                tracing::error!(position, cause = %err, "cannot quarantine a local saga command");
            }
            let _ = done.send(Done {
                position,
                finished: true,
            });
            return;
        }
    };
    // The reply comes straight back here; no reply record is needed.
    command.reply_to = None;
    let submitted = orders.submit(Execute {
        reply_format: Format::Bincode,
        ..Execute::new(command)
    });
    let sagas = sagas.clone();
    let clock = clock.clone();
    let done = done.clone();
    actix::spawn(async move {
        let delivered = match submitted {
            Ok(pending) => match pending.await {
                Ok(reply) => to_saga(&sagas, reply, &clock).await,
                Err(err) => {
                    tracing::warn!(position, cause = %err, "a local saga command failed; retrying");
                    false
                }
            },
            Err(err) => {
                tracing::warn!(position, cause = %err, "the order service is busy; retrying a local saga command");
                false
            }
        };
        let _ = done.send(Done {
            position,
            finished: delivered,
        });
    });
}

/// Hands `reply` to its saga, as the reply consumer would; whether the saga
/// has it.
async fn to_saga(sagas: &Service<Saga>, reply: Reply, clock: &Clock) -> bool {
    match sagas
        .execute(Execute::new(reply_input(reply, clock.now())))
        .await
    {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(cause = %err, "the saga did not take a local reply; retrying");
            false
        }
    }
}
