//! Integrity and invariants across the three stores: what `ordersaga verify`,
//! the end-to-end tests and the demo check.
//!
//! - Every stream replays from scratch: contiguous sequences, decodable events;
//!   the indexes derived from its events (archive, lists) agree with them.
//! - Per product: `on_hand = initial + restocked + returned − committed`,
//!   `reserved` = the held reservations, `available ≥ 0`.
//! - Per user: `balance = deposits − charges + refunds ≥ 0`, at most one net
//!   charge per order.
//! - Every saga is Completed (order confirmed, stock committed, charged once),
//!   Aborted (order cancelled, nothing reserved, net charge zero), Stuck
//!   (reported), or still running (reported; an error when `finished` is
//!   required).

use ordersaga_actors::aggregates::{Order, Product, Reservation, ReservationState, Saga, User};
use ordersaga_actors::recovery::{index_differences, recalled, replay, stream_of};
use ordersaga_actors::{Aggregate, Journal, JournalError};
use ordersaga_events::order::OrderStatus;
use ordersaga_events::saga::SagaPhase;
use ordersaga_events::{OrderId, ProductId, StreamKind, UserId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// What was checked and what is wrong.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Users checked.
    pub users: usize,
    /// Products checked.
    pub products: usize,
    /// Orders checked.
    pub orders: usize,
    /// Sagas by phase name, in name order (so reports compare line by line).
    pub sagas: BTreeMap<String, usize>,
    /// Every broken rule, one sentence each.
    pub violations: Vec<String>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Sagas in `phase`.
    pub fn sagas_in(&self, phase: SagaPhase) -> usize {
        self.sagas.get(&phase_name(phase)).copied().unwrap_or(0)
    }
}

fn phase_name(phase: SagaPhase) -> String {
    format!("{phase:?}").to_lowercase()
}

fn all<A: Aggregate>(
    journal: &Journal,
    kind: StreamKind,
    report: &mut Report,
) -> Result<HashMap<Uuid, A>, JournalError> {
    let mut out = HashMap::new();
    for item in journal.streams(Some(kind)) {
        let (stream, version) = item?;
        match replay::<A>(journal, stream.id, None) {
            Ok(recovered) if recovered.version == version => {
                if A::ARCHIVES || A::LISTS {
                    match index_differences::<A>(journal, &stream) {
                        Ok(found) => report.violations.extend(found),
                        Err(err) => report.violations.push(format!("{stream}: {err}")),
                    }
                }
                out.insert(stream.id, recovered.state);
            }
            Ok(recovered) => report.violations.push(format!(
                "{stream}: replay reached version {} of {version}",
                recovered.version
            )),
            Err(err) => report.violations.push(format!("{stream}: {err}")),
        }
    }
    Ok(out)
}

/// `state` with closed item `key` recalled from `journal`'s archive; an
/// unreadable archive entry is reported and the state is read as it is.
fn with_recalled<A: Aggregate>(
    journal: &Journal,
    stream: &ordersaga_events::StreamId,
    state: &A,
    key: &str,
    report: &mut Report,
) -> A {
    match recalled(journal, stream, state, key) {
        Ok(Some(view)) => view,
        Ok(None) => state.clone(),
        Err(err) => {
            report
                .violations
                .push(format!("{stream}: archive entry {key}: {err}"));
            state.clone()
        }
    }
}

/// Outbox rows the relay set aside as unreadable: each is a record that was
/// never published, for an operator to look at.
fn quarantined(service: &str, journal: &Journal, report: &mut Report) {
    for item in journal.quarantined() {
        match item {
            Ok((position, reason)) => report.violations.push(format!(
                "{service} store ({}): outbox record {position} is quarantined, never published: {reason}",
                journal.path().display()
            )),
            Err(err) => report.violations.push(format!(
                "{service} store ({}): the quarantine cannot be read: {err}",
                journal.path().display()
            )),
        }
    }
}

/// Log entries that cannot be read (the saga follower skips them).
fn unreadable_log(service: &str, journal: &Journal, report: &mut Report) {
    let mut last = 0;
    for item in journal.read_log(1) {
        match item {
            Ok(entry) => last = entry.position,
            Err(err) => report.violations.push(format!(
                "{service} store ({}): the log entry after position {last} is unreadable: {err}",
                journal.path().display()
            )),
        }
    }
}

/// Checks the stores of the three services. With `finished`, a saga that is
/// neither Completed, Aborted nor Stuck is a violation too.
pub fn check(
    users: &Journal,
    inventory: &Journal,
    orders: &Journal,
    finished: bool,
) -> Result<Report, JournalError> {
    let mut report = Report::default();
    let user_states: HashMap<Uuid, User> = all(users, StreamKind::User, &mut report)?;
    let products: HashMap<Uuid, Product> = all(inventory, StreamKind::Product, &mut report)?;
    let order_states: HashMap<Uuid, Order> = all(orders, StreamKind::Order, &mut report)?;
    let sagas: HashMap<Uuid, Saga> = all(orders, StreamKind::Saga, &mut report)?;
    report.users = user_states.len();
    report.products = products.len();
    report.orders = order_states.len();
    for (name, journal) in [
        ("users", users),
        ("inventory", inventory),
        ("orders", orders),
    ] {
        quarantined(name, journal, &mut report);
        unreadable_log(name, journal, &mut report);
    }
    if finished {
        // Every order stream, readable or not: a damaged one may be exactly
        // the order whose saga never started.
        for item in orders.streams(Some(StreamKind::Order)) {
            let (stream, _) = item?;
            let id = &stream.id;
            if !sagas.contains_key(id) {
                report.violations.push(format!(
                    "order {id} has no saga (was its Placed event readable when the saga follower met it?)"
                ));
            }
        }
    }

    for (id, product) in &products {
        let p = ProductId::from_uuid(*id);
        let expected = (product.initial_stock() as i128)
            + product.total_restocked() as i128
            + product.total_returned() as i128
            - product.total_committed() as i128;
        if product.on_hand() as i128 != expected {
            report.violations.push(format!(
                "product {p}: on hand {} but initial + restocked + returned − committed = {expected}",
                product.on_hand()
            ));
        }
        let held: u64 = product
            .reservations()
            .values()
            .filter(|r| r.state == ReservationState::Held)
            .map(|r| r.quantity)
            .sum();
        if held != product.reserved() {
            report.violations.push(format!(
                "product {p}: reserved {} but held reservations sum to {held}",
                product.reserved()
            ));
        }
        if product.reserved() > product.on_hand() {
            report
                .violations
                .push(format!("product {p}: available is negative"));
        }
    }
    for (id, user) in &user_states {
        let u = UserId::from_uuid(*id);
        let expected = user.total_deposited().0 as i128 - user.total_charged().0 as i128
            + user.total_refunded().0 as i128;
        if user.balance().0 as i128 != expected {
            report.violations.push(format!(
                "user {u}: balance {} but deposits − charges + refunds = {expected}",
                user.balance().0
            ));
        }
    }
    for (id, saga) in &sagas {
        let phase = saga.phase();
        *report.sagas.entry(phase_name(phase)).or_default() += 1;
        let Some(order_id) = saga.order_id() else {
            report.violations.push(format!("saga {id}: has no order"));
            continue;
        };
        let order = order_states.get(&order_id.as_uuid());
        let status = order.and_then(|o| o.status());
        // Closed charges and reservations live in the archive: read them as
        // the services do.
        let key = order_id.to_string();
        let charge = saga
            .user_id()
            .and_then(|u| user_states.get(&u.as_uuid()).map(|state| (u, state)))
            .and_then(|(u, state)| {
                let stream = stream_of::<User>(u.as_uuid());
                with_recalled(users, &stream, state, &key, &mut report)
                    .charge(order_id)
                    .cloned()
            });
        let mut held: HashMap<ProductId, Reservation> = HashMap::new();
        for line in saga.lines() {
            let Some(state) = products.get(&line.product_id.as_uuid()) else {
                continue;
            };
            let stream = stream_of::<Product>(line.product_id.as_uuid());
            if let Some(r) =
                with_recalled(inventory, &stream, state, &key, &mut report).reservation(order_id)
            {
                held.insert(line.product_id, *r);
            }
        }
        let reservations = |product: ProductId| held.get(&product).copied();
        match phase {
            SagaPhase::Completed => {
                if !matches!(
                    status,
                    Some(OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered)
                ) {
                    report.violations.push(format!(
                        "saga {id} completed but order {order_id} is {status:?}"
                    ));
                }
                for line in saga.lines() {
                    match reservations(line.product_id) {
                        Some(r) if r.state == ReservationState::Committed && r.quantity == line.quantity => {}
                        other => report.violations.push(format!(
                            "saga {id} completed but product {} holds {other:?} for order {order_id}",
                            line.product_id
                        )),
                    }
                }
                match &charge {
                    Some(c) if !c.refunded && Some(c.amount) == saga.total() => {}
                    other => report
                        .violations
                        .push(format!("saga {id} completed but the charge is {other:?}")),
                }
            }
            SagaPhase::Aborted => {
                if status != Some(OrderStatus::Cancelled) {
                    report.violations.push(format!(
                        "saga {id} aborted but order {order_id} is {status:?}"
                    ));
                }
                for line in saga.lines() {
                    if let Some(r) = reservations(line.product_id) {
                        if matches!(
                            r.state,
                            ReservationState::Held | ReservationState::Committed
                        ) {
                            report.violations.push(format!(
                                "saga {id} aborted but product {} still has {:?} units {:?} for order {order_id}",
                                line.product_id, r.quantity, r.state
                            ));
                        }
                    }
                }
                if let Some(c) = &charge {
                    if !c.refunded {
                        report.violations.push(format!(
                            "saga {id} aborted but order {order_id} is still charged {:?}",
                            c.amount
                        ));
                    }
                }
            }
            SagaPhase::Stuck => {}
            _ if finished => report
                .violations
                .push(format!("saga {id} has not finished: {phase:?}")),
            _ => {}
        }
    }
    let placed: Vec<OrderId> = order_states
        .keys()
        .map(|id| OrderId::from_uuid(*id))
        .collect();
    if finished {
        for order_id in placed {
            if !sagas.contains_key(&order_id.as_uuid()) {
                report
                    .violations
                    .push(format!("order {order_id} has no saga"));
            }
        }
    }
    Ok(report)
}
