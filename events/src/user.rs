//! The users service contract: accounts, money in, charges and refunds.

use crate::codec::{CodecError, Versioned};
use crate::ids::{OrderId, UserId};
use crate::money::Cents;
use crate::reply::ReasonCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The password of a registration command. On the wire it is the plaintext
/// string; the users service hashes it (argon2id) on a blocking thread before
/// deciding ([`Password::set_hash`]) and drops the plaintext then. It is never
/// stored, published or logged: `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password {
    plaintext: String,
    /// The PHC hash string, once the service has computed it. Never on the
    /// wire.
    hash: Option<String>,
}

impl Password {
    /// A plaintext password, as a client sends it.
    pub fn new(plaintext: impl Into<String>) -> Self {
        Self {
            plaintext: plaintext.into(),
            hash: None,
        }
    }

    /// The plaintext; empty once hashed.
    pub fn plaintext(&self) -> &str {
        &self.plaintext
    }

    /// The argon2 PHC string, once computed.
    pub fn hash(&self) -> Option<&str> {
        self.hash.as_deref()
    }

    /// Records the hash and forgets the plaintext.
    pub fn set_hash(&mut self, hash: String) {
        self.plaintext = String::new();
        self.hash = Some(hash);
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// On the wire a password is its plaintext string, as it always was; the hash
// exists only inside the service.
impl Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.plaintext)
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Password::new)
    }
}

/// Commands for a user aggregate (topic `users.commands`, key = user id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UserCommand {
    /// Open an account. The email must be valid and not used by another user.
    Register {
        /// The new user's id (chosen by the caller).
        user_id: UserId,
        /// Email address; compared case-insensitively.
        email: String,
        /// Display name, 1 to 64 characters.
        username: String,
        /// At least 8 characters; stored only as an argon2 hash.
        // On the wire a password is its plaintext string (see `Password`).
        #[schemars(with = "String")]
        password: Password,
    },
    /// Add funds to an active account.
    Deposit {
        /// The user.
        user_id: UserId,
        /// More than zero.
        amount: Cents,
    },
    /// Charge an active user for an order; at most once per order.
    Charge {
        /// The user.
        user_id: UserId,
        /// The order being paid.
        order_id: OrderId,
        /// More than zero, at most the balance.
        amount: Cents,
    },
    /// Give back the whole charge of an order; only an existing charge, once.
    Refund {
        /// The user.
        user_id: UserId,
        /// The order whose charge is returned.
        order_id: OrderId,
    },
    /// Stop the account from being charged or funded; refunds still work.
    Deactivate {
        /// The user.
        user_id: UserId,
    },
    /// Delete the account; its email becomes free again. Refunds still work.
    Delete {
        /// The user.
        user_id: UserId,
    },
}

impl UserCommand {
    /// The user this command addresses (the record key).
    pub fn user_id(&self) -> UserId {
        match self {
            UserCommand::Register { user_id, .. }
            | UserCommand::Deposit { user_id, .. }
            | UserCommand::Charge { user_id, .. }
            | UserCommand::Refund { user_id, .. }
            | UserCommand::Deactivate { user_id }
            | UserCommand::Delete { user_id } => *user_id,
        }
    }
}

/// Events of a user aggregate (topic `users.events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UserEvent {
    /// The account was opened.
    Registered {
        /// The user.
        user_id: UserId,
        /// Normalised (lower-case) email.
        email: String,
        /// Display name.
        username: String,
    },
    /// Funds were added.
    Deposited {
        /// Amount added.
        amount: Cents,
    },
    /// The user paid for an order.
    Charged {
        /// The order.
        order_id: OrderId,
        /// Amount taken.
        amount: Cents,
    },
    /// An order's charge was given back.
    Refunded {
        /// The order.
        order_id: OrderId,
        /// Amount returned (the whole charge).
        amount: Cents,
    },
    /// The account was deactivated.
    Deactivated,
    /// The account was deleted.
    Deleted {
        /// The normalised email the account held, now free for a new account.
        /// Carried here because the store releases the `user-email` index from
        /// the event alone, without the aggregate's state.
        email: String,
    },
}

/// Version 2 left the password hash out of `Registered`: credentials stay in
/// the users store, never in an event (events are published, and anyone may
/// read the events topics). Version 1 payloads are upcast by dropping it.
impl Versioned for UserEvent {
    const SCHEMA_VERSION: u16 = 2;
    const TYPE_NAME: &'static str = "UserEvent";

    fn upcast_json(
        version: u16,
        mut payload: serde_json::Value,
    ) -> Result<serde_json::Value, CodecError> {
        match version {
            1 => {
                if let Some(registered) = payload.get_mut("Registered") {
                    if let Some(fields) = registered.as_object_mut() {
                        fields.remove("password_hash");
                    }
                }
                Ok(payload)
            }
            other => Err(Self::unknown_version(other)),
        }
    }

    fn upcast_bincode(version: u16, payload: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => Ok(v1::UserEvent::decode(payload)?.into()),
            other => Err(Self::unknown_version(other)),
        }
    }
}

/// The password hash a version 1 `Registered` payload carried, for stores
/// written before credentials left the events: the users service reads it
/// once from its own store. `None` for any other payload.
pub fn v1_password_hash(payload: &[u8]) -> Result<Option<String>, CodecError> {
    Ok(match v1::UserEvent::decode(payload)? {
        v1::UserEvent::Registered { password_hash, .. } => Some(password_hash),
        _ => None,
    })
}

/// The password hash a stored event envelope of version 1 carried (see
/// [`v1_password_hash`]); `None` for a later version or another event.
pub fn v1_password_hash_of_event(bytes: &[u8]) -> Result<Option<String>, CodecError> {
    match crate::codec::decode_raw_event(bytes)? {
        crate::codec::RawEvent::Bincode {
            schema_version: 1,
            payload,
        } => v1_password_hash(&payload),
        crate::codec::RawEvent::Json {
            schema_version: 1,
            payload,
        } => Ok(payload
            .pointer("/Registered/password_hash")
            .and_then(|hash| hash.as_str())
            .map(str::to_owned)),
        _ => Ok(None),
    }
}

/// Version 1 of [`UserEvent`], kept to read old payloads. Never extend it.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) enum UserEvent {
        Registered {
            user_id: UserId,
            email: String,
            username: String,
            password_hash: String,
        },
        Deposited {
            amount: Cents,
        },
        Charged {
            order_id: OrderId,
            amount: Cents,
        },
        Refunded {
            order_id: OrderId,
            amount: Cents,
        },
        Deactivated,
        Deleted {
            email: String,
        },
    }

    impl UserEvent {
        pub(super) fn decode(payload: &[u8]) -> Result<Self, CodecError> {
            crate::codec::decode_payload(payload)
        }
    }

    impl From<UserEvent> for super::UserEvent {
        fn from(old: UserEvent) -> Self {
            match old {
                UserEvent::Registered {
                    user_id,
                    email,
                    username,
                    password_hash: _,
                } => Self::Registered {
                    user_id,
                    email,
                    username,
                },
                UserEvent::Deposited { amount } => Self::Deposited { amount },
                UserEvent::Charged { order_id, amount } => Self::Charged { order_id, amount },
                UserEvent::Refunded { order_id, amount } => Self::Refunded { order_id, amount },
                UserEvent::Deactivated => Self::Deactivated,
                UserEvent::Deleted { email } => Self::Deleted { email },
            }
        }
    }
}

/// Why a user command was rejected. Codes are stable (see [`ReasonCode`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserRejection {
    /// `invalid_email`
    #[error("{0:?} is not a valid email address")]
    InvalidEmail(String),
    /// `email_taken`
    #[error("email {0:?} is already registered")]
    EmailTaken(String),
    /// `invalid_username`
    #[error("username must be 1 to 64 characters with no control characters")]
    InvalidUsername,
    /// `weak_password`
    #[error("password must be at least 8 characters")]
    WeakPassword,
    /// `already_registered`
    #[error("user already registered")]
    AlreadyRegistered,
    /// `unknown_user`
    #[error("no such user")]
    UnknownUser,
    /// `user_inactive`
    #[error("user is deactivated")]
    Inactive,
    /// `user_deleted`
    #[error("user is deleted")]
    Deleted,
    /// `invalid_amount`
    #[error("amount must be greater than zero")]
    InvalidAmount,
    /// `insufficient_funds`
    #[error("insufficient funds: balance {balance}, required {required}")]
    InsufficientFunds {
        /// Current balance.
        balance: Cents,
        /// Amount asked for.
        required: Cents,
    },
    /// `already_charged`
    #[error("order {0} was already charged")]
    AlreadyCharged(OrderId),
    /// `no_charge`
    #[error("order {0} has no charge to refund")]
    NoCharge(OrderId),
    /// `already_refunded`
    #[error("order {0} was already refunded")]
    AlreadyRefunded(OrderId),
    /// `amount_overflow`
    #[error("amount overflows the balance")]
    Overflow,
    /// `internal_error`: hashing the password failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl ReasonCode for UserRejection {
    fn code(&self) -> &'static str {
        match self {
            UserRejection::InvalidEmail(_) => "invalid_email",
            UserRejection::EmailTaken(_) => "email_taken",
            UserRejection::InvalidUsername => "invalid_username",
            UserRejection::WeakPassword => "weak_password",
            UserRejection::AlreadyRegistered => "already_registered",
            UserRejection::UnknownUser => "unknown_user",
            UserRejection::Inactive => "user_inactive",
            UserRejection::Deleted => "user_deleted",
            UserRejection::InvalidAmount => "invalid_amount",
            UserRejection::InsufficientFunds { .. } => "insufficient_funds",
            UserRejection::AlreadyCharged(_) => "already_charged",
            UserRejection::NoCharge(_) => "no_charge",
            UserRejection::AlreadyRefunded(_) => "already_refunded",
            UserRejection::Overflow => "amount_overflow",
            UserRejection::Hashing(_) => "internal_error",
        }
    }
}
