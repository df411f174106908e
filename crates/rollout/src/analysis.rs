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

use crate::stats::{quantile_ranks, wilson_lower, LatencyHistogram};

/// Standard deviations of every confidence bound used here (see the module docs).
pub const Z: f64 = 3.0;

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
    if canary.requests < t.min_requests {
        return judgement(
            Verdict::Wait,
            ReasonCode::MinSample,
            format!(
                "waiting for the minimum sample: {} of {} canary requests since the step began",
                canary.requests, t.min_requests
            ),
        );
    }
    let ratio = canary.error_ratio();
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
        // Every request failed, but only 50: wait, and say so.
        let j = judge(&window(50, 50, SPREAD), &window(500, 0, SPREAD), None, &t);
        assert_eq!((j.verdict, j.code), (Verdict::Wait, ReasonCode::MinSample));
        assert!(j.reason.contains("50 of 200"), "{}", j.reason);
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
    }
}
