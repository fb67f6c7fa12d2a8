//! What the queries answer: the live state of one aggregate, in plain JSON
//! (amounts in integer cents, ids as UUID text). Never a credential.

use ordersaga_actors::aggregates::{Order, Product, Saga, User, UserStatus};
use ordersaga_events::order::{OrderLine, OrderStatus, PricedLine};
use ordersaga_events::saga::SagaPhase;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// `GET /users/{id}`: an account's profile and money.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The user.
    pub user_id: Uuid,
    /// `active`, `deactivated` or `deleted`.
    #[schema(value_type = String, example = "active")]
    pub status: UserStatus,
    /// The normalised email.
    pub email: String,
    /// The display name.
    pub username: String,
    /// Money available, in cents.
    pub balance: u64,
    /// Every deposit, in cents.
    pub total_deposited: u64,
    /// Every charge, refunded or not, in cents.
    pub total_charged: u64,
    /// Every refund, in cents.
    pub total_refunded: u64,
    /// The stream version the view reflects.
    pub version: u64,
}

impl UserView {
    /// The view of `user` at `version`.
    pub fn of(id: Uuid, user: &User, version: u64) -> Self {
        Self {
            user_id: id,
            status: user.status(),
            email: user.email().to_owned(),
            username: user.username().to_owned(),
            balance: user.balance().0,
            total_deposited: user.total_deposited().0,
            total_charged: user.total_charged().0,
            total_refunded: user.total_refunded().0,
            version,
        }
    }
}

/// `GET /products/{id}`: a product's price and stock.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    /// The product.
    pub product_id: Uuid,
    /// The stock-keeping unit.
    pub sku: String,
    /// The name.
    pub name: String,
    /// The price of one unit, in cents.
    pub unit_price: u64,
    /// Units in stock, held ones included.
    pub on_hand: u64,
    /// Units held for orders.
    pub reserved: u64,
    /// Units that can still be reserved.
    pub available: u64,
    /// The stream version the view reflects.
    pub version: u64,
}

impl ProductView {
    /// The view of `product` at `version`.
    pub fn of(id: Uuid, product: &Product, version: u64) -> Self {
        Self {
            product_id: id,
            sku: product.sku().to_owned(),
            name: product.name().to_owned(),
            unit_price: product.unit_price().0,
            on_hand: product.on_hand(),
            reserved: product.reserved(),
            available: product.available(),
            version,
        }
    }
}

/// The saga of an order, as far as a customer or an operator needs it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaView {
    /// Where it is: `reserving`, `paying`, `confirming`, `committing`,
    /// `compensating`, `completed`, `aborted` or `stuck`.
    #[schema(value_type = String, example = "completed")]
    pub phase: SagaPhase,
    /// The attempt of the current step (1 on its first send).
    pub attempt: u32,
    /// Why it compensates or ended aborted, if it does.
    pub reason: Option<String>,
    /// Why it is stuck, if it is.
    pub stuck_reason: Option<String>,
    /// The steps it waits for (`reserve/<product>`, `charge`, …).
    pub waiting_for: Vec<String>,
    /// What it charged, in cents.
    pub charged: Option<u64>,
}

impl SagaView {
    /// The view of `saga`.
    pub fn of(saga: &Saga) -> Self {
        Self {
            phase: saga.phase(),
            attempt: saga.attempt(),
            reason: saga.reason().map(str::to_owned),
            stuck_reason: saga.stuck_reason().map(str::to_owned),
            waiting_for: saga.outstanding().iter().map(|s| s.label()).collect(),
            charged: saga.charged().map(|c| c.0),
        }
    }
}

/// `GET /orders/{id}`: an order, its lines and total, and its saga.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    /// The order.
    pub order_id: Uuid,
    /// Who placed it.
    pub user_id: Option<Uuid>,
    /// `pending`, `confirmed`, `shipped`, `delivered` or `cancelled`.
    #[schema(value_type = Option<String>, example = "confirmed")]
    pub status: Option<OrderStatus>,
    /// What was ordered: `{product_id, quantity}` each.
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<OrderLine>,
    /// The lines at their reserved prices, once priced:
    /// `{product_id, quantity, unit_price}` each.
    #[schema(value_type = Vec<Object>)]
    pub priced_lines: Vec<PricedLine>,
    /// The total, in cents, once priced.
    pub total: Option<u64>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<String>,
    /// Its saga (absent until the saga has started, and in lists).
    #[schema(nullable)]
    pub saga: Option<SagaView>,
    /// The stream version the view reflects.
    pub version: u64,
}

impl OrderView {
    /// The view of `order` at `version`, with its saga if it has one.
    pub fn of(id: Uuid, order: &Order, version: u64, saga: Option<&Saga>) -> Self {
        Self {
            order_id: id,
            user_id: order.user_id().map(|u| u.as_uuid()),
            status: order.status(),
            lines: order.lines().to_vec(),
            priced_lines: order.priced_lines().to_vec(),
            total: order.total().map(|t| t.0),
            cancel_reason: order.cancel_reason().map(str::to_owned),
            saga: saga.map(SagaView::of),
            version,
        }
    }
}
