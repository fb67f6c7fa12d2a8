//! The service processes of a chaos run: `ordersaga serve` for each service,
//! killed and restarted on demand, each restart timed until the process
//! prints its `ready` line (every consumer owns partitions again).

use ordersaga::kafka::KafkaConfig;
use ordersaga_events::topics::Service;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The `ordersaga` binary the run starts: `ORDERSAGA_CHAOS_BIN` (a release
/// build, say), or the one cargo built for this test.
fn binary() -> PathBuf {
    std::env::var_os("ORDERSAGA_CHAOS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ordersaga")))
}

/// One running `serve` process.
struct Proc {
    child: Child,
    spawned: Instant,
    /// When the process printed `ready`, if it has.
    ready: watch::Receiver<Option<Instant>>,
}

/// The three services, one process each, on stores under one directory.
pub struct Services {
    kafka: KafkaConfig,
    data: PathBuf,
    logs: PathBuf,
    extra_args: Vec<String>,
    procs: HashMap<&'static str, Proc>,
}

impl Services {
    /// Services on `kafka`, with stores under `data` and their logs (stderr)
    /// appended to `logs/SERVICE.log`, each started with `extra_args` too.
    pub fn new(kafka: KafkaConfig, data: &Path, logs: &Path, extra_args: Vec<String>) -> Self {
        std::fs::create_dir_all(logs).unwrap();
        Self {
            kafka,
            data: data.to_path_buf(),
            logs: logs.to_path_buf(),
            extra_args,
            procs: HashMap::new(),
        }
    }

    /// Starts `service` (again) with the same arguments as every time.
    pub fn spawn(&mut self, service: Service) {
        let name = service.name();
        assert!(!self.procs.contains_key(name), "{name} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .unwrap();
        let mut command = Command::new(binary());
        command
            .args(["serve", name, "--brokers", &self.kafka.brokers, "--data"])
            .arg(&self.data);
        command.args(&self.extra_args);
        let mut child = command
            .args(["--namespace", self.kafka.namespace.as_deref().unwrap()])
            .args(["--partitions", &self.kafka.partitions.to_string()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start ordersaga serve");
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready) = watch::channel(None);
        // A thread per process reads its stdout: the `ready` line is what a
        // restart is timed by.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready ") && ready_tx.borrow().is_none() {
                    ready_tx.send_replace(Some(Instant::now()));
                }
            }
        });
        self.procs.insert(
            name,
            Proc {
                child,
                spawned: Instant::now(),
                ready,
            },
        );
    }

    /// SIGKILLs `service`.
    pub fn kill(&mut self, service: Service) {
        let mut proc = self
            .procs
            .remove(service.name())
            .unwrap_or_else(|| panic!("{} is not running", service.name()));
        let _ = proc.child.kill();
        let _ = proc.child.wait();
    }

    /// Whether `service` has printed `ready` since it was last started.
    pub fn is_ready(&self, service: Service) -> bool {
        self.procs
            .get(service.name())
            .is_some_and(|p| p.ready.borrow().is_some())
    }

    /// Waits until `service` prints `ready` and returns how long after its
    /// start that was. Panics after `bound`.
    pub async fn ready(&mut self, service: Service, bound: Duration) -> Duration {
        let name = service.name();
        let proc = self
            .procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        let spawned = proc.spawned;
        let waited = tokio::time::timeout(bound, proc.ready.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(at)) => at.unwrap().duration_since(spawned),
            _ => {
                let status = proc.child.try_wait().ok().flatten();
                panic!(
                    "{name} did not print `ready` within {bound:?} of its start (exited: {status:?}); see {}",
                    self.logs.join(format!("{name}.log")).display()
                )
            }
        }
    }

    /// SIGTERMs every service and waits for each to exit by itself, within
    /// `bound`; returns each service's exit status (`None`: still running at
    /// the bound, then killed) and how long it took.
    pub fn terminate_all(&mut self, bound: Duration) -> Vec<(&'static str, Option<i32>, Duration)> {
        let mut stopped = Vec::new();
        let names: Vec<&'static str> = self.procs.keys().copied().collect();
        for name in &names {
            let pid = self.procs[name].child.id() as i32;
            // SAFETY: plain kill(2) on a child we spawned and still own.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        for name in names {
            let mut proc = self.procs.remove(name).unwrap();
            let code = loop {
                if let Some(status) = proc.child.try_wait().unwrap() {
                    break Some(status.code().unwrap_or(-1));
                }
                if start.elapsed() > bound {
                    let _ = proc.child.kill();
                    let _ = proc.child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            stopped.push((name, code, start.elapsed()));
        }
        stopped
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for proc in self.procs.values_mut() {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}
