//! The expected values of the golden wire fixtures (see `golden_wire.rs`):
//! the shared ids and times, and the events. Commands, replies and the bare
//! enums are in `commands.rs`.
//!
//! Every value is deterministic: ids come from fixed `u128`s and times are
//! fixed, so a fixture's bytes never depend on when or where it was written.
//! Envelope metadata is the same for every case of a list, so the order of a
//! list does not matter.
//!
//! Each `*_name` function is an exhaustive `match` without a wildcard arm: a
//! new variant does not compile until it has a fixture name, and the
//! `every_variant_has_a_fixture` test fails until it also has a value.
//!
//! The event lists take the schema version whose fixtures they describe.
//! When an event type's `SCHEMA_VERSION` is bumped, keep the `1 =>` arm,
//! changed only to what the upcast now produces (old fixtures decode, through
//! the upcast, into today's type), and add an arm for the new version.

use crate::commands::saga_steps;
use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use ordersaga_events::inventory::InventoryEvent;
use ordersaga_events::order::{OrderEvent, OrderLine, OrderStatus, PricedLine};
use ordersaga_events::saga::{SagaEvent, SagaPolicy, SagaStep};
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, OrderId, ProductId, SagaId, StreamId,
    StreamKind, UserId, Versioned,
};
use uuid::Uuid;

/// A named expected value: the name is the fixture's file stem.
pub type Named<T> = (&'static str, T);

pub const USER: UserId = UserId::from_uuid(Uuid::from_u128(0x1c887578_cc70_481f_ac57_25ec3243f0c3));
pub const ORDER: OrderId =
    OrderId::from_uuid(Uuid::from_u128(0x0e4d3c2b_1a09_4f8e_9d7c_6b5a49382716));
pub const SAGA: SagaId = SagaId::from_uuid(ORDER.as_uuid());
pub const WIDGET: ProductId =
    ProductId::from_uuid(Uuid::from_u128(0x5a1e0000_0000_4000_8000_00000000000a));
pub const GADGET: ProductId =
    ProductId::from_uuid(Uuid::from_u128(0x5a1e0000_0000_4000_8000_00000000000b));
const EVENT: EventId = EventId::from_uuid(Uuid::from_u128(0xe0e0e0e0_0000_4000_8000_000000000001));
pub const COMMAND: CommandId =
    CommandId::from_uuid(Uuid::from_u128(0xc0c0c0c0_0000_4000_8000_000000000002));
pub const CORRELATION: CorrelationId =
    CorrelationId::from_uuid(Uuid::from_u128(0xcccccccc_0000_4000_8000_000000000003));

/// A fixed instant with nanoseconds (as `Utc::now()` has), plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    let base = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    base.with_nanosecond(123_456_789).unwrap() + Duration::seconds(seconds)
}

pub fn lines() -> Vec<OrderLine> {
    vec![
        OrderLine {
            product_id: WIDGET,
            quantity: 2,
        },
        OrderLine {
            product_id: GADGET,
            quantity: 1,
        },
    ]
}

pub fn priced_lines() -> Vec<PricedLine> {
    vec![
        PricedLine {
            product_id: WIDGET,
            quantity: 2,
            unit_price: Cents(2500),
        },
        PricedLine {
            product_id: GADGET,
            quantity: 1,
            unit_price: Cents(4000),
        },
    ]
}

/// Fixed, not `SagaPolicy::default()`: the default may change, a fixture may not.
pub const POLICY: SagaPolicy = SagaPolicy {
    step_timeout_ms: 10_000,
    max_attempts: 4,
};

fn no_values(type_name: &str, version: u16) -> ! {
    panic!(
        "no expected {type_name} values for schema version {version}: add a `{version} =>` arm \
         in tests/golden_wire/values.rs and keep every older arm and its fixtures"
    )
}

fn envelopes<E: Versioned>(
    kind: StreamKind,
    id: Uuid,
    payloads: Vec<E>,
    name: fn(&E) -> &'static str,
) -> Vec<Named<Envelope<E>>> {
    let envelope = |payload| Envelope {
        event_id: EVENT,
        stream: StreamId::new(kind, id),
        sequence: 42,
        recorded_at: at(0),
        correlation_id: CORRELATION,
        causation_id: COMMAND,
        // Decoding upcasts to, and reports, the current version.
        schema_version: E::SCHEMA_VERSION,
        payload,
    };
    payloads
        .into_iter()
        .map(|p| (name(&p), envelope(p)))
        .collect()
}

pub fn user_event_name(e: &UserEvent) -> &'static str {
    match e {
        UserEvent::Registered { .. } => "registered",
        UserEvent::Deposited { .. } => "deposited",
        UserEvent::Charged { .. } => "charged",
        UserEvent::Refunded { .. } => "refunded",
        UserEvent::Deactivated => "deactivated",
        UserEvent::Deleted { .. } => "deleted",
    }
}

pub fn user_events(version: u16) -> Vec<Named<Envelope<UserEvent>>> {
    let payloads = match version {
        // Version 1 `Registered` carried a password hash (a made-up PHC
        // string in its fixture); the upcast drops it, and version 2 never
        // had it: credentials stay in the users store.
        1 | 2 => vec![
            UserEvent::Registered {
                user_id: USER,
                email: "ada@example.com".into(),
                username: "Ada ✓".into(),
            },
            UserEvent::Deposited {
                amount: Cents(10_000),
            },
            UserEvent::Charged {
                order_id: ORDER,
                amount: Cents(9_000),
            },
            UserEvent::Refunded {
                order_id: ORDER,
                amount: Cents(9_000),
            },
            UserEvent::Deactivated,
            UserEvent::Deleted {
                email: "ada@example.com".into(),
            },
        ],
        other => no_values("UserEvent", other),
    };
    envelopes(StreamKind::User, USER.as_uuid(), payloads, user_event_name)
}

pub fn inventory_event_name(e: &InventoryEvent) -> &'static str {
    match e {
        InventoryEvent::ProductAdded { .. } => "product_added",
        InventoryEvent::Restocked { .. } => "restocked",
        InventoryEvent::Reserved { .. } => "reserved",
        InventoryEvent::Released { .. } => "released",
        InventoryEvent::Committed { .. } => "committed",
        InventoryEvent::Returned { .. } => "returned",
    }
}

pub fn inventory_events(version: u16) -> Vec<Named<Envelope<InventoryEvent>>> {
    let payloads = match version {
        1 => vec![
            InventoryEvent::ProductAdded {
                product_id: WIDGET,
                sku: "WID-001".into(),
                name: "Widget".into(),
                unit_price: Cents(2500),
                stock: 10,
            },
            InventoryEvent::Restocked { quantity: 5 },
            InventoryEvent::Reserved {
                order_id: ORDER,
                quantity: 2,
                unit_price: Cents(2500),
            },
            InventoryEvent::Released {
                order_id: ORDER,
                quantity: 2,
            },
            InventoryEvent::Committed {
                order_id: ORDER,
                quantity: 2,
            },
            InventoryEvent::Returned {
                order_id: ORDER,
                quantity: 2,
            },
        ],
        other => no_values("InventoryEvent", other),
    };
    let id = WIDGET.as_uuid();
    envelopes(StreamKind::Product, id, payloads, inventory_event_name)
}

pub fn order_event_name(e: &OrderEvent) -> &'static str {
    match e {
        OrderEvent::Placed { .. } => "placed",
        OrderEvent::Priced { .. } => "priced",
        OrderEvent::Confirmed => "confirmed",
        OrderEvent::Cancelled { .. } => "cancelled",
        OrderEvent::Shipped => "shipped",
        OrderEvent::Delivered => "delivered",
    }
}

pub fn order_events(version: u16) -> Vec<Named<Envelope<OrderEvent>>> {
    let payloads = match version {
        1 => vec![
            OrderEvent::Placed {
                order_id: ORDER,
                user_id: USER,
                lines: lines(),
            },
            OrderEvent::Priced {
                lines: priced_lines(),
                total: Cents(9_000),
            },
            OrderEvent::Confirmed,
            OrderEvent::Cancelled {
                reason: "cancelled_by_user".into(),
                previous: OrderStatus::Confirmed,
            },
            OrderEvent::Shipped,
            OrderEvent::Delivered,
        ],
        other => no_values("OrderEvent", other),
    };
    envelopes(
        StreamKind::Order,
        ORDER.as_uuid(),
        payloads,
        order_event_name,
    )
}

pub fn saga_event_name(e: &SagaEvent) -> &'static str {
    match e {
        SagaEvent::Started { .. } => "started",
        SagaEvent::LineReserved { .. } => "line_reserved",
        SagaEvent::LineRejected { .. } => "line_rejected",
        SagaEvent::Priced { .. } => "priced",
        SagaEvent::OrderPriced => "order_priced",
        SagaEvent::Charged { .. } => "charged",
        SagaEvent::ChargeDeclined { .. } => "charge_declined",
        SagaEvent::ConfirmRequested { .. } => "confirm_requested",
        SagaEvent::OrderConfirmed { .. } => "order_confirmed",
        SagaEvent::LineCommitted { .. } => "line_committed",
        SagaEvent::Completed => "completed",
        SagaEvent::CompensationStarted { .. } => "compensation_started",
        SagaEvent::CompensationDone { .. } => "compensation_done",
        SagaEvent::LateReplyCompensated { .. } => "late_reply_compensated",
        SagaEvent::StepRetried { .. } => "step_retried",
        SagaEvent::Aborted { .. } => "aborted",
        SagaEvent::Stuck { .. } => "stuck",
        SagaEvent::RetryRequested { .. } => "retry_requested",
    }
}

pub fn saga_events(version: u16) -> Vec<Named<Envelope<SagaEvent>>> {
    let payloads = match version {
        1 => vec![
            SagaEvent::Started {
                order_id: ORDER,
                user_id: USER,
                lines: lines(),
                policy: POLICY,
                deadline: at(10),
            },
            SagaEvent::LineReserved {
                product_id: WIDGET,
                quantity: 2,
                unit_price: Cents(2500),
            },
            SagaEvent::LineRejected {
                product_id: GADGET,
                code: "insufficient_stock".into(),
            },
            SagaEvent::Priced {
                lines: priced_lines(),
                total: Cents(9_000),
                deadline: at(20),
            },
            SagaEvent::OrderPriced,
            SagaEvent::Charged {
                amount: Cents(9_000),
            },
            SagaEvent::ChargeDeclined {
                code: "insufficient_funds".into(),
            },
            SagaEvent::ConfirmRequested { deadline: at(30) },
            SagaEvent::OrderConfirmed { deadline: at(40) },
            SagaEvent::LineCommitted { product_id: WIDGET },
            SagaEvent::Completed,
            SagaEvent::CompensationStarted {
                reason: "step_timeout".into(),
                // Every step, so that every `SagaStep` variant is on the wire.
                steps: saga_steps().into_iter().map(|(_, s)| s).collect(),
                deadline: at(50),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Release(WIDGET),
            },
            SagaEvent::LateReplyCompensated {
                late: SagaStep::Reserve(GADGET),
                compensation: SagaStep::ReleaseLate(GADGET),
            },
            SagaEvent::StepRetried {
                attempt: 2,
                deadline: at(60),
            },
            SagaEvent::Aborted {
                reason: "insufficient_funds".into(),
            },
            SagaEvent::Stuck {
                reason: "step_timeout".into(),
            },
            SagaEvent::RetryRequested { deadline: at(70) },
        ],
        other => no_values("SagaEvent", other),
    };
    envelopes(StreamKind::Saga, SAGA.as_uuid(), payloads, saga_event_name)
}
