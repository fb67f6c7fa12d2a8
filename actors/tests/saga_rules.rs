//! Given/when/then tests for every rule of the order saga, and for the
//! commands it sends.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ordersaga_actors::aggregates::{LineReservation, Saga};
use ordersaga_actors::journal::OutboxRecord;
use ordersaga_actors::service::outbox_record;
use ordersaga_actors::testing::AggregateTest;
use ordersaga_actors::Aggregate;
use ordersaga_events::codec::{self, Format};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderLine, OrderStatus, PricedLine};
use ordersaga_events::saga::{
    saga_command_id, saga_of, SagaCommand, SagaEvent, SagaPhase, SagaPolicy, SagaStep,
};
use ordersaga_events::topics::{
    replies_topic, INVENTORY_COMMANDS, ORDERS_COMMANDS, SAGA_REPLIES, USERS_COMMANDS,
};
use ordersaga_events::user::UserCommand;
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, CommandResult, CorrelationId, OrderId, Outcome, ProductId,
    Rejection, Reply, SagaId, StreamId, StreamKind, UserId,
};
use uuid::Uuid;

// ---------------------------------------------------------------- fixtures

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(3))
}

fn user_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(4))
}

fn saga_id() -> SagaId {
    saga_of(order_id())
}

fn product(n: u128) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(100 + n))
}

fn p1() -> ProductId {
    product(1)
}

fn p2() -> ProductId {
    product(2)
}

fn policy() -> SagaPolicy {
    SagaPolicy {
        step_timeout_ms: 1_000,
        max_attempts: 3,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

/// `ms` milliseconds after `t0`.
fn at(ms: i64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(ms)
}

/// When the replies of the tests arrive.
fn now() -> DateTime<Utc> {
    at(100)
}

/// The first deadline of a phase entered at `now()`.
fn next_deadline() -> DateTime<Utc> {
    at(1_100)
}

/// Two units of p1 at 2.50 and one of p2 at 10.00: 15.00.
fn lines() -> Vec<OrderLine> {
    vec![
        OrderLine {
            product_id: p1(),
            quantity: 2,
        },
        OrderLine {
            product_id: p2(),
            quantity: 1,
        },
    ]
}

fn unit_price(p: ProductId) -> Cents {
    if p == p1() {
        Cents(250)
    } else {
        Cents(1_000)
    }
}

fn quantity(p: ProductId) -> u64 {
    lines()
        .iter()
        .find(|line| line.product_id == p)
        .map_or(1, |line| line.quantity)
}

fn priced_lines() -> Vec<PricedLine> {
    lines()
        .iter()
        .map(|line| PricedLine {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price: unit_price(line.product_id),
        })
        .collect()
}

fn total() -> Cents {
    Cents(1_500)
}

// ---------------------------------------------------------------- commands

fn start_with(lines: Vec<OrderLine>) -> SagaCommand {
    SagaCommand::Start {
        saga_id: saga_id(),
        order_id: order_id(),
        user_id: user_id(),
        lines,
        policy: policy(),
        now: t0(),
    }
}

fn start() -> SagaCommand {
    start_with(lines())
}

fn on(reply: Reply) -> SagaCommand {
    SagaCommand::Reply {
        saga_id: saga_id(),
        reply,
        now: now(),
    }
}

fn tick(now: DateTime<Utc>) -> SagaCommand {
    SagaCommand::Tick {
        saga_id: saga_id(),
        now,
    }
}

fn retry(now: DateTime<Utc>) -> SagaCommand {
    SagaCommand::Retry {
        saga_id: saga_id(),
        now,
    }
}

fn user_cancelled(previous: OrderStatus) -> SagaCommand {
    SagaCommand::OrderCancelled {
        saga_id: saga_id(),
        previous,
        now: now(),
    }
}

// ---------------------------------------------------------------- replies

fn stream_of(step: SagaStep) -> StreamId {
    match step {
        SagaStep::Reserve(p)
        | SagaStep::Commit(p)
        | SagaStep::Release(p)
        | SagaStep::Return(p)
        | SagaStep::ReleaseLate(p) => StreamId::new(StreamKind::Product, p.as_uuid()),
        SagaStep::Price | SagaStep::Confirm | SagaStep::Cancel => {
            StreamId::new(StreamKind::Order, order_id().as_uuid())
        }
        SagaStep::Charge | SagaStep::Refund | SagaStep::RefundLate => {
            StreamId::new(StreamKind::User, user_id().as_uuid())
        }
    }
}

fn reply(step: SagaStep, outcome: Outcome, result: Option<CommandResult>) -> Reply {
    Reply {
        command_id: saga_command_id(saga_id(), &step),
        correlation_id: CorrelationId::from_uuid(saga_id().as_uuid()),
        stream: stream_of(step),
        outcome,
        result,
    }
}

fn accepted(step: SagaStep) -> Reply {
    reply(step, Outcome::Accepted { sequences: vec![1] }, None)
}

fn rejected(step: SagaStep, code: &str) -> Reply {
    reply(
        step,
        Outcome::Rejected(Rejection::new(code, "rejected")),
        None,
    )
}

fn reservation_accepted(p: ProductId) -> Reply {
    reply(
        SagaStep::Reserve(p),
        Outcome::Accepted { sequences: vec![1] },
        Some(CommandResult::Reserved {
            quantity: quantity(p),
            unit_price: unit_price(p),
        }),
    )
}

fn charge_accepted(amount: Cents) -> Reply {
    reply(
        SagaStep::Charge,
        Outcome::Accepted { sequences: vec![1] },
        Some(CommandResult::Charged { amount }),
    )
}

// ---------------------------------------------------------------- events

fn started() -> SagaEvent {
    SagaEvent::Started {
        order_id: order_id(),
        user_id: user_id(),
        lines: lines(),
        policy: policy(),
        deadline: at(1_000),
    }
}

fn line_reserved(p: ProductId) -> SagaEvent {
    SagaEvent::LineReserved {
        product_id: p,
        quantity: quantity(p),
        unit_price: unit_price(p),
    }
}

fn priced() -> SagaEvent {
    SagaEvent::Priced {
        lines: priced_lines(),
        total: total(),
        deadline: next_deadline(),
    }
}

fn compensation_started(reason: &str, steps: Vec<SagaStep>) -> SagaEvent {
    SagaEvent::CompensationStarted {
        reason: reason.to_owned(),
        steps,
        deadline: next_deadline(),
    }
}

fn release_all() -> Vec<SagaStep> {
    vec![SagaStep::Release(p1()), SagaStep::Release(p2())]
}

fn release_all_and(more: &[SagaStep]) -> Vec<SagaStep> {
    let mut steps = release_all();
    steps.extend_from_slice(more);
    steps
}

fn refund_and_return_all() -> Vec<SagaStep> {
    vec![
        SagaStep::Refund,
        SagaStep::Return(p1()),
        SagaStep::Return(p2()),
    ]
}

/// The events that bring a saga to the start of `phase` on the success path
/// (`Completed` included).
fn history(phase: SagaPhase) -> Vec<SagaEvent> {
    let mut events = vec![started()];
    if phase == SagaPhase::Reserving {
        return events;
    }
    events.extend([line_reserved(p1()), line_reserved(p2()), priced()]);
    if phase == SagaPhase::Paying {
        return events;
    }
    events.extend([
        SagaEvent::OrderPriced,
        SagaEvent::Charged { amount: total() },
        SagaEvent::ConfirmRequested {
            deadline: next_deadline(),
        },
    ]);
    if phase == SagaPhase::Confirming {
        return events;
    }
    events.push(SagaEvent::OrderConfirmed {
        deadline: next_deadline(),
    });
    if phase == SagaPhase::Committing {
        return events;
    }
    events.extend([
        SagaEvent::LineCommitted { product_id: p1() },
        SagaEvent::LineCommitted { product_id: p2() },
        SagaEvent::Completed,
    ]);
    events
}

fn with(mut events: Vec<SagaEvent>, more: impl IntoIterator<Item = SagaEvent>) -> Vec<SagaEvent> {
    events.extend(more);
    events
}

/// A saga compensating after p2 was out of stock.
fn compensating() -> Vec<SagaEvent> {
    with(
        history(SagaPhase::Reserving),
        [
            line_reserved(p1()),
            SagaEvent::LineRejected {
                product_id: p2(),
                code: "insufficient_stock".into(),
            },
            compensation_started("insufficient_stock", release_all_and(&[SagaStep::Cancel])),
        ],
    )
}

/// A saga that timed out reserving (p2 never answered) and compensates.
fn compensating_after_timeout() -> Vec<SagaEvent> {
    with(
        history(SagaPhase::Reserving),
        [
            line_reserved(p1()),
            compensation_started("step_timeout", release_all_and(&[SagaStep::Cancel])),
        ],
    )
}

/// A saga whose compensation ran out of attempts.
fn stuck_compensating() -> Vec<SagaEvent> {
    with(
        compensating(),
        [SagaEvent::Stuck {
            reason: "compensation_timeout".into(),
        }],
    )
}

/// A saga whose commits ran out of attempts.
fn stuck_committing() -> Vec<SagaEvent> {
    with(
        history(SagaPhase::Committing),
        [SagaEvent::Stuck {
            reason: "commit_timeout".into(),
        }],
    )
}

fn state(events: &[SagaEvent]) -> Saga {
    Saga::from_events(events)
}

// ---------------------------------------------------------------- identity

#[test]
fn every_saga_command_addresses_its_saga() {
    assert_eq!(Saga::aggregate_id(&start()), saga_id().as_uuid());
    assert_eq!(Saga::aggregate_id(&tick(t0())), saga_id().as_uuid());
}

// ---------------------------------------------------------------- start

#[test]
fn start_reserves_every_line() {
    AggregateTest::<Saga>::given_no_previous_events()
        .when(start())
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![started()]));
            assert_eq!(state.phase(), SagaPhase::Reserving);
            assert_eq!(state.saga_id(), Some(saga_id()));
            assert_eq!(state.order_id(), Some(order_id()));
            assert_eq!(state.user_id(), Some(user_id()));
            assert_eq!(state.lines(), lines().as_slice());
            assert_eq!(state.policy(), policy());
            assert_eq!(state.attempt(), 1);
            assert_eq!(state.deadline(), Some(at(1_000)));
            assert_eq!(
                state.outstanding(),
                vec![SagaStep::Reserve(p1()), SagaStep::Reserve(p2())]
            );
            assert_eq!(state.reservation(p1()), Some(&LineReservation::Pending));
            assert!(!state.is_terminal());
        });
}

#[test]
fn start_twice_is_rejected() {
    AggregateTest::<Saga>::given(vec![started()])
        .when(start())
        .then_expect_rejection("already_started");
}

#[test]
fn start_without_lines_is_rejected() {
    AggregateTest::<Saga>::given_no_previous_events()
        .when(start_with(vec![]))
        .then_expect_rejection("empty_order");
}

#[test]
fn start_with_an_id_other_than_the_orders_saga_id_is_rejected() {
    AggregateTest::<Saga>::given_no_previous_events()
        .when(SagaCommand::Start {
            saga_id: SagaId::from_uuid(Uuid::from_u128(99)),
            order_id: order_id(),
            user_id: user_id(),
            lines: lines(),
            policy: policy(),
            now: t0(),
        })
        .then_expect_rejection("unknown_saga");
}

#[test]
fn every_other_command_on_a_saga_not_started_is_rejected() {
    for command in [
        on(reservation_accepted(p1())),
        user_cancelled(OrderStatus::Pending),
        tick(at(5_000)),
        retry(at(5_000)),
    ] {
        AggregateTest::<Saga>::given_no_previous_events()
            .when(command)
            .then_expect_rejection("unknown_saga");
    }
}

#[test]
fn a_command_for_another_saga_is_rejected() {
    AggregateTest::<Saga>::given(vec![started()])
        .when(SagaCommand::Tick {
            saga_id: SagaId::from_uuid(Uuid::from_u128(99)),
            now: at(5_000),
        })
        .then_expect_rejection("unknown_saga");
}

// ---------------------------------------------------------------- success path

#[test]
fn a_reservation_is_recorded() {
    AggregateTest::<Saga>::given(history(SagaPhase::Reserving))
        .when(on(reservation_accepted(p1())))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![line_reserved(p1())]));
            assert_eq!(state.phase(), SagaPhase::Reserving);
            assert_eq!(state.outstanding(), vec![SagaStep::Reserve(p2())]);
            assert_eq!(
                state.reservation(p1()),
                Some(&LineReservation::Reserved {
                    quantity: 2,
                    unit_price: Cents(250)
                })
            );
        });
}

#[test]
fn the_last_reservation_prices_the_order_and_charges_the_user() {
    AggregateTest::<Saga>::given(with(history(SagaPhase::Reserving), [line_reserved(p1())]))
        .when(on(reservation_accepted(p2())))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![line_reserved(p2()), priced()]));
            assert_eq!(state.phase(), SagaPhase::Paying);
            assert_eq!(state.total(), Some(total()));
            assert_eq!(state.priced_lines(), priced_lines().as_slice());
            assert_eq!(state.attempt(), 1);
            assert_eq!(state.deadline(), Some(next_deadline()));
            assert_eq!(state.outstanding(), vec![SagaStep::Price, SagaStep::Charge]);
        });
}

#[test]
fn priced_then_charged_requests_the_confirmation() {
    AggregateTest::<Saga>::given(history(SagaPhase::Paying))
        .when(on(accepted(SagaStep::Price)))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![SagaEvent::OrderPriced]));
            assert!(state.is_order_priced());
            assert_eq!(state.outstanding(), vec![SagaStep::Charge]);
        });
    AggregateTest::<Saga>::given(with(history(SagaPhase::Paying), [SagaEvent::OrderPriced]))
        .when(on(charge_accepted(total())))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![
                    SagaEvent::Charged { amount: total() },
                    SagaEvent::ConfirmRequested {
                        deadline: next_deadline()
                    },
                ])
            );
            assert_eq!(state.phase(), SagaPhase::Confirming);
            assert_eq!(state.charged(), Some(total()));
            assert_eq!(state.outstanding(), vec![SagaStep::Confirm]);
        });
}

#[test]
fn charged_then_priced_requests_the_confirmation() {
    AggregateTest::<Saga>::given(history(SagaPhase::Paying))
        .when(on(charge_accepted(total())))
        .then_expect_events(vec![SagaEvent::Charged { amount: total() }]);
    AggregateTest::<Saga>::given(with(
        history(SagaPhase::Paying),
        [SagaEvent::Charged { amount: total() }],
    ))
    .when(on(accepted(SagaStep::Price)))
    .then_expect_events(vec![
        SagaEvent::OrderPriced,
        SagaEvent::ConfirmRequested {
            deadline: next_deadline(),
        },
    ]);
}

#[test]
fn a_charge_reply_without_result_counts_the_total() {
    AggregateTest::<Saga>::given(history(SagaPhase::Paying))
        .when(on(accepted(SagaStep::Charge)))
        .then_expect_events(vec![SagaEvent::Charged { amount: total() }]);
}

#[test]
fn the_confirmation_commits_every_line() {
    AggregateTest::<Saga>::given(history(SagaPhase::Confirming))
        .when(on(accepted(SagaStep::Confirm)))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![SagaEvent::OrderConfirmed {
                    deadline: next_deadline()
                }])
            );
            assert_eq!(state.phase(), SagaPhase::Committing);
            assert!(state.is_order_confirmed());
            assert_eq!(
                state.outstanding(),
                vec![SagaStep::Commit(p1()), SagaStep::Commit(p2())]
            );
        });
}

#[test]
fn the_last_commit_completes_the_saga() {
    AggregateTest::<Saga>::given(history(SagaPhase::Committing))
        .when(on(accepted(SagaStep::Commit(p2()))))
        .then_expect_events(vec![SagaEvent::LineCommitted { product_id: p2() }]);
    AggregateTest::<Saga>::given(with(
        history(SagaPhase::Committing),
        [SagaEvent::LineCommitted { product_id: p2() }],
    ))
    .when(on(accepted(SagaStep::Commit(p1()))))
    .then_inspect(|result, state| {
        assert_eq!(
            result,
            &Ok(vec![
                SagaEvent::LineCommitted { product_id: p1() },
                SagaEvent::Completed
            ])
        );
        assert_eq!(state.phase(), SagaPhase::Completed);
        assert!(state.is_terminal());
        assert!(state.outstanding().is_empty());
        assert_eq!(state.committed().len(), 2);
    });
}

#[test]
fn a_rejected_commit_leaves_the_saga_stuck() {
    AggregateTest::<Saga>::given(history(SagaPhase::Committing))
        .when(on(rejected(SagaStep::Commit(p1()), "not_reserved")))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![SagaEvent::Stuck {
                    reason: "commit_not_reserved".into()
                }])
            );
            assert_eq!(state.phase(), SagaPhase::Stuck);
            assert_eq!(state.stuck_reason(), Some("commit_not_reserved"));
        });
}

// ---------------------------------------------------------------- reservation failures

#[test]
fn out_of_stock_on_one_of_several_lines_releases_every_line_and_cancels() {
    let three = vec![
        OrderLine {
            product_id: p1(),
            quantity: 2,
        },
        OrderLine {
            product_id: p2(),
            quantity: 1,
        },
        OrderLine {
            product_id: product(3),
            quantity: 5,
        },
    ];
    let given = vec![
        SagaEvent::Started {
            order_id: order_id(),
            user_id: user_id(),
            lines: three,
            policy: policy(),
            deadline: at(1_000),
        },
        line_reserved(p1()),
    ];
    let mut steps = release_all();
    steps.extend([SagaStep::Release(product(3)), SagaStep::Cancel]);
    // p2 answers: not yet every line.
    AggregateTest::<Saga>::given(given.clone())
        .when(on(rejected(SagaStep::Reserve(p2()), "insufficient_stock")))
        .then_expect_events(vec![SagaEvent::LineRejected {
            product_id: p2(),
            code: "insufficient_stock".into(),
        }]);
    // p3 answers last: compensate every line, with the first rejection.
    let mut given = given;
    given.push(SagaEvent::LineRejected {
        product_id: p2(),
        code: "insufficient_stock".into(),
    });
    AggregateTest::<Saga>::given(given.clone())
        .when(on(reply(
            SagaStep::Reserve(product(3)),
            Outcome::Accepted { sequences: vec![1] },
            Some(CommandResult::Reserved {
                quantity: 5,
                unit_price: Cents(10),
            }),
        )))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![
                    SagaEvent::LineReserved {
                        product_id: product(3),
                        quantity: 5,
                        unit_price: Cents(10),
                    },
                    compensation_started("insufficient_stock", steps.clone()),
                ])
            );
            assert_eq!(state.phase(), SagaPhase::Compensating);
            assert_eq!(state.reason(), Some("insufficient_stock"));
            assert_eq!(state.outstanding(), steps);
        });
}

#[test]
fn the_first_rejection_gives_the_reason() {
    AggregateTest::<Saga>::given(with(
        history(SagaPhase::Reserving),
        [SagaEvent::LineRejected {
            product_id: p2(),
            code: "unknown_product".into(),
        }],
    ))
    .when(on(rejected(SagaStep::Reserve(p1()), "insufficient_stock")))
    .then_expect_events(vec![
        SagaEvent::LineRejected {
            product_id: p1(),
            code: "insufficient_stock".into(),
        },
        compensation_started("unknown_product", release_all_and(&[SagaStep::Cancel])),
    ]);
}

#[test]
fn an_accepted_reservation_without_result_is_a_rejection() {
    AggregateTest::<Saga>::given(history(SagaPhase::Reserving))
        .when(on(accepted(SagaStep::Reserve(p1()))))
        .then_expect_events(vec![SagaEvent::LineRejected {
            product_id: p1(),
            code: "missing_result".into(),
        }]);
}

#[test]
fn a_total_that_overflows_compensates() {
    AggregateTest::<Saga>::given(with(history(SagaPhase::Reserving), [line_reserved(p1())]))
        .when(on(reply(
            SagaStep::Reserve(p2()),
            Outcome::Accepted { sequences: vec![1] },
            Some(CommandResult::Reserved {
                quantity: 1,
                unit_price: Cents(u64::MAX),
            }),
        )))
        .then_expect_events(vec![
            SagaEvent::LineReserved {
                product_id: p2(),
                quantity: 1,
                unit_price: Cents(u64::MAX),
            },
            compensation_started("amount_overflow", release_all_and(&[SagaStep::Cancel])),
        ]);
}

// ---------------------------------------------------------------- paying failures

#[test]
fn insufficient_funds_releases_and_cancels_without_refund() {
    AggregateTest::<Saga>::given(history(SagaPhase::Paying))
        .when(on(rejected(SagaStep::Charge, "insufficient_funds")))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![
                    SagaEvent::ChargeDeclined {
                        code: "insufficient_funds".into()
                    },
                    compensation_started(
                        "insufficient_funds",
                        release_all_and(&[SagaStep::Cancel])
                    ),
                ])
            );
            assert_eq!(state.charge_declined(), Some("insufficient_funds"));
            assert_eq!(state.phase(), SagaPhase::Compensating);
        });
}

#[test]
fn an_unknown_user_releases_and_cancels() {
    AggregateTest::<Saga>::given(with(history(SagaPhase::Paying), [SagaEvent::OrderPriced]))
        .when(on(rejected(SagaStep::Charge, "unknown_user")))
        .then_expect_events(vec![
            SagaEvent::ChargeDeclined {
                code: "unknown_user".into(),
            },
            compensation_started("unknown_user", release_all_and(&[SagaStep::Cancel])),
        ]);
}

#[test]
fn a_rejected_price_releases_refunds_and_cancels() {
    AggregateTest::<Saga>::given(history(SagaPhase::Paying))
        .when(on(rejected(SagaStep::Price, "lines_mismatch")))
        .then_expect_events(vec![compensation_started(
            "order_lines_mismatch",
            release_all_and(&[SagaStep::Refund, SagaStep::Cancel]),
        )]);
}

// ---------------------------------------------------------------- confirming failures

#[test]
fn a_rejected_confirmation_after_a_user_cancel_compensates() {
    let steps = release_all_and(&[SagaStep::Refund, SagaStep::Cancel]);
    AggregateTest::<Saga>::given(history(SagaPhase::Confirming))
        .when(on(rejected(SagaStep::Confirm, "invalid_transition")))
        .then_expect_events(vec![compensation_started(
            "order_invalid_transition",
            steps.clone(),
        )]);
    // The cancel is refused (the order is already cancelled): done all the same.
    let mut given = with(
        history(SagaPhase::Confirming),
        [compensation_started("order_invalid_transition", steps)],
    );
    given.extend(
        release_all_and(&[SagaStep::Refund])
            .into_iter()
            .map(|step| SagaEvent::CompensationDone { step }),
    );
    AggregateTest::<Saga>::given(given)
        .when(on(rejected(SagaStep::Cancel, "invalid_transition")))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![
                    SagaEvent::CompensationDone {
                        step: SagaStep::Cancel
                    },
                    SagaEvent::Aborted {
                        reason: "order_invalid_transition".into()
                    },
                ])
            );
            assert_eq!(state.phase(), SagaPhase::Aborted);
            assert!(state.is_terminal());
            assert!(state.outstanding().is_empty());
        });
}

// ---------------------------------------------------------------- user cancels

#[test]
fn a_user_cancel_while_reserving_releases_every_line() {
    AggregateTest::<Saga>::given(history(SagaPhase::Reserving))
        .when(user_cancelled(OrderStatus::Pending))
        .then_expect_events(vec![compensation_started(
            "cancelled_by_user",
            release_all(),
        )]);
}

#[test]
fn a_user_cancel_while_paying_releases_and_refunds() {
    AggregateTest::<Saga>::given(history(SagaPhase::Paying))
        .when(user_cancelled(OrderStatus::Pending))
        .then_expect_events(vec![compensation_started(
            "cancelled_by_user",
            release_all_and(&[SagaStep::Refund]),
        )]);
}

#[test]
fn a_user_cancel_while_confirming_releases_and_refunds() {
    // Pending: the confirmation will be refused. Confirmed: it was accepted
    // but its reply is not here yet; nothing is committed either way.
    for previous in [OrderStatus::Pending, OrderStatus::Confirmed] {
        AggregateTest::<Saga>::given(history(SagaPhase::Confirming))
            .when(user_cancelled(previous))
            .then_expect_events(vec![compensation_started(
                "cancelled_by_user",
                release_all_and(&[SagaStep::Refund]),
            )]);
    }
}

#[test]
fn a_user_cancel_while_committing_refunds_and_returns() {
    AggregateTest::<Saga>::given(with(
        history(SagaPhase::Committing),
        [SagaEvent::LineCommitted { product_id: p1() }],
    ))
    .when(user_cancelled(OrderStatus::Confirmed))
    .then_expect_events(vec![compensation_started(
        "cancelled_by_user",
        refund_and_return_all(),
    )]);
}

#[test]
fn a_user_cancel_of_a_saga_stuck_committing_refunds_and_returns() {
    AggregateTest::<Saga>::given(stuck_committing())
        .when(user_cancelled(OrderStatus::Confirmed))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![compensation_started(
                    "cancelled_by_user",
                    refund_and_return_all()
                )])
            );
            assert_eq!(state.phase(), SagaPhase::Compensating);
        });
}

#[test]
fn a_cancel_after_completion_refunds_and_returns_then_aborts() {
    AggregateTest::<Saga>::given(history(SagaPhase::Completed))
        .when(user_cancelled(OrderStatus::Confirmed))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![compensation_started(
                    "cancelled_by_user",
                    refund_and_return_all()
                )])
            );
            assert_eq!(state.phase(), SagaPhase::Compensating);
            assert_eq!(state.outstanding(), refund_and_return_all());
        });
    let given = with(
        history(SagaPhase::Completed),
        [
            compensation_started("cancelled_by_user", refund_and_return_all()),
            SagaEvent::CompensationDone {
                step: SagaStep::Refund,
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Return(p2()),
            },
        ],
    );
    AggregateTest::<Saga>::given(given)
        .when(on(accepted(SagaStep::Return(p1()))))
        .then_expect_events(vec![
            SagaEvent::CompensationDone {
                step: SagaStep::Return(p1()),
            },
            SagaEvent::Aborted {
                reason: "cancelled_by_user".into(),
            },
        ]);
}

#[test]
fn a_user_cancel_that_does_not_match_changes_nothing() {
    for (given, previous) in [
        (history(SagaPhase::Reserving), OrderStatus::Confirmed),
        (history(SagaPhase::Paying), OrderStatus::Confirmed),
        (history(SagaPhase::Committing), OrderStatus::Pending),
        (history(SagaPhase::Completed), OrderStatus::Pending),
        (compensating(), OrderStatus::Pending),
        (stuck_compensating(), OrderStatus::Pending),
        (stuck_committing(), OrderStatus::Pending),
        (
            with(
                compensating(),
                [SagaEvent::Aborted {
                    reason: "insufficient_stock".into(),
                }],
            ),
            OrderStatus::Confirmed,
        ),
    ] {
        AggregateTest::<Saga>::given(given)
            .when(user_cancelled(previous))
            .then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------- compensation

#[test]
fn each_compensation_reply_is_recorded_and_the_last_aborts() {
    AggregateTest::<Saga>::given(compensating())
        .when(on(accepted(SagaStep::Release(p1()))))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![SagaEvent::CompensationDone {
                    step: SagaStep::Release(p1())
                }])
            );
            assert_eq!(
                state.outstanding(),
                vec![SagaStep::Release(p2()), SagaStep::Cancel]
            );
        });
    AggregateTest::<Saga>::given(with(
        compensating(),
        [
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p1()),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Cancel,
            },
        ],
    ))
    // A rejected compensation also means there is nothing left to undo.
    .when(on(rejected(SagaStep::Release(p2()), "unknown_product")))
    .then_inspect(|result, state| {
        assert_eq!(
            result,
            &Ok(vec![
                SagaEvent::CompensationDone {
                    step: SagaStep::Release(p2())
                },
                SagaEvent::Aborted {
                    reason: "insufficient_stock".into()
                },
            ])
        );
        assert_eq!(state.phase(), SagaPhase::Aborted);
        assert_eq!(state.reason(), Some("insufficient_stock"));
    });
}

#[test]
fn a_reply_to_a_compensation_not_issued_changes_nothing() {
    AggregateTest::<Saga>::given(compensating())
        .when(on(accepted(SagaStep::Refund)))
        .then_expect_events(vec![]);
}

// ---------------------------------------------------------------- timeouts

#[test]
fn a_tick_before_the_deadline_does_nothing() {
    AggregateTest::<Saga>::given(history(SagaPhase::Reserving))
        .when(tick(at(999)))
        .then_expect_events(vec![]);
}

#[test]
fn a_tick_on_a_finished_or_stuck_saga_does_nothing() {
    for given in [
        history(SagaPhase::Completed),
        stuck_compensating(),
        stuck_committing(),
        with(
            compensating(),
            [SagaEvent::Aborted {
                reason: "insufficient_stock".into(),
            }],
        ),
    ] {
        AggregateTest::<Saga>::given(given)
            .when(tick(at(1_000_000)))
            .then_expect_events(vec![]);
    }
}

#[test]
fn a_step_timeout_retries_with_doubling_deadlines_then_compensates() {
    let first_retry = SagaEvent::StepRetried {
        attempt: 2,
        deadline: at(1_000 + 2_000),
    };
    AggregateTest::<Saga>::given(history(SagaPhase::Reserving))
        .when(tick(at(1_000)))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![first_retry.clone()]));
            assert_eq!(state.attempt(), 2);
            assert_eq!(state.deadline(), Some(at(3_000)));
            assert_eq!(state.phase(), SagaPhase::Reserving);
        });
    let second_retry = SagaEvent::StepRetried {
        attempt: 3,
        deadline: at(3_000 + 4_000),
    };
    AggregateTest::<Saga>::given(with(history(SagaPhase::Reserving), [first_retry.clone()]))
        .when(tick(at(2_999)))
        .then_expect_events(vec![]);
    AggregateTest::<Saga>::given(with(history(SagaPhase::Reserving), [first_retry.clone()]))
        .when(tick(at(3_000)))
        .then_expect_events(vec![second_retry.clone()]);
    AggregateTest::<Saga>::given(with(
        history(SagaPhase::Reserving),
        [line_reserved(p1()), first_retry, second_retry],
    ))
    .when(tick(at(7_000)))
    .then_inspect(|result, state| {
        assert_eq!(
            result,
            &Ok(vec![SagaEvent::CompensationStarted {
                reason: "step_timeout".into(),
                steps: release_all_and(&[SagaStep::Cancel]),
                deadline: at(8_000),
            }])
        );
        assert_eq!(state.phase(), SagaPhase::Compensating);
        assert_eq!(state.attempt(), 1);
    });
}

fn exhausted(mut given: Vec<SagaEvent>) -> Vec<SagaEvent> {
    given.extend([
        SagaEvent::StepRetried {
            attempt: 2,
            deadline: at(3_000),
        },
        SagaEvent::StepRetried {
            attempt: 3,
            deadline: at(7_000),
        },
    ]);
    given
}

#[test]
fn a_paying_or_confirming_timeout_also_refunds() {
    for phase in [SagaPhase::Paying, SagaPhase::Confirming] {
        AggregateTest::<Saga>::given(exhausted(history(phase)))
            .when(tick(at(7_000)))
            .then_expect_events(vec![SagaEvent::CompensationStarted {
                reason: "step_timeout".into(),
                steps: release_all_and(&[SagaStep::Refund, SagaStep::Cancel]),
                deadline: at(8_000),
            }]);
    }
}

#[test]
fn a_commit_timeout_leaves_the_saga_stuck() {
    AggregateTest::<Saga>::given(exhausted(history(SagaPhase::Committing)))
        .when(tick(at(7_000)))
        .then_expect_events(vec![SagaEvent::Stuck {
            reason: "commit_timeout".into(),
        }]);
}

#[test]
fn a_compensation_timeout_leaves_the_saga_stuck() {
    AggregateTest::<Saga>::given(exhausted(compensating()))
        .when(tick(at(7_000)))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![SagaEvent::Stuck {
                    reason: "compensation_timeout".into()
                }])
            );
            assert_eq!(state.phase(), SagaPhase::Stuck);
            assert_eq!(state.stuck_reason(), Some("compensation_timeout"));
            // The compensation's reason is kept for the abort.
            assert_eq!(state.reason(), Some("insufficient_stock"));
            assert_eq!(state.outstanding(), release_all_and(&[SagaStep::Cancel]));
        });
}

#[test]
fn a_policy_of_one_attempt_never_retries() {
    let mut started = started();
    if let SagaEvent::Started { policy, .. } = &mut started {
        policy.max_attempts = 1;
    }
    AggregateTest::<Saga>::given(vec![started])
        .when(tick(at(1_000)))
        .then_expect_events(vec![SagaEvent::CompensationStarted {
            reason: "step_timeout".into(),
            steps: release_all_and(&[SagaStep::Cancel]),
            deadline: at(2_000),
        }]);
}

#[test]
fn huge_timeouts_saturate_instead_of_panicking() {
    let mut started = started();
    if let SagaEvent::Started { policy, .. } = &mut started {
        policy.step_timeout_ms = u64::MAX;
        policy.max_attempts = u32::MAX;
    }
    AggregateTest::<Saga>::given(vec![
        started,
        SagaEvent::StepRetried {
            attempt: 200,
            deadline: at(0),
        },
    ])
    .when(tick(at(0)))
    .then_inspect(|result, state| {
        assert!(matches!(
            result.as_deref(),
            Ok([SagaEvent::StepRetried { attempt: 201, .. }])
        ));
        assert!(state.deadline() > Some(at(0)));
    });
}

// ---------------------------------------------------------------- stuck and retry

#[test]
fn retry_is_only_for_a_stuck_saga() {
    for given in [
        history(SagaPhase::Reserving),
        compensating(),
        history(SagaPhase::Completed),
    ] {
        AggregateTest::<Saga>::given(given)
            .when(retry(now()))
            .then_expect_rejection("not_stuck");
    }
}

#[test]
fn retry_resumes_the_compensation_with_a_fresh_budget() {
    AggregateTest::<Saga>::given(exhausted(stuck_compensating()))
        .when(retry(now()))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![SagaEvent::RetryRequested {
                    deadline: next_deadline()
                }])
            );
            assert_eq!(state.phase(), SagaPhase::Compensating);
            assert_eq!(state.attempt(), 1);
            assert_eq!(state.deadline(), Some(next_deadline()));
            assert_eq!(state.outstanding(), release_all_and(&[SagaStep::Cancel]));
        });
}

#[test]
fn retry_resumes_the_commits_of_a_saga_stuck_committing() {
    AggregateTest::<Saga>::given(stuck_committing())
        .when(retry(now()))
        .then_inspect(|_, state| {
            assert_eq!(state.phase(), SagaPhase::Committing);
            assert_eq!(
                state.outstanding(),
                vec![SagaStep::Commit(p1()), SagaStep::Commit(p2())]
            );
        });
}

#[test]
fn replies_finishing_a_stuck_compensation_abort_it() {
    AggregateTest::<Saga>::given(with(
        stuck_compensating(),
        [
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p1()),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p2()),
            },
        ],
    ))
    .when(on(accepted(SagaStep::Cancel)))
    .then_inspect(|result, state| {
        assert_eq!(
            result,
            &Ok(vec![
                SagaEvent::CompensationDone {
                    step: SagaStep::Cancel
                },
                SagaEvent::Aborted {
                    reason: "insufficient_stock".into()
                },
            ])
        );
        assert_eq!(state.phase(), SagaPhase::Aborted);
    });
}

#[test]
fn late_commits_finish_a_saga_stuck_committing() {
    AggregateTest::<Saga>::given(with(
        stuck_committing(),
        [SagaEvent::LineCommitted { product_id: p1() }],
    ))
    .when(on(accepted(SagaStep::Commit(p2()))))
    .then_inspect(|result, state| {
        assert_eq!(
            result,
            &Ok(vec![
                SagaEvent::LineCommitted { product_id: p2() },
                SagaEvent::Completed
            ])
        );
        assert_eq!(state.phase(), SagaPhase::Completed);
    });
}

// ---------------------------------------------------------------- late replies

#[test]
fn a_late_reservation_is_released_again() {
    let late = SagaEvent::LateReplyCompensated {
        late: SagaStep::Reserve(p2()),
        compensation: SagaStep::ReleaseLate(p2()),
    };
    let aborted = with(
        compensating_after_timeout(),
        [
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p1()),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p2()),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Cancel,
            },
            SagaEvent::Aborted {
                reason: "step_timeout".into(),
            },
        ],
    );
    for given in [
        compensating_after_timeout(),
        exhausted(with(
            compensating_after_timeout(),
            [SagaEvent::Stuck {
                reason: "compensation_timeout".into(),
            }],
        )),
        aborted.clone(),
    ] {
        AggregateTest::<Saga>::given(given)
            .when(on(reservation_accepted(p2())))
            .then_inspect(|result, state| {
                assert_eq!(result, &Ok(vec![late.clone()]));
                assert!(state
                    .late_compensations()
                    .contains(&SagaStep::ReleaseLate(p2())));
            });
    }
    // Once only, and a late rejection needs nothing.
    AggregateTest::<Saga>::given(with(aborted.clone(), [late.clone()]))
        .when(on(reservation_accepted(p2())))
        .then_expect_events(vec![]);
    AggregateTest::<Saga>::given(compensating_after_timeout())
        .when(on(rejected(SagaStep::Reserve(p2()), "insufficient_stock")))
        .then_expect_events(vec![]);
    // A line reserved before compensation began is released by it: a
    // repeated reply is a duplicate.
    AggregateTest::<Saga>::given(compensating_after_timeout())
        .when(on(reservation_accepted(p1())))
        .then_expect_events(vec![]);
    // The late release's reply is recorded while compensating, ignored once
    // aborted, and never holds the abort back.
    AggregateTest::<Saga>::given(with(compensating_after_timeout(), [late.clone()]))
        .when(on(accepted(SagaStep::ReleaseLate(p2()))))
        .then_expect_events(vec![SagaEvent::CompensationDone {
            step: SagaStep::ReleaseLate(p2()),
        }]);
    AggregateTest::<Saga>::given(with(aborted, [late.clone()]))
        .when(on(accepted(SagaStep::ReleaseLate(p2()))))
        .then_expect_events(vec![]);
    AggregateTest::<Saga>::given(with(
        compensating_after_timeout(),
        [
            late,
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p1()),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p2()),
            },
        ],
    ))
    .when(on(accepted(SagaStep::Cancel)))
    .then_expect_events(vec![
        SagaEvent::CompensationDone {
            step: SagaStep::Cancel,
        },
        SagaEvent::Aborted {
            reason: "step_timeout".into(),
        },
    ]);
}

#[test]
fn a_late_charge_is_refunded_again() {
    let paying_timed_out = with(
        exhausted(history(SagaPhase::Paying)),
        [SagaEvent::CompensationStarted {
            reason: "step_timeout".into(),
            steps: release_all_and(&[SagaStep::Refund, SagaStep::Cancel]),
            deadline: at(8_000),
        }],
    );
    let late = SagaEvent::LateReplyCompensated {
        late: SagaStep::Charge,
        compensation: SagaStep::RefundLate,
    };
    AggregateTest::<Saga>::given(paying_timed_out.clone())
        .when(on(charge_accepted(total())))
        .then_expect_events(vec![late.clone()]);
    AggregateTest::<Saga>::given(with(paying_timed_out.clone(), [late]))
        .when(on(charge_accepted(total())))
        .then_expect_events(vec![]);
    // Late price and confirmation are undone by the cancel.
    for step in [SagaStep::Price, SagaStep::Confirm] {
        AggregateTest::<Saga>::given(paying_timed_out.clone())
            .when(on(accepted(step)))
            .then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------- duplicates and strangers

#[test]
fn duplicate_replies_change_nothing() {
    let cases = [
        (
            with(history(SagaPhase::Reserving), [line_reserved(p1())]),
            reservation_accepted(p1()),
        ),
        (
            with(history(SagaPhase::Paying), [SagaEvent::OrderPriced]),
            accepted(SagaStep::Price),
        ),
        (
            with(
                history(SagaPhase::Paying),
                [SagaEvent::Charged { amount: total() }],
            ),
            charge_accepted(total()),
        ),
        // Replies of an earlier phase.
        (history(SagaPhase::Paying), reservation_accepted(p2())),
        (history(SagaPhase::Confirming), accepted(SagaStep::Price)),
        (history(SagaPhase::Committing), accepted(SagaStep::Confirm)),
        (
            with(
                history(SagaPhase::Committing),
                [SagaEvent::LineCommitted { product_id: p1() }],
            ),
            accepted(SagaStep::Commit(p1())),
        ),
        (
            history(SagaPhase::Completed),
            accepted(SagaStep::Commit(p1())),
        ),
        (
            with(
                compensating(),
                [SagaEvent::CompensationDone {
                    step: SagaStep::Cancel,
                }],
            ),
            accepted(SagaStep::Cancel),
        ),
    ];
    for (given, reply) in cases {
        AggregateTest::<Saga>::given(given)
            .when(on(reply))
            .then_expect_events(vec![]);
    }
}

#[test]
fn a_reply_with_an_unknown_command_id_changes_nothing() {
    let mut stranger = reservation_accepted(p1());
    stranger.command_id = CommandId::from_uuid(Uuid::from_u128(7));
    AggregateTest::<Saga>::given(history(SagaPhase::Reserving))
        .when(on(stranger))
        .then_expect_events(vec![]);
    // Another saga's reservation of the same product.
    let mut other = reservation_accepted(p1());
    other.command_id = saga_command_id(
        SagaId::from_uuid(Uuid::from_u128(8)),
        &SagaStep::Reserve(p1()),
    );
    AggregateTest::<Saga>::given(history(SagaPhase::Reserving))
        .when(on(other))
        .then_expect_events(vec![]);
}

#[test]
fn replay_never_panics_on_a_damaged_stream() {
    let mut events = history(SagaPhase::Completed);
    events.extend(compensating());
    events.push(SagaEvent::RetryRequested { deadline: t0() });
    events.push(SagaEvent::StepRetried {
        attempt: u32::MAX,
        deadline: t0(),
    });
    let saga = state(&events);
    assert_ne!(saga.phase(), SagaPhase::NotStarted);
    assert_eq!(saga.order_id(), Some(order_id()));
}

// ---------------------------------------------------------------- commands sent

/// One decoded outbox record.
#[derive(Debug)]
enum Sent {
    Inventory(CommandEnvelope<InventoryCommand>),
    Order(CommandEnvelope<OrderCommand>),
    User(CommandEnvelope<UserCommand>),
}

impl Sent {
    fn command_id(&self) -> CommandId {
        match self {
            Sent::Inventory(e) => e.command_id,
            Sent::Order(e) => e.command_id,
            Sent::User(e) => e.command_id,
        }
    }

    fn correlation_and_reply_to(&self) -> (CorrelationId, Option<String>) {
        match self {
            Sent::Inventory(e) => (e.correlation_id, e.reply_to.clone()),
            Sent::Order(e) => (e.correlation_id, e.reply_to.clone()),
            Sent::User(e) => (e.correlation_id, e.reply_to.clone()),
        }
    }
}

/// Decodes the records and checks what every saga command has in common:
/// its topic matches its key's aggregate, it replies to the saga replies
/// topic, correlated by the saga id, in bincode.
fn decode(records: &[OutboxRecord]) -> Vec<(String, Sent)> {
    records
        .iter()
        .map(|record| {
            assert_eq!(
                record.headers[0],
                (
                    "content-type".to_owned(),
                    Format::Bincode.content_type().as_bytes().to_vec()
                )
            );
            // The saga is the trace: every command it sends continues it.
            let (name, value) = &record.headers[1];
            assert_eq!(name, "traceparent");
            let value = String::from_utf8(value.clone()).unwrap();
            let trace = format!("00-{}-", saga_id().as_uuid().as_simple());
            assert!(value.starts_with(&trace), "{value}");
            assert_eq!(value.len(), 55, "{value}");
            let payload = record.payload.as_deref().expect("a value");
            assert_eq!(payload.first(), Some(&codec::BINCODE_TAG));
            let key = String::from_utf8(record.key.clone().expect("a key")).unwrap();
            let sent = match record.topic.as_str() {
                INVENTORY_COMMANDS => {
                    let e: CommandEnvelope<InventoryCommand> = codec::decode(payload).unwrap();
                    assert_eq!(key, e.command.product_id().to_string());
                    Sent::Inventory(e)
                }
                ORDERS_COMMANDS => {
                    let e: CommandEnvelope<OrderCommand> = codec::decode(payload).unwrap();
                    assert_eq!(key, e.command.order_id().to_string());
                    Sent::Order(e)
                }
                USERS_COMMANDS => {
                    let e: CommandEnvelope<UserCommand> = codec::decode(payload).unwrap();
                    assert_eq!(key, e.command.user_id().to_string());
                    Sent::User(e)
                }
                other => panic!("unexpected topic {other}"),
            };
            assert_eq!(
                sent.correlation_and_reply_to(),
                (
                    CorrelationId::from_uuid(saga_id().as_uuid()),
                    Some(SAGA_REPLIES.to_owned())
                )
            );
            (key, sent)
        })
        .collect()
}

/// The records the decision on `command` after `given` sends, decoded.
fn sent_by(given: &[SagaEvent], command: SagaCommand) -> Vec<(String, Sent)> {
    let before = state(given);
    let events = before.decide(&command).expect("accepted");
    let mut after = before.clone();
    for event in &events {
        after.apply(event);
    }
    let records: Vec<OutboxRecord> = Saga::commands(&before, &after, &events)
        .iter()
        .map(|outgoing| {
            outbox_record(outgoing, replies_topic(StreamKind::Saga), t0()).expect("encodes")
        })
        .collect();
    decode(&records)
}

fn id(step: SagaStep) -> CommandId {
    saga_command_id(saga_id(), &step)
}

#[test]
fn start_sends_one_reservation_per_line() {
    let sent = sent_by(&[], start());
    assert_eq!(sent.len(), 2);
    for ((key, sent), line) in sent.iter().zip(lines()) {
        assert_eq!(key, &line.product_id.as_uuid().to_string());
        assert_eq!(sent.command_id(), id(SagaStep::Reserve(line.product_id)));
        match sent {
            Sent::Inventory(e) => assert_eq!(
                e.command,
                InventoryCommand::Reserve {
                    product_id: line.product_id,
                    order_id: order_id(),
                    quantity: line.quantity,
                }
            ),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Deterministic ids: a second computation sends the same ids.
    let again: Vec<_> = sent_by(&[], start())
        .iter()
        .map(|(_, s)| s.command_id())
        .collect();
    assert_eq!(
        again,
        sent.iter().map(|(_, s)| s.command_id()).collect::<Vec<_>>()
    );
}

#[test]
fn a_reply_that_moves_nothing_sends_nothing() {
    assert!(sent_by(
        &history(SagaPhase::Reserving),
        on(reservation_accepted(p1()))
    )
    .is_empty());
    assert!(sent_by(&history(SagaPhase::Paying), on(accepted(SagaStep::Price))).is_empty());
    assert!(sent_by(&history(SagaPhase::Reserving), tick(at(10))).is_empty());
}

#[test]
fn pricing_sends_the_price_and_the_charge() {
    let sent = sent_by(
        &with(history(SagaPhase::Reserving), [line_reserved(p1())]),
        on(reservation_accepted(p2())),
    );
    assert_eq!(sent.len(), 2);
    match &sent[0] {
        (key, Sent::Order(e)) => {
            assert_eq!(key, &order_id().to_string());
            assert_eq!(e.command_id, id(SagaStep::Price));
            assert_eq!(
                e.command,
                OrderCommand::Price {
                    order_id: order_id(),
                    lines: priced_lines()
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    match &sent[1] {
        (key, Sent::User(e)) => {
            assert_eq!(key, &user_id().to_string());
            assert_eq!(e.command_id, id(SagaStep::Charge));
            assert_eq!(
                e.command,
                UserCommand::Charge {
                    user_id: user_id(),
                    order_id: order_id(),
                    amount: total()
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn confirming_and_committing_send_their_commands() {
    let sent = sent_by(
        &with(history(SagaPhase::Paying), [SagaEvent::OrderPriced]),
        on(charge_accepted(total())),
    );
    assert!(matches!(
        &sent[..],
        [(_, Sent::Order(e))] if e.command == OrderCommand::Confirm { order_id: order_id() }
            && e.command_id == id(SagaStep::Confirm)
    ));
    let sent = sent_by(
        &history(SagaPhase::Confirming),
        on(accepted(SagaStep::Confirm)),
    );
    let commits: Vec<_> = sent
        .iter()
        .map(|(_, s)| match s {
            Sent::Inventory(e) => (e.command_id, e.command.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        commits,
        vec![
            (
                id(SagaStep::Commit(p1())),
                InventoryCommand::Commit {
                    product_id: p1(),
                    order_id: order_id()
                }
            ),
            (
                id(SagaStep::Commit(p2())),
                InventoryCommand::Commit {
                    product_id: p2(),
                    order_id: order_id()
                }
            ),
        ]
    );
    // Completing sends nothing.
    assert!(sent_by(
        &with(
            history(SagaPhase::Committing),
            [SagaEvent::LineCommitted { product_id: p1() }]
        ),
        on(accepted(SagaStep::Commit(p2())))
    )
    .is_empty());
}

#[test]
fn a_retry_resends_only_the_unanswered_steps() {
    let sent = sent_by(
        &with(history(SagaPhase::Reserving), [line_reserved(p1())]),
        tick(at(1_000)),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, p2().to_string());
    assert_eq!(sent[0].1.command_id(), id(SagaStep::Reserve(p2())));
}

#[test]
fn compensation_sends_release_refund_and_cancel_with_the_reason() {
    let sent = sent_by(
        &history(SagaPhase::Paying),
        on(rejected(SagaStep::Price, "lines_mismatch")),
    );
    let ids: Vec<_> = sent.iter().map(|(_, s)| s.command_id()).collect();
    assert_eq!(
        ids,
        release_all_and(&[SagaStep::Refund, SagaStep::Cancel])
            .into_iter()
            .map(id)
            .collect::<Vec<_>>()
    );
    assert!(matches!(
        &sent[0].1,
        Sent::Inventory(e) if e.command == InventoryCommand::Release { product_id: p1(), order_id: order_id() }
    ));
    assert!(matches!(
        &sent[2].1,
        Sent::User(e) if e.command == UserCommand::Refund { user_id: user_id(), order_id: order_id() }
    ));
    assert!(matches!(
        &sent[3].1,
        Sent::Order(e) if e.command == OrderCommand::Cancel { order_id: order_id(), reason: "order_lines_mismatch".into() }
    ));
}

#[test]
fn a_cancel_after_completion_sends_refund_and_returns() {
    let sent = sent_by(
        &history(SagaPhase::Completed),
        user_cancelled(OrderStatus::Confirmed),
    );
    let ids: Vec<_> = sent.iter().map(|(_, s)| s.command_id()).collect();
    assert_eq!(
        ids,
        refund_and_return_all()
            .into_iter()
            .map(id)
            .collect::<Vec<_>>()
    );
    assert!(matches!(
        &sent[1].1,
        Sent::Inventory(e) if e.command == InventoryCommand::Return { product_id: p1(), order_id: order_id() }
    ));
}

#[test]
fn getting_stuck_sends_nothing_and_retry_resends_the_compensations() {
    assert!(sent_by(&exhausted(compensating()), tick(at(7_000))).is_empty());
    let sent = sent_by(&stuck_compensating(), retry(now()));
    let ids: Vec<_> = sent.iter().map(|(_, s)| s.command_id()).collect();
    assert_eq!(
        ids,
        release_all_and(&[SagaStep::Cancel])
            .into_iter()
            .map(id)
            .collect::<Vec<_>>()
    );
}

#[test]
fn late_replies_send_their_compensation_even_after_the_abort() {
    let aborted = with(
        compensating_after_timeout(),
        [
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p1()),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Release(p2()),
            },
            SagaEvent::CompensationDone {
                step: SagaStep::Cancel,
            },
            SagaEvent::Aborted {
                reason: "step_timeout".into(),
            },
        ],
    );
    let sent = sent_by(&aborted, on(reservation_accepted(p2())));
    match &sent[..] {
        [(key, Sent::Inventory(e))] => {
            assert_eq!(key, &p2().to_string());
            assert_eq!(e.command_id, id(SagaStep::ReleaseLate(p2())));
            assert_ne!(e.command_id, id(SagaStep::Release(p2())));
            assert_eq!(
                e.command,
                InventoryCommand::Release {
                    product_id: p2(),
                    order_id: order_id()
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let paying_timed_out = with(
        exhausted(history(SagaPhase::Paying)),
        [SagaEvent::CompensationStarted {
            reason: "step_timeout".into(),
            steps: release_all_and(&[SagaStep::Refund, SagaStep::Cancel]),
            deadline: at(8_000),
        }],
    );
    let sent = sent_by(&paying_timed_out, on(charge_accepted(total())));
    match &sent[..] {
        [(_, Sent::User(e))] => {
            assert_eq!(e.command_id, id(SagaStep::RefundLate));
            assert_eq!(
                e.command,
                UserCommand::Refund {
                    user_id: user_id(),
                    order_id: order_id()
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}
