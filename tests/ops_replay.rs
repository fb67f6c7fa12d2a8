//! `ordersaga replay`, the built binary on stopped stores:
//!
//! - an order taken through the whole saga and then cancelled, replayed as
//!   it was before and after the cancellation, by sequence and by time,
//!   together with its saga and its user's money at the same instants; the
//!   whole orders store replayed, and checked clean;
//! - `--check` naming each difference between the replay from scratch, the
//!   snapshot + tail recovery and the stored snapshot;
//! - a damaged event: exit 1, the stream and sequence named, no panic;
//! - a store a process holds: a clear error.
//!
//! The saga runs on the embedded broker, or on `ORDERSAGA_TEST_BROKERS`.

// Money is written as dollars_cents: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use chrono::{DateTime, Duration as TimeDelta, SecondsFormat, Utc};
use ordersaga_actors::aggregates::{Order, User};
use ordersaga_actors::journal::{AppendBatch, StreamAppend};
use ordersaga_actors::recovery::{decode_stored, encode_snapshot};
use ordersaga_actors::{Aggregate, Journal};
use ordersaga_events::codec::{encode_event, Format};
use ordersaga_events::order::{OrderCommand, OrderEvent};
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, StreamId, StreamKind, UserId, Versioned,
};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::shop::Shop;
use support::TestBroker;
use uuid::Uuid;

/// What one run of the binary left.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout lines parsed as JSON.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The single JSON object printed.
    fn json(&self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(lines.len(), 1, "{}", self.stdout);
        lines.remove(0)
    }

    fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

fn ordersaga(data: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .arg("replay")
        .arg("--data")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ordersaga replay");
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "replay panicked:\n{}",
        run.stderr
    );
    run
}

/// RFC 3339 with every stored digit.
fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The events of a stream of `A` in `journal`, decoded.
fn events<A: Aggregate>(journal: &Journal, stream: StreamId) -> Vec<Envelope<A::Event>> {
    journal
        .read_stream(&stream, 1)
        .map(|item| {
            let (sequence, bytes) = item.unwrap();
            decode_stored::<A>(&stream, sequence, &bytes).unwrap()
        })
        .collect()
}

#[actix_rt::test]
async fn an_order_replays_as_it_was_before_and_after_its_cancellation() {
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
    let user = shop.user(100_00).await;
    let product = shop.product(10_00, 5).await;
    let order = shop.order(user, &[(product, 2)]).await;
    assert_eq!(shop.saga_end(order).await, SagaEvent::Completed);
    shop.send(
        Service::Orders,
        &order.to_string(),
        OrderCommand::Cancel {
            order_id: order,
            reason: "changed_mind".into(),
        },
    )
    .await;
    shop.saga_event(order, "the saga to abort", |e| {
        matches!(e, SagaEvent::Aborted { .. })
    })
    .await;
    let order_stream = StreamId::new(StreamKind::Order, order.as_uuid());
    let cancelled = events::<Order>(shop.journal(Service::Orders), order_stream)
        .into_iter()
        .find(|e| matches!(e.payload, OrderEvent::Cancelled { .. }))
        .expect("the order was cancelled");
    shop.stop_all().await;
    let data = shop.data_dir().to_path_buf();
    let (seq, at) = (cancelled.sequence, cancelled.recorded_at);
    let just_before = rfc3339(at - TimeDelta::microseconds(1));
    let order_arg = format!("order:{order}");

    // By sequence: the event before the cancellation, and the cancellation.
    let before = ordersaga(
        &data,
        &[
            "--stream",
            &order_arg,
            "--at",
            &(seq - 1).to_string(),
            "--json",
        ],
    );
    let before = before.assert_ok().json();
    assert_eq!(before["stream"], order_arg.as_str());
    assert_eq!(before["version"], seq - 1);
    assert_eq!(before["head"], seq);
    assert_eq!(before["state"]["status"], "confirmed");
    assert_eq!(before["state"]["cancel_reason"], Value::Null);
    let after = ordersaga(
        &data,
        &["--stream", &order_arg, "--at", &seq.to_string(), "--json"],
    );
    let after = after.assert_ok().json();
    assert_eq!(after["version"], seq);
    assert_eq!(after["state"]["status"], "cancelled");
    assert_eq!(after["state"]["cancel_reason"], "changed_mind");
    assert_eq!(after["recorded_at"], rfc3339(at).as_str());

    // By time: a microsecond before the cancellation was recorded, and at it.
    let then = ordersaga(
        &data,
        &[
            "--service",
            "orders",
            "--stream",
            &order.to_string(),
            "--at",
            &just_before,
            "--json",
        ],
    );
    assert_eq!(then.assert_ok().json()["state"]["status"], "confirmed");
    let now = ordersaga(
        &data,
        &["--stream", &order_arg, "--at", &rfc3339(at), "--json"],
    );
    assert_eq!(now.assert_ok().json()["state"]["status"], "cancelled");

    // The saga and the user's money at the same instant: paid, then given back.
    let saga_arg = format!("saga:{order}");
    let saga_then = ordersaga(
        &data,
        &["--stream", &saga_arg, "--at", &just_before, "--json"],
    );
    assert_eq!(saga_then.assert_ok().json()["state"]["phase"], "completed");
    let saga_now = ordersaga(&data, &["--stream", &saga_arg, "--json"]);
    assert_eq!(saga_now.assert_ok().json()["state"]["phase"], "aborted");
    let user_arg = format!("user:{user}");
    let paid = ordersaga(
        &data,
        &["--stream", &user_arg, "--at", &just_before, "--json"],
    );
    assert_eq!(paid.assert_ok().json()["state"]["balance"], 80_00);
    let refunded = ordersaga(&data, &["--stream", &user_arg, "--json"]);
    assert_eq!(refunded.assert_ok().json()["state"]["balance"], 100_00);

    // The text form: a header line, then the state as JSON.
    let text = ordersaga(
        &data,
        &["--stream", &order_arg, "--at", &(seq - 1).to_string()],
    );
    text.assert_ok();
    assert!(
        text.stdout
            .starts_with(&format!("{order_arg} at version {} of {seq}", seq - 1)),
        "{}",
        text.stdout
    );
    let state: Value = serde_json::from_str(text.stdout.split_once('\n').unwrap().1).unwrap();
    assert_eq!(state["status"], "confirmed");

    // Every aggregate of the orders store: the order and its saga.
    let all = ordersaga(&data, &["--service", "orders", "--json"]);
    let streams: Vec<String> = all
        .assert_ok()
        .json_lines()
        .iter()
        .map(|line| line["stream"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(streams, vec![order_arg.clone(), saga_arg.clone()]);
    // ... as they were before the cancellation.
    let all_then = ordersaga(
        &data,
        &["--service", "orders", "--at", &just_before, "--json"],
    );
    let states = all_then.assert_ok().json_lines();
    assert_eq!(states[0]["state"]["status"], "confirmed");
    assert_eq!(states[1]["state"]["phase"], "completed");

    // Every store checks clean: replay, recovery and indexes agree.
    for service in ["orders", "users", "inventory"] {
        let check = ordersaga(&data, &["--service", service, "--check"]);
        check.assert_ok();
        assert!(
            check.stdout.ends_with(": 0 differences\n"),
            "{}",
            check.stdout
        );
    }
}

/// Appends `events` to the new stream of user `id` in one batch, through
/// the journal's append path, returning the stream.
fn user_stream(journal: &Journal, id: Uuid, events: &[UserEvent]) -> StreamId {
    let stream = StreamId::new(StreamKind::User, id);
    let encoded = events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let envelope = Envelope {
                event_id: EventId::new(),
                stream,
                sequence: i as u64 + 1,
                recorded_at: Utc::now(),
                correlation_id: CorrelationId::new(),
                causation_id: CommandId::new(),
                schema_version: UserEvent::SCHEMA_VERSION,
                payload: event.clone(),
            };
            encode_event(Format::Bincode, &envelope).unwrap()
        })
        .collect();
    journal
        .append_blocking(AppendBatch {
            events: Some(StreamAppend {
                stream,
                expected_version: 0,
                events: encoded,
                unique: Vec::new(),
            }),
            ..AppendBatch::default()
        })
        .unwrap();
    stream
}

/// A registration and deposits of `amounts`.
fn account(stream_id: Uuid, amounts: &[u64]) -> Vec<UserEvent> {
    let mut events = vec![UserEvent::Registered {
        user_id: UserId::from_uuid(stream_id),
        email: format!("{stream_id}@example.com"),
        username: "u".into(),
    }];
    events.extend(amounts.iter().map(|&amount| UserEvent::Deposited {
        amount: Cents(amount),
    }));
    events
}

/// A users store under `data` with three accounts of four events each,
/// returned in creation order.
fn users_store(data: &Path) -> (Journal, Vec<StreamId>) {
    let journal = Journal::open_path(data.join("users")).unwrap();
    let streams = (0..3)
        .map(|_| {
            let id = Uuid::new_v4();
            user_stream(&journal, id, &account(id, &[100, 200, 300]))
        })
        .collect();
    (journal, streams)
}

/// Closes `journal`: the binary opens the store next.
fn close(journal: Journal) {
    journal.flush().unwrap();
    drop(journal);
}

#[test]
fn check_names_each_difference_between_replay_recovery_and_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, streams) = users_store(dir.path());
    let (damaged, intact, unreadable) = (streams[0], streams[1], streams[2]);
    let replayed = |stream: StreamId, until: u64| {
        ordersaga_actors::recovery::replay::<User>(&journal, stream.id, Some(until))
            .unwrap()
            .state
    };
    // A snapshot at #2 that says 999 were deposited where the events say 100.
    let mut wrong = replayed(damaged, 1);
    wrong.apply(&UserEvent::Deposited { amount: Cents(999) });
    journal
        .save_snapshot(&damaged, 2, &encode_snapshot(&wrong).unwrap())
        .unwrap();
    // A true snapshot, and one whose bytes are garbage.
    journal
        .save_snapshot(&intact, 2, &encode_snapshot(&replayed(intact, 2)).unwrap())
        .unwrap();
    journal
        .save_snapshot(&unreadable, 2, &[0x01, 0xff, 0xff, 0xff])
        .unwrap();
    close(journal);

    let check = ordersaga(dir.path(), &["--service", "users", "--check"]);
    assert_eq!(check.code, Some(1), "{}\n{}", check.stdout, check.stderr);
    let said = |line: String| check.stdout.lines().any(|l| l == line);
    // Recovery starts from the false snapshot and carries its error on.
    assert!(
        said(format!(
            "DIFF {damaged} recover: balance: recover 1499, replay 600"
        )),
        "{}",
        check.stdout
    );
    assert!(
        said(format!(
            "DIFF {damaged} snapshot: balance: snapshot@2 999, replay@2 100"
        )),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.lines().any(|l| l.starts_with(&format!(
            "DIFF {unreadable} snapshot: the snapshot at #2 is unreadable"
        ))),
        "{}",
        check.stdout
    );
    assert!(
        !check.stdout.contains(&intact.to_string()),
        "{}",
        check.stdout
    );
    assert!(
        check
            .stdout
            .contains("checked 3 aggregates (12 events, 2 snapshots compared"),
        "{}",
        check.stdout
    );
    assert!(
        check.stderr.contains("error: replay --check found"),
        "{}",
        check.stderr
    );

    // The same as JSON lines, one stream alone.
    let one = ordersaga(
        dir.path(),
        &["--stream", &damaged.to_string(), "--check", "--json"],
    );
    assert_eq!(one.code, Some(1));
    let lines = one.json_lines();
    let (totals, differences) = lines.split_last().unwrap();
    assert_eq!(totals["totals"]["aggregates"], 1);
    assert_eq!(totals["totals"]["differences"], differences.len());
    assert!(differences
        .iter()
        .all(|d| d["stream"] == damaged.to_string().as_str()));
    let paths: Vec<&str> = differences
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"recover") && paths.contains(&"snapshot"),
        "{paths:?}"
    );

    // The intact one alone checks clean.
    ordersaga(dir.path(), &["--stream", &intact.to_string(), "--check"]).assert_ok();
}

#[test]
fn a_damaged_event_is_named_by_stream_and_sequence_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, streams) = users_store(dir.path());
    close(journal);
    let damaged = streams[1];
    {
        let db = support::open_raw(&dir.path().join("users"));
        let events = db.open_tree("events").unwrap();
        let mut key = damaged.to_key().to_vec();
        key.extend_from_slice(&3u64.to_be_bytes());
        assert!(events.contains_key(&key).unwrap());
        events.insert(key, &[0x01, 0xff, 0xff, 0x07][..]).unwrap();
        db.flush().unwrap();
    }
    let named = format!("{damaged}#3");
    for args in [
        vec!["--service", "users"],
        vec!["--service", "users", "--json"],
        vec!["--stream", &damaged.to_string()],
        vec!["--stream", &damaged.to_string(), "--at", "3"],
    ] {
        let run = ordersaga(dir.path(), &args);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.contains("error: ") && run.stderr.contains(&named),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Before the damage, it still replays.
    ordersaga(dir.path(), &["--stream", &damaged.to_string(), "--at", "2"]).assert_ok();
    // The check reports it as a difference of that stream and goes on.
    let check = ordersaga(dir.path(), &["--service", "users", "--check"]);
    assert_eq!(check.code, Some(1));
    assert!(
        check
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("DIFF {damaged} replay: ")) && l.contains(&named)),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("checked 3 aggregates"),
        "{}",
        check.stdout
    );
}

#[test]
fn a_store_in_use_or_missing_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = users_store(dir.path());
    let held = ordersaga(dir.path(), &["--service", "users"]);
    assert_eq!(held.code, Some(1));
    assert!(
        held.stderr.contains("in use by another process") && held.stderr.contains("stop it first"),
        "{}",
        held.stderr
    );
    close(journal);
    let missing = ordersaga(dir.path(), &["--service", "orders"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no orders store at"),
        "{}",
        missing.stderr
    );
    let wrong = ordersaga(
        dir.path(),
        &[
            "--service",
            "users",
            "--stream",
            &format!("order:{}", Uuid::new_v4()),
        ],
    );
    assert_eq!(wrong.code, Some(1));
    assert!(wrong.stderr.contains("orders store"), "{}", wrong.stderr);
    let unknown = ordersaga(
        dir.path(),
        &["--stream", &format!("user:{}", Uuid::new_v4())],
    );
    assert_eq!(unknown.code, Some(1));
    assert!(
        unknown.stderr.contains("no stream user:"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn replaying_on_several_threads_gives_the_serial_output_and_the_serial_error() {
    use indicatif::ProgressBar;
    use ordersaga::ops::replay::{replay_all, ReplayError};
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_path(dir.path().join("users")).unwrap();
    // Enough streams for several batches of work.
    let streams: Vec<StreamId> = (0..700)
        .map(|i| {
            let id = Uuid::new_v4();
            user_stream(&journal, id, &account(id, &vec![1; i % 4]))
        })
        .collect();
    let lines = |jobs: usize| -> Result<Vec<String>, ReplayError> {
        let mut lines = Vec::new();
        let totals = replay_all(
            &journal,
            Service::Users,
            None,
            jobs,
            &ProgressBar::hidden(),
            |replayed| {
                lines.push(replayed.to_json());
                Ok(())
            },
        )?;
        assert_eq!(totals.aggregates, 700);
        Ok(lines)
    };
    let serial = lines(1).unwrap();
    assert_eq!(serial.len(), 700);
    let mut sorted = streams.clone();
    sorted.sort();
    for (line, stream) in serial.iter().zip(&sorted) {
        assert!(
            line.starts_with(&format!("{{\"stream\":\"{stream}\"")),
            "{line}"
        );
    }
    assert_eq!(lines(3).unwrap(), serial);

    // A damaged event far down the stream order: the same error either way.
    let damaged = sorted[600];
    let mut key = damaged.to_key().to_vec();
    key.extend_from_slice(&1u64.to_be_bytes());
    close(journal);
    {
        let db = support::open_raw(&dir.path().join("users"));
        db.open_tree("events")
            .unwrap()
            .insert(key, &[0x01, 0xff][..])
            .unwrap();
        db.flush().unwrap();
    }
    let journal = Journal::open_path(dir.path().join("users")).unwrap();
    let lines = |jobs: usize| {
        let mut count = 0;
        let err = replay_all(
            &journal,
            Service::Users,
            None,
            jobs,
            &ProgressBar::hidden(),
            |_| {
                count += 1;
                Ok(())
            },
        )
        .unwrap_err();
        (count, err.to_string())
    };
    let (count, err) = lines(1);
    assert_eq!(count, 600, "every stream before the damaged one");
    assert!(err.contains(&format!("{damaged}#1")), "{err}");
    assert_eq!(lines(3), (count, err));
}
