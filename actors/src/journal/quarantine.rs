//! Unreadable outbox rows, and their quarantine.
//!
//! One damaged row must not stop a service's publishing for good. The relay
//! reads the outbox in batches that keep such rows apart; it dead-letters
//! each one with the reason and moves it to the `quarantine` tree, where it
//! stays for `ordersaga verify` and the operator.

use super::keys::read_u64;
use super::{Journal, JournalError, OutboxRecord};
use ordersaga_events::codec::decode;

/// An outbox row that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRecord {
    /// Its outbox position.
    pub position: u64,
    /// The stored bytes, as they are.
    pub bytes: Vec<u8>,
    /// Why they cannot be read.
    pub reason: String,
}

/// Durable outbox rows in position order: those that decode, and those that
/// do not.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    /// Records to publish.
    pub records: Vec<(u64, OutboxRecord)>,
    /// Rows to quarantine.
    pub corrupt: Vec<CorruptRecord>,
}

impl Journal {
    /// Up to `limit` durable outbox rows with position ≥ `from`, in order,
    /// the unreadable ones kept apart.
    pub fn outbox_batch(&self, from: u64, limit: usize) -> Result<OutboxBatch, JournalError> {
        // The writer commits a group's transaction before its flush, so
        // sled already shows records a crash could still take back. A relay
        // must not publish those: stop at the head the writer publishes after
        // the flush.
        let durable = *self.inner.outbox_watch.borrow();
        let mut batch = OutboxBatch::default();
        if from >= durable {
            return Ok(batch);
        }
        let range = from.to_be_bytes()..durable.to_be_bytes();
        for item in self.trees().outbox.range(range).take(limit) {
            let (key, value) = item?;
            let position = read_u64(&key).ok_or_else(|| JournalError::Corrupt {
                what: "outbox position".into(),
                detail: format!("a key of {} bytes", key.len()),
            })?;
            match OutboxRecord::from_row(&value) {
                Ok(record) => batch.records.push((position, record)),
                Err(err) => batch.corrupt.push(CorruptRecord {
                    position,
                    bytes: value.to_vec(),
                    reason: err.to_string(),
                }),
            }
        }
        Ok(batch)
    }

    /// Moves the outbox row at `position` to the quarantine, with `reason`,
    /// in one transaction.
    pub fn quarantine_outbox(&self, position: u64, reason: &str) -> Result<(), JournalError> {
        use sled::Transactional;
        let trees = self.trees();
        let key = position.to_be_bytes();
        let Some(bytes) = trees.outbox.get(key)? else {
            return Ok(());
        };
        let entry = Journal::encode_record(&(reason, bytes.to_vec()))?;
        (&trees.outbox, &trees.quarantine)
            .transaction(|(outbox, quarantine)| {
                outbox.remove(&key)?;
                quarantine.insert(&key, entry.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(err) => JournalError::Storage(err),
                sled::transaction::TransactionError::Abort(()) => {
                    JournalError::InvalidBatch("quarantine aborted".into())
                }
            })?;
        self.trees().db.flush()?;
        Ok(())
    }

    /// Every quarantined outbox row: its position and why it was set aside.
    pub fn quarantined(&self) -> Vec<Result<(u64, String), JournalError>> {
        self.trees()
            .quarantine
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let position = read_u64(&key).unwrap_or_default();
                let reason = decode::<(String, Vec<u8>)>(&value)
                    .map(|(reason, _)| reason)
                    .unwrap_or_else(|e| format!("(its reason is unreadable too: {e})"));
                Ok((position, reason))
            })
            .collect()
    }
}
