//! # ordersaga-actors: aggregates, the journal and the service actors
//!
//! No Kafka and no HTTP live here: this crate turns commands into durable
//! events. The transport in the `ordersaga` package feeds it.
//!
//! ## Layout
//! - [`aggregate`]: the [`Aggregate`] trait (`decide` / `apply`).
//! - [`aggregates`]: [`aggregates::User`], [`aggregates::Product`] (inventory, one per
//!   product), [`aggregates::Order`] and [`aggregates::Saga`], one file each.
//! - [`journal`]: the sled store: events, log, snapshots, outbox, processed
//!   commands, offsets, uniqueness, the quarantine of unreadable outbox
//!   rows; each command's batch all or nothing, one transaction and one
//!   flush per commit group.
//! - [`migrations`]: one-time migrations of older stores (indexes built
//!   from the log, secrets moved out of old events).
//! - [`outgoing`]: the typed commands an aggregate sends to another (the
//!   saga's steps); the service layer addresses and encodes them.
//! - [`recovery`]: rebuilding an aggregate from snapshot + events, or from
//!   scratch.
//! - [`service`]: the actors: a router per service owning one entity actor
//!   per aggregate (recovered off the router's thread); supervision,
//!   passivation, bounded mailboxes, idempotency.
//! - [`testing`]: the given/when/then harness for aggregate rules.
#![warn(missing_docs)]

pub mod aggregate;
pub mod aggregates;
pub mod journal;
pub mod migrations;
pub mod outgoing;
pub mod recovery;
pub mod service;
pub mod testing;

pub use aggregate::{Aggregate, UniqueChange};
pub use journal::{Journal, JournalConfig, JournalError};
pub use service::{
    Execute, InventoryService, OrderService, Service, ServiceConfig, ServiceError, UserService,
};
