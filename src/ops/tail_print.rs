//! How `tail` (and `deadletters`) show a record: one text line or one JSON
//! object, with its place, key, headers and what its topic's decoder made
//! of it.

use super::tail_decode::{decode_record, text_or_hex, Decoded, Record};
use crate::kafka::decode::headers_of;
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write;

/// A record to print: where it is, its key and headers, and what it says.
pub struct Shown<'a> {
    /// The logical topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp.
    pub timestamp: Option<DateTime<Utc>>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its headers.
    pub headers: &'a [(String, Vec<u8>)],
    /// Its value, decoded.
    pub decoded: &'a Decoded,
}

impl Shown<'_> {
    /// One line for people: `PARTITION/OFFSET TIME KEY KIND TYPE SUMMARY`.
    pub fn text_line(&self) -> String {
        let time = self.timestamp.map_or_else(|| "-".to_string(), rfc3339);
        let key = self.key.map_or_else(|| "-".to_string(), text_or_hex);
        let d = self.decoded;
        format!(
            "{}/{} {time} {key} {} {} {}",
            self.partition, self.offset, d.kind, d.type_name, d.summary
        )
    }

    /// The record as one JSON object: `topic`, `partition`, `offset`,
    /// `timestamp`, `key`, `headers` (an object; values and a key that are
    /// not UTF-8 are `hex:…`), and the decoded `kind`, `type`, `format`
    /// and `value`.
    pub fn json(&self) -> ShownJson<'_> {
        let mut headers = Map::new();
        for (name, value) in self.headers {
            headers.insert(name.clone(), Value::String(text_or_hex(value)));
        }
        ShownJson {
            letter: None,
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp.map(rfc3339),
            key: self.key.map(text_or_hex),
            headers,
            kind: self.decoded.kind,
            type_name: &self.decoded.type_name,
            format: self.decoded.format,
            value: &self.decoded.value,
        }
    }
}

/// A record as JSON, its fields in reading order ([`Shown::json`]).
#[derive(Debug, Serialize)]
pub struct ShownJson<'a> {
    /// `PARTITION:OFFSET`, when the record is a dead letter shown by
    /// `deadletters show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub letter: Option<String>,
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<String>,
    key: Option<String>,
    headers: Map<String, Value>,
    kind: &'a str,
    #[serde(rename = "type")]
    type_name: &'a str,
    format: Option<ordersaga_events::Format>,
    value: &'a Value,
}

/// A time as the tools print it: RFC 3339, milliseconds, `Z`.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A record's timestamp, if it has one.
pub fn timestamp_of(message: &OwnedMessage) -> Option<DateTime<Utc>> {
    message
        .timestamp()
        .to_millis()
        .and_then(DateTime::from_timestamp_millis)
}

/// Decodes `message` of the logical topic `logical` and writes it as one
/// line.
pub(super) fn print(
    out: &mut impl Write,
    logical: &str,
    message: &OwnedMessage,
    json: bool,
) -> std::io::Result<()> {
    let headers = headers_of(message);
    let decoded = decode_record(&Record {
        topic: logical,
        payload: message.payload(),
        headers: &headers,
    });
    let shown = Shown {
        topic: logical,
        partition: message.partition(),
        offset: message.offset(),
        timestamp: timestamp_of(message),
        key: message.key(),
        headers: &headers,
        decoded: &decoded,
    };
    if json {
        let line = serde_json::to_string(&shown.json()).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")
    } else {
        writeln!(out, "{}", shown.text_line())
    }
}
