//! The service actors over a real sled store: replies, idempotency,
//! uniqueness across aggregates, bounded mailboxes, supervision, passivation
//! and optimistic concurrency between two writers.

use ordersaga_actors::aggregate::Aggregate;
use ordersaga_actors::aggregates::User;
use ordersaga_actors::recovery::{replay, stream_of};
use ordersaga_actors::service::SubmitError;
use ordersaga_actors::{
    Execute, Journal, JournalConfig, Service, ServiceConfig, ServiceError, UserService,
};
use ordersaga_events::reply::ReasonCode;
use ordersaga_events::topics::Service as ServiceName;
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{Cents, CommandEnvelope, Outcome, StreamKind, UserId, Versioned};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

fn journal() -> Journal {
    Journal::open(JournalConfig::tmp()).expect("open temp journal")
}

fn register(user_id: UserId, email: &str) -> UserCommand {
    UserCommand::Register {
        user_id,
        email: email.into(),
        username: "someone".into(),
        password: Password::new("correct horse battery"),
    }
}

fn deposit(user_id: UserId, cents: u64) -> UserCommand {
    UserCommand::Deposit {
        user_id,
        amount: Cents(cents),
    }
}

#[actix_rt::test]
async fn an_accepted_command_is_durable_and_answered_with_its_sequences() {
    let users = UserService::start(journal(), ServiceConfig::default());
    let id = UserId::new();
    let reply = users.send(register(id, "ada@example.com")).await.unwrap();
    assert_eq!(reply.outcome, Outcome::Accepted { sequences: vec![1] });
    let reply = users.send(deposit(id, 500)).await.unwrap();
    assert_eq!(reply.outcome, Outcome::Accepted { sequences: vec![2] });

    let live = users.state(id.as_uuid()).await.unwrap();
    assert_eq!(live.version, 2);
    assert_eq!(live.state.balance(), Cents(500));
    let replayed = replay::<User>(users.journal(), id.as_uuid(), None).unwrap();
    assert_eq!(replayed, live);
}

#[actix_rt::test]
async fn an_email_is_unique_across_users_until_its_owner_is_deleted() {
    let users = UserService::start(journal(), ServiceConfig::default());
    let (ada, eve) = (UserId::new(), UserId::new());
    assert!(users
        .send(register(ada, "ada@example.com"))
        .await
        .unwrap()
        .outcome
        .is_accepted());

    // Given ada holds the address, when eve registers it (in other case),
    // then eve is refused and nothing is written for her.
    let reply = users
        .send(register(eve, "  ADA@Example.com "))
        .await
        .unwrap();
    assert_eq!(reply.outcome.rejection_code(), Some("email_taken"));
    assert_eq!(
        users
            .journal()
            .version(&stream_of::<User>(eve.as_uuid()))
            .unwrap(),
        0
    );

    assert!(users
        .send(UserCommand::Delete { user_id: ada })
        .await
        .unwrap()
        .outcome
        .is_accepted());
    let reply = users.send(register(eve, "ada@example.com")).await.unwrap();
    assert!(reply.outcome.is_accepted(), "{reply:?}");
}

#[actix_rt::test]
async fn a_redelivered_command_gets_the_same_reply_and_appends_nothing() {
    let users = UserService::start(journal(), ServiceConfig::default());
    let id = UserId::new();
    users.send(register(id, "bob@example.com")).await.unwrap();

    let command = CommandEnvelope::new(deposit(id, 700)).reply_to("test.replies");
    let first = users.execute(Execute::new(command.clone())).await.unwrap();
    let outbox_after_first = users.journal().outbox_len();
    let again = users.execute(Execute::new(command.clone())).await.unwrap();
    assert_eq!(first, again);

    let state = users.state(id.as_uuid()).await.unwrap();
    assert_eq!(state.state.balance(), Cents(700), "applied once");
    assert_eq!(state.version, 2);
    // The redelivery republishes the reply record, and nothing else.
    assert_eq!(users.journal().outbox_len(), outbox_after_first + 1);
}

#[actix_rt::test]
async fn a_rejection_is_remembered_by_command_id() {
    let users = UserService::start(journal(), ServiceConfig::default());
    let id = UserId::new();
    users.send(register(id, "cy@example.com")).await.unwrap();
    let charge = CommandEnvelope::new(UserCommand::Charge {
        user_id: id,
        order_id: ordersaga_events::OrderId::new(),
        amount: Cents(100),
    });
    let first = users.execute(Execute::new(charge.clone())).await.unwrap();
    assert_eq!(first.outcome.rejection_code(), Some("insufficient_funds"));

    // Funds arrive, but the same command id still means the same answer.
    users.send(deposit(id, 1_000)).await.unwrap();
    let again = users.execute(Execute::new(charge)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        users.state(id.as_uuid()).await.unwrap().state.balance(),
        Cents(1_000)
    );
}

#[actix_rt::test]
async fn a_full_router_mailbox_hands_the_command_back() {
    let config = ServiceConfig {
        router_mailbox: 1,
        ..ServiceConfig::default()
    };
    let users = UserService::start(journal(), config);
    let id = UserId::new();
    // Nothing yields between these submits, so the router cannot drain.
    let mut pending = Vec::new();
    let mut refused = Vec::new();
    for i in 0..16 {
        let command = CommandEnvelope::new(deposit(id, i + 1));
        match users.submit(Execute::new(command.clone())) {
            Ok(p) => pending.push(p),
            Err(err @ SubmitError::Overloaded(_)) => {
                assert_eq!(
                    err.into_inner().command,
                    command,
                    "the command comes back intact"
                );
                refused.push(i);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(!refused.is_empty(), "a bounded mailbox must refuse");
    for p in pending {
        // Every queued command is answered (the user is unknown: rejected).
        assert_eq!(
            p.await.unwrap().outcome.rejection_code(),
            Some("unknown_user")
        );
    }
}

#[actix_rt::test]
async fn a_full_entity_mailbox_is_answered_as_overloaded() {
    let config = ServiceConfig {
        entity_mailbox: 1,
        ..ServiceConfig::default()
    };
    let users = UserService::start(journal(), config);
    let id = UserId::new();
    users.send(register(id, "dee@example.com")).await.unwrap();
    let pending: Vec<_> = (0..32)
        .map(|_| {
            users
                .submit(Execute::new(CommandEnvelope::new(deposit(id, 1))))
                .unwrap()
        })
        .collect();
    let mut accepted = 0;
    let mut overloaded = 0;
    for p in pending {
        match p.await {
            Ok(reply) if reply.outcome.is_accepted() => accepted += 1,
            Err(ServiceError::Overloaded("entity")) => overloaded += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(overloaded > 0, "the entity mailbox is bounded");
    // Never half-applied: exactly the accepted deposits are in the balance.
    let state = users.state(id.as_uuid()).await.unwrap();
    assert_eq!(state.state.balance(), Cents(accepted));
}

#[actix_rt::test]
async fn a_second_writer_on_the_same_stream_is_caught_by_the_version_check() {
    // Two services on one store stand for an entity and its replacement
    // overlapping during passivation: each has its own entity for the user.
    let journal = journal();
    let a = UserService::start(journal.clone(), ServiceConfig::default());
    let b = UserService::start(journal.clone(), ServiceConfig::default());
    let id = UserId::new();
    a.send(register(id, "eli@example.com")).await.unwrap();
    b.send(deposit(id, 10)).await.unwrap(); // b recovers version 1
    a.send(deposit(id, 20)).await.unwrap(); // a is stale: conflict, reload, retry
    b.send(deposit(id, 30)).await.unwrap(); // b is stale too
    let replayed = replay::<User>(&journal, id.as_uuid(), None).unwrap();
    assert_eq!(replayed.version, 4);
    assert_eq!(replayed.state.balance(), Cents(60));
}

#[actix_rt::test]
async fn idle_entities_are_passivated_and_come_back_from_the_journal() {
    let config = ServiceConfig {
        passivate_after: Duration::from_secs(60),
        ..ServiceConfig::default()
    };
    let users = UserService::start(journal(), config);
    let ids: Vec<UserId> = (0..5).map(|_| UserId::new()).collect();
    for (i, id) in ids.iter().enumerate() {
        users
            .send(register(*id, &format!("u{i}@example.com")))
            .await
            .unwrap();
        users.send(deposit(*id, 100 + i as u64)).await.unwrap();
    }
    assert_eq!(users.live_entities().await.unwrap(), 5);
    assert_eq!(users.passivations(), 0);
    // From here on nothing waits on the journal thread, so the paused clock
    // only moves when told to.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(181)).await;
    // Let the router's sweep run and the entities stop.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(users.live_entities().await.unwrap(), 0);
    assert_eq!(users.passivations(), 5, "each idle entity counted once");
    for (i, id) in ids.iter().enumerate() {
        let live = users.state(id.as_uuid()).await.unwrap();
        assert_eq!(live.state.balance(), Cents(100 + i as u64));
        assert_eq!(live.version, 2);
    }
}

#[actix_rt::test]
async fn memory_is_bounded_by_max_entities() {
    let config = ServiceConfig {
        max_entities: 10,
        ..ServiceConfig::default()
    };
    let store = journal();
    let users = UserService::start(store.clone(), config);
    // Every entity holds a handle to the store: what an entity actor that
    // still exists cannot hide.
    let before = store.handles();
    for _ in 0..50 {
        // Unknown users: rejected, but each spawns an entity.
        users.send(deposit(UserId::new(), 1)).await.unwrap();
        assert!(users.live_entities().await.unwrap() <= 10);
    }
    // The evicted actors really stop (asynchronously): at most ten entities
    // still hold the store, not fifty.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.handles() > before + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} entity actors still hold the store after eviction",
            store.handles() - before
        );
        tokio::task::yield_now().await;
    }
}

// A deliberately faulty aggregate to exercise supervision.

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum CounterEvent {
    Added(u64),
}

impl Versioned for CounterEvent {
    const SCHEMA_VERSION: u16 = 1;
    const TYPE_NAME: &'static str = "CounterEvent";
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CounterCommand {
    Add(Uuid, u64),
    Explode(Uuid),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("never")]
struct Never;

impl ReasonCode for Never {
    fn code(&self) -> &'static str {
        "never"
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

impl Aggregate for Counter {
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Rejection = Never;
    const KIND: StreamKind = StreamKind::User;
    const SERVICE: ServiceName = ServiceName::Users;

    fn aggregate_id(command: &CounterCommand) -> Uuid {
        match command {
            CounterCommand::Add(id, _) | CounterCommand::Explode(id) => *id,
        }
    }

    fn decide(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, Never> {
        match command {
            CounterCommand::Add(_, n) => Ok(vec![CounterEvent::Added(*n)]),
            CounterCommand::Explode(_) => panic!("a bug in decide"),
        }
    }

    fn apply(&mut self, event: &CounterEvent) {
        let CounterEvent::Added(n) = event;
        self.total += n;
    }
}

#[actix_rt::test]
async fn a_panicking_entity_answers_and_restarts_from_its_journal() {
    let counters: Service<Counter> = Service::start(journal(), ServiceConfig::default());
    let id = Uuid::new_v4();
    counters.send(CounterCommand::Add(id, 5)).await.unwrap();
    let crashed = counters.send(CounterCommand::Explode(id)).await;
    assert!(
        matches!(crashed, Err(ServiceError::EntityCrashed(s)) if s.id == id),
        "{crashed:?}"
    );
    counters.send(CounterCommand::Add(id, 2)).await.unwrap();
    let state = counters.state(id).await.unwrap();
    assert_eq!(state.state.total, 7);
    assert_eq!(state.version, 2);
}

#[actix_rt::test]
async fn corrupt_event_bytes_are_an_error_not_a_panic() {
    let journal = journal();
    let id = Uuid::new_v4();
    let stream = stream_of::<Counter>(id);
    journal
        .append(ordersaga_actors::journal::AppendBatch {
            events: Some(ordersaga_actors::journal::StreamAppend {
                stream,
                expected_version: 0,
                events: vec![vec![0x01, 0xde, 0xad]],
                unique: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let counters: Service<Counter> = Service::start(journal, ServiceConfig::default());
    let err = counters.send(CounterCommand::Add(id, 1)).await.unwrap_err();
    assert_eq!(err.code(), "corrupt_store", "{err}");
}
