//! `ordersaga republish` and `ordersaga restore`, run as an operator runs
//! them (the built binary), against the embedded broker or a real one
//! (`ORDERSAGA_TEST_BROKERS`):
//!
//! - every store of a stopped shop, restored from its events topic into a
//!   new data directory, equals the original (the same events and the same
//!   replayed state for every user, product, order and saga, the same
//!   indexes), `verify` accepts it, and a service started on it answers new
//!   commands (a deposit adds up; a taken email stays taken);
//! - `republish --dry-run` produces nothing; a republish repeats the relay's
//!   records (same partition, key, headers, payload, event id), and a
//!   restore from the topic with those duplicates still equals the store;
//! - restore refuses a gap naming the stream, and an undecodable record
//!   naming the partition and offset, and leaves nothing behind; events of a
//!   stream that arrive out of order across partitions are put in order.
//!
//! "The end" of a topic is each partition's end-of-partition event, on both
//! brokers (Tansu's high watermark can be below records it served).

// Money is written as dollars_cents: 1_000_00 is 1000.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use ordersaga::kafka::KafkaConfig;
use ordersaga::node::{self, NodeOptions};
use ordersaga::ops::export::AnyEvent;
use ordersaga::ops::republish::event_record;
use ordersaga::saga::clock::{Clock, ManualClock};
use ordersaga_actors::aggregates::{Order, Product, Saga, User, EMAIL_INDEX, PASSWORD_SECRET};
use ordersaga_actors::recovery::{index_differences, replay};
use ordersaga_actors::{Aggregate, Journal};
use ordersaga_events::codec::{decode, Format};
use ordersaga_events::topics::{header, Service, USERS_COMMANDS, USERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand, UserEvent};
use ordersaga_events::{
    Cents, CommandEnvelope, CommandId, CorrelationId, Envelope, EventId, Outcome, Reply, StreamId,
    StreamKind, UserId,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::shop::Shop;
use support::{TestBroker, PATIENCE};

fn ordersaga<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[A]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .args(args)
        .output()
        .expect("run ordersaga")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeds<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[A]) -> String {
    let out = ordersaga(args);
    assert!(
        out.status.success(),
        "ordersaga {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn fails<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[A]) -> String {
    let out = ordersaga(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "ordersaga {args:?}: {stderr}");
    assert!(
        stderr.contains("error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `args`, then the `--brokers` and `--namespace` of `kafka`.
fn on(kafka: &KafkaConfig, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--brokers".to_string(), kafka.brokers.clone()]);
    if let Some(ns) = &kafka.namespace {
        all.extend(["--namespace".to_string(), ns.clone()]);
    }
    all
}

/// `restore --service SERVICE --data DATA` on `kafka`, then `extra`.
fn restore_args(kafka: &KafkaConfig, service: &str, data: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = on(kafka, &["restore", "--service", service, "--data", s(data)]);
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Every record of the logical `topic`, read from the beginning of each of
/// its partitions until each reports its end.
fn read_to_end(kafka: &KafkaConfig, topic: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("test-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    let physical = kafka.name(topic);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..kafka.partitions {
        assignment
            .add_partition_offset(&physical, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let (mut ended, mut seen) = (HashSet::new(), Vec::new());
    let deadline = Instant::now() + PATIENCE;
    while ended.len() < kafka.partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{physical} never reported its end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                ended.remove(&message.partition());
                seen.push(message.detach());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(err)) => eprintln!("read_to_end: {err}"),
            None => {}
        }
    }
    seen
}

fn headers_of(message: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

fn event_id_of(message: &OwnedMessage) -> String {
    support::header_text(message, header::EVENT_ID).expect("an event-id header")
}

fn events_of(journal: &Journal) -> Vec<(StreamId, u64, Vec<AnyEvent>)> {
    journal
        .streams(None)
        .map(|item| {
            let (stream, version) = item.unwrap();
            let events = journal
                .read_stream(&stream, 1)
                .map(|e| AnyEvent::decode(&e.unwrap().1).unwrap())
                .collect();
            (stream, version, events)
        })
        .collect()
}

fn same_states<A: Aggregate>(original: &Journal, copy: &Journal) -> usize {
    let mut compared = 0;
    for item in original.streams(Some(A::KIND)) {
        let (stream, _) = item.unwrap();
        assert_eq!(
            replay::<A>(original, stream.id, None).unwrap(),
            replay::<A>(copy, stream.id, None).unwrap(),
            "{stream} replays differently"
        );
        assert!(index_differences::<A>(copy, &stream).unwrap().is_empty());
        compared += 1;
    }
    compared
}

/// `copy` holds the same events, states and indexes as `original`, and
/// nothing to publish beside them, and the processed entries of the commands
/// it accepted with events.
fn assert_same_store(service: Service, original: &Journal, copy: &Journal) {
    assert_eq!(events_of(original), events_of(copy), "{}", service.name());
    let compared = match service {
        Service::Users => same_states::<User>(original, copy),
        Service::Inventory => same_states::<Product>(original, copy),
        Service::Orders => {
            same_states::<Order>(original, copy) + same_states::<Saga>(original, copy)
        }
    };
    assert!(compared > 0, "{}: nothing compared", service.name());
    assert_eq!(copy.archived_len(), original.archived_len());
    assert_eq!(copy.scheduled(), original.scheduled());
    assert_eq!(copy.outbox_len(), 0);
    support::remembered::assert_commands_remembered(original, copy);
}

/// A shop with completed and aborted orders, stopped, everything published.
async fn finished_shop(broker: &TestBroker) -> (Shop, UserId) {
    let mut shop = Shop::start(broker).await;
    let rich = shop.user(1_000_00).await;
    let poor = shop.user(1).await;
    let (widget, scarce) = (shop.product(25_00, 10).await, shop.product(10_00, 1).await);
    let orders = [
        shop.order(rich, &[(widget, 2)]).await,
        shop.order(poor, &[(widget, 1)]).await,
        shop.order(rich, &[(widget, 1), (scarce, 5)]).await,
    ];
    for order in orders {
        shop.saga_end(order).await;
    }
    shop.stop_all().await;
    for service in Service::ALL {
        let journal = Journal::open_path(shop.data_dir().join(service.name())).unwrap();
        assert_eq!(
            journal.outbox_len(),
            0,
            "{} published everything",
            service.name()
        );
    }
    (shop, rich)
}

/// Waits until `done` holds, waking on each durable group that added
/// outbox records.
async fn wait_for(journal: &Journal, what: &str, done: impl Fn() -> bool) {
    let mut wake = journal.outbox_watch();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        tokio::time::timeout_at(deadline, wake.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap();
    }
}

#[actix_rt::test]
async fn a_store_restored_from_its_events_topic_equals_the_original_and_answers_commands() {
    // Given a shop that ran and stopped, its events on its topics.
    let broker = TestBroker::from_env();
    let (shop, rich) = finished_shop(&broker).await;
    let data = shop.data_dir().to_path_buf();
    let restored = tempfile::tempdir().unwrap();

    // When each service's store is restored from its events topic.
    for service in Service::ALL {
        let args = restore_args(&shop.kafka, service.name(), restored.path(), &["--json"]);
        let summary = json(&succeeds(&args));
        assert!(summary["records"].as_u64() >= summary["events"].as_u64());
    }

    // Then every store equals its original, and verify accepts them.
    for service in Service::ALL {
        let original = Journal::open_path(data.join(service.name())).unwrap();
        let copy = Journal::open_path(restored.path().join(service.name())).unwrap();
        assert_same_store(service, &original, &copy);
    }
    let open = |name: &str| Journal::open_path(restored.path().join(name)).unwrap();
    let report =
        ordersaga::verify::check(&open("users"), &open("inventory"), &open("orders"), true)
            .unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!((report.users, report.products, report.orders), (2, 2, 3));
    for service in Service::ALL {
        let args = [
            "replay",
            "--data",
            s(restored.path()),
            "--service",
            service.name(),
            "--check",
        ];
        assert!(succeeds(&args).contains(" 0 differences"));
    }

    // And the users store restored partition by partition (as the
    // instances of a scaled-out service would each restore theirs) holds
    // the original's streams, each one whole in one of them.
    let mut union = Vec::new();
    for partition in 0..shop.kafka.partitions {
        let dir = tempfile::tempdir().unwrap();
        let partition = partition.to_string();
        succeeds(&restore_args(
            &shop.kafka,
            "users",
            dir.path(),
            &["--partition", &partition],
        ));
        union.extend(events_of(
            &Journal::open_path(dir.path().join("users")).unwrap(),
        ));
    }
    union.sort_by_key(|(stream, _, _)| *stream);
    assert_eq!(
        union,
        events_of(&Journal::open_path(data.join("users")).unwrap())
    );

    // And the users service, started on the restored store (on fresh topics,
    // so that no command of the first run comes again), answers commands.
    let kafka = broker.kafka();
    let topics = ordersaga::kafka::topics::all_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    broker.create_topics(&kafka, &topics).await;
    let mut options = NodeOptions::new(kafka.clone(), restored.path());
    options.saga_clock = Clock::Manual(ManualClock::new(chrono::Utc::now()));
    let users = node::start(Service::Users, &options).await.unwrap();
    let journal = users.journal().clone();
    let stream = StreamId::new(StreamKind::User, rich.as_uuid());
    let before = replay::<User>(&journal, rich.as_uuid(), None).unwrap();
    assert!(journal.secret(&stream, PASSWORD_SECRET).unwrap().is_none());
    let producer = support::producer(&kafka);
    let deposit = CommandEnvelope::new(UserCommand::Deposit {
        user_id: rich,
        amount: Cents(5_00),
    });
    support::send(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &rich.to_string(),
        &deposit,
        Format::Json,
    )
    .await;
    wait_for(&journal, "the deposit", || {
        journal.version(&stream).unwrap() > before.version
    })
    .await;
    let after = replay::<User>(&journal, rich.as_uuid(), None).unwrap();
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        after.state.balance(),
        Cents(before.state.balance().0 + 5_00)
    );

    let email = before.state.email().to_string();
    let newcomer = UserId::new();
    let mut register = CommandEnvelope::new(UserCommand::Register {
        user_id: newcomer,
        email: email.clone(),
        username: "again".into(),
        password: Password::new("another long password"),
    });
    register.reply_to = Some("restore.replies".into());
    let command_id: CommandId = register.command_id;
    support::send(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &newcomer.to_string(),
        &register,
        Format::Json,
    )
    .await;
    wait_for(&journal, "the registration's reply", || {
        journal.processed_reply(&command_id).unwrap().is_some()
    })
    .await;
    let reply: Reply = decode(&journal.processed_reply(&command_id).unwrap().unwrap()).unwrap();
    match reply.outcome {
        Outcome::Rejected(rejection) => assert_eq!(rejection.code, "email_taken"),
        other => panic!("a taken email was accepted: {other:?}"),
    }
    assert_eq!(
        journal.unique_holder(EMAIL_INDEX, &email).unwrap(),
        Some(stream)
    );
    users.stop().await;
    shop.stop().await;
}

#[actix_rt::test]
async fn a_dry_run_produces_nothing_and_a_republish_repeats_the_relays_records() {
    // Given a stopped shop whose users events are all on their topic.
    let broker = TestBroker::from_env();
    let (shop, _) = finished_shop(&broker).await;
    let data = shop.data_dir().to_path_buf();
    let kafka = shop.kafka.clone();
    let events: Vec<AnyEvent> = {
        let journal = Journal::open_path(data.join("users")).unwrap();
        journal
            .read_log(1)
            .map(|e| AnyEvent::decode(&e.unwrap().bytes).unwrap())
            .collect()
    };
    let n = events.len() as u64;
    let before = read_to_end(&kafka, USERS_EVENTS);
    assert!(before.len() as u64 >= n);

    // When a republish runs dry, from a position and from a time.
    let base = ["republish", "--data", s(&data), "--service", "users"];
    let dry = |start: &[&str]| {
        let mut args = on(&kafka, &base);
        args.extend(start.iter().map(|a| a.to_string()));
        args.extend(["--dry-run".to_string(), "--json".to_string()]);
        json(&succeeds(&args))
    };
    let all = dry(&["--from", "1"]);
    let since = events[2].recorded_at();
    let recent = dry(&["--since", &since.to_rfc3339()]);

    // Then it counts what it would publish, and the topic is unchanged.
    assert_eq!(all["events"], n);
    assert_eq!(all["dry_run"], true);
    let expected = events.iter().filter(|e| e.recorded_at() >= since).count();
    assert_eq!(recent["events"], expected as u64);
    assert_eq!(read_to_end(&kafka, USERS_EVENTS).len(), before.len());

    // When it runs for real, from log position 2.
    let mut args = on(&kafka, &base);
    args.extend(["--from", "2", "--json"].map(String::from));
    let done = json(&succeeds(&args));
    assert_eq!(done["events"], n - 1);

    // Then each republished record is the relay's again: same partition,
    // key, headers (event id included) and payload.
    let after = read_to_end(&kafka, USERS_EVENTS);
    assert_eq!(after.len() as u64, before.len() as u64 + n - 1);
    let old: HashSet<(i32, i64)> = before.iter().map(|m| (m.partition(), m.offset())).collect();
    let originals: HashMap<String, &OwnedMessage> =
        before.iter().map(|m| (event_id_of(m), m)).collect();
    let mut republished = HashSet::new();
    for message in after
        .iter()
        .filter(|m| !old.contains(&(m.partition(), m.offset())))
    {
        let id = event_id_of(message);
        let original = originals[&id];
        assert_eq!(message.partition(), original.partition(), "{id}");
        assert_eq!(message.key(), original.key(), "{id}");
        assert_eq!(headers_of(message), headers_of(original), "{id}");
        assert_eq!(message.payload(), original.payload(), "{id}");
        republished.insert(id);
    }
    let skipped = events[0].event_id().to_string();
    assert_eq!(republished.len() as u64, n - 1);
    assert!(!republished.contains(&skipped));

    // And a restore from the topic, duplicates and all, equals the store.
    let restored = tempfile::tempdir().unwrap();
    let args = restore_args(&kafka, "users", restored.path(), &["--json"]);
    let summary = json(&succeeds(&args));
    assert!(
        summary["duplicates"].as_u64().unwrap() >= n - 1,
        "{summary}"
    );
    let original = Journal::open_path(data.join("users")).unwrap();
    let copy = Journal::open_path(restored.path().join("users")).unwrap();
    assert_same_store(Service::Users, &original, &copy);
    shop.stop().await;
}

fn user_event(user: UserId, sequence: u64, payload: UserEvent) -> AnyEvent {
    AnyEvent::User(Envelope {
        event_id: EventId::new(),
        stream: StreamId::new(StreamKind::User, user.as_uuid()),
        sequence,
        recorded_at: chrono::Utc::now(),
        correlation_id: CorrelationId::new(),
        causation_id: CommandId::new(),
        schema_version: 2,
        payload,
    })
}

fn registered(user: UserId) -> AnyEvent {
    user_event(
        user,
        1,
        UserEvent::Registered {
            user_id: user,
            email: format!("{user}@example.com"),
            username: "u".into(),
        },
    )
}

/// Publishes `event` to `kafka`'s users events topic as the relay would,
/// to `partition` when given.
async fn publish(kafka: &KafkaConfig, event: &AnyEvent, partition: Option<i32>) {
    let record = event_record(event, Format::Json).unwrap();
    let topic = kafka.name(record.topic);
    let mut headers = OwnedHeaders::new();
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let mut out = FutureRecord::to(&topic)
        .key(record.key.as_str())
        .payload(record.payload.as_slice())
        .headers(headers);
    if let Some(partition) = partition {
        out = out.partition(partition);
    }
    support::producer(kafka)
        .send(out, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Runs a restore of the users store from `kafka` into a fresh directory.
fn restore_users(kafka: &KafkaConfig, data: &Path, expect_success: bool) -> String {
    let args = restore_args(kafka, "users", data, &["--idle-timeout-s", "60"]);
    if expect_success {
        succeeds(&args)
    } else {
        let err = fails(&args);
        assert!(
            !data.join("users").exists(),
            "a refused restore left a store"
        );
        let left: Vec<_> = std::fs::read_dir(data)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
        err
    }
}

#[actix_rt::test]
async fn restore_refuses_gaps_and_damage_naming_where_and_orders_a_stream_across_partitions() {
    let broker = TestBroker::from_env();
    let dir = tempfile::tempdir().unwrap();

    // Given a topic where a user's second event is missing.
    let gap = broker.kafka();
    broker.create_topics(&gap, &[USERS_EVENTS]).await;
    let user = UserId::new();
    publish(&gap, &registered(user), None).await;
    publish(&gap, &user_event(user, 3, UserEvent::Deactivated), None).await;
    // When it is restored: refused, naming the stream and what is missing.
    let err = restore_users(&gap, &dir.path().join("gap"), false);
    assert!(err.contains(&format!("gap in user:{user}")), "{err}");
    assert!(err.contains("no event #2") && err.contains("#3"), "{err}");

    // Given a topic with a record that is not an event.
    let damaged = broker.kafka();
    broker.create_topics(&damaged, &[USERS_EVENTS]).await;
    let producer = support::producer(&damaged);
    support::send_raw(
        &producer,
        &damaged,
        USERS_EVENTS,
        "k",
        b"not an envelope",
        None,
    )
    .await;
    // When it is restored: refused, naming the partition and offset.
    let err = restore_users(&damaged, &dir.path().join("damaged"), false);
    let physical = damaged.name(USERS_EVENTS);
    assert!(err.contains(&format!("{physical} partition")), "{err}");
    assert!(err.contains("offset 0: not an event envelope"), "{err}");

    // Given a stream whose events sit in two partitions, the later first
    // (as after a change of the partition count), and one event twice.
    let moved = broker.kafka();
    broker.create_topics(&moved, &[USERS_EVENTS]).await;
    let user = UserId::new();
    let (first, second) = (
        registered(user),
        user_event(user, 2, UserEvent::Deposited { amount: Cents(7) }),
    );
    publish(&moved, &second, Some(0)).await;
    publish(&moved, &first, Some(1)).await;
    publish(&moved, &first, Some(1)).await;
    // When it is restored: the events are put in order, the copy dropped.
    let data = dir.path().join("moved");
    let said = restore_users(&moved, &data, true);
    assert!(said.contains("1 duplicates dropped"), "{said}");
    let journal = Journal::open_path(data.join("users")).unwrap();
    let state = replay::<User>(&journal, user.as_uuid(), None).unwrap();
    assert_eq!((state.version, state.state.balance()), (2, Cents(7)));
}
