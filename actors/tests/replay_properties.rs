//! Model-based property test of the services over a real sled store.
//!
//! Random command sequences, with restarts (the actor system and the store are
//! torn down and reopened), must leave:
//! - the live actor state equal to a replay of the store from scratch, and to
//!   a recovery from snapshot plus tail;
//! - money and stock conserved, checked two independent ways: against a simple
//!   model driven only by the replies, and against sums over the stored events.

use ordersaga_actors::aggregate::Aggregate;
use ordersaga_actors::aggregates::{Order, Product, User};
use ordersaga_actors::recovery::{decode_stored, recover, replay, stream_of};
use ordersaga_actors::{Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::order::{OrderCommand, OrderLine, PricedLine};
use ordersaga_events::user::{Password, UserCommand, UserEvent};
use ordersaga_events::{Cents, OrderId, Outcome, ProductId, Reply, UserId};
use proptest::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use uuid::Uuid;

const USERS: usize = 3;
const PRODUCTS: usize = 3;
const ORDERS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Register(usize, usize),
    Deposit(usize, u64),
    Charge(usize, usize, u64),
    Refund(usize, usize),
    Deactivate(usize),
    Delete(usize),
    AddProduct(usize, u64),
    Restock(usize, u64),
    Reserve(usize, usize, u64),
    Release(usize, usize),
    Commit(usize, usize),
    Return(usize, usize),
    Place(usize, usize, Vec<(usize, u64)>),
    Price(usize),
    Confirm(usize),
    Cancel(usize),
    Ship(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let p = 0..PRODUCTS;
    let o = 0..ORDERS;
    prop_oneof![
        (u.clone(), 0..2usize).prop_map(|(u, e)| Op::Register(u, e)),
        (u.clone(), 0..500u64).prop_map(|(u, a)| Op::Deposit(u, a)),
        (u.clone(), o.clone(), 0..300u64).prop_map(|(u, o, a)| Op::Charge(u, o, a)),
        (u.clone(), o.clone()).prop_map(|(u, o)| Op::Refund(u, o)),
        u.clone().prop_map(Op::Deactivate),
        u.clone().prop_map(Op::Delete),
        (p.clone(), 0..20u64).prop_map(|(p, s)| Op::AddProduct(p, s)),
        (p.clone(), 0..10u64).prop_map(|(p, q)| Op::Restock(p, q)),
        (p.clone(), o.clone(), 0..8u64).prop_map(|(p, o, q)| Op::Reserve(p, o, q)),
        (p.clone(), o.clone()).prop_map(|(p, o)| Op::Release(p, o)),
        (p.clone(), o.clone()).prop_map(|(p, o)| Op::Commit(p, o)),
        (p.clone(), o.clone()).prop_map(|(p, o)| Op::Return(p, o)),
        (o.clone(), u, prop::collection::vec((p, 0..4u64), 0..3))
            .prop_map(|(o, u, lines)| Op::Place(o, u, lines)),
        o.clone().prop_map(Op::Price),
        o.clone().prop_map(Op::Confirm),
        o.clone().prop_map(Op::Cancel),
        o.prop_map(Op::Ship),
        Just(Op::Restart),
    ]
}

/// What the replies alone say the balances and stock must be.
#[derive(Default, Debug)]
struct Model {
    balance: HashMap<usize, u64>,
    charges: HashMap<(usize, usize), u64>,
    on_hand: HashMap<usize, u64>,
    reserved: HashMap<usize, u64>,
    held: HashMap<(usize, usize), u64>,
    committed: HashMap<(usize, usize), u64>,
}

struct Ids {
    users: Vec<UserId>,
    products: Vec<ProductId>,
    orders: Vec<OrderId>,
}

impl Ids {
    fn new() -> Self {
        Self {
            users: (0..USERS).map(|_| UserId::new()).collect(),
            products: (0..PRODUCTS).map(|_| ProductId::new()).collect(),
            orders: (0..ORDERS).map(|_| OrderId::new()).collect(),
        }
    }
}

struct Services {
    users: Service<User>,
    inventory: Service<Product>,
    orders: Service<Order>,
}

fn changed(reply: &Reply) -> bool {
    matches!(&reply.outcome, Outcome::Accepted { sequences } if !sequences.is_empty())
}

async fn apply_op(s: &Services, ids: &Ids, model: &mut Model, op: &Op) {
    match *op {
        Op::Register(u, e) => {
            let r = s.users.send(UserCommand::Register {
                user_id: ids.users[u],
                email: format!("person{e}@example.com"),
                username: format!("person {u}"),
                password: Password::new("long enough secret"),
            });
            r.await.unwrap();
        }
        Op::Deposit(u, a) => {
            let cmd = UserCommand::Deposit {
                user_id: ids.users[u],
                amount: Cents(a),
            };
            if changed(&s.users.send(cmd).await.unwrap()) {
                *model.balance.entry(u).or_default() += a;
            }
        }
        Op::Charge(u, o, a) => {
            let cmd = UserCommand::Charge {
                user_id: ids.users[u],
                order_id: ids.orders[o],
                amount: Cents(a),
            };
            if changed(&s.users.send(cmd).await.unwrap()) {
                *model.balance.entry(u).or_default() -= a;
                model.charges.insert((u, o), a);
            }
        }
        Op::Refund(u, o) => {
            let cmd = UserCommand::Refund {
                user_id: ids.users[u],
                order_id: ids.orders[o],
            };
            if changed(&s.users.send(cmd).await.unwrap()) {
                *model.balance.entry(u).or_default() += model.charges[&(u, o)];
            }
        }
        Op::Deactivate(u) => {
            s.users
                .send(UserCommand::Deactivate {
                    user_id: ids.users[u],
                })
                .await
                .unwrap();
        }
        Op::Delete(u) => {
            s.users
                .send(UserCommand::Delete {
                    user_id: ids.users[u],
                })
                .await
                .unwrap();
        }
        Op::AddProduct(p, stock) => {
            let cmd = InventoryCommand::AddProduct {
                product_id: ids.products[p],
                sku: format!("SKU-{p}"),
                name: format!("product {p}"),
                unit_price: Cents(100 + p as u64),
                stock,
            };
            if changed(&s.inventory.send(cmd).await.unwrap()) {
                model.on_hand.insert(p, stock);
            }
        }
        Op::Restock(p, q) => {
            let cmd = InventoryCommand::Restock {
                product_id: ids.products[p],
                quantity: q,
            };
            if changed(&s.inventory.send(cmd).await.unwrap()) {
                *model.on_hand.entry(p).or_default() += q;
            }
        }
        Op::Reserve(p, o, q) => {
            let cmd = InventoryCommand::Reserve {
                product_id: ids.products[p],
                order_id: ids.orders[o],
                quantity: q,
            };
            if changed(&s.inventory.send(cmd).await.unwrap()) {
                *model.reserved.entry(p).or_default() += q;
                model.held.insert((p, o), q);
            }
        }
        Op::Release(p, o) => {
            let cmd = InventoryCommand::Release {
                product_id: ids.products[p],
                order_id: ids.orders[o],
            };
            if changed(&s.inventory.send(cmd).await.unwrap()) {
                let q = model.held.remove(&(p, o)).unwrap();
                *model.reserved.get_mut(&p).unwrap() -= q;
            }
        }
        Op::Commit(p, o) => {
            let cmd = InventoryCommand::Commit {
                product_id: ids.products[p],
                order_id: ids.orders[o],
            };
            if changed(&s.inventory.send(cmd).await.unwrap()) {
                let q = model.held.remove(&(p, o)).unwrap();
                *model.reserved.get_mut(&p).unwrap() -= q;
                *model.on_hand.get_mut(&p).unwrap() -= q;
                model.committed.insert((p, o), q);
            }
        }
        Op::Return(p, o) => {
            let cmd = InventoryCommand::Return {
                product_id: ids.products[p],
                order_id: ids.orders[o],
            };
            if changed(&s.inventory.send(cmd).await.unwrap()) {
                let q = model.committed.remove(&(p, o)).unwrap();
                *model.on_hand.get_mut(&p).unwrap() += q;
            }
        }
        Op::Place(o, u, ref lines) => {
            let lines = lines
                .iter()
                .map(|&(p, q)| OrderLine {
                    product_id: ids.products[p],
                    quantity: q,
                })
                .collect();
            let cmd = OrderCommand::Place {
                order_id: ids.orders[o],
                user_id: ids.users[u],
                lines,
            };
            s.orders.send(cmd).await.unwrap();
        }
        Op::Price(o) => {
            let order = s.orders.state(ids.orders[o].as_uuid()).await.unwrap().state;
            let lines = order
                .lines()
                .iter()
                .map(|l| PricedLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price: Cents(250),
                })
                .collect();
            s.orders
                .send(OrderCommand::Price {
                    order_id: ids.orders[o],
                    lines,
                })
                .await
                .unwrap();
        }
        Op::Confirm(o) => {
            s.orders
                .send(OrderCommand::Confirm {
                    order_id: ids.orders[o],
                })
                .await
                .unwrap();
        }
        Op::Cancel(o) => {
            let cmd = OrderCommand::Cancel {
                order_id: ids.orders[o],
                reason: "changed_mind".into(),
            };
            s.orders.send(cmd).await.unwrap();
        }
        Op::Ship(o) => {
            s.orders
                .send(OrderCommand::Ship {
                    order_id: ids.orders[o],
                })
                .await
                .unwrap();
        }
        Op::Restart => unreachable!("handled by the driver"),
    }
}

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
    live.state
}

fn user_money_from_events(journal: &Journal, id: UserId) -> i128 {
    let stream = stream_of::<User>(id.as_uuid());
    let mut balance = 0i128;
    for item in journal.read_stream(&stream, 1) {
        let (seq, bytes) = item.unwrap();
        match decode_stored::<User>(&stream, seq, &bytes).unwrap().payload {
            UserEvent::Deposited { amount } | UserEvent::Refunded { amount, .. } => {
                balance += amount.0 as i128
            }
            UserEvent::Charged { amount, .. } => balance -= amount.0 as i128,
            _ => {}
        }
    }
    balance
}

fn stock_from_events(journal: &Journal, id: ProductId) -> (i128, i128) {
    let stream = stream_of::<Product>(id.as_uuid());
    let (mut on_hand, mut reserved) = (0i128, 0i128);
    for item in journal.read_stream(&stream, 1) {
        let (seq, bytes) = item.unwrap();
        match decode_stored::<Product>(&stream, seq, &bytes)
            .unwrap()
            .payload
        {
            InventoryEvent::ProductAdded { stock, .. } => on_hand += stock as i128,
            InventoryEvent::Restocked { quantity } | InventoryEvent::Returned { quantity, .. } => {
                on_hand += quantity as i128
            }
            InventoryEvent::Reserved { quantity, .. } => reserved += quantity as i128,
            InventoryEvent::Released { quantity, .. } => reserved -= quantity as i128,
            InventoryEvent::Committed { quantity, .. } => {
                reserved -= quantity as i128;
                on_hand -= quantity as i128;
            }
        }
    }
    (on_hand, reserved)
}

async fn check_all(s: &Services, journals: &[Journal; 3], ids: &Ids, model: &Model) {
    for (u, id) in ids.users.iter().enumerate() {
        let user = check_replay(&s.users, &journals[0], id.as_uuid()).await;
        let expected = model.balance.get(&u).copied().unwrap_or(0);
        assert_eq!(user.balance(), Cents(expected), "model balance of user {u}");
        assert_eq!(user_money_from_events(&journals[0], *id), expected as i128);
    }
    for (p, id) in ids.products.iter().enumerate() {
        let product = check_replay(&s.inventory, &journals[1], id.as_uuid()).await;
        let on_hand = model.on_hand.get(&p).copied().unwrap_or(0);
        let reserved = model.reserved.get(&p).copied().unwrap_or(0);
        assert_eq!(
            (product.on_hand(), product.reserved()),
            (on_hand, reserved),
            "product {p}"
        );
        assert!(
            product.reserved() <= product.on_hand(),
            "available never negative"
        );
        assert_eq!(
            stock_from_events(&journals[1], *id),
            (on_hand as i128, reserved as i128)
        );
    }
    for id in &ids.orders {
        check_replay(&s.orders, &journals[2], id.as_uuid()).await;
    }
}

fn run_segment(dir: &Path, ids: &Ids, model: &mut Model, ops: &[Op]) {
    // A fresh actor system and freshly opened stores: a restart.
    actix_rt::System::new().block_on(async {
        let open = |name: &str| Journal::open(JournalConfig::new(dir.join(name))).unwrap();
        let journals = [open("users"), open("inventory"), open("orders")];
        let config = ServiceConfig {
            snapshot_every: 3,
            ..ServiceConfig::default()
        };
        let services = Services {
            users: Service::start(journals[0].clone(), config.clone()),
            inventory: Service::start(journals[1].clone(), config.clone()),
            orders: Service::start(journals[2].clone(), config),
        };
        for op in ops {
            apply_op(&services, ids, model, op).await;
        }
        check_all(&services, &journals, ids, model).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_live_state_and_stock_and_money_are_conserved(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ids = Ids::new();
        let mut model = Model::default();
        for segment in ops.split(|op| matches!(op, Op::Restart)) {
            run_segment(dir.path(), &ids, &mut model, segment);
        }
    }
}
