//! `ordersaga bench` end to end, small: the built binary sweeps two
//! concurrency levels with the failure mix, and its JSON report and charts
//! hold together: every level measured every phase for every order, counted
//! Kafka records, confirmed the completed orders, and the totals, the knee,
//! the goals and the invariants are there. No assertion is about speed.
//!
//! Runs on the embedded broker, or on `ORDERSAGA_TEST_BROKERS` when set.

use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole run, broker start to verification, must end within this.
const LIMIT: Duration = Duration::from_secs(180);

/// Runs `ordersaga bench ARGS` (on `ORDERSAGA_TEST_BROKERS` when set),
/// killed after [`LIMIT`]; returns whether it succeeded, stdout and stderr.
fn bench(args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordersaga"));
    command.arg("bench").args(args);
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
    (
        status.success(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

fn number(value: &Value, path: &str) -> f64 {
    value
        .pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing in {value:#}"))
}

#[test]
fn a_small_sweep_reports_every_level_phase_and_order_and_draws_its_charts() {
    let charts = tempfile::tempdir().expect("a temp dir for the charts");
    let svg_dir = charts.path().join("charts");
    let (ok, stdout, stderr) = bench(&[
        // Given a sweep of two levels of 12 orders each, the default mix
        // (10 % short of stock, 10 % unable to pay) and a fixed seed,
        "--orders",
        "12",
        "--concurrency",
        "4,1",
        "--users",
        "10",
        "--products",
        "5",
        "--seed",
        "7",
        // consumers that fetch often, so that concurrency 1 stays short,
        "--fetch-wait-ms",
        "10",
        // a stall bound that fails a hung run but not a loaded debug build,
        "--stall-timeout-secs",
        "60",
        "--json",
        "--svg",
        svg_dir.to_str().expect("a UTF-8 temp path"),
    ]);
    // when it runs, then it succeeds and prints one JSON report,
    assert!(ok, "bench failed; stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bench --json printed no JSON ({e}):\n{stdout}"));

    // with both levels, ascending,
    let levels = report["levels"].as_array().expect("levels");
    let concurrency: Vec<f64> = levels.iter().map(|l| number(l, "/concurrency")).collect();
    assert_eq!(concurrency, [1.0, 4.0], "{report:#}");

    for level in levels {
        let c = number(level, "/concurrency");
        let orders = number(level, "/orders");
        assert_eq!(orders, 12.0, "level {c}: --orders caps a level");
        // every phase sent and ended one request per order,
        for phase in ["raw", "ping_pong", "baseline", "saga"] {
            let n = |field: &str| number(level, &format!("/{phase}/{field}"));
            assert_eq!(n("sent"), orders, "level {c} {phase}: sent");
            assert_eq!(n("ended"), orders, "level {c} {phase}: ended");
            let rate = n("ended") / n("seconds");
            assert!(
                (n("per_sec") - rate).abs() <= rate * 0.01,
                "level {c} {phase}: per_sec {} is not ended / seconds = {rate}",
                n("per_sec")
            );
            percentiles_in_order(level, &format!("/{phase}/latency"));
            // the process's CPU over the phase, per request and per second,
            assert!(
                n("cpu_us_per_request") > 0.0,
                "level {c} {phase}: {level:#}"
            );
            let cpu_seconds = n("cpu_us_per_request") * n("sent") / 1e6;
            assert!(
                (cpu_seconds - n("cores_busy") * n("seconds")).abs() <= cpu_seconds * 0.01,
                "level {c} {phase}: cpu_us_per_request × sent is not cores_busy × seconds"
            );
        }
        // with the saga's CPU compared with the single command's,
        let cpu_ratio = number(level, "/saga/cpu_us_per_request")
            / number(level, "/baseline/cpu_us_per_request");
        assert!(
            (number(level, "/ratios/cpu_per_order_vs_command") - cpu_ratio).abs()
                <= cpu_ratio * 0.01,
            "level {c}: {level:#}"
        );
        // the completed and aborted sagas are the level's orders, every
        // completed order was seen confirmed, and none ended otherwise,
        let completed = number(level, "/completed");
        let aborted = number(level, "/aborted");
        assert_eq!(completed + aborted, orders, "level {c}: {level:#}");
        assert_eq!(number(level, "/unfinished"), 0.0);
        assert_eq!(number(level, "/confirmed/count"), completed, "level {c}");
        assert_eq!(completed, number(level, "/expected/completed"), "level {c}");
        assert_eq!(number(level, "/unexpected_outcomes"), 0.0, "level {c}");
        if completed > 0.0 {
            percentiles_in_order(level, "/confirmed");
            assert!(
                number(level, "/confirmed/p50_ms") <= number(level, "/saga/latency/max_ms"),
                "level {c}: an order is confirmed before its saga ends"
            );
        }
        // and Kafka received records for the saga load, orders.events among
        // them, counted per order.
        let per_order = number(level, "/records/per_order");
        assert!(per_order > 0.0, "level {c}: {level:#}");
        let total = number(level, "/records/total");
        assert!((per_order - total / orders).abs() < 1e-9, "level {c}");
        let order_events = level["records"]["by_topic"]
            .as_object()
            .expect("by_topic")
            .iter()
            .find(|(topic, _)| topic.ends_with("orders.events"))
            .map(|(_, n)| n.as_f64().unwrap_or(0.0))
            .unwrap_or(0.0);
        assert!(order_events >= orders, "level {c}: {level:#}");
        let curve = level["curves"]["finished"].as_array().expect("curve");
        assert!(!curve.is_empty(), "level {c}: a finished-latency curve");
    }

    // The totals are the sum of the levels and the planned mix,
    assert_eq!(number(&report, "/planned_orders"), 24.0);
    assert_eq!(
        number(&report, "/completed") + number(&report, "/aborted"),
        24.0,
        "{report:#}"
    );
    assert_eq!(
        number(&report, "/completed"),
        number(&report, "/expected/completed")
    );
    assert_eq!(number(&report, "/unfinished"), 0.0);
    assert_eq!(report["invariants_ok"], Value::Bool(true), "{report:#}");
    // a knee is one of the levels, the goals are all reported,
    let knee = number(&report, "/knee/concurrency");
    assert!(concurrency.contains(&knee), "{report:#}");
    let goals: Vec<&str> = report["goals"]
        .as_array()
        .expect("goals")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(goals.len(), 5, "{goals:?}");
    assert_eq!(number(&report, "/headline/lowest_concurrency"), 1.0);
    // and both charts were written as SVG.
    for chart in ["latency.svg", "sweep.svg"] {
        let svg =
            std::fs::read_to_string(svg_dir.join(chart)).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{chart}");
    }
}

fn percentiles_in_order(value: &Value, at: &str) {
    let p: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]
        .iter()
        .map(|f| number(value, &format!("{at}/{f}")))
        .collect();
    assert!(
        p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]),
        "{at}: percentiles out of order: {p:?}"
    );
}

#[test]
fn a_bad_concurrency_list_is_refused_before_anything_starts() {
    let (ok, _, stderr) = bench(&["--concurrency", "1,0,16"]);
    assert!(!ok);
    assert!(stderr.contains("\"1,0,16\""), "{stderr}");
}
