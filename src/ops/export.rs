//! `ordersaga export`: a service's events, in store order, as a file that
//! `ordersaga import` loads into a new store.
//!
//! The file, JSON (the default): one JSON object per line.
//!
//! 1. A header: `{"ordersaga_export": 1, "service": "users", "format":
//!    "json", "ordersaga_version": "0.1.0", "exported_at": …, "store_id":
//!    …, "since": null, "until": null}`. `import` refuses a file of another
//!    service or of a format version it does not know.
//! 2. One event envelope per line, in the store's log order: exactly the
//!    JSON the relay publishes on the service's events topic (see
//!    `docs/TOPICS.md`): event id, stream, sequence, recorded_at,
//!    correlation and causation ids, schema version, payload. Events stored
//!    in an older schema version are upcast and written in the current one:
//!    a user's `Registered` of version 1 carried a password hash, and the
//!    export never does.
//! 3. A trailer, `{"ordersaga_export_end": {"events": N}}`: a file cut short
//!    (a full disk, a killed process) has none, and `import` refuses it
//!    instead of loading a store with its last events missing.
//!
//! With `--format bincode` the header is the same JSON line (saying
//! `"format": "bincode"`), and every record after it is a frame: its length
//! as four big-endian bytes, then the envelope in the codec's bincode (its
//! first byte 0x01) or, for the trailer, the JSON object above.
//!
//! Secrets (users' password hashes) are never exported: they live beside
//! the events in the store, never in one, and an export is a file that
//! travels. A store imported from an export has no password hashes, and its
//! users cannot log in until their passwords are set again.
//!
//! `--since`/`--until` keep the events recorded in `[since, until)`. Such an
//! export is partial (its streams do not start at sequence 1): the header
//! says so, and `import` refuses it, since it could not rebuild a store.

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::journal::LogEntry;
use ordersaga_actors::recovery::decode_stored;
use ordersaga_actors::{Journal, JournalError};
use ordersaga_events::codec::{decode_event, decode_prefix, encode_event, CodecError};
use ordersaga_events::inventory::InventoryEvent;
use ordersaga_events::order::OrderEvent;
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{CorrelationId, Envelope, EventId, Format, StreamId, StreamKind};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an operator tool failed: a sentence naming what and where.
pub type ToolError = Box<dyn std::error::Error + Send + Sync>;

/// The export file format version this build writes and reads.
pub const EXPORT_VERSION: u32 = 1;

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The export file format version ([`EXPORT_VERSION`]).
    pub ordersaga_export: u32,
    /// The service whose store was exported (`users`, `orders`, `inventory`).
    pub service: String,
    /// How the records after the header are encoded.
    pub format: Format,
    /// The version of the ordersaga build that wrote the file.
    pub ordersaga_version: String,
    /// When the export was taken.
    pub exported_at: DateTime<Utc>,
    /// The exported store's id.
    pub store_id: uuid::Uuid,
    /// Only events recorded at or after this time, when given.
    pub since: Option<DateTime<Utc>>,
    /// Only events recorded before this time, when given.
    pub until: Option<DateTime<Utc>>,
}

impl Header {
    /// Whether the file holds every event of the store (no time filter).
    pub fn complete(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }
}

/// The last record of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// What the export holds.
    pub ordersaga_export_end: End,
}

/// The counts a trailer carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Event records in the file.
    pub events: u64,
}

/// An event of any of the four stream kinds, decoded (older schema
/// versions upcast to the current one).
#[derive(Clone, Debug, PartialEq)]
pub enum AnyEvent {
    /// A user's event (users store).
    User(Envelope<UserEvent>),
    /// A product's event (inventory store).
    Product(Envelope<InventoryEvent>),
    /// An order's event (orders store).
    Order(Envelope<OrderEvent>),
    /// An order saga's event (orders store).
    Saga(Envelope<SagaEvent>),
}

/// Runs `$body` with `$e` bound to the envelope, whatever its payload type.
macro_rules! each {
    ($event:expr, $e:ident => $body:expr) => {
        match $event {
            AnyEvent::User($e) => $body,
            AnyEvent::Product($e) => $body,
            AnyEvent::Order($e) => $body,
            AnyEvent::Saga($e) => $body,
        }
    };
}

/// The leading fields of an encoded envelope: enough to know which payload
/// type to decode it as.
#[derive(Deserialize)]
struct Peek {
    #[allow(dead_code)]
    event_id: EventId,
    stream: StreamId,
}

impl AnyEvent {
    /// Decodes an envelope as the stores, the topics and the export files
    /// hold it (bincode or JSON), by the kind of its stream.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let peek: Peek = decode_prefix(bytes)?;
        Ok(match peek.stream.kind {
            StreamKind::User => AnyEvent::User(decode_event(bytes)?),
            StreamKind::Product => AnyEvent::Product(decode_event(bytes)?),
            StreamKind::Order => AnyEvent::Order(decode_event(bytes)?),
            StreamKind::Saga => AnyEvent::Saga(decode_event(bytes)?),
        })
    }

    /// Decodes a store's log entry, checking that the envelope belongs where
    /// the log says (its stream and sequence).
    pub fn from_log(entry: &LogEntry) -> Result<Self, JournalError> {
        let (stream, sequence, bytes) = (&entry.stream, entry.sequence, &entry.bytes[..]);
        Ok(match stream.kind {
            StreamKind::User => AnyEvent::User(decode_stored::<User>(stream, sequence, bytes)?),
            StreamKind::Product => {
                AnyEvent::Product(decode_stored::<Product>(stream, sequence, bytes)?)
            }
            StreamKind::Order => AnyEvent::Order(decode_stored::<Order>(stream, sequence, bytes)?),
            StreamKind::Saga => AnyEvent::Saga(decode_stored::<Saga>(stream, sequence, bytes)?),
        })
    }

    /// Encodes the envelope in `format`, in the current schema version.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, CodecError> {
        each!(self, e => encode_event(format, e))
    }

    /// The event's stream.
    pub fn stream(&self) -> StreamId {
        each!(self, e => e.stream)
    }

    /// The event's sequence in its stream.
    pub fn sequence(&self) -> u64 {
        each!(self, e => e.sequence)
    }

    /// The event's id.
    pub fn event_id(&self) -> EventId {
        each!(self, e => e.event_id)
    }

    /// When the event was recorded.
    pub fn recorded_at(&self) -> DateTime<Utc> {
        each!(self, e => e.recorded_at)
    }

    /// The correlation id of the request that caused it.
    pub fn correlation_id(&self) -> CorrelationId {
        each!(self, e => e.correlation_id)
    }
}

/// The service whose store holds streams of `kind`.
pub fn service_of(kind: StreamKind) -> Service {
    match kind {
        StreamKind::User => Service::Users,
        StreamKind::Order | StreamKind::Saga => Service::Orders,
        StreamKind::Product => Service::Inventory,
    }
}

/// The lower-case name of `format` (`json`, `bincode`), as options take it.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Json => "json",
        Format::Bincode => "bincode",
    }
}

/// The service named `name` (`users`, `orders`, `inventory`).
pub fn service_named(name: &str) -> Option<Service> {
    Service::ALL.into_iter().find(|s| s.name() == name)
}

/// The store directory of `service` under the data directory `data`.
pub fn store_path(data: &Path, service: Service) -> PathBuf {
    data.join(service.name())
}

/// Opens `service`'s existing store under `data`. It must be stopped: a
/// running service holds the store's lock, and the open fails saying so.
pub fn open_store(data: &Path, service: Service) -> Result<Journal, ToolError> {
    let path = store_path(data, service);
    if !path.is_dir() {
        return Err(format!("no {} store at {}", service.name(), path.display()).into());
    }
    Ok(Journal::open_path(&path)?)
}

/// Writes the records of an export file, in either format.
pub struct ExportWriter<W: Write> {
    out: W,
    format: Format,
    events: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Writes `header` and returns a writer for the records after it.
    pub fn start(mut out: W, header: &Header) -> Result<Self, ToolError> {
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(Self {
            out,
            format: header.format,
            events: 0,
        })
    }

    /// Writes one event.
    pub fn event(&mut self, event: &AnyEvent) -> Result<(), ToolError> {
        let bytes = event.encode(self.format)?;
        self.record(&bytes)?;
        self.events += 1;
        Ok(())
    }

    fn record(&mut self, bytes: &[u8]) -> Result<(), ToolError> {
        match self.format {
            Format::Json => {
                self.out.write_all(bytes)?;
                self.out.write_all(b"\n")?;
            }
            Format::Bincode => {
                let len = u32::try_from(bytes.len())
                    .map_err(|_| format!("a record of {} bytes is too large", bytes.len()))?;
                self.out.write_all(&len.to_be_bytes())?;
                self.out.write_all(bytes)?;
            }
        }
        Ok(())
    }

    /// Writes the trailer and flushes; returns the events written.
    pub fn end(mut self) -> Result<u64, ToolError> {
        let trailer = Trailer {
            ordersaga_export_end: End {
                events: self.events,
            },
        };
        let bytes = serde_json::to_vec(&trailer)?;
        self.record(&bytes)?;
        self.out.flush()?;
        Ok(self.events)
    }
}

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The service whose store it is.
    pub service: Service,
    /// Only events recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events recorded before this time.
    pub until: Option<DateTime<Utc>>,
    /// How records are encoded.
    pub format: Format,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// Events written.
    pub events: u64,
    /// Log entries read (written or left out by the time filter).
    pub read: u64,
    /// The first and last log positions written, when any was.
    pub positions: Option<(u64, u64)>,
    /// Distinct streams written.
    pub streams: u64,
}

/// Writes `journal`'s events (the store of `options.service`) to `out`, in
/// log order, ticking `bar` per log entry. An entry that cannot be read
/// stops the export with an error naming the store, the log position and,
/// when known, the stream and sequence.
pub fn export(
    journal: &Journal,
    out: impl Write,
    options: &ExportOptions,
    bar: &ProgressBar,
) -> Result<ExportSummary, ToolError> {
    let service = options.service;
    let header = Header {
        ordersaga_export: EXPORT_VERSION,
        service: service.name().to_string(),
        format: options.format,
        ordersaga_version: env!("CARGO_PKG_VERSION").to_string(),
        exported_at: Utc::now(),
        store_id: journal.store_id(),
        since: options.since,
        until: options.until,
    };
    let mut writer = ExportWriter::start(out, &header)?;
    let mut summary = ExportSummary::default();
    let mut streams = std::collections::HashSet::new();
    let mut last = 0;
    let store = || format!("{} store at {}", service.name(), journal.path().display());
    for item in journal.read_log(1) {
        let entry = item.map_err(|err| {
            format!(
                "{}: the log entry after position {last} cannot be read: {err}",
                store()
            )
        })?;
        last = entry.position;
        summary.read += 1;
        bar.inc(1);
        if service_of(entry.stream.kind) != service {
            return Err(format!(
                "{}: log position {} names {}#{}, a stream of the {} store",
                store(),
                entry.position,
                entry.stream,
                entry.sequence,
                service_of(entry.stream.kind).name()
            )
            .into());
        }
        let event = AnyEvent::from_log(&entry).map_err(|err| {
            format!(
                "{}: log position {} ({}#{}): {err}",
                store(),
                entry.position,
                entry.stream,
                entry.sequence
            )
        })?;
        let at = event.recorded_at();
        if options.since.is_some_and(|since| at < since)
            || options.until.is_some_and(|until| at >= until)
        {
            continue;
        }
        writer.event(&event).map_err(|err| {
            format!(
                "cannot write log position {} ({}#{}): {err}",
                entry.position, entry.stream, entry.sequence
            )
        })?;
        streams.insert(entry.stream);
        summary.events += 1;
        summary.positions = Some(match summary.positions {
            None => (entry.position, entry.position),
            Some((first, _)) => (first, entry.position),
        });
    }
    writer.end()?;
    summary.streams = streams.len() as u64;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordersaga_events::{CommandId, UserId};

    fn registered() -> AnyEvent {
        let user_id = UserId::new();
        AnyEvent::User(Envelope {
            event_id: EventId::new(),
            stream: StreamId::new(StreamKind::User, user_id.as_uuid()),
            sequence: 1,
            recorded_at: Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version: 2,
            payload: UserEvent::Registered {
                user_id,
                email: "a@example.com".into(),
                username: "a".into(),
            },
        })
    }

    #[test]
    fn an_event_decodes_by_its_stream_kind_in_both_formats() {
        let event = registered();
        for format in [Format::Json, Format::Bincode] {
            let bytes = event.encode(format).unwrap();
            assert_eq!(AnyEvent::decode(&bytes).unwrap(), event);
        }
        assert!(AnyEvent::decode(b"{\"stream\": 1}").is_err());
        assert!(AnyEvent::decode(&[0x01, 0xff]).is_err());
    }

    #[test]
    fn a_json_export_is_a_header_the_events_and_a_trailer_one_per_line() {
        let header = Header {
            ordersaga_export: EXPORT_VERSION,
            service: "users".into(),
            format: Format::Json,
            ordersaga_version: "0".into(),
            exported_at: Utc::now(),
            store_id: uuid::Uuid::new_v4(),
            since: None,
            until: None,
        };
        let mut out = Vec::new();
        let mut writer = ExportWriter::start(&mut out, &header).unwrap();
        writer.event(&registered()).unwrap();
        assert_eq!(writer.end().unwrap(), 1);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(serde_json::from_str::<Header>(lines[0]).unwrap(), header);
        assert!(AnyEvent::decode(lines[1].as_bytes()).is_ok());
        assert_eq!(
            serde_json::from_str::<Trailer>(lines[2]).unwrap(),
            Trailer {
                ordersaga_export_end: End { events: 1 }
            }
        );
    }
}
