//! What must hold after every command (for the aggregate it addressed), at
//! every checkpoint (after each restart or kill, and at the end, for all of
//! them), and of every finished saga.

use super::model::{saga_order, unit_price, Account, Charge, Cmd, Hold, Model};
use super::model::{PRODUCTS, SAGAS, USERS};
use super::wire::{Ids, Journals, Services};
use ordersaga_actors::aggregate::Aggregate;
use ordersaga_actors::aggregates::{
    ChargeRecord, Order, Product, ReservationState, Saga, User, UserStatus,
};
use ordersaga_actors::recovery::{
    decode_stored, index_differences, recalled, recover, replay, stream_of,
};
use ordersaga_actors::{Journal, Service};
use ordersaga_events::inventory::InventoryEvent;
use ordersaga_events::order::OrderStatus;
use ordersaga_events::saga::SagaPhase;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{Cents, ProductId, UserId};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Live state equals replay from scratch and recovery from snapshot.
async fn check_replay<A: Aggregate>(service: &Service<A>, journal: &Journal, id: Uuid) -> A {
    let live = service.state(id).await.unwrap();
    let replayed = replay::<A>(journal, id, None).unwrap();
    let recovered = recover::<A>(journal, id).unwrap();
    assert_eq!(live, replayed, "live state differs from replay of {id}");
    assert_eq!(
        recovered, replayed,
        "snapshot recovery differs from replay of {id}"
    );
    assert_eq!(
        index_differences::<A>(journal, &stream_of::<A>(id)).unwrap(),
        Vec::<String>::new()
    );
    live.state
}

/// The live state of the one aggregate `cmd` addressed agrees with the
/// model: checked after every command, so a wrong change (or a change on a
/// refusal) is caught where it happens, not at the next checkpoint.
pub async fn check_addressed(model: &Model, ids: &Ids, services: &Services, cmd: &Cmd) {
    match *cmd {
        Cmd::Register { u, .. }
        | Cmd::Deposit { u, .. }
        | Cmd::Charge { u, .. }
        | Cmd::Refund { u, .. }
        | Cmd::Deactivate { u }
        | Cmd::Delete { u } => {
            let user = live(&services.users, ids.users[u].as_uuid()).await;
            user_agrees(model, u, &user);
        }
        Cmd::AddProduct { p, .. }
        | Cmd::Restock { p, .. }
        | Cmd::Reserve { p, .. }
        | Cmd::Release { p, .. }
        | Cmd::Commit { p, .. }
        | Cmd::Return { p, .. } => {
            let product = live(&services.inventory, ids.products[p].as_uuid()).await;
            product_agrees(model, ids, p, &product);
        }
        Cmd::Place { o, .. }
        | Cmd::Price { o, .. }
        | Cmd::Confirm { o }
        | Cmd::Cancel { o }
        | Cmd::Ship { o } => {
            let order = live(&services.orders, ids.orders[o].as_uuid()).await;
            order_agrees(model, o, &order);
        }
        Cmd::StartSaga { .. } | Cmd::SagaInput { .. } => {}
    }
}

async fn live<A: Aggregate>(service: &Service<A>, id: Uuid) -> A {
    service.state(id).await.expect("the live state").state
}

fn user_agrees(model: &Model, u: usize, user: &User) {
    let expected = &model.users[u];
    let balance = Cents(expected.balance);
    assert_eq!(user.balance(), balance, "balance of user {u}");
    assert_eq!(status_of(user), expected.account, "account of user {u}");
}

fn product_agrees(model: &Model, ids: &Ids, p: usize, product: &Product) {
    let expected = &model.products[p];
    let stock = (expected.on_hand, expected.reserved());
    let live = (product.on_hand(), product.reserved());
    assert_eq!(live, stock, "(on hand, reserved) of product {p}");
    assert!(stock.1 <= stock.0, "available never negative");
    let held: BTreeMap<usize, u64> = (product.reservations().iter())
        .map(|(order_id, r)| {
            assert_eq!(r.state, ReservationState::Held, "only held ones stay");
            let o = ids.orders.iter().position(|o| o == order_id).unwrap();
            (o, r.quantity)
        })
        .collect();
    assert_eq!(held, expected.held(), "held reservations of product {p}");
}

fn order_agrees(model: &Model, o: usize, order: &Order) {
    let expected = &model.orders[o];
    assert_eq!(order.status(), expected.status, "status of order {o}");
    assert_eq!(order.is_priced(), expected.priced, "pricing of order {o}");
}

/// Replay equals live state everywhere, and the live state, the archive
/// and the sums over the stored events all agree with the model.
pub async fn check_all(model: &Model, ids: &Ids, services: &Services, journals: &Journals) {
    for u in 0..USERS {
        let id = ids.users[u];
        let user = check_replay(&services.users, &journals.users, id.as_uuid()).await;
        user_agrees(model, u, &user);
        let expected = &model.users[u];
        assert_eq!(money_from_events(&journals.users, id), expected.balance);
        // Every charge, open or refunded, is remembered by the archive.
        let stream = stream_of::<User>(id.as_uuid());
        for (o, order_id) in ids.orders.iter().enumerate() {
            let key = order_id.to_string();
            let archived = (recalled(&journals.users, &stream, &user, &key).unwrap())
                .and_then(|view| view.charge(*order_id).copied());
            let model = expected.charges.get(&o).map(|c| ChargeRecord {
                amount: Cents(c.amount),
                refunded: c.refunded,
            });
            assert_eq!(archived, model, "charge of user {u} for order {o}");
        }
    }
    for p in 0..PRODUCTS {
        let id = ids.products[p];
        let product = check_replay(&services.inventory, &journals.inventory, id.as_uuid()).await;
        product_agrees(model, ids, p, &product);
        let expected = &model.products[p];
        let stock = (expected.on_hand, expected.reserved());
        assert_eq!(stock_from_events(&journals.inventory, id), stock);
        // Every closed reservation is remembered by the archive.
        let stream = stream_of::<Product>(id.as_uuid());
        for (o, order_id) in ids.orders.iter().enumerate() {
            let key = order_id.to_string();
            let archived = (recalled(&journals.inventory, &stream, &product, &key).unwrap())
                .and_then(|view| view.reservation(*order_id).map(|r| (r.state, r.quantity)));
            let model = match expected.holds.get(&o) {
                Some(Hold::Released(q)) => Some((ReservationState::Released, *q)),
                Some(Hold::Committed(q)) => Some((ReservationState::Committed, *q)),
                Some(Hold::Returned(q)) => Some((ReservationState::Returned, *q)),
                Some(Hold::Held(_)) | None => None,
            };
            assert_eq!(archived, model, "closed reservation of {o} on product {p}");
        }
    }
    for (o, id) in ids.orders.iter().enumerate() {
        let order: Order = check_replay(&services.orders, &journals.orders, id.as_uuid()).await;
        order_agrees(model, o, &order);
    }
    for s in 0..SAGAS {
        let id = ids.saga(s).as_uuid();
        let saga: Saga = check_replay(&services.sagas, &journals.orders, id).await;
        let started = saga.phase() != SagaPhase::NotStarted;
        assert_eq!(started, model.sagas.contains(&s), "saga {s} started");
    }
}

/// How every started saga finished, which must be consistent with the
/// model (itself checked against the live state): completed means the
/// order confirmed, every line committed and the total charged once;
/// aborted means the order cancelled, nothing held or committed, nothing
/// charged that was not refunded. Returns how each ended (`completed`, or
/// `aborted: <reason>`).
pub async fn check_finished_sagas(model: &Model, ids: &Ids, services: &Services) -> Vec<String> {
    let mut endings = Vec::new();
    for s in (0..SAGAS).filter(|s| model.sagas.contains(s)) {
        let saga = services.sagas.state(ids.saga(s).as_uuid()).await.unwrap();
        let saga = saga.state;
        let o = saga_order(s);
        let order = &model.orders[o];
        let charge = model.users[order.user].charges.get(&o);
        let total: u64 = order.lines.iter().map(|&(p, q)| q * unit_price(p)).sum();
        match saga.phase() {
            SagaPhase::Completed => {
                endings.push("completed".to_owned());
                assert_eq!(order.status, Some(OrderStatus::Confirmed), "saga {s}");
                for &(p, q) in &order.lines {
                    let hold = model.products[p].holds.get(&o);
                    assert_eq!(hold, Some(&Hold::Committed(q)), "saga {s}, product {p}");
                }
                let once = Charge {
                    amount: total,
                    refunded: false,
                };
                assert_eq!(charge, Some(&once), "saga {s} charged its total once");
                assert_eq!(saga.charged(), Some(Cents(total)), "saga {s}");
            }
            SagaPhase::Aborted => {
                endings.push(format!("aborted: {}", saga.reason().unwrap_or_default()));
                assert_eq!(order.status, Some(OrderStatus::Cancelled), "saga {s}");
                for &(p, _) in &order.lines {
                    let hold = model.products[p].holds.get(&o);
                    let kept = matches!(hold, Some(Hold::Held(_) | Hold::Committed(_)));
                    assert!(!kept, "aborted saga {s} keeps {hold:?} of product {p}");
                }
                let net_zero = charge.is_none_or(|c| c.refunded);
                assert!(net_zero, "aborted saga {s} keeps the charge {charge:?}");
            }
            phase => panic!("saga {s} did not finish: {phase:?}, {saga:?}"),
        }
    }
    endings
}

/// The kinds of event every saga stream holds (each counted once per
/// saga), to show which paths the runs reached: retries, late replies,
/// stuck sagas.
pub fn saga_paths(ids: &Ids, journal: &Journal) -> Vec<String> {
    let mut kinds = std::collections::BTreeSet::new();
    for s in 0..SAGAS {
        let stream = stream_of::<Saga>(ids.saga(s).as_uuid());
        for item in journal.read_stream(&stream, 1) {
            let (seq, bytes) = item.unwrap();
            let event = decode_stored::<Saga>(&stream, seq, &bytes).unwrap();
            let debug = format!("{:?}", event.payload);
            let kind = debug.split([' ', '{', '(']).next().unwrap_or_default();
            kinds.insert((s, kind.to_owned()));
        }
    }
    kinds.into_iter().map(|(_, kind)| kind).collect()
}

fn status_of(user: &User) -> Account {
    match user.status() {
        UserStatus::Unregistered => Account::Unregistered,
        UserStatus::Active => Account::Active,
        UserStatus::Deactivated => Account::Deactivated,
        UserStatus::Deleted => Account::Deleted,
    }
}

/// A user's balance summed over the stored events, independently of `apply`.
fn money_from_events(journal: &Journal, id: UserId) -> u64 {
    let stream = stream_of::<User>(id.as_uuid());
    let mut balance = 0i128;
    for item in journal.read_stream(&stream, 1) {
        let (seq, bytes) = item.unwrap();
        match decode_stored::<User>(&stream, seq, &bytes).unwrap().payload {
            UserEvent::Deposited { amount } | UserEvent::Refunded { amount, .. } => {
                balance += i128::from(amount.0)
            }
            UserEvent::Charged { amount, .. } => balance -= i128::from(amount.0),
            _ => {}
        }
    }
    u64::try_from(balance).expect("a balance never goes below zero")
}

/// A product's (on hand, reserved) summed over the stored events.
fn stock_from_events(journal: &Journal, id: ProductId) -> (u64, u64) {
    let stream = stream_of::<Product>(id.as_uuid());
    let (mut on_hand, mut reserved) = (0i128, 0i128);
    for item in journal.read_stream(&stream, 1) {
        let (seq, bytes) = item.unwrap();
        let event = decode_stored::<Product>(&stream, seq, &bytes).unwrap();
        match event.payload {
            InventoryEvent::ProductAdded { stock, .. } => on_hand += i128::from(stock),
            InventoryEvent::Restocked { quantity } | InventoryEvent::Returned { quantity, .. } => {
                on_hand += i128::from(quantity)
            }
            InventoryEvent::Reserved { quantity, .. } => reserved += i128::from(quantity),
            InventoryEvent::Released { quantity, .. } => reserved -= i128::from(quantity),
            InventoryEvent::Committed { quantity, .. } => {
                reserved -= i128::from(quantity);
                on_hand -= i128::from(quantity);
            }
        }
    }
    let count = |n: i128| u64::try_from(n).expect("stock never goes below zero");
    (count(on_hand), count(reserved))
}
