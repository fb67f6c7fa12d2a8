//! The operations a case is made of, and how they are generated.

use super::model::{Cmd, ORDERS, PRODUCTS, SAGAS, USERS};
use proptest::prelude::*;
use proptest::sample::Index;

/// Longest random part of a case (after its setup).
const MAX_OPS: usize = 60;

#[derive(Clone, Debug)]
pub enum Op {
    /// A command by hand, with a fresh id.
    Send(Cmd),
    /// Price manual order `o` from the lines the model says it has;
    /// `mismatch` changes one quantity.
    Price { o: usize, mismatch: bool },
    /// Place saga `s`'s order and start the saga, as the follower does on
    /// the `Placed` event.
    Checkout {
        s: usize,
        u: usize,
        lines: Vec<(usize, u64)>,
    },
    /// The user cancels saga `s`'s order; the follower tells the saga.
    CancelCheckout(usize),
    /// Deliver the oldest saga command of one aggregate.
    Deliver(Index),
    /// Deliver one saga input; with `twice`, a copy stays in flight.
    Answer { pick: Index, twice: bool },
    /// Time passes (milliseconds); every saga is ticked.
    Advance(u64),
    /// An earlier command by hand again, with a fresh id: the same business
    /// request a second time (a second charge or reservation for an order).
    Again(Index),
    /// Graceful stop, then reopen.
    Restart,
    /// The actor system is dropped with `flight` in flight, of which the
    /// first `acked` were answered; then reopen.
    Kill { flight: Vec<Op>, acked: usize },
}

/// Commands by hand that may be in flight at a kill: none that touches the
/// store-wide email index, since a kill may reorder commands of different
/// accounts and the model takes them in the order they were sent.
fn flight_cmd() -> impl Strategy<Value = Cmd> {
    let (u, p, o) = (0..USERS, 0..PRODUCTS, 0..ORDERS);
    let lines = prop::collection::vec((0..PRODUCTS, 0..4u64), 0..=3);
    prop_oneof![
        3 => (u.clone(), 0..500u64).prop_map(|(u, amount)| Cmd::Deposit { u, amount }),
        2 => (account_order(), 0..300u64).prop_map(|((u, o), amount)| Cmd::Charge { u, o, amount }),
        1 => account_order().prop_map(|(u, o)| Cmd::Refund { u, o }),
        1 => u.clone().prop_map(|u| Cmd::Deactivate { u }),
        2 => (p.clone(), 0..20u64).prop_map(|(p, stock)| Cmd::AddProduct { p, stock }),
        1 => (p.clone(), 0..10u64).prop_map(|(p, quantity)| Cmd::Restock { p, quantity }),
        3 => (p.clone(), o.clone(), 0..8u64)
            .prop_map(|(p, o, quantity)| Cmd::Reserve { p, o, quantity }),
        1 => (p.clone(), o.clone()).prop_map(|(p, o)| Cmd::Release { p, o }),
        1 => (p.clone(), o.clone()).prop_map(|(p, o)| Cmd::Commit { p, o }),
        1 => (p, o.clone()).prop_map(|(p, o)| Cmd::Return { p, o }),
        2 => (o.clone(), u, lines).prop_map(|(o, u, lines)| Cmd::Place { o, u, lines }),
        1 => o.clone().prop_map(|o| Cmd::Confirm { o }),
        1 => o.clone().prop_map(|o| Cmd::Cancel { o }),
        1 => o.prop_map(|o| Cmd::Ship { o }),
    ]
}

/// A user and a manual order, mostly the user's "own" order, so that
/// charges, refunds and second charges meet on the same pair.
fn account_order() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        3 => (0..USERS).prop_map(|u| (u, u % ORDERS)),
        1 => (0..USERS, 0..ORDERS),
    ]
}

fn price() -> impl Strategy<Value = Op> {
    (0..ORDERS, prop::bool::weighted(0.2)).prop_map(|(o, mismatch)| Op::Price { o, mismatch })
}

fn flight_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => flight_cmd().prop_map(Op::Send),
        1 => price(),
        3 => any::<Index>().prop_map(Op::Deliver),
        2 => any::<Index>().prop_map(|pick| Op::Answer { pick, twice: false }),
    ]
}

/// Most accounts registered with money and most products in stock, so
/// that most cases get past the first refusals (but not all of them).
fn setup() -> impl Strategy<Value = Vec<Op>> {
    let users = prop::collection::vec(prop::option::weighted(0.8, 500..3_000u64), USERS);
    let products = prop::collection::vec(prop::option::weighted(0.85, 4..30u64), PRODUCTS);
    (users, products).prop_map(|(users, products)| {
        let mut ops = Vec::new();
        for (u, deposit) in users.into_iter().enumerate() {
            if let Some(amount) = deposit {
                let (email, weak) = (u, false);
                ops.push(Op::Send(Cmd::Register { u, email, weak }));
                ops.push(Op::Send(Cmd::Deposit { u, amount }));
            }
        }
        for (p, stock) in products.into_iter().enumerate() {
            if let Some(stock) = stock {
                ops.push(Op::Send(Cmd::AddProduct { p, stock }));
            }
        }
        ops
    })
}

pub fn case() -> impl Strategy<Value = Vec<Op>> {
    (setup(), prop::collection::vec(op(), 1..MAX_OPS)).prop_map(|(mut ops, more)| {
        ops.extend(more);
        ops
    })
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    // Distinct products: a saga order that cannot be placed starts no saga.
    let checkout_lines =
        prop::collection::vec((0..PRODUCTS, 1..4u64), 0..=PRODUCTS).prop_map(|mut lines| {
            lines.sort_by_key(|&(p, _)| p);
            lines.dedup_by_key(|&mut (p, _)| p);
            lines
        });
    prop_oneof![
        14 => flight_cmd().prop_map(Op::Send),
        1 => (u.clone(), 0..4usize, prop::bool::weighted(0.2))
            .prop_map(|(u, email, weak)| Op::Send(Cmd::Register { u, email, weak })),
        1 => u.clone().prop_map(|u| Op::Send(Cmd::Delete { u })),
        1 => price(),
        3 => (0..SAGAS, u, checkout_lines).prop_map(|(s, u, lines)| Op::Checkout { s, u, lines }),
        1 => (0..SAGAS).prop_map(Op::CancelCheckout),
        6 => any::<Index>().prop_map(Op::Deliver),
        5 => (any::<Index>(), prop::bool::weighted(0.2))
            .prop_map(|(pick, twice)| Op::Answer { pick, twice }),
        1 => (0..2_500u64).prop_map(Op::Advance),
        3 => any::<Index>().prop_map(Op::Again),
        1 => Just(Op::Restart),
        1 => (prop::collection::vec(flight_op(), 0..6), 0..6usize)
            .prop_map(|(flight, acked)| Op::Kill { flight, acked }),
    ]
}
