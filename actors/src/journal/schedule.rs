//! The deadline index: which streams want to be woken, and when.
//!
//! A saga waiting for replies has a deadline. The index keeps every such
//! stream under its wake-up time, written in the same transaction as the
//! events that set or clear it, so a timer finds the due streams with one
//! range scan (its work grows with the due streams, not with every stream
//! ever stored) and a restart resumes exactly the streams still waiting.

use super::keys::read_u64;
use super::{Journal, JournalError};
use ordersaga_events::stream::STREAM_KEY_LEN;
use ordersaga_events::StreamId;

/// A wake-up time as an order-preserving key: milliseconds since the epoch,
/// with the sign bit flipped so that earlier times sort first.
pub(crate) fn time_key(millis: i64) -> [u8; 8] {
    ((millis as u64) ^ (1 << 63)).to_be_bytes()
}

/// The `deadlines` key of `stream` at `millis`.
pub(crate) fn deadline_key(millis: i64, stream: &StreamId) -> Vec<u8> {
    let mut key = time_key(millis).to_vec();
    key.extend_from_slice(&stream.to_key());
    key
}

fn marker_key(name: &str) -> Vec<u8> {
    format!("marker/{name}").into_bytes()
}

impl Journal {
    /// Up to `limit` streams whose wake-up time is at or before `now_millis`,
    /// earliest first.
    pub fn due(&self, now_millis: i64, limit: usize) -> Result<Vec<StreamId>, JournalError> {
        let end = time_key(now_millis.saturating_add(1));
        let mut due = Vec::new();
        for item in self.trees().deadlines.range(..end.to_vec()).take(limit) {
            let (key, _) = item?;
            let stream = (key.len() == 8 + STREAM_KEY_LEN)
                .then(|| StreamId::from_key(&key[8..]))
                .flatten()
                .ok_or_else(|| JournalError::Corrupt {
                    what: "a deadline index key".into(),
                    detail: format!("{} bytes", key.len()),
                })?;
            due.push(stream);
        }
        Ok(due)
    }

    /// When `stream` wants to be woken, if it does.
    pub fn wake_at(&self, stream: &StreamId) -> Result<Option<i64>, JournalError> {
        Ok(self
            .trees()
            .wake_at
            .get(stream.to_key())?
            .and_then(|v| read_u64(&v))
            .map(|v| (v ^ (1 << 63)) as i64))
    }

    /// How many streams want to be woken.
    pub fn scheduled(&self) -> usize {
        self.trees().wake_at.len()
    }

    /// Whether the store carries the marker `name` (a one-time migration
    /// that was done, say).
    pub fn marker(&self, name: &str) -> Result<bool, JournalError> {
        Ok(self.trees().meta.contains_key(marker_key(name))?)
    }

    /// Sets the marker `name`, durably.
    pub fn set_marker(&self, name: &str) -> Result<(), JournalError> {
        self.trees().meta.insert(marker_key(name), &[][..])?;
        self.trees().db.flush()?;
        Ok(())
    }
}
