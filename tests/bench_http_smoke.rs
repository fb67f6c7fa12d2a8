//! `ordersaga bench http` end to end, small: the built binary runs every
//! phase (50 requests each, 4 in flight) through the gateway and the
//! trivial handler, and reports every request answered 2xx, every order's
//! saga ended, the invariants held, and numbers that agree with each other.
//! Nothing here looks at how fast anything was.
//!
//! Runs on the embedded broker, or on `ORDERSAGA_TEST_BROKERS` when set.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The whole run, broker start to verification, must end within this.
const LIMIT: Duration = Duration::from_secs(180);

/// Requests per phase.
const REQUESTS: f64 = 50.0;

#[test]
fn a_small_http_bench_answers_every_request_and_keeps_the_invariants() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordersaga"));
    command.args([
        "bench",
        "http",
        "--requests",
        "50",
        "--concurrency",
        "4",
        "--users",
        "3",
        "--products",
        "4",
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
        .expect("start ordersaga bench http");
    // Read the pipes on threads so that a chatty child never blocks on them;
    // stdout's reader says when the child has closed it (it has ended).
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (closed, out) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        let _ = closed.send(s);
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdout = match out.recv_timeout(LIMIT) {
        Ok(stdout) => stdout,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bench http did not finish within {LIMIT:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
    };
    let status = child.wait().expect("wait for bench http");
    let stderr = err.join().unwrap_or_default();
    assert!(
        status.success(),
        "bench http failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bench http --json printed no JSON ({e}):\n{stdout}"));
    let number = |path: &str| -> f64 {
        report
            .pointer(path)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("{path} missing in {report:#}"))
    };

    let phases = report["phases"].as_array().expect("phases");
    // The reference is the mean of the two baseline runs.
    let baselines = number("/phases/0/per_sec") + number("/phases/7/per_sec");
    assert!(
        (number("/reference/per_sec") - baselines / 2.0).abs() <= baselines * 0.01,
        "{report:#}"
    );
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "baseline_proxy",
            "gateway_health",
            "read_proxied",
            "read_list",
            "orders",
            "read_my_orders",
            "baseline_end"
        ],
        "{report:#}"
    );
    for phase in phases {
        let name = phase["phase"].as_str().unwrap_or("?");
        let n = |field: &str| {
            phase[field]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}.{field} missing in {phase:#}"))
        };
        assert_eq!(n("sent"), REQUESTS, "{name}: every request sent");
        assert_eq!(
            n("ok"),
            REQUESTS,
            "{name}: every request answered 2xx: {phase:#}"
        );
        assert_eq!(n("errors"), 0.0, "{name}: {phase:#}");
        // The numbers agree with each other: rates from counts and clocks,
        // ordered percentiles, ratios against the baseline.
        assert!(n("seconds") > 0.0, "{name}: {phase:#}");
        let rate = n("ok") / n("seconds");
        assert!(
            (n("per_sec") - rate).abs() <= rate * 0.01,
            "{name}: per_sec {} is not ok / seconds = {rate}",
            n("per_sec")
        );
        let (p50, p90, p99, max) = (n("p50_ms"), n("p90_ms"), n("p99_ms"), n("max_ms"));
        assert!(
            0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
            "{name}: percentiles out of order: {p50} {p90} {p99} {max}"
        );
        let ratio = n("per_sec") / number("/reference/per_sec");
        assert!(
            (n("throughput_ratio") - ratio).abs() <= ratio * 0.01,
            "{name}: the throughput ratio is the phase's req/s ÷ the baseline's: {phase:#}"
        );
        // The process's CPU over the phase, per request and per second of
        // the phase, describe the same CPU time; and it cost some.
        let (per_request, cores) = (n("cpu_us_per_request"), n("cores_busy"));
        assert!(per_request > 0.0 && cores > 0.0, "{name}: {phase:#}");
        let cpu_seconds = per_request * n("sent") / 1e6;
        assert!(
            (cpu_seconds - cores * n("seconds")).abs() <= cpu_seconds * 0.01,
            "{name}: cpu_us_per_request × sent is not cores_busy × seconds: {phase:#}"
        );
    }

    // The proxied read is compared with the trivial proxy of the same run.
    let proxied = number("/phases/3/per_sec") / number("/phases/1/per_sec");
    assert!(
        (number("/proxied_vs_trivial_proxy") - proxied).abs() <= proxied * 0.01,
        "{report:#}"
    );

    // Each downstream read call carried one read or more.
    assert!(number("/proxied_reads_per_call") >= 1.0, "{report:#}");

    // Every order was placed with enough stock and money: none cancelled,
    // each confirmed (or, on a slow machine, still settling when its wait
    // ran out: a 202), and every saga completed.
    assert_eq!(
        number("/orders/confirmed") + number("/orders/pending"),
        REQUESTS,
        "{report:#}"
    );
    assert_eq!(
        report["orders"]["cancelled"],
        serde_json::json!({}),
        "{report:#}"
    );
    assert_eq!(number("/orders/other"), 0.0, "{report:#}");
    assert_eq!(number("/sagas/completed"), REQUESTS, "{report:#}");
    assert_eq!(number("/sagas/unfinished"), 0.0, "{report:#}");
    assert_eq!(number("/errors"), 0.0, "{report:#}");
    assert_eq!(
        report.pointer("/invariants_ok"),
        Some(&serde_json::Value::Bool(true)),
        "invariants: {report:#}"
    );
}
