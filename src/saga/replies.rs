//! Replies to saga commands become saga input.

use crate::kafka::decode::{decode_record, Refusal};
use chrono::Utc;
use ordersaga_events::codec::Format;
use ordersaga_events::saga::SagaCommand;
use ordersaga_events::{CommandEnvelope, CommandId, Reply, SagaId};
use rdkafka::message::OwnedMessage;

/// Decodes a reply on `orders.saga.replies` into the saga command that
/// delivers it. The command id is derived from the replied command's id, so a
/// reply delivered twice (or published twice) reaches the saga once.
pub fn decode_reply(
    message: &OwnedMessage,
) -> Result<(CommandEnvelope<SagaCommand>, Format), Refusal> {
    let (reply, format): (Reply, Format) = decode_record(message)?;
    let saga_id = SagaId::from_uuid(reply.correlation_id.as_uuid());
    let envelope = CommandEnvelope {
        command_id: CommandId::derived(reply.command_id.as_uuid(), "saga-reply"),
        correlation_id: reply.correlation_id,
        reply_to: None,
        issued_at: Utc::now(),
        command: SagaCommand::Reply {
            saga_id,
            reply,
            now: Utc::now(),
        },
    };
    Ok((envelope, format))
}
