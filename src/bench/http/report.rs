//! What an HTTP bench run measured and checked.

use super::client::Tally;
use crate::bench::cpu::per_request;
use serde::Serialize;
use std::collections::BTreeMap;

/// The share of the baseline's requests/s the read path should reach.
pub const READ_GOAL: f64 = 0.5;

/// The phases, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PhaseKind {
    Baseline,
    BaselineEnd,
    BaselineProxy,
    Health,
    ReadProxied,
    ReadList,
    Orders,
    ReadMine,
}

impl PhaseKind {
    /// The phase's name in the report.
    pub(super) fn name(self) -> &'static str {
        match self {
            PhaseKind::Baseline => "baseline",
            PhaseKind::BaselineEnd => "baseline_end",
            PhaseKind::BaselineProxy => "baseline_proxy",
            PhaseKind::Health => "gateway_health",
            PhaseKind::ReadProxied => "read_proxied",
            PhaseKind::ReadList => "read_list",
            PhaseKind::Orders => "orders",
            PhaseKind::ReadMine => "read_my_orders",
        }
    }

    /// The request it repeats.
    pub(super) fn request(self) -> &'static str {
        match self {
            PhaseKind::Baseline | PhaseKind::BaselineEnd => "GET /ping (trivial handler)",
            PhaseKind::BaselineProxy => "GET /ping/proxied (trivial proxy)",
            PhaseKind::Health => "GET /health (gateway)",
            PhaseKind::ReadProxied => "GET /products/{id}",
            PhaseKind::ReadList => "GET /products?limit=20",
            PhaseKind::Orders => "POST /orders?wait=30s",
            PhaseKind::ReadMine => "GET /users/me/orders?limit=20",
        }
    }

    /// Whether it measures the trivial handler.
    pub(super) fn is_baseline(self) -> bool {
        matches!(self, PhaseKind::Baseline | PhaseKind::BaselineEnd)
    }

    /// Whether it is part of the read path the goal is about.
    pub(super) fn is_read(self) -> bool {
        matches!(
            self,
            PhaseKind::ReadProxied | PhaseKind::ReadList | PhaseKind::ReadMine
        )
    }
}

/// Throughput, latency and errors of one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpPhase {
    /// `baseline`, `baseline_proxy`, `gateway_health`, `read_proxied`,
    /// `read_list`, `orders`, `read_my_orders` or `baseline_end`.
    pub phase: String,
    /// The request it repeats.
    pub request: String,
    /// Requests sent.
    pub sent: usize,
    /// Answers with a 2xx status.
    pub ok: usize,
    /// Non-2xx answers plus requests without an answer.
    pub errors: usize,
    /// Answers by status code, and `transport` for requests without one.
    pub statuses: BTreeMap<String, usize>,
    /// The first error, if any: a status with the start of its body, or a
    /// transport error.
    pub first_error: Option<String>,
    /// 2xx answers the gateway served from its read model because the
    /// owning service could not be asked (`Ordersaga-Stale: true`).
    pub stale: usize,
    /// Mean body size of the 2xx answers, bytes.
    pub mean_body_bytes: f64,
    /// From the first send to the last answer.
    pub seconds: f64,
    /// 2xx answers per second.
    pub per_sec: f64,
    /// Median latency of the 2xx answers (send → whole body read), ms.
    pub p50_ms: f64,
    /// 90th percentile latency, ms.
    pub p90_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// This phase's requests/s ÷ the baseline's ([`Reference`]; `None`
    /// when the baseline measured nothing).
    pub throughput_ratio: Option<f64>,
    /// This phase's p50 ÷ the baseline's ([`Reference`]).
    pub p50_ratio: Option<f64>,
    /// For the read phases: whether the throughput ratio reaches
    /// [`READ_GOAL`]. Reported, never a failure.
    pub meets_read_goal: Option<bool>,
    /// CPU time of the whole bench process (client, servers, services,
    /// the embedded broker if any; not an outside broker) per request
    /// sent, µs.
    pub cpu_us_per_request: Option<f64>,
    /// That CPU time ÷ the phase's wall time: how many cores the process
    /// kept busy. Near the machine's core count, the phase is bound by CPU
    /// and its throughput follows `cpu_us_per_request`.
    pub cores_busy: Option<f64>,
}

impl HttpPhase {
    pub(super) fn of(kind: PhaseKind, tally: &Tally) -> Self {
        let h = &tally.latencies;
        let ms = |us: u64| us as f64 / 1000.0;
        let seconds = tally.elapsed.as_secs_f64();
        let mut statuses: BTreeMap<String, usize> = tally
            .statuses
            .iter()
            .map(|(status, n)| (status.to_string(), *n))
            .collect();
        if tally.transport_errors > 0 {
            statuses.insert("transport".into(), tally.transport_errors);
        }
        let measured = !h.is_empty();
        let (cpu_us_per_request, cores_busy) = per_request(tally.cpu, tally.sent, seconds);
        Self {
            phase: kind.name().into(),
            request: kind.request().into(),
            sent: tally.sent,
            ok: tally.ok,
            errors: tally.errors(),
            statuses,
            first_error: tally.first_error.clone(),
            stale: tally.stale,
            mean_body_bytes: if tally.ok > 0 {
                tally.body_bytes as f64 / tally.ok as f64
            } else {
                0.0
            },
            seconds,
            per_sec: if seconds > 0.0 {
                tally.ok as f64 / seconds
            } else {
                0.0
            },
            p50_ms: if measured {
                ms(h.value_at_quantile(0.50))
            } else {
                0.0
            },
            p90_ms: if measured {
                ms(h.value_at_quantile(0.90))
            } else {
                0.0
            },
            p99_ms: if measured {
                ms(h.value_at_quantile(0.99))
            } else {
                0.0
            },
            max_ms: if measured { ms(h.max()) } else { 0.0 },
            mean_ms: if measured { h.mean() / 1000.0 } else { 0.0 },
            throughput_ratio: None,
            p50_ratio: None,
            meets_read_goal: None,
            cpu_us_per_request,
            cores_busy,
        }
    }

    /// Fills the ratios against `baseline`.
    pub(super) fn compare(&mut self, kind: PhaseKind, baseline: &Reference) {
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        self.throughput_ratio = ratio(self.per_sec, baseline.per_sec);
        self.p50_ratio = ratio(self.p50_ms, baseline.p50_ms);
        if kind.is_read() {
            self.meets_read_goal = Some(self.throughput_ratio.is_some_and(|r| r >= READ_GOAL));
        }
    }
}

/// What the ratios divide by: the mean of the two baseline runs that
/// bracket the gateway's phases, so that a machine that slows down or
/// speeds up during the run moves the reference with it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reference {
    /// Mean requests/s of the baseline runs.
    pub per_sec: f64,
    /// Mean p50 of the baseline runs, ms.
    pub p50_ms: f64,
    /// The closing baseline's requests/s ÷ the opening one's: far from 1,
    /// the machine changed speed during the run and every ratio is rough.
    pub drift: Option<f64>,
}

impl Reference {
    /// The reference of the baseline runs among `phases`.
    pub(super) fn of<'a>(baselines: impl IntoIterator<Item = &'a HttpPhase>) -> Self {
        let runs: Vec<&HttpPhase> = baselines.into_iter().collect();
        let n = runs.len().max(1) as f64;
        let drift = match (runs.first(), runs.last()) {
            (Some(first), Some(last)) if runs.len() > 1 && first.per_sec > 0.0 => {
                Some(last.per_sec / first.per_sec)
            }
            _ => None,
        };
        Self {
            per_sec: runs.iter().map(|p| p.per_sec).sum::<f64>() / n,
            p50_ms: runs.iter().map(|p| p.p50_ms).sum::<f64>() / n,
            drift,
        }
    }
}

/// How the orders' HTTP answers ended.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OrderAnswers {
    /// 200 with `status: confirmed`.
    pub confirmed: usize,
    /// 200 with `status: cancelled`, by `cancel_reason`.
    pub cancelled: BTreeMap<String, usize>,
    /// 202: placed, not settled within the wait (their sagas are awaited
    /// before the stores are checked).
    pub pending: usize,
    /// 200 with any other status.
    pub other: usize,
}

/// How the placed orders' sagas ended, from `orders.events`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SagaEnds {
    /// Sagas that completed.
    pub completed: usize,
    /// Sagas that aborted.
    pub aborted: usize,
    /// Placed orders whose saga did not end before the stall timeout.
    pub unfinished: usize,
}

/// Everything an HTTP bench run measured and checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HttpBenchReport {
    /// `bootstrap.servers` used.
    pub brokers: String,
    /// Whether the broker was the embedded mock cluster (set by the caller).
    pub embedded_broker: bool,
    /// The topic namespace, if any.
    pub namespace: Option<String>,
    /// Requests per phase.
    pub requests: usize,
    /// Orders placed in the orders phase.
    pub orders_placed: usize,
    /// Requests in flight at once, in every phase.
    pub concurrency: usize,
    /// HTTP worker threads of the gateway, and of the baseline server.
    pub workers: usize,
    /// Users created (and logged in) through the gateway.
    pub users: usize,
    /// Products created through the gateway.
    pub products: usize,
    /// Requests the setup made (registrations, logins, deposits, products,
    /// read-model catch-up).
    pub setup_requests: usize,
    /// How long the setup took.
    pub setup_seconds: f64,
    /// Every phase, in the order they ran: the baseline first and last.
    pub phases: Vec<HttpPhase>,
    /// What the ratios divide by.
    pub reference: Reference,
    /// The read path's goal, as a share of the baseline's requests/s.
    pub read_goal: f64,
    /// Whether every read phase reached it.
    pub read_goal_met: bool,
    /// `read_proxied`'s requests/s ÷ `baseline_proxy`'s: how close the
    /// gateway's proxied read comes to the cheapest two-exchange read.
    pub proxied_vs_trivial_proxy: Option<f64>,
    /// Reads per downstream call during `read_proxied`: 1 when every read
    /// went alone, more when the gateway coalesced them.
    pub proxied_reads_per_call: Option<f64>,
    /// How the orders' answers ended.
    pub orders: OrderAnswers,
    /// How their sagas ended.
    pub sagas: SagaEnds,
    /// Errors over every phase (non-2xx answers, requests without one).
    pub errors: usize,
    /// Whether every invariant held across the three stores.
    pub invariants_ok: bool,
    /// Sagas by phase, from the stores.
    pub sagas_by_phase: BTreeMap<String, usize>,
    /// Broken invariants, one sentence each.
    pub violations: Vec<String>,
}

impl HttpBenchReport {
    /// Whether the run is a success: no request failed, every saga ended
    /// and every invariant holds. The read goal is not part of it.
    pub fn is_ok(&self) -> bool {
        self.errors == 0 && self.sagas.unfinished == 0 && self.invariants_ok
    }

    /// The phase named `name`.
    pub fn phase(&self, name: &str) -> Option<&HttpPhase> {
        self.phases.iter().find(|p| p.phase == name)
    }

    /// Requests/s of phase `a` ÷ phase `b`'s, when both measured something.
    pub fn per_sec_ratio(&self, a: &str, b: &str) -> Option<f64> {
        let (a, b) = (self.phase(a)?, self.phase(b)?);
        (b.per_sec > 0.0).then(|| a.per_sec / b.per_sec)
    }
}
