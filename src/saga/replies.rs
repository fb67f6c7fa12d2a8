//! Replies to saga commands become saga input.

use super::clock::Clock;
use crate::kafka::decode::{decode_record, Decoder, Refusal};
use chrono::{DateTime, Utc};
use ordersaga_events::codec::Format;
use ordersaga_events::saga::SagaCommand;
use ordersaga_events::{CommandEnvelope, CommandId, Reply, SagaId};
use rdkafka::message::OwnedMessage;
use std::sync::Arc;

/// The decoder of `orders.saga.replies`: [`decode_reply`] at `clock`'s time,
/// the time the saga's next deadlines count from.
pub fn reply_decoder(clock: Clock) -> Decoder<SagaCommand> {
    Arc::new(move |message| decode_reply(message, clock.now()))
}

/// Decodes a reply on `orders.saga.replies` into the saga command that
/// delivers it at `now`. The command id is derived from the replied
/// command's id, so a reply delivered twice (or published twice) reaches the
/// saga once.
pub fn decode_reply(
    message: &OwnedMessage,
    now: DateTime<Utc>,
) -> Result<(CommandEnvelope<SagaCommand>, Format), Refusal> {
    let (reply, format): (Reply, Format) = decode_record(message)?;
    Ok((reply_input(reply, now), format))
}

/// The saga input that delivers `reply` at `now`. Its id is derived from the
/// replied command's id, so the same reply, however it arrives (through the
/// reply topic or in process, see [`super::local`]) and however often,
/// reaches the saga once.
pub fn reply_input(reply: Reply, now: DateTime<Utc>) -> CommandEnvelope<SagaCommand> {
    let saga_id = SagaId::from_uuid(reply.correlation_id.as_uuid());
    CommandEnvelope {
        command_id: CommandId::derived(reply.command_id.as_uuid(), "saga-reply"),
        correlation_id: reply.correlation_id,
        reply_to: None,
        issued_at: now,
        command: SagaCommand::Reply {
            saga_id,
            reply,
            now,
        },
    }
}
