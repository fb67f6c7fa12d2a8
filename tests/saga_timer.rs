//! The saga deadline index and the timer that reads it: a saga waiting for
//! replies is in the index under its deadline, moves with every retry, and
//! leaves it when it ends or gets stuck; a tick reads only the due sagas, so
//! its work does not grow with the sagas that finished long ago.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ordersaga::saga::timer;
use ordersaga_actors::aggregates::Saga;
use ordersaga_actors::journal::{AppendBatch, StreamAppend};
use ordersaga_actors::{Execute, Journal, JournalConfig, Service, ServiceConfig};
use ordersaga_events::order::OrderLine;
use ordersaga_events::saga::{saga_of, SagaCommand, SagaPhase, SagaPolicy};
use ordersaga_events::{CommandEnvelope, OrderId, ProductId, StreamId, StreamKind, UserId};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn at(ms: i64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(ms)
}

async fn run(sagas: &Service<Saga>, command: SagaCommand) {
    sagas
        .submit(Execute::new(CommandEnvelope::new(command)))
        .ok()
        .unwrap()
        .await
        .unwrap();
}

/// Starts the saga of a new order at `now`; returns its stream.
async fn start(sagas: &Service<Saga>, policy: SagaPolicy, now: DateTime<Utc>) -> StreamId {
    let order_id = OrderId::new();
    run(
        sagas,
        SagaCommand::Start {
            saga_id: saga_of(order_id),
            order_id,
            user_id: UserId::new(),
            lines: vec![OrderLine {
                product_id: ProductId::new(),
                quantity: 1,
            }],
            policy,
            now,
        },
    )
    .await;
    StreamId::new(StreamKind::Saga, order_id.as_uuid())
}

fn tick(stream: StreamId, now: DateTime<Utc>) -> SagaCommand {
    SagaCommand::Tick {
        saga_id: ordersaga_events::SagaId::from_uuid(stream.id),
        now,
    }
}

#[actix_rt::test]
async fn a_waiting_saga_is_indexed_under_its_deadline_until_it_stops_waiting() {
    let journal = Journal::open(JournalConfig::tmp()).unwrap();
    let sagas = Service::<Saga>::start(journal.clone(), ServiceConfig::default());
    let policy = SagaPolicy {
        step_timeout_ms: 1_000,
        max_attempts: 2,
    };
    let saga = start(&sagas, policy, at(0)).await;
    let wake = |journal: &Journal| journal.wake_at(&saga).unwrap();
    assert_eq!(wake(&journal), Some(at(1_000).timestamp_millis()));
    assert!(journal
        .due(at(999).timestamp_millis(), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        journal.due(at(1_000).timestamp_millis(), 10).unwrap(),
        vec![saga]
    );

    // A resend moves it; giving up on the step starts compensation, with a
    // deadline of its own.
    run(&sagas, tick(saga, at(1_000))).await;
    assert_eq!(wake(&journal), Some(at(3_000).timestamp_millis()));
    run(&sagas, tick(saga, at(3_000))).await;
    assert_eq!(wake(&journal), Some(at(4_000).timestamp_millis()));
    // A compensation out of attempts parks the saga as stuck: it waits for an
    // operator, not for time, and leaves the index.
    run(&sagas, tick(saga, at(4_000))).await;
    run(&sagas, tick(saga, at(6_000))).await;
    let state = sagas.state(saga.id).await.unwrap().state;
    assert_eq!(state.phase(), SagaPhase::Stuck);
    assert_eq!(wake(&journal), None);
    assert_eq!(journal.scheduled(), 0);
    sagas.shutdown().await;
}

#[actix_rt::test]
async fn a_tick_reads_the_due_sagas_only_however_many_have_finished() {
    const FINISHED: usize = 100_000;
    let journal = Journal::open(JournalConfig::tmp()).unwrap();
    // A hundred thousand saga streams that are over: in the store, not in
    // the deadline index.
    // All in flight at once, so that the journal commits them in groups.
    let appends: Vec<_> = (0..FINISHED)
        .map(|_| {
            let journal = journal.clone();
            actix::spawn(async move {
                journal
                    .append(AppendBatch {
                        events: Some(StreamAppend {
                            stream: StreamId::new(StreamKind::Saga, uuid::Uuid::new_v4()),
                            expected_version: 0,
                            events: vec![vec![1]],
                            unique: Vec::new(),
                        }),
                        ..AppendBatch::default()
                    })
                    .await
            })
        })
        .collect();
    for appended in appends {
        appended.await.unwrap().unwrap();
    }
    let sagas = Service::<Saga>::start(journal.clone(), ServiceConfig::default());
    // Three sagas waiting, all due long ago.
    let policy = SagaPolicy {
        step_timeout_ms: 1_000,
        max_attempts: 5,
    };
    let long_ago = Utc::now() - TimeDelta::days(1);
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(start(&sagas, policy, long_ago).await);
    }
    assert_eq!(
        journal.streams(Some(StreamKind::Saga)).count(),
        FINISHED + 3
    );

    // One tick: three sagas read and ticked, not a hundred thousand.
    assert_eq!(
        timer::tick_due(&journal, &sagas, Utc::now()).await.unwrap(),
        3
    );
    for saga in &waiting {
        let state = sagas.state(saga.id).await.unwrap().state;
        assert_eq!(state.attempt(), 2, "each due saga was ticked once");
    }
    sagas.shutdown().await;
}
