//! `/digests`: the heaviest statement fingerprints, in memory fixed by
//! design. A space-saving top-K (Metwally et al.): at most `capacity`
//! entries; a new fingerprint when full replaces the entry with the lowest
//! count and inherits that count (recorded as its possible overestimate), so
//! any fingerprint seen more than N/K times of N is guaranteed to be in the
//! table. ProxySQL's digest table grows with every distinct statement;
//! this one cannot.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug)]
struct Entry {
    fingerprint: String,
    count: u64,
    /// How much of `count` may belong to the fingerprints it replaced.
    error: u64,
    errors: u64,
    total: Duration,
    max: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    by_text: HashMap<String, usize>,
    /// (count, index): the minimum is the eviction candidate.
    order: BTreeSet<(u64, usize)>,
}

/// The table.
#[derive(Debug)]
pub(crate) struct Digests {
    capacity: usize,
    inner: Mutex<Inner>,
}

/// One row of `/digests`.
#[derive(Debug, Serialize)]
pub(crate) struct DigestRow {
    pub(crate) fingerprint: String,
    pub(crate) count: u64,
    /// `count` may overstate by this much (space-saving's bound).
    pub(crate) count_error: u64,
    pub(crate) errors: u64,
    pub(crate) total_seconds: f64,
    pub(crate) mean_seconds: f64,
    pub(crate) max_seconds: f64,
}

impl Digests {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Counts one statement.
    pub(crate) fn record(&self, fingerprint: String, latency: Duration, failed: bool) {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let i = match inner.by_text.get(&fingerprint) {
            Some(&i) => i,
            None if inner.entries.len() < self.capacity => {
                let i = inner.entries.len();
                inner.by_text.insert(fingerprint.clone(), i);
                inner.entries.push(Entry {
                    fingerprint,
                    count: 0,
                    error: 0,
                    errors: 0,
                    total: Duration::ZERO,
                    max: Duration::ZERO,
                });
                inner.order.insert((0, i));
                i
            }
            None => {
                let Some(&(min, i)) = inner.order.iter().next() else {
                    return;
                };
                let e = &mut inner.entries[i];
                inner.by_text.remove(&e.fingerprint);
                inner.by_text.insert(fingerprint.clone(), i);
                *e = Entry {
                    fingerprint,
                    count: min,
                    error: min,
                    errors: 0,
                    total: Duration::ZERO,
                    max: Duration::ZERO,
                };
                i
            }
        };
        let e = &mut inner.entries[i];
        inner.order.remove(&(e.count, i));
        e.count += 1;
        e.errors += u64::from(failed);
        e.total += latency;
        e.max = e.max.max(latency);
        inner.order.insert((e.count, i));
    }

    /// The table, heaviest first.
    pub(crate) fn rows(&self) -> Vec<DigestRow> {
        let g = self.inner.lock();
        let mut rows: Vec<DigestRow> = g
            .entries
            .iter()
            .map(|e| {
                let measured = e.count.saturating_sub(e.error).max(1);
                DigestRow {
                    fingerprint: e.fingerprint.clone(),
                    count: e.count,
                    count_error: e.error,
                    errors: e.errors,
                    total_seconds: e.total.as_secs_f64(),
                    mean_seconds: e.total.as_secs_f64() / measured as f64,
                    max_seconds: e.max.as_secs_f64(),
                }
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.count));
        rows
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heavy_hitters_survive_a_flood_of_distinct_statements() {
        let d = Digests::new(10);
        let ms = Duration::from_millis(1);
        for i in 0..10_000u32 {
            d.record("SELECT hot".into(), ms, false);
            if i % 2 == 0 {
                d.record("SELECT warm".into(), ms, i % 4 == 0);
            }
            d.record(format!("SELECT cold_{i}"), ms, false);
        }
        let rows = d.rows();
        assert_eq!(rows.len(), 10, "the table never grows past its capacity");
        assert_eq!(rows[0].fingerprint, "SELECT hot");
        assert_eq!((rows[0].count, rows[0].count_error), (10_000, 0));
        assert_eq!(rows[1].fingerprint, "SELECT warm");
        assert_eq!((rows[1].count, rows[1].errors), (5_000, 2_500));
        assert!((rows[0].mean_seconds - 0.001).abs() < 1e-9);
    }
}
