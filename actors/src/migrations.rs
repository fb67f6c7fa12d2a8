//! One-time migrations of stores written by earlier builds: indexes that
//! newer builds keep beside the events (the archive of closed items, the
//! list indexes) are built from the log, and secrets that old events
//! carried are moved out of them. Each runs once per store, when a service
//! starts on it; a marker in the store remembers it was done. A new store
//! has nothing to do.

use crate::aggregate::Aggregate;
use crate::journal::{Journal, JournalError};
use crate::recovery::decode_stored;
use ordersaga_events::StreamId;

/// The marker of a store whose archive index has been built from its log.
const ARCHIVE_INDEXED: &str = "archive-indexed-v1";
/// The marker of a store whose old events' secrets were moved out.
const SECRETS_MOVED: &str = "secrets-moved-v1";
/// The marker of a store whose list indexes were built from its log.
const LISTS_INDEXED: &str = "lists-indexed-v1";

/// Runs `each` on every `A` stream, unless `enabled` is false or the store
/// carries `marker`; then sets the marker (flushing what `each` wrote).
/// Returns the sum of what `each` returned (entries written).
pub(crate) fn once_per_store_by_stream<A: Aggregate>(
    journal: &Journal,
    enabled: bool,
    marker: &str,
    mut each: impl FnMut(&StreamId) -> Result<usize, JournalError>,
) -> Result<usize, JournalError> {
    if !enabled || journal.marker(marker)? {
        return Ok(0);
    }
    let streams: Vec<StreamId> = journal
        .streams(Some(A::KIND))
        .map(|item| item.map(|(stream, _)| stream))
        .collect::<Result<_, _>>()?;
    let mut written = 0;
    for stream in streams {
        written += each(&stream)?;
    }
    journal.set_marker(marker)?;
    Ok(written)
}

/// Runs `each` on every stored event of every `A` stream, once per store
/// (see [`once_per_store_by_stream`]).
fn once_per_store<A: Aggregate>(
    journal: &Journal,
    enabled: bool,
    marker: &str,
    mut each: impl FnMut(&StreamId, u64, &[u8]) -> Result<usize, JournalError>,
) -> Result<usize, JournalError> {
    once_per_store_by_stream::<A>(journal, enabled, marker, |stream| {
        let mut written = 0;
        for item in journal.read_stream(stream, 1) {
            let (sequence, bytes) = item?;
            written += each(stream, sequence, &bytes)?;
        }
        Ok(written)
    })
}

/// Builds the archive index of every `A` stream from its events. Stores
/// written before the index existed kept closed items in their states;
/// without this, replaying them under the new state layout would forget
/// those items. Writing an entry again is harmless; the last event about an
/// item wins, as the log is read in order.
pub fn index_archive<A: Aggregate>(journal: &Journal) -> Result<usize, JournalError> {
    once_per_store::<A>(
        journal,
        A::ARCHIVES,
        ARCHIVE_INDEXED,
        |stream, sequence, bytes| {
            let envelope = decode_stored::<A>(stream, sequence, bytes)?;
            match A::archive_key(&envelope.payload) {
                Some(item) => {
                    journal.set_archive_entry(stream, &item, sequence)?;
                    Ok(1)
                }
                None => Ok(0),
            }
        },
    )
}

/// Moves the secrets that events of an older schema carried (a user's
/// password hash, before credentials left the events) into the store's
/// secrets. A secret already set is kept: it is newer than any old event.
pub fn move_legacy_secrets<A: Aggregate>(journal: &Journal) -> Result<usize, JournalError> {
    once_per_store::<A>(
        journal,
        A::LEGACY_SECRETS,
        SECRETS_MOVED,
        |stream, _, bytes| {
            let mut moved = 0;
            for (name, value) in A::legacy_secrets(bytes) {
                if journal.secret(stream, name)?.is_none() {
                    journal.set_secret(stream, name, &value)?;
                    moved += 1;
                }
            }
            Ok(moved)
        },
    )
}

/// Builds the list indexes of every `A` stream from its events.
pub fn index_lists<A: Aggregate>(journal: &Journal) -> Result<usize, JournalError> {
    once_per_store::<A>(
        journal,
        A::LISTS,
        LISTS_INDEXED,
        |stream, sequence, bytes| {
            let envelope = decode_stored::<A>(stream, sequence, bytes)?;
            let entries = A::list_entries(&envelope.payload, envelope.recorded_at);
            for key in &entries {
                journal.add_list_entry(key)?;
            }
            Ok(entries.len())
        },
    )
}
