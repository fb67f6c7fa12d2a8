//! Integration tests of the sled journal on real files in temp dirs: optimistic
//! concurrency, the global log, idempotency, uniqueness, the outbox, offsets,
//! snapshots and recovery, group commit, and reopening a store.
//!
//! Event bytes are real encoded `UserEvent` envelopes, so the recovery tests
//! replay what a service would have written.

use ordersaga_actors::aggregates::{User, EMAIL_INDEX};
use ordersaga_actors::journal::{
    AppendBatch, AppendReceipt, ConsumedOffset, OutboxRecord, StreamAppend,
};
use ordersaga_actors::recovery::{encode_snapshot, recover, replay};
use ordersaga_actors::{Aggregate, Journal, JournalConfig, JournalError};
use ordersaga_events::codec::{decode, decode_event, encode, encode_event, Format};
use ordersaga_events::topics::{Service, USERS_COMMANDS};
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, Outcome, Reply, StreamId, StreamKind,
    UserId, Versioned,
};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Barrier;
use uuid::Uuid;

/// A persistent journal in `dir` (real sled files, removed with the dir).
fn open(dir: &Path) -> Journal {
    Journal::open(JournalConfig::new(dir.join("store"))).expect("open journal")
}

fn user_stream() -> StreamId {
    StreamId::new(StreamKind::User, Uuid::new_v4())
}

fn deposit(amount: u64) -> UserEvent {
    UserEvent::Deposited {
        amount: Cents(amount),
    }
}

fn registered(stream: StreamId, email: &str) -> UserEvent {
    UserEvent::Registered {
        user_id: UserId::from_uuid(stream.id),
        email: email.to_owned(),
        username: "test".to_owned(),
        // Placeholder: the journal never looks at the hash, and hashing is slow.
    }
}

/// The encoded envelope of `payload` at `stream`/`sequence`.
fn envelope_bytes(
    stream: StreamId,
    sequence: u64,
    cause: CommandId,
    payload: UserEvent,
) -> Vec<u8> {
    let envelope = Envelope {
        event_id: EventId::new(),
        stream,
        sequence,
        recorded_at: chrono::Utc::now(),
        correlation_id: CorrelationId::new(),
        causation_id: cause,
        schema_version: UserEvent::SCHEMA_VERSION,
        payload,
    };
    encode_event(Format::Bincode, &envelope).expect("encode envelope")
}

/// The batch an accepted user command makes: its events at
/// `expected + 1 ..`, their uniqueness changes, one outbox record per event
/// and the reply under the command id. No offset.
fn command(stream: StreamId, expected: u64, payloads: Vec<UserEvent>) -> AppendBatch {
    let command_id = CommandId::new();
    let mut events = Vec::new();
    let mut outbox = Vec::new();
    let mut unique = Vec::new();
    let mut sequences = Vec::new();
    for (i, payload) in payloads.into_iter().enumerate() {
        let sequence = expected + 1 + i as u64;
        unique.extend(User::unique_changes(&payload));
        let bytes = envelope_bytes(stream, sequence, command_id, payload);
        outbox.push(OutboxRecord {
            topic: Service::Users.events_topic().to_owned(),
            key: Some(stream.id.to_string().into_bytes()),
            payload: Some(bytes.clone()),
            headers: Vec::new(),
        });
        events.push(bytes);
        sequences.push(sequence);
    }
    let reply = Reply {
        command_id,
        correlation_id: CorrelationId::new(),
        stream,
        outcome: Outcome::Accepted { sequences },
        result: None,
    };
    AppendBatch {
        events: Some(StreamAppend {
            stream,
            expected_version: expected,
            events,
            unique,
        }),
        outbox,
        processed: Some((command_id, encode(Format::Bincode, &reply).expect("reply"))),
        offset: None,
        schedule: None,
        archive: Vec::new(),
        secrets: Vec::new(),
        lists: Vec::new(),
    }
}

fn offset(partition: i32, next_offset: i64) -> ConsumedOffset {
    ConsumedOffset {
        topic: USERS_COMMANDS.to_owned(),
        partition,
        cluster_id: "test-cluster".to_owned(),
        next_offset,
    }
}

fn command_id_of(batch: &AppendBatch) -> CommandId {
    batch.processed.as_ref().expect("batch has a command id").0
}

fn stream_bytes(journal: &Journal, stream: &StreamId) -> Vec<(u64, Vec<u8>)> {
    journal
        .read_stream(stream, 1)
        .collect::<Result<_, _>>()
        .expect("read stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_at_one_version_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let stream = user_stream();
    const TASKS: usize = 32;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let journal = journal.clone();
        let barrier = barrier.clone();
        // Each contender decides against version 0 with its own events.
        let batch = command(stream, 0, vec![deposit(i as u64 + 1), deposit(1000)]);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let result = journal.append(batch.clone()).await;
            (batch, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (batch, result) = task.await.unwrap();
        match result {
            Ok(_) => winners.push(batch),
            Err(JournalError::Conflict {
                stream: s,
                expected,
                actual,
            }) => {
                assert_eq!((s, expected, actual), (stream, 0, 2));
                // A loser wrote nothing, not even its reply.
                let id = command_id_of(&batch);
                assert_eq!(journal.processed_reply(&id).unwrap(), None);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one append wins");
    let winner = &winners[0];
    assert_eq!(journal.version(&stream).unwrap(), 2);
    let stored: Vec<Vec<u8>> = stream_bytes(&journal, &stream)
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    assert_eq!(&stored, &winner.events.as_ref().unwrap().events);
    assert_eq!(journal.outbox_len(), 2);
    assert_eq!(journal.log_head(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_stay_contiguous_and_the_log_lists_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    const STREAMS: usize = 16;
    const APPENDS: u64 = 10;
    let barrier = Arc::new(Barrier::new(STREAMS));
    let mut tasks = Vec::new();
    for _ in 0..STREAMS {
        let journal = journal.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let stream = user_stream();
            let mut version = 0;
            let mut receipts: Vec<(AppendReceipt, Vec<u64>)> = Vec::new();
            barrier.wait().await;
            for i in 0..APPENDS {
                // 1-3 events per batch, so batches of different sizes interleave.
                let count = 1 + i % 3;
                let payloads = (0..count).map(|k| deposit(k + 1)).collect();
                let receipt = journal
                    .append(command(stream, version, payloads))
                    .await
                    .expect("append at the right version");
                receipts.push((receipt, (version + 1..=version + count).collect()));
                version += count;
            }
            (stream, version, receipts)
        }));
    }
    let mut by_position: BTreeMap<u64, (StreamId, u64)> = BTreeMap::new();
    let mut total = 0;
    for task in tasks {
        let (stream, version, receipts) = task.await.unwrap();
        let sequences: Vec<u64> = stream_bytes(&journal, &stream)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(sequences, (1..=version).collect::<Vec<_>>());
        assert_eq!(journal.version(&stream).unwrap(), version);
        for (receipt, sequences) in receipts {
            assert_eq!(receipt.log_positions.end - receipt.log_positions.start, {
                sequences.len() as u64
            });
            for (position, sequence) in receipt.log_positions.zip(sequences) {
                assert!(by_position.insert(position, (stream, sequence)).is_none());
            }
        }
        total += version;
    }
    // The log holds every event once, at contiguous positions, each where its
    // receipt said it was committed.
    let log: Vec<_> = journal.read_log(1).collect::<Result<_, _>>().unwrap();
    assert_eq!(log.len() as u64, total);
    let mut seen = HashSet::new();
    for (i, entry) in log.iter().enumerate() {
        assert_eq!(entry.position, i as u64 + 1);
        assert_eq!(by_position[&entry.position], (entry.stream, entry.sequence));
        assert!(seen.insert((entry.stream, entry.sequence)));
        let envelope = decode_event::<UserEvent>(&entry.bytes).unwrap();
        assert_eq!(
            (envelope.stream, envelope.sequence),
            (entry.stream, entry.sequence)
        );
    }
    assert_eq!(journal.log_head(), total + 1);
    // Reading from the middle starts there.
    assert_eq!(journal.read_log(total).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processed_command_returns_its_first_reply_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let stream = user_stream();
    let mut first = command(stream, 0, vec![deposit(5)]);
    first.offset = Some(offset(0, 1));
    let id = command_id_of(&first);
    let first_reply = first.processed.clone().unwrap().1;
    journal.append(first).await.unwrap();

    // The same command id again, as a redelivery would decide it: new
    // events at the new version, another reply and a later offset.
    let mut again = command(stream, 1, vec![deposit(5)]);
    again.processed = Some((id, b"another reply".to_vec()));
    again.offset = Some(offset(0, 2));
    let outbox_before = journal.outbox_len();
    let head_before = journal.log_head();
    match journal.append(again).await {
        Err(JournalError::DuplicateCommand { reply }) => assert_eq!(reply, first_reply),
        other => panic!("expected DuplicateCommand, got {other:?}"),
    }
    assert_eq!(journal.version(&stream).unwrap(), 1);
    assert_eq!(journal.outbox_len(), outbox_before);
    assert_eq!(journal.log_head(), head_before);
    assert_eq!(
        journal.offset(USERS_COMMANDS, 0).unwrap(),
        Some(offset(0, 1))
    );
    assert_eq!(
        journal.processed_reply(&id).unwrap(),
        Some(first_reply.clone())
    );

    // A batch without events (a rejected command) is idempotent the same way.
    let rejected = AppendBatch {
        processed: Some((id, b"rejected".to_vec())),
        offset: Some(offset(0, 3)),
        ..AppendBatch::default()
    };
    assert!(matches!(
        journal.append(rejected).await,
        Err(JournalError::DuplicateCommand { reply }) if reply == first_reply
    ));
    assert_eq!(
        journal.offset(USERS_COMMANDS, 0).unwrap(),
        Some(offset(0, 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_command_apply_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    const TASKS: usize = 8;
    let command_id = CommandId::new();
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let journal = journal.clone();
        let barrier = barrier.clone();
        // Each delivery decided on its own stream, with its own reply.
        let stream = user_stream();
        let mut batch = command(stream, 0, vec![deposit(1)]);
        batch.processed = Some((command_id, vec![i as u8]));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (stream, journal.append(batch).await)
        }));
    }
    let mut winner = None;
    let mut replies = Vec::new();
    for task in tasks {
        let (stream, result) = task.await.unwrap();
        match result {
            Ok(_) => {
                assert!(winner.is_none(), "applied twice");
                winner = Some(stream);
            }
            Err(JournalError::DuplicateCommand { reply }) => {
                assert_eq!(journal.version(&stream).unwrap(), 0);
                replies.push(reply);
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    let winner = winner.expect("one delivery applied");
    assert_eq!(journal.version(&winner).unwrap(), 1);
    let stored = journal.processed_reply(&command_id).unwrap().unwrap();
    assert_eq!(replies.len(), TASKS - 1);
    assert!(replies.iter().all(|r| *r == stored));
    assert_eq!(journal.outbox_len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_claim_is_exclusive_and_a_violation_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let (alice, bob) = (user_stream(), user_stream());
    let email = "shared@example.com";
    journal
        .append(command(alice, 0, vec![registered(alice, email)]))
        .await
        .unwrap();
    assert_eq!(
        journal.unique_holder(EMAIL_INDEX, email).unwrap(),
        Some(alice)
    );

    let mut claim = command(bob, 0, vec![registered(bob, email), deposit(1)]);
    claim.offset = Some(offset(3, 10));
    let bob_command = command_id_of(&claim);
    let (outbox_before, head_before) = (journal.outbox_len(), journal.log_head());
    match journal.append(claim.clone()).await {
        Err(JournalError::UniqueViolation { index, key, holder }) => {
            assert_eq!(
                (index.as_str(), key.as_str(), holder),
                (EMAIL_INDEX, email, alice)
            );
        }
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    // Atomic: none of the batch is there.
    assert_eq!(journal.version(&bob).unwrap(), 0);
    assert_eq!(stream_bytes(&journal, &bob), vec![]);
    assert_eq!(journal.outbox_len(), outbox_before);
    assert_eq!(journal.log_head(), head_before);
    assert_eq!(journal.processed_reply(&bob_command).unwrap(), None);
    assert_eq!(journal.offset(USERS_COMMANDS, 3).unwrap(), None);
    assert_eq!(
        journal.unique_holder(EMAIL_INDEX, email).unwrap(),
        Some(alice)
    );

    // Alice deletes her account, releasing the email; Bob can then claim it.
    let deleted = UserEvent::Deleted {
        email: email.to_owned(),
    };
    journal
        .append(command(alice, 1, vec![deleted]))
        .await
        .unwrap();
    assert_eq!(journal.unique_holder(EMAIL_INDEX, email).unwrap(), None);
    journal.append(claim).await.unwrap();
    assert_eq!(
        journal.unique_holder(EMAIL_INDEX, email).unwrap(),
        Some(bob)
    );
    assert_eq!(journal.version(&bob).unwrap(), 2);
    assert_eq!(
        journal.offset(USERS_COMMANDS, 3).unwrap(),
        Some(offset(3, 10))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_records_land_at_the_receipt_positions_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let mut watch = journal.outbox_watch();
    assert_eq!(*watch.borrow_and_update(), 1);
    let stream = user_stream();

    let first = command(stream, 0, vec![deposit(1), deposit(2), deposit(3)]);
    let receipt = journal.append(first.clone()).await.unwrap();
    assert_eq!(receipt.outbox_positions, 1..4);
    // The writer publishes the new head before it acknowledges the append.
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), 4);
    let pending = journal.outbox_pending(1, 100).unwrap();
    let positions: Vec<u64> = pending.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, vec![1, 2, 3]);
    let records: Vec<OutboxRecord> = pending.into_iter().map(|(_, r)| r).collect();
    assert_eq!(records, first.outbox);

    let second = command(stream, 3, vec![deposit(4), deposit(5)]);
    let receipt = journal.append(second.clone()).await.unwrap();
    assert_eq!(receipt.outbox_positions, 4..6);
    assert_eq!(*watch.borrow_and_update(), 6);
    // `limit` and `from` page through the outbox.
    let page = journal.outbox_pending(3, 2).unwrap();
    assert_eq!(page[0], (3, first.outbox[2].clone()));
    assert_eq!(page[1], (4, second.outbox[0].clone()));
    assert_eq!(page.len(), 2);

    // A relay removes what it published; the rest stays in order.
    journal.outbox_remove(&[1, 2, 4]).unwrap();
    assert_eq!(journal.outbox_len(), 2);
    let rest: Vec<u64> = journal
        .outbox_pending(0, 100)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(rest, vec![3, 5]);

    // Positions never reuse removed ones.
    let third = command(stream, 5, vec![deposit(6)]);
    assert_eq!(journal.append(third).await.unwrap().outbox_positions, 6..7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_stored_with_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    assert_eq!(journal.offset(USERS_COMMANDS, 0).unwrap(), None);
    let stream = user_stream();
    let mut batch = command(stream, 0, vec![deposit(1)]);
    batch.offset = Some(offset(0, 41));
    journal.append(batch).await.unwrap();
    assert_eq!(
        journal.offset(USERS_COMMANDS, 0).unwrap(),
        Some(offset(0, 41))
    );
    assert_eq!(journal.offset(USERS_COMMANDS, 1).unwrap(), None);
    assert_eq!(journal.offset("orders.commands", 0).unwrap(), None);

    // A redelivered record writes only its offset.
    let only_offset = AppendBatch {
        offset: Some(offset(0, 42)),
        ..AppendBatch::default()
    };
    let receipt = journal.append(only_offset).await.unwrap();
    assert!(receipt.log_positions.is_empty() && receipt.outbox_positions.is_empty());
    assert_eq!(
        journal.offset(USERS_COMMANDS, 0).unwrap(),
        Some(offset(0, 42))
    );
    assert_eq!(journal.version(&stream).unwrap(), 1);

    // Commands finish out of order across aggregates: an older position from
    // the same cluster never moves the stored one back, while the batch's
    // other effects still land.
    let mut late = command(stream, 1, vec![deposit(2)]);
    late.offset = Some(offset(0, 40));
    journal.append(late).await.unwrap();
    assert_eq!(journal.version(&stream).unwrap(), 2);
    assert_eq!(
        journal.offset(USERS_COMMANDS, 0).unwrap(),
        Some(offset(0, 42))
    );
    // An offset from another cluster means nothing here: it replaces.
    let other_cluster = ConsumedOffset {
        cluster_id: "another-cluster".to_owned(),
        ..offset(0, 3)
    };
    let batch = AppendBatch {
        offset: Some(other_cluster.clone()),
        ..AppendBatch::default()
    };
    journal.append(batch).await.unwrap();
    assert_eq!(
        journal.offset(USERS_COMMANDS, 0).unwrap(),
        Some(other_cluster)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_round_trip_and_a_corrupt_one_falls_back_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let stream = user_stream();
    let payloads = vec![
        registered(stream, "snap@example.com"),
        deposit(100),
        deposit(250),
    ];
    journal.append(command(stream, 0, payloads)).await.unwrap();
    journal
        .append(command(stream, 3, vec![deposit(7)]))
        .await
        .unwrap();

    let full = replay::<User>(&journal, stream.id, None).unwrap();
    assert_eq!(full.version, 4);
    assert_eq!(full.state.balance(), Cents(357));
    assert_eq!(recover::<User>(&journal, stream.id).unwrap(), full);

    // A snapshot in the middle plus the events after it is the same state.
    let middle = replay::<User>(&journal, stream.id, Some(2)).unwrap();
    assert_eq!(middle.state.balance(), Cents(100));
    let bytes = encode_snapshot(&middle.state).unwrap();
    journal.save_snapshot(&stream, 2, &bytes).unwrap();
    assert_eq!(journal.load_snapshot(&stream).unwrap(), Some((2, bytes)));
    assert_eq!(recover::<User>(&journal, stream.id).unwrap(), full);

    // Garbage, and a right format byte followed by garbage: ignored, and the
    // stream replayed in full.
    for garbage in [b"\x7fnot a snapshot".to_vec(), vec![0x01, 0xff, 0xff, 0xff]] {
        journal.save_snapshot(&stream, 3, &garbage).unwrap();
        assert_eq!(journal.load_snapshot(&stream).unwrap(), Some((3, garbage)));
        assert_eq!(recover::<User>(&journal, stream.id).unwrap(), full);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_event_bytes_make_recovery_fail_with_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());

    // Garbage after a valid event: the journal stores bytes as given.
    let stream = user_stream();
    journal
        .append(command(stream, 0, vec![deposit(1)]))
        .await
        .unwrap();
    let mut garbage = command(stream, 1, vec![deposit(2)]);
    garbage.events.as_mut().unwrap().events = vec![vec![0x01, 0xde, 0xad, 0xbe, 0xef]];
    journal.append(garbage).await.unwrap();
    assert!(matches!(
        recover::<User>(&journal, stream.id),
        Err(JournalError::Corrupt { .. })
    ));
    assert!(matches!(
        replay::<User>(&journal, stream.id, None),
        Err(JournalError::Corrupt { .. })
    ));
    // Up to the last good event, replay still works.
    assert_eq!(
        replay::<User>(&journal, stream.id, Some(1))
            .unwrap()
            .version,
        1
    );

    // A valid envelope stored at the wrong place is corrupt too.
    let misplaced = user_stream();
    let mut batch = command(misplaced, 0, vec![deposit(1)]);
    batch.events.as_mut().unwrap().events =
        vec![envelope_bytes(misplaced, 7, CommandId::new(), deposit(1))];
    journal.append(batch).await.unwrap();
    assert!(matches!(
        recover::<User>(&journal, misplaced.id),
        Err(JournalError::Corrupt { .. })
    ));

    // Empty event bytes: an error, not a panic.
    let empty = user_stream();
    let mut batch = command(empty, 0, vec![deposit(1)]);
    batch.events.as_mut().unwrap().events = vec![Vec::new()];
    journal.append(batch).await.unwrap();
    assert!(matches!(
        replay::<User>(&journal, empty.id, None),
        Err(JournalError::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    const TASKS: usize = 64;
    const APPENDS: u64 = 20;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let journal = journal.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let stream = user_stream();
            barrier.wait().await;
            for version in 0..APPENDS {
                journal
                    .append(command(stream, version, vec![deposit(1)]))
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = journal.stats();
    let appends = TASKS as u64 * APPENDS;
    assert_eq!(stats.commits, appends);
    assert_eq!(stats.events, appends);
    // 64 appenders keep the queue non-empty while a flush runs, so groups
    // form: fewer flushes than commits.
    assert!(stats.flushes < stats.commits, "no group commit: {stats:?}");
    assert!(stats.events_per_flush() > 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_keeps_its_state_and_continues_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (user_stream(), user_stream());
    let remembered_command;
    {
        let journal = open(dir.path());
        journal
            .append(command(alice, 0, vec![deposit(1), deposit(2)]))
            .await
            .unwrap();
        let mut batch = command(bob, 0, vec![deposit(3)]);
        batch.offset = Some(offset(2, 17));
        remembered_command = command_id_of(&batch);
        journal.append(batch).await.unwrap();
        journal.outbox_remove(&[1]).unwrap();
        // Deletions are not flushed on their own; make this one durable.
        journal.flush().unwrap();
        assert_eq!(journal.log_head(), 4);
    }

    let journal = open(dir.path());
    assert_eq!(journal.version(&alice).unwrap(), 2);
    assert_eq!(journal.version(&bob).unwrap(), 1);
    assert_eq!(journal.log_head(), 4);
    assert_eq!(
        journal.offset(USERS_COMMANDS, 2).unwrap(),
        Some(offset(2, 17))
    );
    assert!(journal
        .processed_reply(&remembered_command)
        .unwrap()
        .is_some());
    let positions: Vec<u64> = journal
        .outbox_pending(0, 100)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(positions, vec![2, 3]);
    assert_eq!(*journal.outbox_watch().borrow(), 4);
    let mut streams: Vec<(StreamId, u64)> = journal
        .streams(Some(StreamKind::User))
        .collect::<Result<_, _>>()
        .unwrap();
    streams.sort();
    let mut expected = vec![(alice, 2), (bob, 1)];
    expected.sort();
    assert_eq!(streams, expected);

    // New appends continue every numbering.
    let receipt = journal
        .append(command(alice, 2, vec![deposit(4)]))
        .await
        .unwrap();
    assert_eq!(receipt.log_positions, 4..5);
    assert_eq!(receipt.outbox_positions, 4..5);
    assert_eq!(journal.version(&alice).unwrap(), 3);
    assert!(matches!(
        journal.append(command(alice, 2, vec![deposit(5)])).await,
        Err(JournalError::Conflict { actual: 3, .. })
    ));
    let state = recover::<User>(&journal, alice.id).unwrap();
    assert_eq!((state.version, state.state.balance()), (3, Cents(7)));
    // The reply stored before the reopen still decodes.
    let reply: Reply = decode(
        &journal
            .processed_reply(&remembered_command)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(reply.outcome, Outcome::Accepted { sequences: vec![1] });
}

#[test]
fn processed_commands_lists_every_stored_reply() {
    let journal = Journal::open(JournalConfig::tmp()).unwrap();
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let batch = command(user_stream(), 0, vec![deposit(1)]);
        ids.insert(command_id_of(&batch));
        journal.append_blocking(batch).unwrap();
    }
    let listed: HashSet<CommandId> = journal
        .processed_commands()
        .map(|item| item.unwrap().0)
        .collect();
    assert_eq!(listed, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_pending_never_returns_records_that_are_not_durable_yet() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    const TASKS: usize = 16;
    const APPENDS: u64 = 20;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let stream = user_stream();
            for version in 0..APPENDS {
                journal
                    .append(command(stream, version, vec![deposit(1)]))
                    .await
                    .expect("append");
            }
        }));
    }
    // A relay polling while groups are being committed and flushed: every
    // record it is handed must already be durable, i.e. below the durable
    // head published by `outbox_watch` (read after the records). It spins
    // rather than waits on the watch because the window it probes is the
    // one between a group's commit and its flush.
    let done = Arc::new(AtomicBool::new(false));
    let relay = {
        let journal = journal.clone();
        let done = done.clone();
        let watch = journal.outbox_watch();
        std::thread::spawn(move || {
            let mut early = 0;
            while !done.load(Ordering::Acquire) {
                let pending = journal.outbox_pending(0, usize::MAX).unwrap();
                let durable = *watch.borrow();
                if pending.last().is_some_and(|(p, _)| *p >= durable) {
                    early += 1;
                }
                std::thread::yield_now();
            }
            early
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let early = tokio::task::spawn_blocking(move || relay.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        early, 0,
        "outbox_pending handed out records before their flush"
    );
    assert_eq!(journal.outbox_len() as u64, TASKS as u64 * APPENDS);
    assert_eq!(
        journal.outbox_pending(0, usize::MAX).unwrap().len(),
        journal.outbox_len()
    );
}
