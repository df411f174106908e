//! Remembers values already found clean, so the same cookie, user agent or
//! search term is not tokenized again on every request.
//!
//! Browsers repeat the same `Cookie`, `User-Agent` and `Referer` values on
//! every request of a visit, and libinjection's tokenizer costs microseconds
//! per value. The cache is a direct-mapped table of 64-bit keyed hashes
//! (SipHash with a per-process random key, so an attacker cannot aim a
//! collision at a value they want waved through), one atomic per slot: no
//! lock, a fixed size, and a newer value simply takes the slot of an older one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest value remembered: longer ones (bodies) rarely repeat.
pub const MAX_VALUE: usize = 4096;

/// The table; see the module docs.
#[derive(Debug)]
pub struct CleanCache {
    slots: Box<[AtomicU64]>,
    mask: usize,
    keys: RandomState,
}

impl CleanCache {
    /// A table of `slots` entries, rounded up to a power of two (8 bytes each).
    pub fn new(slots: usize) -> CleanCache {
        let n = slots.max(2).next_power_of_two();
        CleanCache {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            keys: RandomState::new(),
        }
    }

    /// The key of a value under the checks that ran (`checks` tells them
    /// apart: a value clean for XSS only is not clean for both); never 0.
    pub fn key(&self, value: &[u8], checks: u8) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(value);
        h.write_u8(checks);
        h.finish() | 1
    }

    /// The key of a whole `Cookie` header found clean in `scope` (each of its
    /// values passed the checks that scope applies to cookies); never 0, and
    /// never equal to a [`Self::key`] of the same bytes but for a hash collision.
    pub fn header_key(&self, value: &[u8], scope_flags: u8, scope_exclusions: u64) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(b"cookie-header\0");
        h.write(value);
        h.write_u8(scope_flags);
        h.write_u64(scope_exclusions);
        h.finish() | 1
    }

    /// Was this key found clean recently?
    pub fn is_clean(&self, key: u64) -> bool {
        self.slots[key as usize & self.mask].load(Ordering::Relaxed) == key
    }

    /// Remembers a clean key.
    pub fn remember(&self, key: u64) {
        self.slots[key as usize & self.mask].store(key, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_value_and_checks() {
        let c = CleanCache::new(1024);
        let k = c.key(b"O'Reilly", 3);
        assert!(!c.is_clean(k));
        c.remember(k);
        assert!(c.is_clean(k));
        assert!(!c.is_clean(c.key(b"O'Reilly", 1)));
        assert!(!c.is_clean(c.key(b"O'Reilly ", 3)));
    }

    #[test]
    fn keys_differ_between_processes_tables() {
        let (a, b) = (CleanCache::new(4), CleanCache::new(4));
        assert_ne!(a.key(b"x", 0), b.key(b"x", 0), "keys are random per table");
    }
}
