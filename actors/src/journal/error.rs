//! Journal errors. Each variant's doc says how a caller should handle it.

use ordersaga_events::{CodecError, StreamId};

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The stream moved on since the caller read it (optimistic concurrency).
    /// Reload the aggregate from the journal and decide again.
    #[error("conflict on {stream}: expected version {expected}, found {actual}")]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// The version the caller expected.
        expected: u64,
        /// The version in the store.
        actual: u64,
    },
    /// This command id was already processed; nothing was written. Answer
    /// with the stored reply.
    #[error("command already processed")]
    DuplicateCommand {
        /// The encoded reply given the first time.
        reply: Vec<u8>,
    },
    /// A uniqueness claim is held by another stream; nothing was written.
    /// Reject the command.
    #[error("{index} {key:?} is held by {holder}")]
    UniqueViolation {
        /// The index.
        index: String,
        /// The contested value.
        key: String,
        /// The stream holding it.
        holder: StreamId,
    },
    /// The batch itself is malformed (a programming error in the caller).
    #[error("invalid append: {0}")]
    InvalidBatch(String),
    /// Stored bytes could not be read: the store is damaged or was written by
    /// an incompatible build. Stop and run `ordersaga verify`.
    #[error("corrupt store: {what}: {detail}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// Why it is unreadable.
        detail: String,
    },
    /// The disk or sled failed. The write may not have happened; retrying the
    /// same command id is safe.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// The journal is shut down.
    #[error("journal is closed")]
    Closed,
    /// The store at `path` could not be opened.
    #[error("cannot open the store at {}: {source}", path.display())]
    Open {
        /// The store's directory.
        path: std::path::PathBuf,
        /// Why.
        source: Box<JournalError>,
    },
}

impl JournalError {
    /// A [`JournalError::Corrupt`] for a codec failure.
    pub fn corrupt(what: impl Into<String>, err: CodecError) -> Self {
        JournalError::Corrupt {
            what: what.into(),
            detail: err.to_string(),
        }
    }
}
