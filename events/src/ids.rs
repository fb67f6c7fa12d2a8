//! Identifier newtypes. Each wraps a `uuid::Uuid` so that a `UserId` can never be
//! passed where an `OrderId` is expected. On the wire they are UUID strings in
//! JSON and 16 raw bytes in bincode.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

id_type!(
    /// A user (an account that can be charged and refunded).
    UserId
);
id_type!(
    /// An order.
    OrderId
);
id_type!(
    /// A product; each product is one inventory aggregate.
    ProductId
);
id_type!(
    /// One run of the order saga.
    SagaId
);
id_type!(
    /// A command. Commands are idempotent by this id: a command id seen before
    /// gets the reply it got the first time and changes nothing.
    CommandId
);
id_type!(
    /// One persisted event; consumers drop duplicates by this id.
    EventId
);
id_type!(
    /// Ties together every command, event and reply caused by one request.
    CorrelationId
);

impl CommandId {
    /// A deterministic command id derived from a parent id and a step label
    /// (UUID v5). A process that resends a step after a crash derives the same
    /// id, so the receiver recognises the resend and does not apply it twice.
    pub fn derived(parent: Uuid, step: &str) -> Self {
        Self(Uuid::new_v5(&parent, step.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_command_ids_are_stable_and_distinct_per_step() {
        let saga = SagaId::new();
        let a = CommandId::derived(saga.as_uuid(), "reserve/1");
        assert_eq!(a, CommandId::derived(saga.as_uuid(), "reserve/1"));
        assert_ne!(a, CommandId::derived(saga.as_uuid(), "reserve/2"));
    }

    #[test]
    fn ids_parse_from_their_display_form() {
        let id = OrderId::new();
        assert_eq!(id.to_string().parse::<OrderId>().unwrap(), id);
        assert!("not-a-uuid".parse::<OrderId>().is_err());
    }
}
