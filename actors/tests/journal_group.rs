//! The rules between batches committed in one group transaction: a batch's
//! checks see the batches before it in its group, and a refused batch writes
//! nothing while the rest of its group commits.
//!
//! Many tasks enqueue at once so that most of them land in one group, but the
//! assertions hold whatever the grouping: they check outcomes, never timing.

use ordersaga_actors::aggregates::{User, EMAIL_INDEX};
use ordersaga_actors::journal::{AppendBatch, AppendReceipt, OutboxRecord, StreamAppend};
use ordersaga_actors::{Aggregate, Journal, JournalConfig, JournalError};
use ordersaga_events::codec::{encode_event, Format};
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, StreamId, StreamKind, UserId, Versioned,
};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

const TASKS: usize = 32;

/// A batch and what appending it returned.
type Appended = (AppendBatch, Result<AppendReceipt, JournalError>);

fn user_stream() -> StreamId {
    StreamId::new(StreamKind::User, Uuid::new_v4())
}

fn registered(stream: StreamId, email: &str) -> UserEvent {
    UserEvent::Registered {
        user_id: UserId::from_uuid(stream.id),
        email: email.to_owned(),
        username: "test".to_owned(),
    }
}

/// An accepted command on `stream` at `expected`: its events, their
/// uniqueness changes, one outbox record per event and a reply under
/// `command_id`.
fn command(
    stream: StreamId,
    expected: u64,
    command_id: CommandId,
    payloads: Vec<UserEvent>,
) -> AppendBatch {
    let mut events = Vec::new();
    let mut outbox = Vec::new();
    let mut unique = Vec::new();
    for (i, payload) in payloads.into_iter().enumerate() {
        unique.extend(User::unique_changes(&payload));
        let envelope = Envelope {
            event_id: EventId::new(),
            stream,
            sequence: expected + 1 + i as u64,
            recorded_at: chrono::Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: command_id,
            schema_version: UserEvent::SCHEMA_VERSION,
            payload,
        };
        let bytes = encode_event(Format::Bincode, &envelope).expect("encode envelope");
        outbox.push(OutboxRecord {
            topic: Service::Users.events_topic().to_owned(),
            key: Some(stream.id.to_string().into_bytes()),
            payload: Some(bytes.clone()),
            headers: Vec::new(),
        });
        events.push(bytes);
    }
    AppendBatch {
        events: Some(StreamAppend {
            stream,
            expected_version: expected,
            events,
            unique,
        }),
        outbox,
        // The stream key as the reply: each delivery's reply is its own.
        processed: Some((command_id, stream.to_key().to_vec())),
        offset: None,
        schedule: None,
        archive: Vec::new(),
        secrets: Vec::new(),
        lists: Vec::new(),
    }
}

/// Appends every batch from its own task, all released at once.
async fn append_all(journal: &Journal, batches: Vec<AppendBatch>) -> Vec<Appended> {
    let barrier = Arc::new(Barrier::new(batches.len()));
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let journal = journal.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let result = journal.append(batch.clone()).await;
                (batch, result)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("appender"));
    }
    results
}

/// The log and outbox hold exactly the winners' positions, contiguous from 1.
fn assert_positions_contiguous(journal: &Journal, results: &[Appended]) {
    let mut log = Vec::new();
    let mut outbox = Vec::new();
    for (_, result) in results {
        if let Ok(receipt) = result {
            log.extend(receipt.log_positions.clone());
            outbox.extend(receipt.outbox_positions.clone());
        }
    }
    log.sort_unstable();
    outbox.sort_unstable();
    assert_eq!(log, (1..log.len() as u64 + 1).collect::<Vec<_>>());
    assert_eq!(outbox, (1..outbox.len() as u64 + 1).collect::<Vec<_>>());
    assert_eq!(journal.log_head(), log.len() as u64 + 1);
    assert_eq!(journal.outbox_len(), outbox.len());
    let stored: Vec<u64> = journal
        .read_log(1)
        .map(|entry| entry.expect("log entry").position)
        .collect();
    assert_eq!(stored, log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_email_claimed_by_many_streams_at_once_goes_to_exactly_one() {
    let journal = Journal::open(JournalConfig::tmp()).expect("open journal");
    let email = "contested@example.com";
    let batches = (0..TASKS)
        .map(|_| {
            let stream = user_stream();
            command(stream, 0, CommandId::new(), vec![registered(stream, email)])
        })
        .collect();
    let results = append_all(&journal, batches).await;
    let mut winner = None;
    for (batch, result) in &results {
        let stream = batch.events.as_ref().unwrap().stream;
        let command_id = batch.processed.as_ref().unwrap().0;
        match result {
            Ok(_) => {
                assert!(winner.is_none(), "the email was granted twice");
                winner = Some(stream);
            }
            Err(JournalError::UniqueViolation { index, key, .. }) => {
                assert_eq!((index.as_str(), key.as_str()), (EMAIL_INDEX, email));
                // A loser wrote nothing at all.
                assert_eq!(journal.version(&stream).unwrap(), 0);
                assert_eq!(journal.processed_reply(&command_id).unwrap(), None);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    let winner = winner.expect("one claim wins");
    assert_eq!(
        journal.unique_holder(EMAIL_INDEX, email).unwrap(),
        Some(winner)
    );
    // Every loser names the winner as the holder.
    for (_, result) in &results {
        if let Err(JournalError::UniqueViolation { holder, .. }) = result {
            assert_eq!(*holder, winner);
        }
    }
    assert_positions_contiguous(&journal, &results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_id_delivered_many_times_at_once_is_applied_once() {
    let journal = Journal::open(JournalConfig::tmp()).expect("open journal");
    let command_id = CommandId::new();
    let batches = (0..TASKS)
        .map(|_| {
            let stream = user_stream();
            command(
                stream,
                0,
                command_id,
                vec![UserEvent::Deposited { amount: Cents(1) }],
            )
        })
        .collect();
    let results = append_all(&journal, batches).await;
    let stored = journal
        .processed_reply(&command_id)
        .unwrap()
        .expect("the reply is stored");
    let mut applied = 0;
    for (batch, result) in &results {
        let stream = batch.events.as_ref().unwrap().stream;
        match result {
            Ok(_) => {
                applied += 1;
                // The stored reply is the one of the delivery that applied.
                assert_eq!(batch.processed.as_ref().unwrap().1, stored);
                assert_eq!(journal.version(&stream).unwrap(), 1);
            }
            Err(JournalError::DuplicateCommand { reply }) => {
                assert_eq!(*reply, stored);
                assert_eq!(journal.version(&stream).unwrap(), 0);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(applied, 1);
    assert_positions_contiguous(&journal, &results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_on_a_later_claim_leaves_the_earlier_claims_of_its_batch_unwritten() {
    let journal = Journal::open(JournalConfig::tmp()).expect("open journal");
    // Each batch claims a fresh email, then the shared one: only one batch
    // may win, and no loser may keep its fresh email.
    let shared = "shared@example.com";
    let mut fresh = Vec::new();
    let batches = (0..TASKS)
        .map(|i| {
            let stream = user_stream();
            let own = format!("own-{i}@example.com");
            fresh.push(own.clone());
            command(
                stream,
                0,
                CommandId::new(),
                vec![registered(stream, &own), registered(stream, shared)],
            )
        })
        .collect();
    let results = append_all(&journal, batches).await;
    let mut winners = HashSet::new();
    for ((batch, result), own) in results.iter().zip(&fresh) {
        let stream = batch.events.as_ref().unwrap().stream;
        match result {
            Ok(_) => {
                winners.insert(stream);
                assert_eq!(
                    journal.unique_holder(EMAIL_INDEX, own).unwrap(),
                    Some(stream)
                );
            }
            Err(JournalError::UniqueViolation { key, .. }) => {
                assert_eq!(key, shared);
                assert_eq!(journal.unique_holder(EMAIL_INDEX, own).unwrap(), None);
                assert_eq!(journal.version(&stream).unwrap(), 0);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(
        journal.unique_holder(EMAIL_INDEX, shared).unwrap(),
        winners.into_iter().next()
    );
    assert_positions_contiguous(&journal, &results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_does_not_stop_the_rest_of_its_group() {
    let journal = Journal::open(JournalConfig::tmp()).expect("open journal");
    // Half the batches append at a wrong version; the other half are fine.
    let batches = (0..TASKS)
        .map(|i| {
            let expected = if i % 2 == 0 { 0 } else { 5 };
            command(
                user_stream(),
                expected,
                CommandId::new(),
                vec![UserEvent::Deposited { amount: Cents(1) }],
            )
        })
        .collect();
    let results = append_all(&journal, batches).await;
    for (batch, result) in &results {
        let append = batch.events.as_ref().unwrap();
        match (append.expected_version, result) {
            (0, Ok(_)) => assert_eq!(journal.version(&append.stream).unwrap(), 1),
            (5, Err(JournalError::Conflict { actual: 0, .. })) => {
                assert_eq!(journal.version(&append.stream).unwrap(), 0);
                let id = batch.processed.as_ref().unwrap().0;
                assert_eq!(journal.processed_reply(&id).unwrap(), None);
            }
            (expected, other) => panic!("expected version {expected}: unexpected {other:?}"),
        }
    }
    assert_positions_contiguous(&journal, &results);
    assert_eq!(journal.stats().commits, TASKS as u64 / 2);
}
