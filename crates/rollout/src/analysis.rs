//! The judgement of a canary: figures in, verdict and reason out.
//!
//! # What is counted
//!
//! Per track, requests that reached the track's PHP since the current step
//! began (cache hits say nothing about the release and do not count; the
//! shell resets the figures when the step changes): how many, how many
//! answered 5xx (except the 503s the edge itself answers when a pool's queue
//! is full: shedding is about capacity, not the release), and a latency
//! histogram ([`crate::stats`]).
//!
//! # The window: since the step began
//!
//! A step's figures grow for as long as the step lasts, and each analysis
//! interval judges all of them. A longer window gives a smaller error on
//! every estimate (it shrinks as 1/√n), and the step is the unit that
//! matters: the weight, hence the mix of visitors on each track, is fixed
//! within it. Stable's figures cover the same wall-clock window, so both
//! tracks see the same catalogue, cache state and load.
//!
//! # The minimum sample, and why 200 by default
//!
//! No judgement is made before the canary has `min_requests` requests in
//! the step. With zero errors in n requests, the 95 % upper bound of the
//! error ratio is about 3/n (the "rule of three"), so n = 300 is where
//! "no error seen" starts to mean "below 1 %"; and the p95 of n samples
//! rests on its n/20 slowest: 10 of 200. Below about 200 a canary cannot be
//! told apart from stable on either figure with any confidence, and a
//! judgement would be a coin toss that aborts good releases at low traffic.
//! The minimum is a config value because the right one depends on the
//! threshold: to tell a ratio p from the threshold p₀ takes roughly
//! n ≈ z²·p(1−p)/(p−p₀)², e.g. a 5 % canary against a 1 % threshold needs
//! about 30 requests at z = 3, a 2 % one about 200.
//!
//! # Confidence, and why z = 3
//!
//! A canary fails only when its figures are past the threshold *with
//! confidence*: the lower bound of the Wilson interval of its 5xx ratio is
//! above `max_error_ratio`, or the lower confidence rank of its p95 is
//! above `max_p95_ratio` × the upper confidence rank of stable's. The same
//! growing window is judged every interval (sequential looks), which raises
//! the chance that noise crosses a bound at some look; z = 3 (0.13 % per
//! look, one-sided) keeps a 5-minute step judged every 10 s (30 looks, a
//! Bonferroni bound of 4 %) from aborting a release that is exactly at the
//! threshold, while a clearly bad canary (5 % errors against 1 %) fails at
//! the first look after 200 requests.
//!
//! The error ratio is also compared with stable's: when stable fails as
//! much, the cause is not the release (a database down), and the verdict is
//! to wait, not to abort.
//!
//! # Early abort: gross failures before the minimum sample
//!
//! The minimum sample costs time at low traffic: 200 canary requests at a
//! 10 % step of 50 requests/s take 40 s. A canary that answers a fifth of
//! its requests with 500 should not get them. So before the minimum sample
//! one rule, and only one, may still judge, and only towards an abort
//! ([`early_abort`]): the canary has at least [`EARLY_MIN_ERRORS`] errors
//! *and* the lower Wilson bound of its 5xx ratio at z = 3 is above
//! [`EARLY_MARGIN`] × `max_error_ratio`. Advancing, promotion and every
//! latency judgement still wait for `min_requests`.
//!
//! The false-abort probability of a healthy canary is computed exactly, not
//! estimated: errors arrive as Bernoulli(p₀) per request, and the rule is
//! evaluated after *every* request (the edge looks less often, four times a
//! second, which can only lower it). A dynamic programme over (requests,
//! errors) with the rule as an absorbing barrier gives the probability that
//! a canary failing exactly `max_error_ratio` of its requests is ever
//! aborted early, over the whole window before the minimum sample
//! (test `false_early_abort_is_rare_at_the_threshold`):
//!
//! | `max_error_ratio` | `min_requests` 200 | 1000 | 3000 |
//! |---|---|---|---|
//! | 0.1 % | 0.6·10⁻⁴ | 4.7·10⁻⁴ | 4.8·10⁻⁴ |
//! | 1 %   | 4.1·10⁻⁴ | 4.1·10⁻⁴ | 4.1·10⁻⁴ |
//! | 5 %   | 2.4·10⁻⁴ | 2.4·10⁻⁴ | 2.4·10⁻⁴ |
//!
//! It stays under 5·10⁻⁴ whatever the window, because the barrier asks for
//! three times the threshold: the longer the window, the further a healthy
//! canary's ratio is from it. (A canary *better* than the threshold is
//! aborted less often still; above `max_error_ratio` = 1/3 the early rule
//! can never fire.)
//!
//! What it buys, at a 1 % threshold (requests counted on the canary):
//! at 4 errors the rule fires up to the 33rd request, at 5 the 48th, at 6
//! the 63rd, at 8 the 97th. A canary failing 20 % of its requests is
//! aborted after about 19 of them (median; 14 after its first error), one
//! failing 10 % after about 43 (97 % of runs), one failing 50 % after
//! about 8. A canary failing 5 % is *not* gross: it is
//! aborted early in about a third of the runs (median 74 requests), else at
//! the minimum sample as before. No rule can do much better there: telling
//! 5 % from 1 % takes, for the optimal sequential test (Wald's SPRT) at a
//! 10⁻³ false-abort rate, about ln(1000) / (0.05·ln 5 − 0.95·ln(0.99/0.95))
//! ≈ 170 canary requests on average; the early rule is for the failures
//! that shout.

use crate::stats::{quantile_ranks, wilson_lower, LatencyHistogram};

/// Standard deviations of every confidence bound used here (see the module docs).
pub const Z: f64 = 3.0;

/// Fewest canary errors for an early abort (module docs).
pub const EARLY_MIN_ERRORS: u64 = 4;

/// An early abort asks for the error ratio to be above this multiple of
/// `max_error_ratio` with confidence (module docs).
pub const EARLY_MARGIN: f64 = 3.0;

/// The early-abort rule: before the minimum sample, `errors` of `requests`
/// canary answers are overwhelming evidence that the canary fails more than
/// `max_error_ratio` (module docs: the false-abort probability of a canary
/// at the threshold stays under 5·10⁻⁴ over the whole window).
pub fn early_abort(errors: u64, requests: u64, max_error_ratio: f64) -> bool {
    errors >= EARLY_MIN_ERRORS && wilson_lower(errors, requests, Z) > EARLY_MARGIN * max_error_ratio
}

/// The judgement thresholds (`[rollout]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Canary requests in the step before any judgement.
    pub min_requests: u64,
    /// Largest canary 5xx ratio (0–1).
    pub max_error_ratio: f64,
    /// Largest canary p95 / stable p95.
    pub max_p95_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_requests: 200,
            max_error_ratio: 0.01,
            max_p95_ratio: 1.5,
        }
    }
}

/// One track's figures over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackWindow {
    /// Requests that reached the track's PHP.
    pub requests: u64,
    /// Of them, answered 5xx (not the edge's own shedding).
    pub errors: u64,
    /// Their latencies.
    pub latency: LatencyHistogram,
}

impl TrackWindow {
    /// The 5xx ratio, 0 without requests.
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The p95 in µs (bucket bound), `None` without requests.
    pub fn p95_us(&self) -> Option<u64> {
        self.latency.quantile_us(0.95)
    }
}

/// What the judgement says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy on every figure: the step may advance once its pause is over.
    Healthy,
    /// No verdict yet (sample too small, or both tracks failing alike).
    Wait,
    /// Worse than allowed: abort.
    Fail,
}

/// Why, as a bounded label (metrics) beside the sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// Figures within bounds.
    Healthy,
    /// Fewer canary requests than `min_requests`.
    MinSample,
    /// Canary 5xx ratio above `max_error_ratio`.
    ErrorRatio,
    /// Canary 5xx ratio far above `max_error_ratio` before the minimum
    /// sample ([`early_abort`]).
    EarlyErrorRatio,
    /// Canary p95 above `max_p95_ratio` × stable's.
    P95Ratio,
    /// Both tracks fail alike.
    BothFailing,
}

impl ReasonCode {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Healthy => "healthy",
            ReasonCode::MinSample => "min_sample",
            ReasonCode::ErrorRatio => "error_ratio",
            ReasonCode::EarlyErrorRatio => "error_ratio_early",
            ReasonCode::P95Ratio => "p95_ratio",
            ReasonCode::BothFailing => "both_failing",
        }
    }
}

/// A verdict with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// Its label.
    pub code: ReasonCode,
    /// A sentence for people (log, `/rollout`).
    pub reason: String,
    /// Stable's p95 (µs) when its sample is large enough to serve later as
    /// the baseline (at 100 % stable gets no traffic to compare with).
    pub stable_p95_us: Option<u64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Judges the canary against stable over the same window (module docs).
/// `baseline_p95_us` is stable's p95 from an earlier step, used when stable
/// has too few requests in this one.
pub fn judge(
    canary: &TrackWindow,
    stable: &TrackWindow,
    baseline_p95_us: Option<u64>,
    t: &Thresholds,
) -> Judgement {
    let stable_enough = stable.latency.count() >= t.min_requests.max(1);
    let stable_p95_us = stable_enough.then(|| stable.p95_us()).flatten();
    let judgement = |verdict, code, reason| Judgement {
        verdict,
        code,
        reason,
        stable_p95_us,
    };
    let ratio = canary.error_ratio();
    if canary.requests < t.min_requests {
        if early_abort(canary.errors, canary.requests, t.max_error_ratio) {
            if ratio <= stable.error_ratio() {
                return judgement(
                    Verdict::Wait,
                    ReasonCode::BothFailing,
                    format!(
                        "both tracks fail alike (canary 5xx {:.2}%, stable {:.2}%): not the release; holding",
                        ratio * 100.0,
                        stable.error_ratio() * 100.0
                    ),
                );
            }
            return judgement(
                Verdict::Fail,
                ReasonCode::EarlyErrorRatio,
                format!(
                    "canary 5xx ratio {:.2}% ({} of {}; at least {:.2}% at z={Z}) is over {EARLY_MARGIN}x max_error_ratio {:.2}% before the minimum sample of {} (stable {:.2}%)",
                    ratio * 100.0,
                    canary.errors,
                    canary.requests,
                    wilson_lower(canary.errors, canary.requests, Z) * 100.0,
                    t.max_error_ratio * 100.0,
                    t.min_requests,
                    stable.error_ratio() * 100.0
                ),
            );
        }
        return judgement(
            Verdict::Wait,
            ReasonCode::MinSample,
            format!(
                "waiting for the minimum sample: {} of {} canary requests since the step began",
                canary.requests, t.min_requests
            ),
        );
    }
    let lower = wilson_lower(canary.errors, canary.requests, Z);
    if lower > t.max_error_ratio {
        if ratio <= stable.error_ratio() {
            return judgement(
                Verdict::Wait,
                ReasonCode::BothFailing,
                format!(
                    "both tracks fail alike (canary 5xx {:.2}%, stable {:.2}%): not the release; holding",
                    ratio * 100.0,
                    stable.error_ratio() * 100.0
                ),
            );
        }
        return judgement(
            Verdict::Fail,
            ReasonCode::ErrorRatio,
            format!(
                "canary 5xx ratio {:.2}% ({} of {}; at least {:.2}% at z={Z}) is above max_error_ratio {:.2}% (stable {:.2}%)",
                ratio * 100.0,
                canary.errors,
                canary.requests,
                lower * 100.0,
                t.max_error_ratio * 100.0,
                stable.error_ratio() * 100.0
            ),
        );
    }
    // Stable's reference: its upper confidence rank in this window, else
    // the baseline from an earlier step, else no latency judgement.
    let n_c = canary.latency.count();
    let reference = if stable_enough {
        let (_, high) = quantile_ranks(stable.latency.count(), 0.95, Z);
        stable.latency.at_rank(high).map(|us| (us, "this step"))
    } else {
        baseline_p95_us.map(|us| (us, "an earlier step"))
    };
    let canary_p95 = canary.p95_us();
    if let (Some((stable_us, whence)), true) = (reference, n_c > 0) {
        let (low, _) = quantile_ranks(n_c, 0.95, Z);
        let canary_low = canary.latency.at_rank(low).unwrap_or(0);
        if canary_low as f64 > t.max_p95_ratio * stable_us as f64 {
            return judgement(
                Verdict::Fail,
                ReasonCode::P95Ratio,
                format!(
                    "canary p95 {:.1} ms (at least {:.1} ms at z={Z}) is over {}x stable's {:.1} ms ({whence})",
                    ms(canary_p95.unwrap_or(0)),
                    ms(canary_low),
                    t.max_p95_ratio,
                    ms(stable_us)
                ),
            );
        }
    }
    judgement(
        Verdict::Healthy,
        ReasonCode::Healthy,
        format!(
            "canary healthy: 5xx {:.2}% ({} of {}), p95 {:.1} ms against stable's {}",
            ratio * 100.0,
            canary.errors,
            canary.requests,
            ms(canary_p95.unwrap_or(0)),
            match reference {
                Some((us, whence)) => format!("{:.1} ms ({whence})", ms(us)),
                None => "(no stable figures yet)".into(),
            }
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `n` requests, `errors` of them failed, latencies cycling through
    /// `ms` (a realistic spread).
    fn window(n: u64, errors: u64, ms: &[u64]) -> TrackWindow {
        let mut w = TrackWindow {
            requests: n,
            errors,
            ..TrackWindow::default()
        };
        for i in 0..n {
            w.latency.record_us(ms[(i as usize) % ms.len()] * 1000);
        }
        w
    }

    const SPREAD: &[u64] = &[
        8, 9, 10, 11, 12, 13, 14, 15, 18, 20, 22, 25, 30, 35, 40, 50, 60, 70, 80, 100,
    ];

    #[test]
    fn no_judgement_below_the_minimum_sample() {
        let t = Thresholds::default();
        // 3 errors in 50 (6 %): suspicious, not overwhelming: wait, and say so.
        let j = judge(&window(50, 3, SPREAD), &window(500, 0, SPREAD), None, &t);
        assert_eq!((j.verdict, j.code), (Verdict::Wait, ReasonCode::MinSample));
        assert!(j.reason.contains("50 of 200"), "{}", j.reason);
        // Three times slower, but only 50: latency waits for the sample.
        let slow: Vec<u64> = SPREAD.iter().map(|m| m * 3).collect();
        let j = judge(&window(50, 0, &slow), &window(500, 0, SPREAD), None, &t);
        assert_eq!((j.verdict, j.code), (Verdict::Wait, ReasonCode::MinSample));
    }

    #[test]
    fn gross_failures_abort_before_the_minimum_sample() {
        let t = Thresholds::default();
        // Every one of 10 requests failed.
        let j = judge(&window(10, 10, SPREAD), &window(100, 0, SPREAD), None, &t);
        assert_eq!(
            (j.verdict, j.code),
            (Verdict::Fail, ReasonCode::EarlyErrorRatio),
            "{}",
            j.reason
        );
        assert!(
            j.reason.contains("before the minimum sample"),
            "{}",
            j.reason
        );
        // The same with stable failing alike: not the release.
        let j = judge(&window(10, 10, SPREAD), &window(100, 100, SPREAD), None, &t);
        assert_eq!(j.code, ReasonCode::BothFailing);
        // Three errors are never enough, however few the requests.
        assert!(!early_abort(3, 3, 0.01));
        assert!(early_abort(4, 4, 0.01));
        assert!(early_abort(4, 33, 0.01) && !early_abort(4, 34, 0.01));
    }

    /// The exact probability that a canary failing each request with
    /// probability `p0` is ever aborted early within its first `n` requests,
    /// the rule evaluated after every request: a dynamic programme over the
    /// number of errors, the rule an absorbing barrier.
    fn false_early_abort_probability(p0: f64, n: u64) -> f64 {
        let mut dist = vec![1.0f64]; // dist[k]: P(k errors, not aborted)
        let mut aborted = 0.0;
        for seen in 1..=n {
            let mut next = vec![0.0; dist.len() + 1];
            for (k, &pr) in dist.iter().enumerate() {
                next[k] += pr * (1.0 - p0);
                next[k + 1] += pr * p0;
            }
            for (k, pr) in next.iter_mut().enumerate() {
                if early_abort(k as u64, seen, p0) {
                    aborted += *pr;
                    *pr = 0.0;
                }
            }
            dist = next;
        }
        aborted
    }

    #[test]
    fn false_early_abort_is_rare_at_the_threshold() {
        for p0 in [0.001, 0.01, 0.05, 0.1] {
            for n in [200, 1000] {
                let p = false_early_abort_probability(p0, n);
                assert!(p < 5e-4, "max_error_ratio {p0}, min_requests {n}: {p}");
            }
        }
        // The figure quoted in the module docs.
        let p = false_early_abort_probability(0.01, 200);
        assert!((4.0e-4..4.2e-4).contains(&p), "{p}");
    }

    /// xorshift64*: a seeded stream for the simulated canaries (the crate
    /// takes no randomness of its own).
    struct XorShift(u64);
    impl XorShift {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Simulates `runs` canaries failing with probability `p`, judged after
    /// every request up to the minimum sample: the canary request count at
    /// each early abort (runs not aborted early are left out).
    fn simulate(p: f64, runs: u64, seed: u64) -> Vec<u64> {
        let t = Thresholds::default();
        let mut rng = XorShift(seed);
        let mut at = Vec::new();
        for _ in 0..runs {
            let mut errors = 0;
            for n in 1..t.min_requests {
                if rng.unit() < p {
                    errors += 1;
                }
                if early_abort(errors, n, t.max_error_ratio) {
                    at.push(n);
                    break;
                }
            }
        }
        at.sort_unstable();
        at
    }

    #[test]
    fn simulated_canaries() {
        // 20,000 canaries exactly at the threshold: the exact rate is
        // 4·10⁻⁴, about 8 expected; never more than 1 in 1000.
        let healthy = simulate(0.01, 20_000, 0x5eed);
        assert!(healthy.len() <= 20, "{} false early aborts", healthy.len());
        // Gross failures go within tens of requests.
        let twenty = simulate(0.20, 2_000, 7);
        assert_eq!(twenty.len(), 2_000, "every 20 % canary is aborted early");
        assert!(
            twenty[1_000] <= 25 && twenty[1_800] <= 40,
            "{:?}",
            &twenty[990..1010]
        );
        let half = simulate(0.5, 2_000, 9);
        assert!(half[1_000] <= 10 && half[1_999] <= 25);
        // 5 % against 1 % is not gross: some are aborted early, within
        // tens of requests when they are, the rest at the minimum sample.
        let five = simulate(0.05, 2_000, 11);
        assert!(five.len() >= 400, "{}", five.len());
        assert!(five[five.len() / 2] <= 100, "{}", five[five.len() / 2]);
    }

    #[test]
    fn five_percent_errors_fail_at_the_minimum_sample() {
        let t = Thresholds::default();
        let j = judge(&window(200, 10, SPREAD), &window(1800, 0, SPREAD), None, &t);
        assert_eq!(
            (j.verdict, j.code),
            (Verdict::Fail, ReasonCode::ErrorRatio),
            "{}",
            j.reason
        );
    }

    #[test]
    fn a_canary_at_the_threshold_is_not_aborted() {
        let t = Thresholds::default();
        let j = judge(
            &window(1000, 10, SPREAD),
            &window(9000, 0, SPREAD),
            None,
            &t,
        );
        assert_eq!(j.verdict, Verdict::Healthy, "{}", j.reason);
    }

    #[test]
    fn both_failing_is_not_the_release() {
        let t = Thresholds::default();
        let j = judge(
            &window(200, 40, SPREAD),
            &window(1800, 400, SPREAD),
            None,
            &t,
        );
        assert_eq!(
            (j.verdict, j.code),
            (Verdict::Wait, ReasonCode::BothFailing)
        );
    }

    #[test]
    fn three_times_slower_fails_same_speed_passes() {
        let t = Thresholds::default();
        let slow: Vec<u64> = SPREAD.iter().map(|m| m * 3).collect();
        let stable = window(1800, 0, SPREAD);
        let j = judge(&window(200, 0, &slow), &stable, None, &t);
        assert_eq!(
            (j.verdict, j.code),
            (Verdict::Fail, ReasonCode::P95Ratio),
            "{}",
            j.reason
        );
        let j = judge(&window(200, 0, SPREAD), &stable, None, &t);
        assert_eq!(j.verdict, Verdict::Healthy, "{}", j.reason);
        assert!(j.stable_p95_us.is_some());
    }

    #[test]
    fn at_100_percent_the_baseline_stands_in_for_stable() {
        let t = Thresholds::default();
        let slow: Vec<u64> = SPREAD.iter().map(|m| m * 3).collect();
        let baseline = window(1800, 0, SPREAD).p95_us();
        let j = judge(
            &window(300, 0, &slow),
            &TrackWindow::default(),
            baseline,
            &t,
        );
        assert_eq!(j.code, ReasonCode::P95Ratio, "{}", j.reason);
        assert!(j.reason.contains("an earlier step"));
        let j = judge(&window(300, 0, SPREAD), &TrackWindow::default(), None, &t);
        assert_eq!(j.verdict, Verdict::Healthy);
        assert!(j.reason.contains("no stable figures"));
    }

    proptest! {
        /// A canary that behaves exactly like stable (same latencies, no
        /// more errors than the threshold allows) is never failed.
        #[test]
        fn a_canary_like_stable_never_fails(n in 200u64..5000, shift in 0usize..20) {
            let t = Thresholds::default();
            let mut rotated = SPREAD.to_vec();
            rotated.rotate_left(shift);
            let errors = n / 200; // 0.5 %
            let j = judge(&window(n, errors, &rotated), &window(n * 4, 0, SPREAD), None, &t);
            prop_assert_ne!(j.verdict, Verdict::Fail, "{}", j.reason);
        }

        /// Before the minimum sample, a canary whose observed ratio is at
        /// most twice the threshold is never aborted, whatever the numbers.
        #[test]
        fn no_early_abort_within_twice_the_threshold(n in 1u64..200, p0 in 0.001f64..0.2) {
            let errors = ((2.0 * p0 * n as f64).floor() as u64).min(n);
            let t = Thresholds { max_error_ratio: p0, ..Thresholds::default() };
            let j = judge(&window(n, errors, SPREAD), &window(n * 9, 0, SPREAD), None, &t);
            prop_assert_ne!(j.verdict, Verdict::Fail, "{}", j.reason);
        }

        /// A canary failing a quarter or more of at least 16 requests is
        /// aborted at once at a 1 % threshold.
        #[test]
        fn a_quarter_failing_is_aborted_early(n in 16u64..200, extra in 0u64..200) {
            let errors = (n / 4 + extra).min(n);
            let j = judge(&window(n, errors, SPREAD), &window(n * 9, 0, SPREAD), None, &Thresholds::default());
            prop_assert_eq!(j.verdict, Verdict::Fail, "{}", j.reason);
        }
    }
}
