//! Bounded growth over a real sled store: a product's and a user's state
//! (and so their snapshots and recovery) follow open reservations and
//! charges, not history, while "once per order" still holds for a command
//! with a new command id, across restarts, and for stores written before the
//! archive index existed.

use ordersaga_actors::aggregates::{Product, User};
use ordersaga_actors::journal::{AppendBatch, StreamAppend};
use ordersaga_actors::recovery::stream_of;
use ordersaga_actors::{Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::codec::{encode_event, Format};
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, OrderId, ProductId, Reply, StreamId,
    UserId, Versioned,
};
use std::path::Path;

fn config() -> ServiceConfig {
    ServiceConfig {
        snapshot_every: 10,
        ..ServiceConfig::default()
    }
}

fn open(dir: &Path) -> Journal {
    Journal::open(JournalConfig::new(dir)).expect("open store")
}

fn code(reply: &Reply) -> Option<&str> {
    reply.outcome.rejection_code()
}

/// Sends `command` with a fresh command id and waits for its reply.
async fn ask(svc: &Service<Product>, command: InventoryCommand) -> Reply {
    svc.send(command).await.expect("answered")
}

async fn reserve(svc: &Service<Product>, p: ProductId, o: OrderId, quantity: u64) -> Reply {
    let (product_id, order_id) = (p, o);
    ask(
        svc,
        InventoryCommand::Reserve {
            product_id,
            order_id,
            quantity,
        },
    )
    .await
}

async fn commit(svc: &Service<Product>, product_id: ProductId, order_id: OrderId) -> Reply {
    ask(
        svc,
        InventoryCommand::Commit {
            product_id,
            order_id,
        },
    )
    .await
}

async fn give_back(svc: &Service<Product>, product_id: ProductId, order_id: OrderId) -> Reply {
    ask(
        svc,
        InventoryCommand::Return {
            product_id,
            order_id,
        },
    )
    .await
}

/// The size of the product's latest snapshot.
fn snapshot_len(journal: &Journal, p: ProductId) -> usize {
    let (_, bytes) = journal
        .load_snapshot(&stream_of::<Product>(p.as_uuid()))
        .expect("read snapshot")
        .expect("a snapshot was taken");
    bytes.len()
}

#[actix_rt::test]
async fn a_products_snapshot_follows_open_reservations_and_closed_orders_stay_closed() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProductId::new();
    let orders: Vec<OrderId> = (0..400).map(|_| OrderId::new()).collect();
    let (after_50, after_400) = {
        let svc = Service::<Product>::start(open(dir.path()), config());
        let added = svc
            .send(InventoryCommand::AddProduct {
                product_id: p,
                sku: "SKU-1".into(),
                name: "Widget".into(),
                unit_price: Cents(100),
                stock: 1_000_000,
            })
            .await
            .unwrap();
        assert!(added.outcome.is_accepted());
        let mut after_50 = 0;
        for (i, o) in orders.iter().enumerate() {
            assert!(reserve(&svc, p, *o, 1).await.outcome.is_accepted());
            assert!(commit(&svc, p, *o).await.outcome.is_accepted());
            if i == 49 {
                after_50 = snapshot_len(svc.journal(), p);
            }
        }
        let after_400 = snapshot_len(svc.journal(), p);
        let live = svc.state(p.as_uuid()).await.unwrap().state;
        assert!(
            live.reservations().is_empty(),
            "closed orders left the state"
        );
        assert_eq!(live.total_committed(), 400);
        svc.shutdown().await;
        (after_50, after_400)
    };
    // Eight times the history, the same snapshot (give or take the varint
    // width of the growing counters).
    assert!(
        after_400 <= after_50 + 8,
        "snapshot grew with history: {after_50} bytes after 50 orders, {after_400} after 400"
    );

    // After a restart, the oldest order reserves again with a new command
    // id: refused. It is returned once, and only once.
    let svc = Service::<Product>::start(open(dir.path()), config());
    let again = reserve(&svc, p, orders[0], 1).await;
    assert_eq!(code(&again), Some("already_reserved"));
    let returned = give_back(&svc, p, orders[0]).await;
    assert!(returned.outcome.is_accepted(), "{returned:?}");
    let twice = give_back(&svc, p, orders[0]).await;
    assert_eq!(code(&twice), Some("not_committed"));
    let live = svc.state(p.as_uuid()).await.unwrap().state;
    assert_eq!(live.on_hand(), 1_000_000 - 400 + 1);
    assert_eq!(live.total_returned(), 1);
    svc.shutdown().await;
}

#[actix_rt::test]
async fn a_users_charges_leave_the_state_and_each_order_is_charged_and_refunded_once() {
    let dir = tempfile::tempdir().unwrap();
    let u = UserId::new();
    let o = OrderId::new();
    {
        let svc = Service::<User>::start(open(dir.path()), config());
        let registered = svc
            .send(UserCommand::Register {
                user_id: u,
                email: "bounded@example.com".into(),
                username: "bounded".into(),
                password: Password::new("long enough password"),
            })
            .await
            .unwrap();
        assert!(registered.outcome.is_accepted(), "{registered:?}");
        for cents in [1_000, 500] {
            let deposit = UserCommand::Deposit {
                user_id: u,
                amount: Cents(cents),
            };
            assert!(svc.send(deposit).await.unwrap().outcome.is_accepted());
        }
        let charge = UserCommand::Charge {
            user_id: u,
            order_id: o,
            amount: Cents(300),
        };
        assert!(svc.send(charge).await.unwrap().outcome.is_accepted());
        let live = svc.state(u.as_uuid()).await.unwrap().state;
        assert_eq!(live.charge(o), None, "the charge lives in the archive");
        svc.shutdown().await;
    }
    let svc = Service::<User>::start(open(dir.path()), config());
    let charge = UserCommand::Charge {
        user_id: u,
        order_id: o,
        amount: Cents(300),
    };
    let again = svc.send(charge).await.unwrap();
    assert_eq!(code(&again), Some("already_charged"));
    let refund = UserCommand::Refund {
        user_id: u,
        order_id: o,
    };
    assert!(svc
        .send(refund.clone())
        .await
        .unwrap()
        .outcome
        .is_accepted());
    let live = svc.state(u.as_uuid()).await.unwrap().state;
    assert_eq!(
        live.balance(),
        Cents(1_500),
        "the refund is exactly the charge"
    );
    let twice = svc.send(refund).await.unwrap();
    assert_eq!(code(&twice), Some("already_refunded"));
    svc.shutdown().await;
}

/// Appends `events` to `stream` as a store written before the archive
/// index existed would hold them: events only.
async fn append_without_archive(journal: &Journal, stream: StreamId, events: Vec<InventoryEvent>) {
    let encoded = events
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            encode_event(
                Format::Bincode,
                &Envelope {
                    event_id: EventId::new(),
                    stream,
                    sequence: i as u64 + 1,
                    recorded_at: chrono::Utc::now(),
                    correlation_id: CorrelationId::new(),
                    causation_id: CommandId::new(),
                    schema_version: InventoryEvent::SCHEMA_VERSION,
                    payload,
                },
            )
            .unwrap()
        })
        .collect();
    journal
        .append(AppendBatch {
            events: Some(StreamAppend {
                stream,
                expected_version: 0,
                events: encoded,
                unique: Vec::new(),
            }),
            ..AppendBatch::default()
        })
        .await
        .unwrap();
}

#[actix_rt::test]
async fn an_older_store_gets_its_archive_built_from_the_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = ProductId::new();
    let o = OrderId::new();
    {
        let journal = open(dir.path());
        let stream = stream_of::<Product>(p.as_uuid());
        append_without_archive(
            &journal,
            stream,
            vec![
                InventoryEvent::ProductAdded {
                    product_id: p,
                    sku: "OLD-1".into(),
                    name: "Old widget".into(),
                    unit_price: Cents(10),
                    stock: 10,
                },
                InventoryEvent::Reserved {
                    order_id: o,
                    quantity: 2,
                    unit_price: Cents(10),
                },
                InventoryEvent::Released {
                    order_id: o,
                    quantity: 2,
                },
            ],
        )
        .await;
        assert_eq!(journal.archived_len(), 0);
    }
    // Given the old store, when the service starts on it, then the released
    // order is remembered: it cannot reserve again.
    let svc = Service::<Product>::start(open(dir.path()), config());
    assert_eq!(svc.journal().archived_len(), 1);
    let again = reserve(&svc, p, o, 1).await;
    assert_eq!(code(&again), Some("already_reserved"));
    svc.shutdown().await;
}
