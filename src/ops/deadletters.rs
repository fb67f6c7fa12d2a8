//! `ordersaga deadletters list|show|replay`: the records no service could
//! handle, as the services leave them on `ordersaga.deadletter`
//! ([`crate::kafka::deadletter`]): the original key, value and headers, plus
//! `deadletter-*` headers saying why and where from.
//!
//! A replay sends a letter back to the topic it came from with its original
//! key, value and headers (the `deadletter-*` ones removed) and a
//! [`REPLAYED_FROM`] header naming the letter. It is meant for records the
//! system failed, not records that are wrong: only the codes of
//! [`REPLAYABLE`] are sent; a letter of any other code would be refused
//! again unchanged ([`refusal`]). Letters named one by one (or a `--code`)
//! that a replay cannot help fail the run before anything is sent; letters
//! a sweep (`--since`, `--all`) takes up are reported `refused`, skipped,
//! and do not fail it.
//!
//! Sending a letter twice is harmless: a command carries its id, and the
//! service's processed table answers a command it has applied with its
//! first reply, changing nothing; an event sent again keeps its event id,
//! by which consumers drop duplicates.
//!
//! Delivery guarantee of a replay: each record is produced with an
//! idempotent producer (`acks=all`) and reported `replayed` only once the
//! cluster acknowledged it; a run that fails part-way can be run again.

use super::tail::{rfc3339, timestamp_of, Shown, TailError, TopicReader};
use super::tail_decode::{self, header_value, text_or_hex, Decoded, Record};
use crate::kafka::decode::headers_of;
use crate::kafka::KafkaConfig;
use chrono::{DateTime, Utc};
use ordersaga_events::topics::{header, DEADLETTER};
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// The header a replayed record carries: `PARTITION:OFFSET` of the dead
/// letter it was replayed from.
pub const REPLAYED_FROM: &str = "deadletter-replayed-from";

/// Every header a dead letter adds starts with this; a replay removes them.
const DEADLETTER_PREFIX: &str = "deadletter-";

/// The codes of letters a replay can help, and why: the record was fine,
/// the system was not.
pub const REPLAYABLE: [(&str, &str); 3] = [
    (
        "command_failed",
        "the service failed to apply a readable command (its store, say); once that is fixed the command applies",
    ),
    (
        "overloaded",
        "the service had no room for the command; with room it applies",
    ),
    (
        "unpublishable",
        "the cluster refused to take a record the service wrote (a missing topic, a size limit); once the cluster takes it, it is published",
    ),
];

/// The codes of letters a replay cannot help, and why: sent again
/// unchanged, each would be refused again.
pub const UNREPLAYABLE: [(&str, &str); 5] = [
    (
        "undecodable",
        "the bytes are not a readable envelope; the same bytes are refused again",
    ),
    (
        "invalid_command",
        "the envelope reads but its command does not; resent unchanged it is refused again",
    ),
    (
        "invalid_reply_to",
        "the command names a reply topic that is not NAME.replies; resent unchanged it is refused again",
    ),
    (
        "not_an_operator_command",
        "only Retry may be sent to orders.saga.commands; resent unchanged it is refused again",
    ),
    (
        "corrupt_outbox_record",
        "the raw bytes of an outbox row that could not be read: there is no record to send",
    ),
];

/// Why a replay cannot help a letter of `code`; `None` when it can.
pub fn refusal(code: &str) -> Option<String> {
    if REPLAYABLE.iter().any(|(c, _)| *c == code) {
        return None;
    }
    if let Some((_, why)) = UNREPLAYABLE.iter().find(|(c, _)| *c == code) {
        return Some(format!("replay cannot help a letter of code {code}: {why}"));
    }
    let known: Vec<&str> = REPLAYABLE.iter().map(|(c, _)| *c).collect();
    Some(format!(
        "unknown code {code:?}: only {} letters are replayed",
        known.join(", ")
    ))
}

/// What a dead letter's `deadletter-*` headers say (empty or `None` where
/// a header is missing: a record some other producer put on the topic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterHeaders {
    /// The stable reason code.
    pub code: String,
    /// The reason, for people.
    pub reason: String,
    /// The service that gave up on the record.
    pub service: String,
    /// The logical topic the record came from (`outbox:<topic>` or
    /// `outbox` for a record the relay could not publish or read).
    pub topic: String,
    /// Its partition there (`-1` from an outbox).
    pub partition: Option<i32>,
    /// Its offset there (the outbox position from an outbox).
    pub offset: Option<i64>,
}

impl DeadLetterHeaders {
    /// Reads the `deadletter-*` headers of `headers`.
    pub fn read(headers: &[(String, Vec<u8>)]) -> Self {
        let text = |name| header_value(headers, name).unwrap_or_default().to_string();
        Self {
            code: text(header::DEADLETTER_CODE),
            reason: text(header::DEADLETTER_REASON),
            service: text(header::DEADLETTER_SERVICE),
            topic: text(header::DEADLETTER_TOPIC),
            partition: header_value(headers, header::DEADLETTER_PARTITION)
                .and_then(|v| v.parse().ok()),
            offset: header_value(headers, header::DEADLETTER_OFFSET).and_then(|v| v.parse().ok()),
        }
    }

    /// The topic whose type the original record has: the origin, without
    /// an `outbox:` prefix.
    pub fn origin_topic(&self) -> &str {
        self.topic.strip_prefix("outbox:").unwrap_or(&self.topic)
    }

    /// Where a replay sends the record (a logical topic); `None` when the
    /// letter names none, or names the outbox itself (a corrupt row).
    pub fn destination(&self) -> Option<&str> {
        Some(self.origin_topic()).filter(|t| !t.is_empty() && *t != "outbox")
    }

    /// `from TOPIC/PARTITION/OFFSET by SERVICE`.
    pub fn origin_text(&self) -> String {
        let number = |n: Option<String>| n.unwrap_or_else(|| "?".into());
        format!(
            "from {}/{}/{} by {}",
            if self.topic.is_empty() {
                "?"
            } else {
                &self.topic
            },
            number(self.partition.map(|p| p.to_string())),
            number(self.offset.map(|o| o.to_string())),
            if self.service.is_empty() {
                "?"
            } else {
                &self.service
            },
        )
    }

    /// Whether a replay can help this letter: `Err` says why not.
    pub fn verdict(&self) -> Result<(), String> {
        if let Some(why) = refusal(&self.code) {
            return Err(why);
        }
        if self.destination().is_none() {
            return Err("the letter names no topic it came from".into());
        }
        Ok(())
    }

    /// `headers` without the dead letter's own: the original record's.
    pub fn original_headers(&self, headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        headers
            .iter()
            .filter(|(name, _)| !name.starts_with(DEADLETTER_PREFIX))
            .cloned()
            .collect()
    }
}

/// A letter's place on the dead-letter topic, written `PARTITION:OFFSET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LetterId {
    /// The partition of `ordersaga.deadletter`.
    pub partition: i32,
    /// The offset there.
    pub offset: i64,
}

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// A letter as an operator names it: `PARTITION:OFFSET`, or a bare
/// `OFFSET`, which must then be found in exactly one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LetterRef {
    /// The partition, if given.
    pub partition: Option<i32>,
    /// The offset.
    pub offset: i64,
}

impl FromStr for LetterRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?}: expected OFFSET or PARTITION:OFFSET");
        let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0);
        match text.split_once(':') {
            Some((partition, offset)) => Ok(Self {
                partition: Some(
                    number(partition)
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(bad)?,
                ),
                offset: number(offset).ok_or_else(bad)?,
            }),
            None => Ok(Self {
                partition: None,
                offset: number(text).ok_or_else(bad)?,
            }),
        }
    }
}

impl fmt::Display for LetterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition {
            Some(p) => write!(f, "{p}:{}", self.offset),
            None => write!(f, "{}", self.offset),
        }
    }
}

/// One record of the dead-letter topic.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Where it is on `ordersaga.deadletter`.
    pub id: LetterId,
    /// When it was dead-lettered.
    pub timestamp: Option<DateTime<Utc>>,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub payload: Option<Vec<u8>>,
    /// Every header, the dead letter's own included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// What the `deadletter-*` headers say.
    pub meta: DeadLetterHeaders,
}

impl DeadLetter {
    /// The letter `message` of the dead-letter topic.
    pub fn from_message(message: &OwnedMessage) -> Self {
        let headers = headers_of(message);
        Self {
            id: LetterId {
                partition: message.partition(),
                offset: message.offset(),
            },
            timestamp: timestamp_of(message),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            meta: DeadLetterHeaders::read(&headers),
            headers,
        }
    }

    /// The letter decoded, its original read by the topic it came from.
    pub fn decoded(&self) -> Decoded {
        tail_decode::decode_record(&Record {
            topic: DEADLETTER,
            payload: self.payload.as_deref(),
            headers: &self.headers,
        })
    }

    /// The record as `tail` shows it.
    fn shown<'a>(&'a self, decoded: &'a Decoded) -> Shown<'a> {
        Shown {
            topic: DEADLETTER,
            partition: self.id.partition,
            offset: self.id.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            headers: &self.headers,
            decoded,
        }
    }

    /// The `list` line: `LETTER TIME CODE ORIGIN SERVICE KEY`.
    pub fn list_line(&self) -> String {
        let meta = &self.meta;
        format!(
            "{:<8} {:<24} {:<23} {:<32} {:<9} {}",
            self.id.to_string(),
            self.timestamp.map_or_else(|| "-".into(), rfc3339),
            or_dash(&meta.code),
            format!(
                "{}/{}/{}",
                or_dash(&meta.topic),
                meta.partition.map_or_else(|| "-".into(), |p| p.to_string()),
                meta.offset.map_or_else(|| "-".into(), |o| o.to_string())
            ),
            or_dash(&meta.service),
            self.key.as_deref().map_or_else(|| "-".into(), text_or_hex)
        )
    }

    /// The heading of the `list` lines.
    pub fn list_heading() -> String {
        format!(
            "{:<8} {:<24} {:<23} {:<32} {:<9} KEY",
            "LETTER", "TIME", "CODE", "ORIGIN", "SERVICE"
        )
    }

    /// The `list --json` line.
    pub fn list_json(&self) -> String {
        let meta = &self.meta;
        let line = ListJson {
            letter: self.id.to_string(),
            partition: self.id.partition,
            offset: self.id.offset,
            timestamp: self.timestamp.map(rfc3339),
            code: &meta.code,
            reason: &meta.reason,
            service: &meta.service,
            origin: OriginJson {
                topic: &meta.topic,
                partition: meta.partition,
                offset: meta.offset,
            },
            key: self.key.as_deref().map(text_or_hex),
            replayable: meta.verdict().is_ok(),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Everything about the letter, for people (`show`).
    pub fn show_text(&self) -> String {
        let decoded = self.decoded();
        let meta = &self.meta;
        let mut out = format!(
            "letter    {} ({DEADLETTER} partition {} offset {})\n",
            self.id, self.id.partition, self.id.offset
        );
        let mut line = |name: &str, value: String| {
            out.push_str(&format!("{name:<9} {value}\n"));
        };
        line("time", self.timestamp.map_or_else(|| "-".into(), rfc3339));
        line("code", or_dash(&meta.code).to_string());
        line("reason", or_dash(&meta.reason).to_string());
        line("service", or_dash(&meta.service).to_string());
        line(
            "origin",
            format!(
                "{} partition {} offset {}",
                or_dash(&meta.topic),
                meta.partition.map_or_else(|| "-".into(), |p| p.to_string()),
                meta.offset.map_or_else(|| "-".into(), |o| o.to_string())
            ),
        );
        line(
            "key",
            self.key.as_deref().map_or_else(|| "-".into(), text_or_hex),
        );
        line(
            "replay",
            match meta.verdict() {
                Ok(()) => format!("possible, to {}", meta.destination().unwrap_or_default()),
                Err(why) => format!("refused: {why}"),
            },
        );
        out.push_str("headers\n");
        for (name, value) in &self.headers {
            out.push_str(&format!("  {name}: {}\n", text_or_hex(value)));
        }
        let original = &decoded.value["original"];
        out.push_str(&format!(
            "original  {} {} ({})\n",
            original["kind"].as_str().unwrap_or("?"),
            original["type"].as_str().unwrap_or("?"),
            original["format"].as_str().unwrap_or("unknown format"),
        ));
        let pretty = serde_json::to_string_pretty(&original["value"]).unwrap_or_default();
        for text in pretty.lines() {
            out.push_str(&format!("  {text}\n"));
        }
        out
    }

    /// Everything about the letter as one JSON object (`show --json`): the
    /// record as `tail --json` prints it, and `letter`.
    pub fn show_json(&self) -> String {
        let decoded = self.decoded();
        let shown = self.shown(&decoded);
        let mut json = shown.json();
        json.letter = Some(self.id.to_string());
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// The record a replay sends: to the logical topic the letter came
    /// from, with its original key, value and headers, and
    /// [`REPLAYED_FROM`]. `Err` says why the letter is not replayed.
    pub fn replay_record(&self) -> Result<ReplayRecord, String> {
        self.meta.verdict()?;
        let topic = self.meta.destination().unwrap_or_default().to_string();
        let mut headers = self.meta.original_headers(&self.headers);
        headers.push((REPLAYED_FROM.to_string(), self.id.to_string().into_bytes()));
        Ok(ReplayRecord {
            topic,
            key: self.key.clone(),
            payload: self.payload.clone(),
            headers,
        })
    }
}

/// A `list --json` line, its fields in reading order.
#[derive(Serialize)]
struct ListJson<'a> {
    letter: String,
    partition: i32,
    offset: i64,
    timestamp: Option<String>,
    code: &'a str,
    reason: &'a str,
    service: &'a str,
    origin: OriginJson<'a>,
    key: Option<String>,
    replayable: bool,
}

#[derive(Serialize)]
struct OriginJson<'a> {
    topic: &'a str,
    partition: Option<i32>,
    offset: Option<i64>,
}

pub(super) fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

/// A record a replay sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayRecord {
    /// The logical topic.
    pub topic: String,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub payload: Option<Vec<u8>>,
    /// The original headers and [`REPLAYED_FROM`].
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Which letters `list` and `replay` take.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these codes (any, when empty).
    pub codes: Vec<String>,
    /// Only letters dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    /// Whether `letter` passes.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        (self.codes.is_empty() || self.codes.contains(&letter.meta.code))
            && match (self.since, letter.timestamp) {
                (Some(since), Some(at)) => at >= since,
                _ => true,
            }
    }
}

/// Why a `deadletters` command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Reading the topic failed.
    #[error(transparent)]
    Read(#[from] TailError),
    /// The cluster refused a request.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// No letter at the place named.
    #[error("no dead letter at {0}")]
    NotFound(LetterRef),
    /// A bare offset found in several partitions: name the partition.
    #[error("offset {offset} is in partitions {partitions:?}: name one, as PARTITION:{offset}")]
    Ambiguous {
        /// The offset.
        offset: i64,
        /// The partitions holding a letter at it.
        partitions: Vec<i32>,
    },
    /// Letters named one by one (or a `--code`) that a replay cannot help:
    /// nothing was sent.
    #[error("nothing sent: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// The cluster did not take a replayed record.
    #[error("replaying {letter} to {topic} failed: {cause}")]
    Send {
        /// The letter.
        letter: LetterId,
        /// The topic it was sent to.
        topic: String,
        /// Why.
        cause: String,
    },
}

/// Calls `each` with every letter that passes `filter`, in each
/// partition's order, up to the end of the topic.
pub async fn for_each_letter(
    kafka: &KafkaConfig,
    filter: &Filter,
    mut warn: impl FnMut(&str),
    mut each: impl FnMut(DeadLetter) -> Result<(), DeadLetterError>,
) -> Result<(), DeadLetterError> {
    let start = match filter.since {
        Some(since) => super::tail::Start::Time(since),
        None => super::tail::Start::Beginning,
    };
    let mut reader = TopicReader::open(kafka, DEADLETTER, start, None)?;
    for warning in reader.warnings() {
        warn(warning);
    }
    while let Some(message) = reader.next(true).await? {
        let letter = DeadLetter::from_message(&message);
        if filter.matches(&letter) {
            each(letter)?;
        }
    }
    Ok(())
}

/// The letter at `at`.
pub async fn find_letter(
    kafka: &KafkaConfig,
    at: LetterRef,
) -> Result<DeadLetter, DeadLetterError> {
    let mut reader = TopicReader::at(kafka, DEADLETTER, at.partition, at.offset)?;
    let mut found: Vec<DeadLetter> = reader
        .first_of_each()
        .await?
        .iter()
        .filter(|m| m.offset() == at.offset)
        .map(DeadLetter::from_message)
        .collect();
    match found.len() {
        0 => Err(DeadLetterError::NotFound(at)),
        1 => Ok(found.remove(0)),
        _ => {
            let mut partitions: Vec<i32> = found.iter().map(|l| l.id.partition).collect();
            partitions.sort_unstable();
            Err(DeadLetterError::Ambiguous {
                offset: at.offset,
                partitions,
            })
        }
    }
}

#[cfg(test)]
#[path = "deadletters_tests.rs"]
mod tests;
