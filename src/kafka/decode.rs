//! Turning consumed records into commands, or into refusals.
//!
//! Every record is JSON or bincode, told apart by its first byte (the
//! `content-type` header says the same). A record that cannot be read is
//! refused with a stable code and dead-lettered; it is never guessed at.

use ordersaga_events::codec::{decode, Format};
use ordersaga_events::CommandEnvelope;
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
}

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
pub fn decode_command<C: DeserializeOwned>(
    message: &OwnedMessage,
) -> Result<(CommandEnvelope<C>, Format), Refusal> {
    decode_record(message)
}

/// The record's value as a `T`, and the format it came in; refused as
/// `undecodable` otherwise.
pub fn decode_record<T: DeserializeOwned>(message: &OwnedMessage) -> Result<(T, Format), Refusal> {
    let undecodable = |reason: String| Refusal {
        code: "undecodable",
        reason,
    };
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
