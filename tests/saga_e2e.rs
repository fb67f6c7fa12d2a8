//! The order saga end to end over Kafka: the three services on one broker
//! (embedded, or real with `ORDERSAGA_TEST_BROKERS`), orders placed as any
//! client would, and the final state checked in every store.
//!
//! The orders service runs on a manual saga clock (see `support::shop`): the
//! paths that end by replies never meet a timeout, and the timeout path
//! moves the clock itself.
// Money is written as dollars_cents: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use ordersaga_actors::aggregates::{Order, Product, User};
use ordersaga_actors::recovery::replay;
use ordersaga_events::order::{OrderCommand, OrderStatus};
use ordersaga_events::saga::{SagaEvent, SagaPhase};
use ordersaga_events::topics::Service;
use ordersaga_events::{Cents, OrderId, ProductId, UserId};
use std::time::Duration;
use support::shop::Shop;
use support::TestBroker;

fn balance(shop: &Shop, user: UserId) -> Cents {
    replay::<User>(shop.journal(Service::Users), user.as_uuid(), None)
        .unwrap()
        .state
        .balance()
}

fn stock(shop: &Shop, product: ProductId) -> (u64, u64) {
    let p = replay::<Product>(shop.journal(Service::Inventory), product.as_uuid(), None)
        .unwrap()
        .state;
    (p.on_hand(), p.reserved())
}

fn status(shop: &Shop, order: OrderId) -> Option<OrderStatus> {
    replay::<Order>(shop.journal(Service::Orders), order.as_uuid(), None)
        .unwrap()
        .state
        .status()
}

fn aborted_because(event: &SagaEvent) -> &str {
    match event {
        SagaEvent::Aborted { reason } => reason,
        other => panic!("expected the saga to abort, it ended with {other:?}"),
    }
}

#[actix_rt::test]
async fn an_order_that_can_be_served_is_confirmed_charged_and_committed() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(100_00).await;
    let (a, b) = (shop.product(10_00, 5).await, shop.product(20_00, 5).await);
    let order = shop.order(user, &[(a, 2), (b, 1)]).await;

    assert_eq!(shop.saga_end(order).await, SagaEvent::Completed);
    assert_eq!(status(&shop, order), Some(OrderStatus::Confirmed));
    assert_eq!(balance(&shop, user), Cents(60_00));
    assert_eq!(stock(&shop, a), (3, 0));
    assert_eq!(stock(&shop, b), (4, 0));
    shop.verify();
    shop.stop().await;
}

#[actix_rt::test]
async fn out_of_stock_on_one_line_releases_the_others_and_cancels() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(1_000_00).await;
    let (a, b, c) = (
        shop.product(10_00, 5).await,
        shop.product(20_00, 1).await,
        shop.product(5_00, 9).await,
    );
    let order = shop.order(user, &[(a, 2), (b, 3), (c, 1)]).await;

    let end = shop.saga_end(order).await;
    assert_eq!(aborted_because(&end), "insufficient_stock");
    assert_eq!(status(&shop, order), Some(OrderStatus::Cancelled));
    assert_eq!(balance(&shop, user), Cents(1_000_00), "never charged");
    assert_eq!(stock(&shop, a), (5, 0), "released");
    assert_eq!(stock(&shop, b), (1, 0));
    assert_eq!(stock(&shop, c), (9, 0), "released");
    shop.verify();
    shop.stop().await;
}

#[actix_rt::test]
async fn insufficient_funds_releases_everything_and_leaves_the_balance() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(5_00).await;
    let (a, b) = (shop.product(10_00, 5).await, shop.product(1_00, 5).await);
    let order = shop.order(user, &[(a, 1), (b, 1)]).await;

    let end = shop.saga_end(order).await;
    assert_eq!(aborted_because(&end), "insufficient_funds");
    assert_eq!(status(&shop, order), Some(OrderStatus::Cancelled));
    assert_eq!(balance(&shop, user), Cents(5_00));
    assert_eq!(stock(&shop, a), (5, 0));
    assert_eq!(stock(&shop, b), (5, 0));
    shop.verify();
    shop.stop().await;
}

#[actix_rt::test]
async fn an_unknown_user_aborts_the_order() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let a = shop.product(10_00, 5).await;
    let order = shop.order(UserId::new(), &[(a, 1)]).await;

    let end = shop.saga_end(order).await;
    assert_eq!(aborted_because(&end), "unknown_user");
    assert_eq!(status(&shop, order), Some(OrderStatus::Cancelled));
    assert_eq!(stock(&shop, a), (5, 0));
    shop.verify();
    shop.stop().await;
}

#[actix_rt::test]
async fn inventory_down_past_the_timeout_compensates_and_the_late_reservation_is_released() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(100_00).await;
    let a = shop.product(10_00, 5).await;
    // Make sure the product exists before inventory goes away.
    let warmup = shop.order(user, &[(a, 1)]).await;
    assert_eq!(shop.saga_end(warmup).await, SagaEvent::Completed);

    shop.stop_service(Service::Inventory).await;
    let order = shop.order(user, &[(a, 2)]).await;
    shop.saga_event(order, "the saga to start", |e| {
        matches!(e, SagaEvent::Started { .. })
    })
    .await;

    // Its reservation unanswered, the saga waits as long as the clock
    // stands still, however often the timer ticks, and until the very
    // end of its first attempt.
    for _ in 0..3 {
        assert_eq!(
            shop.tick().await,
            0,
            "nothing is due while time stands still"
        );
    }
    let first_wait = Duration::from_millis(shop.options.saga.wait_ms(1));
    shop.clock.advance(first_wait - Duration::from_millis(1));
    assert_eq!(shop.tick().await, 0, "not due a millisecond early");
    let saga = shop.saga(order);
    assert_eq!((saga.phase(), saga.attempt()), (SagaPhase::Reserving, 1));
    shop.clock.advance(Duration::from_millis(1));
    assert_eq!(shop.tick().await, 1, "due at its deadline");
    let saga = shop.saga(order);
    assert_eq!((saga.phase(), saga.attempt()), (SagaPhase::Reserving, 2));

    // The other attempts run out too: the saga gives up and compensates.
    for attempt in 2..=shop.options.saga.max_attempts {
        assert_eq!(shop.outlast_attempt(attempt).await, 1);
    }
    assert_eq!(shop.saga(order).phase(), SagaPhase::Compensating);
    let started = shop
        .saga_event(order, "compensation after the timeout", |e| {
            matches!(e, SagaEvent::CompensationStarted { .. })
        })
        .await;
    assert!(
        matches!(&started, SagaEvent::CompensationStarted { reason, .. } if reason == "step_timeout"),
        "{started:?}"
    );

    // Inventory returns: it reserves (late) and releases, in that order.
    shop.start_service(Service::Inventory).await;
    let end = shop.saga_end(order).await;
    assert_eq!(aborted_because(&end), "step_timeout");
    shop.saga_event(order, "the late reservation to be undone", |e| {
        matches!(e, SagaEvent::LateReplyCompensated { .. })
    })
    .await;
    assert_eq!(status(&shop, order), Some(OrderStatus::Cancelled));
    assert_eq!(
        balance(&shop, user),
        Cents(90_00),
        "only the warm-up order is paid"
    );
    assert_eq!(stock(&shop, a), (4, 0), "the late reservation was released");
    shop.verify();
    shop.stop().await;
}

#[actix_rt::test]
async fn cancelling_a_confirmed_order_refunds_and_restocks() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(100_00).await;
    let (a, b) = (shop.product(10_00, 5).await, shop.product(20_00, 5).await);
    let order = shop.order(user, &[(a, 2), (b, 1)]).await;
    assert_eq!(shop.saga_end(order).await, SagaEvent::Completed);
    assert_eq!(balance(&shop, user), Cents(60_00));

    shop.send(
        Service::Orders,
        &order.to_string(),
        OrderCommand::Cancel {
            order_id: order,
            reason: "changed_mind".into(),
        },
    )
    .await;
    let end = shop
        .saga_event(order, "the saga to abort", |e| {
            matches!(e, SagaEvent::Aborted { .. })
        })
        .await;
    assert_eq!(aborted_because(&end), "cancelled_by_user");
    assert_eq!(status(&shop, order), Some(OrderStatus::Cancelled));
    assert_eq!(balance(&shop, user), Cents(100_00), "refunded");
    assert_eq!(stock(&shop, a), (5, 0), "restocked");
    assert_eq!(stock(&shop, b), (5, 0), "restocked");
    shop.verify();
    shop.stop().await;
}
