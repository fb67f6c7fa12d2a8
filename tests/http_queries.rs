//! Each service's HTTP face over real sockets, with the shop running on
//! Kafka: queries agree with what the events did after a saga completes and
//! after one aborts; the login backend accepts the right password and
//! refuses the rest alike; bad ids, bodies and routes get problem bodies.

mod support;

use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::Service;
use serde_json::Value;
use std::net::SocketAddr;
use support::http::request;
use support::shop::Shop;
use support::TestBroker;

fn http_of(shop: &Shop, service: Service) -> SocketAddr {
    shop.services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.http_address())
        .expect("the service serves HTTP")
}

async fn get(address: SocketAddr, path: &str) -> (u16, Value) {
    let answer = request(address, "GET", path, None).await;
    (answer.status, answer.json())
}

#[actix_rt::test]
async fn queries_agree_with_the_events_after_a_saga_completes_and_after_one_aborts() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let (users, inventory, orders) = (
        http_of(&shop, Service::Users),
        http_of(&shop, Service::Inventory),
        http_of(&shop, Service::Orders),
    );
    let rich = shop.user(10_000).await;
    let poor = shop.user(100).await;
    let widget = shop.product(250, 10).await;

    // Given an order that completes,
    let paid = shop.order(rich, &[(widget, 4)]).await;
    assert_eq!(shop.saga_end(paid).await, SagaEvent::Completed);
    // then the order, the user and the product say what the events did.
    let (status, order) = get(orders, &format!("/orders/{paid}")).await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["total"], 1_000);
    assert_eq!(order["user_id"], rich.to_string());
    assert_eq!(order["saga"]["phase"], "completed");
    assert_eq!(order["saga"]["charged"], 1_000);
    assert_eq!(order["saga"]["waiting_for"], Value::Array(vec![]));
    let (_, user) = get(users, &format!("/users/{rich}")).await;
    assert_eq!(user["balance"], 9_000);
    assert_eq!(user["total_charged"], 1_000);
    assert!(
        user.get("password_hash").is_none() && !user.to_string().contains("argon2"),
        "{user}"
    );
    let (_, product) = get(inventory, &format!("/products/{widget}")).await;
    assert_eq!(product["on_hand"], 6);
    assert_eq!(product["reserved"], 0);
    assert_eq!(product["available"], 6);

    // Given an order its user cannot pay,
    let unpaid = shop.order(poor, &[(widget, 1)]).await;
    assert!(matches!(
        shop.saga_end(unpaid).await,
        SagaEvent::Aborted { .. }
    ));
    // then it is cancelled, the money and the stock are as they were.
    let (_, order) = get(orders, &format!("/orders/{unpaid}")).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["saga"]["phase"], "aborted");
    assert_eq!(order["saga"]["reason"], "insufficient_funds");
    let (_, user) = get(users, &format!("/users/{poor}")).await;
    assert_eq!(user["balance"], 100);
    assert_eq!(user["total_charged"], 0);
    let (_, product) = get(inventory, &format!("/products/{widget}")).await;
    assert_eq!(product["on_hand"], 6);
    assert_eq!(product["reserved"], 0);

    // The lists: a user's orders, newest first, and every product.
    let second = shop.order(rich, &[(widget, 1)]).await;
    assert_eq!(shop.saga_end(second).await, SagaEvent::Completed);
    let (status, page) = get(orders, &format!("/users/{rich}/orders?limit=1")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["order_id"], second.to_string());
    let next = page["next"].as_str().expect("a next page").to_owned();
    let (_, page) = get(
        orders,
        &format!("/users/{rich}/orders?limit=1&cursor={next}"),
    )
    .await;
    assert_eq!(page["items"][0]["order_id"], paid.to_string());
    assert_eq!(page["items"][0]["status"], "confirmed");
    let (_, page) = get(orders, &format!("/users/{poor}/orders")).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert!(page["next"].is_null());
    let (_, page) = get(inventory, "/products").await;
    assert_eq!(page["items"][0]["product_id"], widget.to_string());
    for bad in [
        "/products?limit=0",
        "/products?cursor=zz",
        "/products?sort=name",
    ] {
        let (status, problem) = get(inventory, bad).await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }

    // The sagas' ends are counted (the follower counts them as it passes).
    let counted = async {
        loop {
            let event = |name| [("event", name)];
            let completed =
                scraped(orders, "ordersaga_saga_events_total", &event("completed")).await;
            let aborted = scraped(orders, "ordersaga_saga_events_total", &event("aborted")).await;
            if completed >= 2.0 && aborted >= 1.0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), counted)
        .await
        .expect("the saga ends are counted");

    // The OpenAPI document names every route, generated from the code.
    let (status, doc) = get(orders, "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{doc}"
    );
    for path in [
        "/users/{id}",
        "/products",
        "/products/{id}",
        "/orders/{id}",
        "/users/{id}/orders",
        "/users/authenticate",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }

    // Each service answers for its own aggregates only.
    let (status, problem) = get(users, &format!("/orders/{paid}")).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    shop.stop().await;
}

/// The value of `name` with `labels` in a scrape of `address`, parsed as a
/// Prometheus server parses it.
async fn scraped(address: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let answer = request(address, "GET", "/metrics", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let lines = answer.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[actix_rt::test]
async fn metrics_parse_and_move_when_commands_flow() {
    let broker = TestBroker::from_env();
    let shop = Shop::start(&broker).await;
    let users = http_of(&shop, Service::Users);
    let accepted = [("service", "users"), ("outcome", "accepted")];
    let before = scraped(users, "ordersaga_commands_total", &accepted).await;
    let flushes_before = scraped(users, "ordersaga_journal_flushes", &[("service", "users")]).await;
    let user = shop.user(500).await;
    // The registration and the deposit went through Kafka: wait for both.
    loop {
        let answer = request(users, "GET", &format!("/users/{user}"), None).await;
        if answer.status == 200 && answer.json()["balance"] == 500 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let after = scraped(users, "ordersaga_commands_total", &accepted).await;
    assert!(after >= before + 2.0, "{before} → {after}");
    let flushes = scraped(users, "ordersaga_journal_flushes", &[("service", "users")]).await;
    assert!(flushes > flushes_before, "{flushes_before} → {flushes}");
    let latency = scraped(
        users,
        "ordersaga_command_seconds_count",
        &[("service", "users")],
    )
    .await;
    assert!(latency >= 2.0, "{latency}");
    assert_eq!(
        scraped(users, "ordersaga_ready", &[("service", "users")]).await,
        1.0
    );
    // Queries count by what answered them: with no command since the read
    // above, the user's entity has given out its state, so the next reads
    // come from its view.
    let by = |answered_by| [("service", "users"), ("answered_by", answered_by)];
    let views_before = scraped(users, "ordersaga_queries_total", &by("view")).await;
    for _ in 0..2 {
        let answer = request(users, "GET", &format!("/users/{user}"), None).await;
        assert_eq!(answer.json()["balance"], 500);
    }
    let views = scraped(users, "ordersaga_queries_total", &by("view")).await;
    assert!(views >= views_before + 1.0, "{views_before} → {views}");
    let by_entity = scraped(users, "ordersaga_queries_total", &by("entity")).await;
    assert!(
        by_entity >= 1.0,
        "the first read asked the entity: {by_entity}"
    );
    shop.stop().await;
}

#[actix_rt::test]
async fn several_reads_in_one_request_answer_each_as_its_get_does() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let inventory = http_of(&shop, Service::Inventory);
    let widget = shop.product(250, 10).await;
    let gadget = shop.product(99, 3).await;
    // (An order of both that completes shows that both exist.)
    let buyer = shop.user(10_000).await;
    let order = shop.order(buyer, &[(widget, 1), (gadget, 1)]).await;
    assert_eq!(shop.saga_end(order).await, SagaEvent::Completed);
    // Given reads that succeed, miss, are malformed or belong elsewhere
    let paths = [
        format!("/products/{widget}"),
        "/products/1c887578-cc70-481f-ac57-25ec3243f0c3".to_owned(),
        format!("/products/{gadget}"),
        "/products/not-a-uuid".to_owned(),
        format!("/users/{widget}"),
        "/nowhere".to_owned(),
    ];
    // When they are asked together
    let body = serde_json::json!({ "paths": paths }).to_string();
    let answer = request(inventory, "POST", "/reads", Some(&body)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answers = answer.json()["answers"].clone();
    assert_eq!(
        answers.as_array().map(Vec::len),
        Some(paths.len()),
        "{answers}"
    );
    // Then each answer, in order, is what its own GET answers (the route
    // that does not exist is named in its problem, as a GET's would be)
    for (path, answer) in paths.iter().zip(answers.as_array().unwrap()) {
        let (status, body) = get(inventory, path).await;
        assert_eq!(answer["status"], status, "{path}: {answer}");
        if path == "/nowhere" {
            assert_eq!(answer["body"]["code"], body["code"], "{path}");
            assert!(answer["body"]["detail"].as_str().unwrap().contains(path));
        } else {
            assert_eq!(answer["body"], body, "{path}");
        }
    }
    assert_eq!(answers[0]["body"]["unit_price"], 250);
    assert_eq!(answers[2]["body"]["available"], 2);
    assert_eq!(answers[1]["body"]["code"], "not_found");

    // And a request with too many reads or an unknown field is refused
    let many = vec![format!("/products/{widget}"); 257];
    let refused = [
        (
            serde_json::json!({ "paths": many }).to_string(),
            "too_many_reads",
        ),
        (
            serde_json::json!({ "paths": [], "all": true }).to_string(),
            "invalid_body",
        ),
    ];
    for (body, code) in refused {
        let answer = request(inventory, "POST", "/reads", Some(&body)).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.json()["code"], code);
    }
    shop.stop().await;
}

#[actix_rt::test]
async fn bad_input_gets_a_problem_body_and_changes_nothing() {
    let broker = TestBroker::from_env();
    let shop = Shop::start(&broker).await;
    let users = http_of(&shop, Service::Users);
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        ("GET", "/users/not-a-uuid", None, 400, "invalid_id"),
        (
            "GET",
            "/users/1c887578-cc70-481f-ac57-25ec3243f0c3",
            None,
            404,
            "not_found",
        ),
        ("GET", "/nowhere", None, 404, "not_found"),
        (
            "POST",
            "/users/authenticate",
            Some(r#"{"email":"a@b.c","password":"x","admin":true}"#.into()),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/users/authenticate",
            Some(r#"{"email":"#.into()),
            400,
            "invalid_body",
        ),
        (
            "POST",
            "/users/authenticate",
            Some(format!(
                r#"{{"email":"a@b.c","password":"{}"}}"#,
                "x".repeat(20_000)
            )),
            413,
            "body_too_large",
        ),
    ];
    let before = shop.services[0].journal().stats();
    for (method, path, body, status, code) in cases {
        let answer = request(users, method, path, body.as_deref()).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/problem+json"),
            "{method} {path}"
        );
        assert_eq!(answer.json()["code"], code, "{method} {path}");
    }
    assert_eq!(
        shop.services[0].journal().stats().commits,
        before.commits,
        "nothing was written"
    );
    shop.stop().await;
}

#[actix_rt::test]
async fn authenticate_accepts_the_right_password_and_refuses_the_rest_alike() {
    let broker = TestBroker::from_env();
    let shop = Shop::start(&broker).await;
    let users = http_of(&shop, Service::Users);
    let user = shop.user(0).await;
    let email = format!("{user}@example.com");
    let login = |email: &str, password: &str| {
        serde_json::json!({"email": email, "password": password}).to_string()
    };
    // The registration went through Kafka: wait until it is visible.
    loop {
        let answer = request(users, "GET", &format!("/users/{user}"), None).await;
        if answer.status == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let checks = |result: &'static str| async move {
        let labels = [("result", result)];
        scraped(users, "ordersaga_password_checks_total", &labels).await
    };
    let (matched, refused) = (checks("match").await, checks("refused").await);
    let right = request(
        users,
        "POST",
        "/users/authenticate",
        Some(&login(&email.to_uppercase(), "a long password")),
    )
    .await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(right.json()["user_id"], user.to_string());
    assert_eq!(right.json()["roles"], serde_json::json!(["customer"]));

    let wrong = request(
        users,
        "POST",
        "/users/authenticate",
        Some(&login(&email, "wrong")),
    )
    .await;
    let unknown = request(
        users,
        "POST",
        "/users/authenticate",
        Some(&login("nobody@example.com", "a long password")),
    )
    .await;
    // A wrong password and an unknown account read the same: nobody learns
    // which addresses have accounts.
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);
    assert!(!wrong.body.contains("a long password"));
    // An unknown account costs an argon2 check like a wrong password does
    // (against a dummy hash of the same cost): timing tells nothing either.
    assert!(checks("match").await >= matched + 1.0);
    assert!(checks("refused").await >= refused + 2.0);
    shop.stop().await;
}
