//! # ordersaga-events: the wire contract
//!
//! Everything another system needs to talk to ordersaga over Kafka, in any
//! language: the ids, money, the envelopes that wrap every record, every command,
//! event and reply of the three services, the topic names and the codec. This
//! crate is pure data: it does no I/O, so a consumer in another project can
//! depend on it alone.
//!
//! ## Layout
//! - [`ids`]: `UserId`, `OrderId`, `ProductId`, `SagaId`, `CommandId`, `EventId`,
//!   `CorrelationId`: newtypes over `uuid::Uuid`.
//! - [`money`]: [`Cents`], integer minor units; never a float.
//! - [`stream`]: [`StreamId`] (kind + aggregate id), the unit of ordering.
//! - [`envelope`]: [`Envelope`], the wrapper of every persisted event.
//! - [`command`]: [`CommandEnvelope`], the wrapper of every command.
//! - [`reply`]: [`Reply`], the one outcome of a command.
//! - [`user`], [`inventory`], [`order`]: each service's commands, events and
//!   rejection reasons.
//! - [`saga`]: the order saga's inputs, events, steps and policy.
//! - [`schema`]: JSON Schemas of every message, as committed under
//!   `docs/schema/`.
//! - [`topics`]: the topic names and header names.
//! - [`codec`]: bincode (default) and JSON, a leading format byte, upcasting of
//!   older event versions. Bad bytes are an error value, never a panic.
#![warn(missing_docs)]

pub mod codec;
pub mod command;
pub mod envelope;
pub mod ids;
pub mod inventory;
pub mod money;
pub mod order;
pub mod reply;
pub mod saga;
pub mod schema;
pub mod stream;
pub mod topics;
pub mod user;

pub use codec::{CodecError, Format, Versioned};
pub use command::{CommandEnvelope, EnvelopeHead};
pub use envelope::Envelope;
pub use ids::{CommandId, CorrelationId, EventId, OrderId, ProductId, SagaId, UserId};
pub use money::Cents;
pub use reply::{CommandResult, Outcome, Rejection, Reply};
pub use stream::{StreamId, StreamKind};
