//! Per-aggregate order through the consumer, under retries.
//!
//! A router mailbox of one means that, of the many aggregates the consumer
//! works on at once, all but one are refused as overloaded and retried with
//! a back-off. A retried command must never be overtaken by a later command
//! for the same aggregate: each user's stream must hold its registration and
//! then its deposits exactly in the order they were produced.

mod support;

use ordersaga::node::{self, NodeOptions};
use ordersaga_events::codec::Format;
use ordersaga_events::topics::{Service, USERS_COMMANDS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, UserId};
use support::{producer, send, Probe, TestBroker};

const USERS: usize = 8;
const DEPOSITS: u64 = 6;
const REPLIES: &str = "order.replies";

#[actix_rt::test]
async fn retried_commands_are_never_overtaken_by_later_ones_for_the_same_aggregate() {
    let broker = TestBroker::from_env();
    let kafka = broker.users_topics(&[REPLIES]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = NodeOptions::new(kafka.clone(), dir.path());
    // One command in the service at a time: every other one in flight is
    // refused as overloaded and retried.
    options.service.router_mailbox = 1;
    // Enough attempts that none runs out: this test is about order, and a
    // dead-lettered command would hide a reordering.
    options.consumer.attempts = 1_000;
    let running = node::start(Service::Users, &options)
        .await
        .expect("start users");

    // Given each user's registration and deposits of 1, 2, 3… cents,
    // produced in that order on the user's key (interleaved across users),
    let producer = producer(&kafka);
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
    let send_to = |user_id: UserId, command: UserCommand| {
        let producer = &producer;
        let kafka = &kafka;
        async move {
            let envelope = CommandEnvelope::new(command).reply_to(REPLIES);
            let key = user_id.to_string();
            send(
                producer,
                kafka,
                USERS_COMMANDS,
                &key,
                &envelope,
                Format::Bincode,
            )
            .await;
        }
    };
    for user_id in &users {
        let register = UserCommand::Register {
            user_id: *user_id,
            email: format!("{user_id}@example.com"),
            username: "in order".into(),
            password: Password::new("a long password"),
        };
        send_to(*user_id, register).await;
    }
    for amount in 1..=DEPOSITS {
        for user_id in &users {
            let deposit = UserCommand::Deposit {
                user_id: *user_id,
                amount: Cents(amount),
            };
            send_to(*user_id, deposit).await;
        }
    }

    // when the service has answered every command,
    let expected = USERS * (1 + DEPOSITS as usize);
    Probe::new(&kafka, REPLIES).at_least(expected).await;

    // then every stream holds them in the order they were produced.
    for user_id in &users {
        support::assert_registered_then_deposits(running.journal(), *user_id, DEPOSITS);
    }
    running.stop().await;
}
