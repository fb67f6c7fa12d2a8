//! Latency percentiles from HdrHistogram, and the percentile curve the
//! charts draw.

use super::BenchError;
use hdrhistogram::Histogram;
use serde::Serialize;

/// A histogram of latencies in microseconds: 1 µs to one hour at 3
/// significant digits; slower values saturate at the top.
pub fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Ok(Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?)
}

/// Records `elapsed` into `histogram`, saturating instead of failing.
pub fn record(histogram: &mut Histogram<u64>, elapsed: std::time::Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// Percentiles of one latency histogram, in milliseconds; all zero when it
/// holds nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStats {
    /// How many latencies were recorded.
    pub count: u64,
    /// Median.
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
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl LatencyStats {
    /// The percentiles of `h` (microseconds).
    pub fn of(h: &Histogram<u64>) -> LatencyStats {
        if h.is_empty() {
            return LatencyStats::default();
        }
        LatencyStats {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The quantiles a percentile curve is drawn through: 0 to 99.99 % with
/// more points towards the tail, where the interesting part is.
pub const CURVE_QUANTILES: [f64; 14] = [
    0.0, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// Points `(quantile, latency ms)` of `h` at [`CURVE_QUANTILES`]; empty for
/// an empty histogram.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_QUANTILES
        .iter()
        .map(|&q| (q, ms(h.value_at_quantile(q))))
        .collect()
}

/// `a ÷ b`, or `None` when `b` is not a positive number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn histogram_of_millis(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = new_histogram().unwrap();
        for v in values {
            record(&mut h, Duration::from_millis(v));
        }
        h
    }

    /// Within HdrHistogram's 3 significant digits.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.001 + 1e-9
    }

    #[test]
    fn given_1_to_1000_ms_when_summarised_then_percentiles_are_the_ranks() {
        let stats = LatencyStats::of(&histogram_of_millis(1..=1000));
        assert_eq!(stats.count, 1000);
        assert!(close(stats.p50_ms, 500.0), "{stats:?}");
        assert!(close(stats.p90_ms, 900.0), "{stats:?}");
        assert!(close(stats.p99_ms, 990.0), "{stats:?}");
        assert!(close(stats.p999_ms, 999.0), "{stats:?}");
        assert!(close(stats.max_ms, 1000.0), "{stats:?}");
        assert!(close(stats.mean_ms, 500.5), "{stats:?}");
    }

    #[test]
    fn given_one_slow_outlier_when_summarised_then_only_the_tail_sees_it() {
        let stats = LatencyStats::of(&histogram_of_millis(
            std::iter::repeat_n(10, 999).chain([5_000]),
        ));
        assert!(
            close(stats.p50_ms, 10.0) && close(stats.p99_ms, 10.0),
            "{stats:?}"
        );
        assert!(close(stats.max_ms, 5_000.0), "{stats:?}");
        assert!(
            close(stats.p999_ms, 10.0),
            "p99.9 of 1000 is the 999th: {stats:?}"
        );
    }

    #[test]
    fn given_nothing_recorded_when_summarised_then_every_number_is_zero() {
        let h = new_histogram().unwrap();
        assert_eq!(LatencyStats::of(&h), LatencyStats::default());
        assert!(percentile_curve(&h).is_empty());
    }

    #[test]
    fn given_more_than_an_hour_when_recorded_then_it_saturates_instead_of_failing() {
        let mut h = new_histogram().unwrap();
        record(&mut h, Duration::from_secs(10 * 3600));
        assert_eq!(h.len(), 1);
        assert!(LatencyStats::of(&h).max_ms >= 3_600_000.0 * 0.999);
    }

    #[test]
    fn given_latencies_when_curved_then_points_ascend_in_both_axes() {
        let curve = percentile_curve(&histogram_of_millis((1..=500).map(|v| v * 3)));
        assert_eq!(curve.len(), CURVE_QUANTILES.len());
        for pair in curve.windows(2) {
            assert!(pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1, "{curve:?}");
        }
    }

    #[test]
    fn given_a_zero_divisor_when_divided_then_there_is_no_ratio() {
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(f64::NAN, 2.0), None);
    }
}
