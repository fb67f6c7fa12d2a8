//! Given/when/then tests for every rule of the user aggregate.

use ordersaga_actors::aggregates::{
    verify_password, ChargeRecord, User, UserStatus, EMAIL_INDEX, PASSWORD_SECRET,
};
use ordersaga_actors::testing::AggregateTest;
use ordersaga_actors::{Aggregate, UniqueChange};
use ordersaga_events::reply::ReasonCode;
use ordersaga_events::topics::Service;
use ordersaga_events::user::{Password, UserCommand, UserEvent, UserRejection};
use ordersaga_events::{Cents, OrderId, StreamKind, UserId};
use proptest::prelude::*;
use uuid::Uuid;

const EMAIL: &str = "alice@example.com";
const PASSWORD: &str = "correct horse battery staple";

fn user() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn order(n: u128) -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(n))
}

fn register(email: &str, username: &str, password: &str) -> UserCommand {
    UserCommand::Register {
        user_id: user(),
        email: email.to_owned(),
        username: username.to_owned(),
        password: Password::new(password),
    }
}

/// A `Registered` event.
fn registered() -> UserEvent {
    UserEvent::Registered {
        user_id: user(),
        email: EMAIL.to_owned(),
        username: "alice".to_owned(),
    }
}

fn deposited(amount: u64) -> UserEvent {
    UserEvent::Deposited {
        amount: Cents(amount),
    }
}

fn charged(order_id: OrderId, amount: u64) -> UserEvent {
    UserEvent::Charged {
        order_id,
        amount: Cents(amount),
    }
}

fn refunded(order_id: OrderId, amount: u64) -> UserEvent {
    UserEvent::Refunded {
        order_id,
        amount: Cents(amount),
    }
}

fn deleted() -> UserEvent {
    UserEvent::Deleted {
        email: EMAIL.to_owned(),
    }
}

fn deposit(amount: u64) -> UserCommand {
    UserCommand::Deposit {
        user_id: user(),
        amount: Cents(amount),
    }
}

fn charge(order_id: OrderId, amount: u64) -> UserCommand {
    UserCommand::Charge {
        user_id: user(),
        order_id,
        amount: Cents(amount),
    }
}

fn refund(order_id: OrderId) -> UserCommand {
    UserCommand::Refund {
        user_id: user(),
        order_id,
    }
}

fn deactivate() -> UserCommand {
    UserCommand::Deactivate { user_id: user() }
}

fn delete() -> UserCommand {
    UserCommand::Delete { user_id: user() }
}

// ---------------------------------------------------------------- identity

#[test]
fn aggregate_identity() {
    assert_eq!(User::KIND, StreamKind::User);
    assert_eq!(User::SERVICE, Service::Users);
    assert_eq!(User::aggregate_id(&deposit(1)), user().as_uuid());
    assert_eq!(User::aggregate_id(&refund(order(9))), user().as_uuid());
}

// ---------------------------------------------------------------- register

/// `command` after the service's blocking-pool step (the password hashed).
fn prepared(mut command: UserCommand) -> UserCommand {
    User::prepare(&mut command).expect("prepared");
    command
}

/// The password hash a decision stores as a secret.
fn stored_hash(command: &UserCommand, events: &[UserEvent]) -> String {
    match User::secrets(command, events).as_slice() {
        [(name, Some(hash))] if *name == PASSWORD_SECRET => {
            String::from_utf8(hash.clone()).unwrap()
        }
        other => panic!("expected one password secret, got {other:?}"),
    }
}

#[test]
fn register_keeps_a_salted_argon2id_hash_as_a_secret_never_in_the_event() {
    // Given a registration hashed off the actor,
    let command = prepared(register(EMAIL, "alice", PASSWORD));
    // when it is decided,
    let events = User::default().decide(&command).expect("accepted");
    // then the event carries who registered, and no credential at all,
    assert_eq!(
        events,
        vec![UserEvent::Registered {
            user_id: user(),
            email: EMAIL.to_owned(),
            username: "alice".to_owned(),
        }]
    );
    // and the hash goes to the store's secrets.
    let hash = stored_hash(&command, &events);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    assert!(verify_password(&hash, PASSWORD));
    assert!(!verify_password(&hash, "wrong password"));
    assert!(!verify_password(&hash, ""));
    // Neither the plaintext nor the hash shows in a log of the command.
    let logged = format!("{command:?}");
    assert!(
        !logged.contains(PASSWORD) && !logged.contains("argon2"),
        "{logged}"
    );

    let state = User::from_events(&events);
    assert_eq!(state.status(), UserStatus::Active);
    assert!(state.is_registered());
    assert_eq!(state.user_id(), Some(user()));
    assert_eq!(state.balance(), Cents::ZERO);
}

#[test]
fn register_salts_each_hash_differently() {
    let hash = || {
        let command = prepared(register(EMAIL, "alice", PASSWORD));
        let events = User::default().decide(&command).expect("accepted");
        stored_hash(&command, &events)
    };
    assert_ne!(hash(), hash());
}

#[test]
fn delete_clears_the_password_secret() {
    let events = vec![UserEvent::Deleted {
        email: EMAIL.to_owned(),
    }];
    let delete = UserCommand::Delete { user_id: user() };
    assert_eq!(
        User::secrets(&delete, &events),
        vec![(PASSWORD_SECRET, None)]
    );
}

#[test]
fn decide_is_pure_the_hash_is_made_before_it() {
    // Given a registration prepared once (hashed off the actor),
    // when it is decided twice, then both decisions are the same: decide
    // itself draws no salt and hashes nothing.
    let mut command = register(EMAIL, "alice", PASSWORD);
    User::prepare(&mut command).expect("prepared");
    let state = User::default();
    assert_eq!(state.decide(&command), state.decide(&command));
    // An unprepared registration is an internal error, never a plaintext
    // stored as if it were a hash.
    let unprepared = state.decide(&register(EMAIL, "alice", PASSWORD));
    assert_eq!(
        unprepared.map_err(|r| r.code()),
        Err("internal_error"),
        "decide must not hash"
    );
    // An invalid one is refused without paying for a hash.
    let mut weak = register(EMAIL, "alice", "short");
    User::prepare(&mut weak).expect("left for decide");
    let UserCommand::Register { password, .. } = &weak else {
        unreachable!()
    };
    assert_eq!(password.hash(), None);
    assert_eq!(
        state.decide(&weak).map_err(|r| r.code()),
        Err("weak_password")
    );
}

#[test]
fn register_normalises_email_and_trims_username() {
    AggregateTest::<User>::given_no_previous_events()
        .when(register("  Alice@Example.COM \n", "  alice  ", PASSWORD))
        .then_inspect(|result, state| {
            match &result.as_ref().expect("accepted")[0] {
                UserEvent::Registered {
                    email, username, ..
                } => {
                    assert_eq!(email, "alice@example.com");
                    assert_eq!(username, "alice");
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(state.email(), "alice@example.com");
            assert_eq!(state.username(), "alice");
        });
}

#[test]
fn register_twice_is_rejected() {
    AggregateTest::<User>::given(vec![registered()])
        .when(register("other@example.com", "bob", PASSWORD))
        .then_expect_rejection("already_registered");
}

#[test]
fn register_after_delete_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deleted()])
        .when(register(EMAIL, "alice", PASSWORD))
        .then_expect_rejection("already_registered");
}

#[test]
fn register_with_invalid_email_is_rejected() {
    let too_long = format!("{}@example.com", "a".repeat(243));
    assert_eq!(too_long.chars().count(), 255);
    for email in [
        "",
        "   ",
        "no-at-sign.example.com",
        "two@@example.com",
        "a@b@example.com",
        "@example.com",
        "alice@",
        "alice@localhost",
        "alice@.example.com",
        "alice@example.com.",
        "al ice@example.com",
        "alice@exa\tmple.com",
        "alice@exa\u{7}mple.com",
        too_long.as_str(),
    ] {
        AggregateTest::<User>::given_no_previous_events()
            .when(register(email, "alice", PASSWORD))
            .then_expect_rejection_value(UserRejection::InvalidEmail(email.to_owned()));
    }
}

#[test]
fn register_accepts_an_email_of_254_characters() {
    let email = format!("{}@example.com", "a".repeat(242));
    assert_eq!(email.chars().count(), 254);
    AggregateTest::<User>::given_no_previous_events()
        .when(register(&email, "alice", PASSWORD))
        .then_inspect(|result, state| {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(state.email(), email);
        });
}

#[test]
fn register_with_invalid_username_is_rejected() {
    let too_long = "u".repeat(65);
    for username in ["", "   ", "ali\u{0}ce", "ali\nce", too_long.as_str()] {
        AggregateTest::<User>::given_no_previous_events()
            .when(register(EMAIL, username, PASSWORD))
            .then_expect_rejection("invalid_username");
    }
}

#[test]
fn register_accepts_a_username_of_64_characters() {
    let username = "é".repeat(64);
    AggregateTest::<User>::given_no_previous_events()
        .when(register(EMAIL, &username, PASSWORD))
        .then_inspect(|result, state| {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(state.username(), username);
        });
}

#[test]
fn register_with_short_password_is_rejected() {
    AggregateTest::<User>::given_no_previous_events()
        .when(register(EMAIL, "alice", "1234567"))
        .then_expect_rejection("weak_password");
}

#[test]
fn register_accepts_a_password_of_8_characters() {
    AggregateTest::<User>::given_no_previous_events()
        .when(register(EMAIL, "alice", "12345678"))
        .then_inspect(|result, _| assert!(result.is_ok(), "{result:?}"));
    let command = prepared(register(EMAIL, "alice", "12345678"));
    let events = User::default().decide(&command).expect("accepted");
    assert!(verify_password(&stored_hash(&command, &events), "12345678"));
}

#[test]
fn verify_password_is_false_for_an_unparseable_hash() {
    assert!(!verify_password("", PASSWORD));
    assert!(!verify_password("$argon2id$placeholder", PASSWORD));
}

// ---------------------------------------------------------------- deposit

#[test]
fn deposit_is_accepted() {
    AggregateTest::<User>::given(vec![registered()])
        .when(deposit(500))
        .then_expect_events(vec![deposited(500)]);
}

#[test]
fn deposit_to_unknown_user_is_rejected() {
    AggregateTest::<User>::given_no_previous_events()
        .when(deposit(500))
        .then_expect_rejection("unknown_user");
}

#[test]
fn deposit_to_deactivated_user_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), UserEvent::Deactivated])
        .when(deposit(500))
        .then_expect_rejection("user_inactive");
}

#[test]
fn deposit_to_deleted_user_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deleted()])
        .when(deposit(500))
        .then_expect_rejection("user_deleted");
}

#[test]
fn deposit_of_zero_is_rejected() {
    AggregateTest::<User>::given(vec![registered()])
        .when(deposit(0))
        .then_expect_rejection("invalid_amount");
}

#[test]
fn deposit_overflowing_the_balance_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deposited(u64::MAX)])
        .when(deposit(1))
        .then_expect_rejection("amount_overflow");
}

#[test]
fn deposit_overflowing_the_deposited_total_is_rejected() {
    // The balance is small again, but the total deposited would wrap.
    AggregateTest::<User>::given(vec![
        registered(),
        deposited(u64::MAX),
        charged(order(1), u64::MAX - 10),
    ])
    .when(deposit(11))
    .then_expect_rejection("amount_overflow");
}

// ---------------------------------------------------------------- charge

#[test]
fn charge_is_accepted() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000)])
        .when(charge(order(1), 400))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![charged(order(1), 400)]));
            assert_eq!(state.balance(), Cents(600));
            // The charge lives in the journal's archive, not in the state.
            assert_eq!(state.charge(order(1)), None);
            assert_eq!(
                User::archive_key(&charged(order(1), 400)),
                Some(order(1).to_string())
            );
        });
}

#[test]
fn charge_of_the_whole_balance_is_accepted() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000)])
        .when(charge(order(1), 1_000))
        .then_expect_events(vec![charged(order(1), 1_000)]);
}

#[test]
fn charge_of_unknown_user_is_rejected() {
    AggregateTest::<User>::given_no_previous_events()
        .when(charge(order(1), 400))
        .then_expect_rejection("unknown_user");
}

#[test]
fn charge_of_deactivated_user_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000), UserEvent::Deactivated])
        .when(charge(order(1), 400))
        .then_expect_rejection("user_inactive");
}

#[test]
fn charge_of_deleted_user_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000), deleted()])
        .when(charge(order(1), 400))
        .then_expect_rejection("user_deleted");
}

#[test]
fn charge_of_zero_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000)])
        .when(charge(order(1), 0))
        .then_expect_rejection("invalid_amount");
}

#[test]
fn second_charge_for_the_same_order_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000), charged(order(1), 400)])
        .when(charge(order(1), 400))
        .then_expect_rejection_value(UserRejection::AlreadyCharged(order(1)));
}

#[test]
fn charge_for_a_refunded_order_is_rejected() {
    AggregateTest::<User>::given(vec![
        registered(),
        deposited(1_000),
        charged(order(1), 400),
        refunded(order(1), 400),
    ])
    .when(charge(order(1), 400))
    .then_expect_rejection("already_charged");
}

#[test]
fn charge_for_another_order_is_accepted() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000), charged(order(1), 400)])
        .when(charge(order(2), 600))
        .then_expect_events(vec![charged(order(2), 600)]);
}

#[test]
fn charge_above_the_balance_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000), charged(order(1), 400)])
        .when(charge(order(2), 601))
        .then_expect_rejection_value(UserRejection::InsufficientFunds {
            balance: Cents(600),
            required: Cents(601),
        });
}

#[test]
fn charge_with_no_funds_is_rejected() {
    AggregateTest::<User>::given(vec![registered()])
        .when(charge(order(1), 1))
        .then_expect_rejection("insufficient_funds");
}

// ---------------------------------------------------------------- refund

#[test]
fn refund_returns_the_whole_charge() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000), charged(order(1), 400)])
        .when(refund(order(1)))
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![refunded(order(1), 400)]));
            assert_eq!(state.balance(), Cents(1_000));
            assert_eq!(state.charge(order(1)), None);
        });
}

#[test]
fn refund_of_unknown_user_is_rejected() {
    AggregateTest::<User>::given_no_previous_events()
        .when(refund(order(1)))
        .then_expect_rejection("unknown_user");
}

#[test]
fn refund_without_a_charge_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deposited(1_000), charged(order(1), 400)])
        .when(refund(order(2)))
        .then_expect_rejection_value(UserRejection::NoCharge(order(2)));
}

#[test]
fn second_refund_is_rejected() {
    AggregateTest::<User>::given(vec![
        registered(),
        deposited(1_000),
        charged(order(1), 400),
        refunded(order(1), 400),
    ])
    .when(refund(order(1)))
    .then_expect_rejection_value(UserRejection::AlreadyRefunded(order(1)));
}

#[test]
fn refund_to_deactivated_user_is_accepted() {
    AggregateTest::<User>::given(vec![
        registered(),
        deposited(1_000),
        charged(order(1), 400),
        UserEvent::Deactivated,
    ])
    .when(refund(order(1)))
    .then_expect_events(vec![refunded(order(1), 400)]);
}

#[test]
fn refund_to_deleted_user_is_accepted() {
    AggregateTest::<User>::given(vec![
        registered(),
        deposited(1_000),
        charged(order(1), 400),
        deleted(),
    ])
    .when(refund(order(1)))
    .then_expect_events(vec![refunded(order(1), 400)]);
}

// ---------------------------------------------------------------- deactivate

#[test]
fn deactivate_is_accepted() {
    AggregateTest::<User>::given(vec![registered()])
        .when(deactivate())
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![UserEvent::Deactivated]));
            assert_eq!(state.status(), UserStatus::Deactivated);
        });
}

#[test]
fn deactivate_unknown_user_is_rejected() {
    AggregateTest::<User>::given_no_previous_events()
        .when(deactivate())
        .then_expect_rejection("unknown_user");
}

#[test]
fn deactivate_twice_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), UserEvent::Deactivated])
        .when(deactivate())
        .then_expect_rejection("user_inactive");
}

#[test]
fn deactivate_deleted_user_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deleted()])
        .when(deactivate())
        .then_expect_rejection("user_deleted");
}

// ---------------------------------------------------------------- delete

#[test]
fn delete_active_user_releases_the_email() {
    AggregateTest::<User>::given(vec![registered()])
        .when(delete())
        .then_inspect(|result, state| {
            assert_eq!(result, &Ok(vec![deleted()]));
            assert_eq!(state.status(), UserStatus::Deleted);
            assert!(state.is_registered());
        });
}

#[test]
fn delete_deactivated_user_is_accepted() {
    AggregateTest::<User>::given(vec![registered(), UserEvent::Deactivated])
        .when(delete())
        .then_expect_events(vec![deleted()]);
}

#[test]
fn delete_unknown_user_is_rejected() {
    AggregateTest::<User>::given_no_previous_events()
        .when(delete())
        .then_expect_rejection("unknown_user");
}

#[test]
fn delete_twice_is_rejected() {
    AggregateTest::<User>::given(vec![registered(), deleted()])
        .when(delete())
        .then_expect_rejection("user_deleted");
}

// ---------------------------------------------------------------- uniqueness

#[test]
fn registration_claims_the_email_and_deletion_releases_it() {
    assert_eq!(
        User::unique_changes(&registered()),
        vec![UniqueChange::Claim {
            index: "user-email",
            key: EMAIL.to_owned(),
        }]
    );
    assert_eq!(
        User::unique_changes(&deleted()),
        vec![UniqueChange::Release {
            index: "user-email",
            key: EMAIL.to_owned(),
        }]
    );
    // The index name is part of every stored key of the index: renaming it
    // would free every taken address in existing stores.
    assert_eq!(EMAIL_INDEX, "user-email");
    for event in [
        deposited(1),
        charged(order(1), 1),
        refunded(order(1), 1),
        UserEvent::Deactivated,
    ] {
        assert!(User::unique_changes(&event).is_empty(), "{event:?}");
    }
}

#[test]
fn a_taken_email_is_reported_as_email_taken() {
    assert_eq!(
        User::unique_violation("user-email", EMAIL),
        Some(UserRejection::EmailTaken(EMAIL.to_owned()))
    );
    assert_eq!(User::unique_violation("other-index", EMAIL), None);
}

// ---------------------------------------------------------------- invariants

#[test]
fn balance_is_deposits_minus_charges_plus_refunds() {
    let state = User::from_events(&[
        registered(),
        deposited(1_000),
        charged(order(1), 300),
        deposited(50),
        charged(order(2), 500),
        refunded(order(1), 300),
        UserEvent::Deactivated,
    ]);
    assert_eq!(state.balance(), Cents(550));
    assert_eq!(state.total_deposited(), Cents(1_050));
    assert_eq!(state.total_charged(), Cents(800));
    assert_eq!(state.total_refunded(), Cents(300));
    // Charges do not stay in the state, so it does not grow with orders...
    assert_eq!(state.charge(order(1)), None);
    assert_eq!(state.charge(order(2)), None);
    // ...and one recalled from the archive reads as it was made.
    let mut view = state.clone();
    view.recall(&charged(order(2), 500));
    assert_eq!(
        view.charge(order(2)),
        Some(&ChargeRecord {
            amount: Cents(500),
            refunded: false
        })
    );
    assert_eq!(state.status(), UserStatus::Deactivated);
}

// ---------------------------------------------------------------- properties

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![0..2_000u64, Just(u64::MAX), Just(u64::MAX - 1)]
}

fn any_event() -> impl Strategy<Value = UserEvent> {
    prop_oneof![
        Just(registered()),
        amount().prop_map(deposited),
        (0..4u128, amount()).prop_map(|(o, a)| charged(order(o), a)),
        (0..4u128, amount()).prop_map(|(o, a)| refunded(order(o), a)),
        Just(UserEvent::Deactivated),
        Just(deleted()),
    ]
}

fn any_command() -> impl Strategy<Value = UserCommand> {
    prop_oneof![
        3 => amount().prop_map(deposit),
        3 => (0..4u128, amount()).prop_map(|(o, a)| charge(order(o), a)),
        2 => (0..4u128).prop_map(|o| refund(order(o))),
        1 => Just(deactivate()),
        1 => Just(delete()),
    ]
}

proptest! {
    #[test]
    fn apply_never_panics_on_any_event_sequence(
        events in prop::collection::vec(any_event(), 0..40)
    ) {
        let state = User::from_events(&events);
        // Replay is deterministic: the same events give the same state.
        prop_assert_eq!(User::from_events(&events), state);
    }

    #[test]
    fn decided_events_keep_the_money_invariant(
        commands in prop::collection::vec(any_command(), 0..40)
    ) {
        let mut state = User::from_events(&[registered()]);
        for command in &commands {
            if let Ok(events) = state.decide(command) {
                for event in &events {
                    state.apply(event);
                }
            }
            let expected = u128::from(state.total_deposited().0)
                + u128::from(state.total_refunded().0)
                - u128::from(state.total_charged().0);
            prop_assert_eq!(state.balance().0 as u128, expected);
            prop_assert!(state.total_refunded() <= state.total_charged());
        }
    }
}
