//! The inventory service contract: one aggregate per product.

use crate::codec::Versioned;
use crate::ids::{OrderId, ProductId};
use crate::money::Cents;
use crate::reply::ReasonCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Commands for a product (topic `inventory.commands`, key = product id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InventoryCommand {
    /// Create a product with its initial stock.
    AddProduct {
        /// The product's id (chosen by the caller).
        product_id: ProductId,
        /// Stock-keeping unit, 1 to 64 characters.
        sku: String,
        /// Name, 1 to 200 characters.
        name: String,
        /// Price of one unit, more than zero.
        unit_price: Cents,
        /// Units on hand.
        stock: u64,
    },
    /// Add units to stock.
    Restock {
        /// The product.
        product_id: ProductId,
        /// More than zero.
        quantity: u64,
    },
    /// Hold units for an order: all of `quantity` or nothing; once per order.
    Reserve {
        /// The product.
        product_id: ProductId,
        /// The order.
        order_id: OrderId,
        /// More than zero, at most the available units.
        quantity: u64,
    },
    /// Give back an order's held units. Releasing a reservation that does not
    /// exist, or is no longer held, is accepted and changes nothing.
    Release {
        /// The product.
        product_id: ProductId,
        /// The order.
        order_id: OrderId,
    },
    /// The order was confirmed: the held units leave stock.
    Commit {
        /// The product.
        product_id: ProductId,
        /// The order.
        order_id: OrderId,
    },
    /// A confirmed order was cancelled: its committed units return to stock.
    Return {
        /// The product.
        product_id: ProductId,
        /// The order.
        order_id: OrderId,
    },
}

impl InventoryCommand {
    /// The product this command addresses (the record key).
    pub fn product_id(&self) -> ProductId {
        match self {
            InventoryCommand::AddProduct { product_id, .. }
            | InventoryCommand::Restock { product_id, .. }
            | InventoryCommand::Reserve { product_id, .. }
            | InventoryCommand::Release { product_id, .. }
            | InventoryCommand::Commit { product_id, .. }
            | InventoryCommand::Return { product_id, .. } => *product_id,
        }
    }
}

/// Events of a product (topic `inventory.events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InventoryEvent {
    /// The product exists, with `stock` units on hand.
    ProductAdded {
        /// The product.
        product_id: ProductId,
        /// Stock-keeping unit.
        sku: String,
        /// Name.
        name: String,
        /// Price of one unit.
        unit_price: Cents,
        /// Initial units on hand.
        stock: u64,
    },
    /// Units were added to stock.
    Restocked {
        /// Units added.
        quantity: u64,
    },
    /// Units are held for an order, at the given unit price.
    Reserved {
        /// The order.
        order_id: OrderId,
        /// Units held.
        quantity: u64,
        /// Price of one unit at reservation time; the order is priced from it.
        unit_price: Cents,
    },
    /// An order's held units were given back.
    Released {
        /// The order.
        order_id: OrderId,
        /// Units given back.
        quantity: u64,
    },
    /// An order's held units left stock.
    Committed {
        /// The order.
        order_id: OrderId,
        /// Units that left stock.
        quantity: u64,
    },
    /// A cancelled order's committed units came back to stock.
    Returned {
        /// The order.
        order_id: OrderId,
        /// Units back on hand.
        quantity: u64,
    },
}

impl Versioned for InventoryEvent {
    const SCHEMA_VERSION: u16 = 1;
    const TYPE_NAME: &'static str = "InventoryEvent";
}

/// Why an inventory command was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InventoryRejection {
    /// `unknown_product`
    #[error("no such product")]
    UnknownProduct,
    /// `product_exists`
    #[error("product already exists")]
    ProductExists,
    /// `invalid_sku`
    #[error("sku must be 1 to 64 characters with no whitespace")]
    InvalidSku,
    /// `invalid_name`
    #[error("name must be 1 to 200 characters")]
    InvalidName,
    /// `invalid_price`
    #[error("unit price must be greater than zero")]
    InvalidPrice,
    /// `invalid_quantity`
    #[error("quantity must be greater than zero")]
    InvalidQuantity,
    /// `insufficient_stock`
    #[error("insufficient stock: {available} available, {requested} requested")]
    InsufficientStock {
        /// Units available now.
        available: u64,
        /// Units asked for.
        requested: u64,
    },
    /// `already_reserved`
    #[error("order {0} already has a reservation for this product")]
    AlreadyReserved(OrderId),
    /// `not_reserved`
    #[error("order {0} holds no reservation for this product")]
    NotReserved(OrderId),
    /// `not_committed`
    #[error("order {0} has no committed units of this product to return")]
    NotCommitted(OrderId),
    /// `quantity_overflow`
    #[error("quantity overflows the stock counter")]
    Overflow,
}

impl ReasonCode for InventoryRejection {
    fn code(&self) -> &'static str {
        match self {
            InventoryRejection::UnknownProduct => "unknown_product",
            InventoryRejection::ProductExists => "product_exists",
            InventoryRejection::InvalidSku => "invalid_sku",
            InventoryRejection::InvalidName => "invalid_name",
            InventoryRejection::InvalidPrice => "invalid_price",
            InventoryRejection::InvalidQuantity => "invalid_quantity",
            InventoryRejection::InsufficientStock { .. } => "insufficient_stock",
            InventoryRejection::AlreadyReserved(_) => "already_reserved",
            InventoryRejection::NotReserved(_) => "not_reserved",
            InventoryRejection::NotCommitted(_) => "not_committed",
            InventoryRejection::Overflow => "quantity_overflow",
        }
    }
}
