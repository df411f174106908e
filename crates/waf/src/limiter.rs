//! GCRA (the generic cell rate algorithm: a token bucket stored as one
//! timestamp, the "theoretical arrival time") keyed by (rule, client IP).
//!
//! Why not `governor`: its keyed store grows with every distinct key until
//! someone calls `retain_recent`; a flood of spoofed or botnet addresses
//! would grow it without bound between sweeps. Here the table has a hard
//! capacity: when a shard is full, entries whose limit has fully recovered
//! are dropped first (forgetting them changes no decision), then the entry
//! closest to recovery. Memory: about 48 bytes a key plus the table's
//! slack, times `max_keys`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// `burst` requests, refilled one every `period / burst`: "5 per minute".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
    /// Time in which `burst` requests are refilled.
    pub period: Duration,
}

impl Quota {
    /// `n` requests per `period` (at least 1 request, at least 1 ms).
    pub fn per(n: u32, period: Duration) -> Quota {
        Quota {
            burst: n.max(1),
            period: period.max(Duration::from_millis(1)),
        }
    }

    fn emission_nanos(&self) -> u64 {
        (self.period.as_nanos() / u128::from(self.burst)).max(1) as u64
    }

    fn tolerance_nanos(&self) -> u64 {
        self.emission_nanos()
            .saturating_mul(u64::from(self.burst.saturating_sub(1)))
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit.
    Allow,
    /// Over it: retry after this long (`Retry-After`, rounded up to seconds
    /// by the caller).
    Deny {
        /// Time until one more request would be allowed.
        retry_after: Duration,
    },
}

const SHARDS: usize = 16;

/// A bounded table of GCRA states. `Send + Sync`; share it by reference.
#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Mutex<HashMap<(u16, IpAddr), u64>>>,
    per_shard: usize,
}

impl Limiter {
    /// A limiter remembering at most `max_keys` (rule, IP) pairs.
    pub fn new(max_keys: usize) -> Limiter {
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    /// Keys remembered now (all shards).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|g| g.len()).unwrap_or(0))
            .sum()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter remembers.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Whether one more request of `ip` would be allowed now, without
    /// counting it: for limits on failures, where only a failure is counted
    /// but every attempt must first be let through or turned away.
    pub fn peek(&self, rule: u16, ip: IpAddr, quota: Quota, now_nanos: u64) -> Decision {
        let key = (rule, ip);
        let table = self.shards[shard_of(&key)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tau = quota.tolerance_nanos();
        let tat = table.get(&key).copied().unwrap_or(now_nanos).max(now_nanos);
        if tat - now_nanos > tau {
            Decision::Deny {
                retry_after: Duration::from_nanos(tat - now_nanos - tau),
            }
        } else {
            Decision::Allow
        }
    }

    /// Counts one request of `ip` against `rule`'s `quota` at `now_nanos`.
    pub fn check(&self, rule: u16, ip: IpAddr, quota: Quota, now_nanos: u64) -> Decision {
        self.check_n(rule, ip, quota, now_nanos, 1)
    }

    /// Counts `cost` requests at once (a GraphQL request running one
    /// mutation under several aliases): allowed only when all of them fit,
    /// so `cost` above the burst is always denied. A denied request
    /// consumes nothing.
    pub fn check_n(
        &self,
        rule: u16,
        ip: IpAddr,
        quota: Quota,
        now_nanos: u64,
        cost: u32,
    ) -> Decision {
        let key = (rule, ip);
        let shard = &self.shards[shard_of(&key)];
        // A poisoned shard still holds valid timestamps.
        let mut table = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = quota.emission_nanos();
        let tau = quota.tolerance_nanos();
        let tat = table.get(&key).copied().unwrap_or(now_nanos).max(now_nanos);
        // The arrival time the last of the `cost` requests would have.
        let last = tat.saturating_add(t.saturating_mul(u64::from(cost.max(1) - 1)));
        // Allowed when the next theoretical arrival is within the burst tolerance.
        if last - now_nanos > tau {
            return Decision::Deny {
                retry_after: Duration::from_nanos(last - now_nanos - tau),
            };
        }
        if !table.contains_key(&key) && table.len() >= self.per_shard {
            make_room(&mut table, now_nanos);
        }
        table.insert(key, last.saturating_add(t));
        Decision::Allow
    }

    /// Copies the state of `other` (a limiter being replaced, say with
    /// another capacity) into this one, keeping the keys `rename` maps to
    /// a rule of this one. Entries beyond this table's capacity are
    /// dropped as [`Limiter::check`] would drop them.
    pub fn absorb(&self, other: &Limiter, now_nanos: u64, rename: impl Fn(u16) -> Option<u16>) {
        for shard in &other.shards {
            let entries: Vec<((u16, IpAddr), u64)> = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .filter(|(_, tat)| **tat > now_nanos)
                .map(|(k, v)| (*k, *v))
                .collect();
            for ((rule, ip), tat) in entries {
                let Some(rule) = rename(rule) else { continue };
                let key = (rule, ip);
                let mut table = self.shards[shard_of(&key)]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !table.contains_key(&key) && table.len() >= self.per_shard {
                    make_room(&mut table, now_nanos);
                }
                let e = table.entry(key).or_insert(tat);
                *e = (*e).max(tat);
            }
        }
    }
}

/// The address a client is counted under: IPv4 as is, IPv6 cut to its
/// first `ipv6_prefix_len` bits (64 by default: one /64 is one
/// subscriber, who holds 2^64 addresses and would otherwise get a fresh
/// quota from each). IPv4-mapped IPv6 addresses count as their IPv4.
pub fn client_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let len = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Drops recovered entries (their TAT is in the past: forgetting them changes
/// no decision); if too few, also the eighth of the table closest to
/// recovery. Freeing an eighth at once keeps a flood at O(log n) amortised
/// per new key instead of a scan per insert.
fn make_room(table: &mut HashMap<(u16, IpAddr), u64>, now: u64) {
    let before = table.len();
    table.retain(|_, tat| *tat > now);
    if table.len() * 8 <= before * 7 {
        return;
    }
    let mut tats: Vec<u64> = table.values().copied().collect();
    let cut = tats.len() / 8;
    let (_, threshold, _) = tats.select_nth_unstable(cut);
    let threshold = *threshold;
    table.retain(|_, tat| *tat > threshold);
}

fn shard_of(key: &(u16, IpAddr)) -> usize {
    use std::hash::{Hash, Hasher};
    // Deterministic: the shard only spreads lock contention; it decides nothing.
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn five_per_minute_then_429_then_refill() {
        let l = Limiter::new(1000);
        let q = Quota::per(5, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        for i in 0..5 {
            assert_eq!(l.check(1, a, q, i * SEC), Decision::Allow, "request {i}");
        }
        let Decision::Deny { retry_after } = l.check(1, a, q, 5 * SEC) else {
            panic!("6th allowed");
        };
        // One request refills every 12 s, counted from the first.
        assert!(retry_after > Duration::from_secs(6) && retry_after <= Duration::from_secs(12));
        // Another IP and another rule are unaffected.
        assert_eq!(l.check(1, ip("10.0.0.2"), q, 5 * SEC), Decision::Allow);
        assert_eq!(l.check(2, a, q, 5 * SEC), Decision::Allow);
        // After the refill interval one more goes through.
        assert_eq!(l.check(1, a, q, 13 * SEC), Decision::Allow);
        assert!(matches!(l.check(1, a, q, 13 * SEC), Decision::Deny { .. }));
        // Denied requests do not push the window further.
        assert_eq!(l.check(1, a, q, 25 * SEC), Decision::Allow);
    }

    #[test]
    fn peek_decides_like_check_without_counting() {
        let l = Limiter::new(100);
        let q = Quota::per(2, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        for _ in 0..10 {
            assert_eq!(l.peek(1, a, q, 0), Decision::Allow);
        }
        assert!(l.is_empty());
        assert_eq!(l.check(1, a, q, 0), Decision::Allow);
        assert_eq!(l.check(1, a, q, 0), Decision::Allow);
        assert!(matches!(l.peek(1, a, q, 0), Decision::Deny { .. }));
        assert!(matches!(l.check(1, a, q, 0), Decision::Deny { .. }));
        assert_eq!(l.peek(1, a, q, 31 * SEC), Decision::Allow);
    }

    #[test]
    fn a_flood_of_addresses_stays_within_the_bound() {
        let l = Limiter::new(10_000);
        let q = Quota::per(5, Duration::from_secs(60));
        for i in 0..1_000_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
            let _ = l.check(1, a, q, u64::from(i) * 1_000);
        }
        assert!(l.len() <= l.capacity(), "{} > {}", l.len(), l.capacity());
        assert!(l.capacity() <= 10_000 + 16);
        // The limit still works for an address seen last.
        let a = ip("192.0.2.7");
        for _ in 0..5 {
            assert_eq!(l.check(1, a, q, 2_000 * SEC), Decision::Allow);
        }
        assert!(matches!(
            l.check(1, a, q, 2_000 * SEC),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn a_request_of_cost_n_uses_n_cells() {
        let l = Limiter::new(100);
        let q = Quota::per(5, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        assert_eq!(l.check_n(1, a, q, 0, 3), Decision::Allow);
        // Two cells left: a request of 3 is denied and consumes nothing.
        assert!(matches!(l.check_n(1, a, q, 0, 3), Decision::Deny { .. }));
        assert_eq!(l.check_n(1, a, q, 0, 2), Decision::Allow);
        assert!(matches!(l.check(1, a, q, 0), Decision::Deny { .. }));
        // More than the burst never fits.
        assert!(matches!(
            l.check_n(1, ip("10.0.0.2"), q, 0, 6),
            Decision::Deny { .. }
        ));
    }

    /// See: issue 13, item 5.
    #[test]
    fn r13_ipv6_clients_count_per_prefix() {
        let a = ip("2001:db8:1:2:aaaa::1");
        let b = ip("2001:db8:1:2:ffff:ffff:ffff:fffe");
        assert_eq!(client_key(a, 64), client_key(b, 64));
        assert_eq!(client_key(a, 64), ip("2001:db8:1:2::"));
        assert_ne!(client_key(a, 128), client_key(b, 128));
        assert_eq!(client_key(a, 0), ip("::"));
        assert_eq!(client_key(a, 200), a);
        assert_eq!(client_key(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
        assert_eq!(client_key(ip("192.0.2.1"), 64), ip("192.0.2.1"));
    }

    #[test]
    fn absorb_keeps_the_counters_of_renamed_rules() {
        let q = Quota::per(5, Duration::from_secs(60));
        let a = ip("10.0.0.1");
        let old = Limiter::new(100);
        for _ in 0..5 {
            assert_eq!(old.check(3, a, q, 0), Decision::Allow);
            assert_eq!(old.check(4, a, q, 0), Decision::Allow);
        }
        let new = Limiter::new(1000);
        // Rule 3 is now rule 0; rule 4 is gone.
        new.absorb(&old, SEC, |r| (r == 3).then_some(0));
        assert!(matches!(new.check(0, a, q, SEC), Decision::Deny { .. }));
        assert_eq!(new.len(), 1);
    }

    proptest::proptest! {
        /// Over any window of `period`, no more than `burst` + the refills
        /// are allowed for one key.
        #[test]
        fn never_more_than_the_quota(gaps in proptest::collection::vec(0u64..3 * SEC, 1..200)) {
            let l = Limiter::new(64);
            let q = Quota::per(5, Duration::from_secs(60));
            let a = ip("10.1.2.3");
            let mut now = 0u64;
            let mut allowed = Vec::new();
            for g in gaps {
                now += g;
                if l.check(7, a, q, now) == Decision::Allow {
                    allowed.push(now);
                }
            }
            for (i, &t) in allowed.iter().enumerate() {
                let in_window = allowed[i..].iter().take_while(|&&u| u < t + 60 * SEC).count();
                proptest::prop_assert!(in_window <= 10, "{} allowed within 60 s", in_window);
            }
        }
    }
}
