//! The gateway's read models, projected from the event topics.
//!
//! The gateway consumes `users.events`, `orders.events` and
//! `inventory.events` into its own sled store (each gateway its own, so
//! several can run at once): a row per user, product and order, and each
//! user's orders newest first. The lists (`/users/me/orders`, `/products`)
//! are answered from here, and single-entity reads fall back to here while
//! the owning service's breaker is open.
//!
//! - [`store`]: [`ReadModel`], the trees, reads and pages.
//! - `wait`: read-your-writes, [`ReadModel::wait_for`]: a read waits
//!   (bounded) until the read model has a command's sequence.
//! - `apply`: exactly-once projection: each record's rows, its stream's
//!   sequence and its partition's offset in one transaction; duplicates
//!   skipped by stream sequence, gaps reported.
//! - [`rows`]: the rows and what each event does to them.
//! - [`record`]: a consumed record decoded by its `stream` header (user
//!   events through the v1→v2 upcast), and what applying it did.
//! - [`projector`]: [`Projector`], the live projection, its lag and
//!   readiness.
//! - [`mod@rebuild`]: `ordersaga gateway --rebuild`, the store
//!   remade from the topics with a progress bar.
//! - [`error`]: the one error type, [`ReadModelError`].

mod apply;
pub mod error;
mod keys;
mod pages;
pub mod projector;
pub mod rebuild;
pub mod record;
pub mod rows;
mod source;
pub mod store;
mod wait;

pub use error::ReadModelError;
pub use projector::{Lag, Projector};
pub use rebuild::{rebuild, rebuild_into, RebuildReport};
pub use record::{Applied, ProjectedEvent, ProjectedRecord, ProjectionCounters};
pub use rows::{OrderRow, ProductRow, UserRow};
pub use store::{Dump, Page, ReadModel, Source};
