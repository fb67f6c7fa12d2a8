//! The saga's step budget: a downstream outage shorter than the budget
//! delays an order, and the order completes when the replies come; only an
//! outage longer than the budget makes the saga compensate.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ordersaga_actors::aggregates::Saga;
use ordersaga_actors::Aggregate;
use ordersaga_events::order::OrderLine;
use ordersaga_events::saga::{
    saga_command_id, saga_of, SagaCommand, SagaPhase, SagaPolicy, SagaStep,
};
use ordersaga_events::{
    Cents, CommandResult, CorrelationId, OrderId, Outcome, ProductId, Reply, StreamId, StreamKind,
    UserId,
};
use uuid::Uuid;

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(3))
}

fn product() -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(101))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn run(saga: &mut Saga, command: SagaCommand) {
    let events = saga.decide(&command).expect("the saga accepts the command");
    for event in &events {
        saga.apply(event);
    }
}

/// A saga that started at `t0`, then ticked at every deadline until `until`
/// (inventory is down and never answers meanwhile).
fn waited_until(policy: SagaPolicy, until: DateTime<Utc>) -> Saga {
    let mut saga = Saga::default();
    run(
        &mut saga,
        SagaCommand::Start {
            saga_id: saga_of(order_id()),
            order_id: order_id(),
            user_id: UserId::from_uuid(Uuid::from_u128(4)),
            lines: vec![OrderLine {
                product_id: product(),
                quantity: 1,
            }],
            policy,
            now: t0(),
        },
    );
    while let Some(deadline) = saga.deadline() {
        if deadline > until || saga.phase() != SagaPhase::Reserving {
            break;
        }
        run(
            &mut saga,
            SagaCommand::Tick {
                saga_id: saga_of(order_id()),
                now: deadline,
            },
        );
    }
    saga
}

fn reservation_reply(now: DateTime<Utc>) -> SagaCommand {
    let step = SagaStep::Reserve(product());
    SagaCommand::Reply {
        saga_id: saga_of(order_id()),
        reply: Reply {
            command_id: saga_command_id(saga_of(order_id()), &step),
            correlation_id: CorrelationId::from_uuid(saga_of(order_id()).as_uuid()),
            stream: StreamId::new(StreamKind::Product, product().as_uuid()),
            outcome: Outcome::Accepted { sequences: vec![1] },
            result: Some(CommandResult::Reserved {
                quantity: 1,
                unit_price: Cents(500),
            }),
        },
        now,
    }
}

#[test]
fn given_the_default_policy_when_inventory_is_down_for_a_minute_then_the_order_goes_on() {
    let policy = SagaPolicy::default();
    let outage = t0() + TimeDelta::seconds(60);
    let mut saga = waited_until(policy, outage);
    assert_eq!(
        saga.phase(),
        SagaPhase::Reserving,
        "still waiting, not compensating"
    );
    assert!(saga.attempt() > 1, "the reservation was resent meanwhile");
    run(&mut saga, reservation_reply(outage));
    assert_eq!(
        saga.phase(),
        SagaPhase::Paying,
        "the late reply moves the order on"
    );
}

#[test]
fn given_a_budget_when_the_outage_outlasts_it_then_the_saga_compensates() {
    let policy = SagaPolicy::with_budget(1_000, 20_000);
    let budget = TimeDelta::milliseconds(policy.budget_ms() as i64);
    let just_inside = waited_until(policy, t0() + budget - TimeDelta::milliseconds(1));
    assert_eq!(just_inside.phase(), SagaPhase::Reserving);
    let past = waited_until(policy, t0() + budget);
    assert_eq!(past.phase(), SagaPhase::Compensating);
    assert_eq!(past.reason(), Some("step_timeout"));
}
