//! The expected values of the golden wire fixtures of commands (as
//! `CommandEnvelope`s), replies and the bare enums `OrderStatus` and
//! `SagaStep`. See `values.rs` for the rules; the same apply here.

use crate::values::{
    at, lines, priced_lines, Named, COMMAND, CORRELATION, ORDER, POLICY, SAGA, USER, WIDGET,
};
use ordersaga_events::inventory::InventoryCommand;
use ordersaga_events::order::{OrderCommand, OrderStatus};
use ordersaga_events::saga::{SagaCommand, SagaStep};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandResult, Outcome, Rejection, Reply, StreamId, StreamKind,
};

fn commands<C>(
    reply_to: Option<&str>,
    commands: Vec<C>,
    name: fn(&C) -> &'static str,
) -> Vec<Named<CommandEnvelope<C>>> {
    let envelope = |command| CommandEnvelope {
        command_id: COMMAND,
        correlation_id: CORRELATION,
        reply_to: reply_to.map(String::from),
        issued_at: at(0),
        command,
    };
    commands
        .into_iter()
        .map(|c| (name(&c), envelope(c)))
        .collect()
}

pub fn user_command_name(c: &UserCommand) -> &'static str {
    match c {
        UserCommand::Register { .. } => "register",
        UserCommand::Deposit { .. } => "deposit",
        UserCommand::Charge { .. } => "charge",
        UserCommand::Refund { .. } => "refund",
        UserCommand::Deactivate { .. } => "deactivate",
        UserCommand::Delete { .. } => "delete",
    }
}

pub fn user_commands() -> Vec<Named<CommandEnvelope<UserCommand>>> {
    let all = vec![
        UserCommand::Register {
            user_id: USER,
            email: "Ada@Example.com".into(),
            username: "Ada ✓".into(),
            // An obviously fake password: fixtures are public.
            password: Password::new("correct horse battery"),
        },
        UserCommand::Deposit {
            user_id: USER,
            amount: Cents(10_000),
        },
        UserCommand::Charge {
            user_id: USER,
            order_id: ORDER,
            amount: Cents(9_000),
        },
        UserCommand::Refund {
            user_id: USER,
            order_id: ORDER,
        },
        UserCommand::Deactivate { user_id: USER },
        UserCommand::Delete { user_id: USER },
    ];
    commands(Some("shop.replies"), all, user_command_name)
}

pub fn inventory_command_name(c: &InventoryCommand) -> &'static str {
    match c {
        InventoryCommand::AddProduct { .. } => "add_product",
        InventoryCommand::Restock { .. } => "restock",
        InventoryCommand::Reserve { .. } => "reserve",
        InventoryCommand::Release { .. } => "release",
        InventoryCommand::Commit { .. } => "commit",
        InventoryCommand::Return { .. } => "return",
    }
}

pub fn inventory_commands() -> Vec<Named<CommandEnvelope<InventoryCommand>>> {
    let (product_id, order_id) = (WIDGET, ORDER);
    let all = vec![
        InventoryCommand::AddProduct {
            product_id,
            sku: "WID-001".into(),
            name: "Widget".into(),
            unit_price: Cents(2500),
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
    commands(Some("orders.saga.replies"), all, inventory_command_name)
}

pub fn order_command_name(c: &OrderCommand) -> &'static str {
    match c {
        OrderCommand::Place { .. } => "place",
        OrderCommand::Price { .. } => "price",
        OrderCommand::Confirm { .. } => "confirm",
        OrderCommand::Cancel { .. } => "cancel",
        OrderCommand::Ship { .. } => "ship",
        OrderCommand::Deliver { .. } => "deliver",
    }
}

pub fn order_commands() -> Vec<Named<CommandEnvelope<OrderCommand>>> {
    let order_id = ORDER;
    let all = vec![
        OrderCommand::Place {
            order_id,
            user_id: USER,
            lines: lines(),
        },
        OrderCommand::Price {
            order_id,
            lines: priced_lines(),
        },
        OrderCommand::Confirm { order_id },
        OrderCommand::Cancel {
            order_id,
            reason: "cancelled_by_user".into(),
        },
        OrderCommand::Ship { order_id },
        OrderCommand::Deliver { order_id },
    ];
    commands(Some("shop.replies"), all, order_command_name)
}

pub fn saga_command_name(c: &SagaCommand) -> &'static str {
    match c {
        SagaCommand::Start { .. } => "start",
        SagaCommand::Reply { .. } => "reply",
        SagaCommand::OrderCancelled { .. } => "order_cancelled",
        SagaCommand::Tick { .. } => "tick",
        SagaCommand::Retry { .. } => "retry",
    }
}

/// Saga commands carry no reply topic: this list covers `reply_to: None`.
pub fn saga_commands() -> Vec<Named<CommandEnvelope<SagaCommand>>> {
    let saga_id = SAGA;
    let all = vec![
        SagaCommand::Start {
            saga_id,
            order_id: ORDER,
            user_id: USER,
            lines: lines(),
            policy: POLICY,
            now: at(1),
        },
        SagaCommand::Reply {
            saga_id,
            reply: reply("accepted_reserved"),
            now: at(2),
        },
        SagaCommand::OrderCancelled {
            saga_id,
            previous: OrderStatus::Pending,
            now: at(3),
        },
        SagaCommand::Tick {
            saga_id,
            now: at(4),
        },
        SagaCommand::Retry {
            saga_id,
            now: at(5),
        },
    ];
    commands(None, all, saga_command_name)
}

pub fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Accepted { .. } => "accepted",
        Outcome::Rejected(_) => "rejected",
    }
}

pub fn result_name(r: &CommandResult) -> &'static str {
    match r {
        CommandResult::Reserved { .. } => "reserved",
        CommandResult::Charged { .. } => "charged",
    }
}

pub fn reply_name(r: &Reply) -> &'static str {
    match (&r.outcome, &r.result) {
        (Outcome::Accepted { .. }, None) => "accepted",
        (Outcome::Accepted { .. }, Some(CommandResult::Reserved { .. })) => "accepted_reserved",
        (Outcome::Accepted { .. }, Some(CommandResult::Charged { .. })) => "accepted_charged",
        (Outcome::Rejected(_), _) => "rejected",
    }
}

fn reply(name: &str) -> Reply {
    let mut all = replies().into_iter();
    all.find(|(n, _)| *n == name).expect("a reply case").1
}

pub fn replies() -> Vec<Named<Reply>> {
    let reply = |stream, outcome, result| Reply {
        command_id: COMMAND,
        correlation_id: CORRELATION,
        stream,
        outcome,
        result,
    };
    let user = StreamId::new(StreamKind::User, USER.as_uuid());
    let product = StreamId::new(StreamKind::Product, WIDGET.as_uuid());
    let all = vec![
        // A valid no-op: accepted, no events, nothing handed back.
        reply(product, Outcome::Accepted { sequences: vec![] }, None),
        reply(
            product,
            Outcome::Accepted { sequences: vec![3] },
            Some(CommandResult::Reserved {
                quantity: 2,
                unit_price: Cents(2500),
            }),
        ),
        reply(
            user,
            Outcome::Accepted {
                sequences: vec![4, 5],
            },
            Some(CommandResult::Charged {
                amount: Cents(9_000),
            }),
        ),
        reply(
            user,
            Outcome::Rejected(Rejection::new(
                "insufficient_funds",
                "insufficient funds: balance 10.00, required 90.00",
            )),
            None,
        ),
    ];
    all.into_iter().map(|r| (reply_name(&r), r)).collect()
}

pub fn order_status_name(s: &OrderStatus) -> &'static str {
    match s {
        OrderStatus::Pending => "pending",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Delivered => "delivered",
        OrderStatus::Cancelled => "cancelled",
    }
}

/// Bare: events carry only some statuses (`Cancelled::previous`).
pub fn order_statuses() -> Vec<Named<OrderStatus>> {
    use OrderStatus::*;
    let all = [Pending, Confirmed, Shipped, Delivered, Cancelled];
    all.into_iter()
        .map(|s| (order_status_name(&s), s))
        .collect()
}

pub fn saga_step_name(s: &SagaStep) -> &'static str {
    match s {
        SagaStep::Reserve(_) => "reserve",
        SagaStep::Price => "price",
        SagaStep::Charge => "charge",
        SagaStep::Confirm => "confirm",
        SagaStep::Commit(_) => "commit",
        SagaStep::Release(_) => "release",
        SagaStep::Return(_) => "return",
        SagaStep::Refund => "refund",
        SagaStep::Cancel => "cancel",
        SagaStep::ReleaseLate(_) => "release_late",
        SagaStep::RefundLate => "refund_late",
    }
}

/// Bare, and all of them inside `SagaEvent::CompensationStarted`.
pub fn saga_steps() -> Vec<Named<SagaStep>> {
    let p = WIDGET;
    let all = [
        SagaStep::Reserve(p),
        SagaStep::Price,
        SagaStep::Charge,
        SagaStep::Confirm,
        SagaStep::Commit(p),
        SagaStep::Release(p),
        SagaStep::Return(p),
        SagaStep::Refund,
        SagaStep::Cancel,
        SagaStep::ReleaseLate(p),
        SagaStep::RefundLate,
    ];
    all.into_iter().map(|s| (saga_step_name(&s), s)).collect()
}
