//! Leader/follower group commit: an appender that finds the journal idle
//! commits its own group on its own thread; appenders that arrive meanwhile
//! queue and are committed by the writer thread. These tests check what
//! must hold whoever writes a group: a lone append is durable when it
//! returns, appenders on one executor thread still share groups, a leader
//! whose future is dropped neither loses its batch nor wedges the journal,
//! and positions stay contiguous with async and blocking appenders mixed.

use ordersaga_actors::journal::{AppendBatch, OutboxRecord, StreamAppend};
use ordersaga_actors::{Journal, JournalConfig, JournalError};
use ordersaga_events::codec::{encode_event, Format};
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, StreamId, StreamKind, Versioned,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn open(dir: &Path) -> Journal {
    Journal::open(JournalConfig::new(dir.join("store"))).expect("open journal")
}

fn user_stream() -> StreamId {
    StreamId::new(StreamKind::User, Uuid::new_v4())
}

/// A one-deposit command on `stream` at `expected`: event, outbox record,
/// reply.
fn deposit(stream: StreamId, expected: u64) -> AppendBatch {
    let command_id = CommandId::new();
    let envelope = Envelope {
        event_id: EventId::new(),
        stream,
        sequence: expected + 1,
        recorded_at: chrono::Utc::now(),
        correlation_id: CorrelationId::new(),
        causation_id: command_id,
        schema_version: UserEvent::SCHEMA_VERSION,
        payload: UserEvent::Deposited { amount: Cents(1) },
    };
    let bytes = encode_event(Format::Bincode, &envelope).expect("encode envelope");
    AppendBatch {
        events: Some(StreamAppend {
            stream,
            expected_version: expected,
            events: vec![bytes.clone()],
            unique: Vec::new(),
        }),
        outbox: vec![OutboxRecord {
            topic: Service::Users.events_topic().to_owned(),
            key: Some(stream.id.to_string().into_bytes()),
            payload: Some(bytes),
            headers: Vec::new(),
        }],
        processed: Some((command_id, b"reply".to_vec())),
        ..AppendBatch::default()
    }
}

/// Every log position from 1 to the head, once, and each stream's events
/// numbered 1..=version.
fn assert_log_contiguous(journal: &Journal) {
    let mut per_stream: BTreeMap<StreamId, Vec<u64>> = BTreeMap::new();
    let mut expected = 1;
    for entry in journal.read_log(1) {
        let entry = entry.expect("log entry");
        assert_eq!(entry.position, expected, "a hole in the log");
        expected += 1;
        per_stream
            .entry(entry.stream)
            .or_default()
            .push(entry.sequence);
    }
    assert_eq!(journal.log_head(), expected);
    for (stream, sequences) in per_stream {
        let version = journal.version(&stream).unwrap();
        assert_eq!(sequences, (1..=version).collect::<Vec<_>>(), "{stream}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_append_is_flushed_and_announced_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let watch = journal.outbox_watch();
    let stream = user_stream();
    for version in 0..20 {
        let before = journal.stats();
        let receipt = journal
            .append(deposit(stream, version))
            .await
            .expect("append");
        let after = journal.stats();
        // Its own flush, done before the call returned.
        assert_eq!(after.commits, before.commits + 1);
        assert_eq!(after.flushes, before.flushes + 1);
        // And the relay may already publish its outbox record.
        assert!(*watch.borrow() >= receipt.outbox_positions.end);
        assert_eq!(journal.version(&stream).unwrap(), version + 1);
    }
    // A blocking caller leads the same way.
    let journal2 = journal.clone();
    tokio::task::spawn_blocking(move || {
        let before = journal2.stats();
        journal2
            .append_blocking(deposit(stream, 20))
            .expect("append");
        assert_eq!(journal2.stats().flushes, before.flushes + 1);
    })
    .await
    .unwrap();
    drop(journal);
    // Reopened, the store holds every append and its durable head agrees.
    let journal = open(dir.path());
    assert_eq!(journal.version(&stream).unwrap(), 21);
    assert_eq!(journal.outbox_len(), 21);
    assert_log_contiguous(&journal);
}

#[test]
fn appenders_on_one_executor_thread_share_a_group() {
    // An actix arbiter is a current-thread runtime: the leader yields once
    // before it commits, so the appenders ready on the same thread join
    // its group instead of each paying a flush of its own.
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    const TASKS: u64 = 32;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let journal = journal.clone();
                tokio::spawn(async move { journal.append(deposit(user_stream(), 0)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("append");
        }
    });
    let stats = journal.stats();
    assert_eq!(stats.commits, TASKS);
    assert!(
        stats.flushes < TASKS / 2,
        "appenders on one thread did not group: {stats:?}"
    );
    assert_log_contiguous(&journal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_dropped_before_it_commits_still_writes_its_batch_and_frees_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let stream = user_stream();
    // The first poll makes this append the leader, which then yields; it
    // is dropped right there, before it committed anything.
    let mut append = Box::pin(journal.append(deposit(stream, 0)));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        append.as_mut().poll(&mut cx).is_pending(),
        "a leader yields before it commits"
    );
    drop(append);
    // Its batch is written all the same (by the writer thread), as a queued
    // append whose caller stopped waiting would be.
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal.version(&stream).unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the dropped leader's batch was lost"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // And the journal is not left thinking someone leads: lone appends go on.
    for version in 1..5 {
        journal
            .append(deposit(stream, version))
            .await
            .expect("append after a dropped leader");
    }
    assert_eq!(journal.version(&stream).unwrap(), 5);
    assert_log_contiguous(&journal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_lone_append_writes_nothing_and_the_next_one_commits() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let stream = user_stream();
    journal.append(deposit(stream, 0)).await.expect("append");
    let before = journal.stats();
    let stale = deposit(stream, 0);
    let command_id = stale.processed.as_ref().unwrap().0;
    match journal.append(stale).await {
        Err(JournalError::Conflict {
            expected: 0,
            actual: 1,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nothing of the refused batch: no reply, no outbox record, no flush.
    assert_eq!(journal.processed_reply(&command_id).unwrap(), None);
    assert_eq!(journal.outbox_len(), 1);
    assert_eq!(journal.stats(), before);
    journal.append(deposit(stream, 1)).await.expect("append");
    assert_eq!(journal.version(&stream).unwrap(), 2);
    assert_log_contiguous(&journal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_and_blocking_appenders_mixed_keep_the_log_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    const APPENDS: u64 = 30;
    let mut threads = Vec::new();
    for _ in 0..4 {
        let journal = journal.clone();
        threads.push(std::thread::spawn(move || {
            let stream = user_stream();
            for version in 0..APPENDS {
                journal
                    .append_blocking(deposit(stream, version))
                    .expect("blocking append");
            }
        }));
    }
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let stream = user_stream();
                for version in 0..APPENDS {
                    journal
                        .append(deposit(stream, version))
                        .await
                        .expect("async append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = journal.stats();
    assert_eq!(stats.commits, 20 * APPENDS);
    assert_eq!(journal.outbox_len() as u64, 20 * APPENDS);
    assert_log_contiguous(&journal);
}

#[test]
fn the_durable_head_is_rewritten_in_place_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let head = store.join("durable-head");
    {
        let journal = open(dir.path());
        journal
            .append_blocking(deposit(user_stream(), 0))
            .expect("append");
    }
    // A head file longer than any text the writer will write (as a head
    // with larger numbers would be): the new text must not leave its tail.
    std::fs::write(&head, format!("log 1 outbox 1{}\n", " ".repeat(64))).unwrap();
    let journal = open(dir.path());
    let stream = user_stream();
    for version in 0..3 {
        journal
            .append_blocking(deposit(stream, version))
            .expect("append");
    }
    let text = std::fs::read_to_string(&head).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words, ["log", "5", "outbox", "5"], "{text:?}");
    drop(journal);
    // And the store reopens against it.
    let journal = open(dir.path());
    assert_eq!(journal.version(&stream).unwrap(), 3);
}
