//! The envelope around every persisted event, on disk and on the event topics.

use crate::ids::{CommandId, CorrelationId, EventId};
use crate::stream::StreamId;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One persisted event and everything a consumer needs to order, trace and
/// de-duplicate it.
///
/// `P` is the payload: a service's event enum (for example
/// [`crate::user::UserEvent`]). The codec (see [`crate::codec`]) writes the
/// payload's schema version beside it and upcasts older versions on read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<P> {
    /// Unique per event: consumers drop a record whose event id they have seen.
    pub event_id: EventId,
    /// The stream (aggregate) this event belongs to.
    pub stream: StreamId,
    /// Position in the stream, starting at 1 and without gaps.
    pub sequence: u64,
    /// When the event was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The correlation id of the request that caused it.
    pub correlation_id: CorrelationId,
    /// The command that caused it.
    pub causation_id: CommandId,
    /// The payload's schema version when it was written.
    pub schema_version: u16,
    /// The event itself.
    pub payload: P,
}

impl<P> Envelope<P> {
    /// The same envelope with its payload transformed.
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> Envelope<Q> {
        Envelope {
            event_id: self.event_id,
            stream: self.stream,
            sequence: self.sequence,
            recorded_at: self.recorded_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            schema_version: self.schema_version,
            payload: f(self.payload),
        }
    }
}
