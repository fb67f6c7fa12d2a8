//! A service process killed (SIGKILL) in the middle of a stream of commands
//! and started again loses no command, applies none twice, and every event it
//! stored reaches the events topic (duplicates there carry the same event id).

mod support;

use ordersaga_actors::aggregates::User;
use ordersaga_actors::recovery::{decode_stored, replay};
use ordersaga_actors::Journal;
use ordersaga_events::codec::{decode, decode_event, Format};
use ordersaga_events::topics::{USERS_COMMANDS, USERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand, UserEvent};
use ordersaga_events::{Cents, CommandEnvelope, EventId, Reply, StreamKind, UserId};
use rdkafka::message::Message;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use support::{producer, send, Probe, TestBroker};

const REPLIES: &str = "restart.replies";
const USERS: usize = 5;
const DEPOSITS: usize = 300;

fn serve(kafka: &ordersaga::kafka::KafkaConfig, data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .args(["serve", "users", "--brokers", &kafka.brokers, "--data"])
        .arg(data)
        .args(["--namespace", kafka.namespace.as_deref().unwrap()])
        .args(["--partitions", &kafka.partitions.to_string()])
        // Topics are made by the test, so this also works on the embedded
        // broker, which has no CreateTopics API.
        .arg("--no-create-topics")
        .args(support::restart_args())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ordersaga serve")
}

fn distinct_replies(seen: &[rdkafka::message::OwnedMessage]) -> HashSet<uuid::Uuid> {
    seen.iter()
        .filter_map(|m| decode::<Reply>(m.payload()?).ok())
        .map(|r| r.command_id.as_uuid())
        .collect()
}

#[actix_rt::test]
async fn a_killed_service_resumes_without_losing_or_repeating_commands() {
    let broker = TestBroker::from_env();
    let kafka = broker.users_topics(&[REPLIES]).await;
    let dir = tempfile::tempdir().unwrap();
    let producer = producer(&kafka);

    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
    let mut expected = [0u64; USERS];
    let mut commands = Vec::new();
    for (i, user_id) in users.iter().enumerate() {
        commands.push((
            *user_id,
            CommandEnvelope::new(UserCommand::Register {
                user_id: *user_id,
                email: format!("restart{i}@example.com"),
                username: format!("user {i}"),
                password: Password::new("a long password"),
            })
            .reply_to(REPLIES),
        ));
    }
    for n in 0..DEPOSITS {
        let i = n % USERS;
        let amount = 1 + n as u64;
        expected[i] += amount;
        commands.push((
            users[i],
            CommandEnvelope::new(UserCommand::Deposit {
                user_id: users[i],
                amount: Cents(amount),
            })
            .reply_to(REPLIES),
        ));
    }
    for (user_id, command) in &commands {
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

    let mut replies = Probe::new(&kafka, REPLIES);
    let mut child = serve(&kafka, dir.path());
    replies
        .until("a third of the replies", |seen| {
            distinct_replies(seen).len() >= commands.len() / 3
        })
        .await;
    child.kill().expect("SIGKILL the service");
    child.wait().unwrap();

    let mut child = serve(&kafka, dir.path());
    replies
        .until("every reply", |seen| {
            distinct_replies(seen).len() == commands.len()
        })
        .await;
    // A clean stop this time: SIGTERM, then exit status 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "a clean stop exits 0");

    let journal = Journal::open_path(dir.path().join("users")).unwrap();
    for (i, user_id) in users.iter().enumerate() {
        let state = replay::<User>(&journal, user_id.as_uuid(), None).unwrap();
        assert_eq!(
            state.state.balance(),
            Cents(expected[i]),
            "user {i}: every deposit once"
        );
        assert_eq!(state.version, 1 + (DEPOSITS / USERS) as u64);
    }

    // Every stored event is on the topic; duplicates share an event id.
    let mut stored: HashSet<EventId> = HashSet::new();
    for item in journal.streams(Some(StreamKind::User)) {
        let (stream, _) = item.unwrap();
        for event in journal.read_stream(&stream, 1) {
            let (sequence, bytes) = event.unwrap();
            stored.insert(
                decode_stored::<User>(&stream, sequence, &bytes)
                    .unwrap()
                    .event_id,
            );
        }
    }
    assert_eq!(stored.len(), commands.len());
    let mut events = Probe::new(&kafka, USERS_EVENTS);
    events
        .until("every stored event", |seen| {
            let published: HashSet<EventId> = seen
                .iter()
                .filter_map(|m| decode_event::<UserEvent>(m.payload()?).ok())
                .map(|e| e.event_id)
                .collect();
            published == stored
        })
        .await;
}
