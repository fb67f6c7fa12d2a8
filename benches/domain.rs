//! The pure parts of a command, one at a time: `decide` and `apply` of each
//! aggregate (user, product, order, saga) on a realistic state, and the
//! codec (bincode and JSON) of a command envelope and an event envelope.
//! No disk, no actors: what `ordersaga bench actors` pays per command on top
//! of these is routing, the journal and the reply.
//!
//! Run with `cargo bench --bench domain`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::Aggregate;
use ordersaga_events::codec::{decode, decode_event, encode, encode_event, Format};
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::order::{OrderCommand, OrderEvent, OrderLine};
use ordersaga_events::saga::{
    saga_command_id, saga_of, SagaCommand, SagaEvent, SagaPolicy, SagaStep,
};
use ordersaga_events::user::{UserCommand, UserEvent};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandResult, CorrelationId, Envelope, EventId, OrderId, Outcome,
    ProductId, Reply, StreamId, StreamKind, UserId, Versioned,
};
use uuid::Uuid;

/// An order's lines: three products, as the saga bench's orders have 1–3.
fn lines(products: &[ProductId]) -> Vec<OrderLine> {
    products
        .iter()
        .map(|&product_id| OrderLine {
            product_id,
            quantity: 2,
        })
        .collect()
}

/// A registered user with some history: deposits and ten charged orders.
fn user() -> (User, UserId) {
    let user_id = UserId::new();
    let mut events = vec![UserEvent::Registered {
        user_id,
        email: "alice@example.com".into(),
        username: "alice".into(),
    }];
    events.push(UserEvent::Deposited {
        amount: Cents(1_000_000),
    });
    for _ in 0..10 {
        events.push(UserEvent::Charged {
            order_id: OrderId::new(),
            amount: Cents(2_500),
        });
    }
    (User::from_events(&events), user_id)
}

/// A product with twenty held reservations.
fn product() -> (Product, ProductId) {
    let product_id = ProductId::new();
    let mut events = vec![InventoryEvent::ProductAdded {
        product_id,
        sku: "WIDGET".into(),
        name: "Widget".into(),
        unit_price: Cents(2_500),
        stock: 1_000_000,
    }];
    for _ in 0..20 {
        events.push(InventoryEvent::Reserved {
            order_id: OrderId::new(),
            quantity: 2,
            unit_price: Cents(2_500),
        });
    }
    (Product::from_events(&events), product_id)
}

fn users(c: &mut Criterion) {
    let (state, user_id) = user();
    let deposit = UserCommand::Deposit {
        user_id,
        amount: Cents(100),
    };
    let charge = UserCommand::Charge {
        user_id,
        order_id: OrderId::new(),
        amount: Cents(2_500),
    };
    let charged = UserEvent::Charged {
        order_id: OrderId::new(),
        amount: Cents(2_500),
    };
    assert!(state.decide(&deposit).is_ok() && state.decide(&charge).is_ok());
    c.bench_function("user/decide_deposit", |b| {
        b.iter(|| state.decide(black_box(&deposit)))
    });
    c.bench_function("user/decide_charge", |b| {
        b.iter(|| state.decide(black_box(&charge)))
    });
    c.bench_function("user/apply_charged", |b| {
        b.iter_batched_ref(
            || state.clone(),
            |s| s.apply(black_box(&charged)),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn products(c: &mut Criterion) {
    let (state, product_id) = product();
    let restock = InventoryCommand::Restock {
        product_id,
        quantity: 1,
    };
    let reserve = InventoryCommand::Reserve {
        product_id,
        order_id: OrderId::new(),
        quantity: 2,
    };
    let reserved = InventoryEvent::Reserved {
        order_id: OrderId::new(),
        quantity: 2,
        unit_price: Cents(2_500),
    };
    assert!(state.decide(&restock).is_ok() && state.decide(&reserve).is_ok());
    c.bench_function("product/decide_restock", |b| {
        b.iter(|| state.decide(black_box(&restock)))
    });
    c.bench_function("product/decide_reserve", |b| {
        b.iter(|| state.decide(black_box(&reserve)))
    });
    c.bench_function("product/apply_restocked", |b| {
        let event = InventoryEvent::Restocked { quantity: 1 };
        b.iter_batched_ref(
            || state.clone(),
            |s| s.apply(black_box(&event)),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("product/apply_reserved", |b| {
        b.iter_batched_ref(
            || state.clone(),
            |s| s.apply(black_box(&reserved)),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn orders(c: &mut Criterion) {
    let products: Vec<ProductId> = (0..3).map(|_| ProductId::new()).collect();
    let (order_id, user_id) = (OrderId::new(), UserId::new());
    let place = OrderCommand::Place {
        order_id,
        user_id,
        lines: lines(&products),
    };
    let placed = OrderEvent::Placed {
        order_id,
        user_id,
        lines: lines(&products),
    };
    let empty = Order::default();
    assert!(empty.decide(&place).is_ok());
    c.bench_function("order/decide_place", |b| {
        b.iter(|| empty.decide(black_box(&place)))
    });
    c.bench_function("order/apply_placed", |b| {
        b.iter_batched_ref(
            Order::default,
            |s| s.apply(black_box(&placed)),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn sagas(c: &mut Criterion) {
    let products: Vec<ProductId> = (0..3).map(|_| ProductId::new()).collect();
    let (order_id, user_id) = (OrderId::new(), UserId::new());
    // A saga's id is derived from its order's.
    let saga_id = saga_of(order_id);
    let now = chrono::Utc::now();
    let start = SagaCommand::Start {
        saga_id,
        order_id,
        user_id,
        lines: lines(&products),
        policy: SagaPolicy::default(),
        now,
    };
    let fresh = Saga::default();
    let started = fresh.decide(&start).expect("a fresh saga starts");
    let first = started.first().cloned().expect("a Started event");
    let running = Saga::from_events(&started);
    let reply = SagaCommand::Reply {
        saga_id,
        reply: Reply {
            command_id: saga_command_id(saga_id, &SagaStep::Reserve(products[0])),
            correlation_id: CorrelationId::from_uuid(saga_id.as_uuid()),
            stream: StreamId::new(StreamKind::Product, products[0].as_uuid()),
            outcome: Outcome::Accepted { sequences: vec![7] },
            result: Some(CommandResult::Reserved {
                quantity: 2,
                unit_price: Cents(2_500),
            }),
        },
        now,
    };
    let reserved = running.decide(&reply).expect("a reservation is taken");
    assert!(
        matches!(reserved.first(), Some(SagaEvent::LineReserved { .. })),
        "{reserved:?}"
    );
    c.bench_function("saga/decide_start", |b| {
        b.iter(|| fresh.decide(black_box(&start)))
    });
    c.bench_function("saga/decide_reserve_reply", |b| {
        b.iter(|| running.decide(black_box(&reply)))
    });
    c.bench_function("saga/apply_started", |b| {
        b.iter_batched_ref(
            Saga::default,
            |s| s.apply(black_box(&first)),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn codec(c: &mut Criterion) {
    let command = CommandEnvelope::new(InventoryCommand::Reserve {
        product_id: ProductId::new(),
        order_id: OrderId::new(),
        quantity: 2,
    })
    .reply_to("orders.saga.replies");
    let order_id = OrderId::new();
    let event = Envelope {
        event_id: EventId::new(),
        stream: StreamId::new(StreamKind::Order, Uuid::new_v4()),
        sequence: 1,
        recorded_at: chrono::Utc::now(),
        correlation_id: CorrelationId::new(),
        causation_id: command.command_id,
        schema_version: OrderEvent::SCHEMA_VERSION,
        payload: OrderEvent::Placed {
            order_id,
            user_id: UserId::new(),
            lines: lines(&[ProductId::new(), ProductId::new(), ProductId::new()]),
        },
    };
    for format in [Format::Bincode, Format::Json] {
        let name = match format {
            Format::Bincode => "bincode",
            Format::Json => "json",
        };
        let command_bytes = encode(format, &command).expect("encode command");
        let event_bytes = encode_event(format, &event).expect("encode event");
        let back: CommandEnvelope<InventoryCommand> = decode(&command_bytes).expect("decode");
        assert_eq!(back, command);
        assert_eq!(
            decode_event::<OrderEvent>(&event_bytes).expect("decode"),
            event
        );
        c.bench_function(&format!("codec/{name}/encode_command"), |b| {
            b.iter(|| encode(format, black_box(&command)))
        });
        c.bench_function(&format!("codec/{name}/decode_command"), |b| {
            b.iter(|| decode::<CommandEnvelope<InventoryCommand>>(black_box(&command_bytes)))
        });
        c.bench_function(&format!("codec/{name}/encode_event"), |b| {
            b.iter(|| encode_event(format, black_box(&event)))
        });
        c.bench_function(&format!("codec/{name}/decode_event"), |b| {
            b.iter(|| decode_event::<OrderEvent>(black_box(&event_bytes)))
        });
    }
}

criterion_group!(benches, users, products, orders, sagas, codec);
criterion_main!(benches);
