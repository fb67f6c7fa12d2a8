//! The shop through the API gateway, over real sockets and Kafka (the
//! embedded broker, or the cluster `ORDERSAGA_TEST_BROKERS` names):
//! accounts, tokens, orders that confirm and that are refused, cancels,
//! ownership, idempotency, read-your-writes, rebuilt read models, circuit
//! breakers and rate limits.

// Amounts are written as euros_cents (100_00 is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use ordersaga::gateway::breaker::State;
use ordersaga::gateway::ratelimit::RateLimitConfig;
use ordersaga::gateway::readmodel;
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::Service;
use ordersaga_events::OrderId;
use std::num::NonZeroU32;
use std::time::Duration;
use support::gateway::{Gateway, ADMIN_EMAIL, ADMIN_PASSWORD};
use support::shop::Shop;
use support::{TestBroker, PATIENCE};

fn uuid_of(text: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(text).unwrap()
}

#[actix_rt::test]
async fn the_shop_through_the_gateway() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let gateway = Gateway::start(&broker, &shop, "gateway", |_| {}).await;
    let admin = gateway.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let widget = gateway.product(&admin, 10_00, 5).await;
    let scarce = gateway.product(&admin, 1_00, 1).await;

    // Given a registered user who logs in and deposits,
    let alice = gateway.shopper(100_00).await;
    let me = gateway
        .call("GET", "/users/me", Some(&alice), &[], None)
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["balance"], 100_00);
    assert!(!me.body.contains("password"), "{}", me.body);

    // when she orders and waits, then the order is confirmed and paid.
    let placed = gateway.order(&alice, &[(&widget, 2)]).await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let order = placed.json();
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"], 20_00);
    let order_id = order["order_id"].as_str().unwrap().to_string();
    let me = gateway
        .call("GET", "/users/me", Some(&alice), &[], None)
        .await;
    assert_eq!(me.json()["balance"], 80_00);

    // An order for more than the stock is cancelled for stock,
    let short = gateway.order(&alice, &[(&scarce, 2)]).await;
    assert_eq!(short.status, 200, "{}", short.body);
    assert_eq!(short.json()["status"], "cancelled");
    assert!(
        short.json()["cancel_reason"]
            .as_str()
            .unwrap()
            .contains("stock"),
        "{}",
        short.body
    );
    // and one she cannot pay for is cancelled for funds.
    let broke = gateway.shopper(5_00).await;
    let unpaid = gateway.order(&broke, &[(&widget, 1)]).await;
    assert_eq!(unpaid.json()["status"], "cancelled", "{}", unpaid.body);
    assert!(
        unpaid.json()["cancel_reason"]
            .as_str()
            .unwrap()
            .contains("funds"),
        "{}",
        unpaid.body
    );

    // Another user may neither read nor cancel her order.
    let path = format!("/orders/{order_id}");
    let theirs = gateway.call("GET", &path, Some(&broke), &[], None).await;
    assert_eq!(theirs.status, 403, "{}", theirs.body);
    assert_eq!(theirs.json()["code"], "forbidden");
    let cancel_path = format!("/orders/{order_id}/cancel");
    let theirs = gateway
        .call("POST", &cancel_path, Some(&broke), &[], None)
        .await;
    assert_eq!(theirs.status, 403, "{}", theirs.body);
    let mine = gateway.call("GET", &path, Some(&alice), &[], None).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.json()["saga"]["phase"], "completed", "{}", mine.body);

    // Cancelling a confirmed order refunds it through the saga.
    let cancelled = gateway
        .call("POST", &cancel_path, Some(&alice), &[], None)
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    shop.saga_event(
        OrderId::from(uuid_of(&order_id)),
        "the saga to abort",
        |e| matches!(e, SagaEvent::Aborted { .. }),
    )
    .await;
    let me = gateway
        .call("GET", "/users/me", Some(&alice), &[], None)
        .await;
    assert_eq!(me.json()["balance"], 100_00, "refunded: {}", me.body);
    let again = gateway
        .call("POST", &cancel_path, Some(&alice), &[], None)
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["code"], "invalid_transition");

    // No token, a bad one and an expired one are each a 401.
    let none = gateway.call("GET", "/users/me", None, &[], None).await;
    assert_eq!(
        (none.status, none.json()["code"].clone()),
        (401, "missing_token".into())
    );
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let bad = gateway
        .call("GET", "/users/me", Some("not.a.token"), &[], None)
        .await;
    assert_eq!(
        (bad.status, bad.json()["code"].clone()),
        (401, "invalid_token".into())
    );
    let expired = gateway
        .keys
        .issue(
            uuid::Uuid::new_v4(),
            vec!["customer".into()],
            chrono::Utc::now() - chrono::TimeDelta::hours(2),
        )
        .unwrap();
    let old = gateway
        .call("GET", "/users/me", Some(&expired), &[], None)
        .await;
    assert_eq!(
        (old.status, old.json()["code"].clone()),
        (401, "token_expired".into())
    );
    let customer = gateway
        .call(
            "POST",
            "/products",
            Some(&alice),
            &[],
            Some(serde_json::json!({"sku": "X", "name": "x", "unit_price": 1, "stock": 1})),
        )
        .await;
    assert_eq!(
        customer.status, 403,
        "products need the admin role: {}",
        customer.body
    );

    // A replayed Idempotency-Key deposits once.
    let key = [("Idempotency-Key", "deposit-42")];
    let first = gateway
        .call(
            "POST",
            "/users/me/deposits",
            Some(&alice),
            &key,
            Some(serde_json::json!({"amount": 7_00})),
        )
        .await;
    let second = gateway
        .call(
            "POST",
            "/users/me/deposits",
            Some(&alice),
            &key,
            Some(serde_json::json!({"amount": 7_00})),
        )
        .await;
    assert_eq!(
        (first.status, second.status),
        (200, 200),
        "{} / {}",
        first.body,
        second.body
    );
    assert_eq!(
        first.json()["position"],
        second.json()["position"],
        "the same write"
    );
    let me = gateway
        .call("GET", "/users/me", Some(&alice), &[], None)
        .await;
    assert_eq!(me.json()["balance"], 107_00, "applied once: {}", me.body);

    // Read-your-writes: a list read waits for the position of a write.
    let quick = gateway
        .call(
            "POST",
            "/orders",
            Some(&alice),
            &[],
            Some(serde_json::json!({"lines": [{"product_id": widget, "quantity": 1}]})),
        )
        .await;
    assert_eq!(quick.status, 202, "{}", quick.body);
    assert!(quick.header("location").unwrap().starts_with("/orders/"));
    let position = quick.header("ordersaga-position").unwrap().to_string();
    let quick_id = quick.json()["order_id"].as_str().unwrap().to_string();
    let list = gateway
        .call(
            "GET",
            "/users/me/orders?limit=100",
            Some(&alice),
            &[("Ordersaga-Min-Position", &position)],
            None,
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let items = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(
        items[0]["order_id"],
        quick_id.as_str(),
        "newest first, and there: {}",
        list.body
    );
    assert!(items
        .iter()
        .all(|o| o["user_id"] != serde_json::Value::Null));
    let products = gateway.call("GET", "/products", None, &[], None).await;
    assert_eq!(products.status, 200, "{}", products.body);
    assert!(products.body.contains(&widget));

    // Bad input: unknown fields, a bad id, a bad position; nothing sent.
    let unknown = gateway
        .call(
            "POST",
            "/users/me/deposits",
            Some(&alice),
            &[],
            Some(serde_json::json!({"amount": 1, "extra": 1})),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.json()["code"].clone()),
        (400, "invalid_body".into())
    );
    let zero = gateway
        .call(
            "POST",
            "/users/me/deposits",
            Some(&alice),
            &[],
            Some(serde_json::json!({"amount": 0})),
        )
        .await;
    assert_eq!(zero.status, 422, "{}", zero.body);
    let bad_id = gateway
        .call("GET", "/orders/nope", Some(&alice), &[], None)
        .await;
    assert_eq!(bad_id.status, 400, "{}", bad_id.body);
    let bad_position = gateway
        .call(
            "GET",
            "/users/me/orders",
            Some(&alice),
            &[("Ordersaga-Min-Position", "order:x")],
            None,
        )
        .await;
    assert_eq!(bad_position.json()["code"], "invalid_position");

    // A rebuild from the topics gives the same read models as the live
    // projection, once both have read the topics to their ends.
    shop.saga_end(OrderId::from(uuid_of(&quick_id))).await;
    let rebuilt_dir = tempfile::tempdir().unwrap();
    let rebuilt = readmodel::ReadModel::open(rebuilt_dir.path().join("readmodel")).unwrap();
    readmodel::rebuild_into(&shop.kafka, &rebuilt, false)
        .await
        .expect("rebuild");
    let live = gateway.running.state.model.clone();
    support::gateway::converge(&shop.kafka, &live, &rebuilt).await;
    assert_eq!(
        live.dump().unwrap(),
        rebuilt.dump().unwrap(),
        "rebuild equals live"
    );

    gateway.running.stop().await;
    shop.verify();
    shop.stop().await;
}

#[actix_rt::test]
async fn breakers_open_on_a_dead_service_and_floods_are_limited() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let gateway = Gateway::start(&broker, &shop, "gateway", |_| {}).await;
    let admin = gateway.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let widget = gateway.product(&admin, 10_00, 5).await;
    let restock = format!("/products/{widget}/restock");
    let one = serde_json::json!({"quantity": 1});

    // Given the inventory service stops (it says so on its heartbeat),
    shop.stop_service(Service::Inventory).await;
    let registry = gateway.running.registry();
    let mut seen = registry.observed();
    tokio::time::timeout(PATIENCE, async {
        while !registry.live(Service::Inventory).is_empty() {
            seen.changed().await.unwrap();
        }
    })
    .await
    .expect("the registry sees the inventory service leave");

    // when a command for it arrives, then the breaker answers 503 at once,
    let refused = gateway
        .call("POST", &restock, Some(&admin), &[], Some(one.clone()))
        .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["code"], "service_unavailable");
    assert!(refused.header("retry-after").is_some());
    let breaker = gateway
        .running
        .state
        .downstream
        .breakers()
        .of(Service::Inventory)
        .snapshot();
    assert_eq!(breaker.state, State::Open);
    // reads fall back to the read model, marked stale,
    let stale = gateway
        .call("GET", &format!("/products/{widget}"), None, &[], None)
        .await;
    assert_eq!(stale.status, 200, "{}", stale.body);
    assert_eq!(stale.header("ordersaga-stale"), Some("true"));
    assert_eq!(stale.json()["on_hand"], 5);
    // and /services and /metrics show it open.
    let services = gateway.call("GET", "/services", None, &[], None).await;
    assert_eq!(
        services.json()["services"]["inventory"]["breaker"]["state"],
        "open"
    );
    let metrics = gateway.call("GET", "/metrics", None, &[], None).await;
    assert!(
        metrics
            .body
            .contains("ordersaga_gateway_breaker_state{downstream=\"inventory\"} 2"),
        "{}",
        metrics.body
    );

    // When the service returns and the cool-down passes, a probe closes it.
    shop.start_service(Service::Inventory).await;
    tokio::time::timeout(PATIENCE, async {
        while registry.live(Service::Inventory).is_empty() {
            seen.changed().await.unwrap();
        }
    })
    .await
    .expect("the registry sees the inventory service return");
    gateway.clock.advance(Duration::from_secs(6));
    let probe = gateway
        .call("POST", &restock, Some(&admin), &[], Some(one.clone()))
        .await;
    assert_eq!(probe.status, 200, "{}", probe.body);
    let breaker = gateway
        .running
        .state
        .downstream
        .breakers()
        .of(Service::Inventory)
        .snapshot();
    assert_eq!(breaker.state, State::Closed);
    let fresh = gateway
        .call("GET", &format!("/products/{widget}"), None, &[], None)
        .await;
    assert_eq!(fresh.header("ordersaga-stale"), None);
    assert_eq!(fresh.json()["on_hand"], 6);

    // A second gateway beside the first, with its own reply topic and read
    // model; a flood from one address gets 429 with Retry-After there.
    let strict = Gateway::start(&broker, &shop, "strict", |options| {
        options.rate_limits = RateLimitConfig {
            ip_per_second: NonZeroU32::new(1).unwrap(),
            ip_burst: NonZeroU32::new(3).unwrap(),
            ..RateLimitConfig::default()
        };
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let answer = strict.call("GET", "/products", None, &[], None).await;
        if answer.status == 429 {
            assert!(
                answer
                    .header("retry-after")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
            assert_eq!(answer.json()["code"], "rate_limited");
        }
        statuses.push(answer.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 3,
        "{statuses:?}"
    );
    let health = strict.call("GET", "/health", None, &[], None).await;
    assert_eq!(health.status, 200, "probes are never limited");
    // Both gateways get their own replies: a command through each applies
    // (the same key signs both gateways' tokens; a token's user is limited
    // as a user, not as the flooded address).
    for (gw, quantity) in [(&gateway, 2), (&strict, 3)] {
        let answer = gw
            .call(
                "POST",
                &restock,
                Some(&admin),
                &[],
                Some(serde_json::json!({ "quantity": quantity })),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let both = gateway
        .call("GET", &format!("/products/{widget}"), None, &[], None)
        .await;
    assert_eq!(both.json()["on_hand"], 11);
    strict.running.stop().await;
    gateway.running.stop().await;
    shop.stop().await;
}
