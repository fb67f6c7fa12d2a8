//! The archive index: where the story of each closed item ended.
//!
//! An aggregate keeps only its open items in memory (a product's held
//! reservations); an item that closes (released, committed, charged) leaves
//! the state, so snapshots and recovery follow open items, not history. The
//! archive remembers, per stream and item key, the sequence of the latest
//! event about the item. It is written in the same transaction as that event,
//! so it can never disagree with the log, and it can always be rebuilt from
//! the log (see [`crate::migrations::index_archive`]).

use super::keys::{read_u64, stream_item_key};
use super::{Journal, JournalError};
use ordersaga_events::StreamId;

impl Journal {
    /// The stored event that closed `item` of `stream` (the latest event
    /// about it), or `None` when the item was never archived.
    pub fn archived(
        &self,
        stream: &StreamId,
        item: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        let Some(value) = self.trees().archive.get(stream_item_key(stream, item))? else {
            return Ok(None);
        };
        let sequence = read_u64(&value).ok_or_else(|| JournalError::Corrupt {
            what: format!("archive entry {stream}/{item}"),
            detail: format!("{} bytes, expected 8", value.len()),
        })?;
        let bytes = self.read_stream(stream, sequence).next().transpose()?;
        match bytes {
            Some((found, bytes)) if found == sequence => Ok(Some((sequence, bytes))),
            _ => Err(JournalError::Corrupt {
                what: format!("archive entry {stream}/{item}"),
                detail: format!("points at event #{sequence}, which is missing"),
            }),
        }
    }

    /// How many archive entries the store holds.
    pub fn archived_len(&self) -> usize {
        self.trees().archive.len()
    }

    /// Sets the archive entry of `item` of `stream` outside any append: for
    /// building the index from the log of an older store.
    pub fn set_archive_entry(
        &self,
        stream: &StreamId,
        item: &str,
        sequence: u64,
    ) -> Result<(), JournalError> {
        self.trees()
            .archive
            .insert(stream_item_key(stream, item), &sequence.to_be_bytes())?;
        Ok(())
    }
}
