//! The knee of a concurrency sweep: the level past which more orders in
//! flight stop buying throughput and only add waiting.

use serde::Serialize;

/// A level counts as growing when its throughput is at least this many times
/// the level before it: below 10 % the extra concurrency buys little next to
/// the noise of a shared machine, while latency (by Little's law, in flight ÷
/// throughput) grows almost in proportion to the concurrency.
pub const MATERIAL_GROWTH: f64 = 1.1;

/// Where throughput stopped growing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Knee {
    /// The knee's concurrency.
    pub concurrency: usize,
    /// Its throughput, per second.
    pub per_sec: f64,
    /// Whether a higher level was measured and grew by less than
    /// [`MATERIAL_GROWTH`]: when false, throughput still grew at the highest
    /// level, and the knee lies at or beyond it (the sweep did not reach it).
    pub reached: bool,
}

/// Finds the knee of levels given as `(concurrency, throughput)` in
/// ascending concurrency: walking up from the lowest level, the last level
/// whose throughput is at least [`MATERIAL_GROWTH`] × the one before it, up
/// to the first level that is not. The lowest level has nothing before it
/// and always qualifies. A level after a flat one that grows again does not
/// move the knee: the curve has flattened once, and that is where
/// concurrency stopped paying. `None` for no levels.
pub fn find_knee(levels: &[(usize, f64)]) -> Option<Knee> {
    let (&(first_c, first_t), rest) = levels.split_first()?;
    let mut knee = Knee {
        concurrency: first_c,
        per_sec: first_t,
        reached: false,
    };
    for &(concurrency, per_sec) in rest {
        if grew(knee.per_sec, per_sec) {
            knee.concurrency = concurrency;
            knee.per_sec = per_sec;
        } else {
            knee.reached = true;
            break;
        }
    }
    Some(knee)
}

/// Whether `to` is at least [`MATERIAL_GROWTH`] × `from`, exactly at the
/// threshold included (110 after 100 counts, whatever the rounding of
/// 100 × 1.1).
fn grew(from: f64, to: f64) -> bool {
    if from <= 0.0 {
        return to > 0.0;
    }
    to / from >= MATERIAL_GROWTH - 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_no_levels_when_searched_then_there_is_no_knee() {
        assert_eq!(find_knee(&[]), None);
    }

    #[test]
    fn given_one_level_when_searched_then_it_is_the_knee_not_reached() {
        let knee = find_knee(&[(64, 500.0)]).unwrap();
        assert_eq!((knee.concurrency, knee.reached), (64, false));
    }

    #[test]
    fn given_throughput_that_flattens_when_searched_then_the_knee_is_the_last_growing_level() {
        let levels = [
            (1, 10.0),
            (16, 150.0),
            (64, 400.0),
            (256, 420.0),
            (1024, 410.0),
        ];
        let knee = find_knee(&levels).unwrap();
        assert_eq!(knee.concurrency, 64);
        assert_eq!(knee.per_sec, 400.0);
        assert!(knee.reached);
    }

    #[test]
    fn given_growth_just_below_the_threshold_when_searched_then_it_does_not_count() {
        let knee = find_knee(&[(1, 100.0), (2, 109.9)]).unwrap();
        assert_eq!((knee.concurrency, knee.reached), (1, true));
        let knee = find_knee(&[(1, 100.0), (2, 110.0)]).unwrap();
        assert_eq!((knee.concurrency, knee.reached), (2, false));
    }

    #[test]
    fn given_throughput_still_growing_at_the_top_when_searched_then_the_knee_is_not_reached() {
        let knee = find_knee(&[(1, 10.0), (16, 100.0), (64, 300.0)]).unwrap();
        assert_eq!((knee.concurrency, knee.reached), (64, false));
    }

    #[test]
    fn given_a_dip_then_growth_when_searched_then_the_first_flat_step_ends_the_walk() {
        let knee = find_knee(&[(1, 10.0), (16, 100.0), (64, 90.0), (256, 300.0)]).unwrap();
        assert_eq!((knee.concurrency, knee.reached), (16, true));
    }

    #[test]
    fn given_zero_throughput_when_searched_then_nothing_counts_as_growth() {
        let knee = find_knee(&[(1, 0.0), (16, 0.0)]).unwrap();
        assert_eq!((knee.concurrency, knee.reached), (1, true));
    }
}
