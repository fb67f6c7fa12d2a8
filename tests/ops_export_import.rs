//! `ordersaga export` and `ordersaga import`, run as an operator runs them
//! (the built binary, on real stores in temporary directories):
//!
//! - a whole shop's three stores, exported and imported into a new data
//!   directory, give stores that `verify` accepts, with the same events,
//!   the same state for every aggregate and the same indexes; exported
//!   again, they give the same file;
//! - import refuses a gap, a duplicate, a reused event id, another
//!   service's export, an undecodable line, a file cut short and a partial
//!   export, each naming the line, and leaves nothing behind;
//! - a version 1 user event (which carried a password hash) is exported as
//!   version 2, without it;
//! - a corrupt store's export names the stream and the log position and
//!   exits 1 without panicking, leaving no output file.

// Money is written as dollars_cents: 1_000_00 is 1000.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use chrono::Utc;
use ordersaga::ops::export::AnyEvent;
use ordersaga_actors::aggregates::{Order, Product, Saga, User, EMAIL_INDEX, PASSWORD_SECRET};
use ordersaga_actors::journal::{AppendBatch, StreamAppend};
use ordersaga_actors::recovery::{index_differences, replay};
use ordersaga_actors::{Aggregate, Journal};
use ordersaga_events::codec::{encode_event, Format};
use ordersaga_events::topics::Service;
use ordersaga_events::{
    CommandId, CorrelationId, Envelope, EventId, StreamId, StreamKind, UserId, Versioned,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::shop::Shop;
use support::TestBroker;

/// Runs the ordersaga binary with `args`.
fn ordersaga(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .args(args)
        .output()
        .expect("run ordersaga")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args` and expects success; returns standard output.
fn succeeds(args: &[&str]) -> String {
    let out = ordersaga(args);
    assert!(
        out.status.success(),
        "ordersaga {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `args` and expects exit status 1 with an `error: …` line; returns
/// standard error.
fn fails(args: &[&str]) -> String {
    let out = ordersaga(args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "ordersaga {args:?}: {stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every stream of `journal` with its version and events, decoded.
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

fn same_states<A: Aggregate>(original: &Journal, copy: &Journal) {
    for item in original.streams(Some(A::KIND)) {
        let (stream, _) = item.unwrap();
        let a = replay::<A>(original, stream.id, None).unwrap();
        let b = replay::<A>(copy, stream.id, None).unwrap();
        assert_eq!(a, b, "{stream} replays differently");
        assert!(index_differences::<A>(copy, &stream).unwrap().is_empty());
    }
}

/// The store `copy` holds what `original` holds: the same events in every
/// stream, the same state for every aggregate, the same indexes; and
/// nothing to publish, no secrets, and the processed entries of the commands
/// it accepted with events.
fn assert_same_store(service: Service, original: &Journal, copy: &Journal) {
    assert_eq!(events_of(original), events_of(copy), "{}", service.name());
    match service {
        Service::Users => {
            same_states::<User>(original, copy);
            for (stream, _, events) in events_of(original) {
                for event in events {
                    if let AnyEvent::User(e) = event {
                        if let ordersaga_events::user::UserEvent::Registered { email, .. } =
                            e.payload
                        {
                            assert_eq!(
                                copy.unique_holder(EMAIL_INDEX, &email).unwrap(),
                                original.unique_holder(EMAIL_INDEX, &email).unwrap()
                            );
                        }
                    }
                }
                assert!(copy.secret(&stream, PASSWORD_SECRET).unwrap().is_none());
            }
        }
        Service::Inventory => same_states::<Product>(original, copy),
        Service::Orders => {
            same_states::<Order>(original, copy);
            same_states::<Saga>(original, copy);
        }
    }
    assert_eq!(copy.archived_len(), original.archived_len());
    assert_eq!(copy.scheduled(), original.scheduled());
    assert_eq!(copy.outbox_len(), 0, "an imported store publishes nothing");
    support::remembered::assert_commands_remembered(original, copy);
}

/// The lines of an export after its header.
fn body(file: &Path) -> Vec<String> {
    let all = std::fs::read_to_string(file).unwrap();
    all.lines().skip(1).map(str::to_owned).collect()
}

#[actix_rt::test]
async fn a_shop_exported_and_imported_gives_the_same_stores_and_verify_accepts_them() {
    // Given a shop whose orders completed and aborted, stopped.
    let broker = TestBroker::from_env();
    let mut shop = Shop::start(&broker).await;
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
    let data = shop.data_dir().to_path_buf();
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("copy");

    // When each store is exported and imported into a new data directory
    // (the orders store through the bincode variant too).
    for service in Service::ALL {
        let name = service.name();
        let file = work.path().join(format!("{name}.jsonl"));
        succeeds(&[
            "export",
            "--data",
            s(&data),
            "--service",
            name,
            "-o",
            s(&file),
        ]);
        let said = succeeds(&["import", "--data", s(&copy), "--service", name, s(&file)]);
        assert!(said.contains("imported"), "{said}");
        if service == Service::Users {
            assert!(said.contains("no password hash"), "{said}");
        }
    }
    let bin = work.path().join("orders.bin");
    let compact = work.path().join("compact");
    succeeds(&[
        "export",
        "--data",
        s(&data),
        "--service",
        "orders",
        "--format",
        "bincode",
        "-o",
        s(&bin),
    ]);
    succeeds(&[
        "import",
        "--data",
        s(&compact),
        "--service",
        "orders",
        s(&bin),
        "--json",
    ]);

    // Then the new stores hold the same events, states and indexes, verify
    // accepts them, and they export to the same file.
    for service in Service::ALL {
        let original = Journal::open_path(data.join(service.name())).unwrap();
        let imported = Journal::open_path(copy.join(service.name())).unwrap();
        assert_same_store(service, &original, &imported);
        if service == Service::Orders {
            let compact = Journal::open_path(compact.join("orders")).unwrap();
            assert_same_store(service, &original, &compact);
        }
    }
    let open = |name: &str| Journal::open_path(copy.join(name)).unwrap();
    let report =
        ordersaga::verify::check(&open("users"), &open("inventory"), &open("orders"), true)
            .unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    assert_eq!(report.orders, 3);
    for service in Service::ALL {
        let said = succeeds(&[
            "replay",
            "--data",
            s(&copy),
            "--service",
            service.name(),
            "--check",
        ]);
        assert!(said.contains(" 0 differences"), "{said}");
    }
    for service in Service::ALL {
        let name = service.name();
        let again = work.path().join(format!("{name}.again.jsonl"));
        succeeds(&[
            "export",
            "--data",
            s(&copy),
            "--service",
            name,
            "-o",
            s(&again),
        ]);
        assert_eq!(
            body(&again),
            body(&work.path().join(format!("{name}.jsonl")))
        );
    }
    shop.stop().await;
}

/// A users store written by `journal-load`: `streams` users, each with a
/// few events (registrations and deposits).
fn load_store(data: &Path, streams: usize, appends: usize) {
    succeeds(&[
        "journal-load",
        "--data",
        s(&data.join("users")),
        "--writers",
        "4",
        "--streams",
        &streams.to_string(),
        "--appends",
        &appends.to_string(),
    ]);
}

/// Writes `lines` as an export file and tries to import it into a fresh
/// data directory as `service`; expects a refusal and nothing left behind.
fn refused(dir: &Path, name: &str, lines: &[String], service: &str) -> String {
    let file = dir.join(format!("{name}.jsonl"));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let data = dir.join(format!("{name}-data"));
    let stderr = fails(&["import", "--data", s(&data), "--service", service, s(&file)]);
    let left: Vec<PathBuf> = std::fs::read_dir(&data)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{name}: left behind {left:?}");
    stderr
}

fn field(line: &str, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(line).unwrap()[name].clone()
}

#[test]
fn import_refuses_gaps_duplicates_reused_ids_foreign_services_and_damage_naming_the_line() {
    // Given a good export of a users store.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    load_store(&data, 3, 12);
    let file = dir.path().join("users.jsonl");
    succeeds(&[
        "export",
        "--data",
        s(&data),
        "--service",
        "users",
        "-o",
        s(&file),
    ]);
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let last = lines.len() - 1;
    // Line numbers are 1-based; the header is line 1.
    let index_of = |sequence: u64| {
        (1..last)
            .find(|&i| field(&lines[i], "sequence") == sequence)
            .unwrap()
    };
    let second = index_of(2);
    let stream = field(&lines[second], "stream");
    let third = (1..last)
        .find(|&i| field(&lines[i], "stream") == stream && field(&lines[i], "sequence") == 3)
        .expect("a stream with three events");

    // When a stream's second event is missing: a gap, at its third.
    let mut gap = lines.clone();
    gap.remove(second);
    let err = refused(dir.path(), "gap", &gap, "users");
    assert!(
        err.contains(&format!("line {}: gap in user:", third)),
        "{err}"
    );
    assert!(err.contains("expected sequence 2, found 3"), "{err}");

    // When an event is there twice.
    let mut twice = lines.clone();
    twice.insert(second + 1, lines[second].clone());
    let err = refused(dir.path(), "duplicate", &twice, "users");
    assert!(
        err.contains(&format!("line {}: duplicate", second + 2)),
        "{err}"
    );

    // When another stream's event reuses an event id.
    let mut reused = lines.clone();
    let other = (1..last)
        .find(|&i| field(&lines[i], "stream") != stream)
        .unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&lines[other]).unwrap();
    value["event_id"] = field(&lines[second], "event_id");
    reused[other] = value.to_string();
    let err = refused(dir.path(), "reused", &reused, "users");
    assert!(err.contains("event id"), "{err}");
    assert!(
        err.contains(&format!("line {}", other.max(second) + 1)),
        "{err}"
    );

    // When the export is another service's.
    let err = refused(dir.path(), "foreign", &lines, "inventory");
    assert!(
        err.contains("export of the users store, not of inventory"),
        "{err}"
    );

    // When a line is not an envelope.
    let mut garbage = lines.clone();
    garbage[3] = "{\"not\": \"an event\"".into();
    let err = refused(dir.path(), "garbage", &garbage, "users");
    assert!(err.contains("line 4: not an event envelope"), "{err}");

    // When the file was cut short (no end record), or its count is off.
    let err = refused(dir.path(), "cut", &lines[..last], "users");
    assert!(err.contains("cut short"), "{err}");
    let mut miscounted = lines.clone();
    miscounted[last] = "{\"ordersaga_export_end\":{\"events\":1}}".into();
    let err = refused(dir.path(), "miscounted", &miscounted, "users");
    assert!(err.contains("counts 1 events"), "{err}");

    // When the export is partial (--since): it could not make a store.
    let since = field(&lines[last - 1], "recorded_at");
    let partial = dir.path().join("partial.jsonl");
    succeeds(&[
        "export",
        "--data",
        s(&data),
        "--service",
        "users",
        "--since",
        since.as_str().unwrap(),
        "-o",
        s(&partial),
    ]);
    let partial_lines: Vec<String> = std::fs::read_to_string(&partial)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Then only events recorded at or after the time are in it.
    let time = |value: serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap()
    };
    let cut = time(since.clone());
    let expected = lines[1..last]
        .iter()
        .filter(|l| time(field(l, "recorded_at")) >= cut)
        .count();
    assert_eq!(partial_lines.len(), expected + 2);
    let err = refused(dir.path(), "partial", &partial_lines, "users");
    assert!(err.contains("partial export"), "{err}");

    // And a good file still imports (the refusals left nothing behind).
    succeeds(&[
        "import",
        "--data",
        s(&dir.path().join("good")),
        "--service",
        "users",
        s(&file),
    ]);
    // Into a store that exists already: refused, and that store untouched.
    let err = fails(&["import", "--data", s(&data), "--service", "users", s(&file)]);
    assert!(err.contains("not empty"), "{err}");
    let journal = Journal::open_path(data.join("users")).unwrap();
    assert_eq!(journal.log_head() as usize, last);
}

/// A user event as version 1 of the schema wrote it: `Registered` carried
/// the password hash.
#[derive(Serialize, Deserialize)]
enum UserEventV1 {
    Registered {
        user_id: UserId,
        email: String,
        username: String,
        password_hash: String,
    },
}

impl Versioned for UserEventV1 {
    const SCHEMA_VERSION: u16 = 1;
    const TYPE_NAME: &'static str = "UserEvent";
}

#[test]
fn a_version_1_user_event_is_exported_as_version_2_without_its_password_hash() {
    // Given a store holding a version 1 registration with a hash in it.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let user = UserId::new();
    let stream = StreamId::new(StreamKind::User, user.as_uuid());
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$bm90LWEtcmVhbC1oYXNo";
    {
        let journal = Journal::open_path(data.join("users")).unwrap();
        let old = Envelope {
            event_id: EventId::new(),
            stream,
            sequence: 1,
            recorded_at: Utc::now(),
            correlation_id: CorrelationId::new(),
            causation_id: CommandId::new(),
            schema_version: 1,
            payload: UserEventV1::Registered {
                user_id: user,
                email: "old@example.com".into(),
                username: "old".into(),
                password_hash: hash.into(),
            },
        };
        journal
            .append_blocking(AppendBatch {
                events: Some(StreamAppend {
                    stream,
                    expected_version: 0,
                    events: vec![encode_event(Format::Bincode, &old).unwrap()],
                    unique: Vec::new(),
                }),
                ..AppendBatch::default()
            })
            .unwrap();
    }

    // When it is exported, in both formats.
    let file = dir.path().join("users.jsonl");
    succeeds(&[
        "export",
        "--data",
        s(&data),
        "--service",
        "users",
        "-o",
        s(&file),
    ]);
    let bin = dir.path().join("users.bin");
    succeeds(&[
        "export",
        "--data",
        s(&data),
        "--service",
        "users",
        "--format",
        "bincode",
        "-o",
        s(&bin),
    ]);

    // Then the event is version 2, and the hash is in neither file.
    let lines = body(&file);
    assert_eq!(field(&lines[0], "schema_version"), 2);
    assert_eq!(
        field(&lines[0], "payload"),
        serde_json::json!({"Registered": {"user_id": user.to_string(), "email": "old@example.com", "username": "old"}})
    );
    for exported in [&file, &bin] {
        let bytes = std::fs::read(exported).unwrap();
        assert!(
            !bytes.windows(hash.len()).any(|w| w == hash.as_bytes()),
            "{} carries the hash",
            exported.display()
        );
    }
    // And imported, the user is the same, without a password hash.
    let copy = dir.path().join("copy");
    let said = succeeds(&["import", "--data", s(&copy), "--service", "users", s(&bin)]);
    assert!(
        said.contains("1 user accounts have no password hash"),
        "{said}"
    );
    let imported = Journal::open_path(copy.join("users")).unwrap();
    let original = Journal::open_path(data.join("users")).unwrap();
    assert_eq!(
        replay::<User>(&imported, user.as_uuid(), None).unwrap(),
        replay::<User>(&original, user.as_uuid(), None).unwrap()
    );
    assert!(imported.secret(&stream, PASSWORD_SECRET).unwrap().is_none());
}

#[test]
fn exporting_a_corrupt_store_names_the_stream_and_position_and_exits_1() {
    // Given a store one of whose events was overwritten on disk.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    load_store(&data, 2, 4);
    let path = data.join("users");
    let (position, stream, sequence) = {
        let journal = Journal::open_path(&path).unwrap();
        let entry = journal.read_log(2).next().unwrap().unwrap();
        (entry.position, entry.stream, entry.sequence)
    };
    {
        let db = support::open_raw(&path);
        let events = db.open_tree("events").unwrap();
        let mut key = stream.to_key().to_vec();
        key.extend_from_slice(&sequence.to_be_bytes());
        events.insert(key, &[0x01, 0xff, 0xff][..]).unwrap();
        db.flush().unwrap();
    }

    // When it is exported to a file, and to standard output.
    let file = dir.path().join("users.jsonl");
    let err = fails(&[
        "export",
        "--data",
        s(&data),
        "--service",
        "users",
        "-o",
        s(&file),
    ]);
    let to_stdout = fails(&["export", "--data", s(&data), "--service", "users"]);

    // Then both name the position and the event, and no file pretends to
    // be an export.
    for err in [err, to_stdout] {
        assert!(err.contains(&format!("log position {position}")), "{err}");
        assert!(err.contains(&format!("{stream}#{sequence}")), "{err}");
    }
    assert!(!file.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
