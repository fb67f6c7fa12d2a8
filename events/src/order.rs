//! The orders service contract: orders and their status machine.
//!
//! `Pending → Confirmed → Shipped → Delivered`, and `Pending | Confirmed →
//! Cancelled`.

use crate::codec::Versioned;
use crate::ids::{OrderId, ProductId, UserId};
use crate::money::Cents;
use crate::reply::ReasonCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;

/// One line of an order: a product and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// The product.
    pub product_id: ProductId,
    /// Units, more than zero.
    pub quantity: u64,
}

/// A line with the unit price its reservation was made at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PricedLine {
    /// The product.
    pub product_id: ProductId,
    /// Units.
    pub quantity: u64,
    /// Price of one unit.
    pub unit_price: Cents,
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed; the saga is reserving and charging.
    Pending,
    /// Paid and stock committed.
    Confirmed,
    /// Handed to the carrier.
    Shipped,
    /// Arrived.
    Delivered,
    /// Cancelled, with a reason.
    Cancelled,
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
        })
    }
}

/// Commands for an order (topic `orders.commands`, key = order id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderCommand {
    /// Place an order: 1 to [`MAX_LINES`] lines, each product once.
    Place {
        /// The new order's id (chosen by the caller).
        order_id: OrderId,
        /// Who orders.
        user_id: UserId,
        /// What.
        lines: Vec<OrderLine>,
    },
    /// Record the prices the reservations were made at; once, while pending.
    /// The lines must be exactly the placed lines.
    Price {
        /// The order.
        order_id: OrderId,
        /// The placed lines with unit prices.
        lines: Vec<PricedLine>,
    },
    /// Paid and reserved: confirm a priced pending order.
    Confirm {
        /// The order.
        order_id: OrderId,
    },
    /// Cancel a pending or confirmed order.
    Cancel {
        /// The order.
        order_id: OrderId,
        /// A reason code, 1 to 200 characters (e.g. `insufficient_funds`).
        reason: String,
    },
    /// Hand a confirmed order to the carrier.
    Ship {
        /// The order.
        order_id: OrderId,
    },
    /// Mark a shipped order as delivered.
    Deliver {
        /// The order.
        order_id: OrderId,
    },
}

impl OrderCommand {
    /// The order this command addresses (the record key).
    pub fn order_id(&self) -> OrderId {
        match self {
            OrderCommand::Place { order_id, .. }
            | OrderCommand::Price { order_id, .. }
            | OrderCommand::Confirm { order_id }
            | OrderCommand::Cancel { order_id, .. }
            | OrderCommand::Ship { order_id }
            | OrderCommand::Deliver { order_id } => *order_id,
        }
    }
}

/// Events of an order (topic `orders.events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderEvent {
    /// The order was placed and is pending.
    Placed {
        /// The order.
        order_id: OrderId,
        /// Who ordered.
        user_id: UserId,
        /// What.
        lines: Vec<OrderLine>,
    },
    /// The order was priced from its reservations.
    Priced {
        /// Lines with unit prices.
        lines: Vec<PricedLine>,
        /// Sum of quantity × unit price.
        total: Cents,
    },
    /// The order was confirmed.
    Confirmed,
    /// The order was cancelled.
    Cancelled {
        /// The reason code.
        reason: String,
        /// The status it had before.
        previous: OrderStatus,
    },
    /// The order was shipped.
    Shipped,
    /// The order was delivered.
    Delivered,
}

impl Versioned for OrderEvent {
    const SCHEMA_VERSION: u16 = 1;
    const TYPE_NAME: &'static str = "OrderEvent";
}

/// Why an order command was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderRejection {
    /// `unknown_order`
    #[error("no such order")]
    UnknownOrder,
    /// `already_placed`
    #[error("order already placed")]
    AlreadyPlaced,
    /// `empty_order`
    #[error("an order needs at least one line")]
    EmptyOrder,
    /// `too_many_lines`
    #[error("an order has at most {MAX_LINES} lines")]
    TooManyLines,
    /// `invalid_quantity`
    #[error("every line needs a quantity greater than zero")]
    InvalidQuantity,
    /// `duplicate_product`
    #[error("product {0} appears on more than one line")]
    DuplicateProduct(ProductId),
    /// `lines_mismatch`
    #[error("priced lines differ from the placed lines")]
    LinesMismatch,
    /// `invalid_price`
    #[error("every unit price must be greater than zero")]
    InvalidPrice,
    /// `already_priced`
    #[error("order already priced")]
    AlreadyPriced,
    /// `not_priced`
    #[error("order must be priced before it is confirmed")]
    NotPriced,
    /// `invalid_reason`
    #[error("a cancellation reason must be 1 to 200 characters")]
    InvalidReason,
    /// `invalid_transition`
    #[error("cannot {action} an order that is {from}")]
    InvalidTransition {
        /// The order's status.
        from: OrderStatus,
        /// What was asked.
        action: &'static str,
    },
    /// `amount_overflow`
    #[error("order total overflows")]
    Overflow,
}

impl ReasonCode for OrderRejection {
    fn code(&self) -> &'static str {
        match self {
            OrderRejection::UnknownOrder => "unknown_order",
            OrderRejection::AlreadyPlaced => "already_placed",
            OrderRejection::EmptyOrder => "empty_order",
            OrderRejection::TooManyLines => "too_many_lines",
            OrderRejection::InvalidQuantity => "invalid_quantity",
            OrderRejection::DuplicateProduct(_) => "duplicate_product",
            OrderRejection::LinesMismatch => "lines_mismatch",
            OrderRejection::InvalidPrice => "invalid_price",
            OrderRejection::AlreadyPriced => "already_priced",
            OrderRejection::NotPriced => "not_priced",
            OrderRejection::InvalidReason => "invalid_reason",
            OrderRejection::InvalidTransition { .. } => "invalid_transition",
            OrderRejection::Overflow => "amount_overflow",
        }
    }
}
