//! Dead letters: records no service could decode or handle. They go to
//! `ordersaga.deadletter` with the original key, value and headers, plus
//! headers saying why and where from, so an operator can inspect and replay
//! them. Consumption continues past them.

use super::decode::{headers_of, Refusal};
use super::KafkaConfig;
use ordersaga_actors::journal::{AppendBatch, ConsumedOffset, OutboxRecord};
use ordersaga_actors::Journal;
use ordersaga_events::topics::{header, DEADLETTER};
use rdkafka::message::{Message, OwnedMessage};
use std::time::Duration;

/// Where a record came from.
#[derive(Clone, Debug)]
pub struct Origin {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// The dead-letter record for a record that `service` gave up on.
pub fn record(
    service: &str,
    origin: &Origin,
    code: &str,
    reason: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Vec<(String, Vec<u8>)>,
) -> OutboxRecord {
    let mut headers = headers;
    headers.extend([
        (
            header::DEADLETTER_CODE.to_string(),
            code.as_bytes().to_vec(),
        ),
        (
            header::DEADLETTER_REASON.to_string(),
            reason.as_bytes().to_vec(),
        ),
        (
            header::DEADLETTER_TOPIC.to_string(),
            origin.topic.as_bytes().to_vec(),
        ),
        (
            header::DEADLETTER_PARTITION.to_string(),
            origin.partition.to_string().into_bytes(),
        ),
        (
            header::DEADLETTER_OFFSET.to_string(),
            origin.offset.to_string().into_bytes(),
        ),
        (
            header::DEADLETTER_SERVICE.to_string(),
            service.as_bytes().to_vec(),
        ),
    ]);
    OutboxRecord {
        topic: DEADLETTER.to_string(),
        key: key.map(<[u8]>::to_vec),
        payload: payload.map(<[u8]>::to_vec),
        headers,
    }
}

/// Writes the dead letter of `message`, the `answer` to its sender if it
/// gets one, and the consumed offset in one transaction; retried until it
/// succeeds, because consumption must not move past a record that is
/// neither handled nor dead-lettered.
pub(crate) async fn write(
    journal: &Journal,
    kafka: &KafkaConfig,
    service: &'static str,
    message: &OwnedMessage,
    consumed: ConsumedOffset,
    refusal: Refusal,
    answer: Option<OutboxRecord>,
) {
    tracing::warn!(service, topic = message.topic(), partition = message.partition(), offset = message.offset(), code = refusal.code, reason = %refusal.reason, "dead-lettering a record");
    crate::metrics::metrics()
        .dead_letters
        .with_label_values(&[service, refusal.code])
        .inc();
    let origin = Origin {
        topic: kafka.logical(message.topic()).to_string(),
        partition: message.partition(),
        offset: message.offset(),
    };
    let record = record(
        service,
        &origin,
        refusal.code,
        &refusal.reason,
        message.key(),
        message.payload(),
        headers_of(message),
    );
    let mut backoff = Duration::from_millis(50);
    loop {
        let batch = AppendBatch {
            outbox: std::iter::once(record.clone())
                .chain(answer.clone())
                .collect(),
            offset: Some(consumed.clone()),
            ..AppendBatch::default()
        };
        match journal.append(batch).await {
            Ok(_) => return,
            Err(err) => {
                tracing::error!(service, cause = %err, "cannot write a dead letter; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
