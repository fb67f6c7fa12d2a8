//! What a record on any topic of the system says, read by its topic: the
//! commands of each service, the events (upcast to the current version), the
//! replies, the heartbeats and the dead letters, whose original record is
//! read in turn by the topic it came from.
//!
//! Decoding never fails: bytes that do not read as the topic's type are
//! shown as what could be read of them (the command envelope's head, the
//! JSON document) and as hex, with the decoder's reason. Passwords are
//! masked wherever a JSON value shows them (`"password": "***"`), so
//! printing `users.commands` leaks no plaintext.

use crate::kafka::heartbeat::Heartbeat;
use crate::ops::deadletters::DeadLetterHeaders;
use ordersaga_events::codec::{decode, decode_event, Format, Versioned};
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::order::{OrderCommand, OrderEvent};
use ordersaga_events::saga::{SagaCommand, SagaEvent};
use ordersaga_events::topics::{self, header, Service};
use ordersaga_events::user::{UserCommand, UserEvent};
use ordersaga_events::{
    CommandEnvelope, CommandId, Envelope, EnvelopeHead, Outcome, Reply, StreamId, StreamKind,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// How many bytes a text summary shows of bytes it cannot read.
const HEX_PREVIEW: usize = 32;

/// One record as it came off a topic.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The logical topic name (without the namespace).
    pub topic: &'a str,
    /// The value; `None` for a record with a null value.
    pub payload: Option<&'a [u8]>,
    /// The headers, in order.
    pub headers: &'a [(String, Vec<u8>)],
}

impl Record<'_> {
    /// The value of header `name` as text, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(self.headers, name)
    }
}

/// The first value of header `name` in `headers`, as text.
pub fn header_value<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
}

/// What a record says.
#[derive(Clone, Debug, Serialize)]
pub struct Decoded {
    /// `command`, `event`, `reply`, `heartbeat`, `deadletter`, `json` (a
    /// JSON document on a topic the system does not know), `raw` (bytes
    /// that are not JSON), `null` (no value) or `undecodable` (not the
    /// topic's type).
    pub kind: &'static str,
    /// The command or event variant (`Deposit`, `Charged`), a reply's
    /// outcome (`accepted`, `rejected`), a heartbeat's state, a dead
    /// letter's code; for what could not be read, the type that was
    /// expected.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The encoding the value came in, when it is one of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The whole record, decoded, as JSON (passwords masked).
    pub value: Value,
    /// One line for people.
    #[serde(skip)]
    pub summary: String,
}

/// What a topic carries, by its logical name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicKind {
    /// A service's command topic.
    Commands(Service),
    /// `orders.saga.commands`: the operator's saga commands.
    SagaCommands,
    /// A service's event topic.
    Events(Service),
    /// A reply topic (`NAME.replies`).
    Replies,
    /// `services.heartbeats`.
    Heartbeats,
    /// `ordersaga.deadletter`.
    DeadLetters,
    /// Anything else.
    Unknown,
}

impl TopicKind {
    /// The kind of the logical topic `topic`.
    pub fn of(topic: &str) -> TopicKind {
        if let Some(service) = Service::ALL
            .into_iter()
            .find(|s| s.commands_topic() == topic)
        {
            return TopicKind::Commands(service);
        }
        if let Some(service) = Service::ALL.into_iter().find(|s| s.events_topic() == topic) {
            return TopicKind::Events(service);
        }
        match topic {
            topics::SAGA_COMMANDS => TopicKind::SagaCommands,
            topics::HEARTBEATS => TopicKind::Heartbeats,
            topics::DEADLETTER => TopicKind::DeadLetters,
            t if t.ends_with(".replies") => TopicKind::Replies,
            _ => TopicKind::Unknown,
        }
    }
}

/// Decodes `record` by its topic.
pub fn decode_record(record: &Record<'_>) -> Decoded {
    let Some(payload) = record.payload else {
        return Decoded {
            kind: "null",
            type_name: "null".into(),
            format: None,
            value: Value::Null,
            summary: "(no value)".into(),
        };
    };
    match TopicKind::of(record.topic) {
        TopicKind::Commands(Service::Users) => command::<UserCommand>(payload, "users command"),
        TopicKind::Commands(Service::Inventory) => {
            command::<InventoryCommand>(payload, "inventory command")
        }
        TopicKind::Commands(Service::Orders) => command::<OrderCommand>(payload, "orders command"),
        TopicKind::SagaCommands => command::<SagaCommand>(payload, "saga command"),
        TopicKind::Events(Service::Users) => event::<UserEvent>(payload),
        TopicKind::Events(Service::Inventory) => event::<InventoryEvent>(payload),
        TopicKind::Events(Service::Orders) => orders_event(record, payload),
        TopicKind::Replies => reply(payload),
        TopicKind::Heartbeats => heartbeat(payload),
        TopicKind::DeadLetters => dead_letter(record, payload),
        TopicKind::Unknown => unknown(payload),
    }
}

/// A command envelope of command type `C`.
fn command<C: Serialize + DeserializeOwned>(payload: &[u8], what: &str) -> Decoded {
    let format = Format::detect(payload).ok();
    match decode::<CommandEnvelope<C>>(payload) {
        Ok(envelope) => {
            let mut value = to_json(&envelope);
            mask_passwords(&mut value);
            let type_name = variant(&value["command"]);
            let body = variant_body(&value["command"]);
            let summary = format!(
                "{body}  {}",
                ids(envelope.command_id, envelope.reply_to.as_deref())
            );
            Decoded {
                kind: "command",
                type_name,
                format,
                value,
                summary,
            }
        }
        Err(err) => {
            let mut decoded = undecodable(payload, what, &err.to_string());
            // The head names the command and its sender even when the
            // command itself does not read (`invalid_command`).
            if let Ok(head) = EnvelopeHead::read(payload) {
                decoded.value["head"] = json!({
                    "command_id": head.command_id,
                    "correlation_id": head.correlation_id,
                    "reply_to": head.reply_to,
                });
                decoded.summary = format!(
                    "{}  {}",
                    decoded.summary,
                    ids(head.command_id, head.reply_to.as_deref())
                );
            }
            decoded
        }
    }
}

/// An event envelope of payload type `E`, upcast to the current version.
fn event<E: Versioned>(payload: &[u8]) -> Decoded {
    match decode_event::<E>(payload) {
        Ok(envelope) => event_decoded(&envelope, payload),
        Err(err) => undecodable(
            payload,
            &format!("{} envelope", E::TYPE_NAME),
            &err.to_string(),
        ),
    }
}

fn event_decoded<E: Serialize>(envelope: &Envelope<E>, payload: &[u8]) -> Decoded {
    let mut value = to_json(envelope);
    mask_passwords(&mut value);
    let type_name = variant(&value["payload"]);
    let body = variant_body(&value["payload"]);
    Decoded {
        kind: "event",
        summary: format!("{} #{} {body}", envelope.stream, envelope.sequence),
        type_name,
        format: Format::detect(payload).ok(),
        value,
    }
}

/// `orders.events` carries order and saga events; the `stream` header says
/// which, and without it both are tried.
fn orders_event(record: &Record<'_>, payload: &[u8]) -> Decoded {
    let kind = record
        .header(header::STREAM)
        .and_then(|s| s.parse::<StreamId>().ok())
        .map(|s| s.kind);
    match kind {
        Some(StreamKind::Saga) => event::<SagaEvent>(payload),
        Some(_) => event::<OrderEvent>(payload),
        None => match decode_event::<OrderEvent>(payload) {
            Ok(envelope) => event_decoded(&envelope, payload),
            Err(_) => event::<SagaEvent>(payload),
        },
    }
}

fn reply(payload: &[u8]) -> Decoded {
    match decode::<Reply>(payload) {
        Ok(reply) => {
            let (type_name, outcome) = match &reply.outcome {
                Outcome::Accepted { sequences } => (
                    "accepted".to_string(),
                    serde_json::to_string(sequences).unwrap_or_default(),
                ),
                Outcome::Rejected(rejection) => (
                    "rejected".to_string(),
                    format!("{}: {}", rejection.code, rejection.message),
                ),
            };
            let result = reply
                .result
                .as_ref()
                .map(|r| format!(" {}", to_json(r)))
                .unwrap_or_default();
            Decoded {
                kind: "reply",
                summary: format!(
                    "{outcome}{result}  {} {}",
                    reply.stream,
                    ids(reply.command_id, None)
                ),
                type_name,
                format: Format::detect(payload).ok(),
                value: to_json(&reply),
            }
        }
        Err(err) => undecodable(payload, "reply", &err.to_string()),
    }
}

fn heartbeat(payload: &[u8]) -> Decoded {
    match serde_json::from_slice::<Heartbeat>(payload) {
        Ok(beat) => {
            let value = to_json(&beat);
            let state = value["state"].as_str().unwrap_or("?").to_string();
            Decoded {
                kind: "heartbeat",
                summary: format!(
                    "{} {} http {} partitions {:?}{} {}",
                    beat.service,
                    beat.instance_id,
                    beat.http.as_deref().unwrap_or("-"),
                    beat.partitions,
                    beat.partition_count
                        .map(|n| format!(" of {n}"))
                        .unwrap_or_default(),
                    if beat.ready {
                        "ready".to_string()
                    } else {
                        format!("not ready: {}", beat.reasons.join("; "))
                    }
                ),
                type_name: state,
                format: Some(Format::Json),
                value,
            }
        }
        Err(err) => undecodable(payload, "heartbeat", &err.to_string()),
    }
}

/// A dead letter: its `deadletter-*` headers, and the original record read
/// by the topic it came from.
fn dead_letter(record: &Record<'_>, payload: &[u8]) -> Decoded {
    let letter = DeadLetterHeaders::read(record.headers);
    let original_headers = letter.original_headers(record.headers);
    let original = decode_record(&Record {
        topic: letter.origin_topic(),
        payload: Some(payload),
        headers: &original_headers,
    });
    dead_letter_decoded(&letter, original)
}

/// The decoded form of a dead letter whose original value is `original`.
pub fn dead_letter_decoded(letter: &DeadLetterHeaders, original: Decoded) -> Decoded {
    let verdict = letter.verdict();
    let shown = if original.kind == "undecodable" {
        // The letter's reason already says what the decoder said.
        format!(
            "not a {}; {}",
            original.type_name,
            undecodable_data(&original.value)
        )
    } else {
        format!(
            "{} {} {}",
            original.kind, original.type_name, original.summary
        )
    };
    let summary = format!(
        "{}: {}  original: {shown}",
        letter.origin_text(),
        letter.reason,
    );
    Decoded {
        kind: "deadletter",
        type_name: letter.code.clone(),
        format: original.format,
        value: json!({
            "code": letter.code,
            "reason": letter.reason,
            "service": letter.service,
            "origin": {
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
            },
            "replayable": verdict.is_ok(),
            "replay_refused": verdict.err(),
            "original": to_json(&original),
        }),
        summary,
    }
}

/// Bytes on a topic the system does not know: a JSON document, or hex.
fn unknown(payload: &[u8]) -> Decoded {
    match json_document(payload) {
        Some(mut value) => {
            mask_passwords(&mut value);
            Decoded {
                kind: "json",
                type_name: "json".into(),
                format: Some(Format::Json),
                summary: value.to_string(),
                value,
            }
        }
        None => Decoded {
            kind: "raw",
            type_name: "bytes".into(),
            format: None,
            value: json!({"bytes": payload.len(), "hex": hex(payload)}),
            summary: hex_preview(payload),
        },
    }
}

/// What can be shown of bytes that are not the `expected` type.
fn undecodable(payload: &[u8], expected: &str, error: &str) -> Decoded {
    let mut value = json!({
        "error": error,
        "bytes": payload.len(),
        "hex": hex(payload),
    });
    let shown = match json_document(payload) {
        Some(mut document) => {
            mask_passwords(&mut document);
            let text = document.to_string();
            value["json"] = document;
            text
        }
        None => hex_preview(payload),
    };
    Decoded {
        kind: "undecodable",
        type_name: expected.to_string(),
        format: Format::detect(payload).ok(),
        value,
        summary: format!("not a {expected}: {error}; {shown}"),
    }
}

/// `command_id=… reply_to=…`: which command, and who waits for its reply.
fn ids(command_id: CommandId, reply_to: Option<&str>) -> String {
    match reply_to {
        Some(topic) => format!("command_id={command_id} reply_to={topic}"),
        None => format!("command_id={command_id}"),
    }
}

/// What an [`undecodable`] value holds, without the decoder's reason: the
/// JSON document or the first bytes, and the command the head names.
fn undecodable_data(value: &Value) -> String {
    let mut text = match &value["json"] {
        Value::Null => format!(
            "{} bytes: {}{}",
            value["bytes"],
            value["hex"]
                .as_str()
                .map_or("", |h| &h[..h.len().min(HEX_PREVIEW * 2)]),
            if value["bytes"].as_u64().unwrap_or(0) > HEX_PREVIEW as u64 {
                "…"
            } else {
                ""
            }
        ),
        document => document.to_string(),
    };
    if let Some(id) = value["head"]["command_id"].as_str() {
        text.push_str(&format!("  command_id={id}"));
    }
    text
}

/// The bytes as a JSON document, if they are one (a leading format byte
/// `0x02` allowed).
fn json_document(payload: &[u8]) -> Option<Value> {
    let body = match payload.first() {
        Some(&ordersaga_events::codec::JSON_TAG) => &payload[1..],
        _ => payload,
    };
    serde_json::from_slice(body).ok()
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({"error": e.to_string()}))
}

/// The variant name of an externally tagged enum value (`{"Deposit": …}`
/// or `"Completed"`).
fn variant(value: &Value) -> String {
    match value {
        Value::Object(map) if map.len() == 1 => map.keys().next().cloned().unwrap_or_default(),
        Value::String(name) => name.clone(),
        _ => "?".into(),
    }
}

/// The fields of an externally tagged enum value, as compact JSON; empty
/// for a unit variant.
fn variant_body(value: &Value) -> String {
    match value {
        Value::Object(map) if map.len() == 1 => map
            .values()
            .next()
            .map(Value::to_string)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Replaces the value of every `password` field with `***`.
pub fn mask_passwords(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if key == "password" && !field.is_null() {
                    *field = Value::String("***".into());
                } else {
                    mask_passwords(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_passwords),
        _ => {}
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// `N bytes: <hex of the first few>…`.
fn hex_preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(HEX_PREVIEW)];
    let more = if bytes.len() > HEX_PREVIEW { "…" } else { "" };
    format!("{} bytes: {}{more}", bytes.len(), hex(shown))
}

/// Bytes as text when they are UTF-8, else `hex:…`: how keys and header
/// values are shown.
pub fn text_or_hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("hex:{}", hex(bytes)),
    }
}

#[cfg(test)]
#[path = "tail_decode_tests.rs"]
mod tests;
