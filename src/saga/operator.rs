//! Operator commands on `orders.saga.commands`.
//!
//! The topic is a trust boundary: anyone who can produce to it reaches the
//! saga supervisor. Only what an operator may ask is accepted there: `Retry`
//! of a stuck saga. Everything else a saga takes as input (a start, a reply,
//! a tick, a cancellation) comes from the orders service itself, and a
//! forged one is dead-lettered (`not_an_operator_command`) instead of being
//! believed. The time of a retry is the service's own, not the sender's.

use crate::kafka::decode::{decode_command, Refusal};
use chrono::Utc;
use ordersaga_events::codec::Format;
use ordersaga_events::saga::SagaCommand;
use ordersaga_events::CommandEnvelope;
use rdkafka::message::OwnedMessage;

/// The dead-letter code of a record that is a saga command but not one an
/// operator may send.
pub const NOT_AN_OPERATOR_COMMAND: &str = "not_an_operator_command";

/// Decodes an operator command, refusing every other saga input.
pub fn decode_operator_command(
    message: &OwnedMessage,
) -> Result<(CommandEnvelope<SagaCommand>, Format), Refusal> {
    let (mut envelope, format) = decode_command::<SagaCommand>(message)?;
    match &mut envelope.command {
        SagaCommand::Retry { now, .. } => {
            *now = Utc::now();
            Ok((envelope, format))
        }
        other => Err(Refusal {
            code: NOT_AN_OPERATOR_COMMAND,
            reason: format!(
                "orders.saga.commands accepts only Retry; {} comes from the orders service itself",
                kind(other)
            ),
        }),
    }
}

fn kind(command: &SagaCommand) -> &'static str {
    match command {
        SagaCommand::Start { .. } => "Start",
        SagaCommand::Reply { .. } => "Reply",
        SagaCommand::OrderCancelled { .. } => "OrderCancelled",
        SagaCommand::Tick { .. } => "Tick",
        SagaCommand::Retry { .. } => "Retry",
    }
}
