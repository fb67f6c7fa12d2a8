//! How a command's reply becomes an HTTP answer: an accepted command's
//! position (for read-your-writes), a rejection's status and problem body.

use crate::http::problem::Problem;
use actix_web::http::StatusCode;
use ordersaga_events::reply::{Outcome, Rejection, Reply};
use ordersaga_events::stream::StreamId;
use serde::Serialize;
use utoipa::ToSchema;

/// The header that carries an accepted command's position, and that a read
/// may send back to wait for it (read-your-writes).
pub const POSITION_HEADER: &str = "Ordersaga-Position";

/// The header a read sends to wait until the read model has a position.
pub const MIN_POSITION_HEADER: &str = "Ordersaga-Min-Position";

/// The header of an answer served from the read model because the owning
/// service's breaker is open: it may lag behind the service.
pub const STALE_HEADER: &str = "Ordersaga-Stale";

/// The header that carries the idempotency key a command was sent under
/// (the client's, or one the gateway chose), so a client can retry it.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Where an accepted command left its aggregate: the stream and the
/// sequence of its last event (`kind:uuid:sequence` in text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The sequence of the command's last event; 0 when it caused none.
    pub sequence: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.stream, self.sequence)
    }
}

impl std::str::FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (stream, sequence) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("position {s:?} is not KIND:UUID:SEQUENCE"))?;
        let stream = stream.parse::<StreamId>().map_err(|e| e.to_string())?;
        let sequence = sequence
            .parse::<u64>()
            .map_err(|_| format!("position {s:?} has no sequence number after the stream"))?;
        Ok(Self { stream, sequence })
    }
}

/// The body of an accepted command.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The aggregate's stream (`kind:uuid`).
    pub stream: String,
    /// The sequence of the command's last event: pass
    /// `stream:sequence` as `Ordersaga-Min-Position` (or `min_position`) on
    /// a read to see this write.
    pub sequence: u64,
    /// `stream:sequence`, ready to pass back.
    pub position: String,
}

impl Accepted {
    /// The body for `position`.
    pub fn of(position: Position) -> Self {
        Self {
            stream: position.stream.to_string(),
            sequence: position.sequence,
            position: position.to_string(),
        }
    }
}

/// The position of an accepted reply, or the problem of a rejected one.
pub fn outcome(reply: &Reply) -> Result<Position, Problem> {
    match &reply.outcome {
        Outcome::Accepted { sequences } => Ok(Position {
            stream: reply.stream,
            sequence: sequences.iter().copied().max().unwrap_or(0),
        }),
        Outcome::Rejected(rejection) => Err(rejected(rejection)),
    }
}

/// The problem of a rejection: its code, and a status by what the code
/// means.
pub fn rejected(rejection: &Rejection) -> Problem {
    Problem::new(
        status_of(&rejection.code),
        rejection.code.clone(),
        rejection.message.clone(),
    )
}

/// The status of a rejection code: 404 for an unknown aggregate, 422 for a
/// request that can never succeed as written, 500 for the service's own
/// failure, and 409 for a conflict with the aggregate's current state
/// (which may change: funds deposited, stock restocked).
pub fn status_of(code: &str) -> StatusCode {
    const UNPROCESSABLE: &[&str] = &[
        "weak_password",
        "empty_order",
        "too_many_lines",
        "duplicate_product",
        "lines_mismatch",
        "amount_overflow",
        "quantity_overflow",
    ];
    if code.starts_with("unknown_") {
        StatusCode::NOT_FOUND
    } else if code == "invalid_transition" {
        // Cancelling a cancelled order: the order's state, not the request,
        // is in the way.
        StatusCode::CONFLICT
    } else if code.starts_with("invalid_") || UNPROCESSABLE.contains(&code) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if code == "internal_error" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::CONFLICT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordersaga_events::stream::StreamKind;

    #[test]
    fn positions_round_trip_through_text() {
        let position = Position {
            stream: StreamId::new(StreamKind::Order, uuid::Uuid::new_v4()),
            sequence: 7,
        };
        let text = position.to_string();
        assert!(text.starts_with("order:"), "{text}");
        assert_eq!(text.parse::<Position>().unwrap(), position);
        for bad in [
            "order:x:1",
            "order:1",
            "",
            "user:00000000-0000-0000-0000-000000000000:-1",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejection_codes_map_to_statuses_by_meaning() {
        assert_eq!(status_of("unknown_user"), StatusCode::NOT_FOUND);
        assert_eq!(status_of("unknown_product"), StatusCode::NOT_FOUND);
        assert_eq!(status_of("insufficient_funds"), StatusCode::CONFLICT);
        assert_eq!(status_of("insufficient_stock"), StatusCode::CONFLICT);
        assert_eq!(status_of("email_taken"), StatusCode::CONFLICT);
        assert_eq!(status_of("invalid_transition"), StatusCode::CONFLICT);
        assert_eq!(status_of("invalid_email"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_of("weak_password"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status_of("internal_error"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
