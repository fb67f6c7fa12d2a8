//! Replies to saga commands become saga input.

use crate::kafka::consumer::Refusal;
use chrono::Utc;
use ordersaga_events::codec::{decode, Format};
use ordersaga_events::saga::SagaCommand;
use ordersaga_events::{CommandEnvelope, CommandId, Reply, SagaId};
use rdkafka::message::{Message, OwnedMessage};

/// Decodes a reply on `orders.saga.replies` into the saga command that
/// delivers it. The command id is derived from the replied command's id, so a
/// reply delivered twice (or published twice) reaches the saga once.
pub fn decode_reply(
    message: &OwnedMessage,
) -> Result<(CommandEnvelope<SagaCommand>, Format), Refusal> {
    let payload = message.payload().unwrap_or_default();
    let format = Format::detect(payload).map_err(|e| Refusal {
        code: "undecodable",
        reason: e.to_string(),
    })?;
    let reply: Reply = decode(payload).map_err(|e| Refusal {
        code: "undecodable",
        reason: e.to_string(),
    })?;
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
