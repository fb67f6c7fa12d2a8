//! One consumed event record, decoded for the read model, and what applying
//! it did.
//!
//! A record is addressed by its topic, partition and offset (where the
//! projection resumes) and its event by its stream and sequence (how
//! duplicates and gaps are told). Decoding never fails the projection: a
//! record that cannot be read becomes [`ProjectedEvent::Undecodable`], which
//! advances the offset and is counted.

use ordersaga_events::codec::{decode_event, CodecError, Format};
use ordersaga_events::inventory::InventoryEvent;
use ordersaga_events::order::OrderEvent;
use ordersaga_events::topics::header;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{Envelope, StreamId, StreamKind, Versioned};
use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

/// An event record as the read model applies it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectedRecord {
    /// The physical topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The event it carries.
    pub event: ProjectedEvent,
}

/// The event a record carries, decoded by its stream's kind.
#[derive(Clone, Debug, PartialEq)]
pub enum ProjectedEvent {
    /// A user's event (`users.events`), version 1 upcast to the current one.
    User(Envelope<UserEvent>),
    /// A product's event (`inventory.events`).
    Product(Envelope<InventoryEvent>),
    /// An order's event (`orders.events`).
    Order(Envelope<OrderEvent>),
    /// An event of a stream the read model keeps no row for (the order
    /// saga's, on `orders.events`): only the offset moves.
    Ignored(StreamId),
    /// A record that cannot be read, and why: only the offset moves.
    Undecodable(String),
}

impl ProjectedEvent {
    /// The stream and sequence of a decoded event.
    pub fn position(&self) -> Option<(StreamId, u64)> {
        match self {
            ProjectedEvent::User(e) => Some((e.stream, e.sequence)),
            ProjectedEvent::Product(e) => Some((e.stream, e.sequence)),
            ProjectedEvent::Order(e) => Some((e.stream, e.sequence)),
            ProjectedEvent::Ignored(_) | ProjectedEvent::Undecodable(_) => None,
        }
    }
}

impl ProjectedRecord {
    /// Decodes a consumed record.
    pub fn from_message<M: Message>(message: &M) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            event: decode(stream_header(message), message.payload()),
        }
    }
}

/// The `stream` header as sent: `Some(Err)` when present but unreadable.
fn stream_header<M: Message>(message: &M) -> Option<Result<StreamId, String>> {
    let headers = message.headers()?;
    let value = headers
        .iter()
        .find(|h| h.key == header::STREAM)
        .map(|h| h.value.unwrap_or_default())?;
    Some(
        std::str::from_utf8(value)
            .map_err(|_| "the stream header is not UTF-8".to_owned())
            .and_then(|text| text.parse::<StreamId>().map_err(|e| e.to_string())),
    )
}

/// Decodes a payload; the `stream` header says its type before decoding
/// (`orders.events` carries order and saga events). Without the header the
/// envelope's own `stream` field says it.
pub(crate) fn decode(
    header: Option<Result<StreamId, String>>,
    payload: Option<&[u8]>,
) -> ProjectedEvent {
    let payload = match payload {
        Some(bytes) if !bytes.is_empty() => bytes,
        _ => return ProjectedEvent::Undecodable("empty payload".into()),
    };
    let stream = match header {
        Some(Ok(stream)) => stream,
        Some(Err(reason)) => return ProjectedEvent::Undecodable(reason),
        None => match stream_of_envelope(payload) {
            Ok(stream) => stream,
            Err(err) => return ProjectedEvent::Undecodable(err.to_string()),
        },
    };
    match stream.kind {
        StreamKind::User => typed(stream, payload, ProjectedEvent::User),
        StreamKind::Product => typed(stream, payload, ProjectedEvent::Product),
        StreamKind::Order => typed(stream, payload, ProjectedEvent::Order),
        StreamKind::Saga => ProjectedEvent::Ignored(stream),
    }
}

/// Decodes the envelope (upcasting an older payload version) and checks it
/// is the stream the header named.
fn typed<E: Versioned>(
    stream: StreamId,
    payload: &[u8],
    wrap: fn(Envelope<E>) -> ProjectedEvent,
) -> ProjectedEvent {
    match decode_event::<E>(payload) {
        Ok(envelope) if envelope.stream == stream => wrap(envelope),
        Ok(envelope) => ProjectedEvent::Undecodable(format!(
            "the stream header says {stream}, the envelope {}",
            envelope.stream
        )),
        Err(err) => ProjectedEvent::Undecodable(format!("{} {stream}: {err}", E::TYPE_NAME)),
    }
}

/// The envelope's `stream` field, read without knowing the payload type: the
/// payload stays a nested value (bincode bytes or a JSON object).
fn stream_of_envelope(payload: &[u8]) -> Result<StreamId, CodecError> {
    match Format::detect(payload)? {
        Format::Bincode => {
            ordersaga_events::codec::decode::<Envelope<Vec<u8>>>(payload).map(|e| e.stream)
        }
        Format::Json => ordersaga_events::codec::decode::<Envelope<serde_json::Value>>(payload)
            .map(|e| e.stream),
    }
}

/// What applying one record did. Whatever it did, the record's partition
/// offset moved past it in the same transaction (except for
/// [`Applied::AlreadyConsumed`], which found it already past).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event was the next of its stream: its row moved.
    Updated,
    /// The event's sequence was applied before (the relay publishes at least
    /// once): nothing but the offset moved.
    Duplicate {
        /// The stream's last applied sequence.
        last: u64,
    },
    /// The event was applied, but events before it never arrived: records
    /// were lost from the topic (retention, a recreated topic).
    Gap {
        /// The sequence that should have come.
        expected: u64,
        /// The sequence that came.
        got: u64,
    },
    /// The record could not be read, and why.
    Skipped(String),
    /// An event of a stream the read model keeps no row for (a saga's).
    Ignored,
    /// The record's offset is behind the partition's stored offset: it was
    /// applied before (a consumer that re-read it). Nothing moved.
    AlreadyConsumed,
}

/// How many records a projection handled, by what applying them did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProjectionCounters {
    /// Events applied to their rows (gaps included).
    pub applied: u64,
    /// Events skipped as already applied, by stream sequence.
    pub duplicates: u64,
    /// Events applied after a gap in their stream.
    pub gaps: u64,
    /// Records that could not be read.
    pub skipped: u64,
    /// Events of streams without rows (sagas), and records re-read below
    /// the stored offset.
    pub ignored: u64,
}

impl ProjectionCounters {
    /// Counts one record's outcome, and logs what deserves it: a gap means
    /// records were lost from the topic, a skip an unreadable record.
    pub fn count(&mut self, record: &ProjectedRecord, applied: &Applied) {
        match applied {
            Applied::Updated => self.applied += 1,
            Applied::Duplicate { .. } => self.duplicates += 1,
            Applied::Gap { expected, got } => {
                self.applied += 1;
                self.gaps += 1;
                let stream = record.event.position().map(|(s, _)| s.to_string());
                tracing::warn!(
                    topic = %record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    stream = stream.as_deref().unwrap_or("?"),
                    expected,
                    got,
                    "a gap in a stream: events were lost from the topic; the read model applied what came (rebuild it from a complete topic to repair)"
                );
            }
            Applied::Skipped(reason) => {
                self.skipped += 1;
                tracing::warn!(
                    topic = %record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    reason = %reason,
                    "an unreadable event record: the read model skips it"
                );
            }
            Applied::Ignored | Applied::AlreadyConsumed => self.ignored += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use ordersaga_events::codec::encode_event;
    use ordersaga_events::saga::SagaEvent;
    use ordersaga_events::{Cents, CommandId, CorrelationId, EventId, UserId};
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
    use uuid::Uuid;

    fn envelope<P>(
        stream: StreamId,
        sequence: u64,
        schema_version: u16,
        payload: P,
    ) -> Envelope<P> {
        Envelope {
            event_id: EventId::new(),
            stream,
            sequence,
            recorded_at: Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version,
            payload,
        }
    }

    fn message(stream: Option<&str>, payload: Vec<u8>) -> OwnedMessage {
        let headers = stream.map(|s| {
            OwnedHeaders::new().insert(Header {
                key: header::STREAM,
                value: Some(s),
            })
        });
        OwnedMessage::new(
            Some(payload),
            None,
            "ns.users.events".into(),
            Timestamp::NotAvailable,
            2,
            41,
            headers,
        )
    }

    #[test]
    fn user_events_decode_in_both_formats_with_or_without_the_stream_header() {
        let stream = StreamId::new(StreamKind::User, Uuid::new_v4());
        let event = envelope(stream, 2, 2, UserEvent::Deposited { amount: Cents(7) });
        for format in [Format::Json, Format::Bincode] {
            let bytes = encode_event(format, &event).unwrap();
            for header in [Some(stream.to_string()), None] {
                let record =
                    ProjectedRecord::from_message(&message(header.as_deref(), bytes.clone()));
                assert_eq!(
                    record.event,
                    ProjectedEvent::User(event.clone()),
                    "{format:?}"
                );
                assert_eq!((record.partition, record.offset), (2, 41));
                assert_eq!(record.topic, "ns.users.events");
            }
        }
    }

    #[test]
    fn a_version_1_registration_is_upcast_and_its_hash_dropped() {
        let id = Uuid::new_v4();
        let stream = StreamId::new(StreamKind::User, id);
        let v1 = serde_json::json!({
            "event_id": EventId::new(),
            "stream": stream,
            "sequence": 1,
            "recorded_at": Utc::now(),
            "correlation_id": CorrelationId::new(),
            "causation_id": CommandId::new(),
            "schema_version": 1,
            "payload": {"Registered": {
                "user_id": id,
                "email": "old@example.com",
                "username": "old",
                "password_hash": "$argon2id$v=19$secret"
            }}
        });
        let bytes = serde_json::to_vec(&v1).unwrap();
        let record = ProjectedRecord::from_message(&message(Some(&stream.to_string()), bytes));
        match record.event {
            ProjectedEvent::User(e) => {
                assert_eq!(e.schema_version, UserEvent::SCHEMA_VERSION);
                assert_eq!(
                    e.payload,
                    UserEvent::Registered {
                        user_id: UserId::from_uuid(id),
                        email: "old@example.com".into(),
                        username: "old".into(),
                    }
                );
            }
            other => panic!("expected a user event, got {other:?}"),
        }
    }

    #[test]
    fn saga_events_are_ignored_and_garbage_is_undecodable_not_a_panic() {
        let saga = StreamId::new(StreamKind::Saga, Uuid::new_v4());
        let bytes =
            encode_event(Format::Json, &envelope(saga, 1, 1, SagaEvent::Completed)).unwrap();
        let record = ProjectedRecord::from_message(&message(Some(&saga.to_string()), bytes));
        assert_eq!(record.event, ProjectedEvent::Ignored(saga));

        let user = StreamId::new(StreamKind::User, Uuid::new_v4());
        for (header, payload) in [
            (Some(user.to_string()), b"{not json".to_vec()),
            (Some("widget:1".to_string()), b"{}".to_vec()),
            (None, vec![0x7f, 1, 2]),
            (Some(user.to_string()), Vec::new()),
        ] {
            let record = ProjectedRecord::from_message(&message(header.as_deref(), payload));
            assert!(
                matches!(record.event, ProjectedEvent::Undecodable(_)),
                "{:?}",
                record.event
            );
        }
    }

    #[test]
    fn an_envelope_of_another_stream_than_its_header_is_undecodable() {
        let stream = StreamId::new(StreamKind::User, Uuid::new_v4());
        let other = StreamId::new(StreamKind::User, Uuid::new_v4());
        let bytes =
            encode_event(Format::Json, &envelope(other, 1, 2, UserEvent::Deactivated)).unwrap();
        let record = ProjectedRecord::from_message(&message(Some(&stream.to_string()), bytes));
        assert!(
            matches!(record.event, ProjectedEvent::Undecodable(reason) if reason.contains("header says"))
        );
    }
}
