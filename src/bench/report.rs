//! What a run measured and checked, and how it is reported.

use super::hops::{hops, Hop, Milestones};
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
    /// Requests that ended (reply or echo consumed, saga ended).
    pub ended: usize,
    /// From the first send to the last end.
    pub seconds: f64,
    /// Ended requests per second.
    pub per_sec: f64,
    /// Send → end.
    pub latency: LatencyStats,
    /// CPU time of the whole bench process (load generator, services, the
    /// embedded broker if any; not an outside broker) during the phase, per
    /// request sent, µs.
    pub cpu_us_per_request: Option<f64>,
    /// That CPU time ÷ the phase's wall time: the cores the process kept
    /// busy. Near the machine's core count the phase is bound by CPU, and
    /// its throughput follows `cpu_us_per_request`.
    pub cores_busy: Option<f64>,
}

/// Records the run's topics received during a level's saga load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Records {
    /// Records of every topic but the heartbeats.
    pub total: u64,
    /// `total` ÷ the level's orders.
    pub per_order: Option<f64>,
    /// Each logical topic's count, the heartbeats included.
    pub by_topic: BTreeMap<String, u64>,
    /// Topics left out of `total`: the heartbeats come every 2 s whatever
    /// the load, so they measure time, not orders.
    pub not_counted: Vec<String>,
}

impl Records {
    fn of(by_topic: BTreeMap<String, u64>, orders: usize) -> Records {
        let not_counted = vec![HEARTBEATS.to_string()];
        let total = by_topic
            .iter()
            .filter(|(topic, _)| !not_counted.contains(topic))
            .map(|(_, n)| n)
            .sum::<u64>();
        Records {
            total,
            per_order: ratio(total as f64, orders as f64),
            by_topic,
            not_counted,
        }
    }
}

/// The saga load against the baselines of the same level; `None` where the
/// divisor measured nothing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ratios {
    /// Saga orders/s ÷ single-command commands/s.
    pub throughput: Option<f64>,
    /// Saga p50 (to the saga's end) ÷ single-command p50.
    pub p50: Option<f64>,
    /// p50 to the order's `Confirmed` ÷ single-command p50.
    pub confirmed_p50: Option<f64>,
    /// Single-command p50 ÷ ping-pong p50: what a service step adds to two
    /// hops through the broker.
    pub baseline_vs_ping_pong_p50: Option<f64>,
    /// Saga orders/s ÷ raw records/s.
    pub saga_vs_raw_throughput: Option<f64>,
    /// CPU per saga ÷ CPU per single command (each over its whole phase):
    /// when both phases keep the cores busy, the throughput ratio cannot
    /// exceed its inverse.
    pub cpu_per_order_vs_command: Option<f64>,
}

/// Percentile curves `(quantile, ms)` of a level, for the charts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Curves {
    /// Place → the order's `Confirmed`.
    pub confirmed: Vec<(f64, f64)>,
    /// Place → the saga's `Completed`/`Aborted`.
    pub finished: Vec<(f64, f64)>,
    /// Single command → its reply.
    pub baseline: Vec<(f64, f64)>,
    /// Ping → its echo.
    pub ping_pong: Vec<(f64, f64)>,
}

/// Everything one concurrency level measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LevelReport {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Orders placed (and baseline commands, raw records, pings sent).
    pub orders: usize,
    /// Raw records produced → consumed, no service in between.
    pub raw: PhaseStats,
    /// Ping → echo through the echo task (two hops).
    pub ping_pong: PhaseStats,
    /// Single-command round trips (`Deposit` → reply).
    pub baseline: PhaseStats,
    /// Whole sagas: `Place` → `Completed`/`Aborted` ("saga finished").
    pub saga: PhaseStats,
    /// `Place` → the order's `Confirmed` ("order confirmed", what a user
    /// waits for), for the orders that were confirmed.
    pub confirmed: LatencyStats,
    /// Records every topic received during the saga load.
    pub records: Records,
    /// The saga against the baselines.
    pub ratios: Ratios,
    /// Sagas that completed.
    pub completed: usize,
    /// Sagas that aborted.
    pub aborted: usize,
    /// Aborted sagas by reason.
    pub abort_reasons: BTreeMap<String, usize>,
    /// Orders whose saga did not end before the stall timeout.
    pub unfinished: usize,
    /// The mix the plan drew for this level's orders.
    pub expected: Expected,
    /// Orders that ended otherwise than planned (e.g. `step_timeout` under
    /// load): reported, not an error.
    pub unexpected_outcomes: usize,
    /// Latency curves for the charts.
    pub curves: Curves,
    /// Where this level's completed sagas spent their time, hop by hop, read
    /// back from the stores ([`super::hops`]).
    pub hops: Vec<Hop>,
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
    /// `--orders`: orders per level (a sweep's levels may place fewer, see
    /// `levels[].orders`).
    pub orders: usize,
    /// `--rounds`: in a sweep, orders per slot of a level.
    pub rounds: usize,
    /// The levels asked for.
    pub concurrency: Vec<usize>,
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
    /// Each level measured, ascending.
    pub levels: Vec<LevelReport>,
    /// Where the saga's throughput stopped growing (see [`knee`]).
    pub knee: Option<Knee>,
    /// The headline ratios.
    pub headline: Headline,
    /// The performance goals, reported and never enforced.
    pub goals: Vec<Goal>,
    /// Orders the plan holds over all levels.
    pub planned_orders: usize,
    /// Sagas that completed, all levels.
    pub completed: usize,
    /// Sagas that aborted, all levels.
    pub aborted: usize,
    /// Aborted sagas by reason, all levels.
    pub abort_reasons: BTreeMap<String, usize>,
    /// Orders whose saga did not end: stalled, or never placed because an
    /// earlier level stalled.
    pub unfinished: usize,
    /// The mix the plan asked for, all levels.
    pub expected: Expected,
    /// Orders that ended otherwise than planned, all levels.
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

fn level_report(
    level: &LevelMeasured,
    plan: &Plan,
    milestones: &HashMap<OrderId, Milestones>,
) -> LevelReport {
    let orders = &plan.orders[level.orders.clone()];
    let level_milestones: HashMap<OrderId, Milestones> = orders
        .iter()
        .filter_map(|order| Some((order.order_id, *milestones.get(&order.order_id)?)))
        .collect();
    let raw = level.raw.stats();
    let ping_pong = level.ping_pong.stats();
    let baseline = level.baseline.stats();
    let saga = level.saga.stats();
    let confirmed = LatencyStats::of(&level.saga.milestones);
    let mut report = LevelReport {
        concurrency: level.concurrency,
        orders: orders.len(),
        ratios: Ratios {
            throughput: ratio(saga.per_sec, baseline.per_sec),
            p50: ratio(saga.latency.p50_ms, baseline.latency.p50_ms),
            confirmed_p50: ratio(confirmed.p50_ms, baseline.latency.p50_ms),
            baseline_vs_ping_pong_p50: ratio(baseline.latency.p50_ms, ping_pong.latency.p50_ms),
            saga_vs_raw_throughput: ratio(saga.per_sec, raw.per_sec),
            cpu_per_order_vs_command: saga
                .cpu_us_per_request
                .zip(baseline.cpu_us_per_request)
                .and_then(|(saga, single)| ratio(saga, single)),
        },
        curves: Curves {
            confirmed: percentile_curve(&level.saga.milestones),
            finished: percentile_curve(&level.saga.latencies),
            baseline: percentile_curve(&level.baseline.latencies),
            ping_pong: percentile_curve(&level.ping_pong.latencies),
        },
        records: Records::of(level.records.clone(), orders.len()),
        unfinished: level.saga.unfinished,
        raw,
        ping_pong,
        baseline,
        saga,
        confirmed,
        hops: hops(&level_milestones),
        ..LevelReport::default()
    };
    for order in orders {
        match order.expect {
            Expect::Complete => report.expected.completed += 1,
            Expect::StockFail => report.expected.insufficient_stock += 1,
            Expect::FundsFail => report.expected.insufficient_funds += 1,
        }
        let Some(end) = level.saga.ends.get(&order.order_id.as_uuid()) else {
            continue;
        };
        let reason = match end {
            End::Ok => {
                report.completed += 1;
                None
            }
            End::Failed(reason) => {
                report.aborted += 1;
                *report.abort_reasons.entry(reason.clone()).or_insert(0) += 1;
                Some(reason.as_str())
            }
        };
        if reason != order.expect.abort_reason() {
            report.unexpected_outcomes += 1;
        }
    }
    report
}

pub(super) fn report(
    options: &NodeOptions,
    config: &BenchConfig,
    measured: Measured,
    checked: verify::Report,
    milestones: &HashMap<OrderId, Milestones>,
) -> BenchReport {
    let levels: Vec<LevelReport> = measured
        .levels
        .iter()
        .map(|level| level_report(level, &measured.plan, milestones))
        .collect();
    let sweep: Vec<(usize, f64)> = levels
        .iter()
        .map(|l| (l.concurrency, l.saga.per_sec))
        .collect();
    let knee = find_knee(&sweep);
    let headline = Headline::of(&levels, knee.as_ref());
    let mut report = BenchReport {
        brokers: options.kafka.brokers.clone(),
        embedded_broker: false,
        namespace: options.kafka.namespace.clone(),
        seed: config.seed,
        orders: config.orders,
        rounds: config.rounds,
        concurrency: config.concurrency.clone(),
        users: config.users,
        products: config.products,
        fail_stock_pct: config.fail_stock_pct,
        fail_funds_pct: config.fail_funds_pct,
        setup_commands: measured.setup_commands,
        setup_seconds: measured.setup.as_secs_f64(),
        goals: headline.goals(),
        headline,
        knee,
        planned_orders: measured.plan.orders.len(),
        expected: measured.plan.expected,
        invariants_ok: checked.is_ok(),
        sagas_by_phase: checked.sagas.into_iter().collect(),
        violations: checked.violations,
        ..BenchReport::default()
    };
    let mut ended = 0;
    for level in &levels {
        report.completed += level.completed;
        report.aborted += level.aborted;
        report.unexpected_outcomes += level.unexpected_outcomes;
        for (reason, n) in &level.abort_reasons {
            *report.abort_reasons.entry(reason.clone()).or_insert(0) += n;
        }
        ended += level.saga.ended;
    }
    // Orders of levels a stall kept from running count as unfinished too.
    report.unfinished = report.planned_orders.saturating_sub(ended);
    report.levels = levels;
    report
}
