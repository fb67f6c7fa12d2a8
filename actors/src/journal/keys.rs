//! Key layouts. Every number is big-endian so sled's byte order is numeric
//! order, and a stream's events sit next to each other.

use ordersaga_events::stream::STREAM_KEY_LEN;
use ordersaga_events::StreamId;

/// `events` key: stream key then sequence.
pub fn event_key(stream: &StreamId, sequence: u64) -> [u8; STREAM_KEY_LEN + 8] {
    let mut key = [0u8; STREAM_KEY_LEN + 8];
    key[..STREAM_KEY_LEN].copy_from_slice(&stream.to_key());
    key[STREAM_KEY_LEN..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// Splits an `events` key (or a `log` value) into stream and sequence.
pub fn split_event_key(key: &[u8]) -> Option<(StreamId, u64)> {
    if key.len() != STREAM_KEY_LEN + 8 {
        return None;
    }
    let stream = StreamId::from_key(&key[..STREAM_KEY_LEN])?;
    Some((stream, read_u64(&key[STREAM_KEY_LEN..])?))
}

/// A big-endian u64, if `bytes` is exactly eight bytes.
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// `offsets` key: topic, a zero byte, partition.
pub fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 5);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// `unique` key: index, a zero byte, value.
pub fn unique_key(index: &str, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(index.len() + value.len() + 1);
    key.extend_from_slice(index.as_bytes());
    key.push(0);
    key.extend_from_slice(value.as_bytes());
    key
}

/// `archive` and `secrets` key: stream key, then the item's key or the
/// secret's name.
pub fn stream_item_key(stream: &StreamId, item: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(STREAM_KEY_LEN + item.len());
    key.extend_from_slice(&stream.to_key());
    key.extend_from_slice(item.as_bytes());
    key
}
