//! List indexes: ordered keys a service's queries page through, such as a
//! user's orders, newest first. Each entry is written in the same
//! transaction as the event that adds it, so a list never shows an order
//! whose event was lost, nor misses one that was stored; and it can always
//! be rebuilt from the log.

use super::{Journal, JournalError};

/// The full key of `entry` in the list `name`.
pub fn list_key(name: &str, entry: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1 + entry.len());
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(entry);
    key
}

impl Journal {
    /// Up to `limit` entries of list `name` that start with `prefix`, in key
    /// order, after the entry `after` (exclusive) when given. Entries are
    /// returned without the list name and `prefix`.
    pub fn list(
        &self,
        name: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, JournalError> {
        let start = list_key(name, prefix);
        let skip = start.len();
        let mut out = Vec::new();
        let range = match after {
            Some(after) => {
                let mut from = start.clone();
                from.extend_from_slice(after);
                // Just past `after`: the same bytes plus one more.
                from.push(0);
                self.trees().lists.range(from..)
            }
            None => self.trees().lists.range(start.clone()..),
        };
        for item in range {
            let (key, _) = item?;
            if !key.starts_with(&start) || out.len() == limit {
                break;
            }
            out.push(key[skip..].to_vec());
        }
        Ok(out)
    }

    /// Whether the list index holds `key` (a full key, as
    /// [`list_key`] makes it).
    pub fn has_list_entry(&self, key: &[u8]) -> Result<bool, JournalError> {
        Ok(self.trees().lists.contains_key(key)?)
    }

    /// Adds an entry outside any append: for rebuilding lists from the log.
    pub fn add_list_entry(&self, key: &[u8]) -> Result<(), JournalError> {
        self.trees().lists.insert(key, &[][..])?;
        Ok(())
    }
}

impl Journal {
    /// Up to `limit` streams of `kind` in id order, after `after`
    /// (exclusive) when given: a stable page of, say, every product.
    pub fn stream_page(
        &self,
        kind: ordersaga_events::StreamKind,
        after: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<ordersaga_events::StreamId>, JournalError> {
        let start = match after {
            Some(after) => {
                let mut key = ordersaga_events::StreamId::new(kind, after)
                    .to_key()
                    .to_vec();
                key.push(0);
                key
            }
            None => vec![kind.tag()],
        };
        let mut out = Vec::new();
        for item in self.trees().versions.range(start..) {
            let (key, _) = item?;
            match ordersaga_events::StreamId::from_key(&key) {
                Some(stream) if stream.kind == kind && out.len() < limit => out.push(stream),
                _ => break,
            }
        }
        Ok(out)
    }
}
