//! The headline ratios of a run and the performance goals they are read
//! against. Goals are reported, never enforced: a run fails only for an
//! unfinished order, a missing reply or a broken invariant.

use super::knee::Knee;
use super::latency::ratio;
use super::report::LevelReport;
use serde::Serialize;

/// The numbers a run is summed up by. Each is `None` when the run lacks
/// what it needs (a level that was not measured, a zero divisor).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Headline {
    /// The level the first two ratios are taken at: the knee.
    pub at_concurrency: Option<usize>,
    /// Saga orders/s ÷ single-command commands/s at that level.
    pub saga_vs_command_throughput: Option<f64>,
    /// Saga p50 (to the saga's end) ÷ single-command p50 at that level.
    pub saga_vs_command_p50: Option<f64>,
    /// Saga orders/s at concurrency 256 ÷ at 64 (both must be levels).
    pub saga_growth_64_to_256: Option<f64>,
    /// The lowest level, where the next ratio is taken (the goal asks for 1).
    pub lowest_concurrency: Option<usize>,
    /// Single-command p50 ÷ ping-pong p50 at the lowest level.
    pub command_vs_ping_pong_p50: Option<f64>,
    /// The level with the highest saga throughput.
    pub best_concurrency: Option<usize>,
    /// Its saga orders/s.
    pub best_per_sec: Option<f64>,
    /// Its saga p99 (to the saga's end), milliseconds.
    pub best_p99_ms: Option<f64>,
}

/// One goal and whether this run met it.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    /// What is measured.
    pub name: &'static str,
    /// The goal, as a reader would write it.
    pub target: &'static str,
    /// The measured value.
    pub value: Option<f64>,
    /// Whether the value meets the goal; `None` when it was not measured.
    pub met: Option<bool>,
}

impl Headline {
    /// The headline of `levels` (ascending) with the saga's `knee`.
    pub fn of(levels: &[LevelReport], knee: Option<&Knee>) -> Headline {
        let at = |c: usize| levels.iter().find(|l| l.concurrency == c);
        let knee_level = knee.and_then(|k| at(k.concurrency));
        let lowest = levels.first();
        let best = levels
            .iter()
            .filter(|l| l.saga.ended > 0)
            .max_by(|a, b| a.saga.per_sec.total_cmp(&b.saga.per_sec));
        Headline {
            at_concurrency: knee_level.map(|l| l.concurrency),
            saga_vs_command_throughput: knee_level.and_then(|l| l.ratios.throughput),
            saga_vs_command_p50: knee_level.and_then(|l| l.ratios.p50),
            saga_growth_64_to_256: at(64)
                .zip(at(256))
                .and_then(|(low, high)| ratio(high.saga.per_sec, low.saga.per_sec)),
            lowest_concurrency: lowest.map(|l| l.concurrency),
            command_vs_ping_pong_p50: lowest.and_then(|l| l.ratios.baseline_vs_ping_pong_p50),
            best_concurrency: best.map(|l| l.concurrency),
            best_per_sec: best.map(|l| l.saga.per_sec),
            best_p99_ms: best.map(|l| l.saga.latency.p99_ms),
        }
    }

    /// The performance issue's goals against this headline.
    pub fn goals(&self) -> Vec<Goal> {
        let at_least = |name, target, value: Option<f64>, goal: f64| Goal {
            name,
            target,
            value,
            met: value.map(|v| v >= goal),
        };
        let at_most = |name, target, value: Option<f64>, goal: f64| Goal {
            name,
            target,
            value,
            met: value.map(|v| v <= goal),
        };
        vec![
            at_least(
                "saga_vs_command_throughput",
                ">= 0.35 (at the knee)",
                self.saga_vs_command_throughput,
                0.35,
            ),
            at_most(
                "saga_vs_command_p50",
                "<= 3.5 (at the knee)",
                self.saga_vs_command_p50,
                3.5,
            ),
            at_least(
                "saga_growth_64_to_256",
                ">= 2",
                self.saga_growth_64_to_256,
                2.0,
            ),
            at_most(
                "command_vs_ping_pong_p50",
                "<= 3 (at concurrency 1)",
                self.command_vs_ping_pong_p50
                    .filter(|_| self.lowest_concurrency == Some(1)),
                3.0,
            ),
            Goal {
                name: "best_sweep_level",
                target: ">= 1000 orders/s with p99 < 250 ms (Tansu, memory storage)",
                value: self.best_per_sec,
                met: self
                    .best_per_sec
                    .zip(self.best_p99_ms)
                    .map(|(per_sec, p99)| per_sec >= 1000.0 && p99 < 250.0),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{PhaseStats, Ratios};

    fn level(concurrency: usize, saga_per_sec: f64, p99: f64) -> LevelReport {
        let mut level = LevelReport {
            concurrency,
            saga: PhaseStats {
                ended: 10,
                per_sec: saga_per_sec,
                ..PhaseStats::default()
            },
            ratios: Ratios {
                throughput: Some(saga_per_sec / 1000.0),
                p50: Some(4.0),
                baseline_vs_ping_pong_p50: Some(2.5),
                ..Ratios::default()
            },
            ..LevelReport::default()
        };
        level.saga.latency.p99_ms = p99;
        level
    }

    #[test]
    fn given_a_sweep_when_summed_up_then_ratios_come_from_the_named_levels() {
        let levels = [
            level(1, 50.0, 90.0),
            level(64, 400.0, 150.0),
            level(256, 900.0, 240.0),
            level(1024, 1100.0, 600.0),
        ];
        let knee = Knee {
            concurrency: 256,
            per_sec: 900.0,
            reached: true,
        };
        let h = Headline::of(&levels, Some(&knee));
        assert_eq!(h.at_concurrency, Some(256));
        assert_eq!(h.saga_vs_command_throughput, Some(0.9));
        assert_eq!(h.saga_growth_64_to_256, Some(900.0 / 400.0));
        assert_eq!(h.lowest_concurrency, Some(1));
        assert_eq!(h.best_concurrency, Some(1024));
        assert_eq!(h.best_p99_ms, Some(600.0));
        let goals = h.goals();
        let met = |name: &str| goals.iter().find(|g| g.name == name).unwrap().met;
        assert_eq!(met("saga_vs_command_throughput"), Some(true));
        assert_eq!(met("saga_vs_command_p50"), Some(false), "4.0 > 3.5");
        assert_eq!(met("saga_growth_64_to_256"), Some(true));
        assert_eq!(met("command_vs_ping_pong_p50"), Some(true));
        assert_eq!(met("best_sweep_level"), Some(false), "p99 600 ms");
    }

    #[test]
    fn given_missing_levels_when_summed_up_then_their_goals_are_not_measured() {
        let h = Headline::of(&[level(16, 100.0, 50.0)], None);
        assert_eq!(h.at_concurrency, None);
        assert_eq!(h.saga_growth_64_to_256, None);
        let goals = h.goals();
        let met = |name: &str| goals.iter().find(|g| g.name == name).unwrap().met;
        assert_eq!(met("saga_growth_64_to_256"), None);
        assert_eq!(
            met("command_vs_ping_pong_p50"),
            None,
            "the goal is at concurrency 1"
        );
        assert_eq!(met("best_sweep_level"), Some(false));
    }
}
