//! `ordersaga history`, the built binary on the stopped stores of a shop
//! that took an order through its whole saga and then cancelled it: the
//! order's and the saga's events interleaved in the time they were
//! recorded, each with sequence, causation and correlation.
//!
//! The saga runs on the embedded broker, or on `ORDERSAGA_TEST_BROKERS`.

// Money is written as dollars_cents: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod support;

use ordersaga_events::order::OrderCommand;
use ordersaga_events::saga::SagaEvent;
use ordersaga_events::topics::Service;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::shop::Shop;
use support::TestBroker;

/// Runs `ordersaga history` on `data`; returns exit code, stdout, stderr.
fn history(data: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .arg("history")
        .arg("--data")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ordersaga history");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "history panicked:\n{stderr}");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    )
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// The names of `stream`'s events in `lines`, in the order listed.
fn names_of<'a>(lines: &'a [Value], stream: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l["stream"] == stream)
        .map(|l| l["event"].as_str().unwrap())
        .collect()
}

#[actix_rt::test]
async fn an_orders_history_interleaves_the_order_and_its_saga_in_time() {
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
    shop.stop_all().await;
    let data = shop.data_dir().to_path_buf();
    let (order_stream, saga_stream) = (format!("order:{order}"), format!("saga:{order}"));

    let (code, stdout, stderr) = history(&data, &[&order_stream, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines = json_lines(&stdout);

    // Both streams, each whole and in sequence order.
    for stream in [&order_stream, &saga_stream] {
        let sequences: Vec<u64> = lines
            .iter()
            .filter(|l| l["stream"] == stream.as_str())
            .map(|l| l["sequence"].as_u64().unwrap())
            .collect();
        assert!(!sequences.is_empty(), "no {stream} in {stdout}");
        assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>());
    }
    assert_eq!(lines.len(), stdout.lines().count());
    assert_eq!(
        names_of(&lines, &order_stream),
        ["Placed", "Priced", "Confirmed", "Cancelled"]
    );
    let saga = names_of(&lines, &saga_stream);
    assert_eq!(saga.first(), Some(&"Started"));
    assert_eq!(saga.last(), Some(&"Aborted"));

    // Merged by time, ties by stream (order first) then sequence.
    let keys: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["recorded_at"].as_str().unwrap().to_owned(),
                l["stream"].as_str().unwrap().to_owned(),
                l["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        keys.iter().map(|(t, _, _)| t.parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{stdout}");
    // Truly interleaved: the order is placed before the saga starts, the
    // saga completes before the order is cancelled, and aborts after.
    let position = |stream: &str, event: &str| {
        lines
            .iter()
            .position(|l| l["stream"] == stream && l["event"] == event)
            .unwrap_or_else(|| panic!("no {event} of {stream}"))
    };
    assert!(position(&order_stream, "Placed") < position(&saga_stream, "Started"));
    assert!(position(&saga_stream, "Started") < position(&order_stream, "Confirmed"));
    assert!(position(&saga_stream, "Completed") < position(&order_stream, "Cancelled"));
    assert!(position(&order_stream, "Cancelled") < position(&saga_stream, "Aborted"));

    // Every event carries its ids and payload.
    for line in &lines {
        for id in ["event_id", "causation_id", "correlation_id"] {
            let text = line[id].as_str().unwrap_or_default();
            assert!(uuid::Uuid::parse_str(text).is_ok(), "{id} of {line}");
        }
    }
    let cancelled = &lines[position(&order_stream, "Cancelled")];
    assert_eq!(cancelled["payload"]["reason"], "changed_mind");
    assert_eq!(cancelled["payload"]["previous"], "confirmed");

    // The saga's id (the order's) gives the same history, and so does the
    // bare id.
    let (_, from_saga, _) = history(&data, &[&saga_stream, "--json"]);
    assert_eq!(from_saga, stdout);
    let (_, bare, _) = history(&data, &[&order.to_string(), "--json"]);
    assert_eq!(bare, stdout);

    // The text form: a header, column titles, one line per event with its
    // time, stream kind, sequence, name, details and both ids.
    let (code, text, stderr) = history(&data, &[&order_stream]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut rows = text.lines();
    assert_eq!(
        rows.next().unwrap(),
        format!("{order_stream} + {saga_stream}: {} events", lines.len())
    );
    assert!(rows.next().unwrap().starts_with("TIME"));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), lines.len());
    for (row, line) in rows.iter().zip(&lines) {
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(words[0], line["recorded_at"].as_str().unwrap(), "{row}");
        assert_eq!(
            format!("{}:{order}", words[1]),
            line["stream"].as_str().unwrap()
        );
        assert_eq!(words[2], line["sequence"].to_string());
        assert_eq!(words[3], line["event"].as_str().unwrap());
        assert!(row.ends_with(&format!(
            "{}  {}",
            line["causation_id"].as_str().unwrap(),
            line["correlation_id"].as_str().unwrap()
        )));
    }
    let cancelled_row = rows[position(&order_stream, "Cancelled")];
    assert!(
        cancelled_row.contains("previous=confirmed reason=changed_mind"),
        "{cancelled_row}"
    );

    // A user's history is its own stream.
    let (code, user_history, _) = history(&data, &[&format!("user:{user}"), "--json"]);
    assert_eq!(code, Some(0));
    let user_lines = json_lines(&user_history);
    assert!(user_lines
        .iter()
        .all(|l| l["stream"] == format!("user:{user}").as_str()));
    assert_eq!(
        user_lines
            .iter()
            .map(|l| l["event"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Registered", "Deposited", "Charged", "Refunded"]
    );

    // No such stream: exit 1, said plainly.
    let (code, _, stderr) = history(&data, &[&format!("order:{}", uuid::Uuid::new_v4())]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("error: no stream order:"), "{stderr}");
}
