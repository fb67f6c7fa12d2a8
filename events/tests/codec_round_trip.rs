//! Every command, event and reply type round-trips through bincode and JSON,
//! as bare values and inside their envelopes; random bytes never panic the
//! decoder.

use chrono::Utc;
use ordersaga_events::codec::{decode, decode_event, encode, encode_event, Format};
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::order::{OrderCommand, OrderEvent, OrderLine, OrderStatus, PricedLine};
use ordersaga_events::user::{Password, UserCommand, UserEvent};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, CorrelationId, Envelope, EventId, OrderId, Outcome,
    ProductId, Rejection, Reply, StreamId, StreamKind, UserId, Versioned,
};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

// The `match`es below have no wildcard arm: adding a variant without adding it
// to these fixtures does not compile.

fn user_commands() -> Vec<UserCommand> {
    let (user_id, order_id) = (UserId::new(), OrderId::new());
    let all = vec![
        UserCommand::Register {
            user_id,
            email: "a@example.com".into(),
            username: "ä ✓".into(),
            password: Password::new("secret password"),
        },
        UserCommand::Deposit {
            user_id,
            amount: Cents(u64::MAX),
        },
        UserCommand::Charge {
            user_id,
            order_id,
            amount: Cents(1),
        },
        UserCommand::Refund { user_id, order_id },
        UserCommand::Deactivate { user_id },
        UserCommand::Delete { user_id },
    ];
    for c in &all {
        match c {
            UserCommand::Register { .. }
            | UserCommand::Deposit { .. }
            | UserCommand::Charge { .. }
            | UserCommand::Refund { .. }
            | UserCommand::Deactivate { .. }
            | UserCommand::Delete { .. } => {}
        }
    }
    all
}

fn user_events() -> Vec<UserEvent> {
    let order_id = OrderId::new();
    let all = vec![
        UserEvent::Registered {
            user_id: UserId::new(),
            email: "a@example.com".into(),
            username: "a".into(),
        },
        UserEvent::Deposited { amount: Cents(5) },
        UserEvent::Charged {
            order_id,
            amount: Cents(3),
        },
        UserEvent::Refunded {
            order_id,
            amount: Cents(3),
        },
        UserEvent::Deactivated,
        UserEvent::Deleted {
            email: "a@example.com".into(),
        },
    ];
    for e in &all {
        match e {
            UserEvent::Registered { .. }
            | UserEvent::Deposited { .. }
            | UserEvent::Charged { .. }
            | UserEvent::Refunded { .. }
            | UserEvent::Deactivated
            | UserEvent::Deleted { .. } => {}
        }
    }
    all
}

fn inventory_commands() -> Vec<InventoryCommand> {
    let (product_id, order_id) = (ProductId::new(), OrderId::new());
    let all = vec![
        InventoryCommand::AddProduct {
            product_id,
            sku: "SKU-1".into(),
            name: "Widget".into(),
            unit_price: Cents(999),
            stock: 10,
        },
        InventoryCommand::Restock {
            product_id,
            quantity: 5,
        },
        InventoryCommand::Reserve {
            product_id,
            order_id,
            quantity: 2,
        },
        InventoryCommand::Release {
            product_id,
            order_id,
        },
        InventoryCommand::Commit {
            product_id,
            order_id,
        },
        InventoryCommand::Return {
            product_id,
            order_id,
        },
    ];
    for c in &all {
        match c {
            InventoryCommand::AddProduct { .. }
            | InventoryCommand::Restock { .. }
            | InventoryCommand::Reserve { .. }
            | InventoryCommand::Release { .. }
            | InventoryCommand::Commit { .. }
            | InventoryCommand::Return { .. } => {}
        }
    }
    all
}

fn inventory_events() -> Vec<InventoryEvent> {
    let order_id = OrderId::new();
    let all = vec![
        InventoryEvent::ProductAdded {
            product_id: ProductId::new(),
            sku: "SKU-1".into(),
            name: "Widget".into(),
            unit_price: Cents(999),
            stock: 10,
        },
        InventoryEvent::Restocked { quantity: 5 },
        InventoryEvent::Reserved {
            order_id,
            quantity: 2,
            unit_price: Cents(999),
        },
        InventoryEvent::Released {
            order_id,
            quantity: 2,
        },
        InventoryEvent::Committed {
            order_id,
            quantity: 2,
        },
        InventoryEvent::Returned {
            order_id,
            quantity: 2,
        },
    ];
    for e in &all {
        match e {
            InventoryEvent::ProductAdded { .. }
            | InventoryEvent::Restocked { .. }
            | InventoryEvent::Reserved { .. }
            | InventoryEvent::Released { .. }
            | InventoryEvent::Committed { .. }
            | InventoryEvent::Returned { .. } => {}
        }
    }
    all
}

fn lines() -> (Vec<OrderLine>, Vec<PricedLine>) {
    let product_id = ProductId::new();
    (
        vec![OrderLine {
            product_id,
            quantity: 3,
        }],
        vec![PricedLine {
            product_id,
            quantity: 3,
            unit_price: Cents(250),
        }],
    )
}

fn order_commands() -> Vec<OrderCommand> {
    let order_id = OrderId::new();
    let (placed, priced) = lines();
    let all = vec![
        OrderCommand::Place {
            order_id,
            user_id: UserId::new(),
            lines: placed,
        },
        OrderCommand::Price {
            order_id,
            lines: priced,
        },
        OrderCommand::Confirm { order_id },
        OrderCommand::Cancel {
            order_id,
            reason: "insufficient_funds".into(),
        },
        OrderCommand::Ship { order_id },
        OrderCommand::Deliver { order_id },
    ];
    for c in &all {
        match c {
            OrderCommand::Place { .. }
            | OrderCommand::Price { .. }
            | OrderCommand::Confirm { .. }
            | OrderCommand::Cancel { .. }
            | OrderCommand::Ship { .. }
            | OrderCommand::Deliver { .. } => {}
        }
    }
    all
}

fn order_events() -> Vec<OrderEvent> {
    let (placed, priced) = lines();
    let all = vec![
        OrderEvent::Placed {
            order_id: OrderId::new(),
            user_id: UserId::new(),
            lines: placed,
        },
        OrderEvent::Priced {
            lines: priced,
            total: Cents(750),
        },
        OrderEvent::Confirmed,
        OrderEvent::Cancelled {
            reason: "out_of_stock".into(),
            previous: OrderStatus::Pending,
        },
        OrderEvent::Shipped,
        OrderEvent::Delivered,
    ];
    for e in &all {
        match e {
            OrderEvent::Placed { .. }
            | OrderEvent::Priced { .. }
            | OrderEvent::Confirmed
            | OrderEvent::Cancelled { .. }
            | OrderEvent::Shipped
            | OrderEvent::Delivered => {}
        }
    }
    all
}

fn replies() -> Vec<Reply> {
    let stream = StreamId::new(StreamKind::Order, uuid::Uuid::new_v4());
    [
        Outcome::Accepted {
            sequences: vec![4, 5],
        },
        Outcome::Accepted { sequences: vec![] },
        Outcome::Rejected(Rejection::new(
            "insufficient_funds",
            "balance 1.00, required 2.00",
        )),
    ]
    .into_iter()
    .map(|outcome| Reply {
        command_id: CommandId::new(),
        correlation_id: CorrelationId::new(),
        stream,
        outcome,
        result: None,
    })
    .collect()
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    for format in [Format::Bincode, Format::Json] {
        let bytes = encode(format, value).unwrap();
        let back: T = decode(&bytes).unwrap_or_else(|e| panic!("{format:?} {value:?}: {e}"));
        assert_eq!(&back, value, "{format:?}");
    }
}

fn round_trip_commands<C: Serialize + DeserializeOwned + PartialEq + Debug + Clone>(all: Vec<C>) {
    for command in all {
        round_trip(&command);
        round_trip(&CommandEnvelope::new(command).reply_to("gateway.replies"));
    }
}

fn round_trip_events<E: Versioned + PartialEq + Debug + Clone>(kind: StreamKind, all: Vec<E>) {
    for (i, payload) in all.into_iter().enumerate() {
        round_trip(&payload);
        let envelope = Envelope {
            event_id: EventId::new(),
            stream: StreamId::new(kind, uuid::Uuid::new_v4()),
            sequence: i as u64 + 1,
            recorded_at: Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version: E::SCHEMA_VERSION,
            payload,
        };
        for format in [Format::Bincode, Format::Json] {
            let bytes = encode_event(format, &envelope).unwrap();
            assert_eq!(decode_event::<E>(&bytes).unwrap(), envelope, "{format:?}");
        }
    }
}

#[test]
fn every_command_round_trips() {
    round_trip_commands(user_commands());
    round_trip_commands(inventory_commands());
    round_trip_commands(order_commands());
}

#[test]
fn every_event_round_trips_bare_and_in_its_envelope() {
    round_trip_events(StreamKind::User, user_events());
    round_trip_events(StreamKind::Product, inventory_events());
    round_trip_events(StreamKind::Order, order_events());
}

#[test]
fn every_reply_round_trips() {
    for reply in replies() {
        round_trip(&reply);
    }
}

#[test]
fn a_json_command_from_another_language_decodes() {
    // What a producer in any language sends: bare JSON, no format byte.
    let json = r#"{
        "command_id": "6f1c1f36-3c38-4c8e-9d0e-0d5cf2a1b7a1",
        "correlation_id": "0b7d0f5e-6f8a-4a55-8a63-5c7b8f0f9a10",
        "reply_to": "gateway.replies",
        "issued_at": "2026-11-26T12:00:00Z",
        "command": {"Deposit": {"user_id": "1d2c3b4a-0000-4000-8000-000000000001", "amount": 1250}}
    }"#;
    let envelope: CommandEnvelope<UserCommand> = decode(json.as_bytes()).unwrap();
    assert_eq!(envelope.reply_to.as_deref(), Some("gateway.replies"));
    assert!(matches!(
        envelope.command,
        UserCommand::Deposit {
            amount: Cents(1250),
            ..
        }
    ));
}

#[test]
fn a_password_never_shows_in_debug_output() {
    let command = &user_commands()[0];
    assert!(!format!("{command:?}").contains("secret password"));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<CommandEnvelope<UserCommand>>(&bytes);
        let _ = decode::<CommandEnvelope<OrderCommand>>(&bytes);
        let _ = decode::<CommandEnvelope<InventoryCommand>>(&bytes);
        let _ = decode::<Reply>(&bytes);
        let _ = decode_event::<UserEvent>(&bytes);
        let _ = decode_event::<OrderEvent>(&bytes);
        let _ = decode_event::<InventoryEvent>(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_format_byte_never_panic(
        tag in prop::sample::select(vec![0x01u8, 0x02, b'{']),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(body);
        let _ = decode::<CommandEnvelope<UserCommand>>(&bytes);
        let _ = decode_event::<InventoryEvent>(&bytes);
        let _ = decode_event::<OrderEvent>(&bytes);
    }

    #[test]
    fn truncating_a_valid_record_is_an_error(cut in 0usize..40) {
        let reply = &replies()[2];
        let bytes = encode(Format::Bincode, reply).unwrap();
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(decode::<Reply>(&bytes[..cut]).is_err());
    }
}
