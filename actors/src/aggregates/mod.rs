//! The three aggregates, one file each.
//!
//! Each is a pure state machine: `decide` holds every rule, `apply` folds an
//! event in and never fails, so replaying any stored stream always succeeds.

mod inventory;
mod order;
mod saga;
mod user;

pub use inventory::{Product, Reservation, ReservationState};
pub use order::{user_orders_entry, Order, USER_ORDERS};
pub use saga::{LineReservation, Saga};
pub use user::{verify_password, ChargeRecord, User, UserStatus, EMAIL_INDEX, PASSWORD_SECRET};
