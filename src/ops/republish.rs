//! `ordersaga republish`: a store's events published to its events topic
//! again, from a log position or a time, with the same event ids.
//!
//! Each event goes out as the relay sent it: to `<service>.events`, keyed by
//! its aggregate id (so to the same partition, after the events before it),
//! with the same `content-type`, `event-id`, `stream` and `traceparent`
//! headers (see [`event_record`]). A consumer that drops records whose
//! event id it has seen ignores them; one that rebuilds from the topic
//! (a read model, `ordersaga restore`) gets what it missed. Events stored in
//! an older schema version go out in the current one (a version 1 user
//! `Registered` carried a password hash; no published event does).
//!
//! The store is read, not changed: it must be stopped, since a running
//! service holds its lock (publish while it runs and the relay's later
//! records would interleave with these anyway). `--dry-run` reads and
//! counts what would be published, and connects to no broker.

use super::export::{open_store, service_of, AnyEvent, ToolError};
use crate::kafka::{clients, topics, KafkaConfig};
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use ordersaga_actors::service::traceparent;
use ordersaga_actors::Journal;
use ordersaga_events::codec::CodecError;
use ordersaga_events::topics::{header, Service};
use ordersaga_events::Format;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

/// Deliveries awaited at most at once: enough to keep the producer's
/// batches full, bounded so memory stays flat.
const WINDOW: usize = 20_000;

/// Where republishing starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Every event from this global log position on.
    Position(u64),
    /// Every event recorded at or after this time.
    Since(DateTime<Utc>),
}

/// A record for a service's events topic, as the relay sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// The logical topic (`users.events`).
    pub topic: &'static str,
    /// The aggregate id, as UUID text.
    pub key: String,
    /// The encoded envelope.
    pub payload: Vec<u8>,
    /// `content-type`, `event-id`, `stream`, `traceparent`, in that order.
    pub headers: Vec<(&'static str, String)>,
}

/// The record the relay publishes for `event` (its outbox record, built by
/// `ordersaga_actors::service::records::event_record` when the event was
/// stored; that function is private to the actors crate, so this mirrors
/// it, and a test compares the two on a real topic).
pub fn event_record(event: &AnyEvent, format: Format) -> Result<EventRecord, CodecError> {
    let stream = event.stream();
    let event_id = event.event_id();
    Ok(EventRecord {
        topic: service_of(stream.kind).events_topic(),
        key: stream.id.to_string(),
        payload: event.encode(format)?,
        headers: vec![
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::EVENT_ID, event_id.to_string()),
            (header::STREAM, stream.to_string()),
            (
                header::TRACEPARENT,
                traceparent(event.correlation_id(), event_id.as_uuid()),
            ),
        ],
    })
}

/// What to republish.
#[derive(Clone, Debug)]
pub struct RepublishOptions {
    /// The service whose store it is.
    pub service: Service,
    /// From where.
    pub start: Start,
    /// The encoding of the published envelopes (the services' default is
    /// JSON).
    pub format: Format,
}

/// What a republish did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepublishSummary {
    /// The physical topic.
    pub topic: String,
    /// Events selected (and, unless dry, published and acknowledged).
    pub events: u64,
    /// The first and last log positions selected, when any was.
    pub positions: Option<(u64, u64)>,
    /// Whether nothing was produced.
    pub dry_run: bool,
}

/// The log entries of `journal` that `options` selects, decoded, each with
/// its log position; an unreadable entry is an error naming the store and
/// the position. `bar` counts the entries read, out of those from the start
/// position to the log's head.
fn selected<'a>(
    journal: &'a Journal,
    options: &'a RepublishOptions,
    bar: &'a ProgressBar,
) -> impl Iterator<Item = Result<(u64, AnyEvent), ToolError>> + 'a {
    let from = match options.start {
        Start::Position(position) => position.max(1),
        Start::Since(_) => 1,
    };
    bar.set_length(journal.log_head().saturating_sub(from));
    let store = format!(
        "{} store at {}",
        options.service.name(),
        journal.path().display()
    );
    let mut last = from.saturating_sub(1);
    journal.read_log(from).filter_map(move |item| {
        let entry = match item {
            Ok(entry) => entry,
            Err(err) => {
                return Some(Err(format!(
                    "{store}: the log entry after position {last} cannot be read: {err}"
                )
                .into()))
            }
        };
        last = entry.position;
        bar.inc(1);
        let event = match AnyEvent::from_log(&entry) {
            Ok(event) => event,
            Err(err) => {
                return Some(Err(format!(
                    "{store}: log position {} ({}#{}): {err}",
                    entry.position, entry.stream, entry.sequence
                )
                .into()))
            }
        };
        match options.start {
            Start::Since(since) if event.recorded_at() < since => None,
            _ => Some(Ok((entry.position, event))),
        }
    })
}

/// Counts what [`republish`] would publish, producing nothing.
pub fn dry_run(
    data: &Path,
    kafka_topic: String,
    options: &RepublishOptions,
    bar: &ProgressBar,
) -> Result<RepublishSummary, ToolError> {
    let journal = open_store(data, options.service)?;
    let mut summary = RepublishSummary {
        topic: kafka_topic,
        dry_run: true,
        ..RepublishSummary::default()
    };
    for item in selected(&journal, options, bar) {
        let (position, event) = item?;
        // Encoded as it would be, so a dry run fails where a real one would.
        event_record(&event, options.format)
            .map_err(|err| format!("log position {position}: {err}"))?;
        note(&mut summary, position);
    }
    Ok(summary)
}

fn note(summary: &mut RepublishSummary, position: u64) {
    summary.events += 1;
    summary.positions = Some(match summary.positions {
        None => (position, position),
        Some((first, _)) => (first, position),
    });
}

/// Publishes the events `options` selects from `service`'s store under
/// `data` to its events topic on `kafka` (creating the topic, with the
/// changelog's retention, if it is missing and the cluster lets us), and
/// waits until the broker acknowledged every one.
pub fn republish(
    data: &Path,
    kafka: &KafkaConfig,
    options: &RepublishOptions,
    bar: &ProgressBar,
) -> Result<RepublishSummary, ToolError> {
    let journal = open_store(data, options.service)?;
    let topic = kafka.name(options.service.events_topic());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let producer = clients::simple_producer(kafka, "ordersaga-republish")?;
    let exists = topic_exists(&producer, &topic);
    runtime.block_on(async {
        if !exists {
            // Created as the services create it: with the changelog's
            // retention (a cluster that creates topics itself is trusted).
            topics::ensure_topics(kafka, &[options.service.events_topic().to_string()])
                .await
                .map_err(|err| format!("{topic} does not exist and cannot be created: {err}"))?;
        }
        let mut summary = RepublishSummary {
            topic: topic.clone(),
            ..RepublishSummary::default()
        };
        let mut in_flight: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
        for item in selected(&journal, options, bar) {
            let (position, event) = item?;
            let record = event_record(&event, options.format)
                .map_err(|err| format!("log position {position}: {err}"))?;
            loop {
                match producer.send_result(to_future_record(&topic, &record)) {
                    Ok(delivery) => {
                        in_flight.push_back((position, delivery));
                        break;
                    }
                    // librdkafka's queue is full: let deliveries drain.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        if !acknowledge_oldest(&mut in_flight, &topic, &mut summary).await? {
                            producer.poll(Duration::from_millis(50));
                        }
                    }
                    Err((err, _)) => {
                        return Err(format!(
                            "cannot produce log position {position} to {topic}: {err}"
                        )
                        .into())
                    }
                }
            }
            while in_flight.len() > WINDOW {
                acknowledge_oldest(&mut in_flight, &topic, &mut summary).await?;
            }
        }
        while acknowledge_oldest(&mut in_flight, &topic, &mut summary).await? {}
        producer
            .flush(Duration::from_secs(30))
            .map_err(|err| format!("flushing the producer: {err}"))?;
        Ok(summary)
    })
}

/// Whether the cluster has `topic` (blocking: call it outside the async
/// runtime). Unknown counts as missing.
fn topic_exists(producer: &rdkafka::producer::FutureProducer, topic: &str) -> bool {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30));
    metadata.is_ok_and(|m| {
        m.topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    })
}

/// Waits for the oldest delivery; false when none is in flight.
async fn acknowledge_oldest(
    in_flight: &mut VecDeque<(u64, DeliveryFuture)>,
    topic: &str,
    summary: &mut RepublishSummary,
) -> Result<bool, ToolError> {
    let Some((position, delivery)) = in_flight.pop_front() else {
        return Ok(false);
    };
    match delivery.await {
        Ok(Ok(_)) => {
            note(summary, position);
            Ok(true)
        }
        Ok(Err((err, _))) => Err(format!(
            "the broker did not take log position {position} on {topic}: {err} \
             ({} events before it were published)",
            summary.events
        )
        .into()),
        Err(_) => Err(format!("the producer dropped log position {position}").into()),
    }
}

fn to_future_record<'a>(topic: &'a str, record: &'a EventRecord) -> FutureRecord<'a, str, [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    FutureRecord::to(topic)
        .key(record.key.as_str())
        .payload(record.payload.as_slice())
        .headers(headers)
}
