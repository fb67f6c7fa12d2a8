//! `ordersaga tail`, run as the binary against a running users service:
//! `-e` over the dead-letter topic shows each letter's code and origin;
//! commands, events and replies are decoded (passwords masked); kcat's
//! offsets, `-c` and `--group` pick the records.
//!
//! Runs against the embedded broker, or a real one when
//! `ORDERSAGA_TEST_BROKERS` is set (see `tests/support`).

mod support;

use ordersaga::kafka::KafkaConfig;
use ordersaga::node::{self, NodeOptions, RunningService};
use ordersaga_events::codec::{encode, Format};
use ordersaga_events::topics::{Service, DEADLETTER, USERS_COMMANDS, USERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{CommandEnvelope, UserId};
use rdkafka::producer::FutureRecord;
use std::time::Duration;
use support::cli::ordersaga;
use support::{producer, Probe, TestBroker};

const REPLIES: &str = "tail.replies";

async fn users_service(broker: &TestBroker) -> (KafkaConfig, RunningService, tempfile::TempDir) {
    let kafka = broker.users_topics(&[REPLIES]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = NodeOptions::new(kafka.clone(), dir.path());
    let running = node::start(Service::Users, &options)
        .await
        .expect("start users");
    (kafka, running, dir)
}

/// Produces `payload` to the logical `topic` keyed by `key`; returns where
/// it landed.
async fn produce(kafka: &KafkaConfig, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
    let physical = kafka.name(topic);
    let delivery = producer(kafka)
        .send(
            FutureRecord::to(&physical).key(key).payload(payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce a test record");
    (delivery.partition, delivery.offset)
}

fn register(user_id: UserId) -> CommandEnvelope<UserCommand> {
    CommandEnvelope::new(UserCommand::Register {
        user_id,
        email: format!("{user_id}@example.com"),
        username: "tail tester".into(),
        password: Password::new("a plaintext that must not show"),
    })
    .reply_to(REPLIES)
}

#[actix_rt::test]
async fn tail_to_the_end_of_the_dead_letters_shows_their_codes_and_origins() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = users_service(&broker).await;

    // Three records the service cannot handle, each for its own reason.
    let garbage = produce(
        &kafka,
        USERS_COMMANDS,
        "k-garbage",
        &[0xde, 0xad, 0xbe, 0xef],
    )
    .await;
    let unreadable = br#"{"command_id":"a7fc5d22-9636-4460-abe0-2d39ecb1ab99","correlation_id":"a7fc5d22-9636-4460-abe0-2d39ecb1ab99","reply_to":null,"issued_at":"2026-11-26T12:00:00Z","command":{"Deposit":{"amount":-5}}}"#;
    let invalid = produce(&kafka, USERS_COMMANDS, "k-invalid", unreadable).await;
    let user_id = UserId::new();
    let misdirected = encode(
        Format::Json,
        &CommandEnvelope::new(UserCommand::Deposit {
            user_id,
            amount: ordersaga_events::Cents(1),
        })
        .reply_to(USERS_EVENTS),
    )
    .unwrap();
    let user_key = user_id.to_string();
    let reply_to = produce(&kafka, USERS_COMMANDS, &user_key, &misdirected).await;
    let expected = [
        ("undecodable", garbage, "k-garbage"),
        ("invalid_command", invalid, "k-invalid"),
        ("invalid_reply_to", reply_to, user_key.as_str()),
    ];
    Probe::new(&kafka, DEADLETTER)
        .at_least(expected.len())
        .await;

    let text = ordersaga(&kafka, &["tail", DEADLETTER, "-e"]).await;
    assert!(text.ok, "{}", text.stderr);
    let lines = text.lines();
    assert_eq!(lines.len(), expected.len(), "one line per letter");
    for (code, (partition, offset), key) in expected {
        let origin = format!("from {USERS_COMMANDS}/{partition}/{offset} by users");
        let line = lines
            .iter()
            .find(|l| l.contains(&origin))
            .unwrap_or_else(|| panic!("no line for {origin}"));
        assert!(
            line.contains(&format!(" {key} deadletter {code} ")),
            "{line}"
        );
    }
    let garbage_line = lines
        .iter()
        .find(|l| l.contains(" deadletter undecodable "))
        .unwrap();
    assert!(garbage_line.contains("4 bytes: deadbeef"), "{garbage_line}");
    let invalid_line = lines
        .iter()
        .find(|l| l.contains(" deadletter invalid_command "))
        .unwrap();
    assert!(
        invalid_line.contains("command_id=a7fc5d22"),
        "{invalid_line}"
    );

    let json = ordersaga(&kafka, &["tail", DEADLETTER, "-e", "--json"]).await;
    assert!(json.ok, "{}", json.stderr);
    let records = json.json_lines();
    assert_eq!(records.len(), expected.len());
    for (code, (partition, offset), key) in expected {
        let record = records
            .iter()
            .find(|r| r["type"] == code)
            .unwrap_or_else(|| panic!("no {code} letter"));
        assert_eq!(record["kind"], "deadletter");
        assert_eq!(record["topic"], DEADLETTER);
        assert_eq!(record["key"], key);
        assert_eq!(record["headers"]["deadletter-code"], code);
        let origin = &record["value"]["origin"];
        assert_eq!(origin["topic"], USERS_COMMANDS);
        assert_eq!(origin["partition"], partition);
        assert_eq!(origin["offset"], offset);
        assert_eq!(record["value"]["service"], "users");
        assert_eq!(record["value"]["replayable"], false);
    }
    let garbage = records.iter().find(|r| r["type"] == "undecodable").unwrap();
    assert_eq!(garbage["value"]["original"]["value"]["hex"], "deadbeef");
    let misdirected = records
        .iter()
        .find(|r| r["type"] == "invalid_reply_to")
        .unwrap();
    assert_eq!(misdirected["value"]["original"]["type"], "Deposit");
    running.stop().await;
}

#[actix_rt::test]
async fn tail_decodes_commands_events_and_replies_from_any_start() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = users_service(&broker).await;
    let first = UserId::new();
    let command = register(first);
    let payload = encode(Format::Bincode, &command).unwrap();
    produce(&kafka, USERS_COMMANDS, &first.to_string(), &payload).await;
    let mut replies = Probe::new(&kafka, REPLIES);
    replies.at_least(1).await;
    // Records stamped from here on are "since".
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = UserId::new();
    let payload = encode(Format::Json, &register(second)).unwrap();
    produce(&kafka, USERS_COMMANDS, &second.to_string(), &payload).await;
    replies.at_least(2).await;
    let mut events = Probe::new(&kafka, USERS_EVENTS);
    events.at_least(2).await;

    // Commands: both, decoded, the password masked.
    let commands = ordersaga(&kafka, &["tail", USERS_COMMANDS, "-e", "--json"]).await;
    assert!(commands.ok, "{}", commands.stderr);
    assert!(
        !commands.stdout.contains("plaintext"),
        "{}",
        commands.stdout
    );
    let records = commands.json_lines();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record["kind"], "command");
        assert_eq!(record["type"], "Register");
        assert_eq!(record["value"]["command"]["Register"]["password"], "***");
    }
    let formats: Vec<&str> = records
        .iter()
        .map(|r| r["format"].as_str().unwrap())
        .collect();
    assert!(
        formats.contains(&"bincode") && formats.contains(&"json"),
        "{formats:?}"
    );
    let text = ordersaga(&kafka, &["tail", USERS_COMMANDS, "-e"]).await;
    assert!(!text.stdout.contains("plaintext"), "{}", text.stdout);
    assert!(
        text.lines()
            .iter()
            .any(|l| l.contains(&format!(" {first} command Register ")) && l.contains(REPLIES)),
        "{}",
        text.stdout
    );

    // Events and replies.
    let events = ordersaga(&kafka, &["tail", USERS_EVENTS, "-e", "--json"]).await;
    let events = events.json_lines();
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| e["kind"] == "event" && e["type"] == "Registered"));
    assert_eq!(events[0]["value"]["sequence"], 1);
    let replies = ordersaga(&kafka, &["tail", REPLIES, "-e"]).await;
    assert_eq!(replies.lines().len(), 2);
    assert!(
        replies
            .lines()
            .iter()
            .all(|l| l.contains(" reply accepted [1] ")),
        "{}",
        replies.stdout
    );

    // Where to start, and how many.
    let at_end = ordersaga(&kafka, &["tail", USERS_COMMANDS, "-o", "end", "-e"]).await;
    assert!(at_end.ok && at_end.stdout.is_empty(), "{}", at_end.stdout);
    let one = ordersaga(&kafka, &["tail", USERS_COMMANDS, "-c", "1"]).await;
    assert_eq!(one.lines().len(), 1);
    let last = ordersaga(&kafka, &["tail", USERS_EVENTS, "-o", "-1", "-e", "--json"]).await;
    // The last record of each partition: one per user, both in one
    // partition or each in its own.
    let last = last.json_lines();
    assert!((1..=2).contains(&last.len()), "{last:?}");
    let at = format!("@{}", since.timestamp_millis());
    let recent = ordersaga(&kafka, &["tail", USERS_COMMANDS, "-o", &at, "-e", "--json"]).await;
    assert!(recent.ok, "{}", recent.stderr);
    let recent = recent.json_lines();
    assert_eq!(recent.len(), 1, "only the command sent after the time");
    assert_eq!(recent[0]["key"], second.to_string());
    let bad = ordersaga(&kafka, &["tail", USERS_COMMANDS, "-o", "soon", "-e"]).await;
    assert!(
        !bad.ok && bad.stderr.contains("expected beginning, end"),
        "{}",
        bad.stderr
    );
    let missing = ordersaga(&kafka, &["tail", "no.such.topic", "-e"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("no topic"),
        "{}",
        missing.stderr
    );
    running.stop().await;
}

#[actix_rt::test]
async fn a_group_goes_on_where_its_last_run_stopped() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = users_service(&broker).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let user_id = UserId::new();
        let payload = encode(Format::Json, &register(user_id)).unwrap();
        produce(&kafka, USERS_COMMANDS, &user_id.to_string(), &payload).await;
        keys.push(user_id.to_string());
    }
    let first = ordersaga(
        &kafka,
        &[
            "tail",
            USERS_COMMANDS,
            "--group",
            "ops",
            "-c",
            "1",
            "--json",
        ],
    )
    .await;
    assert!(first.ok, "{}", first.stderr);
    let rest = ordersaga(
        &kafka,
        &["tail", USERS_COMMANDS, "--group", "ops", "-e", "--json"],
    )
    .await;
    assert!(rest.ok, "{}", rest.stderr);
    let mut seen: Vec<String> = first
        .json_lines()
        .iter()
        .chain(rest.json_lines().iter())
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    keys.sort();
    assert_eq!(seen, keys, "every record once across the two runs");
    let refused = ordersaga(
        &kafka,
        &["tail", USERS_COMMANDS, "--group", "ops", "-o", "-1"],
    )
    .await;
    assert!(
        !refused.ok && refused.stderr.contains("--group"),
        "{}",
        refused.stderr
    );
    running.stop().await;
}
