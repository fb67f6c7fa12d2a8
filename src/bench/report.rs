//! What a run measured and checked, and how it is reported.

use super::*;

/// The outcome mix the plan asks for.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Expected {
    /// Orders meant to complete.
    pub completed: usize,
    /// Orders meant to abort for stock.
    pub insufficient_stock: usize,
    /// Orders meant to abort for funds.
    pub insufficient_funds: usize,
}

/// Throughput and latency of one phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseStats {
    /// Requests sent.
    pub sent: usize,
    /// Requests that ended (reply consumed, saga ended).
    pub ended: usize,
    /// From the first send to the last end.
    pub seconds: f64,
    /// Ended requests per second.
    pub per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
    /// Mean latency, milliseconds.
    pub mean_ms: f64,
}

/// The saga load against the baseline; `None` when the baseline measured
/// nothing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ratios {
    /// Saga orders/s ÷ baseline commands/s.
    pub throughput: Option<f64>,
    /// Saga p50 ÷ baseline p50.
    pub p50: Option<f64>,
}

/// Everything a run measured and checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BenchReport {
    /// `bootstrap.servers` used.
    pub brokers: String,
    /// Whether the broker was the embedded mock cluster (set by the caller).
    pub embedded_broker: bool,
    /// The topic namespace, if any.
    pub namespace: Option<String>,
    /// Seed of the order mix.
    pub seed: u64,
    /// Orders placed.
    pub orders: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Users created.
    pub users: usize,
    /// Products created.
    pub products: usize,
    /// Stock-failing share requested, percent.
    pub fail_stock_pct: u8,
    /// Funds-failing share requested, percent.
    pub fail_funds_pct: u8,
    /// Users, deposits and products created through Kafka.
    pub setup_commands: usize,
    /// How long the setup took.
    pub setup_seconds: f64,
    /// Single-command round trips (`Deposit` → reply).
    pub baseline: PhaseStats,
    /// Whole sagas (`Place` → `Completed`/`Aborted`).
    pub saga: PhaseStats,
    /// Saga load ÷ baseline: the headline on noisy machines.
    pub ratios: Ratios,
    /// Sagas that completed.
    pub completed: usize,
    /// Sagas that aborted.
    pub aborted: usize,
    /// Aborted sagas by reason.
    pub abort_reasons: BTreeMap<String, usize>,
    /// Orders whose saga did not end before the stall timeout.
    pub unfinished: usize,
    /// The mix the plan asked for.
    pub expected: Expected,
    /// Orders that ended otherwise than planned (e.g. `step_timeout` under
    /// load): reported, not an error.
    pub unexpected_outcomes: usize,
    /// Whether every invariant held across the three stores.
    pub invariants_ok: bool,
    /// Sagas by phase, from the stores.
    pub sagas_by_phase: BTreeMap<String, usize>,
    /// Broken invariants, one sentence each.
    pub violations: Vec<String>,
}

impl BenchReport {
    /// Whether the run is a success: every order ended, every invariant holds.
    pub fn is_ok(&self) -> bool {
        self.unfinished == 0 && self.invariants_ok
    }
}

pub(super) fn report(
    options: &NodeOptions,
    config: &BenchConfig,
    measured: Measured,
    checked: verify::Report,
) -> BenchReport {
    let baseline = measured.baseline.stats();
    let saga = measured.saga.stats();
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let mut completed = 0;
    let mut aborted = 0;
    let mut abort_reasons = BTreeMap::new();
    let mut unexpected = 0;
    for order in &measured.plan.orders {
        let Some(end) = measured.saga.ends.get(&order.order_id.as_uuid()) else {
            continue;
        };
        let reason = match end {
            End::Ok => {
                completed += 1;
                None
            }
            End::Failed(reason) => {
                aborted += 1;
                *abort_reasons.entry(reason.clone()).or_insert(0) += 1;
                Some(reason.as_str())
            }
        };
        if reason != order.expect.abort_reason() {
            unexpected += 1;
        }
    }
    BenchReport {
        brokers: options.kafka.brokers.clone(),
        embedded_broker: false,
        namespace: options.kafka.namespace.clone(),
        seed: config.seed,
        orders: config.orders,
        concurrency: config.concurrency,
        users: config.users,
        products: config.products,
        fail_stock_pct: config.fail_stock_pct,
        fail_funds_pct: config.fail_funds_pct,
        setup_commands: measured.setup_commands,
        setup_seconds: measured.setup.as_secs_f64(),
        ratios: Ratios {
            throughput: ratio(saga.per_sec, baseline.per_sec),
            p50: ratio(saga.p50_ms, baseline.p50_ms),
        },
        baseline,
        saga,
        completed,
        aborted,
        abort_reasons,
        unfinished: measured.saga.unfinished,
        expected: measured.plan.expected,
        unexpected_outcomes: unexpected,
        invariants_ok: checked.is_ok(),
        sagas_by_phase: checked.sagas.into_iter().collect(),
        violations: checked.violations,
    }
}
