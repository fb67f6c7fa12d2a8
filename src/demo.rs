//! `ordersaga run --demo`: creates users and products and places orders that
//! succeed, fail for stock and fail for funds, all through Kafka, then prints
//! each order's final status and its saga path.

use crate::kafka::{clients, KafkaConfig};
use crate::node::RunningService;
use crate::verify;
use ordersaga_actors::aggregates::{Order, Saga};
use ordersaga_actors::recovery::{decode_stored, replay, stream_of};
use ordersaga_actors::{Aggregate, Journal};
use ordersaga_events::codec::{encode, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine};
use ordersaga_events::saga::{saga_of, SagaEvent};
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, OrderId, ProductId, UserId};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Why the demo could not finish.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// How long the demo waits for any one thing.
const PATIENCE: Duration = Duration::from_secs(60);

async fn send<C: Serialize>(
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    service: ServiceName,
    key: &str,
    command: C,
) -> Result<(), DemoError> {
    let payload = encode(Format::Json, &CommandEnvelope::new(command))?;
    let topic = kafka.name(service.commands_topic());
    producer
        .send(
            FutureRecord::to(&topic).key(key).payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(err, _)| err)?;
    Ok(())
}

/// Waits (polling the store, bounded) until aggregate `id` satisfies `done`.
async fn wait_for<A: Aggregate>(
    journal: &Journal,
    id: uuid::Uuid,
    what: &str,
    done: impl Fn(&A) -> bool,
) -> Result<A, DemoError> {
    let start = Instant::now();
    loop {
        let state = replay::<A>(journal, id, None)?.state;
        if done(&state) {
            return Ok(state);
        }
        if start.elapsed() > PATIENCE {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn journal_of(services: &[RunningService], name: ServiceName) -> Result<&Journal, DemoError> {
    services
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.journal())
        .ok_or_else(|| format!("the {} service is not running", name.name()).into())
}

/// One line per saga step, e.g. `reserved SKU-1 ×2 → priced 90.00 → …`.
fn saga_path(journal: &Journal, order_id: OrderId) -> Result<String, DemoError> {
    let stream = stream_of::<Saga>(saga_of(order_id).as_uuid());
    let mut steps = Vec::new();
    for item in journal.read_stream(&stream, 1) {
        let (sequence, bytes) = item?;
        let step = match decode_stored::<Saga>(&stream, sequence, &bytes)?.payload {
            SagaEvent::Started { .. } => "started".to_string(),
            SagaEvent::LineReserved { quantity, .. } => format!("reserved ×{quantity}"),
            SagaEvent::LineRejected { code, .. } => format!("line rejected ({code})"),
            SagaEvent::Priced { total, .. } => format!("priced {total}"),
            SagaEvent::OrderPriced => "order priced".into(),
            SagaEvent::Charged { amount } => format!("charged {amount}"),
            SagaEvent::ChargeDeclined { code } => format!("charge declined ({code})"),
            SagaEvent::ConfirmRequested { .. } => "confirming".into(),
            SagaEvent::OrderConfirmed { .. } => "order confirmed".into(),
            SagaEvent::LineCommitted { .. } => "stock committed".into(),
            SagaEvent::Completed => "COMPLETED".into(),
            SagaEvent::CompensationStarted { reason, steps, .. } => {
                format!("compensating ({reason}: {} steps)", steps.len())
            }
            SagaEvent::CompensationDone { step } => {
                format!("{} done", step.label().split('/').next().unwrap_or(""))
            }
            SagaEvent::LateReplyCompensated { compensation, .. } => {
                format!("late reply undone ({})", compensation.label())
            }
            SagaEvent::StepRetried { attempt, .. } => format!("retry #{attempt}"),
            SagaEvent::Aborted { reason } => format!("ABORTED ({reason})"),
            SagaEvent::Stuck { reason } => format!("STUCK ({reason})"),
            SagaEvent::RetryRequested { .. } => "operator retry".into(),
        };
        steps.push(step);
    }
    Ok(steps.join(" → "))
}

/// Runs the demo against running services.
pub async fn run(kafka: &KafkaConfig, services: &[RunningService]) -> Result<(), DemoError> {
    let users = journal_of(services, ServiceName::Users)?;
    let inventory = journal_of(services, ServiceName::Inventory)?;
    let orders = journal_of(services, ServiceName::Orders)?;
    let producer = clients::simple_producer(kafka, "ordersaga-demo")?;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];

    println!("\ndemo: two users, two products, three orders, all through Kafka");
    let alice = UserId::new();
    let bob = UserId::new();
    for (id, name, funds) in [(alice, "alice", 10_000u64), (bob, "bob", 500)] {
        send(
            &producer,
            kafka,
            ServiceName::Users,
            &id.to_string(),
            UserCommand::Register {
                user_id: id,
                email: format!("{name}.{tag}@example.com"),
                username: name.into(),
                password: Password::new(format!("{name}'s long password")),
            },
        )
        .await?;
        send(
            &producer,
            kafka,
            ServiceName::Users,
            &id.to_string(),
            UserCommand::Deposit {
                user_id: id,
                amount: Cents(funds),
            },
        )
        .await?;
        wait_for::<ordersaga_actors::aggregates::User>(users, id.as_uuid(), "a deposit", |u| {
            u.balance() == Cents(funds)
        })
        .await?;
        println!("  user {name}: balance {}", Cents(funds));
    }
    let widget = ProductId::new();
    let gadget = ProductId::new();
    for (id, sku, price, stock) in [
        (widget, "WIDGET", 25_00u64, 10u64),
        (gadget, "GADGET", 40_00, 1),
    ] {
        send(
            &producer,
            kafka,
            ServiceName::Inventory,
            &id.to_string(),
            InventoryCommand::AddProduct {
                product_id: id,
                sku: format!("{sku}-{tag}"),
                name: sku.to_lowercase(),
                unit_price: Cents(price),
                stock,
            },
        )
        .await?;
        wait_for::<ordersaga_actors::aggregates::Product>(
            inventory,
            id.as_uuid(),
            "a product",
            |p| p.exists(),
        )
        .await?;
        println!("  product {sku}: {} each, {stock} in stock", Cents(price));
    }

    let orders_to_place = [
        (
            "alice buys 2 widgets and the gadget",
            alice,
            vec![(widget, 2), (gadget, 1)],
        ),
        (
            "alice buys another gadget (none left)",
            alice,
            vec![(widget, 1), (gadget, 1)],
        ),
        ("bob buys a widget with 5.00", bob, vec![(widget, 1)]),
    ];
    for (what, user_id, lines) in orders_to_place {
        let order_id = OrderId::new();
        let lines = lines
            .into_iter()
            .map(|(product_id, quantity)| OrderLine {
                product_id,
                quantity,
            })
            .collect();
        send(
            &producer,
            kafka,
            ServiceName::Orders,
            &order_id.to_string(),
            OrderCommand::Place {
                order_id,
                user_id,
                lines,
            },
        )
        .await?;
        wait_for::<Saga>(orders, order_id.as_uuid(), "the saga", |s| s.is_terminal()).await?;
        let order = replay::<Order>(orders, order_id.as_uuid(), None)?.state;
        let status = order.status().map(|s| s.to_string()).unwrap_or_default();
        println!(
            "\n  {what}\n    order {order_id}: {status}\n    saga: {}",
            saga_path(orders, order_id)?
        );
    }
    let report = verify::check(users, inventory, orders, true)?;
    if report.is_ok() {
        println!(
            "\n  invariants hold: stock and money conserved, every saga completed or aborted\n"
        );
        Ok(())
    } else {
        Err(format!("invariants broken: {:?}", report.violations).into())
    }
}
