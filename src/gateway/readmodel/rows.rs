//! The rows of the read model and what each event does to them.
//!
//! The rows hold what the lists and the fallback reads answer, in plain JSON
//! (amounts in integer cents, ids as UUID text). They compute the same
//! numbers as the aggregates' `apply` (`actors/src/aggregates/`), which the
//! tests below check event by event. The aggregates' extra guards (held
//! reservations per order, charges per order) only matter when an event is
//! applied twice or out of order, which the read model never does: it
//! applies each stream's events once, in sequence order.
//!
//! Never a credential: user events carry no password hash since schema
//! version 2, and version 1 payloads are upcast without it before they get
//! here.

use chrono::{DateTime, Utc};
use ordersaga_actors::aggregates::UserStatus;
use ordersaga_events::inventory::InventoryEvent;
use ordersaga_events::order::{OrderEvent, OrderLine, OrderStatus, PricedLine};
use ordersaga_events::user::UserEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A user account as the read model has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRow {
    /// The user.
    pub user_id: Uuid,
    /// The normalised email.
    pub email: String,
    /// The display name.
    pub username: String,
    /// `active`, `deactivated` or `deleted`.
    #[schema(value_type = String, example = "active")]
    pub status: UserStatus,
    /// Money available, in cents.
    pub balance: u64,
    /// Every deposit, in cents.
    pub total_deposited: u64,
    /// Every charge, refunded or not, in cents.
    pub total_charged: u64,
    /// Every refund, in cents.
    pub total_refunded: u64,
    /// The last sequence of the user's stream the row reflects.
    pub version: u64,
}

/// A product's price and stock as the read model has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductRow {
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
    /// Units that can still be reserved: `on_hand − reserved`.
    pub available: u64,
    /// The last sequence of the product's stream the row reflects.
    pub version: u64,
}

/// An order as the read model has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderRow {
    /// The order.
    pub order_id: Uuid,
    /// Who placed it.
    pub user_id: Uuid,
    /// `pending`, `confirmed`, `shipped`, `delivered` or `cancelled`.
    #[schema(value_type = String, example = "confirmed")]
    pub status: OrderStatus,
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
    /// When it was placed (RFC 3339): the `Placed` event's time.
    #[schema(value_type = String, format = DateTime)]
    pub placed_at: DateTime<Utc>,
    /// The last sequence of the order's stream the row reflects.
    pub version: u64,
}

/// The user row after `event` (sequence `version`) of user `id`'s stream.
/// `None` in, `None` out for anything but `Registered`: a stream whose
/// creation the read model never saw (records lost from the topic) makes no
/// row up.
pub(crate) fn apply_user(
    row: Option<UserRow>,
    id: Uuid,
    event: &UserEvent,
    version: u64,
) -> Option<UserRow> {
    let mut row = match (row, event) {
        (
            None,
            UserEvent::Registered {
                email, username, ..
            },
        ) => UserRow {
            user_id: id,
            email: email.clone(),
            username: username.clone(),
            status: UserStatus::Active,
            balance: 0,
            total_deposited: 0,
            total_charged: 0,
            total_refunded: 0,
            version,
        },
        (None, _) => return None,
        (Some(row), _) => row,
    };
    // Counters saturate, as the aggregate's do.
    match event {
        // Registered once: the row above already holds it.
        UserEvent::Registered { .. } => {}
        UserEvent::Deposited { amount } => {
            row.balance = row.balance.saturating_add(amount.0);
            row.total_deposited = row.total_deposited.saturating_add(amount.0);
        }
        UserEvent::Charged { amount, .. } => {
            row.balance = row.balance.saturating_sub(amount.0);
            row.total_charged = row.total_charged.saturating_add(amount.0);
        }
        UserEvent::Refunded { amount, .. } => {
            row.balance = row.balance.saturating_add(amount.0);
            row.total_refunded = row.total_refunded.saturating_add(amount.0);
        }
        UserEvent::Deactivated => {
            if row.status == UserStatus::Active {
                row.status = UserStatus::Deactivated;
            }
        }
        UserEvent::Deleted { .. } => row.status = UserStatus::Deleted,
    }
    row.version = version;
    Some(row)
}

/// The product row after `event` (sequence `version`) of product `id`'s
/// stream; like [`apply_user`], only `ProductAdded` makes a row.
pub(crate) fn apply_product(
    row: Option<ProductRow>,
    id: Uuid,
    event: &InventoryEvent,
    version: u64,
) -> Option<ProductRow> {
    let mut row = match (row, event) {
        (
            None,
            InventoryEvent::ProductAdded {
                sku,
                name,
                unit_price,
                stock,
                ..
            },
        ) => ProductRow {
            product_id: id,
            sku: sku.clone(),
            name: name.clone(),
            unit_price: unit_price.0,
            on_hand: *stock,
            reserved: 0,
            available: 0,
            version,
        },
        (None, _) => return None,
        (Some(row), _) => row,
    };
    match event {
        InventoryEvent::ProductAdded { .. } => {}
        InventoryEvent::Restocked { quantity } => {
            row.on_hand = row.on_hand.saturating_add(*quantity);
        }
        InventoryEvent::Reserved { quantity, .. } => {
            row.reserved = row.reserved.saturating_add(*quantity);
        }
        InventoryEvent::Released { quantity, .. } => {
            row.reserved = row.reserved.saturating_sub(*quantity);
        }
        InventoryEvent::Committed { quantity, .. } => {
            row.reserved = row.reserved.saturating_sub(*quantity);
            row.on_hand = row.on_hand.saturating_sub(*quantity);
        }
        InventoryEvent::Returned { quantity, .. } => {
            row.on_hand = row.on_hand.saturating_add(*quantity);
        }
    }
    row.available = row.on_hand.saturating_sub(row.reserved);
    row.version = version;
    Some(row)
}

/// The order row after `event` (sequence `version`, recorded `at`) of order
/// `id`'s stream; like [`apply_user`], only `Placed` makes a row. The status
/// only moves the ways the aggregate lets it.
pub(crate) fn apply_order(
    row: Option<OrderRow>,
    id: Uuid,
    event: &OrderEvent,
    version: u64,
    at: DateTime<Utc>,
) -> Option<OrderRow> {
    let mut row = match (row, event) {
        (None, OrderEvent::Placed { user_id, lines, .. }) => OrderRow {
            order_id: id,
            user_id: user_id.as_uuid(),
            status: OrderStatus::Pending,
            lines: lines.clone(),
            priced_lines: Vec::new(),
            total: None,
            cancel_reason: None,
            placed_at: at,
            version,
        },
        (None, _) => return None,
        (Some(row), _) => row,
    };
    let status = row.status;
    match event {
        OrderEvent::Placed { .. } => {}
        OrderEvent::Priced { lines, total } => {
            if status == OrderStatus::Pending && row.total.is_none() {
                row.priced_lines.clone_from(lines);
                row.total = Some(total.0);
            }
        }
        OrderEvent::Confirmed => {
            if status == OrderStatus::Pending {
                row.status = OrderStatus::Confirmed;
            }
        }
        OrderEvent::Cancelled { reason, .. } => {
            if matches!(status, OrderStatus::Pending | OrderStatus::Confirmed) {
                row.status = OrderStatus::Cancelled;
                row.cancel_reason = Some(reason.clone());
            }
        }
        OrderEvent::Shipped => {
            if status == OrderStatus::Confirmed {
                row.status = OrderStatus::Shipped;
            }
        }
        OrderEvent::Delivered => {
            if status == OrderStatus::Shipped {
                row.status = OrderStatus::Delivered;
            }
        }
    }
    row.version = version;
    Some(row)
}

#[cfg(test)]
mod tests {
    //! Given a stream's events, when they are applied one by one, then the
    //! row says what the aggregate says.
    use super::*;
    use ordersaga_actors::aggregates::{Order, Product, User};
    use ordersaga_actors::Aggregate;
    use ordersaga_events::{Cents, OrderId, ProductId, UserId};

    fn fold_user(events: &[UserEvent]) -> (Option<UserRow>, User) {
        let id = Uuid::new_v4();
        let (mut row, mut user) = (None, User::default());
        for (i, event) in events.iter().enumerate() {
            row = apply_user(row, id, event, i as u64 + 1);
            user.apply(event);
        }
        (row, user)
    }

    fn assert_user(row: &UserRow, user: &User) {
        assert_eq!(row.status, user.status());
        assert_eq!(row.email, user.email());
        assert_eq!(row.username, user.username());
        assert_eq!(row.balance, user.balance().0);
        assert_eq!(row.total_deposited, user.total_deposited().0);
        assert_eq!(row.total_charged, user.total_charged().0);
        assert_eq!(row.total_refunded, user.total_refunded().0);
    }

    #[test]
    fn a_user_row_follows_deposits_charges_refunds_and_status() {
        let (a, b) = (OrderId::new(), OrderId::new());
        let registered = UserEvent::Registered {
            user_id: UserId::new(),
            email: "ann@example.com".into(),
            username: "ann".into(),
        };
        let events = vec![
            registered,
            UserEvent::Deposited { amount: Cents(100) },
            UserEvent::Charged {
                order_id: a,
                amount: Cents(30),
            },
            UserEvent::Charged {
                order_id: b,
                amount: Cents(50),
            },
            UserEvent::Refunded {
                order_id: a,
                amount: Cents(30),
            },
            UserEvent::Deactivated,
        ];
        for n in 1..=events.len() {
            let (row, user) = fold_user(&events[..n]);
            let row = row.expect("a registered user has a row");
            assert_user(&row, &user);
            assert_eq!(row.version, n as u64);
        }
        let (row, _) = fold_user(&events);
        let row = row.unwrap();
        assert_eq!(
            (row.balance, row.total_charged, row.total_refunded),
            (50, 80, 30)
        );
        assert_eq!(row.status, UserStatus::Deactivated);

        let mut deleted = events.clone();
        deleted.push(UserEvent::Deleted {
            email: "ann@example.com".into(),
        });
        let (row, user) = fold_user(&deleted);
        assert_user(&row.unwrap(), &user);
    }

    #[test]
    fn a_stream_whose_creation_was_never_seen_makes_no_row() {
        let id = Uuid::new_v4();
        assert_eq!(
            apply_user(None, id, &UserEvent::Deposited { amount: Cents(5) }, 2),
            None
        );
        assert_eq!(
            apply_product(None, id, &InventoryEvent::Restocked { quantity: 1 }, 2),
            None
        );
        assert_eq!(
            apply_order(None, id, &OrderEvent::Confirmed, 3, Utc::now()),
            None
        );
    }

    fn fold_product(events: &[InventoryEvent]) -> (ProductRow, Product) {
        let id = Uuid::new_v4();
        let (mut row, mut product) = (None, Product::default());
        for (i, event) in events.iter().enumerate() {
            row = apply_product(row, id, event, i as u64 + 1);
            product.apply(event);
        }
        (row.expect("an added product has a row"), product)
    }

    #[test]
    fn a_product_row_follows_reserve_release_commit_return_and_restock() {
        let (a, b) = (OrderId::new(), OrderId::new());
        let events = vec![
            InventoryEvent::ProductAdded {
                product_id: ProductId::new(),
                sku: "SKU-1".into(),
                name: "widget".into(),
                unit_price: Cents(250),
                stock: 10,
            },
            InventoryEvent::Reserved {
                order_id: a,
                quantity: 3,
                unit_price: Cents(250),
            },
            InventoryEvent::Reserved {
                order_id: b,
                quantity: 4,
                unit_price: Cents(250),
            },
            InventoryEvent::Released {
                order_id: b,
                quantity: 4,
            },
            InventoryEvent::Committed {
                order_id: a,
                quantity: 3,
            },
            InventoryEvent::Restocked { quantity: 5 },
            InventoryEvent::Returned {
                order_id: a,
                quantity: 3,
            },
        ];
        for n in 1..=events.len() {
            let (row, product) = fold_product(&events[..n]);
            assert_eq!(row.on_hand, product.on_hand(), "after {n} events");
            assert_eq!(row.reserved, product.reserved(), "after {n} events");
            assert_eq!(row.available, product.available(), "after {n} events");
            assert_eq!(row.unit_price, product.unit_price().0);
            assert_eq!(
                (row.sku.as_str(), row.name.as_str()),
                (product.sku(), product.name())
            );
            assert_eq!(row.version, n as u64);
        }
        let (row, _) = fold_product(&events);
        assert_eq!((row.on_hand, row.reserved, row.available), (15, 0, 15));
    }

    fn fold_order(events: &[OrderEvent]) -> (OrderRow, Order) {
        let id = Uuid::new_v4();
        let at = Utc::now();
        let (mut row, mut order) = (None, Order::default());
        for (i, event) in events.iter().enumerate() {
            row = apply_order(row, id, event, i as u64 + 1, at);
            order.apply(event);
        }
        (row.expect("a placed order has a row"), order)
    }

    fn assert_order(row: &OrderRow, order: &Order) {
        assert_eq!(Some(row.status), order.status());
        assert_eq!(Some(row.user_id), order.user_id().map(|u| u.as_uuid()));
        assert_eq!(row.lines, order.lines());
        assert_eq!(row.priced_lines, order.priced_lines());
        assert_eq!(row.total, order.total().map(|t| t.0));
        assert_eq!(row.cancel_reason.as_deref(), order.cancel_reason());
    }

    fn placed_and_priced() -> Vec<OrderEvent> {
        let product_id = ProductId::new();
        vec![
            OrderEvent::Placed {
                order_id: OrderId::new(),
                user_id: UserId::new(),
                lines: vec![OrderLine {
                    product_id,
                    quantity: 2,
                }],
            },
            OrderEvent::Priced {
                lines: vec![PricedLine {
                    product_id,
                    quantity: 2,
                    unit_price: Cents(150),
                }],
                total: Cents(300),
            },
        ]
    }

    #[test]
    fn an_order_row_follows_the_status_machine_to_delivered() {
        let mut events = placed_and_priced();
        events.extend([
            OrderEvent::Confirmed,
            OrderEvent::Shipped,
            OrderEvent::Delivered,
        ]);
        for n in 1..=events.len() {
            let (row, order) = fold_order(&events[..n]);
            assert_order(&row, &order);
            assert_eq!(row.version, n as u64);
        }
        let (row, _) = fold_order(&events);
        assert_eq!((row.status, row.total), (OrderStatus::Delivered, Some(300)));
    }

    #[test]
    fn an_order_row_records_a_cancellation_and_its_reason() {
        let mut events = placed_and_priced();
        events.push(OrderEvent::Cancelled {
            reason: "insufficient_funds".into(),
            previous: OrderStatus::Pending,
        });
        // A move the status machine forbids changes nothing but the version.
        events.push(OrderEvent::Shipped);
        let (row, order) = fold_order(&events);
        assert_order(&row, &order);
        assert_eq!(row.status, OrderStatus::Cancelled);
        assert_eq!(row.cancel_reason.as_deref(), Some("insufficient_funds"));
        assert_eq!(row.version, 4);
    }

    #[test]
    fn rows_are_plain_json_without_credentials() {
        let (row, _) = fold_user(&[UserEvent::Registered {
            user_id: UserId::new(),
            email: "bo@example.com".into(),
            username: "bo".into(),
        }]);
        let json = serde_json::to_value(row.unwrap()).unwrap();
        assert_eq!(json["status"], "active");
        assert_eq!(json["balance"], 0);
        let text = json.to_string();
        assert!(
            !text.contains("password") && !text.contains("hash"),
            "{text}"
        );

        let (order, _) = fold_order(&placed_and_priced());
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(json["status"], "pending");
        assert!(json["placed_at"].as_str().unwrap().contains('T'), "{json}");
        let back: OrderRow = serde_json::from_value(json).unwrap();
        assert_eq!(back, order);
    }
}
