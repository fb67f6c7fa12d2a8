//! The product aggregate: one product's stock and the reservations held
//! against it, one per order.

use crate::aggregate::Aggregate;
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent, InventoryRejection};
use ordersaga_events::topics::Service;
use ordersaga_events::CommandResult;
use ordersaga_events::{Cents, OrderId, ProductId, StreamKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Longest accepted SKU.
const MAX_SKU_CHARS: usize = 64;
/// Longest accepted product name.
const MAX_NAME_CHARS: usize = 200;

/// Where an order's reservation of this product is. Only held reservations
/// stay in the live state; a closed one (released, committed, returned)
/// leaves it for the journal's archive, from which it is recalled for a
/// decision about its order, so a finished order cannot reserve again by
/// mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Units are set aside for the order; they count as reserved.
    Held,
    /// The hold was given back without the units leaving stock.
    Released,
    /// The units left stock for a confirmed order.
    Committed,
    /// The committed units came back to stock after a cancellation.
    Returned,
}

/// One order's reservation of this product. A recalled closed reservation
/// carries no unit price (zero): only a held one is priced from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Units reserved.
    pub quantity: u64,
    /// The unit price at reservation time, which the order is priced from.
    pub unit_price: Cents,
    /// Where the reservation is now.
    pub state: ReservationState,
}

/// One product's stock.
///
/// Stock invariant (checked by the tests):
/// `on_hand = initial_stock + total_restocked + total_returned − total_committed`,
/// and `reserved` is the sum of the held reservations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    // `Option` rather than `ProductId`: its `Default` is random.
    product_id: Option<ProductId>,
    sku: String,
    name: String,
    unit_price: Cents,
    on_hand: u64,
    reserved: u64,
    initial_stock: u64,
    total_restocked: u64,
    total_committed: u64,
    total_returned: u64,
    /// Held reservations, plus a closed one recalled for the decision at
    /// hand (see [`Aggregate::recall`]).
    reservations: BTreeMap<OrderId, Reservation>,
}

impl Product {
    /// The product's id, once added.
    pub fn product_id(&self) -> Option<ProductId> {
        self.product_id
    }

    /// `true` once a `ProductAdded` event has been applied.
    pub fn exists(&self) -> bool {
        self.product_id.is_some()
    }

    /// The stock-keeping unit (trimmed); empty before the product is added.
    pub fn sku(&self) -> &str {
        &self.sku
    }

    /// The name (trimmed); empty before the product is added.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current price of one unit.
    pub fn unit_price(&self) -> Cents {
        self.unit_price
    }

    /// Units physically in stock, held ones included.
    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }

    /// Units held for orders (the sum of held reservations).
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Units that can still be reserved: `on_hand − reserved`, never below zero.
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    /// Units on hand when the product was added.
    pub fn initial_stock(&self) -> u64 {
        self.initial_stock
    }

    /// Sum of every restock.
    pub fn total_restocked(&self) -> u64 {
        self.total_restocked
    }

    /// Sum of every commit (units that left stock).
    pub fn total_committed(&self) -> u64 {
        self.total_committed
    }

    /// Sum of every return (units that came back).
    pub fn total_returned(&self) -> u64 {
        self.total_returned
    }

    /// The reservation `order_id` made: a held one, or a closed one that
    /// has been recalled into this copy of the state.
    pub fn reservation(&self, order_id: OrderId) -> Option<&Reservation> {
        self.reservations.get(&order_id)
    }

    /// The held reservations, by order.
    pub fn reservations(&self) -> &BTreeMap<OrderId, Reservation> {
        &self.reservations
    }

    /// The reservation of `order_id` if it is in `state`.
    fn reservation_in(&self, order_id: OrderId, state: ReservationState) -> Option<&Reservation> {
        self.reservations
            .get(&order_id)
            .filter(|reservation| reservation.state == state)
    }

    fn decide_add(
        &self,
        product_id: ProductId,
        sku: &str,
        name: &str,
        unit_price: Cents,
        stock: u64,
    ) -> Result<Vec<InventoryEvent>, InventoryRejection> {
        if self.exists() {
            return Err(InventoryRejection::ProductExists);
        }
        let sku = sku.trim();
        let sku_chars = sku.chars().count();
        if sku_chars == 0 || sku_chars > MAX_SKU_CHARS || sku.chars().any(char::is_whitespace) {
            return Err(InventoryRejection::InvalidSku);
        }
        let name = name.trim();
        let name_chars = name.chars().count();
        if name_chars == 0 || name_chars > MAX_NAME_CHARS {
            return Err(InventoryRejection::InvalidName);
        }
        if unit_price == Cents::ZERO {
            return Err(InventoryRejection::InvalidPrice);
        }
        Ok(vec![InventoryEvent::ProductAdded {
            product_id,
            sku: sku.to_owned(),
            name: name.to_owned(),
            unit_price,
            stock,
        }])
    }

    fn decide_restock(&self, quantity: u64) -> Result<Vec<InventoryEvent>, InventoryRejection> {
        if quantity == 0 {
            return Err(InventoryRejection::InvalidQuantity);
        }
        self.on_hand
            .checked_add(quantity)
            .and(self.total_restocked.checked_add(quantity))
            .ok_or(InventoryRejection::Overflow)?;
        Ok(vec![InventoryEvent::Restocked { quantity }])
    }

    fn decide_reserve(
        &self,
        order_id: OrderId,
        quantity: u64,
    ) -> Result<Vec<InventoryEvent>, InventoryRejection> {
        if quantity == 0 {
            return Err(InventoryRejection::InvalidQuantity);
        }
        // Whatever state the earlier reservation is in: a retried saga step
        // must not hold stock twice, nor re-hold a released one.
        if self.reservations.contains_key(&order_id) {
            return Err(InventoryRejection::AlreadyReserved(order_id));
        }
        let available = self.available();
        if quantity > available {
            return Err(InventoryRejection::InsufficientStock {
                available,
                requested: quantity,
            });
        }
        Ok(vec![InventoryEvent::Reserved {
            order_id,
            quantity,
            unit_price: self.unit_price,
        }])
    }

    fn decide_release(&self, order_id: OrderId) -> Vec<InventoryEvent> {
        // Compensation must always succeed, so releasing nothing is accepted.
        match self.reservation_in(order_id, ReservationState::Held) {
            Some(held) => vec![InventoryEvent::Released {
                order_id,
                quantity: held.quantity,
            }],
            None => Vec::new(),
        }
    }

    fn decide_commit(&self, order_id: OrderId) -> Result<Vec<InventoryEvent>, InventoryRejection> {
        let held = self
            .reservation_in(order_id, ReservationState::Held)
            .ok_or(InventoryRejection::NotReserved(order_id))?;
        self.total_committed
            .checked_add(held.quantity)
            .ok_or(InventoryRejection::Overflow)?;
        Ok(vec![InventoryEvent::Committed {
            order_id,
            quantity: held.quantity,
        }])
    }

    fn decide_return(&self, order_id: OrderId) -> Result<Vec<InventoryEvent>, InventoryRejection> {
        let committed = self
            .reservation_in(order_id, ReservationState::Committed)
            .ok_or(InventoryRejection::NotCommitted(order_id))?;
        // Restocks since the commit may have filled the counter.
        self.on_hand
            .checked_add(committed.quantity)
            .and(self.total_returned.checked_add(committed.quantity))
            .ok_or(InventoryRejection::Overflow)?;
        Ok(vec![InventoryEvent::Returned {
            order_id,
            quantity: committed.quantity,
        }])
    }

    /// Closes `order_id`'s held reservation (it moves to the archive);
    /// `false` (and no change) when it is not held.
    fn close_held(&mut self, order_id: OrderId) -> bool {
        match self.reservations.get(&order_id) {
            Some(reservation) if reservation.state == ReservationState::Held => {
                self.reservations.remove(&order_id);
                true
            }
            _ => false,
        }
    }
}

impl Aggregate for Product {
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Rejection = InventoryRejection;

    const KIND: StreamKind = StreamKind::Product;
    const SERVICE: Service = Service::Inventory;

    fn aggregate_id(command: &InventoryCommand) -> Uuid {
        command.product_id().as_uuid()
    }

    fn decide(
        &self,
        command: &InventoryCommand,
    ) -> Result<Vec<InventoryEvent>, InventoryRejection> {
        match command {
            InventoryCommand::AddProduct {
                product_id,
                sku,
                name,
                unit_price,
                stock,
            } => self.decide_add(*product_id, sku, name, *unit_price, *stock),
            _ if !self.exists() => Err(InventoryRejection::UnknownProduct),
            InventoryCommand::Restock { quantity, .. } => self.decide_restock(*quantity),
            InventoryCommand::Reserve {
                order_id, quantity, ..
            } => self.decide_reserve(*order_id, *quantity),
            InventoryCommand::Release { order_id, .. } => Ok(self.decide_release(*order_id)),
            InventoryCommand::Commit { order_id, .. } => self.decide_commit(*order_id),
            InventoryCommand::Return { order_id, .. } => self.decide_return(*order_id),
        }
    }

    fn archive_key(event: &InventoryEvent) -> Option<String> {
        match event {
            InventoryEvent::Released { order_id, .. }
            | InventoryEvent::Committed { order_id, .. }
            | InventoryEvent::Returned { order_id, .. } => Some(order_id.to_string()),
            _ => None,
        }
    }

    fn recall_key(command: &InventoryCommand) -> Option<String> {
        // Release and commit need a held reservation, which is in memory.
        match command {
            InventoryCommand::Reserve { order_id, .. }
            | InventoryCommand::Return { order_id, .. } => Some(order_id.to_string()),
            _ => None,
        }
    }

    fn recall(&mut self, event: &InventoryEvent) {
        let (order_id, quantity, state) = match event {
            InventoryEvent::Released { order_id, quantity } => {
                (order_id, quantity, ReservationState::Released)
            }
            InventoryEvent::Committed { order_id, quantity } => {
                (order_id, quantity, ReservationState::Committed)
            }
            InventoryEvent::Returned { order_id, quantity } => {
                (order_id, quantity, ReservationState::Returned)
            }
            _ => return,
        };
        self.reservations.insert(
            *order_id,
            Reservation {
                quantity: *quantity,
                unit_price: Cents::ZERO,
                state,
            },
        );
    }

    const ARCHIVES: bool = true;
    // 1: closed reservations left the state for the archive.
    const STATE_VERSION: u8 = 1;

    fn result(events: &[InventoryEvent]) -> Option<CommandResult> {
        events.iter().find_map(|event| match event {
            InventoryEvent::Reserved {
                quantity,
                unit_price,
                ..
            } => Some(CommandResult::Reserved {
                quantity: *quantity,
                unit_price: *unit_price,
            }),
            _ => None,
        })
    }

    fn apply(&mut self, event: &InventoryEvent) {
        // `decide` only emits events its rules allow; the state guards and
        // saturating counters here only keep replay of a damaged stream from
        // panicking or moving a reservation backwards.
        match event {
            InventoryEvent::ProductAdded {
                product_id,
                sku,
                name,
                unit_price,
                stock,
            } => {
                if !self.exists() {
                    self.product_id = Some(*product_id);
                    self.sku.clone_from(sku);
                    self.name.clone_from(name);
                    self.unit_price = *unit_price;
                    self.on_hand = *stock;
                    self.initial_stock = *stock;
                }
            }
            InventoryEvent::Restocked { quantity } => {
                self.on_hand = self.on_hand.saturating_add(*quantity);
                self.total_restocked = self.total_restocked.saturating_add(*quantity);
            }
            InventoryEvent::Reserved {
                order_id,
                quantity,
                unit_price,
            } => {
                if !self.reservations.contains_key(order_id) {
                    self.reservations.insert(
                        *order_id,
                        Reservation {
                            quantity: *quantity,
                            unit_price: *unit_price,
                            state: ReservationState::Held,
                        },
                    );
                    self.reserved = self.reserved.saturating_add(*quantity);
                }
            }
            InventoryEvent::Released { order_id, quantity } => {
                if self.close_held(*order_id) {
                    self.reserved = self.reserved.saturating_sub(*quantity);
                }
            }
            InventoryEvent::Committed { order_id, quantity } => {
                if self.close_held(*order_id) {
                    self.reserved = self.reserved.saturating_sub(*quantity);
                    self.on_hand = self.on_hand.saturating_sub(*quantity);
                    self.total_committed = self.total_committed.saturating_add(*quantity);
                }
            }
            InventoryEvent::Returned { order_id, quantity } => {
                // The committed reservation is in the archive, not here:
                // `decide` recalled it to allow exactly one return.
                self.reservations.remove(order_id);
                self.on_hand = self.on_hand.saturating_add(*quantity);
                self.total_returned = self.total_returned.saturating_add(*quantity);
            }
        }
    }
}
