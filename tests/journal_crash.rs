//! Crash test of the journal: `ordersaga journal-load` appends from 16 writers
//! to 64 streams and prints each durable append; the test SIGKILLs it mid-run,
//! reopens the store and checks that it is consistent and that every
//! acknowledged append survived. The kill is repeated on the same store, each
//! run resuming from the stored versions, so recovery of a store that was
//! itself recovered is exercised too.
//!
//! SIGKILL leaves the OS page cache intact, so this proves crash consistency
//! of the process (atomic batches, no half-written groups, correct restart),
//! not power-loss durability.

use ordersaga_actors::aggregates::{User, EMAIL_INDEX};
use ordersaga_actors::recovery::{decode_stored, replay};
use ordersaga_actors::{Journal, JournalConfig};
use ordersaga_events::codec::{decode, decode_event};
use ordersaga_events::topics::USERS_COMMANDS;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{CommandId, EventId, Outcome, Reply, StreamId};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WRITERS: usize = 16;
const STREAMS: usize = 64;
/// How long to wait for the next ack line before declaring the child stuck.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// One `ack <stream> <last-sequence> <command-id>` line.
#[derive(Debug)]
struct Ack {
    stream: StreamId,
    sequence: u64,
    command_id: CommandId,
}

fn parse_ack(line: &str) -> Ack {
    let fields: Vec<&str> = line.split(' ').collect();
    assert!(
        fields.len() == 4 && fields[0] == "ack",
        "malformed line {line:?}"
    );
    Ack {
        stream: fields[1].parse().expect("stream id"),
        sequence: fields[2].parse().expect("sequence"),
        command_id: fields[3].parse().expect("command id"),
    }
}

fn load_command(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordersaga"));
    command
        .arg("journal-load")
        .arg("--data")
        .arg(data)
        .arg("--writers")
        .arg(WRITERS.to_string())
        .arg("--streams")
        .arg(STREAMS.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Runs `journal-load` until it has printed `kill_after` acks, SIGKILLs it,
/// and returns every ack it printed (including those read after the kill
/// signal but printed before it).
fn run_and_kill(data: &Path, kill_after: usize) -> Vec<Ack> {
    let mut child = load_command(data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn journal-load");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    // A reader thread, so the test can wait on a channel with a deadline
    // instead of blocking on the pipe or polling.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    while acks.len() < kill_after {
        match rx.recv_timeout(ACK_TIMEOUT) {
            Ok(line) => acks.push(parse_ack(&line)),
            Err(err) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "journal-load stopped after {} acks ({err}); status {status:?}",
                    acks.len()
                );
            }
        }
    }
    child.kill().expect("SIGKILL journal-load");
    let status = child.wait().expect("wait for journal-load");
    assert!(!status.success(), "journal-load should have been killed");
    // The pipe closes with the process; the reader then ends and the channel
    // holds whatever else was printed before the kill.
    reader.join().expect("reader thread");
    acks.extend(rx.try_iter().map(|line| parse_ack(&line)));
    acks
}

/// What the store holds after a crash, for checks across runs.
struct Checked {
    versions: BTreeMap<StreamId, u64>,
    processed: usize,
}

/// Opens the store and checks every invariant a batch transaction promises,
/// then that every ack is present.
fn check_store(data: &Path, acks: &[Ack]) -> Checked {
    let journal = Journal::open(JournalConfig::new(data)).expect("reopen the store");

    // Streams: contiguous 1..=version, each event decodes and sits where its
    // envelope says.
    let mut events: BTreeMap<(StreamId, u64), (EventId, CommandId)> = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for item in journal.streams(None) {
        let (stream, version) = item.expect("stream");
        let mut expected = 1;
        for event in journal.read_stream(&stream, 1) {
            let (sequence, bytes) = event.expect("stored event");
            assert_eq!(sequence, expected, "gap in {stream}");
            let envelope = decode_stored::<User>(&stream, sequence, &bytes).expect("decodes");
            if sequence == 1 {
                let UserEvent::Registered { email, .. } = &envelope.payload else {
                    panic!("{stream} does not start with Registered");
                };
                assert_eq!(
                    journal.unique_holder(EMAIL_INDEX, email).expect("unique"),
                    Some(stream),
                    "the email claim of {stream} is missing"
                );
            }
            events.insert(
                (stream, sequence),
                (envelope.event_id, envelope.causation_id),
            );
            expected += 1;
        }
        assert_eq!(expected - 1, version, "version of {stream} ≠ its events");
        // The aggregate replays from the recovered store.
        assert_eq!(
            replay::<User>(&journal, stream.id, None).unwrap().version,
            version
        );
        versions.insert(stream, version);
    }
    assert!(versions.len() <= STREAMS);

    // Global log: contiguous positions from 1, every event exactly once, and
    // each stream's events in sequence order.
    let mut seen = HashSet::new();
    let mut last_in_stream: BTreeMap<StreamId, u64> = BTreeMap::new();
    let mut position = 1;
    for entry in journal.read_log(1) {
        let entry = entry.expect("log entry");
        assert_eq!(entry.position, position, "gap in the global log");
        assert!(
            events.contains_key(&(entry.stream, entry.sequence)),
            "log names a missing event"
        );
        assert!(seen.insert((entry.stream, entry.sequence)), "logged twice");
        let last = last_in_stream.entry(entry.stream).or_insert(0);
        assert_eq!(entry.sequence, *last + 1, "log out of stream order");
        *last = entry.sequence;
        position += 1;
    }
    assert_eq!(seen.len(), events.len(), "events missing from the log");
    assert_eq!(journal.log_head(), position);

    // Outbox: nothing is relayed here, so one record per event at contiguous
    // positions, each the envelope of an event that exists.
    let outbox = journal.outbox_pending(0, usize::MAX).expect("outbox");
    assert_eq!(outbox.len(), events.len(), "outbox ≠ events");
    for (i, (position, record)) in outbox.iter().enumerate() {
        assert_eq!(*position, i as u64 + 1, "gap in the outbox");
        let envelope = decode_event::<UserEvent>(record.payload.as_deref().unwrap_or_default())
            .expect("outbox payload");
        let stored = events
            .get(&(envelope.stream, envelope.sequence))
            .expect("outbox record of a missing event");
        assert_eq!(stored.0, envelope.event_id, "outbox names another event");
    }

    // Processed commands: each reply's events exist and were caused by that
    // command; together they cover every event exactly once.
    let mut covered = HashSet::new();
    let mut processed = 0;
    for item in journal.processed_commands() {
        let (command_id, bytes) = item.expect("processed entry");
        let reply: Reply = decode(&bytes).expect("reply decodes");
        assert_eq!(reply.command_id, command_id);
        let Outcome::Accepted { sequences } = reply.outcome else {
            panic!("journal-load only stores accepted replies");
        };
        assert!(!sequences.is_empty());
        for sequence in sequences {
            let stored = events
                .get(&(reply.stream, sequence))
                .unwrap_or_else(|| panic!("reply without its event {}#{sequence}", reply.stream));
            assert_eq!(stored.1, command_id, "event caused by another command");
            assert!(covered.insert((reply.stream, sequence)));
        }
        processed += 1;
    }
    assert_eq!(covered.len(), events.len(), "events without a stored reply");

    // Offsets: one per writer partition, advanced once per append in the
    // same transaction, so they count the processed commands exactly.
    let offsets: i64 = (0..WRITERS)
        .map(|p| {
            journal
                .offset(USERS_COMMANDS, p as i32)
                .expect("offset")
                .map_or(0, |o| o.next_offset)
        })
        .sum();
    assert_eq!(offsets, processed as i64, "offsets ≠ processed commands");

    // Every acknowledged append is there.
    for ack in acks {
        assert!(
            versions.get(&ack.stream).copied().unwrap_or(0) >= ack.sequence,
            "acked {}#{} lost",
            ack.stream,
            ack.sequence
        );
        let stored = events[&(ack.stream, ack.sequence)];
        assert_eq!(stored.1, ack.command_id, "acked event has another cause");
        let reply = journal
            .processed_reply(&ack.command_id)
            .expect("processed")
            .expect("acked command has no stored reply");
        let reply: Reply = decode(&reply).expect("reply decodes");
        assert_eq!(reply.stream, ack.stream, "acked reply names another stream");
        let Outcome::Accepted { sequences } = reply.outcome else {
            panic!("acked command was not accepted");
        };
        assert_eq!(sequences.last(), Some(&ack.sequence), "ack ≠ stored reply");
    }
    Checked {
        versions,
        processed,
    }
}

#[test]
fn acknowledged_appends_survive_repeated_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let mut previous = Checked {
        versions: BTreeMap::new(),
        processed: 0,
    };
    // Varied kill points: right after start (recovery of a barely written
    // store), mid-run, and longer runs.
    for (round, kill_after) in [300, 1, 450, 120, 300].into_iter().enumerate() {
        let acks = run_and_kill(&data, kill_after);
        assert!(acks.len() >= kill_after);
        let checked = check_store(&data, &acks);
        // Each run resumes where the store left off: nothing goes backwards
        // and this run's acks are new appends.
        for (stream, version) in &previous.versions {
            assert!(
                checked.versions[stream] >= *version,
                "round {round}: {stream} went back"
            );
        }
        assert!(checked.processed >= previous.processed + acks.len());
        previous = checked;
    }

    // A clean, bounded run on the crashed-and-recovered store.
    let output = load_command(&data)
        .arg("--appends")
        .arg("200")
        .stdout(Stdio::piped())
        .output()
        .expect("run journal-load");
    assert!(output.status.success(), "journal-load failed: {output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let acks: Vec<Ack> = stdout.lines().map(parse_ack).collect();
    assert_eq!(acks.len(), 200);
    let checked = check_store(&data, &acks);
    assert_eq!(checked.processed, previous.processed + 200);
}
