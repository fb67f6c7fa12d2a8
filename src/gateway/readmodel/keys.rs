//! Key layouts of the read model's trees and the page cursors made of them.
//!
//! Keys are fixed-width and order-preserving, so that sled's key order is
//! the list order: products by id, a user's orders newest first. A cursor is
//! the hex of the last key of a page (the part after the list's prefix), as
//! the services' own lists do (`src/http/lists.rs`).

use super::error::ReadModelError;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Length of a `user_orders` entry after its user prefix: the time counted
/// down (8 bytes) and the order id (16).
pub(crate) const USER_ORDER_ENTRY: usize = 8 + 16;

/// The `user_orders` key of `order` placed by `user` at `at`: the user, then
/// the time counted down from the far future (so that newer sorts first),
/// then the order (so that two orders of one millisecond both fit). The same
/// layout as the orders service's own list.
pub(crate) fn user_order_key(user: Uuid, order: Uuid, at: DateTime<Utc>) -> Vec<u8> {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut key = Vec::with_capacity(16 + USER_ORDER_ENTRY);
    key.extend_from_slice(user.as_bytes());
    key.extend_from_slice(&(u64::MAX - millis).to_be_bytes());
    key.extend_from_slice(order.as_bytes());
    key
}

/// The `offsets` key of a partition: the topic, a zero byte (no topic name
/// holds one), then the partition, big-endian.
pub(crate) fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 5);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The topic and partition of an `offsets` key.
pub(crate) fn parse_offset_key(key: &[u8]) -> Option<(String, i32)> {
    let split = key.len().checked_sub(5)?;
    let (topic, rest) = key.split_at(split);
    let (zero, partition) = rest.split_first()?;
    if *zero != 0 {
        return None;
    }
    let topic = String::from_utf8(topic.to_vec()).ok()?;
    Some((topic, i32::from_be_bytes(partition.try_into().ok()?)))
}

/// Reads an 8-byte big-endian counter.
pub(crate) fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a cursor of `len` bytes, or [`ReadModelError::InvalidCursor`].
pub(crate) fn parse_cursor(text: &str, len: usize) -> Result<Vec<u8>, ReadModelError> {
    let bad = || ReadModelError::InvalidCursor(text.to_owned());
    if text.len() != len * 2 || !text.is_ascii() {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_orders_sort_first_and_offset_keys_round_trip() {
        let user = Uuid::new_v4();
        let old = user_order_key(
            user,
            Uuid::new_v4(),
            DateTime::from_timestamp(1_000, 0).unwrap(),
        );
        let new = user_order_key(
            user,
            Uuid::new_v4(),
            DateTime::from_timestamp(2_000, 0).unwrap(),
        );
        assert!(new < old);
        assert_eq!(new.len(), 16 + USER_ORDER_ENTRY);

        let key = offset_key("ns.users.events", 7);
        assert_eq!(parse_offset_key(&key), Some(("ns.users.events".into(), 7)));
        assert_eq!(parse_offset_key(b"ab"), None);
    }

    #[test]
    fn cursors_are_hex_of_the_right_length() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(parse_cursor(&hex(&bytes), 4).unwrap(), bytes);
        for bad in ["", "0g", "00010", "000102", "é0"] {
            assert!(
                matches!(parse_cursor(bad, 2), Err(ReadModelError::InvalidCursor(c)) if c == bad),
                "{bad}"
            );
        }
    }
}
