//! The API gateway: the public HTTP front of the shop.
//!
//! It turns HTTP requests into commands on Kafka and answers them from the
//! replies ([`requester`]), routes single-entity reads to the live instance
//! that owns the aggregate, found through the heartbeat registry
//! ([`downstream`]), protects every downstream service with a circuit
//! breaker ([`breaker`]), limits request rates per user and per client IP
//! ([`ratelimit`]), authenticates with JWTs ([`jwt`], [`caller`], remembered per thread once
//! verified: [`token_cache`]) and serves
//! lists from read models it projects from the event topics into its own
//! sled store ([`readmodel`]).
//!
//! Several gateways may run at once: each has its own instance id, reply
//! topic (`INSTANCE.replies`) and read-model store.

pub mod admin;
pub mod answers;
pub mod breaker;
pub mod caller;
pub mod coalesce;
pub mod downstream;
pub mod jwt;
pub mod metrics;
pub mod ratelimit;
pub mod readmodel;
pub mod requester;
pub mod routes;
pub mod server;
pub mod state;
pub mod token_cache;

pub use server::{start, GatewayError, GatewayOptions, RunningGateway};
