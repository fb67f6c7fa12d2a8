//! # ordersaga
//!
//! An event-sourced actor system for a small shop. Users, orders and inventory
//! are actix actors; each service appends its events to its own sled store.
//!
//! ## Layout
//! - `ordersaga-events` (crate `events/`): the wire contract — ids, money,
//!   envelopes, commands, events, replies, topics, the codec. Pure data.
//! - `ordersaga-actors` (crate `actors/`): the aggregates (`decide`/`apply`),
//!   the sled journal (one transaction per command, group commit), the router
//!   and entity actors.
//! - this package (`src/`): the `ordersaga` binary and its commands ([`cli`]).
//! - [`bench`]: `ordersaga bench`, N orders through the saga against a same-run baseline.
//!
//! Dependencies point one way: this package → actors → events.
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod demo;
pub mod kafka;
pub mod node;
pub mod saga;
pub mod verify;
