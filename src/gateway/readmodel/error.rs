//! Why a read-model operation failed. Every variant names what failed and
//! where: the store's path, the topic and partition, or the cursor.

use std::path::PathBuf;

/// Why a read-model operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// The store could not be opened (a bad path, a full disk, or another
    /// process holding it).
    #[error("cannot open the read model at {}: {source}", path.display())]
    Open {
        /// The store's directory.
        path: PathBuf,
        /// Why.
        source: sled::Error,
    },
    /// The disk or sled failed. Nothing was half-written: each record's
    /// changes are one transaction. Retrying is safe.
    #[error("read model at {}: storage error: {source}", path.display())]
    Storage {
        /// The store's directory.
        path: PathBuf,
        /// Why.
        source: sled::Error,
    },
    /// Stored bytes could not be read: the store is damaged or was written
    /// by an incompatible build. `ordersaga gateway --rebuild` remakes it.
    #[error("read model at {}: corrupt {what}: {detail}", path.display())]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// What was being read (tree and key).
        what: String,
        /// Why it is unreadable.
        detail: String,
    },
    /// A record could not be applied; nothing of it was written (its row,
    /// its stream's sequence and its partition's offset stay as they were).
    #[error("cannot apply {topic}[{partition}]@{offset} to the read model: {source}")]
    Apply {
        /// The physical topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// Why.
        source: Box<ReadModelError>,
    },
    /// A page cursor that this read model did not give out.
    #[error("cursor {0:?} is not one this read model gave")]
    InvalidCursor(String),
    /// The cluster did not answer a request the read model needs.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was asked (naming the topic or partition when there is one).
        what: String,
        /// The client's error.
        source: rdkafka::error::KafkaError,
    },
    /// The event topics could not be read as far as needed (a topic without
    /// partitions, a partition that stopped delivering).
    #[error("the event topics: {0}")]
    Source(String),
}

impl ReadModelError {
    /// A [`ReadModelError::Kafka`] for `what`.
    pub(crate) fn kafka(what: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        ReadModelError::Kafka {
            what: what.into(),
            source,
        }
    }
}
