//! The statistics the analysis stands on: a fixed-bucket latency histogram,
//! the Wilson score bound of a ratio, and confidence ranks of a quantile.
//!
//! # Latency histogram
//!
//! Buckets grow by 2^(1/4) (≈ 19 %) from 0.5 ms to about 2 minutes, plus
//! one overflow bucket: [`BUCKETS`] in all. A quantile read from it is the
//! upper bound of the bucket holding the wanted rank, so it overstates by
//! less than 19 %; both tracks are read the same way, so a ratio of two
//! quantiles is off by at most one bucket (a factor 1.19) either way, well
//! inside any sensible `max_p95_ratio` (1.5 by default). The bounds fall on
//! powers of two every fourth bucket, which is what the Prometheus
//! exposition uses (cumulative counts there are exact).

/// Number of buckets, overflow included.
pub const BUCKETS: usize = 73;

/// Upper bound of bucket `i` in microseconds (`u64::MAX` for the overflow).
pub fn bucket_upper_us(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        return u64::MAX;
    }
    // 500 µs × 2^(i/4), rounded up to whole microseconds.
    let v = 500.0 * 2f64.powf(i as f64 / 4.0);
    v.ceil() as u64
}

/// The bucket a latency falls in.
pub fn bucket_of(us: u64) -> usize {
    if us <= 500 {
        return 0;
    }
    let i = (4.0 * (us as f64 / 500.0).log2()).ceil() as usize;
    // Float rounding at a bound: settle against the integer bounds.
    let mut i = i.min(BUCKETS - 1);
    while i > 0 && us <= bucket_upper_us(i - 1) {
        i -= 1;
    }
    while us > bucket_upper_us(i) {
        i += 1;
    }
    i
}

/// Counts of latencies per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
        }
    }
}

impl LatencyHistogram {
    /// From per-bucket counts (e.g. the shell's atomics).
    pub fn from_counts(counts: [u64; BUCKETS]) -> Self {
        Self { counts }
    }

    /// Adds one latency.
    pub fn record_us(&mut self, us: u64) {
        self.counts[bucket_of(us)] += 1;
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Per-bucket counts.
    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// The latency (bucket upper bound, µs) at 1-based `rank` in sorted
    /// order; `None` when empty. Ranks past the count read the largest.
    pub fn at_rank(&self, rank: u64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = rank.clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_upper_us(i));
            }
        }
        None
    }

    /// The `q` quantile (0 < q < 1), the nearest-rank definition.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let n = self.count();
        self.at_rank((q * n as f64).ceil() as u64)
    }
}

/// Lower bound of the Wilson score interval of a ratio `k / n` at `z`
/// standard deviations (one-sided). 0 when `n` is 0.
///
/// Why Wilson: the plain normal interval `p ± z√(p(1−p)/n)` collapses to a
/// width of zero when no or few errors were seen and is badly off for small
/// `p`, which is exactly the regime of an error ratio; Wilson's stays
/// honest there (Brown, Cai, DasGupta 2001, "Interval Estimation for a
/// Binomial Proportion").
pub fn wilson_lower(k: u64, n: u64, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n_f = n as f64;
    let p = k as f64 / n_f;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n_f);
    let margin = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    ((centre - margin) / (1.0 + z2 / n_f)).max(0.0)
}

/// 1-based ranks bounding the `q` quantile of `n` samples with confidence
/// `z` (one-sided each): the number of samples below the true quantile is
/// Binomial(n, q), approximated by a normal, so the true quantile lies
/// between the order statistics at `nq ∓ z√(nq(1−q))`.
pub fn quantile_ranks(n: u64, q: f64, z: f64) -> (u64, u64) {
    let n_f = n as f64;
    let mid = n_f * q;
    let spread = z * (n_f * q * (1.0 - q)).sqrt();
    let low = (mid - spread).floor().max(1.0) as u64;
    let high = ((mid + spread).ceil() + 1.0).min(n_f.max(1.0)) as u64;
    (low.min(n.max(1)), high)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_cover_half_a_millisecond_to_two_minutes() {
        assert_eq!(bucket_upper_us(0), 500);
        assert_eq!(bucket_upper_us(4), 1000);
        assert_eq!(bucket_upper_us(8), 2000);
        assert!(bucket_upper_us(BUCKETS - 2) > 100_000_000, "past 100 s");
        assert_eq!(bucket_upper_us(BUCKETS - 1), u64::MAX);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(500), 0);
        assert_eq!(bucket_of(501), 1);
        assert_eq!(bucket_of(1000), 4);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_read_the_bucket_bound() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=100u64 {
            h.record_us(ms * 1000);
        }
        let p95 = h.quantile_us(0.95).unwrap();
        assert!((95_000..=95_000 * 119 / 100).contains(&p95), "{p95}");
        assert_eq!(LatencyHistogram::default().quantile_us(0.95), None);
    }

    #[test]
    fn wilson_bounds() {
        assert_eq!(wilson_lower(0, 0, 3.0), 0.0);
        assert_eq!(wilson_lower(0, 1000, 3.0), 0.0);
        // 10 errors in 200 (5 %): the ratio is above 1 % with z = 3.
        let lo = wilson_lower(10, 200, 3.0);
        assert!(lo > 0.01 && lo < 0.05, "{lo}");
        // 2 in 200 (1 %): not shown to be above 1 %.
        assert!(wilson_lower(2, 200, 3.0) < 0.01);
    }

    #[test]
    fn quantile_rank_bounds() {
        let (lo, hi) = quantile_ranks(200, 0.95, 3.0);
        assert!(lo < 190 && hi > 190 && hi <= 200, "{lo} {hi}");
        assert_eq!(quantile_ranks(1, 0.95, 3.0), (1, 1));
    }

    proptest! {
        #[test]
        fn every_latency_lands_in_its_bucket(us in any::<u64>()) {
            let i = bucket_of(us);
            prop_assert!(us <= bucket_upper_us(i));
            prop_assert!(i == 0 || us > bucket_upper_us(i - 1));
        }

        #[test]
        fn wilson_lower_is_below_the_ratio(k in 0u64..1000, extra in 0u64..1000, z in 0.5f64..4.0) {
            let n = k + extra;
            prop_assume!(n > 0);
            let lo = wilson_lower(k, n, z);
            prop_assert!(lo >= 0.0 && lo <= k as f64 / n as f64 + 1e-12);
        }
    }
}
