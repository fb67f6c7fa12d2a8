//! The group transaction: every batch of a group committed in one sled
//! transaction over the journal's trees, each batch checked on its own
//! before it writes anything (see [`super::writer`] for who commits a group
//! and when).

use super::error::JournalError;
use super::keys::{event_key, offset_key, read_u64, stream_item_key, unique_key};
use super::records::{AppendBatch, AppendReceipt, ConsumedOffset, Schedule};
use super::schedule::{deadline_key, time_key};
use super::writer::{Cursor, Outcome, Request};
use super::{Trees, META_LOG_NEXT, META_OUTBOX_NEXT};
use crate::aggregate::UniqueChange;
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::StreamId;
use sled::transaction::{
    TransactionError, TransactionResult, Transactional, TransactionalTree,
    UnabortableTransactionError,
};
use std::convert::Infallible;

/// Commits `group` in one sled transaction and returns one outcome per
/// request, in order. `cursor` moves only if the transaction committed; if it
/// fails with a storage error, every request gets that error.
pub(super) fn commit_group(trees: &Trees, cursor: &mut Cursor, group: &[Request]) -> Vec<Outcome> {
    // Encoding happens before the transaction: its closure runs under sled's
    // global write lock and may run more than once. A batch that does not
    // encode keeps only its error message, because errors are not `Clone`
    // and each run of the closure must produce its own outcomes.
    let prepared: Vec<Result<Prepared<'_>, String>> = group
        .iter()
        .map(|request| Prepared::new(&request.batch))
        .collect();

    // The closure never aborts (`Infallible`): a refused batch is one
    // outcome among the group's, not a reason to drop the others.
    let result: TransactionResult<(Vec<Outcome>, Cursor), Infallible> = (
        &trees.events,
        &trees.versions,
        &trees.log,
        &trees.outbox,
        &trees.processed,
        &trees.offsets,
        &trees.unique,
        &trees.meta,
        &trees.deadlines,
        &trees.wake_at,
        &trees.archive,
        &trees.secrets,
        &trees.lists,
    )
        .transaction(
            |(
                events,
                versions,
                log,
                outbox,
                processed,
                offsets,
                unique,
                meta,
                deadlines,
                wake_at,
                archive,
                secrets,
                lists,
            )| {
                let tx = Tx {
                    events,
                    versions,
                    log,
                    outbox,
                    processed,
                    offsets,
                    unique,
                    deadlines,
                    wake_at,
                    archive,
                    secrets,
                    lists,
                };
                // sled may run this closure again after a conflict: the
                // outcomes and positions start afresh from the committed
                // cursor on every run, so nothing leaks between runs.
                let mut next = *cursor;
                let mut outcomes = Vec::with_capacity(prepared.len());
                for batch in &prepared {
                    let outcome = match batch {
                        Err(message) => Err(JournalError::InvalidBatch(message.clone())),
                        Ok(batch) => match tx.check(batch) {
                            Ok(()) => Ok(tx.write(batch, &mut next)?),
                            Err(CheckError::Refused(err)) => Err(err),
                            Err(CheckError::Tx(err)) => return Err(err.into()),
                        },
                    };
                    outcomes.push(outcome);
                }
                if next.log_next != cursor.log_next {
                    meta.insert(META_LOG_NEXT, &next.log_next.to_be_bytes())?;
                }
                if next.outbox_next != cursor.outbox_next {
                    meta.insert(META_OUTBOX_NEXT, &next.outbox_next.to_be_bytes())?;
                }
                Ok((outcomes, next))
            },
        );
    match result {
        Ok((outcomes, next)) => {
            *cursor = next;
            outcomes
        }
        Err(TransactionError::Storage(err)) => group
            .iter()
            .map(|_| Err(JournalError::Storage(err.clone())))
            .collect(),
        Err(TransactionError::Abort(never)) => match never {},
    }
}

/// A batch with its records encoded, ready for the group transaction.
struct Prepared<'a> {
    batch: &'a AppendBatch,
    /// The encoded outbox records, in order.
    outbox: Vec<Vec<u8>>,
    /// The consumed offset with its `offsets` key and encoded value.
    offset: Option<(&'a ConsumedOffset, Vec<u8>, Vec<u8>)>,
}

impl<'a> Prepared<'a> {
    /// Encodes `batch`'s records; the error is an `InvalidBatch` message.
    fn new(batch: &'a AppendBatch) -> Result<Self, String> {
        let outbox = batch
            .outbox
            .iter()
            .map(|record| record.to_row())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let offset = match &batch.offset {
            Some(offset) => Some((
                offset,
                offset_key(&offset.topic, offset.partition),
                encode(Format::Bincode, offset).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        Ok(Self {
            batch,
            outbox,
            offset,
        })
    }
}

/// Why a batch's checks stopped.
enum CheckError {
    /// The batch is refused with this error; the rest of the group goes on.
    Refused(JournalError),
    /// sled must stop (and possibly rerun) the whole transaction.
    Tx(UnabortableTransactionError),
}

impl From<UnabortableTransactionError> for CheckError {
    fn from(err: UnabortableTransactionError) -> Self {
        CheckError::Tx(err)
    }
}

/// The group transaction's view of the trees a batch touches (`meta` is
/// written once per group, by [`commit_group`]).
struct Tx<'t> {
    events: &'t TransactionalTree,
    versions: &'t TransactionalTree,
    log: &'t TransactionalTree,
    outbox: &'t TransactionalTree,
    processed: &'t TransactionalTree,
    offsets: &'t TransactionalTree,
    unique: &'t TransactionalTree,
    deadlines: &'t TransactionalTree,
    wake_at: &'t TransactionalTree,
    archive: &'t TransactionalTree,
    secrets: &'t TransactionalTree,
    lists: &'t TransactionalTree,
}

impl Tx<'_> {
    /// Moves `schedule.stream` in the deadline index to its new wake-up
    /// time (or out of it).
    fn reschedule(&self, schedule: &Schedule) -> Result<(), UnabortableTransactionError> {
        let stream = schedule.stream.to_key();
        if let Some(old) = self.wake_at.remove(&stream)? {
            let mut key = old.to_vec();
            key.extend_from_slice(&stream);
            self.deadlines.remove(key)?;
        }
        if let Some(millis) = schedule.wake_at {
            self.deadlines
                .insert(deadline_key(millis, &schedule.stream), &[][..])?;
            self.wake_at.insert(&stream, &time_key(millis)[..])?;
        }
        Ok(())
    }

    /// Every check that can refuse `batch`, without writing anything. Reads
    /// see the writes of earlier batches in the group.
    fn check(&self, prepared: &Prepared<'_>) -> Result<(), CheckError> {
        let batch = prepared.batch;
        if let Some((command_id, _)) = &batch.processed {
            if let Some(previous) = self.processed.get(command_id.as_uuid().into_bytes())? {
                return Err(CheckError::Refused(JournalError::DuplicateCommand {
                    reply: previous.to_vec(),
                }));
            }
        }
        let Some(append) = &batch.events else {
            return Ok(());
        };
        let holder = append.stream.to_key();
        let actual = self
            .versions
            .get(holder)?
            .and_then(|v| read_u64(&v))
            .unwrap_or(0);
        if actual != append.expected_version {
            return Err(CheckError::Refused(JournalError::Conflict {
                stream: append.stream,
                expected: append.expected_version,
                actual,
            }));
        }
        // Every claim is checked against the store as it is before this
        // batch. That is what applying the changes one by one would decide:
        // they all belong to one stream, and neither a claim nor a release by
        // this stream changes whether *another* stream holds a key.
        for change in &append.unique {
            if let UniqueChange::Claim { index, key } = change {
                if let Some(current) = self.unique.get(unique_key(index, key))? {
                    if current.as_ref() != holder.as_slice() {
                        return Err(CheckError::Refused(JournalError::UniqueViolation {
                            index: index.to_string(),
                            key: key.clone(),
                            holder: StreamId::from_key(&current).unwrap_or(append.stream),
                        }));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes a batch that passed [`Tx::check`], at the positions `next`
    /// points to, and moves `next` past them.
    fn write(
        &self,
        prepared: &Prepared<'_>,
        next: &mut Cursor,
    ) -> Result<AppendReceipt, UnabortableTransactionError> {
        let batch = prepared.batch;
        let log_start = next.log_next;
        let outbox_start = next.outbox_next;
        if let Some((command_id, reply)) = &batch.processed {
            self.processed
                .insert(&command_id.as_uuid().into_bytes(), reply.as_slice())?;
        }
        if let Some(append) = &batch.events {
            let holder = append.stream.to_key();
            for change in &append.unique {
                self.apply_unique(&holder, change)?;
            }
            for (i, bytes) in append.events.iter().enumerate() {
                let sequence = append.expected_version + 1 + i as u64;
                let key = event_key(&append.stream, sequence);
                self.events.insert(&key, bytes.as_slice())?;
                self.log.insert(&next.log_next.to_be_bytes(), &key)?;
                next.log_next += 1;
            }
            let version = append.expected_version + append.events.len() as u64;
            self.versions.insert(&holder, &version.to_be_bytes())?;
            for (item, sequence) in &batch.archive {
                self.archive.insert(
                    stream_item_key(&append.stream, item),
                    &sequence.to_be_bytes(),
                )?;
            }
            for entry in &batch.lists {
                self.lists.insert(entry.as_slice(), &[][..])?;
            }
            for (name, value) in &batch.secrets {
                let key = stream_item_key(&append.stream, name);
                match value {
                    Some(value) => self.secrets.insert(key, value.as_slice())?,
                    None => self.secrets.remove(key)?,
                };
            }
        }
        for bytes in &prepared.outbox {
            self.outbox
                .insert(&next.outbox_next.to_be_bytes(), bytes.as_slice())?;
            next.outbox_next += 1;
        }
        if let Some(schedule) = &batch.schedule {
            self.reschedule(schedule)?;
        }
        if let Some((offset, key, value)) = &prepared.offset {
            // Commands finish out of order across aggregates, so a position
            // may arrive after a later one: never go back (on the same
            // cluster). An unreadable stored offset is replaced.
            let newer = match self.offsets.get(key.as_slice())? {
                Some(stored) => match decode::<ConsumedOffset>(&stored) {
                    Ok(stored) => {
                        stored.cluster_id != offset.cluster_id
                            || stored.next_offset < offset.next_offset
                    }
                    Err(_) => true,
                },
                None => true,
            };
            if newer {
                self.offsets.insert(key.as_slice(), value.as_slice())?;
            }
        }
        Ok(AppendReceipt {
            log_positions: log_start..next.log_next,
            outbox_positions: outbox_start..next.outbox_next,
        })
    }

    /// Applies one uniqueness change of the stream keyed `holder`; its claims
    /// were already checked.
    fn apply_unique(
        &self,
        holder: &[u8],
        change: &UniqueChange,
    ) -> Result<(), UnabortableTransactionError> {
        match change {
            UniqueChange::Claim { index, key } => {
                self.unique.insert(unique_key(index, key), holder)?;
            }
            UniqueChange::Release { index, key } => {
                // Only the holder frees a key (this may be a claim made
                // earlier in the same batch or group).
                let k = unique_key(index, key);
                if self.unique.get(&k)?.is_some_and(|h| h.as_ref() == holder) {
                    self.unique.remove(k)?;
                }
            }
        }
        Ok(())
    }
}
