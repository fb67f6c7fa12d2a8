//! `ordersaga replay`: rebuild aggregates from their events, one or all of a
//! service's, as they are now or as they were at a sequence or a time.
//!
//! The state is rebuilt by [`ordersaga_actors::recovery::replay`], the very
//! fold the entity actors and `verify` use, so what an operator sees is what
//! the service would recover from scratch. [`check`] compares that with the
//! snapshot and the snapshot + tail path
//! ([`ordersaga_actors::recovery::recover`]) the live service takes.
//!
//! The state printed is the aggregate itself, serialized (every aggregate
//! is `Serialize`: its snapshots are made that way), not the HTTP views of
//! `src/http/views.rs`. An operator replays to find out why a service does
//! what it does; the views leave out what it decides on (a product's held
//! reservations, a saga's compensations, deadlines and attempt), and they
//! exist for orders and products only in part. It is also exactly what
//! `--check` compares, so a difference it reports can be read in the
//! printed states.
//!
//! All of a service's aggregates are replayed on several threads (streams
//! are independent) and handed out in stream order, so the output does not
//! depend on the number of threads.
//!
//! Streams are read from a stopped store: a running service holds its
//! store's lock, and opening it then fails with that said.

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::recovery::{decode_stored, replay, stream_of};
use ordersaga_actors::{Aggregate, Journal, JournalConfig, JournalError};
use ordersaga_events::topics::Service;
use ordersaga_events::{StreamId, StreamKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use uuid::Uuid;

#[path = "replay_check.rs"]
pub mod check;

/// Why a replay could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The store is missing, locked, damaged or unreadable. A corrupt event
    /// is named by stream and sequence (`event order:…#3`).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// There is no such store, or no such stream in it.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the store (a stream of another service).
    #[error("{0}")]
    Usage(String),
    /// A running service, or another tool, holds the store: stop it and
    /// try again.
    #[error("{0}")]
    Busy(String),
    /// `--check` found differences (each one reported as it was found).
    #[error("replay --check found {0} differences")]
    Differences(u64),
    /// The output could not be written (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The stream's events end before its recorded version: events are
    /// missing from the store.
    #[error("corrupt store: stream {stream}: replay reached version {reached} of {head}")]
    Truncated {
        /// The stream.
        stream: StreamId,
        /// The last sequence replayed.
        reached: u64,
        /// The version the store records for it.
        head: u64,
    },
}

/// How far to replay: up to and including a sequence, or every event
/// recorded at or before a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Events `1..=n` of each stream.
    Sequence(u64),
    /// Each stream's events up to the last one whose `recorded_at` is at or
    /// before this time. Events are folded in sequence order, so the cut is
    /// a prefix even if a clock stepped back: a state never holds an event
    /// without the ones before it.
    Time(DateTime<Utc>),
}

impl FromStr for At {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(sequence) = text.parse::<u64>() {
            return Ok(At::Sequence(sequence));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| At::Time(time.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "expected a sequence number or an RFC 3339 time \
                     (2025-01-31T12:00:00Z), got {text:?}"
                )
            })
    }
}

/// The stream kinds a service's store holds: the orders store holds the
/// orders and their sagas.
pub fn kinds(service: Service) -> &'static [StreamKind] {
    match service {
        Service::Users => &[StreamKind::User],
        Service::Orders => &[StreamKind::Order, StreamKind::Saga],
        Service::Inventory => &[StreamKind::Product],
    }
}

/// The service whose store holds streams of `kind`.
pub fn service_of(kind: StreamKind) -> Service {
    match kind {
        StreamKind::User => Service::Users,
        StreamKind::Order | StreamKind::Saga => Service::Orders,
        StreamKind::Product => Service::Inventory,
    }
}

/// Reads `kind:uuid` (`order:…`, `saga:…`, `user:…`, `product:…`) or a bare
/// uuid, which names the service's main kind: a user, an order (its saga has
/// the same id: ask for `saga:ID`), a product.
pub fn parse_stream(service: Service, text: &str) -> Result<StreamId, ReplayError> {
    let text = text.trim();
    let stream = if text.contains(':') {
        text.parse::<StreamId>()
            .map_err(|err| ReplayError::Usage(err.to_string()))?
    } else {
        let id = Uuid::parse_str(text).map_err(|_| {
            ReplayError::Usage(format!("expected KIND:UUID or a UUID, got {text:?}"))
        })?;
        StreamId::new(kinds(service)[0], id)
    };
    if service_of(stream.kind) != service {
        return Err(ReplayError::Usage(format!(
            "{} streams live in the {} store, not in {}",
            stream.kind.name(),
            service_of(stream.kind).name(),
            service.name()
        )));
    }
    Ok(stream)
}

/// sled's page cache for a store a tool reads: a bound, not an allocation.
/// The services' 64 MiB is sized for a working set; a tool reads whole
/// stores, and `--check` reads each stream several times over, so it may
/// keep up to sled's own default of 1 GiB of pages.
pub const TOOL_CACHE_BYTES: u64 = 1 << 30;

/// Opens the stopped store of `service` under `data` (`DATA/users`,
/// `DATA/orders`, `DATA/inventory`). A missing store is an error rather than
/// a new empty one; a store a running service holds fails after sled's
/// lock retries, saying it is in use.
pub fn open_store(data: &Path, service: Service) -> Result<Journal, ReplayError> {
    let path = data.join(service.name());
    if !path.is_dir() {
        return Err(ReplayError::NotFound(format!(
            "no {} store at {}",
            service.name(),
            path.display()
        )));
    }
    let config = JournalConfig {
        cache_capacity: TOOL_CACHE_BYTES,
        ..JournalConfig::new(&path)
    };
    Journal::open(config).map_err(|err| {
        if err.to_string().contains("in use by another process") {
            ReplayError::Busy(format!(
                "{err} (a running {} service, or another tool, holds the store: stop it first)",
                service.name()
            ))
        } else {
            err.into()
        }
    })
}

/// One aggregate's state, of whichever kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum State {
    /// A user account.
    User(User),
    /// A product's stock.
    Product(Product),
    /// An order.
    Order(Order),
    /// An order saga (boxed: it is much the largest).
    Saga(Box<Saga>),
}

/// An aggregate this tool replays: each of the four, wrapped into [`State`].
pub trait Replayable: Aggregate {
    /// `self` as a [`State`].
    fn wrap(self) -> State;
}

impl Replayable for User {
    fn wrap(self) -> State {
        State::User(self)
    }
}
impl Replayable for Product {
    fn wrap(self) -> State {
        State::Product(self)
    }
}
impl Replayable for Order {
    fn wrap(self) -> State {
        State::Order(self)
    }
}
impl Replayable for Saga {
    fn wrap(self) -> State {
        State::Saga(Box::new(self))
    }
}

/// One replayed aggregate.
#[derive(Clone, Debug, PartialEq)]
pub struct Replayed {
    /// Its stream.
    pub stream: StreamId,
    /// The last sequence applied (0: no event yet at that point).
    pub version: u64,
    /// The stream's version in the store: the state is the current one when
    /// `version == head`.
    pub head: u64,
    /// When the last applied event was recorded, if it was read (see
    /// [`replay_all`]).
    pub recorded_at: Option<DateTime<Utc>>,
    /// The state.
    pub state: State,
}

impl Replayed {
    /// The JSON line the tool prints for it: stream as `kind:uuid`,
    /// versions, time of the last applied event, and the state, in that
    /// order.
    pub fn to_json(&self) -> String {
        /// The printed shape, fields in this order.
        #[derive(Serialize)]
        struct Line<'a> {
            stream: String,
            version: u64,
            head: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            recorded_at: Option<DateTime<Utc>>,
            state: &'a State,
        }
        serde_json::to_string(&Line {
            stream: self.stream.to_string(),
            version: self.version,
            head: self.head,
            recorded_at: self.recorded_at,
            state: &self.state,
        })
        .unwrap_or_else(|err| {
            serde_json::json!({ "stream": self.stream.to_string(), "error": err.to_string() })
                .to_string()
        })
    }
}

/// What a run over many aggregates covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Aggregates replayed (at `--at`, those that existed by then).
    pub aggregates: u64,
    /// Events applied.
    pub events: u64,
}

/// The last sequence of `stream` at `at` (`None`: everything), with its
/// time when finding the cut read it.
fn cut<A: Aggregate>(
    journal: &Journal,
    stream: &StreamId,
    head: u64,
    at: Option<At>,
) -> Result<(u64, Option<DateTime<Utc>>), JournalError> {
    match at {
        None => Ok((head, None)),
        Some(At::Sequence(n)) => Ok((n.min(head), None)),
        Some(At::Time(time)) => {
            let mut last = (0, None);
            for item in journal.read_stream(stream, 1) {
                let (sequence, bytes) = item?;
                let envelope = decode_stored::<A>(stream, sequence, &bytes)?;
                if envelope.recorded_at > time {
                    break;
                }
                last = (sequence, Some(envelope.recorded_at));
            }
            Ok(last)
        }
    }
}

/// When event `sequence` of `stream` was recorded.
fn recorded_at<A: Aggregate>(
    journal: &Journal,
    stream: &StreamId,
    sequence: u64,
) -> Result<Option<DateTime<Utc>>, JournalError> {
    if sequence == 0 {
        return Ok(None);
    }
    match journal.read_stream(stream, sequence).next().transpose()? {
        Some((found, bytes)) if found == sequence => {
            Ok(Some(decode_stored::<A>(stream, found, &bytes)?.recorded_at))
        }
        _ => Ok(None),
    }
}

/// Replays the stream of aggregate `A` with id `id`, whose version in the
/// store is `head`, up to `at`. The time of the last applied event is read
/// when `with_time` (one more read of the stream), or when a time cut found
/// it anyway.
pub fn replay_one<A: Replayable>(
    journal: &Journal,
    id: Uuid,
    head: u64,
    at: Option<At>,
    with_time: bool,
) -> Result<Replayed, ReplayError> {
    let stream = stream_of::<A>(id);
    let (until, time) = cut::<A>(journal, &stream, head, at)?;
    let recovered = replay::<A>(journal, id, Some(until))?;
    if recovered.version < until {
        return Err(ReplayError::Truncated {
            stream,
            reached: recovered.version,
            head,
        });
    }
    let recorded_at = match time {
        Some(time) => Some(time),
        None if with_time => recorded_at::<A>(journal, &stream, until)?,
        None => None,
    };
    Ok(Replayed {
        stream,
        version: recovered.version,
        head,
        recorded_at,
        state: recovered.state.wrap(),
    })
}

/// Replays `stream` of the store `journal` up to `at`. Fails when the store
/// has no such stream.
pub fn replay_stream(
    journal: &Journal,
    stream: StreamId,
    at: Option<At>,
) -> Result<Replayed, ReplayError> {
    let head = journal.version(&stream)?;
    if head == 0 {
        return Err(ReplayError::NotFound(format!(
            "no stream {stream} in {}",
            journal.path().display()
        )));
    }
    match stream.kind {
        StreamKind::User => replay_one::<User>(journal, stream.id, head, at, true),
        StreamKind::Product => replay_one::<Product>(journal, stream.id, head, at, true),
        StreamKind::Order => replay_one::<Order>(journal, stream.id, head, at, true),
        StreamKind::Saga => replay_one::<Saga>(journal, stream.id, head, at, true),
    }
}

/// How many aggregates one worker takes at a time.
const BATCH: usize = 256;

/// The results of one batch of streams, by the batch's place in stream
/// order.
type Batch = (usize, Vec<Result<Replayed, ReplayError>>);

/// Replays every aggregate of `A` in the store, on `jobs` threads, handing
/// each to `each` in stream order on the calling thread; stops at the first
/// that cannot be replayed.
fn replay_kind<A: Replayable>(
    journal: &Journal,
    at: Option<At>,
    jobs: usize,
    progress: &ProgressBar,
    totals: &mut Totals,
    each: &mut dyn FnMut(Replayed) -> Result<(), ReplayError>,
) -> Result<(), ReplayError> {
    let mut hand_out = |replayed: Replayed| -> Result<(), ReplayError> {
        progress.inc(replayed.head);
        if replayed.version == 0 {
            // At that point the aggregate did not exist yet.
            return Ok(());
        }
        totals.aggregates += 1;
        totals.events += replayed.version;
        each(replayed)
    };
    let replay_stream = |item: Result<(StreamId, u64), JournalError>| {
        let (stream, head) = item?;
        replay_one::<A>(journal, stream.id, head, at, false)
    };
    if jobs <= 1 {
        for item in journal.streams(Some(A::KIND)) {
            hand_out(replay_stream(item)?)?;
        }
        return Ok(());
    }
    // Streams are independent: workers replay batches of them while this
    // thread puts the results back in stream order and hands them out. A
    // bounded queue keeps the workers at most a few batches ahead of a slow
    // reader (a terminal); dropping it on an error stops them.
    let streams = Mutex::new((journal.streams(Some(A::KIND)), 0usize));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (sender, results) = mpsc::sync_channel::<Batch>(jobs * 2);
        for _ in 0..jobs {
            let sender = sender.clone();
            let (streams, stop, replay_stream) = (&streams, &stop, &replay_stream);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (index, batch) = {
                        let Ok(mut next) = streams.lock() else { return };
                        let batch: Vec<_> = next.0.by_ref().take(BATCH).collect();
                        next.1 += 1;
                        (next.1 - 1, batch)
                    };
                    if batch.is_empty() {
                        return;
                    }
                    let done = batch.into_iter().map(replay_stream).collect();
                    if sender.send((index, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        let in_order = (|| {
            for (index, done) in results.iter() {
                waiting.insert(index, done);
                while let Some(done) = waiting.remove(&next) {
                    next += 1;
                    for replayed in done {
                        hand_out(replayed?)?;
                    }
                }
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        drop(results);
        in_order
    })
}

/// Replays every aggregate of `service`'s store (for orders: the orders,
/// then the sagas), each up to `at`, on `jobs` threads (1: this one only),
/// handing each to `each` in stream order on this thread. `progress` counts
/// the events read (its length can be set to [`Journal::log_head`] − 1, the
/// events in the store). Stops at the first stream that cannot be replayed,
/// naming it.
///
/// The time of each aggregate's last event is given only with a time cut
/// (which reads it anyway): elsewhere it would cost one more read per
/// aggregate.
pub fn replay_all(
    journal: &Journal,
    service: Service,
    at: Option<At>,
    jobs: usize,
    progress: &ProgressBar,
    mut each: impl FnMut(Replayed) -> Result<(), ReplayError>,
) -> Result<Totals, ReplayError> {
    let mut totals = Totals::default();
    for kind in kinds(service) {
        let each: &mut dyn FnMut(Replayed) -> Result<(), ReplayError> = &mut each;
        let totals = &mut totals;
        match kind {
            StreamKind::User => replay_kind::<User>(journal, at, jobs, progress, totals, each)?,
            StreamKind::Product => {
                replay_kind::<Product>(journal, at, jobs, progress, totals, each)?
            }
            StreamKind::Order => replay_kind::<Order>(journal, at, jobs, progress, totals, each)?,
            StreamKind::Saga => replay_kind::<Saga>(journal, at, jobs, progress, totals, each)?,
        }
    }
    Ok(totals)
}

/// The worker threads `replay_all` uses by default: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_reads_a_sequence_or_an_rfc3339_time() {
        assert_eq!("7".parse::<At>(), Ok(At::Sequence(7)));
        let At::Time(time) = "2025-01-31T12:00:00.5+01:00".parse::<At>().unwrap() else {
            panic!("a time");
        };
        assert_eq!(time.to_rfc3339(), "2025-01-31T11:00:00.500+00:00");
        assert!("yesterday".parse::<At>().is_err());
        assert!("-3".parse::<At>().is_err());
    }

    #[test]
    fn streams_are_kind_and_uuid_or_a_bare_uuid_of_the_main_kind() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_stream(Service::Orders, &format!("saga:{id}")).unwrap(),
            StreamId::new(StreamKind::Saga, id)
        );
        assert_eq!(
            parse_stream(Service::Orders, &id.to_string()).unwrap(),
            StreamId::new(StreamKind::Order, id)
        );
        assert_eq!(
            parse_stream(Service::Inventory, &id.to_string()).unwrap(),
            StreamId::new(StreamKind::Product, id)
        );
        let wrong = parse_stream(Service::Users, &format!("order:{id}")).unwrap_err();
        assert!(wrong.to_string().contains("orders store"), "{wrong}");
        assert!(parse_stream(Service::Users, "user:nope").is_err());
        assert!(parse_stream(Service::Users, "nope").is_err());
    }
}
