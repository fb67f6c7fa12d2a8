//! The broker goes away for several seconds while commands are in flight and
//! comes back: every command is applied once and every event published.
//!
//! On the embedded broker the outage is the mock cluster's broker going down.
//! With `ORDERSAGA_TEST_BROKERS` set (a real broker is available), the test
//! runs its own Tansu with sqlite storage, kills it and starts it again on
//! the same file.

mod support;

use ordersaga::node::{self, NodeOptions};
use ordersaga_actors::aggregates::User;
use ordersaga_actors::recovery::replay;
use ordersaga_events::codec::{decode, decode_event, Format};
use ordersaga_events::topics::{Service, DEADLETTER, USERS_COMMANDS, USERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand, UserEvent};
use ordersaga_events::{Cents, CommandEnvelope, EventId, Reply, UserId};
use rdkafka::message::Message;
use std::collections::HashSet;
use std::time::Duration;
use support::{producer, send, Outage, Probe};

const REPLIES: &str = "outage.replies";
const USERS: usize = 3;
const DEPOSITS: usize = 150;
/// How long the broker stays away: the scenario itself, not a synchronisation.
const OUTAGE: Duration = Duration::from_secs(4);

#[actix_rt::test]
async fn a_broker_outage_delays_but_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut outage = Outage::from_env(dir.path());
    let kafka = outage.kafka("outage");
    outage
        .create_topics(&kafka, &[USERS_COMMANDS, USERS_EVENTS, DEADLETTER, REPLIES])
        .await;
    let data = dir.path().join("data");
    let running = node::start(Service::Users, &NodeOptions::new(kafka.clone(), &data))
        .await
        .expect("start users");

    let producer = producer(&kafka);
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
    let mut expected = [0u64; USERS];
    let mut commands = Vec::new();
    for (i, user_id) in users.iter().enumerate() {
        commands.push((
            *user_id,
            CommandEnvelope::new(UserCommand::Register {
                user_id: *user_id,
                email: format!("outage{i}@example.com"),
                username: format!("user {i}"),
                password: Password::new("a long password"),
            })
            .reply_to(REPLIES),
        ));
    }
    for n in 0..DEPOSITS {
        let i = n % USERS;
        expected[i] += 10 + n as u64;
        commands.push((
            users[i],
            CommandEnvelope::new(UserCommand::Deposit {
                user_id: users[i],
                amount: Cents(10 + n as u64),
            })
            .reply_to(REPLIES),
        ));
    }
    // The registrations and half the deposits go before the outage; the rest
    // are produced while the broker is away (their delivery waits for it).
    let first_half = USERS + DEPOSITS / 2;
    for (user_id, command) in &commands[..first_half] {
        send(
            &producer,
            &kafka,
            USERS_COMMANDS,
            &user_id.to_string(),
            command,
            Format::Bincode,
        )
        .await;
    }

    let distinct = |seen: &[rdkafka::message::OwnedMessage]| -> usize {
        seen.iter()
            .filter_map(|m| decode::<Reply>(m.payload()?).ok())
            .map(|r| r.command_id)
            .collect::<HashSet<_>>()
            .len()
    };
    let mut replies = Probe::new(&kafka, REPLIES);
    replies
        .until("the first replies", |seen| distinct(seen) >= 10)
        .await;

    outage.down();
    let late: Vec<_> = commands[first_half..].to_vec();
    let (late_kafka, late_producer) = (kafka.clone(), producer.clone());
    let sending = actix_rt::spawn(async move {
        for (user_id, command) in &late {
            send(
                &late_producer,
                &late_kafka,
                USERS_COMMANDS,
                &user_id.to_string(),
                command,
                Format::Bincode,
            )
            .await;
        }
    });
    tokio::time::sleep(OUTAGE).await;
    outage.up();
    sending.await.unwrap();

    replies
        .until("every reply after the outage", |seen| {
            distinct(seen) == commands.len()
        })
        .await;
    for (i, user_id) in users.iter().enumerate() {
        let state = replay::<User>(running.journal(), user_id.as_uuid(), None).unwrap();
        assert_eq!(
            state.state.balance(),
            Cents(expected[i]),
            "user {i}: each deposit once"
        );
    }
    let stored = running.journal().log_head() - 1;
    assert_eq!(stored as usize, commands.len());
    let mut events = Probe::new(&kafka, USERS_EVENTS);
    events
        .until("every event", |seen| {
            seen.iter()
                .filter_map(|m| decode_event::<UserEvent>(m.payload()?).ok())
                .map(|e| e.event_id)
                .collect::<HashSet<EventId>>()
                .len()
                == commands.len()
        })
        .await;
    running.stop().await;
}
