//! The measured phases, each `requests` requests (`orders` for the
//! orders phase) at the same concurrency through the same client: the
//! baseline, the gateway's own overhead, the read path (proxied and from
//! the read model), the order path (then the wait for every placed order's
//! saga to end), a per-user list, and the baseline again: the two
//! baselines bracket the gateway's phases.

use super::baseline::{self, Baseline};
use super::client::{Call, Load, LoadClient, Tally};
use super::report::{OrderAnswers, PhaseKind, SagaEnds};
use super::setup::Shop;
use super::HttpBenchConfig;
use crate::bench::cpu::{cpu_since, process_cpu};
use crate::bench::drive::{progress_bar, saga_end, End};
use crate::bench::BenchError;
use rdkafka::consumer::StreamConsumer;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use uuid::Uuid;

/// How long an order may wait for its outcome (the `wait` of the request).
pub(super) const ORDER_WAIT: &str = "30s";

/// Runs `calls` as phase `kind` and returns what it measured, with the
/// process's CPU time over the phase.
async fn phase(
    client: &LoadClient,
    address: SocketAddr,
    calls: Vec<Call>,
    config: &HttpBenchConfig,
    kind: PhaseKind,
    keep: bool,
) -> Result<Tally, BenchError> {
    let bar = progress_bar(config.progress, calls.len(), kind.name());
    let before = process_cpu();
    let mut tally = client
        .run(Load {
            address,
            calls,
            concurrency: config.concurrency,
            keep,
            bar,
        })
        .await?;
    tally.cpu = cpu_since(before);
    Ok(tally)
}

/// Opens the client's connections to both servers before anything is
/// measured, so that no phase pays for connecting: twice the concurrency
/// of cheap requests to each, unmeasured. Any failure here is fatal.
pub(super) async fn warm_up(
    client: &LoadClient,
    baseline: SocketAddr,
    gateway: SocketAddr,
    config: &HttpBenchConfig,
) -> Result<(), BenchError> {
    let n = config.concurrency.saturating_mul(2);
    for (address, path) in [
        (baseline, baseline::PATH),
        (baseline, baseline::PROXY_PATH),
        (gateway, "/health"),
    ] {
        let calls = vec![Call::get(path, None); n];
        let tally = client
            .run(Load {
                address,
                calls,
                concurrency: config.concurrency,
                keep: false,
                bar: indicatif::ProgressBar::hidden(),
            })
            .await?;
        if let Some(err) = tally.first_error {
            return Err(format!("warm-up of {address}{path}: {err}").into());
        }
    }
    Ok(())
}

/// Everything the phases measured.
pub(super) struct Measured {
    pub(super) phases: Vec<(PhaseKind, Tally)>,
    /// Reads per downstream call during `read_proxied` (the gateway's
    /// coalescing), when it made any call.
    pub(super) proxied_reads_per_call: Option<f64>,
    pub(super) orders: OrderAnswers,
    pub(super) sagas: SagaEnds,
}

/// Runs every phase in order; `sagas` is a reader of `orders.events` from
/// the start of the run.
pub(super) async fn run(
    client: &LoadClient,
    baseline: &Baseline,
    gateway: SocketAddr,
    shop: &Shop,
    sagas: &StreamConsumer,
    config: &HttpBenchConfig,
) -> Result<Measured, BenchError> {
    let n = config.requests;
    let users = shop.tokens.len();
    let products = shop.products.len();
    let mut phases = Vec::new();
    let mut proxied_reads_per_call = None;
    let ping = || vec![Call::get(baseline::PATH, None); n];

    for (kind, address, calls) in [
        (PhaseKind::Baseline, baseline.address, ping()),
        (
            PhaseKind::BaselineProxy,
            baseline.address,
            vec![Call::get(baseline::PROXY_PATH, None); n],
        ),
        (
            PhaseKind::Health,
            gateway,
            vec![Call::get("/health", None); n],
        ),
        (
            PhaseKind::ReadProxied,
            gateway,
            (0..n)
                .map(|i| Call::get(format!("/products/{}", shop.products[i % products]), None))
                .collect(),
        ),
        (
            PhaseKind::ReadList,
            gateway,
            vec![Call::get("/products?limit=20", None); n],
        ),
    ] {
        let before = reads_per_call();
        let tally = phase(client, address, calls, config, kind, false).await?;
        if kind == PhaseKind::ReadProxied {
            let (calls, reads) = reads_per_call();
            let (calls, reads) = (calls - before.0, reads - before.1);
            proxied_reads_per_call = (calls > 0).then(|| reads / calls as f64);
        }
        phases.push((kind, tally));
    }

    // Order i: user i mod U, one unit of a product that moves on with each
    // round of users, so that every user orders across the products.
    let calls = (0..config.orders)
        .map(|i| {
            let product = shop.products[(i / users + i) % products];
            Call::post(
                format!("/orders?wait={ORDER_WAIT}"),
                Some(shop.tokens[i % users].clone()),
                &serde_json::json!({"lines": [{"product_id": product, "quantity": 1}]}),
            )
        })
        .collect();
    let kind = PhaseKind::Orders;
    let placed = phase(client, gateway, calls, config, kind, true).await?;
    let (orders, placed_ids) = order_answers(&placed);
    phases.push((kind, placed));
    let sagas = saga_ends(sagas, &placed_ids, config).await;

    for (kind, address, calls) in [
        (
            PhaseKind::ReadMine,
            gateway,
            (0..n)
                .map(|i| {
                    Call::get(
                        "/users/me/orders?limit=20",
                        Some(shop.tokens[i % users].clone()),
                    )
                })
                .collect(),
        ),
        // The baseline again, now that the sagas are done: the two bracket
        // the gateway's phases.
        (PhaseKind::BaselineEnd, baseline.address, ping()),
    ] {
        phases.push((
            kind,
            phase(client, address, calls, config, kind, false).await?,
        ));
    }

    Ok(Measured {
        phases,
        proxied_reads_per_call,
        orders,
        sagas,
    })
}

/// The gateway's downstream read calls so far, and the reads they carried
/// (from its metrics: the bench runs the gateway in its own process).
fn reads_per_call() -> (u64, f64) {
    let histogram = &crate::gateway::metrics::gateway_metrics().reads_per_call;
    (histogram.get_sample_count(), histogram.get_sample_sum())
}

/// How the orders' 2xx answers ended, and the ids of the orders placed
/// (from `Location: /orders/{id}`, on 200 and 202 alike).
fn order_answers(tally: &Tally) -> (OrderAnswers, HashSet<Uuid>) {
    let mut answers = OrderAnswers::default();
    let mut placed = HashSet::new();
    for kept in &tally.kept {
        if let Some(id) = kept
            .location
            .as_deref()
            .and_then(|l| l.strip_prefix("/orders/"))
            .and_then(|id| Uuid::parse_str(id).ok())
        {
            placed.insert(id);
        }
        match kept.status {
            200 => {
                let order = kept.json();
                match order.get("status").and_then(|s| s.as_str()) {
                    Some("confirmed") => answers.confirmed += 1,
                    Some("cancelled") => {
                        let reason = order
                            .get("cancel_reason")
                            .and_then(|r| r.as_str())
                            .unwrap_or("unknown")
                            .to_string();
                        *answers.cancelled.entry(reason).or_insert(0) += 1;
                    }
                    _ => answers.other += 1,
                }
            }
            202 => answers.pending += 1,
            _ => {}
        }
    }
    (answers, placed)
}

/// Reads `orders.events` until the saga of every order in `placed` has
/// ended, or nothing has ended for the stall timeout. A confirmed order's
/// saga still has a step to go (the reservation's commit), and a 202's is
/// still running: the stores are checked only once they are all done.
async fn saga_ends(
    consumer: &StreamConsumer,
    placed: &HashSet<Uuid>,
    config: &HttpBenchConfig,
) -> SagaEnds {
    let mut ends: HashMap<Uuid, End> = HashMap::with_capacity(placed.len());
    let bar = progress_bar(config.progress, placed.len(), "sagas");
    let mut deadline = tokio::time::Instant::now() + config.stall_timeout;
    while ends.len() < placed.len() {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(err)) => {
                tracing::warn!(cause = %err, "bench consumer error");
                // Let a broken connection recover instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(Ok(message)) => {
                let Some((id, end)) = saga_end(&message) else {
                    continue;
                };
                // Only the first end counts: republished events repeat it.
                if placed.contains(&id) && !ends.contains_key(&id) {
                    ends.insert(id, end);
                    bar.inc(1);
                    deadline = tokio::time::Instant::now() + config.stall_timeout;
                }
            }
        }
    }
    bar.finish_and_clear();
    let completed = ends.values().filter(|e| **e == End::Ok).count();
    SagaEnds {
        completed,
        aborted: ends.len() - completed,
        unfinished: placed.len() - ends.len(),
    }
}
