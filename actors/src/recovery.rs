//! Rebuilding an aggregate from the journal: from its latest snapshot plus the
//! events after it (what entity actors do on start), or from scratch (what
//! replay and verification do, to prove the snapshot path equals the truth).

use crate::aggregate::Aggregate;
use crate::journal::{Journal, JournalError};
use ordersaga_events::codec::{decode, decode_event, encode, Format};
use ordersaga_events::{Envelope, StreamId, Versioned};
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use uuid::Uuid;

/// An aggregate's state and the version (last sequence) it reflects.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovered<A> {
    /// The state.
    pub state: A,
    /// The last sequence applied; 0 for a stream with no events.
    pub version: u64,
}

/// The stream holding aggregate `id` of type `A`.
pub fn stream_of<A: Aggregate>(id: Uuid) -> StreamId {
    StreamId::new(A::KIND, id)
}

/// How a snapshot is stored: the layout it was taken under, then the state.
/// A snapshot of another layout, or one that no longer decodes, is ignored
/// and the stream is replayed in full.
#[derive(Serialize, Deserialize)]
struct SnapshotRecord<A> {
    /// [`snapshot_layout`] when it was taken.
    schema_version: u16,
    state: A,
}

/// The snapshot layout of `A`: the event schema version in the low byte and
/// the state's own layout ([`Aggregate::STATE_VERSION`]) in the high byte.
/// Snapshots taken before the state had a version carry a zero high byte,
/// so they still match an aggregate whose state never changed.
fn snapshot_layout<A: Aggregate>() -> u16 {
    (A::Event::SCHEMA_VERSION & 0xff) | (u16::from(A::STATE_VERSION) << 8)
}

/// Encodes a snapshot of `state`.
pub fn encode_snapshot<A: Aggregate>(state: &A) -> Result<Vec<u8>, JournalError> {
    encode(
        Format::Bincode,
        &SnapshotRecord {
            schema_version: snapshot_layout::<A>(),
            state: state.clone(),
        },
    )
    .map_err(|e| JournalError::InvalidBatch(e.to_string()))
}

/// Decodes one stored event of aggregate `A`, checking it belongs at
/// `stream`/`sequence`.
pub fn decode_stored<A: Aggregate>(
    stream: &StreamId,
    sequence: u64,
    bytes: &[u8],
) -> Result<Envelope<A::Event>, JournalError> {
    let envelope: Envelope<A::Event> = decode_event(bytes)
        .map_err(|e| JournalError::corrupt(format!("event {stream}#{sequence}"), e))?;
    if envelope.stream != *stream || envelope.sequence != sequence {
        return Err(JournalError::Corrupt {
            what: format!("event {stream}#{sequence}"),
            detail: format!("envelope says {}#{}", envelope.stream, envelope.sequence),
        });
    }
    Ok(envelope)
}

/// Applies the stream's events after `from.version`, up to and including
/// `until` (all when `None`), checking the sequence has no gaps.
fn fold<A: Aggregate>(
    journal: &Journal,
    stream: &StreamId,
    mut from: Recovered<A>,
    until: Option<u64>,
) -> Result<Recovered<A>, JournalError> {
    for item in journal.read_stream(stream, from.version + 1) {
        let (sequence, bytes) = item?;
        if until.is_some_and(|u| sequence > u) {
            break;
        }
        if sequence != from.version + 1 {
            return Err(JournalError::Corrupt {
                what: format!("stream {stream}"),
                detail: format!("expected sequence {}, found {sequence}", from.version + 1),
            });
        }
        let envelope = decode_stored::<A>(stream, sequence, &bytes)?;
        // `apply` must never fail; if a bug makes it panic, report the event
        // instead of taking the caller (a router, a tool) down with it.
        let state = &mut from.state;
        catch_unwind(AssertUnwindSafe(|| state.apply(&envelope.payload))).map_err(|_| {
            JournalError::Corrupt {
                what: format!("event {stream}#{sequence}"),
                detail: "applying it panicked".into(),
            }
        })?;
        from.version = sequence;
    }
    Ok(from)
}

/// The aggregate's current state from its latest snapshot and the events
/// after it. An unreadable snapshot is skipped (logged), never fatal.
pub fn recover<A: Aggregate>(journal: &Journal, id: Uuid) -> Result<Recovered<A>, JournalError> {
    let stream = stream_of::<A>(id);
    let snapshot = journal.load_snapshot(&stream).unwrap_or_else(|err| {
        tracing::warn!(%stream, cause = %err, "ignoring unreadable snapshot");
        None
    });
    let start = match snapshot {
        Some((version, bytes)) => match decode::<SnapshotRecord<A>>(&bytes) {
            Ok(snapshot) if snapshot.schema_version == snapshot_layout::<A>() => Recovered {
                state: snapshot.state,
                version,
            },
            Ok(_) => Recovered {
                state: A::default(),
                version: 0,
            },
            Err(err) => {
                tracing::warn!(%stream, cause = %err, "ignoring unreadable snapshot");
                Recovered {
                    state: A::default(),
                    version: 0,
                }
            }
        },
        None => Recovered {
            state: A::default(),
            version: 0,
        },
    };
    fold(journal, &stream, start, None)
}

/// The aggregate's state replayed from its first event, ignoring snapshots,
/// up to and including sequence `until` (everything when `None`).
pub fn replay<A: Aggregate>(
    journal: &Journal,
    id: Uuid,
    until: Option<u64>,
) -> Result<Recovered<A>, JournalError> {
    let start = Recovered {
        state: A::default(),
        version: 0,
    };
    fold(journal, &stream_of::<A>(id), start, until)
}

/// A copy of `state` (of `stream`) with the closed item `key` put back from
/// the archive, or `None` when nothing is archived under `key`. What the
/// service decides on, and what checks read a closed order's records from.
pub fn recalled<A: Aggregate>(
    journal: &Journal,
    stream: &StreamId,
    state: &A,
    key: &str,
) -> Result<Option<A>, JournalError> {
    let Some((sequence, bytes)) = journal.archived(stream, key)? else {
        return Ok(None);
    };
    let event = decode_stored::<A>(stream, sequence, &bytes)?;
    let mut view = state.clone();
    view.recall(&event.payload);
    Ok(Some(view))
}

/// Where the indexes derived from `stream`'s events (the archive of closed
/// items, the list entries) disagree with them: one sentence per entry. They
/// are written in the events' transactions, so any difference is damage, or
/// a crash that split what must not split.
pub fn index_differences<A: Aggregate>(
    journal: &Journal,
    stream: &StreamId,
) -> Result<Vec<String>, JournalError> {
    let mut latest: std::collections::BTreeMap<String, u64> = Default::default();
    let mut differences = Vec::new();
    for item in journal.read_stream(stream, 1) {
        let (sequence, bytes) = item?;
        let envelope = decode_stored::<A>(stream, sequence, &bytes)?;
        if let Some(key) = A::archive_key(&envelope.payload) {
            latest.insert(key, sequence);
        }
        for entry in A::list_entries(&envelope.payload, envelope.recorded_at) {
            if !journal.has_list_entry(&entry)? {
                differences.push(format!(
                    "{stream}: event #{sequence} has no entry in its list index"
                ));
            }
        }
    }
    for (key, sequence) in latest {
        match journal.archived(stream, &key) {
            Ok(Some((stored, _))) if stored == sequence => {}
            Ok(Some((stored, _))) => differences.push(format!(
                "{stream}: archive entry {key} points at event #{stored}, the log says #{sequence}"
            )),
            Ok(None) => differences.push(format!(
                "{stream}: archive entry {key} is missing (the log closes it at #{sequence})"
            )),
            Err(err) => differences.push(format!("{stream}: archive entry {key}: {err}")),
        }
    }
    Ok(differences)
}
