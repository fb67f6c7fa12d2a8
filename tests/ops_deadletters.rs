//! `ordersaga deadletters list|show|replay`, run as the binary against a
//! running users service: a replayable letter (written as a service writes
//! one) goes back to its origin and is applied once, however often it is
//! replayed; letters a replay cannot help are refused; `--dry-run` sends
//! nothing.
//!
//! Runs against the embedded broker, or a real one when
//! `ORDERSAGA_TEST_BROKERS` is set (see `tests/support`).

mod support;

use ordersaga::kafka::deadletter::{self, Origin};
use ordersaga::kafka::{clients, KafkaConfig};
use ordersaga::node::{self, NodeOptions, RunningService};
use ordersaga::ops::deadletters::REPLAYED_FROM;
use ordersaga_actors::aggregates::User;
use ordersaga_actors::recovery::replay;
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::topics::{header, Service, DEADLETTER, USERS_COMMANDS, USERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, CommandId, Reply, UserId};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use std::time::Duration;
use support::cli::ordersaga;
use support::{header_text, producer, Probe, TestBroker};

const REPLIES: &str = "dl.replies";

async fn users_service(broker: &TestBroker) -> (KafkaConfig, RunningService, tempfile::TempDir) {
    let kafka = broker.users_topics(&[REPLIES]).await;
    let dir = tempfile::tempdir().unwrap();
    let options = NodeOptions::new(kafka.clone(), dir.path());
    let running = node::start(Service::Users, &options)
        .await
        .expect("start users");
    (kafka, running, dir)
}

/// Produces a record to the logical `topic`; returns where it landed.
async fn produce(
    kafka: &KafkaConfig,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
) -> (i32, i64) {
    let physical = kafka.name(topic);
    let mut owned = OwnedHeaders::new();
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(value),
        });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(&physical).headers(owned);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    let delivery = producer(kafka)
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("produce a test record");
    (delivery.partition, delivery.offset)
}

/// Writes the dead letter a service writes when it gives up on `command`
/// with `code`, as if it had come from `users.commands` at `origin`, to
/// `partition` of the dead-letter topic (by its key if `None`); returns the
/// letter's `PARTITION:OFFSET`.
async fn write_letter(
    kafka: &KafkaConfig,
    partition: Option<i32>,
    code: &str,
    key: &str,
    command: &[u8],
    origin: (i32, i64),
) -> String {
    let letter = deadletter::record(
        "users",
        &Origin {
            topic: USERS_COMMANDS.into(),
            partition: origin.0,
            offset: origin.1,
        },
        code,
        "store: an injected failure",
        Some(key.as_bytes()),
        Some(command),
        vec![(
            header::CONTENT_TYPE.to_string(),
            Format::Json.content_type().as_bytes().to_vec(),
        )],
    );
    let (partition, offset) = produce(
        kafka,
        DEADLETTER,
        partition,
        letter.key.as_deref(),
        letter.payload.as_deref(),
        &letter.headers,
    )
    .await;
    format!("{partition}:{offset}")
}

/// The end offsets of every partition of the logical `topic`, as the
/// cluster reports them.
fn ends(kafka: &KafkaConfig, topic: &str) -> Vec<i64> {
    let consumer = clients::reader(kafka, "dl-test-ends").unwrap();
    (0..kafka.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(&kafka.name(topic), p, Duration::from_secs(30))
                .unwrap()
                .1
        })
        .collect()
}

/// Waits until the replies seen answer `command_id` `n` times; returns them.
async fn replies_to(probe: &mut Probe, command_id: CommandId, n: usize) -> Vec<Reply> {
    let of = |seen: &[rdkafka::message::OwnedMessage]| -> Vec<Reply> {
        seen.iter()
            .filter_map(|m| decode::<Reply>(m.payload()?).ok())
            .filter(|r| r.command_id == command_id)
            .collect()
    };
    probe
        .until(&format!("{n} replies to {command_id}"), |seen| {
            of(seen).len() >= n
        })
        .await;
    of(&probe.seen)
}

#[actix_rt::test]
async fn a_dead_letter_replayed_after_a_fix_is_processed_once() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = users_service(&broker).await;
    let mut replies = Probe::new(&kafka, REPLIES);
    let user_id = UserId::new();
    let key = user_id.to_string();
    let register = CommandEnvelope::new(UserCommand::Register {
        user_id,
        email: format!("{user_id}@example.com"),
        username: "replayer".into(),
        password: Password::new("a long password"),
    })
    .reply_to(REPLIES);
    let bytes = encode(Format::Json, &register).unwrap();
    produce(
        &kafka,
        USERS_COMMANDS,
        None,
        Some(key.as_bytes()),
        Some(&bytes),
        &[],
    )
    .await;
    replies_to(&mut replies, register.command_id, 1).await;

    // The deposit the service gave up on (its store failed, say), and a
    // letter a replay cannot help.
    let deposit = CommandEnvelope::new(UserCommand::Deposit {
        user_id,
        amount: Cents(1250),
    })
    .reply_to(REPLIES);
    let bytes = encode(Format::Json, &deposit).unwrap();
    let letter = write_letter(&kafka, None, "command_failed", &key, &bytes, (1, 41)).await;
    let hopeless = write_letter(&kafka, None, "invalid_command", &key, b"{}", (1, 42)).await;

    let list = ordersaga(&kafka, &["deadletters", "list", "--json"]).await;
    assert!(list.ok, "{}", list.stderr);
    let listed = list.json_lines();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed
            .iter()
            .find(|l| l["letter"] == letter.as_str())
            .unwrap()["code"],
        "command_failed"
    );
    let only = ordersaga(
        &kafka,
        &["deadletters", "list", "--code", "invalid_command"],
    )
    .await;
    let rows = only.lines();
    assert_eq!(rows.len(), 2, "a heading and one letter");
    assert!(
        rows[1].starts_with(&hopeless) && rows[1].contains("users.commands/1/42"),
        "{}",
        rows[1]
    );
    let show = ordersaga(&kafka, &["deadletters", "show", &letter]).await;
    assert!(show.ok, "{}", show.stderr);
    for expected in [
        "command_failed",
        "store: an injected failure",
        "users.commands partition 1 offset 41",
        "possible, to users.commands",
        "deadletter-service: users",
        "original  command Deposit (json)",
        "\"amount\": 1250",
    ] {
        assert!(
            show.stdout.contains(expected),
            "{expected:?} in\n{}",
            show.stdout
        );
    }

    // A dry run says what it would send, and sends nothing.
    let before = ends(&kafka, USERS_COMMANDS);
    let dry = ordersaga(&kafka, &["deadletters", "replay", &letter, "--dry-run"]).await;
    assert!(dry.ok, "{}", dry.stderr);
    assert!(
        dry.stdout
            .starts_with(&format!("would replay {letter} (command_failed) to ")),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("command Deposit"), "{}", dry.stdout);
    assert_eq!(
        ends(&kafka, USERS_COMMANDS),
        before,
        "a dry run sent something"
    );

    // The fix is in: replay it, then replay it again through a filter.
    let sent = ordersaga(&kafka, &["deadletters", "replay", &letter]).await;
    assert!(sent.ok, "{}", sent.stderr);
    assert!(
        sent.stdout.starts_with(&format!("replayed {letter} ")),
        "{}",
        sent.stdout
    );
    let first = replies_to(&mut replies, deposit.command_id, 1).await;
    assert!(first[0].outcome.is_accepted(), "{:?}", first[0]);
    let again = ordersaga(
        &kafka,
        &[
            "deadletters",
            "replay",
            "--code",
            "command_failed",
            "--json",
        ],
    )
    .await;
    assert!(again.ok, "{}", again.stderr);
    let again = again.json_lines();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["action"], "replayed");
    assert_eq!(again[0]["letter"], letter.as_str());
    let both = replies_to(&mut replies, deposit.command_id, 2).await;
    assert_eq!(both[0], both[1], "the second delivery gets the first reply");

    // Applied once: one event, the balance up once.
    let user = replay::<User>(running.journal(), user_id.as_uuid(), None).unwrap();
    assert_eq!(user.state.balance(), Cents(1250));
    let events = ordersaga(&kafka, &["tail", USERS_EVENTS, "-e", "--json"]).await;
    let deposited: Vec<Value> = events
        .json_lines()
        .into_iter()
        .filter(|e| e["value"]["causation_id"] == deposit.command_id.to_string())
        .collect();
    assert_eq!(deposited.len(), 1, "{deposited:?}");
    assert_eq!(deposited[0]["type"], "Deposited");

    // What went back: the original key, value and headers, and where from.
    let mut commands = Probe::new(&kafka, USERS_COMMANDS);
    commands
        .until("both replays", |seen| {
            seen.iter()
                .filter(|m| header_text(m, REPLAYED_FROM).is_some())
                .count()
                >= 2
        })
        .await;
    for replayed in commands
        .seen
        .iter()
        .filter(|m| header_text(m, REPLAYED_FROM).is_some())
    {
        assert_eq!(header_text(replayed, REPLAYED_FROM), Some(letter.clone()));
        assert_eq!(replayed.key(), Some(key.as_bytes()));
        assert_eq!(replayed.payload(), Some(&bytes[..]));
        assert_eq!(
            header_text(replayed, header::CONTENT_TYPE).as_deref(),
            Some(Format::Json.content_type())
        );
        assert_eq!(header_text(replayed, header::DEADLETTER_CODE), None);
    }
    running.stop().await;
}

#[actix_rt::test]
async fn letters_a_replay_cannot_help_are_refused() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = users_service(&broker).await;
    // A real undecodable letter, from garbage on the commands topic.
    let origin = produce(
        &kafka,
        USERS_COMMANDS,
        None,
        Some(b"junk"),
        Some(&[0xff, 0x00]),
        &[],
    )
    .await;
    let mut letters = Probe::new(&kafka, DEADLETTER);
    letters.at_least(1).await;
    let garbage = format!(
        "{}:{}",
        letters.seen[0].partition(),
        letters.seen[0].offset()
    );
    // And one a replay can help.
    let user_id = UserId::new();
    let deposit = CommandEnvelope::new(UserCommand::Deposit {
        user_id,
        amount: Cents(5),
    });
    let bytes = encode(Format::Json, &deposit).unwrap();
    let other_partition = (letters.seen[0].partition() + 1) % kafka.partitions;
    let helpable = write_letter(
        &kafka,
        Some(other_partition),
        "overloaded",
        &user_id.to_string(),
        &bytes,
        (0, 7),
    )
    .await;

    let before = ends(&kafka, USERS_COMMANDS);
    let named = ordersaga(&kafka, &["deadletters", "replay", &garbage]).await;
    assert!(
        !named.ok,
        "a named letter that cannot be helped is an error"
    );
    assert!(named.stderr.contains("cannot help"), "{}", named.stderr);
    let by_code = ordersaga(&kafka, &["deadletters", "replay", "--code", "undecodable"]).await;
    assert!(
        !by_code.ok && by_code.stderr.contains("cannot help"),
        "{}",
        by_code.stderr
    );
    let mixed = ordersaga(&kafka, &["deadletters", "replay", &garbage, &helpable]).await;
    assert!(
        !mixed.ok && mixed.stdout.is_empty(),
        "nothing is sent when one named letter is refused"
    );
    let unnamed = ordersaga(&kafka, &["deadletters", "replay"]).await;
    assert!(
        !unnamed.ok && unnamed.stderr.contains("--all"),
        "{}",
        unnamed.stderr
    );
    let dry = ordersaga(&kafka, &["deadletters", "replay", "--all", "--dry-run"]).await;
    assert!(dry.ok, "{}", dry.stderr);
    let lines = dry.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with(&format!("refused {garbage} (undecodable)"))));
    assert!(lines
        .iter()
        .any(|l| l.starts_with(&format!("would replay {helpable} (overloaded)"))));
    assert_eq!(
        ends(&kafka, USERS_COMMANDS),
        before,
        "refusals and dry runs send nothing"
    );

    // A sweep sends what it can and reports what it refuses.
    let swept = ordersaga(&kafka, &["deadletters", "replay", "--all", "--json"]).await;
    assert!(swept.ok, "{}", swept.stderr);
    let swept = swept.json_lines();
    let action =
        |letter: &str| swept.iter().find(|l| l["letter"] == letter).unwrap()["action"].clone();
    assert_eq!(action(&garbage), "refused");
    assert_eq!(action(&helpable), "replayed");
    let mut commands = Probe::new(&kafka, USERS_COMMANDS);
    commands
        .until("the replayed deposit", |seen| {
            seen.iter()
                .any(|m| header_text(m, REPLAYED_FROM).as_deref() == Some(helpable.as_str()))
        })
        .await;
    let replayed: Vec<_> = commands
        .seen
        .iter()
        .filter(|m| header_text(m, REPLAYED_FROM).is_some())
        .collect();
    assert_eq!(
        replayed.len(),
        1,
        "only the letter a replay can help went back"
    );
    assert_ne!((replayed[0].partition(), replayed[0].offset()), origin);

    // A bare offset names a letter only where one partition has it: both
    // letters are the first of their partitions.
    let ambiguous = ordersaga(&kafka, &["deadletters", "show", "0"]).await;
    assert!(
        !ambiguous.ok && ambiguous.stderr.contains("name one, as PARTITION:0"),
        "{}",
        ambiguous.stderr
    );
    let missing = ordersaga(&kafka, &["deadletters", "show", "0:999"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("no dead letter at 0:999"),
        "{}",
        missing.stderr
    );
    running.stop().await;
}
