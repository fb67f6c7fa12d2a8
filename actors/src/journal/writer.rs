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
use super::records::{AppendBatch, AppendReceipt};
use super::transaction::commit_group;
use super::Trees;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use tokio::sync::{oneshot, watch};

/// One queued append and where to send its outcome.
pub(crate) struct Request {
    pub batch: AppendBatch,
    pub done: oneshot::Sender<Result<AppendReceipt, JournalError>>,
}

/// The outcome of one append, sent back to its caller.
pub(crate) type Outcome = Result<AppendReceipt, JournalError>;

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
