//! The records a service writes to its outbox, addressed and encoded: its
//! events, its replies, and the commands its aggregates send. Aggregates
//! decide in domain types; this is the one place that turns them into
//! topics, keys, bytes and headers. Every record carries a W3C
//! `traceparent`, so one order can be followed across the three services.

use super::error::ServiceError;
use crate::journal::{JournalError, OutboxRecord};
use crate::outgoing::{Outgoing, OutgoingCommand};
use chrono::{DateTime, Utc};
use ordersaga_events::codec::{encode, encode_event, CodecError, Format};
use ordersaga_events::topics::{header, Service};
use ordersaga_events::{CommandEnvelope, CorrelationId, Envelope, Reply, Versioned};
use uuid::Uuid;

/// The W3C trace context of a record: the correlation id is the trace id,
/// and the first eight bytes of `span` (the command or event id the record
/// carries) the parent id. Sampled, so that a collector keeps it.
pub fn traceparent(correlation: CorrelationId, span: Uuid) -> String {
    let span = span.as_bytes();
    let mut parent = [0u8; 8];
    parent.copy_from_slice(&span[..8]);
    // An all-zero parent id is invalid in the W3C format.
    if parent == [0; 8] {
        parent[7] = 1;
    }
    let hex: String = parent.iter().map(|b| format!("{b:02x}")).collect();
    format!("00-{}-{hex}-01", correlation.as_uuid().as_simple())
}

fn header_of(name: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_string(), value.into())
}

fn content_type(format: Format) -> (String, Vec<u8>) {
    header_of(header::CONTENT_TYPE, format.content_type().as_bytes())
}

/// A record that cannot be encoded: the batch is invalid, nothing is written.
pub(crate) fn encode_error(err: CodecError) -> ServiceError {
    ServiceError::Journal(JournalError::InvalidBatch(err.to_string()))
}

/// The record publishing `envelope` (already encoded as `payload` in
/// `format`) to `service`'s events topic, keyed by aggregate id.
pub(crate) fn event_record<E: Versioned>(
    service: Service,
    aggregate: Uuid,
    envelope: &Envelope<E>,
    format: Format,
    payload: Vec<u8>,
) -> OutboxRecord {
    OutboxRecord {
        topic: service.events_topic().to_string(),
        key: Some(aggregate.to_string().into_bytes()),
        payload: Some(payload),
        headers: vec![
            content_type(format),
            header_of(header::EVENT_ID, envelope.event_id.to_string()),
            header_of(header::STREAM, envelope.stream.to_string()),
            header_of(
                header::TRACEPARENT,
                traceparent(envelope.correlation_id, envelope.event_id.as_uuid()),
            ),
        ],
    }
}

/// The events of one decision, encoded for the store (bincode) and for the
/// events topic (`format`).
pub(crate) fn encode_for_store_and_topic<E: Versioned>(
    envelope: &Envelope<E>,
    format: Format,
) -> Result<(Vec<u8>, Vec<u8>), ServiceError> {
    let stored = encode_event(Format::Bincode, envelope).map_err(encode_error)?;
    let published = match format {
        Format::Bincode => stored.clone(),
        format => encode_event(format, envelope).map_err(encode_error)?,
    };
    Ok((stored, published))
}

/// The record carrying `reply` to its reply topic, keyed by correlation id.
pub fn reply_record(
    topic: &str,
    reply: &Reply,
    format: Format,
) -> Result<OutboxRecord, ServiceError> {
    Ok(OutboxRecord {
        topic: topic.to_string(),
        key: Some(reply.correlation_id.to_string().into_bytes()),
        payload: Some(encode(format, reply).map_err(encode_error)?),
        headers: vec![
            content_type(format),
            header_of(
                header::TRACEPARENT,
                traceparent(reply.correlation_id, reply.command_id.as_uuid()),
            ),
        ],
    })
}

/// The record sending `outgoing` to its service's commands topic, keyed by
/// the addressed aggregate, in bincode, asking for replies on `reply_to`.
pub fn outbox_record(
    outgoing: &Outgoing,
    reply_to: Option<&str>,
    issued_at: DateTime<Utc>,
) -> Result<OutboxRecord, CodecError> {
    fn envelope<C: serde::Serialize>(
        outgoing: &Outgoing,
        reply_to: Option<&str>,
        issued_at: DateTime<Utc>,
        command: &C,
    ) -> Result<Vec<u8>, CodecError> {
        encode(
            Format::Bincode,
            &CommandEnvelope {
                command_id: outgoing.command_id,
                correlation_id: outgoing.correlation_id,
                reply_to: reply_to.map(str::to_owned),
                issued_at,
                command,
            },
        )
    }
    let payload = match &outgoing.command {
        OutgoingCommand::User(c) => envelope(outgoing, reply_to, issued_at, c)?,
        OutgoingCommand::Inventory(c) => envelope(outgoing, reply_to, issued_at, c)?,
        OutgoingCommand::Order(c) => envelope(outgoing, reply_to, issued_at, c)?,
    };
    Ok(OutboxRecord {
        topic: outgoing.command.service().commands_topic().to_string(),
        key: Some(outgoing.command.aggregate_id().to_string().into_bytes()),
        payload: Some(payload),
        headers: vec![
            content_type(Format::Bincode),
            header_of(
                header::TRACEPARENT,
                traceparent(outgoing.correlation_id, outgoing.command_id.as_uuid()),
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_w3c_shaped_with_the_correlation_as_trace_id() {
        let correlation = CorrelationId::from_uuid(Uuid::from_u128(0xabc));
        let span = Uuid::from_u128(0x0102_0304_0506_0708_0000_0000_0000_0000);
        assert_eq!(
            traceparent(correlation, span),
            "00-00000000000000000000000000000abc-0102030405060708-01"
        );
        // A span id whose first half is zero still gives a valid parent id.
        let zero = traceparent(correlation, Uuid::from_u128(0xffff));
        assert!(zero.ends_with("-0000000000000001-01"), "{zero}");
    }
}
