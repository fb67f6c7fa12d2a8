//! The outcome of a command.

use crate::ids::{CommandId, CorrelationId};
use crate::stream::StreamId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The one answer to a command, published to its `reply_to` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reply {
    /// The command answered.
    pub command_id: CommandId,
    /// The command's correlation id (also the record key on the reply topic).
    pub correlation_id: CorrelationId,
    /// The aggregate the command addressed.
    pub stream: StreamId,
    /// Accepted or rejected.
    pub outcome: Outcome,
    /// What an accepted command produced that a requester needs (for
    /// example the unit price a reservation was made at); `None` otherwise.
    #[serde(default)]
    pub result: Option<CommandResult>,
}

/// Data an accepted command hands back to its requester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandResult {
    /// Stock was reserved.
    Reserved {
        /// Units reserved.
        quantity: u64,
        /// Price of one unit.
        unit_price: crate::Cents,
    },
    /// The user was charged.
    Charged {
        /// Amount taken.
        amount: crate::Cents,
    },
}

/// Whether a command was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied. `sequences` are the stream positions of the events it caused;
    /// empty when the command was a valid no-op (for example releasing a
    /// reservation that does not exist).
    Accepted {
        /// Stream positions of the resulting events.
        sequences: Vec<u64>,
    },
    /// Not applied; nothing changed.
    Rejected(Rejection),
}

/// Why a command was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rejection {
    /// A stable snake_case reason code, e.g. `insufficient_funds`. Programs
    /// branch on this; it never changes meaning between versions.
    pub code: String,
    /// A human-readable explanation. Its wording may change.
    pub message: String,
}

impl Rejection {
    /// A rejection with the given code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl Outcome {
    /// `true` when the command was applied.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }

    /// The rejection code, when rejected.
    pub fn rejection_code(&self) -> Option<&str> {
        match self {
            Outcome::Rejected(r) => Some(&r.code),
            Outcome::Accepted { .. } => None,
        }
    }
}

/// A typed rejection reason that maps to a stable wire code.
pub trait ReasonCode: std::error::Error {
    /// The stable snake_case code.
    fn code(&self) -> &'static str;

    /// The wire form of this reason.
    fn to_rejection(&self) -> Rejection {
        Rejection::new(self.code(), self.to_string())
    }
}
