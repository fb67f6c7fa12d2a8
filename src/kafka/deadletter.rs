//! Dead letters: records no service could decode or handle. They go to
//! `ordersaga.deadletter` with the original key, value and headers, plus
//! headers saying why and where from, so an operator can inspect and replay
//! them. Consumption continues past them.

use ordersaga_actors::journal::OutboxRecord;
use ordersaga_events::topics::{header, DEADLETTER};

/// Where a record came from.
#[derive(Clone, Debug)]
pub struct Origin {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// The dead-letter record for a record that `service` gave up on.
pub fn record(
    service: &str,
    origin: &Origin,
    code: &str,
    reason: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Vec<(String, Vec<u8>)>,
) -> OutboxRecord {
    let mut headers = headers;
    headers.extend([
        (
            header::DEADLETTER_CODE.to_string(),
            code.as_bytes().to_vec(),
        ),
        (
            header::DEADLETTER_REASON.to_string(),
            reason.as_bytes().to_vec(),
        ),
        (
            header::DEADLETTER_TOPIC.to_string(),
            origin.topic.as_bytes().to_vec(),
        ),
        (
            header::DEADLETTER_PARTITION.to_string(),
            origin.partition.to_string().into_bytes(),
        ),
        (
            header::DEADLETTER_OFFSET.to_string(),
            origin.offset.to_string().into_bytes(),
        ),
        (
            header::DEADLETTER_SERVICE.to_string(),
            service.as_bytes().to_vec(),
        ),
    ]);
    OutboxRecord {
        topic: DEADLETTER.to_string(),
        key: key.unwrap_or_default().to_vec(),
        payload: payload.unwrap_or_default().to_vec(),
        headers,
    }
}
