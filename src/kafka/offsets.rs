//! Where a consumer resumes, and what it owns.
//!
//! The journal is the source of truth for consumed positions: on every
//! assignment [`JournalOffsets`] seeks each partition to the offset stored
//! with the last durable effects (when that offset was issued by this
//! cluster). Commands finish out of order, so the offset stored with a
//! command is the partition's low-water mark ([`InFlight`]): the oldest
//! offset still in flight, so nothing unfinished is ever skipped.

use super::liveness::Ownership;
use super::resume::ResumePoints;
use ordersaga_actors::Journal;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};

/// The consumer's rdkafka context: on every assignment it seeks each
/// partition to the offset stored in the journal (when that offset was issued
/// by this cluster), and records what the consumer owns for readiness.
pub struct JournalOffsets {
    /// Taken away when the consumer closes, so that a close left waiting
    /// for an unreachable broker does not keep the store open.
    journal: std::sync::Mutex<Option<Journal>>,
    cluster_id: String,
    service: &'static str,
    ownership: Ownership,
    /// The partitions resumed at a stored offset, checked on their first
    /// records by the consumer loop (see `resume.rs`).
    pub(crate) resume: ResumePoints,
}

impl JournalOffsets {
    /// A context reading offsets from `journal`, valid for `cluster_id`, and
    /// recording assignments in `ownership`.
    pub fn new(
        journal: Journal,
        cluster_id: String,
        service: &'static str,
        ownership: Ownership,
    ) -> Self {
        Self {
            journal: std::sync::Mutex::new(Some(journal)),
            cluster_id,
            service,
            ownership,
            resume: ResumePoints::default(),
        }
    }

    fn journal(&self) -> Option<Journal> {
        self.journal.lock().ok().and_then(|j| j.clone())
    }

    /// The physical topic this consumer reads.
    pub(crate) fn topic(&self) -> &str {
        &self.ownership.topic
    }

    /// Lets go of the store: the consumer is closing.
    pub(crate) fn release(&self) {
        if let Ok(mut journal) = self.journal.lock() {
            journal.take();
        }
    }
}

impl ClientContext for JournalOffsets {
    /// Records each partition's lag (high watermark minus the consumer's
    /// position) from librdkafka's periodic statistics. Partitions this
    /// consumer does not fetch report no lag and are skipped.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag = &crate::metrics::metrics().consumer_lag;
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                if partition.partition < 0 || partition.consumer_lag < 0 {
                    continue;
                }
                lag.with_label_values(&[self.service, topic, &partition.partition.to_string()])
                    .set(partition.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for JournalOffsets {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let journal = self.journal();
                for (topic, partition) in &partitions {
                    let (topic, partition) = (topic.as_str(), *partition);
                    let Some(journal) = &journal else { break };
                    match journal.offset(topic, partition) {
                        Ok(Some(stored)) if stored.cluster_id == self.cluster_id => {
                            // A little early, in case the offset is inside
                            // a batch (see `resume.rs`).
                            let from = self.resume.start_at(topic, partition, stored.next_offset);
                            let offset = Offset::Offset(from);
                            if let Err(err) = tpl.set_partition_offset(topic, partition, offset) {
                                // The partition then starts from the group's
                                // committed position; commands seen again are
                                // recognised by id.
                                tracing::error!(service = self.service, topic, partition, next_offset = stored.next_offset, cause = %err, "cannot seek to the stored offset");
                            }
                        }
                        Ok(Some(stored)) => tracing::info!(
                            service = self.service,
                            topic,
                            partition,
                            stored_cluster = %stored.cluster_id,
                            "stored offset is from another cluster; starting from the group's position"
                        ),
                        Ok(None) => {}
                        Err(err) => {
                            tracing::error!(service = self.service, cause = %err, "cannot read the stored offset")
                        }
                    }
                }
                let owned: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
                tracing::info!(service = self.service, group = %self.ownership.group, topic = %self.ownership.topic, partitions = ?owned, "partitions assigned");
                match consumer.assign(tpl) {
                    Ok(()) => self.ownership.assigned(owned),
                    Err(err) => {
                        tracing::error!(service = self.service, group = %self.ownership.group, cause = %err, "assign failed")
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(service = self.service, group = %self.ownership.group, topic = %self.ownership.topic, "partitions revoked");
                self.ownership.revoked();
                self.resume.clear();
                if let Err(err) = consumer.unassign() {
                    tracing::error!(service = self.service, cause = %err, "unassign failed");
                }
            }
            other => {
                tracing::error!(service = self.service, group = %self.ownership.group, error = ?other, "rebalance error");
                self.ownership.revoked();
                self.resume.clear();
                let _ = consumer.unassign();
            }
        }
    }
}

/// A topic partition.
pub(crate) type Partition = (String, i32);

/// Offsets in flight per partition, for the low-water mark.
#[derive(Default)]
pub(crate) struct InFlight {
    pub(crate) offsets: HashMap<Partition, BTreeSet<i64>>,
    /// The next offset after the last record seen, per partition.
    seen: HashMap<Partition, i64>,
    /// The last offset written to the journal, per partition.
    pub(crate) stored: HashMap<Partition, i64>,
    pub(crate) count: usize,
}

impl InFlight {
    /// Registers `offset` and returns the offset to store with it: the oldest
    /// still in flight before it, or the one after it if there is none.
    ///
    /// `None` when `offset` is in flight already. After a rebalance the
    /// consumer resumes each partition it keeps at its low-water mark, so the
    /// records still running are delivered a second time. Such a copy must
    /// be neither counted (its one finish would leave the count too high for
    /// good, and a consumer whose count reaches its window stops consuming)
    /// nor run: the first delivery answers it.
    pub(crate) fn begin(&mut self, partition: &Partition, offset: i64) -> Option<i64> {
        let set = self.offsets.entry(partition.clone()).or_default();
        if set.contains(&offset) {
            return None;
        }
        let mark = set.first().copied().unwrap_or(offset + 1);
        set.insert(offset);
        self.seen.insert(partition.clone(), offset + 1);
        self.count += 1;
        Some(mark)
    }

    /// Marks `offset` done; returns the partition's low-water mark now.
    pub(crate) fn finish(&mut self, partition: &Partition, offset: i64) -> i64 {
        let set = self.offsets.entry(partition.clone()).or_default();
        if set.remove(&offset) {
            self.count -= 1;
        }
        set.first()
            .copied()
            .unwrap_or_else(|| self.seen.get(partition).copied().unwrap_or(offset + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_low_water_mark_never_passes_an_unfinished_offset() {
        let mut f = InFlight::default();
        let p = ("t".to_string(), 0);
        assert_eq!(f.begin(&p, 10), Some(11));
        assert_eq!(f.begin(&p, 11), Some(10), "10 is still in flight");
        assert_eq!(f.begin(&p, 12), Some(10));
        assert_eq!(f.finish(&p, 12), 10);
        assert_eq!(f.finish(&p, 10), 11);
        assert_eq!(f.finish(&p, 11), 13);
        assert_eq!(f.count, 0);
    }

    #[test]
    fn a_record_delivered_again_while_it_runs_is_neither_counted_nor_run() {
        // Given 10 and 11 in flight when a rebalance hands the partition
        // back from 10,
        let mut f = InFlight::default();
        let p = ("t".to_string(), 0);
        f.begin(&p, 10);
        f.begin(&p, 11);
        f.finish(&p, 11);
        // when 10 and 11 are delivered again while 10 still runs,
        assert_eq!(f.begin(&p, 10), None, "10 runs already");
        assert_eq!(f.begin(&p, 11), Some(10), "11 finished: it runs again");
        assert_eq!(f.count, 2);
        // then finishing each once leaves nothing in flight.
        f.finish(&p, 10);
        assert_eq!(f.finish(&p, 11), 12);
        assert_eq!(f.count, 0);
    }
}
