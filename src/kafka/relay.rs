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
    let mut producer = producer;
    let mut wake = journal.outbox_watch();
    let mut backoff = Duration::from_millis(50);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_none() && *stop.borrow() {
            deadline = Some(tokio::time::Instant::now() + grace);
        }
        let pending = match next_round(&journal) {
            Ok((records, corrupt)) => {
                for bad in corrupt {
                    quarantine(&journal, service, bad).await;
                }
                records
            }
            Err(err) => {
                tracing::error!(service, store = %journal.path().display(), cause = %err, "cannot read the outbox");
                Vec::new()
            }
        };
        if pending.is_empty() {
            if deadline.is_some() {
                break;
            }
            tokio::select! {
                _ = wake.changed() => {}
                _ = stop.changed() => {}
                // A safety net: a missed wake-up costs at most this much.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let mut stopping = Stopping {
            stop: &mut stop,
            grace,
            deadline: &mut deadline,
        };
        let round = publish_round(
            &journal,
            &producer,
            &kafka,
            service,
            &pending,
            &mut stopping,
        )
        .await;
        progress.send_modify(|p| {
            p.published += round.published;
            p.deadlettered += round.deadlettered;
            p.producers_rebuilt += u64::from(round.fatal);
        });
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let left = journal.outbox_len();
            if left > 0 {
                tracing::warn!(service, left, "stopping with records still in the outbox; they are published on the next start");
            }
            break;
        }
        if round.fatal {
            producer = rebuild(&make_producer, service, &mut stop)
                .await
                .unwrap_or(producer);
        }
        if round.failed {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = Duration::from_millis(50);
        }
    }
    if let Err(err) = journal.flush() {
        tracing::error!(service, cause = %err, "flushing the outbox deletions");
    }
}

/// The next round's records to publish, in outbox order, with the unreadable
/// rows met on the way. Rows delivered in process (a local topic, see
/// `crate::saga::local`) are passed over: they are not for Kafka, and a
/// backlog of them must not hold up the records behind them.
#[allow(clippy::type_complexity)]
fn next_round(
    journal: &Journal,
) -> Result<(Vec<(u64, OutboxRecord)>, Vec<CorruptRecord>), ordersaga_actors::JournalError> {
    let mut records = Vec::new();
    let mut corrupt = Vec::new();
    let mut from = 0;
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
        if !full || records.len() >= ROUND / 2 || !corrupt.is_empty() {
            break;
        }
        from = last + 1;
    }
    Ok((records, corrupt))
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

/// The stop signal as a round sees it: once it is given, deliveries are
/// awaited until `deadline` at most.
struct Stopping<'a> {
    stop: &'a mut watch::Receiver<bool>,
    grace: Duration,
    deadline: &'a mut Option<tokio::time::Instant>,
}

impl Stopping<'_> {
    /// Awaits `delivery`, or `None` once the stop's grace is over.
    async fn wait<T>(&mut self, delivery: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(delivery);
        loop {
            if self.deadline.is_none() && *self.stop.borrow() {
                *self.deadline = Some(tokio::time::Instant::now() + self.grace);
            }
            match *self.deadline {
                Some(d) => return tokio::time::timeout_at(d, &mut delivery).await.ok(),
                None => {
                    tokio::select! {
                        outcome = &mut delivery => return Some(outcome),
                        changed = self.stop.changed() => {
                            if changed.is_err() && self.deadline.is_none() {
                                // The stop switch is gone: treat as a stop.
                                *self.deadline = Some(tokio::time::Instant::now() + self.grace);
                            }
                        }
                    }
                }
            }
        }
    }
}

struct Round {
    published: u64,
    deadlettered: u64,
    failed: bool,
    /// The producer is dead (a fatal error) and must be replaced.
    fatal: bool,
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

async fn publish_round(
    journal: &Journal,
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    service: &'static str,
    pending: &[(u64, OutboxRecord)],
    stopping: &mut Stopping<'_>,
) -> Round {
    // Outbox records name logical topics; the namespace makes them physical.
    let topics: Vec<String> = pending.iter().map(|(_, r)| kafka.name(&r.topic)).collect();
    let mut round = Round {
        published: 0,
        deadlettered: 0,
        failed: false,
        fatal: false,
    };
    let mut in_flight: Vec<(u64, &OutboxRecord, DeliveryFuture)> =
        Vec::with_capacity(pending.len());
    for ((position, record), topic) in pending.iter().zip(&topics) {
        match producer.send_result(to_record(topic, record)) {
            Ok(delivery) => in_flight.push((*position, record, delivery)),
            // The local queue is full: acknowledge what is in flight first;
            // the rest goes in the next round, still in order.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
            Err((err, _)) => {
                tracing::warn!(service, cause = %err, "cannot enqueue a record; retrying");
                round.failed = true;
                break;
            }
        }
    }
    let mut done = Vec::with_capacity(in_flight.len());
    let mut ordered = true;
    for (position, record, delivery) in in_flight {
        let Some(outcome) = stopping.wait(delivery).await else {
            round.failed = true;
            break;
        };
        match outcome {
            Ok(Ok(delivery)) => {
                tracing::debug!(
                    service,
                    topic = %record.topic,
                    partition = delivery.partition,
                    offset = delivery.offset,
                    traceparent = trace_of(record),
                    "published"
                );
                // Delete only an unbroken prefix, so a failed record is never
                // overtaken by a later one for the same key.
                if ordered {
                    done.push(position);
                    round.published += 1;
                }
            }
            Ok(Err((err, _))) if permanent(&err) => {
                if ordered
                    && deadletter_record(producer, kafka, service, position, record, &err).await
                {
                    done.push(position);
                    round.deadlettered += 1;
                } else {
                    ordered = false;
                    round.failed = true;
                }
            }
            Ok(Err((err, _))) => {
                tracing::warn!(service, cause = %err, topic = %record.topic, "publish failed; retrying");
                ordered = false;
                round.failed = true;
            }
            Err(_canceled) => {
                tracing::warn!(service, "producer dropped a delivery; retrying");
                ordered = false;
                round.failed = true;
            }
        }
    }
    if let Err(err) = journal.outbox_remove(&done) {
        tracing::error!(service, cause = %err, "cannot delete published records; they will be published again");
    }
    if let Some((code, reason)) = producer.client().fatal_error() {
        tracing::error!(service, code = ?code, reason, "the producer hit a fatal error; making a new one and publishing again from the outbox");
        round.fatal = true;
        round.failed = true;
    }
    round
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
