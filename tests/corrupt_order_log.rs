//! Damage in the orders store, as the saga follower meets it: an order event
//! that cannot be read is skipped loudly (that order gets no saga), the
//! orders after it still get theirs, and `verify` names both the damaged
//! stream and the order left without a saga.

mod support;

use ordersaga::saga::clock::Clock;
use ordersaga::saga::follower;
use ordersaga_actors::aggregates::{Order, Saga};
use ordersaga_actors::{Execute, Journal, Service, ServiceConfig};
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::SagaPolicy;
use ordersaga_events::{CommandEnvelope, OrderId, ProductId, StreamId, StreamKind, UserId};
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(30);

/// Places an order through the order service on the store at `path`, then
/// closes the store.
async fn place(path: &Path, order_id: OrderId) {
    let journal = Journal::open_path(path).unwrap();
    let orders = Service::<Order>::start(journal.clone(), ServiceConfig::default());
    let place = CommandEnvelope::new(OrderCommand::Place {
        order_id,
        user_id: UserId::new(),
        lines: vec![OrderLine {
            product_id: ProductId::new(),
            quantity: 1,
        }],
    });
    orders
        .submit(Execute::new(place))
        .ok()
        .unwrap()
        .await
        .unwrap();
    orders.shutdown().await;
    drop(orders);
    // The entities let go of the store asynchronously.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while journal.handles() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store never closed"
        );
        tokio::task::yield_now().await;
    }
}

#[actix_rt::test]
async fn an_unreadable_order_event_is_skipped_loudly_and_later_orders_still_get_their_saga() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders");
    let (damaged, intact) = (OrderId::new(), OrderId::new());
    place(&path, damaged).await;
    {
        // The damaged order's Placed event: its bytes overwritten on disk.
        let db = support::open_raw(&path);
        let events = db.open_tree("events").unwrap();
        let mut key = StreamId::new(StreamKind::Order, damaged.as_uuid())
            .to_key()
            .to_vec();
        key.extend_from_slice(&1u64.to_be_bytes());
        assert!(events.contains_key(&key).unwrap());
        events.insert(key, &[0x01, 0xff, 0xff][..]).unwrap();
        db.flush().unwrap();
    }
    place(&path, intact).await;

    let journal = Journal::open_path(&path).unwrap();
    let sagas = Service::<Saga>::start(journal.clone(), ServiceConfig::default());
    let (stop, stopped) = watch::channel(false);
    let mut progress = journal.outbox_watch();
    let following = actix::spawn(follower::run(
        journal.clone(),
        sagas.clone(),
        SagaPolicy::default(),
        Clock::System,
        stopped,
    ));
    let saga_version = |order: OrderId| {
        journal
            .version(&StreamId::new(StreamKind::Saga, order.as_uuid()))
            .unwrap()
    };
    // The intact order's saga starts (its commands reach the outbox).
    tokio::time::timeout(PATIENCE, async {
        while saga_version(intact) == 0 {
            progress.changed().await.unwrap();
        }
    })
    .await
    .expect("the order after the damaged one got its saga");
    // The log is read in order: the damaged order was met, and skipped.
    assert_eq!(saga_version(damaged), 0);
    let _ = stop.send(true);
    following.await.unwrap();

    let other = |name: &str| Journal::open_path(dir.path().join(name)).unwrap();
    let report =
        ordersaga::verify::check(&other("users"), &other("inventory"), &journal, true).unwrap();
    let said = |needle: String| report.violations.iter().any(|v| v.contains(&needle));
    assert!(said(format!("order:{damaged}")), "{:?}", report.violations);
    assert!(
        said(format!("order {damaged} has no saga")),
        "{:?}",
        report.violations
    );
    sagas.shutdown().await;
}
