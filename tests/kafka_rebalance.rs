//! A rebalance while commands are in flight.
//!
//! After a rebalance the consumer resumes every partition it keeps at its
//! low-water mark, so the commands still running there are delivered a
//! second time. Each copy must be skipped while its first delivery runs: a
//! copy counted as a new command but finished only once left the consumer's
//! in-flight count too high for good, and a consumer whose count reaches its
//! window stops consuming.

mod support;

use ordersaga::kafka::clients::{self, Membership};
use ordersaga::metrics::metrics;
use ordersaga::node::{self, NodeOptions};
use ordersaga_events::codec::Format;
use ordersaga_events::topics::{Service, USERS_COMMANDS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, UserId};
use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use std::collections::HashSet;
use std::time::Duration;
use support::{producer, send, Probe, TestBroker};

const USERS: usize = 24;
const DEPOSITS: u64 = 3;
const REPLIES: &str = "rebalance.replies";
/// The consumer's window: small, so that it fills at once.
const WINDOW: usize = 16;
/// Most times the scenario is run to see a running command delivered again.
const ROUNDS: u32 = 5;
/// How long any one wait of this test may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// The metrics of the users service's consumer of its command topic.
struct Watched {
    /// The physical topic: the metrics' `topic` label.
    topic: String,
}

impl Watched {
    /// Its in-flight gauge.
    fn in_flight(&self) -> i64 {
        metrics()
            .consumer_in_flight
            .with_label_values(&["users", &self.topic])
            .get()
    }

    /// Copies of running commands it skipped.
    fn skipped(&self) -> u64 {
        metrics()
            .redelivered_in_flight
            .with_label_values(&["users", &self.topic])
            .get()
    }
}

/// Each user's registration, then deposits of 1 to [`DEPOSITS`] cents, the
/// users interleaved.
fn commands_of(users: &[UserId]) -> Vec<UserCommand> {
    let mut commands: Vec<UserCommand> = users
        .iter()
        .map(|user_id| UserCommand::Register {
            user_id: *user_id,
            email: format!("{user_id}@example.com"),
            username: "rebalanced".into(),
            password: Password::new("a long password"),
        })
        .collect();
    for amount in 1..=DEPOSITS {
        commands.extend(users.iter().map(|user_id| UserCommand::Deposit {
            user_id: *user_id,
            amount: Cents(amount),
        }));
    }
    commands
}

/// Checks `holds` every 10 ms until it is true; panics after [`PATIENCE`].
/// (The gauge has no channel to wait on.)
async fn until(what: &str, watched: &Watched, holds: impl Fn(&Watched) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !holds(watched) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; in flight: {}",
            watched.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A second member of the users service's group: its join takes partitions
/// from the service, and its leaving gives them back. It commits nothing.
async fn join_and_leave(kafka: &ordersaga::kafka::KafkaConfig) {
    let membership = Membership {
        group: kafka.name("ordersaga-users"),
        instance_id: None,
        session_timeout: Duration::from_secs(10),
    };
    let intruder: StreamConsumer<DefaultConsumerContext> =
        clients::consumer(kafka, "intruder", &membership, DefaultConsumerContext)
            .expect("an intruding consumer");
    intruder
        .subscribe(&[&kafka.name(USERS_COMMANDS)])
        .expect("subscribe");
    // A record read means the group gave it partitions.
    tokio::time::timeout(PATIENCE, intruder.recv())
        .await
        .expect("the intruder is given partitions in time")
        .expect("the intruder reads a record");
    // Dropping it leaves the group (a dynamic member): a second rebalance.
    drop(intruder);
}

#[actix_rt::test]
async fn commands_in_flight_during_rebalances_are_answered_once_and_the_consumer_keeps_consuming() {
    let broker = TestBroker::from_env();
    let kafka = broker.users_topics(&[REPLIES]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = NodeOptions::new(kafka.clone(), dir.path());
    // One command in the service at a time: the others in the window wait,
    // refused as overloaded and retried with a back-off, so commands stay
    // in flight across the rebalances.
    options.service.router_mailbox = 1;
    options.consumer.attempts = 1_000;
    options.consumer.window = WINDOW;
    // On the embedded broker a rebalance waits a session for the service's
    // static member: the shortest session brokers allow keeps it short.
    // (Tansu rebalances again every session with one that short.)
    if !broker.is_real() {
        options.consumer.session_timeout = Duration::from_secs(6);
    }
    let running = node::start(Service::Users, &options)
        .await
        .expect("start users");

    // Whether a command still runs when the service gets its partitions
    // back depends on timing (a loaded machine can drain the window first),
    // so the scenario is repeated, each time with fresh users, until a
    // running command was delivered again. Every round checks everything.
    let watched = Watched {
        topic: kafka.name(USERS_COMMANDS),
    };
    let producer = producer(&kafka);
    let mut replies = Probe::new(&kafka, REPLIES);
    for round in 1..=ROUNDS {
        // Given more commands than the consumer's window, each user's
        // registration then deposits of 1, 2, 3 cents,
        let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
        let mut sent = HashSet::new();
        for command in commands_of(&users) {
            let key = match &command {
                UserCommand::Register { user_id, .. } | UserCommand::Deposit { user_id, .. } => {
                    user_id.to_string()
                }
                other => panic!("unexpected {other:?}"),
            };
            let envelope = CommandEnvelope::new(command).reply_to(REPLIES);
            sent.insert(envelope.command_id.as_uuid());
            send(
                &producer,
                &kafka,
                USERS_COMMANDS,
                &key,
                &envelope,
                Format::Bincode,
            )
            .await;
        }
        // and a full window in flight,
        until("a full window", &watched, |w| {
            w.in_flight() >= WINDOW as i64
        })
        .await;

        // when another member joins the group and leaves it again,
        join_and_leave(&kafka).await;

        // then every command is answered (a command run again after a
        // rebalance is answered again: count distinct ones),
        replies
            .until("a reply to every command", |seen| {
                sent.is_subset(&support::answered(seen))
            })
            .await;
        // nothing is left in flight,
        until("nothing in flight", &watched, |w| w.in_flight() == 0).await;
        // and each stream holds its commands once, in the order produced.
        for user_id in &users {
            support::assert_registered_then_deposits(running.journal(), *user_id, DEPOSITS);
        }
        // The embedded broker hands the service back partitions while
        // commands still run there. Tansu leaves the service none while the
        // other member is in the group, so one round is all it needs.
        if watched.skipped() > 0 || broker.is_real() {
            break;
        }
        eprintln!("round {round}: the window drained before the rebalance ended; again");
    }
    // The records still running were delivered again and skipped.
    assert!(
        watched.skipped() > 0 || broker.is_real(),
        "in {ROUNDS} rounds the rebalances delivered no running command again: \
         the test proved nothing"
    );
    running.stop().await;
}
