//! Turning consumed records into commands, or into refusals.
//!
//! Every record is JSON or bincode, told apart by its first byte (the
//! `content-type` header says the same). A record that cannot be read is
//! refused with a stable code and dead-lettered; it is never guessed at.

use ordersaga_events::codec::{decode, Format};
use ordersaga_events::{CommandEnvelope, EnvelopeHead};
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Why a record is dead-lettered.
#[derive(Debug)]
pub struct Refusal {
    /// A stable code (the `deadletter-code` header).
    pub code: &'static str,
    /// What was wrong (the `deadletter-reason` header).
    pub reason: String,
    /// The envelope's head, when it could be read although the command
    /// could not: its sender is answered with an `invalid_command`
    /// rejection besides the dead letter.
    pub head: Option<(EnvelopeHead, Format)>,
}

impl Refusal {
    /// A refusal with no one to answer.
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            head: None,
        }
    }
}

/// The dead-letter code, and the rejection code of the reply, of a command
/// whose envelope reads but whose command does not (a negative quantity, a
/// missing field, an unknown command).
pub const INVALID_COMMAND: &str = "invalid_command";

/// Turns a consumed record into a command for the service, or refuses it.
/// A closure, not a plain function, because some decoders carry state: the
/// saga's decoders stamp each command with the orders service's clock.
pub type Decoder<C> =
    Arc<dyn Fn(&OwnedMessage) -> Result<(CommandEnvelope<C>, Format), Refusal> + Send + Sync>;

/// The decoder of a command topic ([`decode_command`]).
pub fn command_decoder<C: DeserializeOwned + 'static>() -> Decoder<C> {
    Arc::new(decode_command::<C>)
}

/// The decoder of command topics: a `CommandEnvelope` in bincode or JSON.
/// When the command cannot be read but its envelope's head can, the refusal
/// is `invalid_command` and carries the head, so its sender gets a reply.
pub fn decode_command<C: DeserializeOwned>(
    message: &OwnedMessage,
) -> Result<(CommandEnvelope<C>, Format), Refusal> {
    decode_record(message).map_err(|refusal| {
        let payload = message.payload().unwrap_or_default();
        match (EnvelopeHead::read(payload), Format::detect(payload)) {
            (Ok(head), Ok(format)) => Refusal {
                code: INVALID_COMMAND,
                reason: refusal.reason,
                head: Some((head, format)),
            },
            _ => refusal,
        }
    })
}

/// The record's value as a `T`, and the format it came in; refused as
/// `undecodable` otherwise.
pub fn decode_record<T: DeserializeOwned>(message: &OwnedMessage) -> Result<(T, Format), Refusal> {
    let undecodable = |reason: String| Refusal::new("undecodable", reason);
    let payload = message.payload().unwrap_or_default();
    let format = Format::detect(payload).map_err(|e| undecodable(e.to_string()))?;
    let value = decode(payload).map_err(|e| undecodable(e.to_string()))?;
    Ok((value, format))
}

/// The record's headers, as they are.
pub(crate) fn headers_of(message: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}
