//! The orders service process is killed (SIGKILL) while many sagas are in
//! flight, then started again: every saga still ends Completed or Aborted and
//! the invariants hold across the three stores.
// Money is written as dollars_cents: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use ordersaga::kafka::topics::all_topics;
use ordersaga::node::{self, NodeOptions};
use ordersaga_actors::Journal;
use ordersaga_events::codec::{decode_event, encode, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::{header, Service, ORDERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, OrderId, ProductId, UserId};
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use support::{header_text, producer, send_raw, Probe, TestBroker};

const ORDERS: usize = 60;

/// The saga step timeout of the orders service: longer than any run, so its
/// timer never acts. Every saga here ends by its replies alone, which the
/// outbox and the stored consumer offsets carry across the kill; a slow
/// machine cannot turn that into resends or a `step_timeout` abort, and a
/// reply lost in the crash would fail the test instead of being resent.
const NEVER_MS: &str = "3600000";

fn serve_orders(kafka: &ordersaga::kafka::KafkaConfig, data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .args(["serve", "orders", "--brokers", &kafka.brokers, "--data"])
        .arg(data)
        .args(["--namespace", kafka.namespace.as_deref().unwrap()])
        .args(["--partitions", &kafka.partitions.to_string()])
        .args(["--no-create-topics", "--saga-step-timeout-ms", NEVER_MS])
        .args(support::restart_args())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ordersaga serve orders")
}

/// Sagas that reached Completed or Aborted on the events topic.
fn ended(seen: &[OwnedMessage]) -> HashSet<String> {
    seen.iter()
        .filter(|m| header_text(m, header::STREAM).is_some_and(|s| s.starts_with("saga:")))
        .filter_map(|m| {
            let event = decode_event::<SagaEvent>(m.payload()?).ok()?;
            matches!(
                event.payload,
                SagaEvent::Completed | SagaEvent::Aborted { .. }
            )
            .then(|| event.stream.to_string())
        })
        .collect()
}

#[actix_rt::test]
async fn sagas_survive_a_killed_orders_service() {
    let broker = TestBroker::from_env();
    let kafka = broker.kafka();
    let topics = all_topics();
    let topics: Vec<&str> = topics.iter().map(|t| t.as_str()).collect();
    broker.create_topics(&kafka, &topics).await;
    let dir = tempfile::tempdir().unwrap();
    let options = NodeOptions::new(kafka.clone(), dir.path());
    let users = node::start(Service::Users, &options).await.unwrap();
    let inventory = node::start(Service::Inventory, &options).await.unwrap();
    let producer = producer(&kafka);
    let send = |service: Service, key: String, payload: Vec<u8>| {
        let (producer, kafka) = (producer.clone(), kafka.clone());
        async move {
            send_raw(
                &producer,
                &kafka,
                service.commands_topic(),
                &key,
                &payload,
                Some(Format::Bincode),
            )
            .await
        }
    };
    fn bytes<C: Serialize>(command: C) -> Vec<u8> {
        encode(Format::Bincode, &CommandEnvelope::new(command)).unwrap()
    }

    // Some users can pay for everything, some for nothing; stock runs out.
    let shoppers: Vec<(UserId, u64)> = (0..8)
        .map(|i| (UserId::new(), if i % 4 == 0 { 3_00 } else { 500_00 }))
        .collect();
    for (user_id, funds) in &shoppers {
        send(
            Service::Users,
            user_id.to_string(),
            bytes(UserCommand::Register {
                user_id: *user_id,
                email: format!("{user_id}@example.com"),
                username: "shopper".into(),
                password: Password::new("a long password"),
            }),
        )
        .await;
        send(
            Service::Users,
            user_id.to_string(),
            bytes(UserCommand::Deposit {
                user_id: *user_id,
                amount: Cents(*funds),
            }),
        )
        .await;
    }
    let products: Vec<ProductId> = (0..4).map(|_| ProductId::new()).collect();
    for (i, product_id) in products.iter().enumerate() {
        send(
            Service::Inventory,
            product_id.to_string(),
            bytes(InventoryCommand::AddProduct {
                product_id: *product_id,
                sku: format!("CRASH-{i}"),
                name: "thing".into(),
                unit_price: Cents(4_00 + i as u64),
                stock: 60,
            }),
        )
        .await;
    }

    let mut events = Probe::new(&kafka, ORDERS_EVENTS);
    let mut orders_service = serve_orders(&kafka, dir.path());
    for n in 0..ORDERS {
        let order_id = OrderId::new();
        let (user_id, _) = shoppers[n % shoppers.len()];
        let lines = vec![
            OrderLine {
                product_id: products[n % 4],
                quantity: 1 + (n % 3) as u64,
            },
            OrderLine {
                product_id: products[(n + 1) % 4],
                quantity: 1,
            },
        ];
        send(
            Service::Orders,
            order_id.to_string(),
            bytes(OrderCommand::Place {
                order_id,
                user_id,
                lines,
            }),
        )
        .await;
    }
    events
        .until("a quarter of the sagas to end", |seen| {
            ended(seen).len() >= ORDERS / 4
        })
        .await;
    orders_service.kill().expect("SIGKILL the orders service");
    orders_service.wait().unwrap();

    let mut orders_service = serve_orders(&kafka, dir.path());
    events
        .until("every saga to end", |seen| ended(seen).len() == ORDERS)
        .await;
    let stopped = Command::new("kill")
        .args(["-TERM", &orders_service.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(orders_service.wait().unwrap().success());

    let orders = Journal::open_path(dir.path().join("orders")).unwrap();
    let report =
        ordersaga::verify::check(users.journal(), inventory.journal(), &orders, true).unwrap();
    assert!(
        report.is_ok(),
        "invariants broken: {:#?}",
        report.violations
    );
    let completed = report.sagas.get("completed").copied().unwrap_or(0);
    let aborted = report.sagas.get("aborted").copied().unwrap_or(0);
    assert_eq!(completed + aborted, ORDERS, "{:?}", report.sagas);
    let reasons: std::collections::BTreeMap<String, usize> = orders
        .streams(Some(ordersaga_events::StreamKind::Saga))
        .map(|s| {
            let (stream, _) = s.unwrap();
            let saga = ordersaga_actors::recovery::replay::<ordersaga_actors::aggregates::Saga>(
                &orders, stream.id, None,
            )
            .unwrap();
            saga.state.reason().unwrap_or("completed").to_string()
        })
        .fold(Default::default(), |mut m, r| {
            *m.entry(r).or_default() += 1;
            m
        });
    assert!(
        completed > 0 && aborted > 0,
        "both outcomes exercised: {reasons:?}"
    );
    users.stop().await;
    inventory.stop().await;
}
