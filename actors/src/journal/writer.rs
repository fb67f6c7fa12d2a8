//! Group commit, led by whoever finds the journal idle (leader/follower):
//! every append queued while a group is being written is committed in the
//! next group's single sled transaction and made durable by its single
//! flush before any of it is acknowledged.
//!
//! Who writes a group: an appender that finds nobody writing and nothing
//! queued becomes the leader and commits on its own thread, so a lone
//! append pays no thread hand-off (measured: ~15-25 % of a lone append when
//! it woke a writer thread and waited to be woken back). An async leader
//! first yields once, so that appenders ready on the same executor thread
//! (an actix arbiter runs every entity of a service) queue behind it and
//! join its group. Appenders that arrive while a group is being written
//! queue up; when the leader is done it hands what queued to the journal's
//! writer thread, which keeps committing groups while there are any. So an
//! appender's thread is held for at most one group, its own, and under load
//! the writer thread does the work as before: positions in the global log
//! and the outbox are assigned by one writer at a time, in commit order.
//!
//! Why one transaction per group: a sled transaction over the journal's trees
//! has a fixed cost (building the overlays, taking sled's global write lock,
//! pinning the log, which seals the log buffer and costs its own write to
//! the file) that dwarfs the few keys one append writes, so paying it once
//! per group instead of once per append is what lets the writer keep up with
//! the flushes it shares.
//!
//! Each batch still stands alone: inside the group transaction a batch runs
//! all of its checks (command id, expected version, uniqueness claims) before
//! it writes anything, so a refused batch writes nothing and gets its own
//! error while the rest of the group commits. sled's transactional trees read
//! their own writes, so those checks see the batches before it in the group
//! exactly as if they had committed on their own.

use super::error::JournalError;
use super::head::DurableHead;
use super::keys::{event_key, offset_key, read_u64, stream_item_key, unique_key};
use super::records::{AppendBatch, AppendReceipt, ConsumedOffset, Schedule};
use super::schedule::{deadline_key, time_key};
use super::{Trees, META_LOG_NEXT, META_OUTBOX_NEXT};
use crate::aggregate::UniqueChange;
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::StreamId;
use sled::transaction::{
    TransactionError, TransactionResult, Transactional, TransactionalTree,
    UnabortableTransactionError,
};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use tokio::sync::{oneshot, watch};

/// One queued append and where to send its outcome.
pub(crate) struct Request {
    pub batch: AppendBatch,
    pub done: oneshot::Sender<Result<AppendReceipt, JournalError>>,
}

/// The outcome of one append, sent back to its caller.
type Outcome = Result<AppendReceipt, JournalError>;

/// Counters the writer keeps in memory; the store holds the same values.
/// The next global log and outbox positions, checked when the store opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub log_next: u64,
    pub outbox_next: u64,
}

/// The appends waiting for a group, and who is writing one.
struct Queue {
    requests: Vec<Request>,
    /// A leader (an appender or the writer thread) is writing a group.
    leading: bool,
    /// The journal is closing: the writer thread drains the queue and exits.
    closed: bool,
}

/// What only the leader of the moment touches.
struct Leader {
    cursor: Cursor,
    /// The cursor last written to the durable head.
    recorded: Cursor,
    head: DurableHead,
    outbox_watch: watch::Sender<u64>,
}

/// The journal's group commit, shared by its appenders and its writer
/// thread.
pub(crate) struct Committer {
    trees: Arc<Trees>,
    max_group: usize,
    queue: Mutex<Queue>,
    /// Wakes the writer thread: requests to commit and nobody leading, or
    /// closing.
    wake: Condvar,
    /// Held while a group is written; only whoever set `leading` locks it,
    /// so it is never contended.
    leader: Mutex<Leader>,
    /// The last group held one append: appends are not arriving
    /// concurrently, so the next one may lead on its own thread.
    lone: AtomicBool,
}

impl Committer {
    pub(crate) fn new(
        trees: Arc<Trees>,
        max_group: usize,
        cursor: Cursor,
        head: DurableHead,
        outbox_watch: watch::Sender<u64>,
    ) -> Self {
        Self {
            trees,
            max_group: max_group.max(1),
            queue: Mutex::new(Queue {
                requests: Vec::new(),
                leading: false,
                closed: false,
            }),
            wake: Condvar::new(),
            leader: Mutex::new(Leader {
                cursor,
                recorded: cursor,
                head,
                outbox_watch,
            }),
            lone: AtomicBool::new(true),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing that can panic runs under this lock.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `request` for the next group; the current leader or the writer
    /// thread will commit it.
    pub(crate) fn enqueue(&self, request: Request) -> Result<(), JournalError> {
        let mut queue = self.queue();
        if queue.closed {
            return Err(JournalError::Closed);
        }
        queue.requests.push(request);
        if !queue.leading {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Becomes the leader if nobody is writing, nothing is queued and the
    /// last group was a lone append. The caller must then
    /// [`Committer::lead`] and [`Committer::step_down`].
    ///
    /// After a group of several appends, appends are arriving concurrently:
    /// the next ones go to the writer thread, as they would queue behind a
    /// leader anyway, and no appender's thread is held for a flush while
    /// others keep it busy. A group of one (the writer thread's too) lets
    /// the next append lead again.
    pub(crate) fn try_lead(&self) -> bool {
        let mut queue = self.queue();
        if queue.closed
            || queue.leading
            || !queue.requests.is_empty()
            || !self.lone.load(Ordering::Relaxed)
        {
            return false;
        }
        queue.leading = true;
        true
    }

    /// As the leader: commits `batch` with whatever queued behind it (up to
    /// the group limit) and returns `batch`'s outcome once it is durable.
    pub(crate) fn lead(&self, batch: AppendBatch) -> Outcome {
        let (done, mut receipt) = oneshot::channel();
        let mut group = Vec::with_capacity(1);
        group.push(Request { batch, done });
        {
            let mut queue = self.queue();
            let take = queue.requests.len().min(self.max_group - 1);
            group.extend(queue.requests.drain(..take));
        }
        self.commit(group);
        receipt.try_recv().unwrap_or(Err(JournalError::Closed))
    }

    /// Ends a leadership: what queued meanwhile goes to the writer thread.
    pub(crate) fn step_down(&self) {
        let mut queue = self.queue();
        queue.leading = false;
        if !queue.requests.is_empty() || queue.closed {
            self.wake.notify_one();
        }
    }

    /// Closes the queue: the writer thread commits what is queued, flushes
    /// and exits.
    pub(crate) fn close(&self) {
        self.queue().closed = true;
        self.wake.notify_one();
    }

    /// The writer thread: commits groups while requests queue up and no
    /// appender leads; sleeps on the condition variable otherwise.
    pub(crate) fn run(&self) {
        /// Should the writer thread die, appends fail with `Closed` instead
        /// of waiting for it forever.
        struct Dying<'a>(&'a Committer);
        impl Drop for Dying<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut queue = self.0.queue();
                    queue.closed = true;
                    queue.leading = false;
                    queue.requests.clear();
                }
            }
        }
        let _dying = Dying(self);
        loop {
            let group: Vec<Request> = {
                let mut queue = self.queue();
                loop {
                    if !queue.leading && !queue.requests.is_empty() {
                        break;
                    }
                    if queue.closed && !queue.leading && queue.requests.is_empty() {
                        drop(queue);
                        if let Err(err) = self.trees.db.flush() {
                            tracing::error!(cause = %err, "final journal flush failed");
                        }
                        return;
                    }
                    queue = self
                        .wake
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                queue.leading = true;
                let take = queue.requests.len().min(self.max_group);
                queue.requests.drain(..take).collect()
            };
            self.commit(group);
            self.queue().leading = false;
        }
    }

    /// Commits `group` in one transaction, makes it durable with one flush
    /// and sends every request its outcome. Only the leader calls this.
    fn commit(&self, group: Vec<Request>) {
        let Ok(mut leader) = self.leader.lock() else {
            // A leader panicked inside sled: nothing more is written (the
            // requests' channels close, and their callers get `Closed`).
            return;
        };
        let Leader {
            cursor,
            recorded,
            head,
            outbox_watch,
        } = &mut *leader;
        let trees = &*self.trees;
        self.lone.store(group.len() == 1, Ordering::Relaxed);
        let mut outcomes = commit_group(trees, cursor, &group);
        let mut wrote = 0u64;
        let mut events = 0u64;
        for (request, outcome) in group.iter().zip(&outcomes) {
            if outcome.is_ok() {
                wrote += 1;
                events += request
                    .batch
                    .events
                    .as_ref()
                    .map_or(0, |e| e.events.len() as u64);
            }
        }
        if wrote > 0 {
            // Nothing is acknowledged before it is on disk.
            let flushing = std::time::Instant::now();
            let flushed = trees.db.flush();
            trees.stats.flush_micros.fetch_add(
                u64::try_from(flushing.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            if let Err(err) = flushed {
                tracing::error!(cause = %err, "journal flush failed");
                let message = err.to_string();
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(JournalError::Storage(sled::Error::Io(
                        std::io::Error::other(message.clone()),
                    )));
                }
            } else {
                trees.stats.flushes.fetch_add(1, Ordering::Relaxed);
                trees.stats.commits.fetch_add(wrote, Ordering::Relaxed);
                trees.stats.events.fetch_add(events, Ordering::Relaxed);
                outbox_watch.send_replace(cursor.outbox_next);
                if cursor != recorded {
                    head.record(cursor);
                    *recorded = *cursor;
                }
            }
        }
        for (request, outcome) in group.into_iter().zip(outcomes) {
            // The caller may have given up waiting; the write stands regardless.
            let _ = request.done.send(outcome);
        }
    }
}

/// Commits `group` in one sled transaction and returns one outcome per
/// request, in order. `cursor` moves only if the transaction committed; if it
/// fails with a storage error, every request gets that error.
fn commit_group(trees: &Trees, cursor: &mut Cursor, group: &[Request]) -> Vec<Outcome> {
    // Encoding happens before the transaction: its closure runs under sled's
    // global write lock and may run more than once. A batch that does not
    // encode keeps only its error message, because errors are not `Clone`
    // and each run of the closure must produce its own outcomes.
    let prepared: Vec<Result<Prepared<'_>, String>> = group
        .iter()
        .map(|request| Prepared::new(&request.batch))
        .collect();

    // The closure never aborts (`Infallible`): a refused batch is one
    // outcome among the group's, not a reason to drop the others.
    let result: TransactionResult<(Vec<Outcome>, Cursor), Infallible> = (
        &trees.events,
        &trees.versions,
        &trees.log,
        &trees.outbox,
        &trees.processed,
        &trees.offsets,
        &trees.unique,
        &trees.meta,
        &trees.deadlines,
        &trees.wake_at,
        &trees.archive,
        &trees.secrets,
        &trees.lists,
    )
        .transaction(
            |(
                events,
                versions,
                log,
                outbox,
                processed,
                offsets,
                unique,
                meta,
                deadlines,
                wake_at,
                archive,
                secrets,
                lists,
            )| {
                let tx = Tx {
                    events,
                    versions,
                    log,
                    outbox,
                    processed,
                    offsets,
                    unique,
                    deadlines,
                    wake_at,
                    archive,
                    secrets,
                    lists,
                };
                // sled may run this closure again after a conflict: the
                // outcomes and positions start afresh from the committed
                // cursor on every run, so nothing leaks between runs.
                let mut next = *cursor;
                let mut outcomes = Vec::with_capacity(prepared.len());
                for batch in &prepared {
                    let outcome = match batch {
                        Err(message) => Err(JournalError::InvalidBatch(message.clone())),
                        Ok(batch) => match tx.check(batch) {
                            Ok(()) => Ok(tx.write(batch, &mut next)?),
                            Err(CheckError::Refused(err)) => Err(err),
                            Err(CheckError::Tx(err)) => return Err(err.into()),
                        },
                    };
                    outcomes.push(outcome);
                }
                if next.log_next != cursor.log_next {
                    meta.insert(META_LOG_NEXT, &next.log_next.to_be_bytes())?;
                }
                if next.outbox_next != cursor.outbox_next {
                    meta.insert(META_OUTBOX_NEXT, &next.outbox_next.to_be_bytes())?;
                }
                Ok((outcomes, next))
            },
        );
    match result {
        Ok((outcomes, next)) => {
            *cursor = next;
            outcomes
        }
        Err(TransactionError::Storage(err)) => group
            .iter()
            .map(|_| Err(JournalError::Storage(err.clone())))
            .collect(),
        Err(TransactionError::Abort(never)) => match never {},
    }
}

/// A batch with its records encoded, ready for the group transaction.
struct Prepared<'a> {
    batch: &'a AppendBatch,
    /// The encoded outbox records, in order.
    outbox: Vec<Vec<u8>>,
    /// The consumed offset with its `offsets` key and encoded value.
    offset: Option<(&'a ConsumedOffset, Vec<u8>, Vec<u8>)>,
}

impl<'a> Prepared<'a> {
    /// Encodes `batch`'s records; the error is an `InvalidBatch` message.
    fn new(batch: &'a AppendBatch) -> Result<Self, String> {
        let outbox = batch
            .outbox
            .iter()
            .map(|record| record.to_row())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let offset = match &batch.offset {
            Some(offset) => Some((
                offset,
                offset_key(&offset.topic, offset.partition),
                encode(Format::Bincode, offset).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        Ok(Self {
            batch,
            outbox,
            offset,
        })
    }
}

/// Why a batch's checks stopped.
enum CheckError {
    /// The batch is refused with this error; the rest of the group goes on.
    Refused(JournalError),
    /// sled must stop (and possibly rerun) the whole transaction.
    Tx(UnabortableTransactionError),
}

impl From<UnabortableTransactionError> for CheckError {
    fn from(err: UnabortableTransactionError) -> Self {
        CheckError::Tx(err)
    }
}

/// The group transaction's view of the trees a batch touches (`meta` is
/// written once per group, by [`commit_group`]).
struct Tx<'t> {
    events: &'t TransactionalTree,
    versions: &'t TransactionalTree,
    log: &'t TransactionalTree,
    outbox: &'t TransactionalTree,
    processed: &'t TransactionalTree,
    offsets: &'t TransactionalTree,
    unique: &'t TransactionalTree,
    deadlines: &'t TransactionalTree,
    wake_at: &'t TransactionalTree,
    archive: &'t TransactionalTree,
    secrets: &'t TransactionalTree,
    lists: &'t TransactionalTree,
}

impl Tx<'_> {
    /// Moves `schedule.stream` in the deadline index to its new wake-up
    /// time (or out of it).
    fn reschedule(&self, schedule: &Schedule) -> Result<(), UnabortableTransactionError> {
        let stream = schedule.stream.to_key();
        if let Some(old) = self.wake_at.remove(&stream)? {
            let mut key = old.to_vec();
            key.extend_from_slice(&stream);
            self.deadlines.remove(key)?;
        }
        if let Some(millis) = schedule.wake_at {
            self.deadlines
                .insert(deadline_key(millis, &schedule.stream), &[][..])?;
            self.wake_at.insert(&stream, &time_key(millis)[..])?;
        }
        Ok(())
    }

    /// Every check that can refuse `batch`, without writing anything. Reads
    /// see the writes of earlier batches in the group.
    fn check(&self, prepared: &Prepared<'_>) -> Result<(), CheckError> {
        let batch = prepared.batch;
        if let Some((command_id, _)) = &batch.processed {
            if let Some(previous) = self.processed.get(command_id.as_uuid().into_bytes())? {
                return Err(CheckError::Refused(JournalError::DuplicateCommand {
                    reply: previous.to_vec(),
                }));
            }
        }
        let Some(append) = &batch.events else {
            return Ok(());
        };
        let holder = append.stream.to_key();
        let actual = self
            .versions
            .get(holder)?
            .and_then(|v| read_u64(&v))
            .unwrap_or(0);
        if actual != append.expected_version {
            return Err(CheckError::Refused(JournalError::Conflict {
                stream: append.stream,
                expected: append.expected_version,
                actual,
            }));
        }
        // Every claim is checked against the store as it is before this
        // batch. That is what applying the changes one by one would decide:
        // they all belong to one stream, and neither a claim nor a release by
        // this stream changes whether *another* stream holds a key.
        for change in &append.unique {
            if let UniqueChange::Claim { index, key } = change {
                if let Some(current) = self.unique.get(unique_key(index, key))? {
                    if current.as_ref() != holder.as_slice() {
                        return Err(CheckError::Refused(JournalError::UniqueViolation {
                            index: index.to_string(),
                            key: key.clone(),
                            holder: StreamId::from_key(&current).unwrap_or(append.stream),
                        }));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes a batch that passed [`Tx::check`], at the positions `next`
    /// points to, and moves `next` past them.
    fn write(
        &self,
        prepared: &Prepared<'_>,
        next: &mut Cursor,
    ) -> Result<AppendReceipt, UnabortableTransactionError> {
        let batch = prepared.batch;
        let log_start = next.log_next;
        let outbox_start = next.outbox_next;
        if let Some((command_id, reply)) = &batch.processed {
            self.processed
                .insert(&command_id.as_uuid().into_bytes(), reply.as_slice())?;
        }
        if let Some(append) = &batch.events {
            let holder = append.stream.to_key();
            for change in &append.unique {
                self.apply_unique(&holder, change)?;
            }
            for (i, bytes) in append.events.iter().enumerate() {
                let sequence = append.expected_version + 1 + i as u64;
                let key = event_key(&append.stream, sequence);
                self.events.insert(&key, bytes.as_slice())?;
                self.log.insert(&next.log_next.to_be_bytes(), &key)?;
                next.log_next += 1;
            }
            let version = append.expected_version + append.events.len() as u64;
            self.versions.insert(&holder, &version.to_be_bytes())?;
            for (item, sequence) in &batch.archive {
                self.archive.insert(
                    stream_item_key(&append.stream, item),
                    &sequence.to_be_bytes(),
                )?;
            }
            for entry in &batch.lists {
                self.lists.insert(entry.as_slice(), &[][..])?;
            }
            for (name, value) in &batch.secrets {
                let key = stream_item_key(&append.stream, name);
                match value {
                    Some(value) => self.secrets.insert(key, value.as_slice())?,
                    None => self.secrets.remove(key)?,
                };
            }
        }
        for bytes in &prepared.outbox {
            self.outbox
                .insert(&next.outbox_next.to_be_bytes(), bytes.as_slice())?;
            next.outbox_next += 1;
        }
        if let Some(schedule) = &batch.schedule {
            self.reschedule(schedule)?;
        }
        if let Some((offset, key, value)) = &prepared.offset {
            // Commands finish out of order across aggregates, so a position
            // may arrive after a later one: never go back (on the same
            // cluster). An unreadable stored offset is replaced.
            let newer = match self.offsets.get(key.as_slice())? {
                Some(stored) => match decode::<ConsumedOffset>(&stored) {
                    Ok(stored) => {
                        stored.cluster_id != offset.cluster_id
                            || stored.next_offset < offset.next_offset
                    }
                    Err(_) => true,
                },
                None => true,
            };
            if newer {
                self.offsets.insert(key.as_slice(), value.as_slice())?;
            }
        }
        Ok(AppendReceipt {
            log_positions: log_start..next.log_next,
            outbox_positions: outbox_start..next.outbox_next,
        })
    }

    /// Applies one uniqueness change of the stream keyed `holder`; its claims
    /// were already checked.
    fn apply_unique(
        &self,
        holder: &[u8],
        change: &UniqueChange,
    ) -> Result<(), UnabortableTransactionError> {
        match change {
            UniqueChange::Claim { index, key } => {
                self.unique.insert(unique_key(index, key), holder)?;
            }
            UniqueChange::Release { index, key } => {
                // Only the holder frees a key (this may be a claim made
                // earlier in the same batch or group).
                let k = unique_key(index, key);
                if self.unique.get(&k)?.is_some_and(|h| h.as_ref() == holder) {
                    self.unique.remove(k)?;
                }
            }
        }
        Ok(())
    }
}
