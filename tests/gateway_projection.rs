//! The gateway's read models over a real broker (embedded, or the one
//! `ORDERSAGA_TEST_BROKERS` names): live projection of a running shop agrees
//! with the services' own stores, a restarted projector applies nothing
//! twice, a rebuild from the topics gives the same read model, a store
//! from another cluster starts over, and a cluster that cannot be reached
//! is waited for without a panic.
//!
//! Every wait is bounded and woken by the projection (read-your-writes on
//! a stream's sequence, offsets reaching the topics' ends); none sleeps.
// Money is written as dollars_cents: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use chrono::Utc;
use ordersaga::gateway::readmodel::{
    rebuild, Lag, ProjectedEvent, ProjectedRecord, ProjectionCounters, Projector, ReadModel, Source,
};
use ordersaga::kafka::{clients, KafkaConfig};
use ordersaga_actors::aggregates::{Order, Product, User};
use ordersaga_actors::recovery::replay;
use ordersaga_events::inventory::InventoryEvent;
use ordersaga_events::order::OrderStatus;
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserCommand;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, OrderId, ProductId, StreamId, StreamKind,
    UserId,
};
use rdkafka::consumer::Consumer;
use std::collections::BTreeMap;
use std::time::Duration;
use support::shop::Shop;
use support::{TestBroker, PATIENCE};
use uuid::Uuid;

/// The high watermark of every partition of the three event topics, now.
async fn high_watermarks(kafka: &KafkaConfig) -> BTreeMap<(String, i32), i64> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let consumer = clients::reader(&kafka, "test-watermarks").unwrap();
        let mut highs = BTreeMap::new();
        for service in Service::ALL {
            let topic = kafka.name(service.events_topic());
            for partition in 0..kafka.partitions {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(30))
                    .unwrap();
                highs.insert((topic.clone(), partition), high);
            }
        }
        highs
    })
    .await
    .unwrap()
}

/// Waits until the read model has every event the services stored for
/// these users, products and orders; returns nothing, asserts.
async fn wait_for_the_stores(
    shop: &Shop,
    model: &ReadModel,
    users: &[UserId],
    products: &[ProductId],
    orders: &[OrderId],
) {
    let mut streams = Vec::new();
    for user in users {
        let version = replay::<User>(shop.journal(Service::Users), user.as_uuid(), None)
            .unwrap()
            .version;
        streams.push((StreamId::new(StreamKind::User, user.as_uuid()), version));
    }
    for product in products {
        let version = replay::<Product>(shop.journal(Service::Inventory), product.as_uuid(), None)
            .unwrap()
            .version;
        streams.push((
            StreamId::new(StreamKind::Product, product.as_uuid()),
            version,
        ));
    }
    for order in orders {
        let version = replay::<Order>(shop.journal(Service::Orders), order.as_uuid(), None)
            .unwrap()
            .version;
        streams.push((StreamId::new(StreamKind::Order, order.as_uuid()), version));
    }
    for (stream, version) in streams {
        assert!(version > 0, "{stream} has events");
        assert!(
            model.wait_for(&stream, version, PATIENCE).await,
            "the read model never reached {stream}#{version} (it has {})",
            model.version(&stream).unwrap()
        );
    }
}

/// The rows say what the services' own stores say.
fn assert_rows_match_the_stores(
    shop: &Shop,
    model: &ReadModel,
    users: &[UserId],
    products: &[ProductId],
    orders: &[OrderId],
) {
    for user in users {
        let truth = replay::<User>(shop.journal(Service::Users), user.as_uuid(), None).unwrap();
        let row = model.user(user.as_uuid()).unwrap().expect("a user row");
        let state = &truth.state;
        assert_eq!(row.version, truth.version);
        assert_eq!(row.status, state.status());
        assert_eq!(
            (row.email.as_str(), row.username.as_str()),
            (state.email(), state.username())
        );
        assert_eq!(row.balance, state.balance().0, "balance of {user}");
        assert_eq!(row.total_deposited, state.total_deposited().0);
        assert_eq!(row.total_charged, state.total_charged().0);
        assert_eq!(row.total_refunded, state.total_refunded().0);
    }
    for product in products {
        let truth =
            replay::<Product>(shop.journal(Service::Inventory), product.as_uuid(), None).unwrap();
        let row = model
            .product(product.as_uuid())
            .unwrap()
            .expect("a product row");
        let state = &truth.state;
        assert_eq!(row.version, truth.version);
        assert_eq!(
            (row.sku.as_str(), row.unit_price),
            (state.sku(), state.unit_price().0)
        );
        assert_eq!(
            (row.on_hand, row.reserved, row.available),
            (state.on_hand(), state.reserved(), state.available()),
            "stock of {product}"
        );
    }
    for order in orders {
        let truth = replay::<Order>(shop.journal(Service::Orders), order.as_uuid(), None).unwrap();
        let row = model.order(order.as_uuid()).unwrap().expect("an order row");
        let state = &truth.state;
        assert_eq!(row.version, truth.version);
        assert_eq!(Some(row.status), state.status(), "status of {order}");
        assert_eq!(Some(row.user_id), state.user_id().map(|u| u.as_uuid()));
        assert_eq!(row.lines, state.lines());
        assert_eq!(row.priced_lines, state.priced_lines());
        assert_eq!(row.total, state.total().map(|t| t.0));
        assert_eq!(row.cancel_reason.as_deref(), state.cancel_reason());
    }
}

/// A product row from another cluster, at an offset this run's topics
/// never reach: what a store that outlived the embedded broker holds.
fn a_stale_record(kafka: &KafkaConfig) -> (Uuid, ProjectedRecord) {
    let id = Uuid::new_v4();
    let envelope = Envelope {
        event_id: EventId::new(),
        stream: StreamId::new(StreamKind::Product, id),
        sequence: 1,
        recorded_at: Utc::now(),
        correlation_id: CorrelationId::new(),
        causation_id: CommandId::new(),
        schema_version: 1,
        payload: InventoryEvent::ProductAdded {
            product_id: ProductId::from_uuid(id),
            sku: "STALE".into(),
            name: "from another cluster".into(),
            unit_price: Cents(1),
            stock: 1,
        },
    };
    let record = ProjectedRecord {
        topic: kafka.name(Service::Inventory.events_topic()),
        partition: 0,
        offset: 1_000_000,
        event: ProjectedEvent::Product(envelope),
    };
    (id, record)
}

#[actix_rt::test]
async fn live_projection_agrees_with_the_services_survives_a_restart_and_equals_a_rebuild() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let dir = tempfile::tempdir().unwrap();
    let live = ReadModel::open(dir.path().join("live")).unwrap();

    // Given a store left by another cluster,
    let (stale, record) = a_stale_record(&shop.kafka);
    let topics = vec![
        shop.kafka.name(Service::Users.events_topic()),
        shop.kafka.name(Service::Orders.events_topic()),
        shop.kafka.name(Service::Inventory.events_topic()),
    ];
    live.bind(&Source::new("another-cluster", topics)).unwrap();
    live.apply(&record).unwrap();
    assert!(live.product(stale).unwrap().is_some());

    // when a projector follows a shop at work,
    let projector = Projector::start(&shop.kafka, live.clone()).await.unwrap();
    let rich = shop.user(100_00).await;
    let poor = shop.user(5_00).await;
    let (a, b) = (shop.product(10_00, 5).await, shop.product(20_00, 5).await);
    let paid = shop.order(rich, &[(a, 2), (b, 1)]).await;
    let unpaid = shop.order(poor, &[(a, 1)]).await;
    assert_eq!(shop.saga_end(paid).await, SagaEvent::Completed);
    assert!(matches!(
        shop.saga_end(unpaid).await,
        SagaEvent::Aborted { .. }
    ));
    shop.verify();
    let (users, products, orders) = ([rich, poor], [a, b], [paid, unpaid]);
    wait_for_the_stores(&shop, &live, &users, &products, &orders).await;

    // then the rows are the services' state, and the stale store is gone.
    assert_rows_match_the_stores(&shop, &live, &users, &products, &orders);
    assert_eq!(
        live.product(stale).unwrap(),
        None,
        "the other cluster's rows are cleared"
    );
    let rich_row = live.user(rich.as_uuid()).unwrap().unwrap();
    assert_eq!((rich_row.balance, rich_row.total_charged), (60_00, 40_00));
    assert_eq!(live.user(poor.as_uuid()).unwrap().unwrap().balance, 5_00);
    let stock = live.product(a.as_uuid()).unwrap().unwrap();
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (3, 0, 3));

    // The lists: every product of this shop, each user's own orders.
    let listed = live.products_page(None, 100).unwrap();
    let mut ids: Vec<Uuid> = listed.items.iter().map(|p| p.product_id).collect();
    ids.sort();
    let mut expected = vec![a.as_uuid(), b.as_uuid()];
    expected.sort();
    assert_eq!((ids, listed.next), (expected, None));
    let first = live.products_page(None, 1).unwrap();
    let second = live.products_page(first.next.as_deref(), 1).unwrap();
    assert_eq!(first.items.len() + second.items.len(), 2);
    assert_ne!(first.items[0].product_id, second.items[0].product_id);
    let mine = live.user_orders_page(poor.as_uuid(), None, 10).unwrap();
    assert_eq!(mine.items.len(), 1);
    assert_eq!(mine.items[0].order_id, unpaid.as_uuid());
    assert_eq!(mine.items[0].status, OrderStatus::Cancelled);
    assert_eq!(
        mine.items[0].cancel_reason.as_deref(),
        Some("insufficient_funds")
    );
    let theirs = live.user_orders_page(rich.as_uuid(), None, 10).unwrap();
    assert_eq!(theirs.items[0].status, OrderStatus::Confirmed);
    assert_eq!(theirs.items[0].total, Some(40_00));

    // Caught up and reading the topics' ends: no lag.
    assert!(projector.wait_caught_up(PATIENCE).await);
    let ends = high_watermarks(&shop.kafka).await;
    assert!(live.wait_for_offsets(&ends, PATIENCE).await);
    let lag = projector.lag();
    assert_eq!(lag.per_partition.len(), 3 * shop.kafka.partitions as usize);
    assert_eq!(lag.total, 0, "{lag:?}");
    let counters = projector.counters();
    assert_eq!((counters.skipped, counters.gaps), (0, 0), "{counters:?}");
    projector.stop().await;

    // A restarted projector resumes where the store is: nothing is read
    // again, and the next event is applied once.
    let projector = Projector::start(&shop.kafka, live.clone()).await.unwrap();
    assert!(projector.wait_caught_up(PATIENCE).await);
    assert_eq!(projector.counters(), ProjectionCounters::default());
    let rich_stream = StreamId::new(StreamKind::User, rich.as_uuid());
    let before = live.version(&rich_stream).unwrap();
    shop.send(
        Service::Users,
        &rich.to_string(),
        UserCommand::Deposit {
            user_id: rich,
            amount: Cents(1_00),
        },
    )
    .await;
    assert!(live.wait_for(&rich_stream, before + 1, PATIENCE).await);
    let counters = projector.counters();
    assert_eq!(
        (counters.applied, counters.duplicates),
        (1, 0),
        "{counters:?}"
    );
    let rich_row = live.user(rich.as_uuid()).unwrap().unwrap();
    assert_eq!((rich_row.balance, rich_row.version), (61_00, before + 1));
    assert_rows_match_the_stores(&shop, &live, &users, &products, &orders);

    // A rebuild reads the same topics into the same read model.
    let rebuilt_dir = dir.path().join("rebuilt");
    let report = rebuild(&shop.kafka, &rebuilt_dir, false).await.unwrap();
    assert_eq!(report.targets, high_watermarks(&shop.kafka).await);
    assert_eq!(
        (report.counters.skipped, report.counters.gaps),
        (0, 0),
        "{report}"
    );
    assert!(report.counters.applied > 0, "{report}");
    let rebuilt = ReadModel::open(&rebuilt_dir).unwrap();
    support::gateway::converge(&shop.kafka, &live, &rebuilt).await;
    projector.stop().await;
    let (live_trees, rebuilt_trees) = (live.dump().unwrap(), rebuilt.dump().unwrap());
    assert_eq!(
        live_trees.keys().collect::<Vec<_>>(),
        rebuilt_trees.keys().collect::<Vec<_>>()
    );
    for (tree, entries) in &live_trees {
        assert!(
            *entries == rebuilt_trees[tree],
            "tree {tree} differs: {} entries live, {} rebuilt",
            entries.len(),
            rebuilt_trees[tree].len()
        );
    }
    assert_rows_match_the_stores(&shop, &rebuilt, &users, &products, &orders);

    shop.stop().await;
}

#[actix_rt::test]
async fn an_unreachable_cluster_is_waited_for_and_the_projector_still_stops() {
    // Bind and drop, so the port is (almost surely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kafka = KafkaConfig::new(format!("127.0.0.1:{port}"));
    let dir = tempfile::tempdir().unwrap();
    let model = ReadModel::open(dir.path().join("readmodel")).unwrap();
    let projector = Projector::start(&kafka, model).await.unwrap();
    // A bound, not a sleep: it can only end by passing.
    assert!(!projector.wait_caught_up(Duration::from_millis(500)).await);
    assert_eq!(projector.lag(), Lag::default());
    tokio::time::timeout(Duration::from_secs(15), projector.stop())
        .await
        .expect("stop is bounded");
}
