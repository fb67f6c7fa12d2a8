//! The coalescer's rules, with calls that wait on the test's gates.

use super::*;
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// A call the fake received: its paths, and the gate that lets it answer.
struct Call {
    paths: Vec<String>,
    release: oneshot::Sender<()>,
}

/// [`Calls`] that report each call to the test and answer each path with
/// its own text once released.
#[derive(Clone)]
struct Gated {
    calls: mpsc::UnboundedSender<Call>,
}

impl Gated {
    fn new() -> (Self, mpsc::UnboundedReceiver<Call>) {
        let (calls, received) = mpsc::unbounded_channel();
        (Self { calls }, received)
    }

    async fn call(&self, paths: Vec<String>) -> Vec<Outcome> {
        let (release, released) = oneshot::channel();
        let _ = self.calls.send(Call {
            paths: paths.clone(),
            release,
        });
        let _ = released.await;
        paths.into_iter().map(|path| Ok(answer(&path))).collect()
    }
}

impl Calls for Gated {
    async fn one(&self, _address: &str, path: &str) -> Outcome {
        self.call(vec![path.to_owned()]).await.remove(0)
    }

    async fn many(&self, _address: &str, paths: Vec<String>) -> Vec<Outcome> {
        self.call(paths).await
    }
}

fn answer(path: &str) -> Answer {
    Answer {
        status: StatusCode::OK,
        body: Bytes::copy_from_slice(path.as_bytes()),
    }
}

fn dropped(address: String) -> DownstreamError {
    DownstreamError::Failed {
        service: "inventory",
        address,
        cause: "dropped".into(),
    }
}

/// Starts a read of `path` on the local task set; its outcome arrives on
/// the returned channel.
fn spawn_read(
    calls: &Gated,
    reads: &Coalescer,
    path: &str,
) -> (oneshot::Receiver<Outcome>, actix_rt::task::JoinHandle<()>) {
    let (calls, reads, path) = (calls.clone(), reads.clone(), path.to_owned());
    let (done, outcome) = oneshot::channel();
    let task = actix_rt::spawn(async move {
        let result = read(&calls, &reads, "127.0.0.1:1".into(), &path, dropped).await;
        let _ = done.send(result);
    });
    (outcome, task)
}

/// Lets the spawned reads run until `n` of them wait in the lane.
async fn until_waiting(reads: &Coalescer, n: usize) {
    // Each yield lets every ready local task run once: a bounded number of
    // turns, no clock.
    for _ in 0..10_000 {
        if reads.waiting() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{} reads wait, not {n}", reads.waiting());
}

/// Receives the next call, checks that it carries `paths`, and lets it
/// answer.
async fn answer_next(received: &mut mpsc::UnboundedReceiver<Call>, paths: &[&str]) {
    let call = received.recv().await.unwrap();
    assert_eq!(call.paths, paths);
    call.release.send(()).unwrap();
}

async fn body(outcome: oneshot::Receiver<Outcome>) -> String {
    let answer = outcome.await.expect("the read ended").expect("answered");
    String::from_utf8(answer.body.to_vec()).unwrap()
}

#[actix_rt::test]
async fn a_lone_read_is_a_plain_get_and_leaves_the_lane_idle() {
    // Given no call in flight
    let (calls, mut received) = Gated::new();
    let reads = Coalescer::default();
    // When one read comes
    let (outcome, _) = spawn_read(&calls, &reads, "/products/a");
    let call = received.recv().await.unwrap();
    // Then it is a single GET of its own, answered as such
    assert_eq!(call.paths, ["/products/a"]);
    call.release.send(()).unwrap();
    assert_eq!(body(outcome).await, "/products/a");
    // And the lane is idle: the next read is a call of its own again
    assert!(reads.lanes.borrow().is_empty());
    let (outcome, _) = spawn_read(&calls, &reads, "/products/b");
    answer_next(&mut received, &["/products/b"]).await;
    assert_eq!(body(outcome).await, "/products/b");
}

#[actix_rt::test]
async fn reads_behind_a_call_go_together_after_it_and_never_join_a_call_already_sent() {
    // Given a read whose call is in flight
    let (calls, mut received) = Gated::new();
    let reads = Coalescer::default();
    let (first, _) = spawn_read(&calls, &reads, "/a");
    let lead = received.recv().await.unwrap();
    // When three more arrive meanwhile
    let behind: Vec<_> = ["/b", "/c", "/d"]
        .iter()
        .map(|path| spawn_read(&calls, &reads, path).0)
        .collect();
    until_waiting(&reads, 3).await;
    // Then nothing else was sent yet; once the first call answers, its
    // read has its answer and the three go as one call, in order
    assert!(
        received.try_recv().is_err(),
        "they wait for the call in flight"
    );
    lead.release.send(()).unwrap();
    assert_eq!(body(first).await, "/a");
    let batch = received.recv().await.unwrap();
    assert_eq!(batch.paths, ["/b", "/c", "/d"]);
    // And a read arriving while that batch is in flight waits for the next
    // call: it started after the batch was sent
    let (late, _) = spawn_read(&calls, &reads, "/e");
    until_waiting(&reads, 1).await;
    batch.release.send(()).unwrap();
    for (outcome, path) in behind.into_iter().zip(["/b", "/c", "/d"]) {
        assert_eq!(body(outcome).await, path);
    }
    answer_next(&mut received, &["/e"]).await;
    assert_eq!(body(late).await, "/e");
    until_waiting(&reads, 0).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(reads.lanes.borrow().is_empty(), "the lane is idle again");
}

#[actix_rt::test]
async fn a_cancelled_call_still_hands_its_waiting_reads_on() {
    // Given a call in flight and a read waiting behind it
    let (calls, mut received) = Gated::new();
    let reads = Coalescer::default();
    let (_, lead_task) = spawn_read(&calls, &reads, "/a");
    let lead = received.recv().await.unwrap();
    let (waiting, _) = spawn_read(&calls, &reads, "/b");
    until_waiting(&reads, 1).await;
    // When the first read's request goes away mid-call
    lead_task.abort();
    drop(lead);
    // Then the waiting read is still sent and answered
    answer_next(&mut received, &["/b"]).await;
    assert_eq!(body(waiting).await, "/b");
}

#[actix_rt::test]
async fn a_batch_carries_at_most_max_reads() {
    // Given a call in flight and MAX_READS + 1 reads behind it
    let (calls, mut received) = Gated::new();
    let reads = Coalescer::default();
    let (_first, _) = spawn_read(&calls, &reads, "/lead");
    let lead = received.recv().await.unwrap();
    let paths: Vec<String> = (0..=MAX_READS).map(|i| format!("/p/{i}")).collect();
    let mut outcomes: VecDeque<_> = paths
        .iter()
        .map(|path| spawn_read(&calls, &reads, path).0)
        .collect();
    until_waiting(&reads, MAX_READS + 1).await;
    // When the call in flight ends
    lead.release.send(()).unwrap();
    // Then the first MAX_READS go together, and the last one after them
    let batch = received.recv().await.unwrap();
    assert_eq!(batch.paths, paths[..MAX_READS]);
    batch.release.send(()).unwrap();
    let rest = received.recv().await.unwrap();
    assert_eq!(rest.paths, paths[MAX_READS..]);
    rest.release.send(()).unwrap();
    for path in &paths {
        assert_eq!(&body(outcomes.pop_front().unwrap()).await, path);
    }
}

#[test]
fn a_reads_answer_splits_into_each_status_and_body_in_order() {
    let answer = |status: StatusCode, body: &str| Answer {
        status,
        body: Bytes::copy_from_slice(body.as_bytes()),
    };
    let good = answer(
        StatusCode::OK,
        r#"{"answers":[{"status":200,"body":{"id":"a","stock":3}},{"status":404,"body":{"code":"not_found"}}]}"#,
    );
    let split = split(&good, 2).unwrap();
    assert_eq!(split[0].0, StatusCode::OK);
    assert_eq!(&split[0].1[..], br#"{"id":"a","stock":3}"#);
    assert_eq!(split[1].0, StatusCode::NOT_FOUND);
    assert_eq!(&split[1].1[..], br#"{"code":"not_found"}"#);

    let short = split_err(&good, 3);
    assert!(short.contains("answered 2 of 3 reads"), "{short}");
    let garbled = split_err(&answer(StatusCode::OK, "{\"answers\":"), 1);
    assert!(garbled.contains("unreadable JSON"), "{garbled}");
    let refused = split_err(&answer(StatusCode::BAD_REQUEST, "{}"), 1);
    assert!(refused.contains("answered 400"), "{refused}");
    let odd = split_err(
        &answer(StatusCode::OK, r#"{"answers":[{"status":1000,"body":{}}]}"#),
        1,
    );
    assert!(odd.contains("status 1000"), "{odd}");
}

fn split_err(answer: &Answer, n: usize) -> String {
    split(answer, n).expect_err("not a good answer")
}

/// HTTP calls through a real [`Downstream`] (its registry on the embedded
/// broker; the address is given, so the registry is never asked).
mod over_http {
    use super::super::*;
    use crate::gateway::breaker::{BreakerConfig, SystemClock};
    use crate::gateway::downstream::Breakers;
    use crate::kafka::embedded::EmbeddedBroker;
    use crate::registry::{Registry, Since};
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Requests an upstream received: single GETs and `POST /reads`.
    #[derive(Default)]
    struct Seen {
        gets: AtomicUsize,
        batches: AtomicUsize,
    }

    /// An upstream answering `GET /products/{id}` with its id (404 for
    /// `missing`, 503 for `broken`) and, when `with_reads`, `POST /reads`
    /// with what `answers` says.
    fn upstream(with_reads: Option<&'static str>, seen: Arc<Seen>) -> String {
        let server = HttpServer::new(move || {
            let seen = seen.clone();
            let mut app = App::new().app_data(web::Data::new(seen)).route(
                "/products/{id}",
                web::get().to(
                    |seen: web::Data<Arc<Seen>>, id: web::Path<String>| async move {
                        seen.gets.fetch_add(1, Ordering::SeqCst);
                        match id.as_str() {
                            "missing" => HttpResponse::NotFound()
                                .json(serde_json::json!({"code": "not_found"})),
                            "broken" => HttpResponse::ServiceUnavailable().finish(),
                            id => HttpResponse::Ok().json(serde_json::json!({"id": id})),
                        }
                    },
                ),
            );
            if let Some(answers) = with_reads {
                app = app.route(
                    "/reads",
                    web::post().to(move |seen: web::Data<Arc<Seen>>| async move {
                        seen.batches.fetch_add(1, Ordering::SeqCst);
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(answers)
                    }),
                );
            }
            app
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let address = server.addrs()[0].to_string();
        actix_rt::spawn(server.run());
        address
    }

    async fn downstream(broker: &EmbeddedBroker) -> Downstream {
        let config = broker.config();
        broker
            .create_topics(&config, &[ordersaga_events::topics::HEARTBEATS.to_string()])
            .unwrap();
        let registry = Registry::start(&config, Since::Beginning).await.unwrap();
        let breakers = Breakers::new(BreakerConfig::default(), Arc::new(SystemClock));
        Downstream::new(Arc::new(registry), breakers, Duration::from_secs(5))
    }

    #[actix_rt::test]
    async fn an_instance_without_the_reads_route_is_asked_each_path_on_its_own() {
        // Given an older instance: single GETs only
        let broker = EmbeddedBroker::start().unwrap();
        let downstream = downstream(&broker).await;
        let seen = Arc::new(Seen::default());
        let address = upstream(None, seen.clone());
        let client = awc::Client::default();
        // When two reads go together
        let outcomes = downstream
            .batch(
                &client,
                ServiceName::Inventory,
                &address,
                &["/products/a", "/products/missing"],
            )
            .await;
        // Then each was asked on its own and answered as such
        let answers: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers[0].status, StatusCode::OK);
        assert_eq!(&answers[0].body[..], br#"{"id":"a"}"#);
        assert_eq!(answers[1].status, StatusCode::NOT_FOUND);
        assert_eq!(seen.gets.load(Ordering::SeqCst), 2);
        let breaker = downstream.breakers().of(ServiceName::Inventory).snapshot();
        assert_eq!(breaker.consecutive_failures, 0, "a 404 is an answer");
    }

    #[actix_rt::test]
    async fn a_batch_is_one_call_and_a_5xx_read_in_it_is_a_failure_of_that_read() {
        // Given an instance whose second read fails
        let broker = EmbeddedBroker::start().unwrap();
        let downstream = downstream(&broker).await;
        let seen = Arc::new(Seen::default());
        let answers = r#"{"answers":[{"status":200,"body":{"id":"a"}},{"status":503,"body":{"code":"unavailable"}}]}"#;
        let address = upstream(Some(answers), seen.clone());
        let client = awc::Client::default();
        // When two reads go together
        let outcomes = downstream
            .batch(
                &client,
                ServiceName::Inventory,
                &address,
                &["/products/a", "/products/broken"],
            )
            .await;
        // Then one call carried both; the first is answered, the second
        // failed (its caller falls back to the read model), and the breaker
        // counts one failed call
        assert_eq!(seen.batches.load(Ordering::SeqCst), 1);
        assert_eq!(seen.gets.load(Ordering::SeqCst), 0);
        let answer = outcomes[0].as_ref().unwrap();
        assert_eq!(&answer.body[..], br#"{"id":"a"}"#);
        let failed = outcomes[1].as_ref().unwrap_err().to_string();
        assert!(
            failed.contains("answered 503") && failed.contains(&address),
            "{failed}"
        );
        let breaker = downstream.breakers().of(ServiceName::Inventory).snapshot();
        assert_eq!(breaker.consecutive_failures, 1);
    }
}
