//! Importing: writing events that were recorded before, somewhere else (an
//! export file, a service's events topic), into a new store.
//!
//! An import goes through the same writer as every append. The events of
//! one stream that arrive one after the other become one [`AppendBatch`] at
//! the stream's expected version, with the uniqueness changes its events
//! make (one user per email), so the events, the store-wide log, the
//! versions, the uniqueness index, the counters and the durable head are
//! written exactly as a service writes them, checks included. What a
//! command writes beside its events is not written, on purpose:
//!
//! - no outbox records: the events are on their topic already (an export
//!   was taken from a store that published them, a restore reads them from
//!   the topic); publishing them again is `ordersaga republish`'s job;
//! - no consumer offsets: the commands' records are not known, only the
//!   events they caused; the processed table is rebuilt from those events
//!   afterwards ([`super::remember_imported_commands`]);
//! - no secrets: no event carries one.
//!
//! The archive and list indexes are then built from the log by the same
//! one-time migrations a store written before those indexes gets
//! ([`index_imported`]); they set their markers, so a service starting on
//! the imported store has nothing left to build. The saga deadline index
//! needs each saga's state: the orders service's own indexing of existing
//! sagas builds it (`ordersaga::saga::timer::index_existing`).
//!
//! Every event is checked before it is written: its stream has sequence
//! n + 1 next (no gap), its stream and sequence were not imported before,
//! and its event id is new. [`Import::check`] tells a duplicate (the same
//! event again, as an at-least-once topic may hold) from a conflict, so a
//! caller can drop the first and refuse the second.

use super::{AppendBatch, AppendReceipt, Journal, JournalError, StreamAppend};
use crate::aggregate::Aggregate;
use ordersaga_events::codec::{encode_event, Format};
use ordersaga_events::{Envelope, EventId, StreamId, Versioned};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// Most events of one stream written in one batch.
const MAX_BATCH_EVENTS: usize = 256;
/// Batches handed to the writer and not yet acknowledged. Enough to fill
/// the writer's groups while it flushes; bounded so that memory stays flat
/// however large the import.
const WINDOW: usize = 8192;

/// Why an event could not be imported, or the store cannot take an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The store already holds data: an import writes only into a new one.
    #[error("the store at {} is not empty (its {tree} tree holds records): import writes only into a new, empty store", path.display())]
    NotEmpty {
        /// The store's directory.
        path: PathBuf,
        /// A tree that holds records.
        tree: &'static str,
    },
    /// The event's stream is of another kind than the aggregate it was
    /// imported as.
    #[error("{stream} is not a {expected} stream")]
    WrongKind {
        /// The event's stream.
        stream: StreamId,
        /// The kind the aggregate stores.
        expected: &'static str,
    },
    /// Events of the stream are missing before this one.
    #[error("gap in {stream}: expected sequence {expected}, found {found}")]
    Gap {
        /// The stream.
        stream: StreamId,
        /// The sequence that should come next.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// The same event (stream, sequence and event id) was imported before.
    #[error("duplicate: {stream}#{sequence} (event {event_id}) was imported before")]
    Duplicate {
        /// The stream.
        stream: StreamId,
        /// The sequence.
        sequence: u64,
        /// The event id.
        event_id: EventId,
    },
    /// Another event was imported at this stream and sequence before.
    #[error(
        "conflict: {stream}#{sequence} was imported before with another event id than {event_id}"
    )]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// The sequence.
        sequence: u64,
        /// The event id of the second one.
        event_id: EventId,
    },
    /// The event id was imported before, at another place.
    #[error("event id {event_id} is at {first_stream}#{first_sequence} and again at {stream}#{sequence}")]
    DuplicateEventId {
        /// The event id.
        event_id: EventId,
        /// Where it was first.
        first_stream: StreamId,
        /// Its sequence there.
        first_sequence: u64,
        /// Where it is again.
        stream: StreamId,
        /// Its sequence there.
        sequence: u64,
    },
    /// The event cannot be encoded for the store.
    #[error("cannot encode {stream}#{sequence} for the store: {detail}")]
    Encode {
        /// The stream.
        stream: StreamId,
        /// The sequence.
        sequence: u64,
        /// Why.
        detail: String,
    },
    /// The store refused a batch (a uniqueness claim another stream holds,
    /// say) or failed to write it.
    #[error("the store refused the events of {stream} from sequence {sequence}: {source}")]
    Refused {
        /// The stream.
        stream: StreamId,
        /// The first sequence of the refused batch.
        sequence: u64,
        /// Why.
        source: JournalError,
    },
    /// The store failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What [`Import::check`] found an event to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The next event of its stream: import it.
    New,
    /// The very event imported before: drop it.
    Duplicate,
}

/// One batch handed to the writer, awaiting its acknowledgement.
struct InFlight {
    stream: StreamId,
    first: u64,
    receipt: oneshot::Receiver<Result<AppendReceipt, JournalError>>,
}

/// An import into one store: check and push events in order, then
/// [`Import::finish`]. Synchronous: do not use it from inside an async
/// runtime (it waits for the writer as [`Journal::append_blocking`] does).
pub struct Import {
    journal: Journal,
    /// Each stream's last imported sequence.
    versions: HashMap<StreamId, u64>,
    /// Every imported event id, and where it went.
    ids: HashMap<EventId, (StreamId, u64)>,
    /// The batch being gathered: consecutive events of one stream.
    pending: Option<AppendBatch>,
    in_flight: VecDeque<InFlight>,
    events: u64,
}

impl Import {
    /// Starts an import into `journal`'s store, which must hold no events,
    /// log, outbox, processed commands, offsets, snapshots or indexes.
    pub fn new(journal: &Journal) -> Result<Self, ImportError> {
        let trees = journal.trees();
        let named = [
            ("events", &trees.events),
            ("versions", &trees.versions),
            ("log", &trees.log),
            ("snapshots", &trees.snapshots),
            ("outbox", &trees.outbox),
            ("processed", &trees.processed),
            ("offsets", &trees.offsets),
            ("unique", &trees.unique),
            ("quarantine", &trees.quarantine),
            ("deadlines", &trees.deadlines),
            ("archive", &trees.archive),
            ("lists", &trees.lists),
            ("secrets", &trees.secrets),
        ];
        for (tree, contents) in named {
            if !contents.is_empty() {
                return Err(ImportError::NotEmpty {
                    path: journal.path().to_path_buf(),
                    tree,
                });
            }
        }
        Ok(Self {
            journal: journal.clone(),
            versions: HashMap::new(),
            ids: HashMap::new(),
            pending: None,
            in_flight: VecDeque::new(),
            events: 0,
        })
    }

    /// The last sequence imported into `stream` (0 before its first event).
    pub fn version(&self, stream: &StreamId) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// Events imported so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Streams imported so far.
    pub fn streams(&self) -> usize {
        self.versions.len()
    }

    /// What the event at `stream`/`sequence` with `event_id` would be:
    /// [`Seen::New`] when it is its stream's next event, [`Seen::Duplicate`]
    /// when this very event was imported before; an error for a gap, a
    /// second event at a taken place, or an event id seen elsewhere.
    pub fn check(
        &self,
        stream: &StreamId,
        sequence: u64,
        event_id: EventId,
    ) -> Result<Seen, ImportError> {
        if let Some(&(first_stream, first_sequence)) = self.ids.get(&event_id) {
            if first_stream == *stream && first_sequence == sequence {
                return Ok(Seen::Duplicate);
            }
            return Err(ImportError::DuplicateEventId {
                event_id,
                first_stream,
                first_sequence,
                stream: *stream,
                sequence,
            });
        }
        let version = self.version(stream);
        if sequence == 0 {
            // Sequences start at 1: a 0 is never a stream's next event.
            return Err(ImportError::Gap {
                stream: *stream,
                expected: version + 1,
                found: 0,
            });
        }
        if sequence <= version {
            return Err(ImportError::Conflict {
                stream: *stream,
                sequence,
                event_id,
            });
        }
        if sequence != version + 1 {
            return Err(ImportError::Gap {
                stream: *stream,
                expected: version + 1,
                found: sequence,
            });
        }
        Ok(Seen::New)
    }

    /// Imports one event of aggregate `A`: it must be its stream's next
    /// ([`Import::check`] says [`Seen::New`]); a duplicate is an error here.
    /// The event is stored in the current schema version of its payload.
    pub fn push<A: Aggregate>(&mut self, envelope: &Envelope<A::Event>) -> Result<(), ImportError> {
        let stream = envelope.stream;
        let sequence = envelope.sequence;
        if stream.kind != A::KIND {
            return Err(ImportError::WrongKind {
                stream,
                expected: A::KIND.name(),
            });
        }
        if self.check(&stream, sequence, envelope.event_id)? == Seen::Duplicate {
            return Err(ImportError::Duplicate {
                stream,
                sequence,
                event_id: envelope.event_id,
            });
        }
        // The payload is of the current type, whatever version it was
        // written in: it is stored as the current version, as a service
        // would store it today.
        let current = Envelope {
            schema_version: <A::Event as Versioned>::SCHEMA_VERSION,
            ..envelope.clone()
        };
        let bytes = encode_event(Format::Bincode, &current).map_err(|err| ImportError::Encode {
            stream,
            sequence,
            detail: err.to_string(),
        })?;
        let unique = A::unique_changes(&envelope.payload);
        let joins = self.pending.as_ref().is_some_and(|batch| {
            batch.events.as_ref().is_some_and(|append| {
                append.stream == stream && append.events.len() < MAX_BATCH_EVENTS
            })
        });
        if !joins {
            self.send_pending()?;
            self.pending = Some(AppendBatch {
                events: Some(StreamAppend {
                    stream,
                    expected_version: sequence - 1,
                    events: Vec::new(),
                    unique: Vec::new(),
                }),
                ..AppendBatch::default()
            });
        }
        if let Some(append) = self.pending.as_mut().and_then(|b| b.events.as_mut()) {
            append.events.push(bytes);
            append.unique.extend(unique);
        }
        self.versions.insert(stream, sequence);
        self.ids.insert(envelope.event_id, (stream, sequence));
        self.events += 1;
        Ok(())
    }

    /// Hands the gathered batch to the writer, waiting for the oldest
    /// batches in flight when the window is full.
    fn send_pending(&mut self) -> Result<(), ImportError> {
        let Some(batch) = self.pending.take() else {
            return Ok(());
        };
        let Some(append) = &batch.events else {
            return Ok(());
        };
        let (stream, first) = (append.stream, append.expected_version + 1);
        let receipt = self.journal.enqueue(batch)?;
        self.in_flight.push_back(InFlight {
            stream,
            first,
            receipt,
        });
        while self.in_flight.len() > WINDOW {
            self.wait_oldest()?;
        }
        Ok(())
    }

    /// Waits for the oldest batch in flight to be durable.
    fn wait_oldest(&mut self) -> Result<(), ImportError> {
        let Some(batch) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match batch.receipt.blocking_recv() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(ImportError::Refused {
                stream: batch.stream,
                sequence: batch.first,
                source,
            }),
            Err(_) => Err(ImportError::Journal(JournalError::Closed)),
        }
    }

    /// Writes what is still gathered and waits until every imported event
    /// is durable. Returns how many events were imported.
    pub fn finish(mut self) -> Result<u64, ImportError> {
        self.send_pending()?;
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        self.journal.flush()?;
        Ok(self.events)
    }
}

/// Builds the indexes of aggregate `A` that an import leaves out (the
/// archive of closed items, the list indexes) from the log of the imported
/// store, and moves any secret an old event still carries (none, from an
/// import: events are stored in their current version), with the same
/// migrations a service runs once on an older store. Each sets its marker,
/// so a service starting on the store does not run them again. Returns the
/// index entries written.
pub fn index_imported<A: Aggregate>(journal: &Journal) -> Result<usize, JournalError> {
    let archived = crate::migrations::index_archive::<A>(journal)?;
    let listed = crate::migrations::index_lists::<A>(journal)?;
    let moved = crate::migrations::move_legacy_secrets::<A>(journal)?;
    Ok(archived + listed + moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::{User, EMAIL_INDEX};
    use crate::journal::JournalConfig;
    use crate::recovery::replay;
    use chrono::Utc;
    use ordersaga_events::user::UserEvent;
    use ordersaga_events::{Cents, CommandId, CorrelationId, StreamKind, UserId};

    fn event(user: UserId, sequence: u64, payload: UserEvent) -> Envelope<UserEvent> {
        Envelope {
            event_id: EventId::new(),
            stream: StreamId::new(StreamKind::User, user.as_uuid()),
            sequence,
            recorded_at: Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version: UserEvent::SCHEMA_VERSION,
            payload,
        }
    }

    fn registered(user: UserId, email: &str) -> Envelope<UserEvent> {
        event(
            user,
            1,
            UserEvent::Registered {
                user_id: user,
                email: email.into(),
                username: "u".into(),
            },
        )
    }

    #[test]
    fn imported_events_land_as_appends_would_put_them() {
        let journal = Journal::open(JournalConfig::tmp()).unwrap();
        let (a, b) = (UserId::new(), UserId::new());
        let mut import = Import::new(&journal).unwrap();
        import
            .push::<User>(&registered(a, "a@example.com"))
            .unwrap();
        import
            .push::<User>(&registered(b, "b@example.com"))
            .unwrap();
        import
            .push::<User>(&event(a, 2, UserEvent::Deposited { amount: Cents(5) }))
            .unwrap();
        assert_eq!(import.finish().unwrap(), 3);

        let stream = StreamId::new(StreamKind::User, a.as_uuid());
        assert_eq!(journal.version(&stream).unwrap(), 2);
        let log: Vec<(u64, StreamId, u64)> = journal
            .read_log(1)
            .map(|e| e.map(|e| (e.position, e.stream, e.sequence)).unwrap())
            .collect();
        assert_eq!(log.len(), 3);
        assert_eq!(log[2], (3, stream, 2));
        assert_eq!(journal.log_head(), 4);
        assert_eq!(
            journal.unique_holder(EMAIL_INDEX, "a@example.com").unwrap(),
            Some(stream)
        );
        assert_eq!(
            replay::<User>(&journal, a.as_uuid(), None).unwrap().version,
            2
        );
        // Already published: nothing waits in the outbox.
        assert_eq!(journal.outbox_len(), 0);
        // An import writes only into a new store.
        assert!(matches!(
            Import::new(&journal),
            Err(ImportError::NotEmpty { .. })
        ));
    }

    #[test]
    fn gaps_duplicates_conflicts_and_reused_event_ids_are_told_apart() {
        let journal = Journal::open(JournalConfig::tmp()).unwrap();
        let user = UserId::new();
        let mut import = Import::new(&journal).unwrap();
        let first = registered(user, "c@example.com");
        import.push::<User>(&first).unwrap();
        let stream = first.stream;

        assert_eq!(
            import.check(&stream, 1, first.event_id).unwrap(),
            Seen::Duplicate
        );
        assert!(matches!(
            import.push::<User>(&first),
            Err(ImportError::Duplicate { sequence: 1, .. })
        ));
        assert!(matches!(
            import.check(&stream, 1, EventId::new()),
            Err(ImportError::Conflict { sequence: 1, .. })
        ));
        assert!(matches!(
            import.check(&stream, 3, EventId::new()),
            Err(ImportError::Gap {
                expected: 2,
                found: 3,
                ..
            })
        ));
        let mut reused = event(UserId::new(), 1, UserEvent::Deactivated);
        reused.event_id = first.event_id;
        assert!(matches!(
            import.push::<User>(&reused),
            Err(ImportError::DuplicateEventId {
                first_sequence: 1,
                ..
            })
        ));
        // A second account with the same email is refused by the store, as
        // a second registration would be.
        import
            .push::<User>(&registered(UserId::new(), "c@example.com"))
            .unwrap();
        assert!(matches!(
            import.finish(),
            Err(ImportError::Refused {
                source: JournalError::UniqueViolation { .. },
                ..
            })
        ));
    }
}
