//! The outbox as its readers see it: the durable records waiting to be
//! published (or delivered in process), their deletion once done, and the
//! watch that wakes a relay when a group adds some. Unreadable rows are
//! handed out apart, for quarantine (`quarantine.rs`).

use super::{Journal, JournalError, OutboxRecord};
use tokio::sync::watch;

impl Journal {
    /// Up to `limit` outbox records with position ≥ `from`, in order; only
    /// records whose append is durable (below [`Journal::outbox_watch`]).
    /// Fails on the first row that cannot be read; the relay uses
    /// [`Journal::outbox_batch`], which hands such rows out for quarantine.
    pub fn outbox_pending(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxRecord)>, JournalError> {
        let batch = self.outbox_batch(from, limit)?;
        match batch.corrupt.into_iter().next() {
            Some(bad) => Err(JournalError::Corrupt {
                what: format!("outbox record {}", bad.position),
                detail: bad.reason,
            }),
            None => Ok(batch.records),
        }
    }

    /// Deletes published outbox records. Not flushed on its own: after a crash
    /// a deleted record may come back and be published again (consumers drop
    /// duplicates by event id).
    pub fn outbox_remove(&self, positions: &[u64]) -> Result<(), JournalError> {
        let mut batch = sled::Batch::default();
        for position in positions {
            batch.remove(&position.to_be_bytes());
        }
        self.trees().outbox.apply_batch(batch)?;
        Ok(())
    }

    /// Number of records waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.trees().outbox.len()
    }

    /// Watches the next outbox position: it changes after every durable group
    /// that added outbox records, so a relay can sleep until there is work.
    pub fn outbox_watch(&self) -> watch::Receiver<u64> {
        self.inner.outbox_watch.clone()
    }
}
