//! The load generator: one awc client with keep-alive, on a thread of its
//! own, that runs each phase as C workers taking the next request as soon
//! as their previous answer is read (a closed loop: C requests in flight).
//!
//! Its own thread and actix system, because awc is `!Send` and because the
//! bench's main thread also runs the services' actors and Kafka clients: a
//! client sharing that thread would measure their work as HTTP latency.
//! Every phase, the baseline included, goes through this same client, so
//! whatever the client costs is in every number alike.

use super::super::BenchError;
use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::web::Bytes;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Largest answer body read: the biggest page the gateway serves (100
/// products) fits many times over.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// The method of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verb {
    Get,
    Post,
}

/// One request: method, path and query, bearer token, JSON body.
#[derive(Clone, Debug)]
pub(super) struct Call {
    pub(super) verb: Verb,
    pub(super) path: String,
    pub(super) token: Option<Arc<str>>,
    pub(super) body: Option<Bytes>,
}

impl Call {
    /// `GET path`.
    pub(super) fn get(path: impl Into<String>, token: Option<Arc<str>>) -> Self {
        Self {
            verb: Verb::Get,
            path: path.into(),
            token,
            body: None,
        }
    }

    /// `POST path` with `body` as JSON.
    pub(super) fn post(
        path: impl Into<String>,
        token: Option<Arc<str>>,
        body: &serde_json::Value,
    ) -> Self {
        Self {
            verb: Verb::Post,
            path: path.into(),
            token,
            body: Some(Bytes::from(body.to_string())),
        }
    }
}

/// One phase for the client: where, what, how many at once.
pub(super) struct Load {
    pub(super) address: SocketAddr,
    pub(super) calls: Vec<Call>,
    pub(super) concurrency: usize,
    /// Keep every answer (status, headers of interest, body) for the caller:
    /// the setup reads ids and tokens from them, the orders phase outcomes.
    pub(super) keep: bool,
    pub(super) bar: ProgressBar,
}

/// An answer kept for the caller.
#[derive(Clone, Debug)]
pub(super) struct Kept {
    /// Its request's index in [`Load::calls`].
    pub(super) index: usize,
    pub(super) status: u16,
    pub(super) location: Option<String>,
    pub(super) position: Option<String>,
    pub(super) body: Bytes,
}

impl Kept {
    /// The body as JSON (`Null` when it is not JSON).
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What a phase measured.
pub(super) struct Tally {
    pub(super) sent: usize,
    /// Answers with a 2xx status.
    pub(super) ok: usize,
    /// Latency of the 2xx answers, send → whole body read, µs.
    pub(super) latencies: Histogram<u64>,
    /// From the first send to the last answer.
    pub(super) elapsed: Duration,
    /// Every answer by status code.
    pub(super) statuses: BTreeMap<u16, usize>,
    /// Requests that got no answer (connection, timeout, unreadable body).
    pub(super) transport_errors: usize,
    /// The first failure, for the report: a status with its body, or a
    /// transport error.
    pub(super) first_error: Option<String>,
    /// 2xx answers marked `Ordersaga-Stale: true` (served from the read
    /// model instead of the owning service).
    pub(super) stale: usize,
    /// Body bytes of the 2xx answers: what each phase asks the server to
    /// serialise and the client to read differs by orders of magnitude.
    pub(super) body_bytes: u64,
    /// Every answer when [`Load::keep`], in request order.
    pub(super) kept: Vec<Kept>,
    /// CPU time of the whole process during the phase (set by the phase
    /// runner; `None` when unmeasured).
    pub(super) cpu: Option<Duration>,
}

impl Tally {
    fn new(sent: usize) -> Result<Self, BenchError> {
        Ok(Self {
            sent,
            ok: 0,
            // 1 µs to 1 hour at 3 significant digits; slower answers saturate.
            latencies: Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?,
            elapsed: Duration::ZERO,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            first_error: None,
            stale: 0,
            body_bytes: 0,
            kept: Vec::new(),
            cpu: None,
        })
    }

    /// Non-2xx answers plus requests without an answer.
    pub(super) fn errors(&self) -> usize {
        self.sent - self.ok
    }

    fn record(&mut self, index: usize, took: Duration, answer: Result<Answer, String>, keep: bool) {
        match answer {
            Err(err) => {
                self.transport_errors += 1;
                self.first_error.get_or_insert(err);
            }
            Ok(answer) => {
                *self.statuses.entry(answer.status).or_insert(0) += 1;
                if (200..300).contains(&answer.status) {
                    self.ok += 1;
                    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                    self.latencies.saturating_record(micros);
                    if answer.stale {
                        self.stale += 1;
                    }
                    self.body_bytes += answer.body.len() as u64;
                } else if self.first_error.is_none() {
                    let body = String::from_utf8_lossy(&answer.body);
                    self.first_error = Some(format!(
                        "status {}: {}",
                        answer.status,
                        body.chars().take(300).collect::<String>()
                    ));
                }
                if keep {
                    self.kept.push(Kept {
                        index,
                        status: answer.status,
                        location: answer.location,
                        position: answer.position,
                        body: answer.body,
                    });
                }
            }
        }
    }
}

/// An answer as read off the wire.
struct Answer {
    status: u16,
    location: Option<String>,
    position: Option<String>,
    stale: bool,
    body: Bytes,
}

type Job = (Load, oneshot::Sender<Result<Tally, String>>);

/// The client thread, fed one phase at a time.
pub(super) struct LoadClient {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoadClient {
    /// Starts the client thread with a pool of up to `connections`
    /// keep-alive connections per server, each request bounded by `timeout`.
    pub(super) fn start(connections: usize, timeout: Duration) -> Result<Self, BenchError> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("bench-http-client".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let connector = awc::Connector::new()
                        .limit(connections)
                        // Connections live as long as the run: no phase
                        // pays for reconnecting halfway.
                        .conn_lifetime(Duration::from_secs(24 * 3600))
                        .conn_keep_alive(Duration::from_secs(60));
                    let client = awc::Client::builder()
                        .connector(connector)
                        .timeout(timeout)
                        .disable_redirects()
                        .finish();
                    while let Some((load, done)) = queue.recv().await {
                        let _ = done.send(drive(&client, load).await);
                    }
                })
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs one phase on the client thread and returns what it measured.
    pub(super) async fn run(&self, load: Load) -> Result<Tally, BenchError> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or("the load client is stopped")?
            .send((load, done))
            .map_err(|_| "the load client thread is gone")?;
        let tally = answer
            .await
            .map_err(|_| "the load client thread stopped during a phase")??;
        Ok(tally)
    }

    /// Closes the client's connections and ends its thread.
    pub(super) async fn stop(mut self) {
        // Closing the queue ends the thread's loop, and its system.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Runs `load`: `concurrency` workers on this thread's actix system, each
/// taking the next request when its previous answer is read.
async fn drive(client: &awc::Client, load: Load) -> Result<Tally, String> {
    let Load {
        address,
        calls,
        concurrency,
        keep,
        bar,
    } = load;
    let base = Rc::new(format!("http://{address}"));
    let calls = Rc::new(calls);
    let next = Rc::new(Cell::new(0usize));
    let tally = Rc::new(RefCell::new(
        Tally::new(calls.len()).map_err(|e| e.to_string())?,
    ));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.clamp(1, calls.len().max(1)) {
        let (client, base, calls, next, tally, bar) = (
            client.clone(),
            base.clone(),
            calls.clone(),
            next.clone(),
            tally.clone(),
            bar.clone(),
        );
        workers.push(actix_rt::spawn(async move {
            loop {
                let index = next.get();
                let Some(call) = calls.get(index) else { break };
                next.set(index + 1);
                let sent = Instant::now();
                let answer = send(&client, &base, call).await;
                let took = sent.elapsed();
                tally.borrow_mut().record(index, took, answer, keep);
                bar.inc(1);
            }
        }));
    }
    for worker in workers {
        worker
            .await
            .map_err(|e| format!("a load worker failed: {e}"))?;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut tally = Rc::try_unwrap(tally)
        .map_err(|_| "a load worker outlived its phase".to_string())?
        .into_inner();
    tally.elapsed = elapsed;
    tally.kept.sort_by_key(|k| k.index);
    Ok(tally)
}

/// Sends `call` and reads its whole answer.
async fn send(client: &awc::Client, base: &str, call: &Call) -> Result<Answer, String> {
    let url = format!("{base}{}", call.path);
    let mut request = match call.verb {
        Verb::Get => client.get(url),
        Verb::Post => client.post(url),
    };
    if let Some(token) = &call.token {
        request = request.bearer_auth(token);
    }
    let sent = match &call.body {
        Some(body) => {
            request
                .insert_header((CONTENT_TYPE, "application/json"))
                .send_body(body.clone())
                .await
        }
        None => request.send().await,
    };
    let mut response = sent.map_err(|e| format!("{} {}: {e}", verb(call.verb), call.path))?;
    let body = response
        .body()
        .limit(MAX_ANSWER)
        .await
        .map_err(|e| format!("{} {}: reading the answer: {e}", verb(call.verb), call.path))?;
    let headers = response.headers();
    Ok(Answer {
        status: response.status().as_u16(),
        location: header(headers, "location"),
        position: header(headers, crate::gateway::answers::POSITION_HEADER),
        stale: header(headers, crate::gateway::answers::STALE_HEADER).as_deref() == Some("true"),
        body,
    })
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn verb(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "GET",
        Verb::Post => "POST",
    }
}
