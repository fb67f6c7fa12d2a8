//! What an actors bench run measured and checked.

use super::load::Tally;
use serde::Serialize;

/// The throughput goal of the actors against the journal alone: their
/// commands/s at least this fraction of the journal-only appends/s.
pub const GOAL: f64 = 0.7;

/// One closed-loop phase of the load comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadPhase {
    /// `baseline`, `actors` or `baseline_end`.
    pub phase: String,
    /// Commands (or appends) sent.
    pub commands: usize,
    /// Commands answered, whatever the answer.
    pub answered: usize,
    /// Accepted commands (durable appends, for the baseline).
    pub accepted: usize,
    /// Rejected commands (none expected: a restock is always accepted).
    pub rejected: usize,
    /// Commands answered with an error (none expected).
    pub failed: usize,
    /// Times a command was refused by a full mailbox and sent again.
    pub overload_retries: usize,
    /// The first rejection or error, if any.
    pub first_error: Option<String>,
    /// From the first send to the last answer.
    pub seconds: f64,
    /// Answered commands per second.
    pub per_sec: f64,
    /// Latency percentiles and extremes, milliseconds: send to answer.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// The journal's durable flushes during the phase.
    pub flushes: u64,
    /// Batches the journal committed during the phase.
    pub commits: u64,
    /// Batches per flush: how much group commit the phase got.
    pub commits_per_flush: f64,
}

impl LoadPhase {
    pub(super) fn new(
        phase: &str,
        commands: usize,
        seconds: f64,
        tally: Tally,
        flushes: u64,
        commits: u64,
    ) -> Self {
        let h = &tally.latencies;
        let ms = |micros: u64| micros as f64 / 1000.0;
        let answered = tally.accepted + tally.rejected + tally.failed;
        Self {
            phase: phase.to_string(),
            commands,
            answered,
            accepted: tally.accepted,
            rejected: tally.rejected,
            failed: tally.failed,
            overload_retries: tally.retries,
            first_error: tally.first_error,
            seconds,
            per_sec: if seconds > 0.0 {
                answered as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
            flushes,
            commits,
            commits_per_flush: if flushes > 0 {
                commits as f64 / flushes as f64
            } else {
                0.0
            },
        }
    }
}

/// One pass of the passivation phase over every touched aggregate.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TouchPass {
    /// `create` (a new, empty stream per aggregate), `journal` (cold starts
    /// that replay the stream, no snapshot yet) or `snapshot` (cold starts
    /// from a snapshot).
    pub pass: String,
    /// Aggregates touched.
    pub aggregates: usize,
    /// Commands sent (the `journal` pass sends two per aggregate: a cold
    /// one, then one to the live entity that takes the snapshot).
    pub commands: usize,
    /// Commands accepted.
    pub accepted: usize,
    /// Commands rejected or failed.
    pub failed: usize,
    /// The first rejection or error, if any.
    pub first_error: Option<String>,
    /// Entities the router recovered during the pass (cold starts).
    pub cold_starts: u64,
    /// How long the pass took.
    pub seconds: f64,
    /// Cold starts per second (each with its command's durable append).
    pub cold_starts_per_sec: f64,
    /// Latency of the cold command (recovery, decide, append), milliseconds.
    pub cold_p50_ms: f64,
    /// 99th percentile of the same.
    pub cold_p99_ms: f64,
    /// Slowest.
    pub cold_max_ms: f64,
    /// Entities passivated during the pass.
    pub passivations: u64,
}

/// Resident memory and live entities at a point of a pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Checkpoint {
    /// The pass.
    pub pass: String,
    /// How far through the pass, percent of its aggregates.
    pub percent: u8,
    /// Aggregates of the pass touched so far.
    pub touched: usize,
    /// Distinct aggregates in the store so far.
    pub aggregates_stored: usize,
    /// Resident set, MiB (`/proc/self/statm`).
    pub rss_mib: f64,
    /// Entities in memory (the router's count).
    pub live_entities: usize,
}

/// The passivation phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassivationReport {
    /// Distinct aggregates touched.
    pub touched: usize,
    /// The router's limit on entities in memory.
    pub max_entities: usize,
    /// Snapshot interval of the phase's service, events.
    pub snapshot_every: u64,
    /// The passes, in order.
    pub passes: Vec<TouchPass>,
    /// Memory and entities at 10 %, 50 % and 100 % of each pass.
    pub checkpoints: Vec<Checkpoint>,
    /// Resident set before the phase started, MiB.
    pub rss_start_mib: f64,
    /// Highest resident set sampled during the phase (every 50 ms), MiB.
    pub rss_peak_mib: f64,
    /// Resident set when the phase ended, MiB.
    pub rss_end_mib: f64,
    /// Entities in memory when the phase ended.
    pub live_entities_end: usize,
    /// Most entities in memory in any sample (every 100 ms and at each
    /// checkpoint).
    pub live_entities_max: usize,
    /// Entities passivated during the phase.
    pub passivations: u64,
    /// Aggregates checked for a snapshot before the `snapshot` pass.
    pub snapshots_checked: usize,
    /// Of those, how many had one.
    pub snapshots_found: usize,
}

/// The stock check on the stores afterwards.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StockCheck {
    /// Products of the load phase replayed from the store and compared
    /// with the restocks the bench saw accepted (all of them).
    pub load_checked: usize,
    /// Products of the passivation phase replayed and compared (an even
    /// sample, at most [`super::TOUCH_CHECK_SAMPLE`]).
    pub touch_checked: usize,
    /// Every difference, one sentence each.
    pub violations: Vec<String>,
}

/// Everything an actors bench run measured and checked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ActorsBenchReport {
    /// Seed of the draws and the ids.
    pub seed: u64,
    /// Products of the load phase.
    pub aggregates: usize,
    /// Zipf exponent of the draws (0: uniform).
    pub skew: f64,
    /// Share of the load that goes to the hottest product.
    pub hottest_share: f64,
    /// Commands (and appends) in flight at once.
    pub concurrency: usize,
    /// Commands per load phase.
    pub commands: usize,
    /// Encoding of the events-topic copy in the outbox (both sides).
    pub event_format: String,
    /// Products created before the load (not measured), and how long it took.
    pub setup_products: usize,
    /// Seconds the setup took.
    pub setup_seconds: f64,
    /// The journal-only appends before the actors.
    pub baseline: LoadPhase,
    /// The actors.
    pub actors: LoadPhase,
    /// The journal-only appends again, after the actors.
    pub baseline_end: LoadPhase,
    /// The mean of the two baselines' appends/s: what the ratio divides by.
    pub baseline_per_sec: f64,
    /// The closing baseline's appends/s ÷ the opening one's: how steady the
    /// machine was.
    pub baseline_drift: Option<f64>,
    /// Actors' commands/s ÷ [`ActorsBenchReport::baseline_per_sec`]: the
    /// headline.
    pub ratio: Option<f64>,
    /// The goal for [`ActorsBenchReport::ratio`].
    pub goal: f64,
    /// Whether the ratio reaches the goal (reported, never enforced).
    pub meets_goal: Option<bool>,
    /// The passivation phase, unless skipped (`--touch 0`).
    pub passivation: Option<PassivationReport>,
    /// The stock check.
    pub stock: StockCheck,
    /// Every command of every phase answered, none failed or rejected.
    pub all_answered: bool,
}

impl ActorsBenchReport {
    /// Fills in the ratios from the three load phases.
    pub(super) fn compare(&mut self) {
        let (open, close) = (self.baseline.per_sec, self.baseline_end.per_sec);
        self.baseline_per_sec = (open + close) / 2.0;
        self.baseline_drift = (open > 0.0).then(|| close / open);
        self.ratio =
            (self.baseline_per_sec > 0.0).then(|| self.actors.per_sec / self.baseline_per_sec);
        self.goal = GOAL;
        self.meets_goal = self.ratio.map(|r| r >= GOAL);
    }
}
