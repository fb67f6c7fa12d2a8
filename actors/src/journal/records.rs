//! What one command writes: the [`AppendBatch`], and the records stored beside
//! events (outbox records, consumer offsets).

use crate::aggregate::UniqueChange;
use ordersaga_events::codec::{self, CodecError};
use ordersaga_events::{CommandId, StreamId};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Events for one stream, appended at an expected version.
#[derive(Clone, Debug)]
pub struct StreamAppend {
    /// The stream.
    pub stream: StreamId,
    /// The version (last sequence) the caller decided against; the append
    /// fails with `Conflict` if the store has moved on.
    pub expected_version: u64,
    /// Encoded envelopes with sequences `expected_version + 1 ..`, in order.
    pub events: Vec<Vec<u8>>,
    /// Uniqueness claims and releases held by this stream.
    pub unique: Vec<UniqueChange>,
}

/// A Kafka record waiting in the outbox to be published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Destination topic.
    pub topic: String,
    /// Record key; `None` is a null key (a dead letter keeps its original's
    /// null as null, not as an empty key).
    pub key: Option<Vec<u8>>,
    /// Record value; `None` is a null value (a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The first byte of an outbox row in the current layout. Rows written
/// before keys and values could be null start with the codec's bincode byte
/// (0x01) and are read as [`OutboxRecordV1`].
const OUTBOX_ROW_V2: u8 = 0x12;

/// An outbox record as rows written before nullable keys and values hold it.
#[derive(Deserialize)]
struct OutboxRecordV1 {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

impl OutboxRecord {
    /// The stored form of this record.
    pub(crate) fn to_row(&self) -> Result<Vec<u8>, CodecError> {
        let mut row = vec![OUTBOX_ROW_V2];
        row.extend_from_slice(&codec::encode_payload(self)?);
        Ok(row)
    }

    /// Reads a stored row, in either layout.
    pub(crate) fn from_row(row: &[u8]) -> Result<Self, CodecError> {
        match row.split_first() {
            Some((&OUTBOX_ROW_V2, body)) => codec::decode_payload(body),
            _ => {
                let old: OutboxRecordV1 = codec::decode(row)?;
                Ok(Self {
                    topic: old.topic,
                    key: Some(old.key),
                    payload: Some(old.payload),
                    headers: old.headers,
                })
            }
        }
    }
}

/// The position a consumer has processed up to, stored with its effects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumedOffset {
    /// Topic consumed.
    pub topic: String,
    /// Partition consumed.
    pub partition: i32,
    /// The cluster that issued the offset: an offset means nothing on another
    /// cluster (an embedded broker starts empty on every run).
    pub cluster_id: String,
    /// The next offset to consume.
    pub next_offset: i64,
}

/// Everything one command causes, written in one transaction: its events, the
/// records to publish, the reply (keyed by command id, for idempotency) and the
/// consumed offset. Any part may be empty: a rejected command writes no
/// events, a redelivered one only its offset.
#[derive(Clone, Debug, Default)]
pub struct AppendBatch {
    /// Events to append, if any.
    pub events: Option<StreamAppend>,
    /// Records to publish once committed.
    pub outbox: Vec<OutboxRecord>,
    /// The command id and its encoded reply. The batch fails with
    /// `DuplicateCommand` if the id was processed before.
    pub processed: Option<(CommandId, Vec<u8>)>,
    /// The consumer position to store.
    pub offset: Option<ConsumedOffset>,
    /// A change of when a stream wants to be woken (the saga's next
    /// deadline), kept in the deadline index with the events that set it.
    pub schedule: Option<Schedule>,
    /// Items of the appended stream that its events close or change while
    /// closed, by item key (an order id), each with the sequence of the
    /// latest event about it. Closed items leave the aggregate's state, so
    /// its snapshot follows open items only; the archive index remembers
    /// where each one's story ended (see [`crate::aggregate::Aggregate::archive_key`]).
    /// Ignored without `events`.
    pub archive: Vec<(String, u64)>,
    /// Secrets of the appended stream to set (`Some`) or remove (`None`), by
    /// name: credentials that must stay in this store and never travel in an
    /// event (see [`crate::aggregate::Aggregate::secrets`]). Ignored without
    /// `events`.
    pub secrets: Vec<(&'static str, Option<Vec<u8>>)>,
    /// Entries to add to the store's list indexes (full keys: list name, a
    /// zero byte, then the entry), such as a user's orders newest first
    /// (see [`crate::aggregate::Aggregate::list_entries`]). Ignored without
    /// `events`.
    pub lists: Vec<Vec<u8>>,
}

/// When `stream` wants to be woken next: at `wake_at` (milliseconds since
/// the Unix epoch), or never (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The stream.
    pub stream: StreamId,
    /// When, or never.
    pub wake_at: Option<i64>,
}

/// Where a committed batch landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Global log positions of the appended events.
    pub log_positions: Range<u64>,
    /// Outbox positions of the records to publish.
    pub outbox_positions: Range<u64>,
}
