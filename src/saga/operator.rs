//! Operator commands on `orders.saga.commands`.
//!
//! The topic is a trust boundary: anyone who can produce to it reaches the
//! saga supervisor. Only what an operator may ask is accepted there: `Retry`
//! of a stuck saga. Everything else a saga takes as input (a start, a reply,
//! a tick, a cancellation) comes from the orders service itself, and a
//! forged one is dead-lettered (`not_an_operator_command`) instead of being
//! believed. The time of a retry is the service's own (its [`Clock`]), not
//! the sender's.

use super::clock::Clock;
use crate::kafka::decode::{decode_command, Decoder, Refusal};
use chrono::{DateTime, Utc};
use ordersaga_events::codec::Format;
use ordersaga_events::saga::SagaCommand;
use ordersaga_events::CommandEnvelope;
use rdkafka::message::OwnedMessage;
use std::sync::Arc;

/// The dead-letter code of a record that is a saga command but not one an
/// operator may send.
pub const NOT_AN_OPERATOR_COMMAND: &str = "not_an_operator_command";

/// The decoder of `orders.saga.commands`: [`decode_operator_command`] at
/// `clock`'s time.
pub fn operator_decoder(clock: Clock) -> Decoder<SagaCommand> {
    Arc::new(move |message| decode_operator_command(message, clock.now()))
}

/// Decodes an operator command, taking place at `now`, refusing every other
/// saga input.
pub fn decode_operator_command(
    message: &OwnedMessage,
    now: DateTime<Utc>,
) -> Result<(CommandEnvelope<SagaCommand>, Format), Refusal> {
    let (mut envelope, format) = decode_command::<SagaCommand>(message)?;
    match &mut envelope.command {
        SagaCommand::Retry {
            now: retried_at, ..
        } => {
            *retried_at = now;
            Ok((envelope, format))
        }
        other => Err(Refusal::new(
            NOT_AN_OPERATOR_COMMAND,
            format!(
                "orders.saga.commands accepts only Retry; {} comes from the orders service itself",
                kind(other)
            ),
        )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rdkafka::message::{OwnedHeaders, Timestamp};

    fn record(value: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(value.as_bytes().to_vec()),
            None,
            "orders.saga.commands".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(OwnedHeaders::new()),
        )
    }

    #[test]
    fn a_json_retry_may_leave_out_now_and_gets_the_services_time() {
        let saga = "5b0c7a66-2f0e-4d7a-9c55-0a8d5b1f2e11";
        let json = format!(
            r#"{{"command_id":"6b0c7a66-2f0e-4d7a-9c55-0a8d5b1f2e11","correlation_id":"{saga}","issued_at":"2026-11-27T00:00:00Z","command":{{"Retry":{{"saga_id":"{saga}"}}}}}}"#
        );
        let service_now = Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap();
        let (envelope, _) = decode_operator_command(&record(&json), service_now).expect("accepted");
        match envelope.command {
            SagaCommand::Retry { now, .. } => assert_eq!(now, service_now),
            other => panic!("unexpected {other:?}"),
        }
        // A sender's own `now` is not believed either.
        let json = json.replace(
            r#""saga_id":"#,
            r#""now":"2000-01-01T00:00:00Z","saga_id":"#,
        );
        let (envelope, _) = decode_operator_command(&record(&json), service_now).expect("accepted");
        assert!(matches!(envelope.command, SagaCommand::Retry { now, .. } if now == service_now));
    }
}
