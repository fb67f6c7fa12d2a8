//! # ordersaga
//!
//! An event-sourced actor system for a small shop. Users, orders and inventory
//! are actix actors; each service appends its events to its own sled store.
//!
//! ## Layout
//! - `ordersaga-events` (crate `events/`): the wire contract — ids, money,
//!   envelopes, commands, events, replies, topics, the codec. Pure data.
//! - `ordersaga-actors` (crate `actors/`): the aggregates (`decide`/`apply`),
//!   the sled journal (one transaction per commit group, each command's batch
//!   all or nothing), the router and entity actors.
//! - this package (`src/`):
//!   - [`kafka`]: the transport: clients, topics, the outbox relay, command
//!     consumers (per-aggregate order, reply topics, dead letters), partition
//!     ownership and readiness, the embedded broker;
//!   - [`http`]: each service instance's HTTP face: queries from the live
//!     aggregates, the login backend, health and readiness, problem+json;
//!   - [`metrics`]: the Prometheus metrics of the process;
//!   - [`node`]: one service on Kafka: store, actors, consumers, relay, and
//!     its bounded stop;
//!   - [`registry`]: the live service instances, from their heartbeats;
//!   - [`saga`]: the saga's feeders: the log follower, replies, operator
//!     commands, the timer;
//!   - [`verify`]: integrity and invariants across the three stores;
//!   - [`demo`]: `run --demo`;
//!   - [`bench`]: `ordersaga bench`, N orders through the saga against a
//!     same-run baseline;
//!   - [`cli`]: the `ordersaga` binary's commands.
//!
//! Dependencies point one way: this package → actors → events.
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod demo;
pub mod gateway;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod registry;
pub mod saga;
pub mod verify;
