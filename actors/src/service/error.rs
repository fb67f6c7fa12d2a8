//! Errors of the service actors: a command that could not be decided at all.
//! A business refusal is not an error here; it is a rejected [`Reply`](ordersaga_events::Reply).

use crate::journal::JournalError;
use ordersaga_events::StreamId;

/// Why a command got no business answer. Each variant's doc says what the
/// caller should do; retrying with the same command id is always safe, since
/// commands are idempotent by id.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A mailbox is full. Back off and retry.
    #[error("overloaded: the {0} mailbox is full")]
    Overloaded(&'static str),
    /// The entity panicked while handling the command. It restarted from its
    /// journal and nothing was written; the command will likely fail again,
    /// so report it rather than retrying in a loop.
    #[error("entity {0} crashed while handling the command; it restarted from its journal")]
    EntityCrashed(StreamId),
    /// The service is shutting down. Retry against a running instance.
    #[error("service is stopping")]
    Stopped,
    /// The store failed or is unreadable. Retry later; if it persists, run
    /// `ordersaga verify` on the store.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl ServiceError {
    /// A stable snake_case code, as in rejection replies.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Overloaded(_) => "overloaded",
            ServiceError::EntityCrashed(_) => "internal_error",
            ServiceError::Stopped => "unavailable",
            ServiceError::Journal(JournalError::Corrupt { .. }) => "corrupt_store",
            ServiceError::Journal(_) => "storage_error",
        }
    }
}
