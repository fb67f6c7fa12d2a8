//! `ordersaga deadletters replay`: letters sent back to the topics they came
//! from (see [`super::deadletters`] for what a replay sends, which codes it
//! refuses, and why sending one twice is harmless).

use super::deadletters::*;
use super::tail_decode::text_or_hex;
use crate::kafka::clients;
use crate::kafka::KafkaConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::Serialize;
use std::time::Duration;

/// Which letters to replay.
#[derive(Clone, Debug)]
pub enum Selection {
    /// These letters, each of which must be replayable.
    Named(Vec<LetterRef>),
    /// Every letter that passes the filter; those a replay cannot help are
    /// reported and skipped.
    Matching(Filter),
}

/// What happened to one letter of a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Sent, and acknowledged at this partition and offset of `topic`.
    Replayed {
        /// The physical topic.
        topic: String,
        /// Where it landed.
        partition: i32,
        /// Where it landed.
        offset: i64,
    },
    /// `--dry-run`: would be sent to `topic`.
    WouldReplay {
        /// The physical topic.
        topic: String,
    },
    /// Not sent: a replay cannot help it.
    Refused {
        /// Why.
        why: String,
    },
}

/// One letter of a replay and what happened to it.
#[derive(Clone, Debug)]
pub struct Replayed {
    /// The letter.
    pub letter: DeadLetter,
    /// What happened.
    pub outcome: ReplayOutcome,
}

impl Replayed {
    /// One line for people: `replayed 0:3 -> users.commands/1@17 (command_failed) …`.
    pub fn text_line(&self) -> String {
        let letter = &self.letter;
        let code = or_dash(&letter.meta.code);
        match &self.outcome {
            ReplayOutcome::Replayed {
                topic,
                partition,
                offset,
            } => format!(
                "replayed {} ({code}) to {topic} partition {partition} offset {offset}",
                letter.id
            ),
            ReplayOutcome::WouldReplay { topic } => {
                let decoded = letter.decoded();
                let original = &decoded.value["original"];
                format!(
                    "would replay {} ({code}) to {topic} key {}: {} {}",
                    letter.id,
                    letter
                        .key
                        .as_deref()
                        .map_or_else(|| "-".into(), text_or_hex),
                    original["kind"].as_str().unwrap_or("?"),
                    original["type"].as_str().unwrap_or("?"),
                )
            }
            ReplayOutcome::Refused { why } => format!("refused {} ({code}): {why}", letter.id),
        }
    }

    /// One JSON object: `letter`, `action` (`replayed`, `would_replay` or
    /// `refused`), `code`, `key`, and `topic`, `partition`, `offset` or
    /// `reason`.
    pub fn json(&self) -> String {
        let mut line = ReplayedJson {
            letter: self.letter.id.to_string(),
            action: "",
            code: &self.letter.meta.code,
            key: self.letter.key.as_deref().map(text_or_hex),
            topic: None,
            partition: None,
            offset: None,
            reason: None,
        };
        match &self.outcome {
            ReplayOutcome::Replayed {
                topic,
                partition,
                offset,
            } => {
                line.action = "replayed";
                line.topic = Some(topic);
                line.partition = Some(*partition);
                line.offset = Some(*offset);
            }
            ReplayOutcome::WouldReplay { topic } => {
                line.action = "would_replay";
                line.topic = Some(topic);
            }
            ReplayOutcome::Refused { why } => {
                line.action = "refused";
                line.reason = Some(why);
            }
        }
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// A `replay --json` line, its fields in reading order.
#[derive(Serialize)]
struct ReplayedJson<'a> {
    letter: String,
    action: &'static str,
    code: &'a str,
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// Replays the letters `selection` names, or with `dry_run` only says what
/// it would send. Letters named one by one must all be replayable, or
/// nothing is sent ([`DeadLetterError::Refused`]); so must every code of a
/// filter. Letters a filter sweeps up that a replay cannot help are
/// reported as refused and skipped. `each` hears of every letter as it is
/// settled, in order.
pub async fn replay(
    kafka: &KafkaConfig,
    selection: &Selection,
    dry_run: bool,
    warn: impl FnMut(&str),
    mut each: impl FnMut(&Replayed),
) -> Result<Vec<Replayed>, DeadLetterError> {
    let letters = match selection {
        Selection::Named(refs) => {
            let mut letters = Vec::new();
            for &at in refs {
                letters.push(find_letter(kafka, at).await?);
            }
            let refused: Vec<String> = letters
                .iter()
                .filter_map(|l| l.meta.verdict().err().map(|why| format!("{}: {why}", l.id)))
                .collect();
            if !refused.is_empty() {
                return Err(DeadLetterError::Refused(refused));
            }
            letters
        }
        Selection::Matching(filter) => {
            let refused: Vec<String> = filter.codes.iter().filter_map(|c| refusal(c)).collect();
            if !refused.is_empty() {
                return Err(DeadLetterError::Refused(refused));
            }
            let mut letters = Vec::new();
            for_each_letter(kafka, filter, warn, |letter| {
                letters.push(letter);
                Ok(())
            })
            .await?;
            letters
        }
    };
    let producer = if dry_run {
        None
    } else {
        Some(clients::simple_producer(kafka, "ordersaga-deadletters")?)
    };
    // Every record is handed to the producer before any acknowledgement is
    // awaited, so a long replay costs one round trip, not one per letter;
    // the idempotent producer keeps each partition's order.
    let mut pending = Vec::new();
    for letter in letters {
        let record = match letter.replay_record() {
            Ok(record) => record,
            Err(why) => {
                pending.push((letter, Err(why)));
                continue;
            }
        };
        let topic = kafka.name(&record.topic);
        let Some(producer) = &producer else {
            pending.push((letter, Ok((topic, None))));
            continue;
        };
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut sent = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
        if let Some(key) = &record.key {
            sent = sent.key(key);
        }
        if let Some(payload) = &record.payload {
            sent = sent.payload(payload);
        }
        let delivery = producer
            .send_result(sent)
            .map_err(|(err, _)| DeadLetterError::Send {
                letter: letter.id,
                topic: topic.clone(),
                cause: err.to_string(),
            })?;
        pending.push((letter, Ok((topic, Some(delivery)))));
    }
    let mut done = Vec::new();
    let mut failure = None;
    for (letter, plan) in pending {
        let outcome = match plan {
            Err(why) => ReplayOutcome::Refused { why },
            Ok((topic, None)) => ReplayOutcome::WouldReplay { topic },
            Ok((topic, Some(delivery))) => {
                match tokio::time::timeout(Duration::from_secs(60), delivery).await {
                    Ok(Ok(Ok(delivered))) => ReplayOutcome::Replayed {
                        topic,
                        partition: delivered.partition,
                        offset: delivered.offset,
                    },
                    failed => {
                        let cause = match failed {
                            Ok(Ok(Err((err, _)))) => err.to_string(),
                            Ok(Err(_)) => "the producer dropped the record".into(),
                            _ => "no acknowledgement within 60 s".into(),
                        };
                        failure.get_or_insert(DeadLetterError::Send {
                            letter: letter.id,
                            topic,
                            cause,
                        });
                        continue;
                    }
                }
            }
        };
        let replayed = Replayed { letter, outcome };
        each(&replayed);
        done.push(replayed);
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(done),
    }
}
