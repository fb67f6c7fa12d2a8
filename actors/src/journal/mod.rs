//! The journal: one sled store per service, holding its events and everything
//! that must change together with them.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `events` | stream key ++ sequence | encoded envelope |
//! | `versions` | stream key | last sequence |
//! | `log` | global position | stream key ++ sequence (store-wide order) |
//! | `snapshots` | stream key | sequence ++ encoded state |
//! | `outbox` | outbox position | a Kafka record still to publish |
//! | `processed` | command id | the reply already given (idempotency) |
//! | `offsets` | topic ++ partition | next offset to consume |
//! | `unique` | index ++ value | the stream holding it |
//! | `meta` | name | counters, the store's id |
//! | `quarantine` | outbox position | an outbox row that could not be read, and why |
//! | `deadlines` | wake-up time ++ stream key | (nothing): the streams to wake, by time |
//! | `wake_at` | stream key | the stream's entry in `deadlines` |
//! | `archive` | stream key ++ item key | sequence of the latest event about a closed item |
//! | `lists` | list name ++ 0 ++ entry | (nothing): list indexes for queries, such as a user's orders |
//! | `secrets` | stream key ++ name | a credential of the stream (a password hash), never in an event |
//!
//! Everything one command causes is one [`AppendBatch`], written all or
//! nothing in one sled transaction (shared with the other appends of its
//! group), so a crash never leaves an event without its outbox record, a
//! reply without its events, or an offset ahead of its effects. Appends carry
//! the expected stream version and fail with [`JournalError::Conflict`] when it
//! moved. An append is acknowledged only once it is durable, and concurrent
//! appends share one flush (see [`writer`]).

mod archive;
mod error;
mod head;
mod import;
mod keys;
mod lists;
mod open;
mod outbox;
mod quarantine;
mod records;
mod remembered;
mod schedule;
mod secrets;
mod transaction;
mod writer;

pub use error::JournalError;
pub use import::{index_imported, Import, ImportError, Seen};
pub use lists::list_key;
pub use quarantine::{CorruptRecord, OutboxBatch};
pub use records::{
    AppendBatch, AppendReceipt, ConsumedOffset, OutboxRecord, Schedule, StreamAppend,
};
pub use remembered::remember_imported_commands;

use keys::{event_key, offset_key, read_u64, split_event_key, unique_key};
use open::{cursor, open_db, store_id};
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::{CommandId, StreamId, StreamKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{oneshot, watch};

const META_LOG_NEXT: &[u8] = b"log_next";
const META_OUTBOX_NEXT: &[u8] = b"outbox_next";
const META_STORE_ID: &[u8] = b"store_id";

/// How to open a journal. `Default` is a store in `./data/journal` with the
/// defaults documented on each field.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// The store directory (created if missing).
    pub path: PathBuf,
    /// Most appends one flush may cover. Default 4096.
    pub max_group: usize,
    /// sled's page cache, bytes. Default 64 MiB.
    pub cache_capacity: u64,
    /// Delete the store when the journal is dropped (tests). Default false.
    pub temporary: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/journal"),
            max_group: 4096,
            cache_capacity: 64 * 1024 * 1024,
            temporary: false,
        }
    }
}

impl JournalConfig {
    /// A persistent store at `path` with default settings.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// A throw-away store, removed when the journal is dropped.
    pub fn tmp() -> Self {
        Self {
            path: std::env::temp_dir().join(format!("ordersaga-journal-{}", uuid::Uuid::new_v4())),
            temporary: true,
            ..Self::default()
        }
    }
}

/// Counters of the group-commit writer, for benchmarks and metrics.
#[derive(Default, Debug)]
pub(crate) struct Stats {
    flushes: AtomicU64,
    commits: AtomicU64,
    events: AtomicU64,
    flush_micros: AtomicU64,
}

/// A snapshot of the writer's counters since the journal was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Durable flushes done.
    pub flushes: u64,
    /// Batches committed.
    pub commits: u64,
    /// Events appended.
    pub events: u64,
    /// Time spent in durable flushes, in microseconds.
    pub flush_micros: u64,
}

impl JournalStats {
    /// Mean events made durable by one flush.
    pub fn events_per_flush(&self) -> f64 {
        if self.flushes == 0 {
            0.0
        } else {
            self.events as f64 / self.flushes as f64
        }
    }
}

pub(crate) struct Trees {
    db: sled::Db,
    events: sled::Tree,
    versions: sled::Tree,
    log: sled::Tree,
    snapshots: sled::Tree,
    outbox: sled::Tree,
    processed: sled::Tree,
    offsets: sled::Tree,
    unique: sled::Tree,
    meta: sled::Tree,
    quarantine: sled::Tree,
    deadlines: sled::Tree,
    wake_at: sled::Tree,
    archive: sled::Tree,
    secrets: sled::Tree,
    lists: sled::Tree,
    stats: Stats,
}

impl Trees {
    fn meta_u64(&self, key: &[u8]) -> Option<u64> {
        self.meta.get(key).ok().flatten().and_then(|v| read_u64(&v))
    }
}

struct Inner {
    trees: Arc<Trees>,
    committer: Arc<writer::Committer>,
    writer: Mutex<Option<JoinHandle<()>>>,
    outbox_watch: watch::Receiver<u64>,
    path: PathBuf,
    store_id: uuid::Uuid,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain, flush and exit.
        self.committer.close();
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

/// A handle to one service's store. Cheap to clone; the store closes when the
/// last handle is dropped (after a final flush).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

/// An appender's leadership of one group. However it ends (committed,
/// its future dropped at the yield, a panic), it steps down, and a batch it
/// had not committed yet goes to the writer thread, as if it had queued.
struct Leading<'a> {
    committer: &'a writer::Committer,
    batch: Option<AppendBatch>,
}

impl Leading<'_> {
    fn lead(&mut self) -> Result<AppendReceipt, JournalError> {
        match self.batch.take() {
            Some(batch) => self.committer.lead(batch),
            None => Err(JournalError::Closed),
        }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            // Nobody waits for this outcome any more.
            let (done, _) = oneshot::channel();
            let _ = self.committer.enqueue(writer::Request { batch, done });
        }
        self.committer.step_down();
    }
}

/// One event read from the store-wide log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// Global position.
    pub position: u64,
    /// The event's stream.
    pub stream: StreamId,
    /// The event's sequence in its stream.
    pub sequence: u64,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

impl Journal {
    /// Opens (or creates) the store. Fails with a storage error if another
    /// process holds it. Every error names the store's path
    /// ([`JournalError::Open`]).
    pub fn open(config: JournalConfig) -> Result<Self, JournalError> {
        let path = config.path.clone();
        Self::open_at(config).map_err(|source| JournalError::Open {
            path,
            source: Box::new(source),
        })
    }

    fn open_at(config: JournalConfig) -> Result<Self, JournalError> {
        let db = open_db(&config)?;
        let tree = |name: &str| db.open_tree(name);
        let trees = Arc::new(Trees {
            events: tree("events")?,
            versions: tree("versions")?,
            log: tree("log")?,
            snapshots: tree("snapshots")?,
            outbox: tree("outbox")?,
            processed: tree("processed")?,
            offsets: tree("offsets")?,
            unique: tree("unique")?,
            meta: tree("meta")?,
            quarantine: tree("quarantine")?,
            deadlines: tree("deadlines")?,
            wake_at: tree("wake_at")?,
            archive: tree("archive")?,
            secrets: tree("secrets")?,
            lists: tree("lists")?,
            stats: Stats::default(),
            db,
        });
        let store_id = store_id(&trees)?;
        let cursor = writer::Cursor {
            log_next: cursor(&trees, META_LOG_NEXT, &trees.log, "log")?,
            outbox_next: cursor(&trees, META_OUTBOX_NEXT, &trees.outbox, "outbox")?,
        };
        let head = head::DurableHead::new(&config.path);
        head.check(&cursor)?;
        let (watch_tx, watch_rx) = watch::channel(cursor.outbox_next);
        let committer = Arc::new(writer::Committer::new(
            trees.clone(),
            config.max_group,
            cursor,
            head,
            watch_tx,
        ));
        let writer = committer.clone();
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| JournalError::Storage(sled::Error::Io(e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                trees,
                committer,
                writer: Mutex::new(Some(handle)),
                outbox_watch: watch_rx,
                path: config.path,
                store_id,
            }),
        })
    }

    /// Opens a persistent store at `path` with default settings.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self, JournalError> {
        Self::open(JournalConfig::new(path.as_ref()))
    }

    /// How many handles to this store are alive (this one included); the
    /// store closes when the last is dropped.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The store's identity: a random id written when the store was created
    /// and kept for its whole life. A service derives its consumer groups'
    /// static member id from it, so a process restarted on the same store is
    /// recognised by the broker as the member that left.
    pub fn store_id(&self) -> uuid::Uuid {
        self.inner.store_id
    }

    fn trees(&self) -> &Trees {
        &self.inner.trees
    }

    /// Refuses a batch that cannot be appended at all.
    fn check_batch(batch: &AppendBatch) -> Result<(), JournalError> {
        if let Some(append) = &batch.events {
            if append.events.is_empty() {
                return Err(JournalError::InvalidBatch(
                    "an append with no events".into(),
                ));
            }
        }
        Ok(())
    }

    /// Queues `batch` for the writer thread (never leads): for callers that
    /// keep many appends in flight and wait for them later (import).
    fn enqueue(
        &self,
        batch: AppendBatch,
    ) -> Result<oneshot::Receiver<Result<AppendReceipt, JournalError>>, JournalError> {
        Self::check_batch(&batch)?;
        let (done, receipt) = oneshot::channel();
        self.inner
            .committer
            .enqueue(writer::Request { batch, done })?;
        Ok(receipt)
    }

    /// Writes `batch` in one transaction and returns once it is durable.
    ///
    /// When the journal is quiet (nothing being written or queued, and the
    /// last group a lone append), the caller commits the group itself, on
    /// its own thread (see [`writer`]): it yields once first, so
    /// that appends ready on the same executor join its group, then holds
    /// its thread for one transaction and one flush. Otherwise the batch
    /// joins the next group and the call waits for it. Once polled, the
    /// append is written even if this future is dropped.
    pub async fn append(&self, batch: AppendBatch) -> Result<AppendReceipt, JournalError> {
        Self::check_batch(&batch)?;
        let committer = &self.inner.committer;
        if committer.try_lead() {
            let mut leading = Leading {
                committer,
                batch: Some(batch),
            };
            tokio::task::yield_now().await;
            return leading.lead();
        }
        let (done, receipt) = oneshot::channel();
        committer.enqueue(writer::Request { batch, done })?;
        receipt.await.map_err(|_| JournalError::Closed)?
    }

    /// [`Journal::append`] for synchronous callers (tools, tests). Do not call
    /// from inside an async runtime.
    pub fn append_blocking(&self, batch: AppendBatch) -> Result<AppendReceipt, JournalError> {
        Self::check_batch(&batch)?;
        let committer = &self.inner.committer;
        if committer.try_lead() {
            return Leading {
                committer,
                batch: Some(batch),
            }
            .lead();
        }
        let (done, receipt) = oneshot::channel();
        committer.enqueue(writer::Request { batch, done })?;
        receipt.blocking_recv().map_err(|_| JournalError::Closed)?
    }

    /// The stream's version: its last sequence, 0 when it has no events.
    pub fn version(&self, stream: &StreamId) -> Result<u64, JournalError> {
        Ok(self
            .trees()
            .versions
            .get(stream.to_key())?
            .and_then(|v| read_u64(&v))
            .unwrap_or(0))
    }

    /// The stream's encoded events with sequence ≥ `from`, in order.
    pub fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), JournalError>> {
        let start = event_key(stream, from.max(1));
        let end = event_key(stream, u64::MAX);
        self.trees().events.range(start..=end).map(|item| {
            let (key, value) = item?;
            let (_, sequence) = split_event_key(&key).ok_or_else(|| JournalError::Corrupt {
                what: "event key".into(),
                detail: format!("{} bytes", key.len()),
            })?;
            Ok((sequence, value.to_vec()))
        })
    }

    /// Every stream in the store with its version, optionally of one kind.
    pub fn streams(
        &self,
        kind: Option<StreamKind>,
    ) -> impl Iterator<Item = Result<(StreamId, u64), JournalError>> {
        let iter = match kind {
            Some(kind) => self.trees().versions.scan_prefix([kind.tag()]),
            None => self.trees().versions.iter(),
        };
        iter.map(|item| {
            let (key, value) = item?;
            let stream = StreamId::from_key(&key).ok_or_else(|| JournalError::Corrupt {
                what: "stream key".into(),
                detail: format!("{key:?}"),
            })?;
            let version = read_u64(&value).ok_or_else(|| JournalError::Corrupt {
                what: format!("version of {stream}"),
                detail: format!("{} bytes", value.len()),
            })?;
            Ok((stream, version))
        })
    }

    /// Store-wide log entries with position ≥ `from`, in append order.
    pub fn read_log(&self, from: u64) -> impl Iterator<Item = Result<LogEntry, JournalError>> + '_ {
        self.trees()
            .log
            .range(from.to_be_bytes()..)
            .map(move |item| {
                let (key, value) = item?;
                let corrupt = |what: &str| JournalError::Corrupt {
                    what: what.into(),
                    detail: format!("log entry {key:?}"),
                };
                let position = read_u64(&key).ok_or_else(|| corrupt("log position"))?;
                let (stream, sequence) =
                    split_event_key(&value).ok_or_else(|| corrupt("log value"))?;
                let bytes = self
                    .trees()
                    .events
                    .get(value)?
                    .ok_or_else(|| corrupt("event named by the log is missing"))?;
                Ok(LogEntry {
                    position,
                    stream,
                    sequence,
                    bytes: bytes.to_vec(),
                })
            })
    }

    /// The next global log position to be written.
    pub fn log_head(&self) -> u64 {
        self.trees().meta_u64(META_LOG_NEXT).unwrap_or(1)
    }

    /// Stores a snapshot of `stream` at `sequence`. Snapshots are a cache:
    /// this write is not flushed on its own, and a lost one only means a
    /// longer replay.
    pub fn save_snapshot(
        &self,
        stream: &StreamId,
        sequence: u64,
        state: &[u8],
    ) -> Result<(), JournalError> {
        let mut value = Vec::with_capacity(8 + state.len());
        value.extend_from_slice(&sequence.to_be_bytes());
        value.extend_from_slice(state);
        self.trees().snapshots.insert(stream.to_key(), value)?;
        Ok(())
    }

    /// The latest snapshot of `stream`: its sequence and encoded state.
    pub fn load_snapshot(&self, stream: &StreamId) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        let Some(value) = self.trees().snapshots.get(stream.to_key())? else {
            return Ok(None);
        };
        let sequence = value
            .get(..8)
            .and_then(read_u64)
            .ok_or_else(|| JournalError::Corrupt {
                what: format!("snapshot of {stream}"),
                detail: "shorter than its header".into(),
            })?;
        Ok(Some((sequence, value[8..].to_vec())))
    }

    /// The encoded reply stored for `command_id`, if it was processed.
    pub fn processed_reply(&self, command_id: &CommandId) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self
            .trees()
            .processed
            .get(command_id.as_uuid().into_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Every processed command id with its stored reply, in id byte order.
    /// Read-only: for verification and crash tests, which must check that
    /// every stored reply has its events (there is no other way to list them).
    pub fn processed_commands(
        &self,
    ) -> impl Iterator<Item = Result<(CommandId, Vec<u8>), JournalError>> {
        self.trees().processed.iter().map(|item| {
            let (key, value) = item?;
            let id = uuid::Uuid::from_slice(&key).map_err(|_| JournalError::Corrupt {
                what: "processed command id".into(),
                detail: format!("{} bytes", key.len()),
            })?;
            Ok((CommandId::from_uuid(id), value.to_vec()))
        })
    }

    /// The stored consumer position for a topic partition.
    pub fn offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<ConsumedOffset>, JournalError> {
        match self.trees().offsets.get(offset_key(topic, partition))? {
            None => Ok(None),
            Some(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|e| JournalError::corrupt(format!("offset of {topic}/{partition}"), e)),
        }
    }

    /// The stream holding `value` in a uniqueness index.
    pub fn unique_holder(
        &self,
        index: &str,
        value: &str,
    ) -> Result<Option<StreamId>, JournalError> {
        Ok(self
            .trees()
            .unique
            .get(unique_key(index, value))?
            .and_then(|holder| StreamId::from_key(&holder)))
    }

    /// The writer's counters since open.
    pub fn stats(&self) -> JournalStats {
        let s = &self.trees().stats;
        JournalStats {
            flushes: s.flushes.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            flush_micros: s.flush_micros.load(Ordering::Relaxed),
        }
    }

    /// Makes every write so far durable (snapshots and outbox deletions
    /// included).
    pub fn flush(&self) -> Result<(), JournalError> {
        self.trees().db.flush()?;
        Ok(())
    }

    /// Encodes a record with the store's format (bincode with its format byte).
    pub fn encode_record<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
        encode(Format::Bincode, value).map_err(|e| JournalError::InvalidBatch(e.to_string()))
    }
}
