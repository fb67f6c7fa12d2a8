//! The group-commit writer: one thread applies every append as its own sled
//! transaction, then makes the whole group durable with a single flush before
//! acknowledging any of it.
//!
//! Why one writer thread: positions in the global log and the outbox are
//! assigned without contention and in commit order, and concurrent appends
//! share one fsync instead of paying one each. While a flush runs, new appends
//! queue up and form the next group.

use super::error::JournalError;
use super::keys::{event_key, offset_key, read_u64, unique_key};
use super::records::{AppendBatch, AppendReceipt, ConsumedOffset};
use super::{Trees, META_LOG_NEXT, META_OUTBOX_NEXT};
use crate::aggregate::UniqueChange;
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::StreamId;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

/// One queued append and where to send its outcome.
pub(crate) struct Request {
    pub batch: AppendBatch,
    pub done: oneshot::Sender<Result<AppendReceipt, JournalError>>,
}

/// Counters the writer keeps in memory; the store holds the same values.
struct Cursor {
    log_next: u64,
    outbox_next: u64,
}

pub(crate) fn run(
    trees: Arc<Trees>,
    requests: Receiver<Request>,
    max_group: usize,
    outbox_watch: watch::Sender<u64>,
) {
    let mut cursor = Cursor {
        log_next: trees.meta_u64(META_LOG_NEXT).unwrap_or(1),
        outbox_next: trees.meta_u64(META_OUTBOX_NEXT).unwrap_or(1),
    };
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < max_group {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut outcomes = Vec::with_capacity(group.len());
        let mut wrote = 0usize;
        let mut events = 0u64;
        for request in &group {
            let outcome = commit_one(&trees, &mut cursor, &request.batch);
            if outcome.is_ok() {
                wrote += 1;
                events += request
                    .batch
                    .events
                    .as_ref()
                    .map_or(0, |e| e.events.len() as u64);
            }
            outcomes.push(outcome);
        }
        if wrote > 0 {
            // Nothing is acknowledged before it is on disk.
            if let Err(err) = trees.db.flush() {
                tracing::error!(cause = %err, "journal flush failed");
                let message = err.to_string();
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(JournalError::Storage(sled::Error::Io(
                        std::io::Error::other(message.clone()),
                    )));
                }
            } else {
                trees.stats.flushes.fetch_add(1, Ordering::Relaxed);
                trees
                    .stats
                    .commits
                    .fetch_add(wrote as u64, Ordering::Relaxed);
                trees.stats.events.fetch_add(events, Ordering::Relaxed);
                outbox_watch.send_replace(cursor.outbox_next);
            }
        }
        for (request, outcome) in group.into_iter().zip(outcomes) {
            // The caller may have given up waiting; the write stands regardless.
            let _ = request.done.send(outcome);
        }
    }
    if let Err(err) = trees.db.flush() {
        tracing::error!(cause = %err, "final journal flush failed");
    }
}

/// Why a transaction was aborted.
enum Abort {
    Journal(JournalError),
}

fn commit_one(
    trees: &Trees,
    cursor: &mut Cursor,
    batch: &AppendBatch,
) -> Result<AppendReceipt, JournalError> {
    let outbox_bytes = batch
        .outbox
        .iter()
        .map(|record| encode(Format::Bincode, record))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| JournalError::InvalidBatch(e.to_string()))?;
    let offset = match &batch.offset {
        Some(offset) => Some((
            offset_key(&offset.topic, offset.partition),
            encode(Format::Bincode, offset)
                .map_err(|e| JournalError::InvalidBatch(e.to_string()))?,
            offset,
        )),
        None => None,
    };
    let event_count = batch.events.as_ref().map_or(0, |e| e.events.len() as u64);
    let log_start = cursor.log_next;
    let outbox_start = cursor.outbox_next;

    let result = (
        &trees.events,
        &trees.versions,
        &trees.log,
        &trees.outbox,
        &trees.processed,
        &trees.offsets,
        &trees.unique,
        &trees.meta,
    )
        .transaction(
            |(events, versions, log, outbox, processed, offsets, unique, meta)| {
                let abort =
                    |e: JournalError| ConflictableTransactionError::Abort(Abort::Journal(e));
                if let Some((command_id, reply)) = &batch.processed {
                    let key = command_id.as_uuid().into_bytes();
                    if let Some(previous) = processed.get(key)? {
                        return Err(abort(JournalError::DuplicateCommand {
                            reply: previous.to_vec(),
                        }));
                    }
                    processed.insert(&key, reply.as_slice())?;
                }
                if let Some(append) = &batch.events {
                    let stream_key = append.stream.to_key();
                    let actual = versions
                        .get(stream_key)?
                        .and_then(|v| read_u64(&v))
                        .unwrap_or(0);
                    if actual != append.expected_version {
                        return Err(abort(JournalError::Conflict {
                            stream: append.stream,
                            expected: append.expected_version,
                            actual,
                        }));
                    }
                    for change in &append.unique {
                        apply_unique(unique, &append.stream, change).map_err(|e| match e {
                            UniqueError::Violation(err) => abort(err),
                            UniqueError::Tx(err) => err.into(),
                        })?;
                    }
                    let mut position = log_start;
                    for (i, bytes) in append.events.iter().enumerate() {
                        let sequence = append.expected_version + 1 + i as u64;
                        let key = event_key(&append.stream, sequence);
                        events.insert(&key, bytes.as_slice())?;
                        log.insert(&position.to_be_bytes(), &key)?;
                        position += 1;
                    }
                    let version = append.expected_version + append.events.len() as u64;
                    versions.insert(&stream_key, &version.to_be_bytes())?;
                    meta.insert(META_LOG_NEXT, &position.to_be_bytes())?;
                }
                let mut position = outbox_start;
                for bytes in &outbox_bytes {
                    outbox.insert(&position.to_be_bytes(), bytes.as_slice())?;
                    position += 1;
                }
                if !outbox_bytes.is_empty() {
                    meta.insert(META_OUTBOX_NEXT, &position.to_be_bytes())?;
                }
                if let Some((key, value, next)) = &offset {
                    // Commands finish out of order across aggregates, so a
                    // position may arrive after a later one: never go back
                    // (on the same cluster).
                    let newer = match offsets.get(key.as_slice())? {
                        Some(stored) => match decode::<ConsumedOffset>(&stored) {
                            Ok(stored) => {
                                stored.cluster_id != next.cluster_id
                                    || stored.next_offset < next.next_offset
                            }
                            Err(_) => true,
                        },
                        None => true,
                    };
                    if newer {
                        offsets.insert(key.as_slice(), value.as_slice())?;
                    }
                }
                Ok(())
            },
        );
    match result {
        Ok(()) => {
            cursor.log_next = log_start + event_count;
            cursor.outbox_next = outbox_start + outbox_bytes.len() as u64;
            Ok(AppendReceipt {
                log_positions: log_start..cursor.log_next,
                outbox_positions: outbox_start..cursor.outbox_next,
            })
        }
        Err(TransactionError::Abort(Abort::Journal(err))) => Err(err),
        Err(TransactionError::Storage(err)) => Err(JournalError::Storage(err)),
    }
}

enum UniqueError {
    Violation(JournalError),
    Tx(sled::transaction::UnabortableTransactionError),
}

impl From<sled::transaction::UnabortableTransactionError> for UniqueError {
    fn from(err: sled::transaction::UnabortableTransactionError) -> Self {
        UniqueError::Tx(err)
    }
}

fn apply_unique(
    unique: &sled::transaction::TransactionalTree,
    stream: &StreamId,
    change: &UniqueChange,
) -> Result<(), UniqueError> {
    let holder_key = stream.to_key();
    match change {
        UniqueChange::Claim { index, key } => {
            let k = unique_key(index, key);
            if let Some(holder) = unique.get(&k)? {
                if holder.as_ref() != holder_key.as_slice() {
                    let holder = StreamId::from_key(&holder).unwrap_or(*stream);
                    return Err(UniqueError::Violation(JournalError::UniqueViolation {
                        index: index.to_string(),
                        key: key.clone(),
                        holder,
                    }));
                }
            }
            unique.insert(k, &holder_key)?;
        }
        UniqueChange::Release { index, key } => {
            let k = unique_key(index, key);
            if let Some(holder) = unique.get(&k)? {
                if holder.as_ref() == holder_key.as_slice() {
                    unique.remove(k)?;
                }
            }
        }
    }
    Ok(())
}
