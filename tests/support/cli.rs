//! The `ordersaga` binary run by a test against its cluster, bounded in
//! time, with what it printed.

use super::PATIENCE;
use ordersaga::kafka::KafkaConfig;
use serde_json::Value;
use std::time::{Duration, Instant};

/// What a run of the binary printed.
pub struct Run {
    /// Exit status 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Standard output's lines as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs `ordersaga ARGS --brokers … --namespace …` off the test's thread
/// (the services run on it), killed after [`PATIENCE`].
pub async fn ordersaga(kafka: &KafkaConfig, args: &[&str]) -> Run {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ordersaga"));
    command
        .args(args)
        .args(["--brokers", &kafka.brokers])
        .args(["--namespace", kafka.namespace.as_deref().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let shown = format!("{args:?}");
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let child = command.spawn().expect("run ordersaga");
        let id = child.id();
        let deadline = Instant::now() + PATIENCE;
        let (done, waiting) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let output = child.wait_with_output();
            let _ = done.send(());
            output
        });
        while waiting.try_recv().is_err() {
            if Instant::now() > deadline {
                // Only the child this test started, by its id.
                let _ = std::process::Command::new("kill")
                    .arg(id.to_string())
                    .status();
                panic!("ordersaga {shown} did not finish within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = waiter.join().unwrap().expect("ordersaga's output");
        let run = Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "ordersaga {shown} ({:.1} s):\n{}{}",
            started.elapsed().as_secs_f64(),
            run.stdout,
            run.stderr
        );
        run
    })
    .await
    .unwrap()
}
