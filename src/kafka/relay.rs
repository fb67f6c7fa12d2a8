//! The outbox relay: publishes the journal's outbox to Kafka.
//!
//! Delivery guarantee: **at least once, in order per key.** Records are sent
//! in outbox order without waiting for one before sending the next; each is
//! deleted from the outbox only after the broker acknowledged it. The producer
//! is idempotent and retries forever (see [`super::clients::producer`]), so a
//! broker outage delays publishing but drops and reorders nothing. A crash
//! between the broker's ack and the deletion publishes that record again on
//! restart; consumers drop the duplicate by event id.
//!
//! A record the cluster rejects for good (an unknown or invalid topic, a
//! record too large) is moved to the dead-letter topic with the reason, so one
//! bad record cannot stall all publishing.

use super::deadletter::{self, Origin};
use super::KafkaConfig;
use ordersaga_actors::journal::{CorruptRecord, OutboxRecord};
use ordersaga_actors::Journal;
use ordersaga_events::topics::{header, local_of};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::watch;

/// Most records read from the outbox and sent in one round.
const ROUND: usize = 2_000;
/// Longest pause between retries after a failed round.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the relay is doing, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayProgress {
    /// Records acknowledged by the broker and deleted from the outbox.
    pub published: u64,
    /// Records moved to the dead-letter topic.
    pub deadlettered: u64,
    /// Producers replaced after a fatal error.
    pub producers_rebuilt: u64,
}

/// Makes the relay's producer: at start, and again after a fatal error.
pub type MakeProducer = Box<dyn Fn() -> Result<FutureProducer, KafkaError> + Send>;

/// Publishes the outbox until `stop` becomes true and then, for at most
/// `grace`, until the outbox is empty. What is left stays in the outbox for
/// the next start. A stop is noticed even while deliveries wait for a broker
/// that is down, so a stop never takes longer than `grace`.
///
/// When the producer hits a fatal error (the broker lost its idempotence
/// state: an out-of-order sequence, an unknown producer id), it can publish
/// nothing more. The relay then builds a new producer with `make_producer`
/// and publishes again from the outbox, which still holds every record not
/// acknowledged; consumers drop the duplicates by event id.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    journal: Journal,
    producer: FutureProducer,
    make_producer: MakeProducer,
    kafka: KafkaConfig,
    service: &'static str,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    progress: watch::Sender<RelayProgress>,
) {
    let mut relay = Relay {
        journal,
        kafka,
        service,
        producer,
        sent: VecDeque::new(),
        acked: Vec::new(),
        next: 0,
        counted: RelayProgress::default(),
    };
    let mut wake = relay.journal.outbox_watch();
    let mut backoff = Duration::from_millis(50);
    let mut deadline: Option<tokio::time::Instant> = None;
    // Whether the outbox may hold rows not sent yet: at start, after a
    // wake-up, and after a failure sent the relay back.
    let mut dirty = true;
    loop {
        if deadline.is_none() && *stop.borrow() {
            deadline = Some(tokio::time::Instant::now() + grace);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        let mut failed = false;
        if dirty && relay.sent.len() < MAX_IN_FLIGHT {
            dirty = false;
            match relay.send_new().await {
                Sent::All => {}
                Sent::QueueFull => dirty = true,
                Sent::Failed => failed = true,
            }
        }
        if !failed && relay.sent.is_empty() {
            relay.remove_acked(&progress);
            if dirty {
                continue;
            }
            if deadline.is_some() {
                // Stopping, and nothing is left to publish.
                break;
            }
            tokio::select! {
                _ = wake.changed() => dirty = true,
                _ = stop.changed() => {}
                // A safety net: a missed wake-up costs at most this much.
                _ = tokio::time::sleep(Duration::from_secs(1)) => dirty = true,
            }
            continue;
        }
        if !failed {
            // Await the oldest delivery; meanwhile, send what becomes durable.
            let stop_at = deadline.unwrap_or_else(far_future);
            let front = relay.sent.front_mut().expect("a record in flight");
            tokio::select! {
                outcome = &mut front.delivery => {
                    failed = !relay.acknowledged(outcome).await;
                    if relay.acked.len() >= REMOVE_EVERY || relay.sent.is_empty() {
                        relay.remove_acked(&progress);
                    }
                    if !failed {
                        backoff = Duration::from_millis(50);
                    }
                }
                _ = wake.changed(), if !dirty => dirty = true,
                _ = stop.changed() => {}
                _ = tokio::time::sleep_until(stop_at) => {}
            }
        }
        if failed {
            relay.remove_acked(&progress);
            let rebuilt = relay.recover(&make_producer, &mut stop, deadline).await;
            progress.send_modify(|p| p.producers_rebuilt += u64::from(rebuilt));
            dirty = true;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    relay.remove_acked(&progress);
    let left = relay.journal.outbox_len();
    if left > 0 {
        tracing::warn!(
            service,
            left,
            "stopping with records still in the outbox; they are published on the next start"
        );
    }
    if let Err(err) = relay.journal.flush() {
        tracing::error!(service, cause = %err, "flushing the outbox deletions");
    }
}

/// A deadline that never comes, for a `select!` arm that is not armed yet.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Most records sent and not yet acknowledged. librdkafka batches them; the
/// bound keeps memory (each holds its row) and a stop's drain in check.
const MAX_IN_FLIGHT: usize = 20_000;
/// Acknowledged rows are deleted in groups of this many (and whenever
/// nothing is in flight).
const REMOVE_EVERY: usize = 256;

/// A record handed to the producer, awaiting the broker's acknowledgement.
struct InFlight {
    position: u64,
    record: OutboxRecord,
    delivery: DeliveryFuture,
}

/// How sending the new rows went.
enum Sent {
    /// Every durable row so far was handed to the producer.
    All,
    /// The producer's queue is full: the rest waits for acknowledgements.
    QueueFull,
    /// The producer refused a row: go back and try again.
    Failed,
}

/// The relay's state: the producer, what it has sent (in outbox order, the
/// oldest first) and what the broker has acknowledged.
///
/// Records are sent as soon as their append is durable, without waiting for
/// the acknowledgements of those before them (the idempotent producer keeps
/// them in order per partition). Rows are deleted only as an unbroken prefix
/// of acknowledged records: after a failure, the relay waits for what is in
/// flight and starts again from the first record not acknowledged, so a
/// failed record is never overtaken for good by a later one for the same key.
struct Relay {
    journal: Journal,
    kafka: KafkaConfig,
    service: &'static str,
    producer: FutureProducer,
    sent: VecDeque<InFlight>,
    /// Acknowledged rows, not deleted yet.
    acked: Vec<u64>,
    /// The first outbox position not sent yet.
    next: u64,
    /// Published and dead-lettered since the last report.
    counted: RelayProgress,
}

impl Relay {
    /// Sends the durable rows from `next` on, up to the in-flight bound.
    async fn send_new(&mut self) -> Sent {
        while self.sent.len() < MAX_IN_FLIGHT {
            let (records, corrupt, scanned_to) = match next_round(&self.journal, self.next) {
                Ok(round) => round,
                Err(err) => {
                    tracing::error!(service = self.service, store = %self.journal.path().display(), cause = %err, "cannot read the outbox");
                    return Sent::Failed;
                }
            };
            for bad in corrupt {
                quarantine(&self.journal, self.service, bad).await;
            }
            if records.is_empty() && scanned_to <= self.next {
                return Sent::All;
            }
            for (position, record) in records {
                let topic = self.kafka.name(&record.topic);
                let queued = self
                    .producer
                    .send_result(to_record(&topic, &record))
                    .map_err(|(err, _)| err);
                match queued {
                    Ok(delivery) => {
                        self.sent.push_back(InFlight {
                            position,
                            record,
                            delivery,
                        });
                        self.next = position + 1;
                    }
                    // The local queue is full: acknowledgements first; the
                    // rest is sent later, still in order.
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        return Sent::QueueFull
                    }
                    Err(err) => {
                        tracing::warn!(service = self.service, cause = %err, "cannot enqueue a record; retrying");
                        return Sent::Failed;
                    }
                }
            }
            // Local rows scanned past are not for Kafka.
            self.next = self.next.max(scanned_to);
        }
        Sent::QueueFull
    }

    /// Takes the oldest delivery's `outcome`; false when it failed and the
    /// relay must go back.
    async fn acknowledged(
        &mut self,
        outcome: <DeliveryFuture as std::future::Future>::Output,
    ) -> bool {
        let Some(done) = self.sent.pop_front() else {
            return true;
        };
        match outcome {
            Ok(Ok(delivery)) => {
                tracing::debug!(
                    service = self.service,
                    topic = %done.record.topic,
                    partition = delivery.partition,
                    offset = delivery.offset,
                    traceparent = trace_of(&done.record),
                    "published"
                );
                self.acked.push(done.position);
                self.counted.published += 1;
                true
            }
            Ok(Err((err, _))) if permanent(&err) => {
                let lettered = deadletter_record(
                    &self.producer,
                    &self.kafka,
                    self.service,
                    done.position,
                    &done.record,
                    &err,
                )
                .await;
                if lettered {
                    self.acked.push(done.position);
                    self.counted.deadlettered += 1;
                } else {
                    self.sent.push_front(done);
                }
                lettered
            }
            Ok(Err((err, _))) => {
                tracing::warn!(service = self.service, cause = %err, topic = %done.record.topic, "publish failed; retrying");
                self.sent.push_front(done);
                false
            }
            Err(_canceled) => {
                tracing::warn!(
                    service = self.service,
                    "producer dropped a delivery; retrying"
                );
                self.sent.push_front(done);
                false
            }
        }
    }

    /// Deletes the acknowledged rows and reports the counts.
    fn remove_acked(&mut self, progress: &watch::Sender<RelayProgress>) {
        if !self.acked.is_empty() {
            if let Err(err) = self.journal.outbox_remove(&self.acked) {
                tracing::error!(service = self.service, cause = %err, "cannot delete published records; they will be published again");
            }
            self.acked.clear();
        }
        let counted = std::mem::take(&mut self.counted);
        if counted != RelayProgress::default() {
            progress.send_modify(|p| {
                p.published += counted.published;
                p.deadlettered += counted.deadlettered;
            });
        }
    }

    /// After a failure: waits (until `deadline` at most) for what is still
    /// in flight, without deleting any of it, and goes back to the first
    /// record not acknowledged; replaces a producer that hit a fatal error.
    /// Returns whether the producer was replaced.
    async fn recover(
        &mut self,
        make_producer: &MakeProducer,
        stop: &mut watch::Receiver<bool>,
        deadline: Option<tokio::time::Instant>,
    ) -> bool {
        let restart = self.sent.front().map_or(self.next, |first| first.position);
        let stop_at = deadline.unwrap_or_else(far_future);
        while let Some(mut rest) = self.sent.pop_front() {
            tokio::select! {
                _ = &mut rest.delivery => {}
                _ = tokio::time::sleep_until(stop_at) => break,
            }
        }
        self.sent.clear();
        self.next = restart;
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::error!(service = self.service, code = ?code, reason, "the producer hit a fatal error; making a new one and publishing again from the outbox");
            if let Some(producer) = rebuild(make_producer, self.service, stop).await {
                self.producer = producer;
                return true;
            }
        }
        false
    }
}

/// The next records to publish from outbox position `from` on, in outbox
/// order, with the unreadable rows met on the way, and the position after
/// the last row scanned. Rows delivered in process (a local topic, see
/// `crate::saga::local`) are passed over: they are not for Kafka, and a
/// backlog of them must not hold up the records behind them.
#[allow(clippy::type_complexity)]
fn next_round(
    journal: &Journal,
    mut from: u64,
) -> Result<(Vec<(u64, OutboxRecord)>, Vec<CorruptRecord>, u64), ordersaga_actors::JournalError> {
    let mut records = Vec::new();
    let mut corrupt = Vec::new();
    loop {
        let batch = journal.outbox_batch(from, ROUND)?;
        let Some(last) = batch
            .records
            .last()
            .map(|(position, _)| *position)
            .into_iter()
            .chain(batch.corrupt.iter().map(|bad| bad.position))
            .max()
        else {
            break;
        };
        let full = batch.records.len() + batch.corrupt.len() >= ROUND;
        corrupt.extend(batch.corrupt);
        records.extend(
            batch
                .records
                .into_iter()
                .filter(|(_, record)| local_of(&record.topic).is_none()),
        );
        from = last + 1;
        if !full || records.len() >= ROUND / 2 || !corrupt.is_empty() {
            break;
        }
    }
    Ok((records, corrupt, from))
}

/// The dead-letter code of an outbox row that could not be read.
pub const CORRUPT_OUTBOX_RECORD: &str = "corrupt_outbox_record";

/// Sets an unreadable outbox row aside: its bytes go to the dead-letter
/// topic (through the outbox, like any record) and the row to the store's
/// quarantine, which `verify` reports. Publishing goes on with the rest.
async fn quarantine(journal: &Journal, service: &'static str, bad: CorruptRecord) {
    tracing::error!(
        service,
        store = %journal.path().display(),
        position = bad.position,
        reason = %bad.reason,
        "an outbox row cannot be read; dead-lettering its bytes and quarantining it"
    );
    let origin = Origin {
        topic: "outbox".into(),
        partition: -1,
        offset: bad.position as i64,
    };
    let letter = deadletter::record(
        service,
        &origin,
        CORRUPT_OUTBOX_RECORD,
        &bad.reason,
        None,
        Some(&bad.bytes),
        Vec::new(),
    );
    let queued = journal
        .append(ordersaga_actors::journal::AppendBatch {
            outbox: vec![letter],
            ..Default::default()
        })
        .await;
    // Quarantine even if the dead letter could not be queued: the row stays
    // readable in the quarantine, and publishing must not stop for it.
    if let Err(err) = queued {
        tracing::error!(service, cause = %err, "cannot queue the dead letter of a corrupt outbox row");
    }
    if let Err(err) = journal.quarantine_outbox(bad.position, &bad.reason) {
        tracing::error!(service, position = bad.position, cause = %err, "cannot quarantine a corrupt outbox row");
    }
}

/// A new producer after a fatal error, retried until it can be made or the
/// relay stops.
async fn rebuild(
    make_producer: &MakeProducer,
    service: &'static str,
    stop: &mut watch::Receiver<bool>,
) -> Option<FutureProducer> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match make_producer() {
            Ok(producer) => {
                tracing::info!(service, "a new producer publishes the outbox again");
                return Some(producer);
            }
            Err(err) => {
                tracing::error!(service, cause = %err, "cannot make a new producer; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return None,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn to_record<'a>(topic: &'a str, record: &'a OutboxRecord) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    // A null key or value stays null: rdkafka leaves out what is not set.
    let mut out = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(payload) = &record.payload {
        out = out.payload(payload.as_slice());
    }
    out
}

/// The record's W3C trace context, for the log line that says it left.
fn trace_of(record: &OutboxRecord) -> &str {
    record
        .headers
        .iter()
        .find(|(name, _)| name == header::TRACEPARENT)
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .unwrap_or("")
}

/// Errors after which the same record will never be accepted.
fn permanent(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Sends a record the cluster refused for good to the dead-letter topic.
/// Returns whether the dead letter was acknowledged.
async fn deadletter_record(
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    service: &'static str,
    position: u64,
    record: &OutboxRecord,
    err: &KafkaError,
) -> bool {
    tracing::error!(service, cause = %err, topic = %record.topic, position, "the cluster refused a record for good; dead-lettering it");
    let origin = Origin {
        topic: format!("outbox:{}", record.topic),
        partition: -1,
        offset: position as i64,
    };
    let letter = deadletter::record(
        service,
        &origin,
        "unpublishable",
        &err.to_string(),
        record.key.as_deref(),
        record.payload.as_deref(),
        record.headers.clone(),
    );
    let topic = kafka.name(&letter.topic);
    match producer.send_result(to_record(&topic, &letter)) {
        Ok(delivery) => matches!(delivery.await, Ok(Ok(_))),
        Err(_) => false,
    }
}
