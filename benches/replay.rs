//! Replay of a whole store against a raw scan of the same events.
//!
//! The store: `ORDERSAGA_BENCH_EVENTS` user events (100 000 by default),
//! 20 per user, written through the journal's own append path (one event
//! per append, 64 appenders, group commit), so streams interleave on disk as
//! a live service leaves them. It is then copied file by file, and:
//!
//! - **baseline** `replay/sled_scan_decode`: the copy opened with sled
//!   directly, its `events` tree iterated in key order and every envelope
//!   decoded (`codec::decode_event`): the least any replay has to do.
//! - **replay** `replay/replay_all/N/jobs=J`: the store opened as the tool
//!   opens it ([`ordersaga::ops::replay::open_store`]) and
//!   [`ordersaga::ops::replay::replay_all`] on J threads, what `ordersaga
//!   replay --service users --jobs J` runs: every stream listed, read,
//!   checked (sequence, stream), decoded and applied to its aggregate, and
//!   the aggregates handed out in stream order.
//!
//! Both sides get the same sled page cache ([`TOOL_CACHE_BYTES`]); a
//! smaller one than the store makes both re-read every page on each pass.
//! Elements are events. The bench prints the first pass of each side (sled's
//! cache empty, as in one run of the tool), then criterion's numbers, then
//! medians of rounds taken in turns with the ratio of each round (goal:
//! replay ≥ 0.8× the baseline).
//!
//! ```sh
//! cargo bench --bench replay                                  # 100k events
//! ORDERSAGA_BENCH_EVENTS=1000000 cargo bench --bench replay   # 1M events
//! ```

use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use indicatif::ProgressBar;
use ordersaga::ops::replay::{open_store, replay_all, TOOL_CACHE_BYTES};
use ordersaga_actors::aggregates::User;
use ordersaga_actors::journal::{AppendBatch, StreamAppend};
use ordersaga_actors::{Aggregate, Journal};
use ordersaga_events::codec::{decode_event, encode_event, Format};
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{
    Cents, CommandId, CorrelationId, Envelope, EventId, OrderId, StreamId, StreamKind, UserId,
    Versioned,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Events per user stream.
const EVENTS_PER_USER: u64 = 20;
/// Concurrent appenders while building the store.
const APPENDERS: u64 = 64;

/// Events in the store: `ORDERSAGA_BENCH_EVENTS`, or 100 000.
fn events_wanted() -> u64 {
    std::env::var("ORDERSAGA_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100_000)
}

/// Event `sequence` of user `id`: a registration, then deposits with a
/// charge every fifth event.
fn event(id: Uuid, sequence: u64) -> UserEvent {
    match sequence {
        1 => UserEvent::Registered {
            user_id: UserId::from_uuid(id),
            email: format!("{id}@example.com"),
            username: "bench".into(),
        },
        s if s % 5 == 0 => UserEvent::Charged {
            order_id: OrderId::new(),
            amount: Cents(50),
        },
        _ => UserEvent::Deposited { amount: Cents(100) },
    }
}

/// A one-event append of event `sequence` of `stream`, as a command makes,
/// with the archive entry of a charge (the item it closes) as the service
/// writes it.
fn append(stream: StreamId, sequence: u64) -> AppendBatch {
    let payload = event(stream.id, sequence);
    let archive = User::archive_key(&payload)
        .map(|item| vec![(item, sequence)])
        .unwrap_or_default();
    let envelope = Envelope {
        event_id: EventId::new(),
        stream,
        sequence,
        recorded_at: chrono::Utc::now(),
        correlation_id: CorrelationId::new(),
        causation_id: CommandId::new(),
        schema_version: UserEvent::SCHEMA_VERSION,
        payload,
    };
    AppendBatch {
        events: Some(StreamAppend {
            stream,
            expected_version: sequence - 1,
            events: vec![encode_event(Format::Bincode, &envelope).expect("encode")],
            unique: Vec::new(),
        }),
        archive,
        ..AppendBatch::default()
    }
}

/// Writes `events` user events into a new store at `path`.
fn build(path: &Path, events: u64) {
    let users = events.div_ceil(EVENTS_PER_USER);
    let started = Instant::now();
    let journal = Journal::open_path(path).expect("open the store");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for appender in 0..APPENDERS {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                let streams: Vec<StreamId> = (appender..users)
                    .step_by(APPENDERS as usize)
                    .map(|_| StreamId::new(StreamKind::User, Uuid::new_v4()))
                    .collect();
                // Round-robin over its users, so streams interleave in the log.
                for sequence in 1..=EVENTS_PER_USER {
                    for (i, stream) in streams.iter().enumerate() {
                        let index = (appender + i as u64 * APPENDERS) * EVENTS_PER_USER;
                        if index + sequence > events {
                            continue;
                        }
                        journal
                            .append(append(*stream, sequence))
                            .await
                            .expect("append");
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("appender");
        }
    });
    assert_eq!(journal.log_head() - 1, events, "events written");
    journal.flush().expect("flush");
    drop(journal);
    eprintln!(
        "built {events} events of {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Opens the store's sled files directly, with the page cache the tool
/// opens a store with, waiting out the lock a closed store lets go of a
/// moment after its close.
fn open_raw(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(TOOL_CACHE_BYTES)
            .open();
        match opened {
            Ok(db) => return db,
            Err(err) if Instant::now() < deadline && err.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("open {}: {err}", path.display()),
        }
    }
}

/// Copies the closed store at `from` to `to`, file by file: the baseline
/// scans the copy while the journal holds the original, so the two can be
/// timed in turns.
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the store") {
        let entry = entry.expect("store entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_store(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a store file");
        }
    }
}

/// The baseline: every stored envelope read in key order and decoded.
fn scan_decode(events: &sled::Tree) -> u64 {
    let mut count = 0;
    for item in events.iter() {
        let (_, value) = item.expect("read");
        let envelope: Envelope<UserEvent> = decode_event(&value).expect("decode");
        black_box(&envelope);
        count += 1;
    }
    count
}

/// Every aggregate replayed on `jobs` threads, handed out in stream order.
fn replay(journal: &Journal, jobs: usize, events: u64) {
    let totals = replay_all(
        journal,
        Service::Users,
        None,
        jobs,
        &ProgressBar::hidden(),
        |r| {
            black_box(&r);
            Ok(())
        },
    )
    .expect("replay");
    assert_eq!(totals.events, events);
}

fn seconds(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn replay_vs_scan(c: &mut Criterion) {
    let events = events_wanted();
    let big = events > 200_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let path: PathBuf = dir.path().join("users");
    build(&path, events);
    let copy = dir.path().join("users-copy");
    copy_store(&path, &copy);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut jobs = vec![1];
    if cores > 1 {
        jobs.push(cores);
    }
    // First passes, on freshly opened stores: what one run of the tool
    // meets (sled's cache empty; the files in the OS page cache, as they
    // were just written).
    let db = open_raw(&copy);
    let tree = db.open_tree("events").expect("events tree");
    let cold_scan = seconds(|| assert_eq!(scan_decode(&tree), events));
    let journal = open_store(dir.path(), Service::Users).expect("reopen the store");
    let cold_replay = seconds(|| replay(&journal, 1, events));
    eprintln!(
        "{events} events, first pass: baseline {:.0} events/s, replay (1 thread) {:.0} events/s, \
         ratio {:.2}",
        events as f64 / cold_scan,
        events as f64 / cold_replay,
        cold_scan / cold_replay
    );

    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if big { 30 } else { 10 }))
        .throughput(Throughput::Elements(events));
    group.bench_function(format!("sled_scan_decode/{events}"), |b| {
        b.iter(|| assert_eq!(scan_decode(&tree), events))
    });
    for &jobs in &jobs {
        group.bench_function(format!("replay_all/{events}/jobs={jobs}"), |b| {
            b.iter(|| replay(&journal, jobs, events))
        });
    }
    group.finish();

    // The same again in turns, so that a machine busy with something else
    // slows both sides alike: the ratio of each round, then their median.
    let rounds = if big { 5 } else { 15 };
    let mut scans = Vec::new();
    let mut replays = vec![Vec::new(); jobs.len()];
    for _ in 0..rounds {
        scans.push(seconds(|| assert_eq!(scan_decode(&tree), events)));
        for (i, &jobs) in jobs.iter().enumerate() {
            replays[i].push(seconds(|| replay(&journal, jobs, events)));
        }
    }
    let scan = median(scans.clone());
    eprintln!(
        "{events} events, {rounds} rounds in turns (medians): baseline {:.0} events/s",
        events as f64 / scan
    );
    for (i, &jobs) in jobs.iter().enumerate() {
        let ratios = scans.iter().zip(&replays[i]).map(|(s, r)| s / r).collect();
        eprintln!(
            "  replay, {jobs} thread(s): {:.0} events/s, ratio to baseline {:.2}",
            events as f64 / median(replays[i].clone()),
            median(ratios)
        );
    }
}

criterion_group!(benches, replay_vs_scan);
criterion_main!(benches);
