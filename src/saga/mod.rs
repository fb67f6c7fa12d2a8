//! The order saga's runtime in the orders service.
//!
//! The saga itself is a pure aggregate (`ordersaga_actors::aggregates::Saga`)
//! run by the same router and entity actors as every aggregate: the router is
//! the saga supervisor, each in-flight saga is one child entity actor, a child
//! that panics is restarted from its journal. Around it, this module feeds it:
//! - [`follower`]: tails the orders store and starts a saga for every placed
//!   order (and tells it about cancellations);
//! - [`replies`]: turns replies on `orders.saga.replies` into saga input;
//! - [`local`]: delivers the saga's commands to its own order in process,
//!   with no Kafka round trip;
//! - [`operator`]: admits only operator commands (`Retry`) from
//!   `orders.saga.commands`;
//! - [`timer`]: ticks the sagas that are due, read from the store's
//!   deadline index (written in each saga's own transaction), and indexes a
//!   store written before that index existed, once;
//! - [`clock`]: the one time all of them give the saga: the system's, or a
//!   test's manual clock that moves and ticks only when the test says.

pub mod clock;
pub mod follower;
pub mod local;
pub mod operator;
pub mod replies;
pub mod timer;
