//! Streams: the unit of ordering. Every event belongs to exactly one stream
//! (an aggregate instance) and carries its position in it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// What kind of aggregate a stream holds.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// A user account (users service).
    User,
    /// An order (orders service).
    Order,
    /// A product's stock (inventory service).
    Product,
    /// One run of the order saga (orders service).
    Saga,
}

impl StreamKind {
    /// Every kind, in tag order.
    pub const ALL: [StreamKind; 4] = [
        StreamKind::User,
        StreamKind::Order,
        StreamKind::Product,
        StreamKind::Saga,
    ];

    /// The one-byte tag used in store keys.
    pub const fn tag(self) -> u8 {
        match self {
            StreamKind::User => 1,
            StreamKind::Order => 2,
            StreamKind::Product => 3,
            StreamKind::Saga => 4,
        }
    }

    /// The kind for a store-key tag.
    pub fn from_tag(tag: u8) -> Option<StreamKind> {
        StreamKind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// The lower-case name (`user`, `order`, `product`, `saga`).
    pub const fn name(self) -> &'static str {
        match self {
            StreamKind::User => "user",
            StreamKind::Order => "order",
            StreamKind::Product => "product",
            StreamKind::Saga => "saga",
        }
    }
}

/// One aggregate's event stream: its kind and id. Written `kind:uuid`.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, JsonSchema,
)]
#[schemars(
    description = "One aggregate's event stream: its kind and id. An object in JSON; the `stream` header writes it as the text `kind:uuid`."
)]
pub struct StreamId {
    /// The aggregate kind.
    pub kind: StreamKind,
    /// The aggregate id.
    pub id: Uuid,
}

/// Length of [`StreamId::to_key`]: one tag byte and sixteen UUID bytes.
pub const STREAM_KEY_LEN: usize = 17;

impl StreamId {
    /// A stream id.
    pub const fn new(kind: StreamKind, id: Uuid) -> Self {
        Self { kind, id }
    }

    /// A fixed-width, order-preserving key: tag byte then the UUID bytes.
    pub fn to_key(&self) -> [u8; STREAM_KEY_LEN] {
        let mut key = [0u8; STREAM_KEY_LEN];
        key[0] = self.kind.tag();
        key[1..].copy_from_slice(self.id.as_bytes());
        key
    }

    /// Parses [`StreamId::to_key`] output; `None` for anything else.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        if key.len() < STREAM_KEY_LEN {
            return None;
        }
        let kind = StreamKind::from_tag(key[0])?;
        let id = Uuid::from_slice(&key[1..STREAM_KEY_LEN]).ok()?;
        Some(Self { kind, id })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.name(), self.id)
    }
}

/// Why a `kind:uuid` string is not a stream id.
#[derive(Debug, thiserror::Error)]
#[error("expected KIND:UUID with KIND one of user, order, product, saga; got {0:?}")]
pub struct ParseStreamIdError(String);

impl FromStr for StreamId {
    type Err = ParseStreamIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseStreamIdError(s.to_string());
        let (kind, id) = s.split_once(':').ok_or_else(err)?;
        let kind = StreamKind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(err)?;
        let id = Uuid::parse_str(id).map_err(|_| err())?;
        Ok(Self { kind, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_strings_round_trip() {
        let s = StreamId::new(StreamKind::Product, Uuid::new_v4());
        assert_eq!(StreamId::from_key(&s.to_key()), Some(s));
        assert_eq!(s.to_string().parse::<StreamId>().unwrap(), s);
        assert!(StreamId::from_key(&[9; 17]).is_none());
        assert!("widget:1".parse::<StreamId>().is_err());
    }
}
