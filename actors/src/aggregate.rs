//! The aggregate abstraction: a pure state machine per business entity.
//!
//! `decide` holds every business rule and answers a command with the events it
//! causes or a typed rejection; `apply` folds one event into the state and never
//! fails. Neither touches a disk or a broker, so every rule is testable with
//! [`crate::testing::AggregateTest`] alone.

use crate::outgoing::Outgoing;
use ordersaga_events::reply::ReasonCode;
use ordersaga_events::topics::Service;
use ordersaga_events::{StreamKind, Versioned};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use uuid::Uuid;

/// A change to a store-wide uniqueness index, made in the same transaction as
/// the event that causes it (for example: one user per email address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UniqueChange {
    /// Take `key` in `index`; the append fails if another stream holds it.
    Claim {
        /// The index name, e.g. `user-email`.
        index: &'static str,
        /// The unique value.
        key: String,
    },
    /// Free `key` in `index` (only if this stream holds it).
    Release {
        /// The index name.
        index: &'static str,
        /// The unique value.
        key: String,
    },
}

/// An event-sourced aggregate.
pub trait Aggregate:
    Default + Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Unpin + 'static
{
    /// What callers ask for.
    type Command: Clone + Debug + Send + 'static;
    /// What happened; persisted and published.
    type Event: Versioned + Clone + Debug + PartialEq + Send + Sync + 'static;
    /// Why a command was refused.
    type Rejection: ReasonCode + Clone + Debug + PartialEq + Send + 'static;

    /// The stream kind this aggregate's events are stored under.
    const KIND: StreamKind;
    /// The service that owns this aggregate.
    const SERVICE: Service;

    /// The id of the aggregate instance a command addresses.
    fn aggregate_id(command: &Self::Command) -> Uuid;

    /// Every business rule: the events `command` causes, or why it is refused.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// Folds one event into the state. Never fails: events are facts.
    fn apply(&mut self, event: &Self::Event);

    /// Uniqueness index changes an event makes (none by default).
    fn unique_changes(event: &Self::Event) -> Vec<UniqueChange> {
        let _ = event;
        Vec::new()
    }

    /// The rejection for a [`UniqueChange::Claim`] that another stream holds.
    /// `None` (the default) treats it as an internal error.
    fn unique_violation(index: &str, key: &str) -> Option<Self::Rejection> {
        let _ = (index, key);
        None
    }

    /// Commands this decision sends to other aggregates, written to the
    /// outbox in the same transaction as `events` (so they are sent exactly
    /// when the events are stored). `before` and `after` are the state
    /// around `events`. Typed: the service layer addresses and encodes them.
    /// None by default; the order saga sends its steps this way.
    fn commands(before: &Self, after: &Self, events: &[Self::Event]) -> Vec<Outgoing> {
        let _ = (before, after, events);
        Vec::new()
    }

    /// Whether [`Aggregate::commands`] can return anything; when false the
    /// service skips computing the state after the events for it.
    const SENDS_COMMANDS: bool = false;

    /// When this aggregate wants to be woken (milliseconds since the Unix
    /// epoch), if it does: the order saga's next deadline. The journal keeps
    /// it in its deadline index, written with the events that change it.
    /// Never by default.
    fn wake_at(&self) -> Option<i64> {
        None
    }

    /// Whether [`Aggregate::wake_at`] can return anything.
    const WAKES: bool = false;

    /// The item (an order id) that `event` closes, or changes after it
    /// closed. `apply` drops closed items from the state, so the state and
    /// its snapshot hold open items only; the journal's archive index keeps,
    /// per item, the latest event about it, written with that event. None by
    /// default.
    fn archive_key(event: &Self::Event) -> Option<String> {
        let _ = event;
        None
    }

    /// The closed item whose record `decide` needs for `command` (for
    /// example, to refuse a second reservation for one order). The service
    /// finds the item's latest event in the archive and hands it to
    /// [`Aggregate::recall`] on a copy of the state before deciding.
    fn recall_key(command: &Self::Command) -> Option<String> {
        let _ = command;
        None
    }

    /// Puts a closed item back into a copy of the state, from the latest
    /// event about it, so that `decide` sees it. The copy is thrown away
    /// after the decision; `apply` never relies on recalled items.
    fn recall(&mut self, event: &Self::Event) {
        let _ = event;
    }

    /// Whether this aggregate archives closed items.
    const ARCHIVES: bool = false;

    /// The layout of the state inside a snapshot. Bump it when what the
    /// state keeps changes (for example, when closed items leave it): older
    /// snapshots are then ignored and the stream is replayed.
    const STATE_VERSION: u8 = 0;

    /// Costly work a command needs before `decide` that does not depend on
    /// the state, such as hashing a password. The service runs it on a
    /// blocking thread, so that no actor waits for it, and `decide` stays a
    /// pure, quick function. A rejection here answers the command as a
    /// rejection from `decide` would. Nothing by default.
    fn prepare(command: &mut Self::Command) -> Result<(), Self::Rejection> {
        let _ = command;
        Ok(())
    }

    /// Whether [`Aggregate::prepare`] does anything.
    const PREPARES: bool = false;

    /// Secrets an accepted `command` sets (`Some`) or clears (`None`), by
    /// name: credentials that stay in the store, written in the same
    /// transaction as `events`, and never in an event, because events are
    /// published. None by default; a registration stores its password hash.
    fn secrets(
        command: &Self::Command,
        events: &[Self::Event],
    ) -> Vec<(&'static str, Option<Vec<u8>>)> {
        let _ = (command, events);
        Vec::new()
    }

    /// Secrets that a stored event of an older schema carried, before they
    /// left the events: moved into the store's secrets once, on start.
    fn legacy_secrets(stored_event: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let _ = stored_event;
        Vec::new()
    }

    /// Whether [`Aggregate::legacy_secrets`] can return anything.
    const LEGACY_SECRETS: bool = false;

    /// Entries `event` (recorded at `at`) adds to the store's list indexes
    /// ([`crate::journal::list_key`]), written in its transaction: what
    /// paginated queries read, such as a user's orders newest first. None by
    /// default.
    fn list_entries(event: &Self::Event, at: chrono::DateTime<chrono::Utc>) -> Vec<Vec<u8>> {
        let _ = (event, at);
        Vec::new()
    }

    /// Whether [`Aggregate::list_entries`] can return anything.
    const LISTS: bool = false;

    /// What an accepted command that caused `events` hands back to its
    /// requester in the reply (none by default).
    fn result(events: &[Self::Event]) -> Option<ordersaga_events::CommandResult> {
        let _ = events;
        None
    }

    /// Applies events in order to a default state: the state replay yields.
    fn from_events<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}
