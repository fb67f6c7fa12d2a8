//! `ordersaga tail`: print the records of any topic of the system, one per
//! line, decoded by their topic ([`super::tail_decode`]); from a chosen
//! start (kcat's offsets), to the end of every partition or on as records
//! come.
//!
//! Reading guarantee: none is needed, nothing is written. Without a group
//! the topic is read by assignment and no offset is committed anywhere; with
//! `--group G` the records are read in that consumer group and each printed
//! record's offset is committed (automatically every second, and once more
//! at the end), so the next run in the group goes on where this one
//! stopped: at least once, a record printed just before a crash may be
//! printed again.
//!
//! "The end" is the partition EOF librdkafka reports when a fetch finds
//! nothing more, not a watermark read first: Tansu 0.6 answers "latest
//! offset" with the base offset of the last batch + 1, below records it has
//! already served, so a reader that stops at the reported end would stop
//! short. `-o -N` goes through that answer and may start a few records
//! early on Tansu (`-o end` too, with `-e` it then prints them).

use super::tail_print::print;
pub use super::tail_print::{rfc3339, timestamp_of, Shown, ShownJson};
pub use super::tail_start::{parse_time, Start};
use crate::kafka::clients::CONNECT_TIMEOUT;
use crate::kafka::KafkaConfig;
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

/// Why reading a topic failed.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The cluster could not be reached or refused a request: check
    /// `--brokers`.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The topic does not exist: check its name and `--namespace`.
    #[error("the cluster has no topic {0} (check the name and --namespace)")]
    NoSuchTopic(String),
    /// Options that do not go together.
    #[error("{0}")]
    Usage(String),
    /// Standard output could not be written (other than a closed pipe,
    /// which ends the run quietly).
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

/// The consumer's settings: a reader that reports the end of each
/// partition. The records are only read, so no producer settings apply.
fn consumer_config(kafka: &KafkaConfig, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "ordersaga-tail")
        .set("group.id", group)
        // `-e` stops at the EOF librdkafka reports for each partition; see
        // the module's note on Tansu's watermarks.
        .set("enable.partition.eof", "true")
        .set("socket.connection.setup.timeout.ms", "10000")
        .set(
            "fetch.wait.max.ms",
            kafka.fetch_wait.as_millis().max(1).to_string(),
        );
    config
}

/// The reader's client context: a partition EOF is how `-e` knows it is
/// done, not an error to log (librdkafka reports some of them as global
/// errors too).
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

type Reader = StreamConsumer<ReaderContext>;

/// A reader of every partition of one topic, from a [`Start`], that can
/// tell when it has reached the end of all of them.
pub struct TopicReader {
    consumer: Reader,
    topic: String,
    partitions: i32,
    in_group: bool,
    at_end: HashSet<i32>,
    /// Records below this offset are skipped: an offset asked for is
    /// approached from a watermark at or below it (see [`TopicReader::seek_to`]).
    skip_below: Option<i64>,
    /// With a time start: records stamped earlier are skipped in each
    /// partition until the first one at or after it (what a broker that
    /// cannot look offsets up by time leaves to the reader).
    not_before: Option<(i64, HashSet<i32>)>,
    failing: bool,
    warnings: Vec<String>,
}

impl TopicReader {
    /// Opens the logical topic `logical` from `start`: by assignment of
    /// every partition, or, with `group`, subscribed in that (namespaced)
    /// consumer group, where only `beginning` and `end` apply (to
    /// partitions the group has no offset for).
    pub fn open(
        kafka: &KafkaConfig,
        logical: &str,
        start: Start,
        group: Option<&str>,
    ) -> Result<Self, TailError> {
        let topic = kafka.name(logical);
        let group_id = match group {
            Some(group) => kafka.name(group),
            None => format!("ordersaga-tail-{}", uuid::Uuid::new_v4()),
        };
        let mut config = consumer_config(kafka, &group_id);
        let reset = match start {
            Start::End | Start::Offset(_) => "latest",
            Start::Beginning | Start::Tail(_) | Start::Time(_) => "earliest",
        };
        config.set("auto.offset.reset", reset);
        if group.is_some() {
            if !matches!(start, Start::Beginning | Start::End) {
                return Err(TailError::Usage(
                    "with --group, -o can only be beginning or end (where the group has no offset yet)"
                        .into(),
                ));
            }
            config
                // The shortest session brokers allow by default
                // (`group.min.session.timeout.ms`): the embedded broker keeps
                // a group its last member left rebalancing for the session
                // timeout less a second, so with librdkafka's 45 s the next
                // run in the group would wait 44 s. librdkafka heartbeats
                // from its own thread, so a reader held up by a slow pipe
                // keeps its membership.
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "2000")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "1000")
                // Only what was printed is committed.
                .set("enable.auto.offset.store", "false");
        } else {
            config.set("enable.auto.commit", "false");
        }
        let mut reader = Self::connect(&config, topic, group.is_some())?;
        if reader.in_group {
            reader.consumer.subscribe(&[&reader.topic])?;
            return Ok(reader);
        }
        let assignment = match start {
            Start::Time(at) => {
                reader.not_before = Some((at.timestamp_millis(), HashSet::new()));
                reader.offsets_at(at)?
            }
            Start::Offset(n) => reader.seek_to(None, n)?,
            other => {
                let offset = match other {
                    Start::Beginning => Offset::Beginning,
                    Start::End => Offset::End,
                    Start::Tail(n) => Offset::OffsetTail(n),
                    Start::Offset(_) | Start::Time(_) => unreachable!("handled above"),
                };
                reader.every_partition(|_| offset)?
            }
        };
        reader.consumer.assign(&assignment)?;
        Ok(reader)
    }

    /// Opens partition `partition` (or every partition) of `logical` at
    /// `offset`, to read the record there with [`TopicReader::first_of_each`].
    pub fn at(
        kafka: &KafkaConfig,
        logical: &str,
        partition: Option<i32>,
        offset: i64,
    ) -> Result<Self, TailError> {
        let topic = kafka.name(logical);
        let mut config =
            consumer_config(kafka, &format!("ordersaga-tail-{}", uuid::Uuid::new_v4()));
        // An offset past the end (or deleted) reads nothing: no record there.
        config
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest");
        let mut reader = Self::connect(&config, topic, false)?;
        if let Some(p) = partition.filter(|p| !(0..reader.partitions).contains(p)) {
            return Err(TailError::Usage(format!(
                "{} has no partition {p} (it has {})",
                reader.topic, reader.partitions
            )));
        }
        let assignment = reader.seek_to(partition, offset)?;
        reader.partitions = assignment.count() as i32;
        reader.consumer.assign(&assignment)?;
        Ok(reader)
    }

    /// A reader of the physical `topic` with `config`, which must exist;
    /// nothing assigned or subscribed yet.
    fn connect(config: &ClientConfig, topic: String, in_group: bool) -> Result<Self, TailError> {
        let consumer: Reader = config.create_with_context(ReaderContext)?;
        let partitions = partition_count(&consumer, &topic)?;
        Ok(Self {
            consumer,
            topic,
            partitions,
            in_group,
            at_end: HashSet::new(),
            skip_below: None,
            not_before: None,
            failing: false,
            warnings: Vec::new(),
        })
    }

    /// An assignment of `partition` (or every partition) that reads the
    /// records at and after `offset`. A fetch from an offset past a
    /// partition's end ends nowhere on Tansu (no out-of-range error, so no
    /// EOF), so each partition starts from `offset` clamped between its
    /// watermarks, and the records below `offset` are skipped. Tansu's end
    /// watermark can be short of the true end (see the module's note),
    /// which only means a few records read and skipped. Each starts
    /// [`EARLY`](crate::kafka::resume::EARLY) records early too: a broker
    /// that answers a fetch from inside a batch with the next batch (Tansu
    /// 0.6) would otherwise leave out the rest of the batch `offset` is in.
    fn seek_to(
        &mut self,
        partition: Option<i32>,
        offset: i64,
    ) -> Result<TopicPartitionList, TailError> {
        self.skip_below = Some(offset);
        let mut assignment = TopicPartitionList::new();
        for p in (0..self.partitions).filter(|p| partition.is_none_or(|wanted| wanted == *p)) {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, CONNECT_TIMEOUT)?;
            let from = offset
                .saturating_sub(crate::kafka::resume::EARLY)
                .min(high)
                .max(low);
            assignment.add_partition_offset(&self.topic, p, Offset::Offset(from))?;
        }
        Ok(assignment)
    }

    /// What the reader had to settle for, for the operator (the time
    /// lookup fallback).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn every_partition(
        &self,
        offset: impl Fn(i32) -> Offset,
    ) -> Result<TopicPartitionList, TailError> {
        let mut list = TopicPartitionList::new();
        for p in 0..self.partitions {
            list.add_partition_offset(&self.topic, p, offset(p))?;
        }
        Ok(list)
    }

    /// The first offset stamped at or after `at` in each partition, or every
    /// partition from its beginning when the broker cannot say (the
    /// embedded broker answers "no such record" to every time lookup).
    fn offsets_at(&mut self, at: DateTime<Utc>) -> Result<TopicPartitionList, TailError> {
        let ms = at.timestamp_millis();
        let lookup = |ms: i64| {
            self.every_partition(|_| Offset::Offset(ms))
                .and_then(|asked| Ok(self.consumer.offsets_for_times(asked, CONNECT_TIMEOUT)?))
        };
        let usable = |found: &TopicPartitionList| {
            found
                .elements()
                .iter()
                .all(|e| e.error().is_ok() && !matches!(e.offset(), Offset::Invalid))
        };
        let unable = match lookup(ms) {
            Ok(found) if usable(&found) => {
                let none_found: Vec<i32> = found
                    .elements()
                    .iter()
                    .filter(|e| e.offset() == Offset::End)
                    .map(|e| e.partition())
                    .collect();
                // "Nothing at or after the time" is also what a broker
                // without time lookup says of every partition: asking for
                // the epoch tells them apart, since a partition with records
                // has some stamped after it.
                if none_found.is_empty() || self.finds_records_since_epoch(&none_found, &lookup)? {
                    return Ok(found);
                }
                "it answers no offset for a partition that has records".to_string()
            }
            Ok(_) => "it answered with errors".to_string(),
            Err(err) => err.to_string(),
        };
        self.warnings.push(format!(
            "the broker cannot look offsets up by time ({unable}); reading {} from the beginning and skipping the records stamped before {}",
            self.topic,
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        ));
        self.every_partition(|_| Offset::Beginning)
    }

    /// Whether the time lookup works on the partitions `none_found`: asked
    /// for the epoch, every one of them that holds records names an offset.
    fn finds_records_since_epoch(
        &self,
        none_found: &[i32],
        lookup: &impl Fn(i64) -> Result<TopicPartitionList, TailError>,
    ) -> Result<bool, TailError> {
        let since_epoch = lookup(0)?;
        for &p in none_found {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, CONNECT_TIMEOUT)?;
            let named = since_epoch
                .find_partition(&self.topic, p)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(_)));
            if high > low && !named {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next record; `None` once every partition is at its end when
    /// `exit_at_end`, else waits for more. Broker errors are logged and
    /// retried: a reader outlives an outage.
    pub async fn next(&mut self, exit_at_end: bool) -> Result<Option<OwnedMessage>, TailError> {
        loop {
            if exit_at_end && self.all_at_end() {
                return Ok(None);
            }
            let message = match self.consumer.recv().await {
                Ok(message) => message.detach(),
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.at_end.insert(partition);
                    continue;
                }
                Err(err) => {
                    if !self.failing {
                        self.failing = true;
                        tracing::warn!(topic = %self.topic, cause = %err, "reading failed; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            self.failing = false;
            let partition = message.partition();
            self.at_end.remove(&partition);
            if self
                .skip_below
                .is_some_and(|below| message.offset() < below)
            {
                continue;
            }
            if let Some((not_before, passed)) = &mut self.not_before {
                if !passed.contains(&partition) {
                    match message.timestamp().to_millis() {
                        Some(stamped) if stamped < *not_before => continue,
                        _ => {
                            passed.insert(partition);
                        }
                    }
                }
            }
            return Ok(Some(message));
        }
    }

    /// The first record of each assigned partition, for a reader made by
    /// [`TopicReader::at`]: a partition at its end gives none.
    pub async fn first_of_each(&mut self) -> Result<Vec<OwnedMessage>, TailError> {
        let mut answered = HashSet::new();
        let mut found = Vec::new();
        while (answered.len() as i32) < self.partitions {
            match self.next(true).await? {
                Some(message) => {
                    if answered.insert(message.partition()) {
                        found.push(message);
                    }
                }
                None => break,
            }
            answered.extend(self.at_end.iter().copied());
        }
        Ok(found)
    }

    fn all_at_end(&self) -> bool {
        if !self.in_group {
            return self.at_end.len() as i32 >= self.partitions;
        }
        match self.consumer.assignment() {
            Ok(owned) => {
                owned.count() > 0
                    && owned
                        .elements()
                        .iter()
                        .all(|e| self.at_end.contains(&e.partition()))
            }
            Err(_) => false,
        }
    }

    /// Marks `message` as handled: in a group, its offset is committed with
    /// the next commit. Nothing to do without a group.
    pub fn handled(&self, message: &OwnedMessage) {
        if self.in_group {
            if let Err(err) =
                self.consumer
                    .store_offset(&self.topic, message.partition(), message.offset())
            {
                tracing::warn!(cause = %err, "cannot store the offset of a printed record");
            }
        }
    }

    /// Ends the reading: in a group, commits the offsets of what was
    /// handled.
    pub fn close(self) -> Result<(), TailError> {
        if self.in_group {
            match self.consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {}
                // Nothing handled since the last commit.
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }
}

fn partition_count(consumer: &Reader, topic: &str) -> Result<i32, TailError> {
    let metadata = consumer.fetch_metadata(Some(topic), CONNECT_TIMEOUT)?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    if count == 0 {
        return Err(TailError::NoSuchTopic(topic.to_string()));
    }
    Ok(count)
}

/// What `tail` reads and how it prints.
#[derive(Clone, Debug)]
pub struct TailOptions {
    /// The logical topic.
    pub topic: String,
    /// Where to start in each partition.
    pub start: Start,
    /// Stop at the end of every partition (`-e`) instead of following.
    pub exit_at_end: bool,
    /// Stop after this many records (`-c`).
    pub count: Option<u64>,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Read in this consumer group, committing (`--group`).
    pub group: Option<String>,
}

/// Prints the records `options` asks for to `out` until the end, the count
/// or `stop`, and returns how many were printed. Warnings (the time lookup
/// fallback) go to `warn`, never to `out`. A closed output (`| head`) ends
/// the run without an error.
pub async fn tail(
    kafka: &KafkaConfig,
    options: &TailOptions,
    out: &mut impl Write,
    mut warn: impl FnMut(&str),
    stop: impl Future<Output = ()>,
) -> Result<u64, TailError> {
    let logical = kafka.logical(&options.topic).to_string();
    let mut reader = TopicReader::open(kafka, &logical, options.start, options.group.as_deref())?;
    for warning in reader.warnings() {
        warn(warning);
    }
    tokio::pin!(stop);
    let mut printed = 0u64;
    while options.count.is_none_or(|count| printed < count) {
        let message = tokio::select! {
            next = reader.next(options.exit_at_end) => next?,
            _ = &mut stop => None,
        };
        let Some(message) = message else { break };
        match print(out, &logical, &message, options.json) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(err) => return Err(TailError::Output(err)),
        }
        reader.handled(&message);
        printed += 1;
    }
    if let Err(err) = out.flush() {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(TailError::Output(err));
        }
    }
    reader.close()?;
    Ok(printed)
}
