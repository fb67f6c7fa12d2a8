//! Given/when/then tests for every rule of the product (inventory) aggregate.

use ordersaga_actors::aggregates::{Product, Reservation, ReservationState};
use ordersaga_actors::testing::{decide_recalled, AggregateTest};
use ordersaga_actors::Aggregate;
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent, InventoryRejection};
use ordersaga_events::topics::Service;
use ordersaga_events::{Cents, OrderId, ProductId, StreamKind};
use proptest::prelude::*;
use uuid::Uuid;

const PRICE: Cents = Cents(250);

fn product() -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(7))
}

fn order(n: u128) -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(n))
}

fn add(sku: &str, name: &str, unit_price: u64, stock: u64) -> InventoryCommand {
    InventoryCommand::AddProduct {
        product_id: product(),
        sku: sku.to_owned(),
        name: name.to_owned(),
        unit_price: Cents(unit_price),
        stock,
    }
}

fn added(stock: u64) -> InventoryEvent {
    InventoryEvent::ProductAdded {
        product_id: product(),
        sku: "SKU-1".to_owned(),
        name: "Widget".to_owned(),
        unit_price: PRICE,
        stock,
    }
}

fn restocked(quantity: u64) -> InventoryEvent {
    InventoryEvent::Restocked { quantity }
}

fn reserved(order_id: OrderId, quantity: u64) -> InventoryEvent {
    InventoryEvent::Reserved {
        order_id,
        quantity,
        unit_price: PRICE,
    }
}

fn released(order_id: OrderId, quantity: u64) -> InventoryEvent {
    InventoryEvent::Released { order_id, quantity }
}

fn committed(order_id: OrderId, quantity: u64) -> InventoryEvent {
    InventoryEvent::Committed { order_id, quantity }
}

fn returned(order_id: OrderId, quantity: u64) -> InventoryEvent {
    InventoryEvent::Returned { order_id, quantity }
}

fn restock(quantity: u64) -> InventoryCommand {
    InventoryCommand::Restock {
        product_id: product(),
        quantity,
    }
}

fn reserve(order_id: OrderId, quantity: u64) -> InventoryCommand {
    InventoryCommand::Reserve {
        product_id: product(),
        order_id,
        quantity,
    }
}

fn release(order_id: OrderId) -> InventoryCommand {
    InventoryCommand::Release {
        product_id: product(),
        order_id,
    }
}

fn commit(order_id: OrderId) -> InventoryCommand {
    InventoryCommand::Commit {
        product_id: product(),
        order_id,
    }
}

fn return_(order_id: OrderId) -> InventoryCommand {
    InventoryCommand::Return {
        product_id: product(),
        order_id,
    }
}

// ---------------------------------------------------------------- identity

#[test]
fn aggregate_identity() {
    assert_eq!(Product::KIND, StreamKind::Product);
    assert_eq!(Product::SERVICE, Service::Inventory);
    assert_eq!(Product::aggregate_id(&restock(1)), product().as_uuid());
    assert_eq!(
        Product::aggregate_id(&commit(order(1))),
        product().as_uuid()
    );
}

// ---------------------------------------------------------------- add

#[test]
fn add_product_is_accepted_with_trimmed_sku_and_name() {
    AggregateTest::<Product>::given_no_previous_events()
        .when(add("  SKU-1 ", "  Widget  ", 250, 10))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![added(10)]));
            assert!(state.exists());
            assert_eq!(state.product_id(), Some(product()));
            assert_eq!(state.sku(), "SKU-1");
            assert_eq!(state.name(), "Widget");
            assert_eq!(state.unit_price(), PRICE);
            assert_eq!(state.on_hand(), 10);
            assert_eq!(state.initial_stock(), 10);
            assert_eq!(state.available(), 10);
        });
}

#[test]
fn add_product_with_no_stock_is_accepted() {
    AggregateTest::<Product>::given_no_previous_events()
        .when(add("SKU-1", "Widget", 250, 0))
        .then_expect_events(vec![added(0)]);
}

#[test]
fn add_product_twice_is_rejected() {
    AggregateTest::<Product>::given(vec![added(10)])
        .when(add("SKU-2", "Gadget", 100, 1))
        .then_expect_rejection("product_exists");
}

#[test]
fn add_product_with_invalid_sku_is_rejected() {
    let too_long = "S".repeat(65);
    for sku in ["", "   ", "SKU 1", "SKU\t1", too_long.as_str()] {
        AggregateTest::<Product>::given_no_previous_events()
            .when(add(sku, "Widget", 250, 10))
            .then_expect_rejection("invalid_sku");
    }
}

#[test]
fn add_product_with_a_64_character_sku_is_accepted() {
    let sku = "S".repeat(64);
    AggregateTest::<Product>::given_no_previous_events()
        .when(add(&sku, "Widget", 250, 10))
        .then_inspect(|result, state| {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(state.sku(), sku);
        });
}

#[test]
fn add_product_with_invalid_name_is_rejected() {
    let too_long = "n".repeat(201);
    for name in ["", "  \n ", too_long.as_str()] {
        AggregateTest::<Product>::given_no_previous_events()
            .when(add("SKU-1", name, 250, 10))
            .then_expect_rejection("invalid_name");
    }
}

#[test]
fn add_product_with_a_200_character_name_is_accepted() {
    let name = "n".repeat(200);
    AggregateTest::<Product>::given_no_previous_events()
        .when(add("SKU-1", &name, 250, 10))
        .then_inspect(|result, state| {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(state.name(), name);
        });
}

#[test]
fn add_product_with_zero_price_is_rejected() {
    AggregateTest::<Product>::given_no_previous_events()
        .when(add("SKU-1", "Widget", 0, 10))
        .then_expect_rejection("invalid_price");
}

// ---------------------------------------------------------------- unknown product

#[test]
fn every_other_command_on_an_unknown_product_is_rejected() {
    for command in [
        restock(5),
        reserve(order(1), 1),
        release(order(1)),
        commit(order(1)),
        return_(order(1)),
    ] {
        AggregateTest::<Product>::given_no_previous_events()
            .when(command)
            .then_expect_rejection_value(InventoryRejection::UnknownProduct);
    }
}

// ---------------------------------------------------------------- restock

#[test]
fn restock_is_accepted() {
    AggregateTest::<Product>::given(vec![added(10)])
        .when(restock(5))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![restocked(5)]));
            assert_eq!(state.on_hand(), 15);
            assert_eq!(state.total_restocked(), 5);
        });
}

#[test]
fn restock_of_zero_is_rejected() {
    AggregateTest::<Product>::given(vec![added(10)])
        .when(restock(0))
        .then_expect_rejection("invalid_quantity");
}

#[test]
fn restock_overflowing_on_hand_is_rejected() {
    AggregateTest::<Product>::given(vec![added(u64::MAX - 1)])
        .when(restock(2))
        .then_expect_rejection("quantity_overflow");
}

#[test]
fn restock_overflowing_the_restocked_total_is_rejected() {
    AggregateTest::<Product>::given(vec![
        added(0),
        restocked(u64::MAX),
        reserved(order(1), u64::MAX),
        committed(order(1), u64::MAX),
    ])
    .when(restock(1))
    .then_expect_rejection("quantity_overflow");
}

// ---------------------------------------------------------------- reserve

#[test]
fn reserve_is_accepted_at_the_current_price() {
    AggregateTest::<Product>::given(vec![added(10)])
        .when(reserve(order(1), 4))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![reserved(order(1), 4)]));
            assert_eq!(state.reserved(), 4);
            assert_eq!(state.available(), 6);
            assert_eq!(state.on_hand(), 10);
            assert_eq!(
                state.reservation(order(1)),
                Some(&Reservation {
                    quantity: 4,
                    unit_price: PRICE,
                    state: ReservationState::Held,
                })
            );
        });
}

#[test]
fn reserve_of_everything_available_is_accepted() {
    AggregateTest::<Product>::given(vec![added(10), reserved(order(1), 4)])
        .when(reserve(order(2), 6))
        .then_expect_events(vec![reserved(order(2), 6)]);
}

#[test]
fn reserve_of_zero_is_rejected() {
    AggregateTest::<Product>::given(vec![added(10)])
        .when(reserve(order(1), 0))
        .then_expect_rejection("invalid_quantity");
}

#[test]
fn reserve_more_than_on_hand_is_rejected() {
    AggregateTest::<Product>::given(vec![added(10)])
        .when(reserve(order(1), 11))
        .then_expect_rejection_value(InventoryRejection::InsufficientStock {
            available: 10,
            requested: 11,
        });
}

#[test]
fn reserve_from_empty_stock_is_rejected() {
    AggregateTest::<Product>::given(vec![added(0)])
        .when(reserve(order(1), 1))
        .then_expect_rejection("insufficient_stock");
}

#[test]
fn reserve_more_than_left_after_other_reservations_is_rejected() {
    AggregateTest::<Product>::given(vec![
        added(10),
        reserved(order(1), 4),
        reserved(order(2), 3),
    ])
    .when(reserve(order(3), 4))
    .then_expect_rejection_value(InventoryRejection::InsufficientStock {
        available: 3,
        requested: 4,
    });
}

#[test]
fn reserve_counts_released_units_as_available_again() {
    AggregateTest::<Product>::given(vec![
        added(10),
        reserved(order(1), 8),
        released(order(1), 8),
    ])
    .when(reserve(order(2), 10))
    .then_expect_events(vec![reserved(order(2), 10)]);
}

#[test]
fn reserve_twice_for_the_same_order_is_rejected_in_every_state() {
    let histories = [
        vec![added(10), reserved(order(1), 2)],
        vec![added(10), reserved(order(1), 2), released(order(1), 2)],
        vec![added(10), reserved(order(1), 2), committed(order(1), 2)],
        vec![
            added(10),
            reserved(order(1), 2),
            committed(order(1), 2),
            returned(order(1), 2),
        ],
    ];
    for history in histories {
        AggregateTest::<Product>::given(history)
            .when(reserve(order(1), 1))
            .then_expect_rejection_value(InventoryRejection::AlreadyReserved(order(1)));
    }
}

// ---------------------------------------------------------------- release

#[test]
fn release_of_a_held_reservation_is_accepted() {
    AggregateTest::<Product>::given(vec![added(10), reserved(order(1), 4)])
        .when(release(order(1)))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![released(order(1), 4)]));
            assert_eq!(state.reserved(), 0);
            assert_eq!(state.available(), 10);
            // A closed reservation leaves the state for the archive.
            assert_eq!(state.reservation(order(1)), None);
            assert_eq!(
                Product::archive_key(&released(order(1), 4)),
                Some(order(1).to_string())
            );
        });
}

#[test]
fn release_of_an_unknown_reservation_is_accepted_with_no_events() {
    AggregateTest::<Product>::given(vec![added(10), reserved(order(1), 4)])
        .when(release(order(2)))
        .then_expect_events(vec![]);
}

#[test]
fn release_of_a_reservation_no_longer_held_is_accepted_with_no_events() {
    let histories = [
        vec![added(10), reserved(order(1), 2), released(order(1), 2)],
        vec![added(10), reserved(order(1), 2), committed(order(1), 2)],
        vec![
            added(10),
            reserved(order(1), 2),
            committed(order(1), 2),
            returned(order(1), 2),
        ],
    ];
    for history in histories {
        AggregateTest::<Product>::given(history)
            .when(release(order(1)))
            .then_expect_events(vec![]);
    }
}

// ---------------------------------------------------------------- commit

#[test]
fn commit_of_a_held_reservation_removes_the_units_from_stock() {
    AggregateTest::<Product>::given(vec![added(10), reserved(order(1), 4)])
        .when(commit(order(1)))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![committed(order(1), 4)]));
            assert_eq!(state.on_hand(), 6);
            assert_eq!(state.reserved(), 0);
            assert_eq!(state.available(), 6);
            assert_eq!(state.total_committed(), 4);
        });
}

#[test]
fn commit_without_a_reservation_is_rejected() {
    AggregateTest::<Product>::given(vec![added(10)])
        .when(commit(order(1)))
        .then_expect_rejection_value(InventoryRejection::NotReserved(order(1)));
}

#[test]
fn commit_of_a_reservation_no_longer_held_is_rejected() {
    let histories = [
        vec![added(10), reserved(order(1), 2), released(order(1), 2)],
        vec![added(10), reserved(order(1), 2), committed(order(1), 2)],
        vec![
            added(10),
            reserved(order(1), 2),
            committed(order(1), 2),
            returned(order(1), 2),
        ],
    ];
    for history in histories {
        AggregateTest::<Product>::given(history)
            .when(commit(order(1)))
            .then_expect_rejection("not_reserved");
    }
}

// ---------------------------------------------------------------- return

#[test]
fn return_of_committed_units_puts_them_back_on_hand() {
    AggregateTest::<Product>::given(vec![
        added(10),
        reserved(order(1), 4),
        committed(order(1), 4),
    ])
    .when(return_(order(1)))
    .then_inspect(|result, state| {
        assert_eq!(result, &Ok(vec![returned(order(1), 4)]));
        assert_eq!(state.on_hand(), 10);
        assert_eq!(state.available(), 10);
        assert_eq!(state.total_returned(), 4);
    });
}

#[test]
fn return_of_uncommitted_units_is_rejected() {
    let histories = [
        vec![added(10)],
        vec![added(10), reserved(order(1), 2)],
        vec![added(10), reserved(order(1), 2), released(order(1), 2)],
    ];
    for history in histories {
        AggregateTest::<Product>::given(history)
            .when(return_(order(1)))
            .then_expect_rejection_value(InventoryRejection::NotCommitted(order(1)));
    }
}

#[test]
fn return_twice_is_rejected() {
    AggregateTest::<Product>::given(vec![
        added(10),
        reserved(order(1), 4),
        committed(order(1), 4),
        returned(order(1), 4),
    ])
    .when(return_(order(1)))
    .then_expect_rejection("not_committed");
}

#[test]
fn return_overflowing_on_hand_is_rejected() {
    AggregateTest::<Product>::given(vec![
        added(10),
        reserved(order(1), 4),
        committed(order(1), 4),
        restocked(u64::MAX - 6),
    ])
    .when(return_(order(1)))
    .then_expect_rejection("quantity_overflow");
}

// ---------------------------------------------------------------- invariants

#[test]
fn stock_counters_add_up_after_a_sequence_of_events() {
    let state = Product::from_events(&[
        added(10),
        restocked(5),
        reserved(order(1), 4),
        reserved(order(2), 3),
        reserved(order(3), 2),
        committed(order(1), 4),
        released(order(2), 3),
        committed(order(3), 2),
        returned(order(3), 2),
        reserved(order(4), 6),
    ]);
    assert_eq!(state.on_hand(), 11);
    assert_eq!(state.reserved(), 6);
    assert_eq!(state.available(), 5);
    assert_eq!(state.initial_stock(), 10);
    assert_eq!(state.total_restocked(), 5);
    assert_eq!(state.total_committed(), 6);
    assert_eq!(state.total_returned(), 2);
    assert_eq!(
        state.on_hand(),
        state.initial_stock() + state.total_restocked() + state.total_returned()
            - state.total_committed()
    );
    // Only the open reservation stays: the state follows open orders, not
    // history.
    let states: Vec<_> = state.reservations().values().map(|r| r.state).collect();
    assert_eq!(states, vec![ReservationState::Held]);
}

// ---------------------------------------------------------------- properties

fn quantity() -> impl Strategy<Value = u64> {
    prop_oneof![0..20u64, Just(u64::MAX), Just(u64::MAX - 1)]
}

fn any_event() -> impl Strategy<Value = InventoryEvent> {
    prop_oneof![
        quantity().prop_map(added),
        quantity().prop_map(restocked),
        (0..4u128, quantity()).prop_map(|(o, q)| reserved(order(o), q)),
        (0..4u128, quantity()).prop_map(|(o, q)| released(order(o), q)),
        (0..4u128, quantity()).prop_map(|(o, q)| committed(order(o), q)),
        (0..4u128, quantity()).prop_map(|(o, q)| returned(order(o), q)),
    ]
}

fn any_command() -> impl Strategy<Value = InventoryCommand> {
    prop_oneof![
        1 => quantity().prop_map(restock),
        4 => (0..6u128, quantity()).prop_map(|(o, q)| reserve(order(o), q)),
        2 => (0..6u128).prop_map(|o| release(order(o))),
        2 => (0..6u128).prop_map(|o| commit(order(o))),
        2 => (0..6u128).prop_map(|o| return_(order(o))),
    ]
}

proptest! {
    #[test]
    fn apply_never_panics_on_any_event_sequence(
        events in prop::collection::vec(any_event(), 0..40)
    ) {
        let state = Product::from_events(&events);
        prop_assert!(state.available() <= state.on_hand());
        prop_assert_eq!(Product::from_events(&events), state);
    }

    #[test]
    fn decided_events_keep_the_stock_invariants(
        stock in 0..30u64,
        commands in prop::collection::vec(any_command(), 0..40)
    ) {
        let mut state = Product::from_events(&[added(stock)]);
        let mut archive = std::collections::HashMap::new();
        for command in &commands {
            if let Ok(events) = decide_recalled(&state, &archive, command) {
                for event in &events {
                    state.apply(event);
                    if let Some(key) = Product::archive_key(event) {
                        archive.insert(key, event.clone());
                    }
                }
            }
            let on_hand = u128::from(state.initial_stock())
                + u128::from(state.total_restocked())
                + u128::from(state.total_returned())
                - u128::from(state.total_committed());
            prop_assert_eq!(u128::from(state.on_hand()), on_hand);
            let held: u64 = state
                .reservations()
                .values()
                .filter(|r| r.state == ReservationState::Held)
                .map(|r| r.quantity)
                .sum();
            prop_assert_eq!(state.reserved(), held);
            prop_assert!(state.reserved() <= state.on_hand());
        }
    }
}
