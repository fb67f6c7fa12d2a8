//! Secrets: credentials of a stream (a user's password hash) that must stay
//! in this store. Events are published, and anyone may read the events
//! topics, so a secret never travels in an event; it is written in the same
//! transaction as the event that sets or clears it, and read only by the
//! service that owns the store.

use super::keys::stream_item_key;
use super::{Journal, JournalError};
use ordersaga_events::StreamId;

impl Journal {
    /// The secret `name` of `stream`, if set.
    pub fn secret(&self, stream: &StreamId, name: &str) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self
            .trees()
            .secrets
            .get(stream_item_key(stream, name))?
            .map(|value| value.to_vec()))
    }

    /// Sets the secret `name` of `stream` outside any append: for moving
    /// credentials out of a store's old events, once.
    pub fn set_secret(
        &self,
        stream: &StreamId,
        name: &str,
        value: &[u8],
    ) -> Result<(), JournalError> {
        self.trees()
            .secrets
            .insert(stream_item_key(stream, name), value)?;
        Ok(())
    }
}
