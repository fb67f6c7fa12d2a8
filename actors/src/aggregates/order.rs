//! The order aggregate: what was ordered, at what price, and the status
//! machine `Pending → Confirmed → Shipped → Delivered`, with
//! `Pending | Confirmed → Cancelled`.

use crate::aggregate::Aggregate;
use ordersaga_events::order::{
    OrderCommand, OrderEvent, OrderLine, OrderRejection, OrderStatus, PricedLine, MAX_LINES,
};
use ordersaga_events::topics::Service;
use ordersaga_events::{Cents, OrderId, ProductId, StreamKind, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Longest accepted cancellation reason.
const MAX_REASON_CHARS: usize = 200;

/// One order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    // `Option`s: the id types' `Default` is random, and an order that was
    // never placed has no status at all.
    order_id: Option<OrderId>,
    user_id: Option<UserId>,
    status: Option<OrderStatus>,
    lines: Vec<OrderLine>,
    priced_lines: Vec<PricedLine>,
    total: Option<Cents>,
    cancel_reason: Option<String>,
}

impl Order {
    /// The order's id, once placed.
    pub fn order_id(&self) -> Option<OrderId> {
        self.order_id
    }

    /// Who placed the order, once placed.
    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
    }

    /// The current status; `None` when the order was never placed.
    pub fn status(&self) -> Option<OrderStatus> {
        self.status
    }

    /// `true` once a `Placed` event has been applied.
    pub fn is_placed(&self) -> bool {
        self.status.is_some()
    }

    /// The lines as placed.
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// The lines with the unit prices their reservations were made at; empty
    /// until priced.
    pub fn priced_lines(&self) -> &[PricedLine] {
        &self.priced_lines
    }

    /// The order total; `None` until priced.
    pub fn total(&self) -> Option<Cents> {
        self.total
    }

    /// `true` once a `Priced` event has been applied.
    pub fn is_priced(&self) -> bool {
        self.total.is_some()
    }

    /// Why the order was cancelled; `None` unless it was.
    pub fn cancel_reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref()
    }

    fn decide_place(
        &self,
        order_id: OrderId,
        user_id: UserId,
        lines: &[OrderLine],
    ) -> Result<Vec<OrderEvent>, OrderRejection> {
        if self.is_placed() {
            return Err(OrderRejection::AlreadyPlaced);
        }
        if lines.is_empty() {
            return Err(OrderRejection::EmptyOrder);
        }
        if lines.len() > MAX_LINES {
            return Err(OrderRejection::TooManyLines);
        }
        if lines.iter().any(|line| line.quantity == 0) {
            return Err(OrderRejection::InvalidQuantity);
        }
        // One line per product, so each product is reserved exactly once.
        let mut seen = BTreeSet::new();
        if let Some(line) = lines.iter().find(|line| !seen.insert(line.product_id)) {
            return Err(OrderRejection::DuplicateProduct(line.product_id));
        }
        Ok(vec![OrderEvent::Placed {
            order_id,
            user_id,
            lines: lines.to_vec(),
        }])
    }

    fn decide_price(
        &self,
        status: OrderStatus,
        lines: &[PricedLine],
    ) -> Result<Vec<OrderEvent>, OrderRejection> {
        if status != OrderStatus::Pending {
            return Err(OrderRejection::InvalidTransition {
                from: status,
                action: "price",
            });
        }
        if self.is_priced() {
            return Err(OrderRejection::AlreadyPriced);
        }
        // Prices arrive per reservation, in whatever order those finished:
        // compare as sets, not sequences.
        let mut placed: Vec<(ProductId, u64)> = self
            .lines
            .iter()
            .map(|line| (line.product_id, line.quantity))
            .collect();
        let mut priced: Vec<(ProductId, u64)> = lines
            .iter()
            .map(|line| (line.product_id, line.quantity))
            .collect();
        placed.sort_unstable();
        priced.sort_unstable();
        if placed != priced {
            return Err(OrderRejection::LinesMismatch);
        }
        if lines.iter().any(|line| line.unit_price == Cents::ZERO) {
            return Err(OrderRejection::InvalidPrice);
        }
        let total = lines
            .iter()
            .try_fold(Cents::ZERO, |sum, line| {
                line.unit_price
                    .checked_mul(line.quantity)
                    .and_then(|amount| sum.checked_add(amount))
            })
            .ok_or(OrderRejection::Overflow)?;
        Ok(vec![OrderEvent::Priced {
            lines: lines.to_vec(),
            total,
        }])
    }

    fn decide_confirm(&self, status: OrderStatus) -> Result<Vec<OrderEvent>, OrderRejection> {
        match status {
            // The saga charges the priced total, so confirming unpriced would
            // confirm an order nobody paid a known amount for.
            OrderStatus::Pending if !self.is_priced() => Err(OrderRejection::NotPriced),
            OrderStatus::Pending => Ok(vec![OrderEvent::Confirmed]),
            from => Err(OrderRejection::InvalidTransition {
                from,
                action: "confirm",
            }),
        }
    }

    fn decide_cancel(
        &self,
        status: OrderStatus,
        reason: &str,
    ) -> Result<Vec<OrderEvent>, OrderRejection> {
        match status {
            OrderStatus::Pending | OrderStatus::Confirmed => {
                let reason = reason.trim();
                let reason_chars = reason.chars().count();
                if reason_chars == 0 || reason_chars > MAX_REASON_CHARS {
                    return Err(OrderRejection::InvalidReason);
                }
                Ok(vec![OrderEvent::Cancelled {
                    reason: reason.to_owned(),
                    previous: status,
                }])
            }
            from => Err(OrderRejection::InvalidTransition {
                from,
                action: "cancel",
            }),
        }
    }
}

/// The one forward move `action` makes: from `from` to the event, or an
/// `invalid_transition`.
fn step(
    status: OrderStatus,
    from: OrderStatus,
    action: &'static str,
    event: OrderEvent,
) -> Result<Vec<OrderEvent>, OrderRejection> {
    if status == from {
        Ok(vec![event])
    } else {
        Err(OrderRejection::InvalidTransition {
            from: status,
            action,
        })
    }
}

/// The list of each user's orders, newest first.
pub const USER_ORDERS: &str = "user-orders";

/// The entry of `order_id`, placed at `at`, in [`USER_ORDERS`]: the user,
/// then the time counted down from the far future (so that newer sorts
/// first), then the order (so that two orders of one millisecond both fit).
pub fn user_orders_entry(
    user_id: UserId,
    order_id: OrderId,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<u8> {
    let mut entry = user_id.as_uuid().as_bytes().to_vec();
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    entry.extend_from_slice(&(u64::MAX - millis).to_be_bytes());
    entry.extend_from_slice(order_id.as_uuid().as_bytes());
    crate::journal::list_key(USER_ORDERS, &entry)
}

impl Aggregate for Order {
    fn list_entries(event: &OrderEvent, at: chrono::DateTime<chrono::Utc>) -> Vec<Vec<u8>> {
        match event {
            OrderEvent::Placed {
                order_id, user_id, ..
            } => vec![user_orders_entry(*user_id, *order_id, at)],
            _ => Vec::new(),
        }
    }

    const LISTS: bool = true;

    type Command = OrderCommand;
    type Event = OrderEvent;
    type Rejection = OrderRejection;

    const KIND: StreamKind = StreamKind::Order;
    const SERVICE: Service = Service::Orders;

    fn aggregate_id(command: &OrderCommand) -> Uuid {
        command.order_id().as_uuid()
    }

    fn decide(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderRejection> {
        match (command, self.status) {
            (
                OrderCommand::Place {
                    order_id,
                    user_id,
                    lines,
                },
                _,
            ) => self.decide_place(*order_id, *user_id, lines),
            (_, None) => Err(OrderRejection::UnknownOrder),
            (OrderCommand::Price { lines, .. }, Some(status)) => self.decide_price(status, lines),
            (OrderCommand::Confirm { .. }, Some(status)) => self.decide_confirm(status),
            (OrderCommand::Cancel { reason, .. }, Some(status)) => {
                self.decide_cancel(status, reason)
            }
            (OrderCommand::Ship { .. }, Some(status)) => {
                step(status, OrderStatus::Confirmed, "ship", OrderEvent::Shipped)
            }
            (OrderCommand::Deliver { .. }, Some(status)) => step(
                status,
                OrderStatus::Shipped,
                "deliver",
                OrderEvent::Delivered,
            ),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        // `decide` only emits legal moves; these guards only stop replay of a
        // damaged stream from moving the status backwards.
        let status = self.status;
        match event {
            OrderEvent::Placed {
                order_id,
                user_id,
                lines,
            } => {
                if status.is_none() {
                    self.order_id = Some(*order_id);
                    self.user_id = Some(*user_id);
                    self.lines.clone_from(lines);
                    self.status = Some(OrderStatus::Pending);
                }
            }
            OrderEvent::Priced { lines, total } => {
                if status == Some(OrderStatus::Pending) && !self.is_priced() {
                    self.priced_lines.clone_from(lines);
                    self.total = Some(*total);
                }
            }
            OrderEvent::Confirmed => {
                if status == Some(OrderStatus::Pending) {
                    self.status = Some(OrderStatus::Confirmed);
                }
            }
            OrderEvent::Cancelled { reason, .. } => {
                if matches!(status, Some(OrderStatus::Pending | OrderStatus::Confirmed)) {
                    self.status = Some(OrderStatus::Cancelled);
                    self.cancel_reason = Some(reason.clone());
                }
            }
            OrderEvent::Shipped => {
                if status == Some(OrderStatus::Confirmed) {
                    self.status = Some(OrderStatus::Shipped);
                }
            }
            OrderEvent::Delivered => {
                if status == Some(OrderStatus::Shipped) {
                    self.status = Some(OrderStatus::Delivered);
                }
            }
        }
    }
}
