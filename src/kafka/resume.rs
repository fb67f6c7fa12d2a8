//! Resuming a partition at a stored position, even inside a record batch,
//! and reading again what a broker left out of a partition.
//!
//! A consumer that stores its own positions (a service's command consumer,
//! the gateway's projector) resumes each partition at the offset it stored,
//! and that offset can fall inside a batch the producer sent. Kafka answers
//! a fetch from inside a batch with the whole batch, and the client drops
//! the records before the offset. Tansu 0.6's memory storage answers it
//! with the *next* batch, so the rest of that batch would never be
//! delivered: commands never run, events never projected.
//!
//! So a partition resumes a little early, at up to [`EARLY`] records before
//! its position, and the records before the position are skipped (they
//! are done: the position is a low-water mark). The first record to arrive
//! tells whether the broker served the position: at or before it, all is
//! well; after it, records were left out, and the partition is sought back
//! twice as far, until a record at or before the position arrives or the
//! partition is read from its start. A later offset after that is then a
//! real gap (compaction, transaction markers) and is delivered. A first
//! record before where the partition was sought means the broker found the
//! offset out of range and the consumer's reset policy moved it: what
//! arrives then is handled as it comes.
//!
//! What this cannot see: a position inside the *last* batch of a partition
//! more than [`EARLY`] records long, on such a broker. Nothing arrives to
//! show the gap until the next record is written there; then the rewind
//! finds the rest.
//!
//! After the resume, and in partitions that were not resumed, every record
//! must come right after the one before it: ordersaga's topics are neither
//! compacted nor written in transactions, so their offsets have no holes.
//! Tansu 0.6 was seen to leave out a whole batch in the middle of a busy
//! partition (a saga bench on Tansu: eleven replies with one timestamp,
//! offsets 6429–6439 of one partition, never reached the saga, which
//! resent its commands ten seconds later; the records were in the topic).
//! So a record that comes after a hole is dropped and the partition is
//! sought back to the first offset missing, once. If the first record read
//! from there is again past the hole, nothing is there (a topic written by
//! a transactional producer has such holes: its commit markers), and it is
//! delivered.

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::Offset;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How many records before its stored position a partition resumes.
pub const EARLY: i64 = 64;

/// A topic partition.
type Partition = (String, i32);

/// What to do with a record just received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Deliver,
    /// Before the stored position: done already, drop it.
    Skip,
    /// Records between the position and this one were left out: drop it
    /// and seek the partition to this offset.
    Rewind(i64),
    /// Records between the last one handled and this one were left out:
    /// drop it and read the partition again from this offset, the first
    /// one missing.
    Reread(i64),
}

/// A partition resumed at a stored position, until a record at or past the
/// position has been handled.
#[derive(Clone, Copy, Debug)]
struct Resume {
    /// The stored position: the next offset to handle.
    position: i64,
    /// Where the partition was sought to.
    from: i64,
    /// Whether a record at or before `position` has arrived since that
    /// seek: the records from there on come in order, gaps being real.
    served: bool,
}

/// Where a partition's next record should be.
#[derive(Clone, Copy, Debug)]
struct Next {
    /// The offset after the last record handled or skipped.
    offset: i64,
    /// The partition was sought back to `offset` after a hole: the next
    /// record decides whether the hole is real.
    reread: bool,
}

/// What one consumer knows of its partitions' positions.
#[derive(Debug, Default)]
struct Positions {
    /// Partitions still checking their resume point.
    pending: HashMap<Partition, Resume>,
    /// By topic and partition, where the next record should be. Keyed by
    /// topic first so that a record's check allocates nothing.
    next: HashMap<String, HashMap<i32, Next>>,
}

/// The partitions of one consumer: their resume points, and where each
/// partition's next record should be.
#[derive(Debug, Default)]
pub struct ResumePoints {
    positions: Mutex<Positions>,
}

impl ResumePoints {
    /// Records that `partition` of `topic` resumes at `position`; returns
    /// the offset to seek it to ([`EARLY`] records before, or 0).
    pub fn start_at(&self, topic: &str, partition: i32, position: i64) -> i64 {
        let from = position.saturating_sub(EARLY).max(0);
        let resume = Resume {
            position,
            from,
            served: false,
        };
        if let Ok(mut positions) = self.positions.lock() {
            positions
                .pending
                .insert((topic.to_string(), partition), resume);
            if let Some(partitions) = positions.next.get_mut(topic) {
                partitions.remove(&partition);
            }
        }
        from
    }

    /// Forgets every partition: they were taken away.
    pub fn clear(&self) {
        if let Ok(mut positions) = self.positions.lock() {
            positions.pending.clear();
            positions.next.clear();
        }
    }

    /// What to do with the record at `offset` of `partition` of `topic`
    /// (see the module docs).
    pub fn check(&self, topic: &str, partition: i32, offset: i64) -> Verdict {
        let Ok(mut positions) = self.positions.lock() else {
            return Verdict::Deliver;
        };
        let verdict = if positions.pending.is_empty() {
            None
        } else {
            Self::check_resume(&mut positions.pending, topic, partition, offset)
        };
        let verdict =
            verdict.unwrap_or_else(|| Self::check_next(&positions, topic, partition, offset));
        let next = match verdict {
            Verdict::Deliver | Verdict::Skip => Some(Next {
                offset: offset + 1,
                reread: false,
            }),
            Verdict::Reread(from) => Some(Next {
                offset: from,
                reread: true,
            }),
            Verdict::Rewind(_) => None,
        };
        if let Some(next) = next {
            match positions.next.get_mut(topic) {
                Some(partitions) => {
                    partitions.insert(partition, next);
                }
                None => {
                    positions
                        .next
                        .insert(topic.to_string(), HashMap::from([(partition, next)]));
                }
            }
        }
        verdict
    }

    /// The verdict of a partition that is not checking a resume point: in
    /// order, past a hole (read again once), or before where it should be
    /// (the consumer's reset policy moved it: handled as it comes).
    fn check_next(positions: &Positions, topic: &str, partition: i32, offset: i64) -> Verdict {
        let next = positions
            .next
            .get(topic)
            .and_then(|partitions| partitions.get(&partition));
        match next {
            Some(next) if offset > next.offset && !next.reread => Verdict::Reread(next.offset),
            _ => Verdict::Deliver,
        }
    }

    /// The verdict of a partition checking its resume point, `None` if it
    /// is not.
    fn check_resume(
        pending: &mut HashMap<Partition, Resume>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<Verdict> {
        let key = (topic.to_string(), partition);
        let resume = pending.get_mut(&key)?;
        if offset < resume.from {
            // Not where it was sought: the offset was out of range (the
            // topic was recreated, say) and the consumer's reset policy
            // moved it. What arrives is not known to be done.
            pending.remove(&key);
            return Some(Verdict::Deliver);
        }
        if offset < resume.position {
            resume.served = true;
            return Some(Verdict::Skip);
        }
        if offset == resume.position || resume.served || resume.from == 0 {
            // At the position, past a record before it, or read from the
            // partition's start: whatever follows is in order.
            pending.remove(&key);
            return Some(Verdict::Deliver);
        }
        // The first record came after the position: the broker left some
        // out. Seek back twice as far as the last time.
        let distance = (resume.position - resume.from).max(1);
        resume.from = resume.position.saturating_sub(distance * 2).max(0);
        Some(Verdict::Rewind(resume.from))
    }

    /// Whether `consumer` (of `who`) handles the record at `offset` of
    /// `partition` of `topic`: [`ResumePoints::check`], with the seek of a
    /// [`Verdict::Rewind`] or [`Verdict::Reread`] made here, after
    /// `rewound` (to count it).
    pub fn admit<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        who: &str,
        (topic, partition, offset): (&str, i32, i64),
        rewound: impl FnOnce(),
    ) -> bool {
        let (to, why) = match self.check(topic, partition, offset) {
            Verdict::Deliver => return true,
            Verdict::Skip => return false,
            Verdict::Rewind(to) => (
                to,
                "the broker left out records after the stored offset (resumed inside a batch?); reading again from earlier",
            ),
            Verdict::Reread(to) => (
                to,
                "the broker left out records inside the partition; reading them again",
            ),
        };
        rewound();
        tracing::warn!(who, topic, partition, to, before = offset, "{why}");
        seek_back(consumer, who, topic, partition, to);
        false
    }
}

/// Seeks `partition` of `topic` back to `to` after a [`Verdict::Rewind`]
/// or a [`Verdict::Reread`], for `who` (the service or the gateway). The
/// seek does not wait: librdkafka drops what it had fetched before it.
fn seek_back<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    who: &str,
    topic: &str,
    partition: i32,
    to: i64,
) {
    if let Err(err) = consumer.seek(topic, partition, Offset::Offset(to), Duration::ZERO) {
        tracing::error!(who, topic, partition, to, cause = %err, "cannot seek back; the records left out stay unread until a restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "commands";

    #[test]
    fn a_partition_resumes_early_and_skips_what_was_done() {
        // Given a partition stored at 100,
        let points = ResumePoints::default();
        // when it resumes,
        let from = points.start_at(T, 0, 100);
        // then it is sought to EARLY records before, those are skipped, and
        // the position and what follows are handled.
        assert_eq!(from, 100 - EARLY);
        assert_eq!(points.check(T, 0, from), Verdict::Skip);
        assert_eq!(points.check(T, 0, 99), Verdict::Skip);
        assert_eq!(points.check(T, 0, 100), Verdict::Deliver);
        assert_eq!(points.check(T, 0, 101), Verdict::Deliver);
    }

    #[test]
    fn near_the_start_it_resumes_from_zero() {
        let points = ResumePoints::default();
        assert_eq!(points.start_at(T, 0, 3), 0);
        assert_eq!(points.check(T, 0, 0), Verdict::Skip);
        assert_eq!(points.check(T, 0, 3), Verdict::Deliver);
    }

    #[test]
    fn records_left_out_are_sought_back_twice_as_far_each_time() {
        // Given a partition stored at 1,000, inside a long batch that a
        // broker answers with the next batch,
        let points = ResumePoints::default();
        let from = points.start_at(T, 2, 1_000);
        // when the first record is past the position,
        let verdict = points.check(T, 2, 1_200);
        // then it is dropped and the partition sought back twice as far,
        assert_eq!(verdict, Verdict::Rewind(1_000 - 2 * EARLY));
        assert_eq!(from, 1_000 - EARLY);
        assert_eq!(
            points.check(T, 2, 1_200),
            Verdict::Rewind(1_000 - 4 * EARLY)
        );
        // and once a record before the position arrives, the rest is
        // handled in order from the position.
        assert_eq!(points.check(T, 2, 800), Verdict::Skip);
        assert_eq!(points.check(T, 2, 999), Verdict::Skip);
        assert_eq!(points.check(T, 2, 1_000), Verdict::Deliver);
        assert_eq!(points.check(T, 2, 1_001), Verdict::Deliver);
    }

    #[test]
    fn a_real_gap_after_the_position_is_delivered() {
        // Given a partition read from its start (its position was near it),
        let points = ResumePoints::default();
        points.start_at(T, 0, 10);
        // when the first record comes after the position (compaction took
        // the ones before), it is delivered: nothing earlier exists.
        assert_eq!(points.check(T, 0, 40), Verdict::Deliver);
        // A gap after a record before the position is real too.
        points.start_at(T, 1, 500);
        assert_eq!(points.check(T, 1, 450), Verdict::Skip);
        assert_eq!(points.check(T, 1, 520), Verdict::Deliver);
    }

    #[test]
    fn a_partition_reset_below_where_it_was_sought_is_read_as_it_comes() {
        // Given a partition stored at 1,000 and sought to 936,
        let points = ResumePoints::default();
        points.start_at(T, 0, 1_000);
        // when the first record is before that (the consumer's reset policy
        // moved it: the offset was out of range), then it and what follows
        // are handled.
        assert_eq!(points.check(T, 0, 0), Verdict::Deliver);
        assert_eq!(points.check(T, 0, 1), Verdict::Deliver);
    }

    #[test]
    fn a_record_after_a_hole_is_dropped_and_the_partition_read_again_from_the_hole() {
        // Given a partition whose records 0 to 9 were handled,
        let points = ResumePoints::default();
        for offset in 0..10 {
            assert_eq!(points.check(T, 0, offset), Verdict::Deliver);
        }
        // when record 12 comes next (the broker left out 10 and 11),
        // then it is dropped and the partition read again from 10,
        assert_eq!(points.check(T, 0, 12), Verdict::Reread(10));
        // and what comes from there is handled in order.
        for offset in 10..14 {
            assert_eq!(points.check(T, 0, offset), Verdict::Deliver);
        }
    }

    #[test]
    fn a_hole_still_there_when_read_again_is_real_and_delivered() {
        // Given a partition read up to 1 whose next record is 5,
        let points = ResumePoints::default();
        points.check(T, 0, 0);
        points.check(T, 0, 1);
        assert_eq!(points.check(T, 0, 5), Verdict::Reread(2));
        // when the first record read again from 2 is 5 again (a commit
        // marker of a transactional producer, say, holds 2 to 4),
        // then it is delivered, and so is what follows.
        assert_eq!(points.check(T, 0, 5), Verdict::Deliver);
        assert_eq!(points.check(T, 0, 6), Verdict::Deliver);
        // A later hole is read again once more.
        assert_eq!(points.check(T, 0, 9), Verdict::Reread(7));
    }

    #[test]
    fn after_its_resume_a_partition_is_checked_for_holes() {
        // Given a partition resumed at 100 and read from its position,
        let points = ResumePoints::default();
        let from = points.start_at(T, 0, 100);
        assert_eq!(points.check(T, 0, from), Verdict::Skip);
        assert_eq!(points.check(T, 0, 100), Verdict::Deliver);
        assert_eq!(points.check(T, 0, 101), Verdict::Deliver);
        // when a record comes after a hole, then it is read again.
        assert_eq!(points.check(T, 0, 104), Verdict::Reread(102));
    }

    #[test]
    fn a_partition_moved_back_by_the_broker_is_read_as_it_comes() {
        // Given a partition read up to 5,
        let points = ResumePoints::default();
        for offset in 0..6 {
            points.check(T, 0, offset);
        }
        // when its records start again from 0 (the topic was recreated and
        // the reset policy moved the consumer), then they are handled.
        assert_eq!(points.check(T, 0, 0), Verdict::Deliver);
        assert_eq!(points.check(T, 0, 1), Verdict::Deliver);
    }

    #[test]
    fn a_resume_or_a_revocation_forgets_where_the_next_record_was_expected() {
        // Given partitions read up to 3,
        let points = ResumePoints::default();
        for offset in 0..4 {
            points.check(T, 0, offset);
            points.check(T, 1, offset);
        }
        // when partition 0 resumes at 100, then its old place does not count,
        let from = points.start_at(T, 0, 100);
        assert_eq!(points.check(T, 0, from), Verdict::Skip);
        assert_eq!(points.check(T, 0, 100), Verdict::Deliver);
        // and when the partitions are taken away and come back further on,
        // the first record is handled as it comes.
        points.clear();
        assert_eq!(points.check(T, 1, 50), Verdict::Deliver);
    }

    #[test]
    fn partitions_are_checked_apart_and_forgotten_when_taken_away() {
        let points = ResumePoints::default();
        points.start_at(T, 0, 100);
        points.start_at("events", 0, 100);
        assert_eq!(points.check(T, 0, 100), Verdict::Deliver);
        assert_eq!(points.check("events", 0, 50), Verdict::Skip);
        assert_eq!(points.check(T, 1, 5), Verdict::Deliver, "never resumed");
        points.clear();
        assert_eq!(points.check("events", 0, 50), Verdict::Deliver);
    }
}
