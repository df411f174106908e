//! Grace and backend health: Magento's `vcl_hit` (contract §7) and the
//! Varnish probe window, as pure functions and a small state machine.

use std::time::{Duration, SystemTime};

use crate::config::FpcPolicy;

/// The health-probe URL of Magento's VCL.
pub const PROBE_URL: &str = "/health_check.php";
/// Probe interval of Magento's VCL.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Probe timeout of Magento's VCL.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probe window of Magento's VCL.
pub const PROBE_WINDOW: u8 = 10;
/// Probe threshold of Magento's VCL.
pub const PROBE_THRESHOLD: u8 = 5;

/// Whether a probe response counts as a success (Varnish's default
/// `.expected_response = 200`).
pub fn probe_ok(status: u16) -> bool {
    status == 200
}

/// Timing data of a stored object. Plain data for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectTimes {
    /// When the backend generated it (`fetched_at - Age`): the delivered
    /// `Age` counts from here.
    pub origin: SystemTime,
    /// When magestack fetched it.
    pub fetched_at: SystemTime,
    /// End of freshness (`fetched_at + ttl`).
    pub fresh_until: SystemTime,
    /// Retention past `fresh_until` (the object's grace, 3 days).
    pub grace: Duration,
    /// Varnish keep (kept for conditional refreshes only; 0 by default).
    pub keep: Duration,
}

impl ObjectTimes {
    /// Times of an object fetched at `now` with the given remaining `ttl`
    /// (after `Age`), `grace`, `keep` and backend `age`.
    pub fn new(
        now: SystemTime,
        ttl: Duration,
        grace: Duration,
        keep: Duration,
        age: Duration,
    ) -> Self {
        Self {
            origin: now.checked_sub(age).unwrap_or(now),
            fetched_at: now,
            fresh_until: now.checked_add(ttl).unwrap_or(now),
            grace,
            keep,
        }
    }

    /// Whether the object is fresh at `now` (`obj.ttl >= 0`).
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now <= self.fresh_until
    }

    /// How long past its TTL the object is at `now` (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until)
            .unwrap_or(Duration::ZERO)
    }

    /// When the store may drop the object (`fresh_until + grace + keep`).
    pub fn retain_until(&self) -> SystemTime {
        self.fresh_until
            .checked_add(self.grace)
            .and_then(|t| t.checked_add(self.keep))
            .unwrap_or(self.fresh_until)
    }

    /// Whether the object is past its grace at `now` (serving it is no
    /// longer allowed, even with a sick backend).
    pub fn grace_expired(&self, now: SystemTime) -> bool {
        self.staleness(now) >= self.grace && !self.is_fresh(now)
    }

    /// The `Age` to deliver at `now`, in whole seconds.
    pub fn age_secs(&self, now: SystemTime) -> u64 {
        now.duration_since(self.origin).map_or(0, |d| d.as_secs())
    }
}

/// The `Grace` header value of a hit (Magento's `req.http.grace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraceState {
    /// Fresh hit.
    None,
    /// Stale, backend healthy, within `grace_period`.
    Normal,
    /// Stale, backend sick.
    Unlimited,
}

impl GraceState {
    /// The header value.
    pub fn as_str(&self) -> &'static str {
        match self {
            GraceState::None => "none",
            GraceState::Normal => "normal (healthy server)",
            GraceState::Unlimited => "unlimited (unhealthy server)",
        }
    }
}

/// What to do with an object found in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitDecision {
    /// Deliver it (`Grace: none`).
    Fresh,
    /// Deliver the stale object.
    StaleServe {
        /// Start a background refresh (one per key). `false` when the
        /// backend is sick: Varnish does not connect to a sick backend, so
        /// the refresh would fail at once.
        refresh: bool,
        /// The `Grace` header value.
        grace: GraceState,
    },
    /// Do not use it: restart the request as a forced miss
    /// ([`crate::request::RequestView::restarted`]) and fetch synchronously.
    Miss,
}

impl HitDecision {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            HitDecision::Fresh => "fresh",
            HitDecision::StaleServe { refresh: true, .. } => "stale_refresh",
            HitDecision::StaleServe { refresh: false, .. } => "stale",
            HitDecision::Miss => "miss",
        }
    }
}

/// Magento's `vcl_hit` (contract §7):
/// 1. fresh (`obj.ttl >= 0`) → deliver;
/// 2. backend healthy: within `grace_period` of expiry
///    (`obj.ttl + grace_period > 0`) → deliver stale and refresh, else
///    restart as a miss;
/// 3. backend sick: deliver stale whatever `grace_period` says, as long as
///    the object is still retained (its own 3-day grace).
pub fn hit_decision(
    times: &ObjectTimes,
    now: SystemTime,
    backend_healthy: bool,
    policy: &FpcPolicy,
) -> HitDecision {
    if times.is_fresh(now) {
        return HitDecision::Fresh;
    }
    if times.grace_expired(now) {
        return HitDecision::Miss;
    }
    let stale_for = times.staleness(now);
    if backend_healthy {
        if stale_for < Duration::from_secs(policy.grace_period_secs) {
            HitDecision::StaleServe {
                refresh: true,
                grace: GraceState::Normal,
            }
        } else {
            HitDecision::Miss
        }
    } else {
        HitDecision::StaleServe {
            refresh: false,
            grace: GraceState::Unlimited,
        }
    }
}

/// A change of health reported by [`HealthWindow::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthTransition {
    /// Same state as before.
    Unchanged,
    /// Went from sick to healthy.
    BecameHealthy,
    /// Went from healthy to sick.
    BecameSick,
}

/// Varnish's probe window: the last `window` probe results; the backend is
/// healthy when at least `threshold` of them succeeded.
///
/// Call [`HealthWindow::record`] once per probe (every
/// [`PROBE_INTERVAL`], with a [`PROBE_TIMEOUT`]); read
/// [`HealthWindow::healthy`] whenever a hit needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthWindow {
    bits: u64,
    window: u8,
    threshold: u8,
}

impl HealthWindow {
    /// A window of `window` probes (1..=64, clamped) with `threshold`
    /// (clamped to `window`) and `initial` successes assumed at start.
    /// Varnish's default `initial` is `threshold - 1`: sick until the first
    /// good probe. Magento's VTC harness uses `initial = 10` (healthy at once).
    pub fn new(window: u8, threshold: u8, initial: u8) -> Self {
        let window = window.clamp(1, 64);
        let threshold = threshold.min(window);
        let initial = initial.min(window);
        let bits = if initial == 0 {
            0
        } else {
            u64::MAX >> (64 - u32::from(initial))
        };
        Self {
            bits,
            window,
            threshold,
        }
    }

    /// Magento's probe: window 10, threshold 5, Varnish's default initial 4.
    pub fn magento() -> Self {
        Self::new(PROBE_WINDOW, PROBE_THRESHOLD, PROBE_THRESHOLD - 1)
    }

    fn mask(&self) -> u64 {
        if self.window >= 64 {
            u64::MAX
        } else {
            (1u64 << self.window) - 1
        }
    }

    /// Records one probe result.
    pub fn record(&mut self, ok: bool) -> HealthTransition {
        let before = self.healthy();
        self.bits = ((self.bits << 1) | u64::from(ok)) & self.mask();
        match (before, self.healthy()) {
            (false, true) => HealthTransition::BecameHealthy,
            (true, false) => HealthTransition::BecameSick,
            _ => HealthTransition::Unchanged,
        }
    }

    /// Successes in the window.
    pub fn good(&self) -> u32 {
        (self.bits & self.mask()).count_ones()
    }

    /// Whether the backend counts as healthy.
    pub fn healthy(&self) -> bool {
        self.good() >= u32::from(self.threshold)
    }
}

impl Default for HealthWindow {
    fn default() -> Self {
        Self::magento()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn obj(ttl: u64) -> ObjectTimes {
        ObjectTimes::new(
            t(0),
            Duration::from_secs(ttl),
            Duration::from_secs(3 * 86_400),
            Duration::ZERO,
            Duration::ZERO,
        )
    }

    #[test]
    fn s7_fresh_including_the_last_second() {
        let p = FpcPolicy::default();
        assert_eq!(hit_decision(&obj(120), t(0), true, &p), HitDecision::Fresh);
        assert_eq!(
            hit_decision(&obj(120), t(120), true, &p),
            HitDecision::Fresh
        );
        assert_eq!(
            hit_decision(&obj(120), t(120), false, &p),
            HitDecision::Fresh
        );
    }

    #[test]
    fn s7_stale_within_grace_period_healthy() {
        let p = FpcPolicy::default();
        let d = hit_decision(&obj(120), t(121), true, &p);
        assert_eq!(
            d,
            HitDecision::StaleServe {
                refresh: true,
                grace: GraceState::Normal
            }
        );
        assert_eq!(
            hit_decision(&obj(120), t(120 + 299), true, &p),
            HitDecision::StaleServe {
                refresh: true,
                grace: GraceState::Normal
            }
        );
        // obj.ttl + 300 > 0 fails at exactly 300 s stale.
        assert_eq!(hit_decision(&obj(120), t(420), true, &p), HitDecision::Miss);
    }

    #[test]
    fn s7_grace_period_zero_restarts_at_once() {
        let p = FpcPolicy {
            grace_period_secs: 0,
            ..FpcPolicy::default()
        };
        assert_eq!(hit_decision(&obj(120), t(121), true, &p), HitDecision::Miss);
    }

    #[test]
    fn s7_sick_backend_serves_unlimited_within_retention() {
        let p = FpcPolicy::default();
        let d = hit_decision(&obj(120), t(120 + 86_400), false, &p);
        assert_eq!(
            d,
            HitDecision::StaleServe {
                refresh: false,
                grace: GraceState::Unlimited
            }
        );
        assert_eq!(d.as_str(), "stale");
        assert_eq!(
            hit_decision(&obj(120), t(120 + 3 * 86_400 + 1), false, &p),
            HitDecision::Miss
        );
    }

    #[test]
    fn grace_labels() {
        assert_eq!(GraceState::None.as_str(), "none");
        assert_eq!(GraceState::Normal.as_str(), "normal (healthy server)");
        assert_eq!(
            GraceState::Unlimited.as_str(),
            "unlimited (unhealthy server)"
        );
    }

    #[test]
    fn object_times() {
        let o = ObjectTimes::new(
            t(100),
            Duration::from_secs(60),
            Duration::from_secs(10),
            Duration::from_secs(5),
            Duration::from_secs(30),
        );
        assert_eq!(o.origin, t(70));
        assert_eq!(o.fresh_until, t(160));
        assert_eq!(o.retain_until(), t(175));
        assert_eq!(o.age_secs(t(100)), 30);
        assert_eq!(o.age_secs(t(0)), 0);
        assert!(o.is_fresh(t(160)));
        assert!(!o.grace_expired(t(169)));
        assert!(o.grace_expired(t(170)));
    }

    #[test]
    fn health_window_magento_default_starts_sick() {
        let mut w = HealthWindow::magento();
        assert_eq!(w.good(), 4);
        assert!(!w.healthy());
        assert_eq!(w.record(true), HealthTransition::BecameHealthy);
        assert!(w.healthy());
    }

    #[test]
    fn health_window_vtc_initial_10() {
        let mut w = HealthWindow::new(10, 5, 10);
        assert!(w.healthy());
        // Five failures leave 5 good: still healthy; the sixth tips it.
        for _ in 0..5 {
            assert_eq!(w.record(false), HealthTransition::Unchanged);
        }
        assert!(w.healthy());
        assert_eq!(w.record(false), HealthTransition::BecameSick);
        assert_eq!(w.good(), 4);
        // Old successes slide out of the window.
        for _ in 0..4 {
            w.record(false);
        }
        assert_eq!(w.good(), 0);
        for _ in 0..4 {
            w.record(true);
        }
        assert!(!w.healthy());
        assert_eq!(w.record(true), HealthTransition::BecameHealthy);
    }

    #[test]
    fn health_window_clamps() {
        let w = HealthWindow::new(0, 9, 200);
        assert!(w.healthy());
        assert_eq!(w.good(), 1);
        let mut w = HealthWindow::new(64, 64, 64);
        assert!(w.healthy());
        assert_eq!(w.record(false), HealthTransition::BecameSick);
        assert_eq!(w.good(), 63);
    }

    #[test]
    fn probe_status() {
        assert!(probe_ok(200));
        assert!(!probe_ok(500));
        assert!(!probe_ok(204));
    }
}
