//! Given/when/then tests for every rule of the order aggregate.

use ordersaga_actors::aggregates::Order;
use ordersaga_actors::testing::AggregateTest;
use ordersaga_actors::Aggregate;
use ordersaga_events::order::{
    OrderCommand, OrderEvent, OrderLine, OrderRejection, OrderStatus, PricedLine, MAX_LINES,
};
use ordersaga_events::topics::Service;
use ordersaga_events::{Cents, OrderId, ProductId, StreamKind, UserId};
use proptest::prelude::*;
use uuid::Uuid;

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(3))
}

fn user_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(4))
}

fn product(n: u128) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(100 + n))
}

fn line(p: u128, quantity: u64) -> OrderLine {
    OrderLine {
        product_id: product(p),
        quantity,
    }
}

fn priced_line(p: u128, quantity: u64, unit_price: u64) -> PricedLine {
    PricedLine {
        product_id: product(p),
        quantity,
        unit_price: Cents(unit_price),
    }
}

fn lines() -> Vec<OrderLine> {
    vec![line(1, 2), line(2, 1)]
}

fn prices() -> Vec<PricedLine> {
    vec![priced_line(1, 2, 250), priced_line(2, 1, 1_000)]
}

fn place(lines: Vec<OrderLine>) -> OrderCommand {
    OrderCommand::Place {
        order_id: order_id(),
        user_id: user_id(),
        lines,
    }
}

fn placed() -> OrderEvent {
    OrderEvent::Placed {
        order_id: order_id(),
        user_id: user_id(),
        lines: lines(),
    }
}

fn priced() -> OrderEvent {
    OrderEvent::Priced {
        lines: prices(),
        total: Cents(1_500),
    }
}

fn cancelled(previous: OrderStatus) -> OrderEvent {
    OrderEvent::Cancelled {
        reason: "insufficient_funds".to_owned(),
        previous,
    }
}

fn price(lines: Vec<PricedLine>) -> OrderCommand {
    OrderCommand::Price {
        order_id: order_id(),
        lines,
    }
}

fn confirm() -> OrderCommand {
    OrderCommand::Confirm {
        order_id: order_id(),
    }
}

fn cancel(reason: &str) -> OrderCommand {
    OrderCommand::Cancel {
        order_id: order_id(),
        reason: reason.to_owned(),
    }
}

fn ship() -> OrderCommand {
    OrderCommand::Ship {
        order_id: order_id(),
    }
}

fn deliver() -> OrderCommand {
    OrderCommand::Deliver {
        order_id: order_id(),
    }
}

/// The events that bring an order to `status`.
fn history(status: OrderStatus) -> Vec<OrderEvent> {
    let mut events = vec![placed(), priced()];
    match status {
        OrderStatus::Pending => {}
        OrderStatus::Confirmed => events.push(OrderEvent::Confirmed),
        OrderStatus::Shipped => events.extend([OrderEvent::Confirmed, OrderEvent::Shipped]),
        OrderStatus::Delivered => events.extend([
            OrderEvent::Confirmed,
            OrderEvent::Shipped,
            OrderEvent::Delivered,
        ]),
        OrderStatus::Cancelled => events.push(cancelled(OrderStatus::Pending)),
    }
    events
}

#[track_caller]
fn expect_invalid_transition(from: OrderStatus, command: OrderCommand, action: &'static str) {
    AggregateTest::<Order>::given(history(from))
        .when(command)
        .then_expect_rejection_value(OrderRejection::InvalidTransition { from, action });
}

// ---------------------------------------------------------------- identity

#[test]
fn aggregate_identity() {
    assert_eq!(Order::KIND, StreamKind::Order);
    assert_eq!(Order::SERVICE, Service::Orders);
    assert_eq!(Order::aggregate_id(&confirm()), order_id().as_uuid());
    assert_eq!(Order::aggregate_id(&place(lines())), order_id().as_uuid());
}

// ---------------------------------------------------------------- place

#[test]
fn place_is_accepted_and_pending() {
    AggregateTest::<Order>::given_no_previous_events()
        .when(place(lines()))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![placed()]));
            assert_eq!(state.status(), Some(OrderStatus::Pending));
            assert!(state.is_placed());
            assert!(!state.is_priced());
            assert_eq!(state.order_id(), Some(order_id()));
            assert_eq!(state.user_id(), Some(user_id()));
            assert_eq!(state.lines(), lines().as_slice());
            assert_eq!(state.total(), None);
        });
}

#[test]
fn place_with_max_lines_is_accepted() {
    let many: Vec<_> = (0..MAX_LINES as u128).map(|p| line(p, 1)).collect();
    AggregateTest::<Order>::given_no_previous_events()
        .when(place(many.clone()))
        .then_expect_events(vec![OrderEvent::Placed {
            order_id: order_id(),
            user_id: user_id(),
            lines: many,
        }]);
}

#[test]
fn place_twice_is_rejected() {
    AggregateTest::<Order>::given(vec![placed()])
        .when(place(lines()))
        .then_expect_rejection("already_placed");
}

#[test]
fn place_with_no_lines_is_rejected() {
    AggregateTest::<Order>::given_no_previous_events()
        .when(place(vec![]))
        .then_expect_rejection("empty_order");
}

#[test]
fn place_with_too_many_lines_is_rejected() {
    let many: Vec<_> = (0..=MAX_LINES as u128).map(|p| line(p, 1)).collect();
    AggregateTest::<Order>::given_no_previous_events()
        .when(place(many))
        .then_expect_rejection("too_many_lines");
}

#[test]
fn place_with_a_zero_quantity_is_rejected() {
    AggregateTest::<Order>::given_no_previous_events()
        .when(place(vec![line(1, 2), line(2, 0)]))
        .then_expect_rejection("invalid_quantity");
}

#[test]
fn place_with_a_product_twice_is_rejected() {
    AggregateTest::<Order>::given_no_previous_events()
        .when(place(vec![line(1, 2), line(2, 1), line(1, 3)]))
        .then_expect_rejection_value(OrderRejection::DuplicateProduct(product(1)));
}

// ---------------------------------------------------------------- unknown order

#[test]
fn every_other_command_on_an_unknown_order_is_rejected() {
    for command in [
        price(prices()),
        confirm(),
        cancel("reason"),
        ship(),
        deliver(),
    ] {
        AggregateTest::<Order>::given_no_previous_events()
            .when(command)
            .then_expect_rejection_value(OrderRejection::UnknownOrder);
    }
}

// ---------------------------------------------------------------- price

#[test]
fn price_is_accepted_with_lines_in_any_order() {
    let reversed: Vec<_> = prices().into_iter().rev().collect();
    AggregateTest::<Order>::given(vec![placed()])
        .when(price(reversed.clone()))
        .then_inspect(|result, state| {
            assert_eq!(
                result,
                &Ok(vec![OrderEvent::Priced {
                    lines: reversed.clone(),
                    total: Cents(1_500),
                }])
            );
            assert!(state.is_priced());
            assert_eq!(state.total(), Some(Cents(1_500)));
            assert_eq!(state.priced_lines(), reversed.as_slice());
            assert_eq!(state.status(), Some(OrderStatus::Pending));
        });
}

#[test]
fn price_twice_is_rejected() {
    AggregateTest::<Order>::given(vec![placed(), priced()])
        .when(price(prices()))
        .then_expect_rejection("already_priced");
}

#[test]
fn price_of_an_order_that_is_not_pending_is_rejected() {
    for from in [
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ] {
        expect_invalid_transition(from, price(prices()), "price");
    }
}

#[test]
fn price_with_lines_other_than_the_placed_ones_is_rejected() {
    for lines in [
        vec![],
        vec![priced_line(1, 2, 250)],
        vec![priced_line(1, 2, 250), priced_line(2, 2, 1_000)],
        vec![priced_line(1, 2, 250), priced_line(3, 1, 1_000)],
        vec![
            priced_line(1, 2, 250),
            priced_line(2, 1, 1_000),
            priced_line(3, 1, 10),
        ],
        vec![
            priced_line(1, 2, 250),
            priced_line(2, 1, 1_000),
            priced_line(2, 1, 1_000),
        ],
    ] {
        AggregateTest::<Order>::given(vec![placed()])
            .when(price(lines))
            .then_expect_rejection("lines_mismatch");
    }
}

#[test]
fn price_with_a_zero_unit_price_is_rejected() {
    AggregateTest::<Order>::given(vec![placed()])
        .when(price(vec![priced_line(1, 2, 250), priced_line(2, 1, 0)]))
        .then_expect_rejection("invalid_price");
}

#[test]
fn price_with_an_overflowing_line_is_rejected() {
    AggregateTest::<Order>::given(vec![placed()])
        .when(price(vec![
            priced_line(1, 2, u64::MAX / 2 + 1),
            priced_line(2, 1, 1),
        ]))
        .then_expect_rejection("amount_overflow");
}

#[test]
fn price_with_an_overflowing_total_is_rejected() {
    AggregateTest::<Order>::given(vec![placed()])
        .when(price(vec![
            priced_line(1, 2, u64::MAX / 2),
            priced_line(2, 1, 2),
        ]))
        .then_expect_rejection("amount_overflow");
}

// ---------------------------------------------------------------- confirm

#[test]
fn confirm_of_a_priced_pending_order_is_accepted() {
    AggregateTest::<Order>::given(vec![placed(), priced()])
        .when(confirm())
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![OrderEvent::Confirmed]));
            assert_eq!(state.status(), Some(OrderStatus::Confirmed));
        });
}

#[test]
fn confirm_of_an_unpriced_order_is_rejected() {
    AggregateTest::<Order>::given(vec![placed()])
        .when(confirm())
        .then_expect_rejection("not_priced");
}

#[test]
fn confirm_of_an_order_that_is_not_pending_is_rejected() {
    for from in [
        OrderStatus::Confirmed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ] {
        expect_invalid_transition(from, confirm(), "confirm");
    }
}

// ---------------------------------------------------------------- cancel

#[test]
fn cancel_of_a_pending_order_is_accepted() {
    AggregateTest::<Order>::given(vec![placed()])
        .when(cancel("insufficient_funds"))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![cancelled(OrderStatus::Pending)]));
            assert_eq!(state.status(), Some(OrderStatus::Cancelled));
            assert_eq!(state.cancel_reason(), Some("insufficient_funds"));
        });
}

#[test]
fn cancel_of_a_confirmed_order_records_the_previous_status() {
    AggregateTest::<Order>::given(history(OrderStatus::Confirmed))
        .when(cancel("  insufficient_funds \n"))
        .then_expect_events(vec![cancelled(OrderStatus::Confirmed)]);
}

#[test]
fn cancel_with_a_200_character_reason_is_accepted() {
    let reason = "r".repeat(200);
    AggregateTest::<Order>::given(vec![placed()])
        .when(cancel(&reason))
        .then_expect_events(vec![OrderEvent::Cancelled {
            reason,
            previous: OrderStatus::Pending,
        }]);
}

#[test]
fn cancel_with_an_invalid_reason_is_rejected() {
    let too_long = "r".repeat(201);
    for reason in ["", "   ", too_long.as_str()] {
        AggregateTest::<Order>::given(vec![placed()])
            .when(cancel(reason))
            .then_expect_rejection("invalid_reason");
    }
}

#[test]
fn cancel_of_a_shipped_delivered_or_cancelled_order_is_rejected() {
    for from in [
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ] {
        expect_invalid_transition(from, cancel("changed_mind"), "cancel");
    }
}

// ---------------------------------------------------------------- ship

#[test]
fn ship_of_a_confirmed_order_is_accepted() {
    AggregateTest::<Order>::given(history(OrderStatus::Confirmed))
        .when(ship())
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![OrderEvent::Shipped]));
            assert_eq!(state.status(), Some(OrderStatus::Shipped));
        });
}

#[test]
fn ship_of_an_order_that_is_not_confirmed_is_rejected() {
    for from in [
        OrderStatus::Pending,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ] {
        expect_invalid_transition(from, ship(), "ship");
    }
}

// ---------------------------------------------------------------- deliver

#[test]
fn deliver_of_a_shipped_order_is_accepted() {
    AggregateTest::<Order>::given(history(OrderStatus::Shipped))
        .when(deliver())
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![OrderEvent::Delivered]));
            assert_eq!(state.status(), Some(OrderStatus::Delivered));
        });
}

#[test]
fn deliver_of_an_order_that_is_not_shipped_is_rejected() {
    for from in [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ] {
        expect_invalid_transition(from, deliver(), "deliver");
    }
}

// ---------------------------------------------------------------- state

#[test]
fn state_after_the_whole_life_of_an_order() {
    let state = Order::from_events(&history(OrderStatus::Delivered));
    assert_eq!(state.status(), Some(OrderStatus::Delivered));
    assert_eq!(state.user_id(), Some(user_id()));
    assert_eq!(state.lines(), lines().as_slice());
    assert_eq!(state.priced_lines(), prices().as_slice());
    assert_eq!(state.total(), Some(Cents(1_500)));
    assert_eq!(state.cancel_reason(), None);
}

#[test]
fn a_never_placed_order_has_no_status() {
    let state = Order::default();
    assert_eq!(state.status(), None);
    assert!(!state.is_placed());
    assert_eq!(state.order_id(), None);
}

// ---------------------------------------------------------------- properties

fn any_status() -> impl Strategy<Value = OrderStatus> {
    prop_oneof![
        Just(OrderStatus::Pending),
        Just(OrderStatus::Confirmed),
        Just(OrderStatus::Shipped),
        Just(OrderStatus::Delivered),
        Just(OrderStatus::Cancelled),
    ]
}

fn any_event() -> impl Strategy<Value = OrderEvent> {
    prop_oneof![
        Just(placed()),
        (0..u64::MAX).prop_map(|total| OrderEvent::Priced {
            lines: prices(),
            total: Cents(total),
        }),
        Just(OrderEvent::Confirmed),
        any_status().prop_map(cancelled),
        Just(OrderEvent::Shipped),
        Just(OrderEvent::Delivered),
    ]
}

fn any_command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        Just(place(lines())),
        Just(price(prices())),
        Just(confirm()),
        Just(cancel("reason")),
        Just(ship()),
        Just(deliver()),
    ]
}

/// The moves the status machine allows.
fn allowed(from: Option<OrderStatus>, to: Option<OrderStatus>) -> bool {
    use OrderStatus::*;
    from == to
        || matches!(
            (from, to),
            (None, Some(Pending))
                | (Some(Pending), Some(Confirmed | Cancelled))
                | (Some(Confirmed), Some(Shipped | Cancelled))
                | (Some(Shipped), Some(Delivered))
        )
}

proptest! {
    #[test]
    fn apply_never_panics_on_any_event_sequence(
        events in prop::collection::vec(any_event(), 0..40)
    ) {
        let state = Order::from_events(&events);
        prop_assert_eq!(Order::from_events(&events), state);
    }

    #[test]
    fn decided_events_only_make_allowed_moves(
        commands in prop::collection::vec(any_command(), 0..30)
    ) {
        let mut state = Order::default();
        for command in &commands {
            let before = state.status();
            if let Ok(events) = state.decide(command) {
                for event in &events {
                    state.apply(event);
                }
            }
            prop_assert!(allowed(before, state.status()), "{before:?} -> {:?}", state.status());
            if matches!(state.status(), Some(OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered)) {
                prop_assert!(state.is_priced());
            }
        }
    }
}
