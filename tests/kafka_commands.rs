//! Commands over Kafka, as any client sends them: a reply on the reply topic
//! and the event on the events topic, in bincode and in JSON; redelivery is
//! idempotent; garbage is dead-lettered and consumption goes on.
//!
//! Runs against the embedded broker, or a real one when
//! `ORDERSAGA_TEST_BROKERS` is set (see `tests/support`).

mod support;

use ordersaga::node::{self, NodeOptions};
use ordersaga_events::codec::{decode, decode_event, Format};
use ordersaga_events::topics::{header, Service, DEADLETTER, USERS_COMMANDS, USERS_EVENTS};
use ordersaga_events::user::{Password, UserCommand, UserEvent};
use ordersaga_events::{Cents, CommandEnvelope, Outcome, Reply, StreamKind, UserId};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use support::{header_text, producer, send, send_raw, Probe, TestBroker};

const REPLIES: &str = "test.replies";

fn register(user_id: UserId) -> CommandEnvelope<UserCommand> {
    CommandEnvelope::new(UserCommand::Register {
        user_id,
        email: format!("{user_id}@example.com"),
        username: "kafka tester".into(),
        password: Password::new("a long password"),
    })
    .reply_to(REPLIES)
}

async fn setup(
    broker: &TestBroker,
    format: Format,
) -> (
    ordersaga::kafka::KafkaConfig,
    node::RunningService,
    tempfile::TempDir,
) {
    let kafka = broker.users_topics(&[REPLIES]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = NodeOptions::new(kafka.clone(), dir.path());
    options.service.event_format = format;
    let running = node::start(Service::Users, &options)
        .await
        .expect("start users");
    (kafka, running, dir)
}

async fn command_gets_reply_and_event(format: Format) {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = setup(&broker, format).await;
    let producer = producer(&kafka);
    let user_id = UserId::new();
    let command = register(user_id);
    send(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &user_id.to_string(),
        &command,
        format,
    )
    .await;

    let mut replies = Probe::new(&kafka, REPLIES);
    replies.at_least(1).await;
    let record = &replies.seen[0];
    let bytes = record.payload().unwrap();
    if format == Format::Json {
        assert_eq!(bytes[0], b'{', "a JSON command gets a bare JSON reply");
    }
    let reply: Reply = decode(bytes).unwrap();
    assert_eq!(reply.command_id, command.command_id);
    assert_eq!(reply.outcome, Outcome::Accepted { sequences: vec![1] });
    assert_eq!(
        record.key(),
        Some(command.correlation_id.to_string().as_bytes())
    );
    assert_eq!(
        header_text(record, header::CONTENT_TYPE).as_deref(),
        Some(format.content_type())
    );
    // The reply continues the requester's trace: the correlation id.
    let trace = format!("00-{}-", command.correlation_id.as_uuid().as_simple());
    let reply_trace = header_text(record, header::TRACEPARENT).expect("a traceparent");
    assert!(reply_trace.starts_with(&trace), "{reply_trace}");
    assert!(reply_trace.ends_with("-01") && reply_trace.len() == 55);

    let mut events = Probe::new(&kafka, USERS_EVENTS);
    events.at_least(1).await;
    let record = &events.seen[0];
    assert_eq!(record.key(), Some(user_id.to_string().as_bytes()));
    let event = decode_event::<UserEvent>(record.payload().unwrap()).unwrap();
    assert_eq!(event.stream.kind, StreamKind::User);
    assert_eq!(event.stream.id, user_id.as_uuid());
    assert_eq!(event.causation_id, command.command_id);
    assert!(matches!(event.payload, UserEvent::Registered { .. }));
    assert_eq!(
        header_text(record, header::EVENT_ID),
        Some(event.event_id.to_string())
    );
    // So does the event, as a sibling span of the reply.
    let event_trace = header_text(record, header::TRACEPARENT).expect("a traceparent");
    assert!(event_trace.starts_with(&trace), "{event_trace}");
    assert_ne!(event_trace, reply_trace);
    running.stop().await;
}

#[actix_rt::test]
async fn a_bincode_command_gets_its_reply_and_its_event() {
    command_gets_reply_and_event(Format::Bincode).await;
}

#[actix_rt::test]
async fn a_json_command_gets_a_json_reply_and_a_json_event() {
    command_gets_reply_and_event(Format::Json).await;
}

#[actix_rt::test]
async fn bare_json_from_any_language_is_accepted() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = setup(&broker, Format::Bincode).await;
    let producer = producer(&kafka);
    let user_id = UserId::new();
    // Hand-written JSON with no format byte and no content-type header.
    let json = format!(
        r#"{{"command_id":"{}","correlation_id":"{}","reply_to":"{REPLIES}","issued_at":"2026-11-26T12:00:00Z",
            "command":{{"Register":{{"user_id":"{user_id}","email":"json@example.com","username":"j","password":"a long password"}}}}}}"#,
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4()
    );
    send_raw(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &user_id.to_string(),
        json.as_bytes(),
        None,
    )
    .await;
    let mut replies = Probe::new(&kafka, REPLIES);
    replies.at_least(1).await;
    let reply: Reply = decode(replies.seen[0].payload().unwrap()).unwrap();
    assert!(reply.outcome.is_accepted(), "{reply:?}");
    running.stop().await;
}

#[actix_rt::test]
async fn a_redelivered_command_gets_the_same_reply_and_appends_nothing() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = setup(&broker, Format::Bincode).await;
    let producer = producer(&kafka);
    let user_id = UserId::new();
    let command = register(user_id);
    let deposit = CommandEnvelope::new(UserCommand::Deposit {
        user_id,
        amount: Cents(300),
    })
    .reply_to(REPLIES);
    for c in [&command, &command] {
        send(
            &producer,
            &kafka,
            USERS_COMMANDS,
            &user_id.to_string(),
            c,
            Format::Bincode,
        )
        .await;
    }
    for _ in 0..2 {
        send(
            &producer,
            &kafka,
            USERS_COMMANDS,
            &user_id.to_string(),
            &deposit,
            Format::Bincode,
        )
        .await;
    }
    let mut replies = Probe::new(&kafka, REPLIES);
    replies.at_least(4).await;
    let replies: Vec<Reply> = replies
        .seen
        .iter()
        .map(|r| decode(r.payload().unwrap()).unwrap())
        .collect();
    let of = |id| -> Vec<&Reply> { replies.iter().filter(|r| r.command_id == id).collect() };
    let (first, second) = (of(command.command_id), of(deposit.command_id));
    assert_eq!(first.len(), 2);
    assert_eq!(first[0], first[1], "the same reply both times");
    assert_eq!(second.len(), 2);
    assert_eq!(second[0], second[1]);
    assert_eq!(second[0].outcome, Outcome::Accepted { sequences: vec![2] });

    let stream = ordersaga_actors::recovery::stream_of::<ordersaga_actors::aggregates::User>(
        user_id.as_uuid(),
    );
    assert_eq!(
        running.journal().version(&stream).unwrap(),
        2,
        "nothing appended twice"
    );
    let state = ordersaga_actors::recovery::replay::<ordersaga_actors::aggregates::User>(
        running.journal(),
        user_id.as_uuid(),
        None,
    )
    .unwrap();
    assert_eq!(state.state.balance(), Cents(300));
    running.stop().await;
}

#[actix_rt::test]
async fn garbage_is_dead_lettered_and_the_next_record_is_still_processed() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = setup(&broker, Format::Bincode).await;
    let producer = producer(&kafka);
    let user_id = UserId::new();
    // Same key, so both land in one partition, garbage first.
    send_raw(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &user_id.to_string(),
        b"\x07 not a command",
        None,
    )
    .await;
    send_raw(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &user_id.to_string(),
        b"{\"truncated\": ",
        Some(Format::Json),
    )
    .await;
    let command = register(user_id);
    send(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &user_id.to_string(),
        &command,
        Format::Bincode,
    )
    .await;

    let mut replies = Probe::new(&kafka, REPLIES);
    replies.at_least(1).await;
    let reply: Reply = decode(replies.seen[0].payload().unwrap()).unwrap();
    assert_eq!(reply.command_id, command.command_id);
    assert!(reply.outcome.is_accepted());

    let mut dead = Probe::new(&kafka, DEADLETTER);
    dead.at_least(2).await;
    let letter = &dead.seen[0];
    assert_eq!(letter.payload(), Some(&b"\x07 not a command"[..]));
    assert_eq!(letter.key(), Some(user_id.to_string().as_bytes()));
    assert_eq!(
        header_text(letter, header::DEADLETTER_CODE).as_deref(),
        Some("undecodable")
    );
    assert_eq!(
        header_text(letter, header::DEADLETTER_TOPIC).as_deref(),
        Some(USERS_COMMANDS)
    );
    assert_eq!(
        header_text(letter, header::DEADLETTER_SERVICE).as_deref(),
        Some("users")
    );
    assert!(header_text(letter, header::DEADLETTER_REASON)
        .unwrap()
        .contains("unknown format byte"));
    assert!(header_text(letter, header::DEADLETTER_OFFSET).is_some());
    assert_eq!(
        header_text(&dead.seen[1], header::CONTENT_TYPE).as_deref(),
        Some("application/json")
    );
    running.stop().await;
}

#[actix_rt::test]
async fn a_command_that_cannot_be_read_in_a_readable_envelope_is_answered_and_dead_lettered() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = setup(&broker, Format::Bincode).await;
    let producer = producer(&kafka);
    let user_id = UserId::new();
    let (command_id, correlation_id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // Given a deposit of a negative amount, in a well-formed envelope,
    let json = format!(
        r#"{{"command_id":"{command_id}","correlation_id":"{correlation_id}","reply_to":"{REPLIES}","issued_at":"2026-11-27T12:00:00Z","command":{{"Deposit":{{"user_id":"{user_id}","amount":-5}}}}}}"#
    );
    send_raw(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &user_id.to_string(),
        json.as_bytes(),
        Some(Format::Json),
    )
    .await;
    // when it is consumed, then its sender gets a rejection, in its format,
    let mut replies = Probe::new(&kafka, REPLIES);
    replies.at_least(1).await;
    let payload = replies.seen[0].payload().unwrap();
    assert_eq!(payload[0], b'{', "answered in the command's own format");
    let reply: Reply = decode(payload).unwrap();
    assert_eq!(reply.command_id.as_uuid(), command_id);
    assert_eq!(reply.correlation_id.as_uuid(), correlation_id);
    assert_eq!(reply.stream.id, user_id.as_uuid());
    assert_eq!(reply.outcome.rejection_code(), Some("invalid_command"));
    let Outcome::Rejected(rejection) = &reply.outcome else {
        unreachable!()
    };
    assert!(rejection.message.contains("-5"), "{}", rejection.message);
    // and the record is dead-lettered too, with the same code.
    let mut dead = Probe::new(&kafka, DEADLETTER);
    dead.at_least(1).await;
    assert_eq!(
        header_text(&dead.seen[0], header::DEADLETTER_CODE).as_deref(),
        Some("invalid_command")
    );
    assert_eq!(dead.seen[0].payload(), Some(json.as_bytes()));
    running.stop().await;
}

#[actix_rt::test]
async fn a_null_key_and_a_null_value_stay_null_in_the_dead_letter() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = setup(&broker, Format::Bincode).await;
    let producer = producer(&kafka);
    // Given a record with neither key nor value (a tombstone),
    let physical = kafka.name(USERS_COMMANDS);
    let nothing: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&physical);
    producer
        .send(nothing, std::time::Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("produce a tombstone");
    // when it is dead-lettered, then the letter has neither either: the
    // original record, unchanged.
    let mut dead = Probe::new(&kafka, DEADLETTER);
    dead.at_least(1).await;
    let letter = &dead.seen[0];
    assert_eq!(letter.key(), None, "a null key stays null");
    assert_eq!(letter.payload(), None, "a null value stays null");
    assert_eq!(
        header_text(letter, header::DEADLETTER_CODE).as_deref(),
        Some("undecodable")
    );
    running.stop().await;
}

#[actix_rt::test]
async fn a_reply_to_that_is_not_a_reply_topic_is_refused_and_a_namespaced_one_accepted() {
    let broker = TestBroker::from_env();
    let (kafka, running, _dir) = setup(&broker, Format::Json).await;
    let producer = producer(&kafka);

    // Replies may not go to a command topic (or any other non-reply topic).
    let hijacker = UserId::new();
    let mut hijack = register(hijacker);
    hijack.reply_to = Some(USERS_COMMANDS.to_string());
    send(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &hijacker.to_string(),
        &hijack,
        Format::Json,
    )
    .await;
    // A client that names its reply topic with the namespace gets its
    // replies there, not on a doubly prefixed topic.
    let user_id = UserId::new();
    let mut namespaced = register(user_id);
    namespaced.reply_to = Some(kafka.name(REPLIES));
    send(
        &producer,
        &kafka,
        USERS_COMMANDS,
        &user_id.to_string(),
        &namespaced,
        Format::Json,
    )
    .await;

    let mut letters = Probe::new(&kafka, DEADLETTER);
    letters.at_least(1).await;
    assert_eq!(
        header_text(&letters.seen[0], header::DEADLETTER_CODE).as_deref(),
        Some("invalid_reply_to")
    );
    let mut replies = Probe::new(&kafka, REPLIES);
    replies
        .until("the namespaced command's reply", |seen| {
            seen.iter()
                .filter_map(|m| decode::<Reply>(m.payload()?).ok())
                .any(|r| r.command_id == namespaced.command_id)
        })
        .await;
    // The refused command was not applied: the dead letter and its offset
    // are one transaction, and no event names its user.
    let log: Vec<_> = running
        .journal()
        .read_log(1)
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(log.iter().all(|e| e.stream.id != hijacker.as_uuid()));
    assert!(log.iter().any(|e| e.stream.id == user_id.as_uuid()));
    running.stop().await;
}
