//! `ordersaga bench` end to end, small: the built binary drives 40 orders with
//! the failure mix through the saga and reports every order ended with the
//! planned outcome, the invariants held, and numbers that agree with each
//! other (rates from counts and clocks, ordered percentiles, the ratio).
//!
//! Runs on the embedded broker, or on `ORDERSAGA_TEST_BROKERS` when set.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole run, broker start to verification, must end within this.
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_small_bench_ends_every_order_and_keeps_the_invariants() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordersaga"));
    command.args([
        "bench",
        "--orders",
        "40",
        "--concurrency",
        "8",
        "--users",
        "10",
        "--products",
        "5",
        "--json",
        // Short enough that a hung run fails the test, long enough for a
        // loaded debug build.
        "--stall-timeout-secs",
        "60",
    ]);
    if let Ok(brokers) = std::env::var("ORDERSAGA_TEST_BROKERS") {
        if !brokers.trim().is_empty() {
            command.args(["--brokers", brokers.trim()]);
        }
    }
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ordersaga bench");
    // Read the pipes on threads so that a chatty child never blocks on them.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bench") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bench did not finish within {LIMIT:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(
        status.success(),
        "bench failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bench --json printed no JSON ({e}):\n{stdout}"));
    let number = |path: &str| -> f64 {
        report
            .pointer(path)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("{path} missing in {report:#}"))
    };
    // The default mix is 10 % short of stock and 10 % unable to pay: 4 and
    // 4 of 40, seeded, so exactly these counts.
    assert_eq!(number("/completed"), 32.0, "{report:#}");
    assert_eq!(number("/aborted"), 8.0, "{report:#}");
    assert_eq!(number("/unfinished"), 0.0);
    assert_eq!(
        report.pointer("/invariants_ok"),
        Some(&serde_json::Value::Bool(true)),
        "invariants: {report:#}"
    );
    // The numbers agree with each other: a report whose rates or ratios
    // were computed from the wrong counts or clocks fails here.
    for phase in ["saga", "baseline"] {
        let n = |field: &str| number(&format!("/{phase}/{field}"));
        assert_eq!(n("sent"), 40.0, "{phase}: every request sent");
        assert_eq!(n("ended"), 40.0, "{phase}: every request ended");
        let rate = n("ended") / n("seconds");
        assert!(
            (n("per_sec") - rate).abs() <= rate * 0.01,
            "{phase}: per_sec {} is not ended / seconds = {rate}",
            n("per_sec")
        );
        let (p50, p90, p99, max) = (n("p50_ms"), n("p90_ms"), n("p99_ms"), n("max_ms"));
        assert!(
            0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
            "{phase}: percentiles out of order: {p50} {p90} {p99} {max}"
        );
    }
    let ratio = number("/saga/per_sec") / number("/baseline/per_sec");
    assert!(
        (number("/ratios/throughput") - ratio).abs() <= ratio * 0.01,
        "the throughput ratio is saga / baseline: {report:#}"
    );
}
