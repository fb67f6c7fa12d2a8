//! A seeded random source and a Zipf-like sampler over the aggregates.
//!
//! Written here rather than taken from a crate: the package depends on no
//! random-number crate (`uuid` draws its v4 ids from the OS, proptest is a
//! test dependency), and what the bench needs is small and must be
//! reproducible from one seed: SplitMix64 (Steele, Lea and Flood, 2014;
//! the generator Java's `SplittableRandom` uses) and an inverse-CDF Zipf
//! sampler over a table of cumulative weights.

/// SplitMix64: 64 bits of state, full period, good enough statistics for a
/// load generator, and the same sequence for the same seed everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A uniform number in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's output function: a bijection of 64-bit words that spreads
/// nearby inputs apart. Also what turns `(seed, index)` into an aggregate id.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draws indexes `0..n` with probability proportional to `1 / (i + 1)^s`:
/// index 0 is the hottest aggregate. `s = 0` is uniform.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// Cumulative weights, normalised so the last is 1; empty when uniform.
    cdf: Vec<f64>,
    n: usize,
}

impl Zipf {
    /// A sampler over `n` (at least 1) indexes with exponent `s` (finite, at
    /// least 0). The table costs 8 bytes per index, built once.
    pub fn new(n: usize, s: f64) -> Result<Self, String> {
        if n == 0 {
            return Err("a Zipf sampler needs at least one index".into());
        }
        if !s.is_finite() || s < 0.0 {
            return Err(format!(
                "a Zipf exponent must be finite and at least 0, not {s}"
            ));
        }
        if s == 0.0 {
            return Ok(Self { cdf: Vec::new(), n });
        }
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += (rank as f64).powf(-s);
            cdf.push(total);
        }
        for weight in &mut cdf {
            *weight /= total;
        }
        Ok(Self { cdf, n })
    }

    /// One index drawn from `rng`.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        if self.cdf.is_empty() {
            return ((u * self.n as f64) as usize).min(self.n - 1);
        }
        self.cdf.partition_point(|&c| c <= u).min(self.n - 1)
    }

    /// The probability of index `i` (what the hottest aggregate's share of
    /// the load is, for the report).
    pub fn probability(&self, i: usize) -> f64 {
        if i >= self.n {
            return 0.0;
        }
        if self.cdf.is_empty() {
            return 1.0 / self.n as f64;
        }
        let below = if i == 0 { 0.0 } else { self.cdf[i - 1] };
        self.cdf[i] - below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut c = SplitMix64::new(8);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..5).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn uniform_draws_cover_every_index_evenly() {
        let zipf = Zipf::new(10, 0.0).unwrap();
        let mut rng = SplitMix64::new(1);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn skewed_draws_follow_the_weights() {
        let zipf = Zipf::new(100, 1.0).unwrap();
        let mut rng = SplitMix64::new(2);
        let mut counts = vec![0usize; 100];
        let draws = 200_000;
        for _ in 0..draws {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // Index 0 has weight 1/H(100) ≈ 0.193, index 1 half of that.
        let share0 = counts[0] as f64 / draws as f64;
        assert!((share0 - zipf.probability(0)).abs() < 0.01, "{share0}");
        assert!((zipf.probability(0) - 0.1928).abs() < 0.001);
        assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
        let total: f64 = (0..100).map(|i| zipf.probability(i)).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(5, -1.0).is_err());
        assert!(Zipf::new(5, f64::NAN).is_err());
    }
}
