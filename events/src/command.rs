//! The envelope around every command on a command topic.

use crate::ids::{CommandId, CorrelationId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A command with the metadata that makes it idempotent and answerable.
///
/// Producers choose `command_id`; sending the same id twice is safe (the second
/// gets the first reply and changes nothing). When `reply_to` names a topic,
/// exactly one [`crate::Reply`] is published there per delivery, keyed by the
/// correlation id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandEnvelope<C> {
    /// Idempotency key.
    pub command_id: CommandId,
    /// Ties the reply and the resulting events to the original request.
    pub correlation_id: CorrelationId,
    /// Topic for the reply, e.g. `gateway.replies`; `None` for fire-and-forget.
    pub reply_to: Option<String>,
    /// When the producer issued the command.
    pub issued_at: DateTime<Utc>,
    /// The command itself.
    pub command: C,
}

impl<C> CommandEnvelope<C> {
    /// A command with fresh ids, issued now, with no reply topic.
    pub fn new(command: C) -> Self {
        let command_id = CommandId::new();
        Self {
            command_id,
            correlation_id: CorrelationId::from_uuid(command_id.as_uuid()),
            reply_to: None,
            issued_at: Utc::now(),
            command,
        }
    }

    /// The same command with a reply topic.
    pub fn reply_to(mut self, topic: impl Into<String>) -> Self {
        self.reply_to = Some(topic.into());
        self
    }

    /// The same command with the given command id.
    pub fn with_id(mut self, command_id: CommandId) -> Self {
        self.command_id = command_id;
        self
    }

    /// The same command with the given correlation id.
    pub fn correlated(mut self, correlation_id: CorrelationId) -> Self {
        self.correlation_id = correlation_id;
        self
    }
}

/// The first fields of a [`CommandEnvelope`], readable when its command is
/// not: enough to answer a malformed command with a rejection
/// (`invalid_command`) instead of leaving its sender waiting.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EnvelopeHead {
    /// The command's id.
    pub command_id: CommandId,
    /// The conversation it belongs to.
    pub correlation_id: CorrelationId,
    /// Where its sender waits for the reply.
    pub reply_to: Option<String>,
}

impl EnvelopeHead {
    /// Reads the head of an encoded command envelope (bincode or JSON),
    /// whatever follows it.
    pub fn read(bytes: &[u8]) -> Result<Self, crate::CodecError> {
        crate::codec::decode_prefix(bytes)
    }
}
