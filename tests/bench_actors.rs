//! `ordersaga bench actors` end to end, small: the built binary runs the
//! load comparison (a few hundred commands) and the passivation phase (a few
//! thousand products, at most a hundred entities in memory), and the report
//! says every command was answered, the counts add up, the router never held
//! more entities than allowed, every pass cold-started what it should, and
//! the stock in the stores is what the commands made it. Nothing here looks
//! at how fast anything was.

use serde_json::Value;
use std::process::Command;

const COMMANDS: u64 = 400;
const AGGREGATES: u64 = 50;
const TOUCH: u64 = 3_000;
const MAX_ENTITIES: u64 = 100;

fn run(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .args(["bench", "actors"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("start ordersaga bench actors");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn num(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, key| &v[key])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v}"))
}

#[test]
fn a_small_actors_bench_answers_everything_bounds_memory_and_keeps_stock() {
    let data = tempfile::tempdir().expect("temp dir");
    let (status, stdout, stderr) = run(&[
        "--commands",
        &COMMANDS.to_string(),
        "--aggregates",
        &AGGREGATES.to_string(),
        "--skew",
        "1.0",
        "--concurrency",
        "8",
        "--touch",
        &TOUCH.to_string(),
        "--max-entities",
        &MAX_ENTITIES.to_string(),
        "--seed",
        "7",
        "--data",
        data.path().to_str().expect("utf-8 temp path"),
        "--json",
    ]);
    assert!(status.success(), "bench actors failed: {stderr}\n{stdout}");
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object on stdout");

    assert_eq!(report["all_answered"], Value::Bool(true), "{report}");
    for phase in ["baseline", "actors", "baseline_end"] {
        let p = &report[phase];
        assert_eq!(num(p, "commands"), COMMANDS as f64, "{phase}");
        assert_eq!(num(p, "answered"), COMMANDS as f64, "{phase}");
        assert_eq!(num(p, "accepted"), COMMANDS as f64, "{phase}");
        assert_eq!(num(p, "rejected") + num(p, "failed"), 0.0, "{phase}");
        // Every accepted batch was committed by the journal in this phase.
        assert!(num(p, "commits") >= COMMANDS as f64, "{phase}: {p}");
        assert!(num(p, "flushes") >= 1.0, "{phase}: {p}");
        assert!(num(p, "p50_ms") <= num(p, "p99_ms") && num(p, "p99_ms") <= num(p, "max_ms"));
    }
    assert!(report["ratio"].is_number(), "{report}");

    // Stock: every load product and a sample of the touched ones replayed
    // from the stores, every one as its commands made it.
    let stock = &report["stock"];
    assert_eq!(num(stock, "load_checked"), AGGREGATES as f64);
    assert_eq!(num(stock, "touch_checked"), TOUCH as f64);
    assert_eq!(stock["violations"], Value::Array(Vec::new()), "{stock}");

    let p = &report["passivation"];
    assert_eq!(num(p, "max_entities"), MAX_ENTITIES as f64);
    assert!(num(p, "live_entities_max") <= MAX_ENTITIES as f64, "{p}");
    assert!(num(p, "live_entities_end") <= MAX_ENTITIES as f64, "{p}");
    // Far more aggregates than entities: most were passivated, every pass.
    assert!(
        num(p, "passivations") >= (3 * (TOUCH - MAX_ENTITIES)) as f64,
        "{p}"
    );
    let passes = p["passes"].as_array().expect("passes");
    let names: Vec<&str> = passes.iter().map(|p| p["pass"].as_str().unwrap()).collect();
    assert_eq!(names, ["create", "journal", "snapshot"]);
    for (pass, per_touch) in passes.iter().zip([1, 2, 1]) {
        assert_eq!(num(pass, "commands"), (TOUCH * per_touch) as f64, "{pass}");
        assert_eq!(num(pass, "accepted"), num(pass, "commands"), "{pass}");
        // Each touch found its entity passivated: one cold start each, and
        // the journal pass's second command found it live.
        assert_eq!(num(pass, "cold_starts"), TOUCH as f64, "{pass}");
    }
    // The journal pass left a snapshot of every product for the next one.
    assert_eq!(num(p, "snapshots_found"), num(p, "snapshots_checked"));
    assert_eq!(num(p, "snapshots_checked"), TOUCH as f64);
    let checkpoints = p["checkpoints"].as_array().expect("checkpoints");
    assert_eq!(checkpoints.len(), 9, "{p}");
    for c in checkpoints {
        assert!(num(c, "live_entities") <= MAX_ENTITIES as f64, "{c}");
        assert!(num(c, "touched") <= TOUCH as f64, "{c}");
    }
}

#[test]
fn bad_arguments_are_refused_with_a_clear_error() {
    for (args, says) in [
        (vec!["--skew", "-1"], "--skew"),
        (vec!["--skew", "NaN"], "--skew"),
        (vec!["--concurrency", "0"], "--concurrency"),
        (vec!["--aggregates", "0"], "--aggregates"),
        (vec!["--aggregates", "2000000"], "--aggregates"),
        (vec!["--commands", "0"], "--commands"),
        (vec!["--max-entities", "0"], "--max-entities"),
    ] {
        let (status, _, stderr) = run(&args);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Not a number at all: clap's usage error, as for every subcommand.
    let (status, _, stderr) = run(&["--commands", "many"]);
    assert!(
        !status.success() && stderr.contains("--commands"),
        "{stderr}"
    );
}
