//! Records a consumer with a full window holds back, and the partitions it
//! pauses meanwhile.
//!
//! A consumer must keep polling even when it can take no more work: the
//! group's rebalances are served from its poll. One that stops polling
//! holds every other member's rebalance up (Kafka waits up to
//! `max.poll.interval.ms`), and some brokers expel it after its session
//! timeout instead, so that it rejoins, is expelled again, and never works
//! through its backlog. So the consumer polls all the time; a record that
//! arrives while the window is full is held here, in arrival order, and its
//! partition is paused until the window has room again. The usual Kafka
//! back-pressure: pause, keep polling, resume.
//!
//! A held record has not begun: no offset stored so far passes it, so a
//! stop or a crash that drops it only means it is consumed again.

use super::offsets::Partition;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::TopicPartitionList;
use std::collections::{BTreeSet, VecDeque};

/// The held records and the paused partitions.
#[derive(Default)]
pub(crate) struct Held {
    records: VecDeque<OwnedMessage>,
    paused: BTreeSet<Partition>,
}

impl Held {
    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// How many records are held.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Holds `message` and pauses its partition, so that no more arrives
    /// from it until [`Held::resume`]. A rebalance forgets pauses, so a
    /// record from a partition paused before is a sign to pause it again.
    pub(crate) fn hold<C: ConsumerContext>(
        &mut self,
        consumer: &StreamConsumer<C>,
        service: &'static str,
        message: OwnedMessage,
    ) {
        let partition = (message.topic().to_string(), message.partition());
        match pause(consumer, &partition, true) {
            Ok(()) => {
                self.paused.insert(partition);
            }
            // Not fatal: the records that keep coming are held all the same.
            Err(err) => {
                tracing::debug!(service, topic = %partition.0, partition = partition.1, cause = %err, "cannot pause a partition")
            }
        }
        self.records.push_back(message);
    }

    /// The oldest held record.
    pub(crate) fn next(&mut self) -> Option<OwnedMessage> {
        self.records.pop_front()
    }

    /// Resumes every paused partition; their fetches go on from after the
    /// last record the consumer returned.
    pub(crate) fn resume<C: ConsumerContext>(
        &mut self,
        consumer: &StreamConsumer<C>,
        service: &'static str,
    ) {
        for partition in std::mem::take(&mut self.paused) {
            // A partition revoked meanwhile is not ours to resume.
            if let Err(err) = pause(consumer, &partition, false) {
                tracing::debug!(service, topic = %partition.0, partition = partition.1, cause = %err, "cannot resume a partition");
            }
        }
    }
}

/// Pauses (or resumes) one partition.
fn pause<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    (topic, partition): &Partition,
    paused: bool,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    if paused {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    }
}
