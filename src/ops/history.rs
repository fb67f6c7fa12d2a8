//! `ordersaga history`: a stream's events in the order they were recorded,
//! each with its sequence, time, causation and correlation, the way
//! `temporal workflow show` lists a workflow's events.
//!
//! An order and its saga are one story told by two streams (the saga has
//! the order's id): asking for either shows both, merged by the time each
//! event was recorded; events of one instant (one decision's events share
//! it) keep stream order (order before saga), then sequence order.
//!
//! Reads the stopped store: a running service holds its store's lock.

use super::replay::{kinds, open_store, service_of, ReplayError};
use chrono::{DateTime, SecondsFormat, Utc};
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::recovery::decode_stored;
use ordersaga_actors::{Aggregate, Journal};
use ordersaga_events::saga::saga_of;
use ordersaga_events::topics::Service;
use ordersaga_events::{CommandId, CorrelationId, EventId, OrderId, StreamId, StreamKind};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use uuid::Uuid;

/// One event, decoded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Its stream, written `kind:uuid`.
    #[serde(serialize_with = "as_text")]
    pub stream: StreamId,
    /// Its position in the stream.
    pub sequence: u64,
    /// The event's name (`Placed`, `LineReserved`, …).
    pub event: String,
    /// The event's fields (null for an event without any).
    pub payload: Value,
    /// The event's id (what consumers de-duplicate by).
    pub event_id: EventId,
    /// The command that caused it.
    pub causation_id: CommandId,
    /// The request it belongs to.
    pub correlation_id: CorrelationId,
}

fn as_text<S: serde::Serializer>(stream: &StreamId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(stream)
}

/// The streams whose events make up the history of `stream`: an order and
/// its saga for either, the stream alone otherwise.
pub fn streams_of(stream: StreamId) -> Vec<StreamId> {
    match stream.kind {
        StreamKind::Order | StreamKind::Saga => {
            let saga = saga_of(OrderId::from_uuid(stream.id)).as_uuid();
            vec![
                StreamId::new(StreamKind::Order, stream.id),
                StreamId::new(StreamKind::Saga, saga),
            ]
        }
        StreamKind::User | StreamKind::Product => vec![stream],
    }
}

/// Every event of `stream`, of aggregate `A`, in sequence order.
fn read<A: Aggregate>(journal: &Journal, stream: StreamId) -> Result<Vec<Entry>, ReplayError> {
    let mut out = Vec::new();
    for item in journal.read_stream(&stream, 1) {
        let (sequence, bytes) = item?;
        let envelope = decode_stored::<A>(&stream, sequence, &bytes)?;
        let (event, payload) =
            name_and_fields(serde_json::to_value(&envelope.payload).unwrap_or(Value::Null));
        out.push(Entry {
            recorded_at: envelope.recorded_at,
            stream,
            sequence,
            event,
            payload,
            event_id: envelope.event_id,
            causation_id: envelope.causation_id,
            correlation_id: envelope.correlation_id,
        });
    }
    Ok(out)
}

/// An event enum as serde writes it (`"Confirmed"`, or `{"Cancelled":
/// {…}}`) split into its name and its fields.
fn name_and_fields(value: Value) -> (String, Value) {
    match value {
        Value::String(name) => (name, Value::Null),
        Value::Object(map) if map.len() == 1 => {
            let (name, fields) = map.into_iter().next().unwrap_or_default();
            (name, fields)
        }
        other => ("?".to_owned(), other),
    }
}

/// The history of `stream` in `journal`: its events, and for an order or a
/// saga those of the other too, in the order they were recorded. Fails
/// when none of the streams has an event, or on the first event that cannot
/// be read (naming its stream and sequence).
pub fn history(journal: &Journal, stream: StreamId) -> Result<Vec<Entry>, ReplayError> {
    let mut entries = Vec::new();
    for stream in streams_of(stream) {
        entries.extend(match stream.kind {
            StreamKind::User => read::<User>(journal, stream)?,
            StreamKind::Product => read::<Product>(journal, stream)?,
            StreamKind::Order => read::<Order>(journal, stream)?,
            StreamKind::Saga => read::<Saga>(journal, stream)?,
        });
    }
    if entries.is_empty() {
        return Err(ReplayError::NotFound(format!(
            "no stream {stream} in {}",
            journal.path().display()
        )));
    }
    entries.sort_by(|a, b| {
        (a.recorded_at, a.stream, a.sequence).cmp(&(b.recorded_at, b.stream, b.sequence))
    });
    Ok(entries)
}

/// Finds the stream `text` names and opens its store under `data`:
/// `kind:uuid` names both; a bare uuid is looked up in the orders, users
/// and inventory stores in turn (an order's id finds the order).
pub fn locate(data: &Path, text: &str) -> Result<(Journal, StreamId), ReplayError> {
    let text = text.trim();
    if text.contains(':') {
        let stream: StreamId =
            text.parse()
                .map_err(|err: ordersaga_events::stream::ParseStreamIdError| {
                    ReplayError::Usage(err.to_string())
                })?;
        return Ok((open_store(data, service_of(stream.kind))?, stream));
    }
    let id = Uuid::parse_str(text)
        .map_err(|_| ReplayError::Usage(format!("expected KIND:UUID or a UUID, got {text:?}")))?;
    for service in [Service::Orders, Service::Users, Service::Inventory] {
        if !data.join(service.name()).is_dir() {
            continue;
        }
        let journal = open_store(data, service)?;
        for kind in kinds(service) {
            let stream = StreamId::new(*kind, id);
            if journal.version(&stream)? > 0 {
                return Ok((journal, stream));
            }
        }
    }
    Err(ReplayError::NotFound(format!(
        "no stream with id {id} in the stores under {}",
        data.display()
    )))
}

/// An event's time as printed: RFC 3339 in UTC with every digit stored, so
/// that it can be handed back to `replay --at` and land on this event.
pub fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Longest summary printed in a text line.
const SUMMARY_CHARS: usize = 72;

/// A one-line summary of an event's fields: `key=value` pairs, ids cut to
/// their first eight digits, lists as their length, cut to a line's width.
pub fn summary(payload: &Value) -> String {
    fn short(value: &Value) -> String {
        match value {
            Value::String(text) if Uuid::parse_str(text).is_ok() => format!("{}…", &text[..8]),
            Value::String(text) => text.clone(),
            Value::Array(items) => format!("[{}]", items.len()),
            Value::Object(map) if map.len() == 1 => {
                // A nested enum, as a saga step is: its name and fields.
                let mut entries = map.iter();
                match entries.next() {
                    Some((name, Value::Null)) => name.clone(),
                    Some((name, fields @ Value::Object(_))) => {
                        format!("{name}({})", summary(fields))
                    }
                    Some((name, other)) => format!("{name}({})", short(other)),
                    None => String::new(),
                }
            }
            other => other.to_string(),
        }
    }
    let text = match payload {
        Value::Null => String::new(),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}={}", short(value)))
            .collect::<Vec<_>>()
            .join(" "),
        other => short(other),
    };
    if text.chars().count() > SUMMARY_CHARS {
        let cut: String = text.chars().take(SUMMARY_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_split_into_name_and_fields() {
        assert_eq!(
            name_and_fields(json!("Confirmed")),
            ("Confirmed".to_owned(), Value::Null)
        );
        assert_eq!(
            name_and_fields(json!({"Cancelled": {"reason": "x"}})),
            ("Cancelled".to_owned(), json!({"reason": "x"}))
        );
    }

    #[test]
    fn summaries_are_short() {
        let id = "0b6b58a4-5c2d-4c59-9d53-0d8f2dc3c2a1";
        assert_eq!(
            summary(&json!({"user_id": id, "lines": [1, 2], "total": 300})),
            "lines=[2] total=300 user_id=0b6b58a4…"
        );
        assert_eq!(
            summary(&json!({"step": {"Release": {"product_id": id}}})),
            "step=Release(product_id=0b6b58a4…)"
        );
        assert_eq!(summary(&Value::Null), "");
        let long = summary(&json!({"reason": "x".repeat(200)}));
        assert_eq!(long.chars().count(), SUMMARY_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn an_order_and_its_saga_are_one_history() {
        let id = Uuid::new_v4();
        let both = streams_of(StreamId::new(StreamKind::Saga, id));
        assert_eq!(
            both,
            vec![
                StreamId::new(StreamKind::Order, id),
                StreamId::new(StreamKind::Saga, id)
            ]
        );
        let user = StreamId::new(StreamKind::User, id);
        assert_eq!(streams_of(user), vec![user]);
    }
}
