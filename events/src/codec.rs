//! Encoding of commands, events, replies and stored records.
//!
//! Every encoded value starts with a **format byte**, so bytes at rest and on
//! the wire say how to read them:
//!
//! | first byte | body |
//! |---|---|
//! | `0x01` | bincode 2 (serde mode, standard config) |
//! | `{` (or any other byte a JSON document can start with) | JSON (UTF-8), written bare |
//! | `0x02` | JSON after an explicit format byte (accepted on read, never written) |
//!
//! JSON is written bare so that consumers in any language can parse a record
//! as it is: the records this crate writes are JSON objects, so their first
//! byte is `{`.
//! On Kafka the `content-type` header carries the same information
//! ([`Format::content_type`]). Decoding never panics: empty, truncated, unknown
//! or oversized input is a [`CodecError`].
//!
//! Events are versioned ([`Versioned`]): an envelope records the payload's schema
//! version, and reading an older version goes through the payload type's upcast
//! hook, so a store written by an older build still replays.

use crate::envelope::Envelope;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How a value is encoded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// bincode 2, compact; the default.
    #[default]
    Bincode,
    /// JSON, for producers and consumers in any language.
    Json,
}

/// Leading byte of bincode-encoded values.
pub const BINCODE_TAG: u8 = 0x01;
/// An explicit JSON format byte, accepted before a JSON document on read.
pub const JSON_TAG: u8 = 0x02;
/// The first byte of every JSON record this crate writes (an object).
pub const JSON_OBJECT: u8 = b'{';
/// Largest value the decoder will allocate for; larger claims are corrupt.
pub const MAX_DECODE_BYTES: usize = 16 * 1024 * 1024;

impl Format {
    /// The first byte of values written in this format.
    pub const fn tag(self) -> u8 {
        match self {
            Format::Bincode => BINCODE_TAG,
            Format::Json => JSON_OBJECT,
        }
    }

    /// The Kafka `content-type` header value.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Bincode => "application/x-ordersaga-bincode",
            Format::Json => "application/json",
        }
    }

    /// The format named by a `content-type` header value.
    pub fn from_content_type(value: &str) -> Option<Format> {
        let essence = value.split(';').next().unwrap_or("").trim();
        match essence {
            "application/x-ordersaga-bincode" => Some(Format::Bincode),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    /// The format of encoded bytes, read from their first byte.
    pub fn detect(bytes: &[u8]) -> Result<Format, CodecError> {
        match bytes.first() {
            None => Err(CodecError::Empty),
            Some(&BINCODE_TAG) => Ok(Format::Bincode),
            Some(&JSON_TAG) => Ok(Format::Json),
            Some(&first) if json_start(first) => Ok(Format::Json),
            Some(&other) => Err(CodecError::UnknownFormat(other)),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bincode" => Ok(Format::Bincode),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown format {other:?}: expected bincode or json"
            )),
        }
    }
}

/// Why bytes could not be encoded or decoded. Each is a value the caller
/// handles (dead-letter the record, skip a snapshot, report corruption); none
/// is a panic.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Zero bytes.
    #[error("empty input")]
    Empty,
    /// The first byte names no known format.
    #[error("unknown format byte 0x{0:02x}")]
    UnknownFormat(u8),
    /// The bincode body is malformed or of another type.
    #[error("invalid bincode: {0}")]
    Bincode(String),
    /// The JSON body is malformed or of another shape.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Bytes were left over after a complete value: the input is of another type.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// An event written with a schema version this build cannot read.
    #[error(
        "{type_name} schema version {found} is not readable by this build (current {current})"
    )]
    UnknownVersion {
        /// The payload type.
        type_name: &'static str,
        /// The version found.
        found: u16,
        /// This build's version.
        current: u16,
    },
    /// Encoding failed (a value serde cannot represent in this format).
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Whether `byte` can open a JSON document: a value's first character or
/// leading whitespace. None of these is a format byte.
fn json_start(byte: u8) -> bool {
    matches!(
        byte,
        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' | b' ' | b'\t' | b'\n' | b'\r'
    )
}

/// Encodes `value`: bincode after its format byte, or a bare JSON object.
pub fn encode<T: Serialize + ?Sized>(format: Format, value: &T) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Bincode => {
            let mut out = vec![BINCODE_TAG];
            out.extend_from_slice(&encode_payload(value)?);
            Ok(out)
        }
        Format::Json => serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string())),
    }
}

/// Decodes bytes written by [`encode`] (or a bare JSON document).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match Format::detect(bytes)? {
        Format::Bincode => decode_bincode_body(&bytes[1..]),
        Format::Json => serde_json::from_slice(json_body(bytes)).map_err(json_error),
    }
}

/// Decodes the leading fields of a value written by [`encode`]: in bincode
/// the bytes after them are left unread; in JSON unknown fields are ignored.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match Format::detect(bytes)? {
        Format::Bincode => bincode::serde::decode_from_slice(&bytes[1..], bincode_config())
            .map(|(value, _)| value)
            .map_err(|e| CodecError::Bincode(e.to_string())),
        Format::Json => serde_json::from_slice(json_body(bytes)).map_err(json_error),
    }
}

fn json_body(bytes: &[u8]) -> &[u8] {
    if bytes.first() == Some(&JSON_TAG) {
        &bytes[1..]
    } else {
        bytes
    }
}

fn json_error(e: serde_json::Error) -> CodecError {
    CodecError::Json(e.to_string())
}

fn decode_bincode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(body, bincode_config())
        .map_err(|e| CodecError::Bincode(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::TrailingBytes(body.len() - read));
    }
    Ok(value)
}

/// Encodes `value` as a bare bincode body (no format byte), as event
/// payloads nest inside their envelope.
pub fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a bincode event payload body (the nested bytes of an envelope):
/// what an upcast of an older payload version reads its old shape with.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    decode_bincode_body(payload)
}

/// An event envelope's payload, not yet decoded, with the schema version it
/// was written under: what a migration reads an old payload's fields from.
#[derive(Debug)]
pub enum RawEvent {
    /// A bincode envelope's nested payload bytes.
    Bincode {
        /// The payload's schema version.
        schema_version: u16,
        /// The payload, bincode.
        payload: Vec<u8>,
    },
    /// A JSON envelope's payload object.
    Json {
        /// The payload's schema version.
        schema_version: u16,
        /// The payload.
        payload: serde_json::Value,
    },
}

/// Reads an encoded event envelope up to its payload.
pub fn decode_raw_event(bytes: &[u8]) -> Result<RawEvent, CodecError> {
    match Format::detect(bytes)? {
        Format::Bincode => {
            let raw: Envelope<Vec<u8>> = decode_bincode_body(&bytes[1..])?;
            Ok(RawEvent::Bincode {
                schema_version: raw.schema_version,
                payload: raw.payload,
            })
        }
        Format::Json => {
            let raw: Envelope<serde_json::Value> =
                serde_json::from_slice(json_body(bytes)).map_err(json_error)?;
            Ok(RawEvent::Json {
                schema_version: raw.schema_version,
                payload: raw.payload,
            })
        }
    }
}

/// A versioned event payload type.
///
/// Bump `SCHEMA_VERSION` whenever the payload's encoding changes, keep the old
/// shape as a private type, and override the upcast hooks to turn an old
/// payload into the current one. Envelopes record the version they were written
/// with; [`decode_event`] calls the hooks for anything older.
pub trait Versioned: Serialize + DeserializeOwned {
    /// The current schema version of this payload type.
    const SCHEMA_VERSION: u16;
    /// The payload type's name, for errors.
    const TYPE_NAME: &'static str;

    /// Turns a JSON payload of an older `version` into the current JSON shape.
    fn upcast_json(
        version: u16,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, CodecError> {
        let _ = payload;
        Err(Self::unknown_version(version))
    }

    /// Decodes a bincode payload of an older `version` into the current type.
    fn upcast_bincode(version: u16, payload: &[u8]) -> Result<Self, CodecError> {
        let _ = payload;
        Err(Self::unknown_version(version))
    }

    /// The error for a version this build cannot read.
    fn unknown_version(found: u16) -> CodecError {
        CodecError::UnknownVersion {
            type_name: Self::TYPE_NAME,
            found,
            current: Self::SCHEMA_VERSION,
        }
    }
}

/// Encodes an event envelope. The payload travels as a nested value (bincode
/// bytes or a JSON object) so that it can be read by its own schema version.
pub fn encode_event<E: Versioned>(
    format: Format,
    envelope: &Envelope<E>,
) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Bincode => {
            let payload = encode_payload(&envelope.payload)?;
            encode(format, &with_payload(envelope, payload))
        }
        Format::Json => {
            let payload = serde_json::to_value(&envelope.payload)
                .map_err(|e| CodecError::Encode(e.to_string()))?;
            encode(format, &with_payload(envelope, payload))
        }
    }
}

fn with_payload<E, Q>(envelope: &Envelope<E>, payload: Q) -> Envelope<Q> {
    Envelope {
        event_id: envelope.event_id,
        stream: envelope.stream,
        sequence: envelope.sequence,
        recorded_at: envelope.recorded_at,
        correlation_id: envelope.correlation_id,
        causation_id: envelope.causation_id,
        schema_version: envelope.schema_version,
        payload,
    }
}

/// Decodes an event envelope, upcasting an older payload version.
pub fn decode_event<E: Versioned>(bytes: &[u8]) -> Result<Envelope<E>, CodecError> {
    match Format::detect(bytes)? {
        Format::Bincode => {
            let raw: Envelope<Vec<u8>> = decode_bincode_body(&bytes[1..])?;
            let version = raw.schema_version;
            let payload = if version == E::SCHEMA_VERSION {
                decode_bincode_body(&raw.payload)?
            } else {
                E::upcast_bincode(version, &raw.payload)?
            };
            Ok(raw.map_payload(|_| payload).upgraded::<E>())
        }
        Format::Json => {
            let raw: Envelope<serde_json::Value> =
                serde_json::from_slice(json_body(bytes)).map_err(json_error)?;
            let version = raw.schema_version;
            let value = if version == E::SCHEMA_VERSION {
                raw.payload.clone()
            } else {
                E::upcast_json(version, raw.payload.clone())?
            };
            let payload: E = serde_json::from_value(value).map_err(json_error)?;
            Ok(raw.map_payload(|_| payload).upgraded::<E>())
        }
    }
}

impl<E> Envelope<E> {
    /// After upcasting, the envelope describes the current version.
    fn upgraded<V: Versioned>(mut self) -> Self {
        self.schema_version = V::SCHEMA_VERSION;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CommandId, CorrelationId, EventId};
    use crate::stream::{StreamId, StreamKind};
    use chrono::Utc;

    /// Version 2 of a payload that, in version 1, had no `note` field.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Thing {
        count: u32,
        note: String,
    }

    #[derive(Serialize, Deserialize)]
    struct ThingV1 {
        count: u32,
    }

    impl Versioned for Thing {
        const SCHEMA_VERSION: u16 = 2;
        const TYPE_NAME: &'static str = "Thing";

        fn upcast_json(
            version: u16,
            mut payload: serde_json::Value,
        ) -> Result<serde_json::Value, CodecError> {
            match version {
                1 => {
                    payload["note"] = serde_json::Value::String("(v1)".into());
                    Ok(payload)
                }
                other => Err(Self::unknown_version(other)),
            }
        }

        fn upcast_bincode(version: u16, payload: &[u8]) -> Result<Self, CodecError> {
            match version {
                1 => {
                    let old: ThingV1 = decode_bincode_body(payload)?;
                    Ok(Thing {
                        count: old.count,
                        note: "(v1)".into(),
                    })
                }
                other => Err(Self::unknown_version(other)),
            }
        }
    }

    impl Versioned for ThingV1 {
        const SCHEMA_VERSION: u16 = 1;
        const TYPE_NAME: &'static str = "Thing";
    }

    fn envelope<P>(payload: P, schema_version: u16) -> Envelope<P> {
        Envelope {
            event_id: EventId::new(),
            stream: StreamId::new(StreamKind::User, uuid::Uuid::new_v4()),
            sequence: 3,
            recorded_at: Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version,
            payload,
        }
    }

    #[test]
    fn older_versions_are_upcast_in_both_formats() {
        for format in [Format::Bincode, Format::Json] {
            let old = encode_event(format, &envelope(ThingV1 { count: 7 }, 1)).unwrap();
            let read: Envelope<Thing> = decode_event(&old).unwrap();
            assert_eq!(
                read.payload,
                Thing {
                    count: 7,
                    note: "(v1)".into()
                }
            );
            assert_eq!(read.schema_version, 2);
        }
    }

    #[test]
    fn a_newer_version_is_an_error_not_a_panic() {
        let future = encode_event(Format::Bincode, &envelope(ThingV1 { count: 1 }, 9)).unwrap();
        assert!(matches!(
            decode_event::<Thing>(&future),
            Err(CodecError::UnknownVersion { found: 9, .. })
        ));
    }

    #[test]
    fn bare_json_is_accepted_and_garbage_is_an_error() {
        let v: Thing = decode(br#"{"count":1,"note":"x"}"#).unwrap();
        assert_eq!(v.count, 1);
        assert!(matches!(decode::<Thing>(b""), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<Thing>(&[0x7f, 1, 2]),
            Err(CodecError::UnknownFormat(0x7f))
        ));
        assert!(decode::<Thing>(&[BINCODE_TAG, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn content_types_round_trip() {
        for f in [Format::Bincode, Format::Json] {
            assert_eq!(Format::from_content_type(f.content_type()), Some(f));
        }
        assert_eq!(
            Format::from_content_type("application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
