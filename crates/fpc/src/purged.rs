//! Recently purged popular URLs, for `magestack warm --after-purge`.
//!
//! Three bounded parts, all pure (no clock, no locks; the edge wraps
//! [`PurgedUrls`] in a mutex and owns the [`HitSketch`]):
//!
//! * [`HitSketch`]: a fixed array of [`SKETCH_SLOTS`] atomic slots, each
//!   a key fingerprint and its count, indexed by the cache key's hash. A
//!   hit is one compare-and-swap, no lock; of colliding keys the more hit
//!   one keeps the slot (a foreign hit decays the count, a zero count is
//!   taken over), so counts are lower bounds and a one-hit key never
//!   displaces a popular one. A purge resets the counts of the keys it
//!   removed.
//! * the *watch list* in [`PurgedUrls`]: cache keys that reached
//!   `min_hits` hits, with their URL (the store's objects carry no URL:
//!   it is recorded here once per popular key, when its counter reaches
//!   the threshold, rather than in every object). At most
//!   [`PurgedUrls::watch_capacity`] keys, oldest dropped first.
//! * the *purged list*: when a purge removes a watched key, its URL moves
//!   here; at most `capacity` distinct URLs, the oldest purge dropped first.
//!
//! URLs longer than [`MAX_URL_LEN`] or hosts longer than [`MAX_HOST_LEN`]
//! are not recorded. Memory bound: the sketch is `8 × SKETCH_SLOTS` bytes
//! (128 KiB); each watched or listed entry holds at most
//! `MAX_URL_LEN + MAX_HOST_LEN` bytes of text plus ≈ 120 bytes of map and
//! queue overhead, so with the defaults (4,096 watched, 1,000 listed) the
//! whole is at most ≈ 5.5 MiB + 128 KiB, and ≈ 1 MiB for URLs of 100 bytes.
//! Only URLs and hosts are kept: never cookies, headers or bodies.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters in the [`HitSketch`].
pub const SKETCH_SLOTS: usize = 16_384;
/// Longest path + query recorded.
pub const MAX_URL_LEN: usize = 768;
/// Longest host recorded.
pub const MAX_HOST_LEN: usize = 255;

/// Approximate per-key hit counters (see the module docs): a direct-mapped
/// table of (key fingerprint, count) in one `AtomicU64` a slot. A hit of
/// the slot's key counts; a hit of another key decrements the incumbent
/// and takes the slot once it is at zero (HeavyKeeper's decay), so popular
/// keys keep their slots and one-hit keys do not push them out.
#[derive(Debug)]
pub struct HitSketch {
    slots: Box<[AtomicU64]>,
}

impl Default for HitSketch {
    fn default() -> Self {
        Self {
            slots: (0..SKETCH_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn slot_of(key: &[u8; 16]) -> usize {
    let h = u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    (h % SKETCH_SLOTS as u64) as usize
}

/// The key's fingerprint in the slot's high 32 bits (never 0: 0 is empty).
fn fingerprint(key: &[u8; 16]) -> u64 {
    u64::from(u32::from_le_bytes([key[8], key[9], key[10], key[11]]) | 1) << 32
}

const COUNT: u64 = 0xffff_ffff;

impl HitSketch {
    /// Counts a hit of `key`; returns its count after this hit (0 when
    /// another, more hit key holds its slot).
    pub fn hit(&self, key: &[u8; 16]) -> u32 {
        let slot = &self.slots[slot_of(key)];
        let fp = fingerprint(key);
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (held, count) = (cur & !COUNT, cur & COUNT);
            let (next, ours) = if held == fp {
                let c = (count + 1).min(COUNT);
                (fp | c, c)
            } else if count == 0 {
                (fp | 1, 1)
            } else {
                (held | (count - 1), 0)
            };
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return u32::try_from(ours).unwrap_or(u32::MAX),
                Err(now) => cur = now,
            }
        }
    }

    /// The count of `key` (0 when its slot holds another key).
    pub fn get(&self, key: &[u8; 16]) -> u32 {
        let v = self.slots[slot_of(key)].load(Ordering::Relaxed);
        if v & !COUNT == fingerprint(key) {
            u32::try_from(v & COUNT).unwrap_or(u32::MAX)
        } else {
            0
        }
    }

    /// Forgets `key`'s hits (after a purge removed it).
    pub fn reset(&self, key: &[u8; 16]) {
        let slot = &self.slots[slot_of(key)];
        let v = slot.load(Ordering::Relaxed);
        if v & !COUNT == fingerprint(key) {
            let _ = slot.compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// One recently purged popular URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedUrl {
    /// Whether the page was requested over https (a trusted
    /// `X-Forwarded-Proto: https`): part of the cache key, so the warmer
    /// asks the same way.
    pub https: bool,
    /// The `Host` the page was requested with.
    pub host: String,
    /// Path and query, as the cache key was made from.
    pub url: String,
    /// Hits counted before the purge (approximate: a lower bound).
    pub hits: u32,
    /// When it was purged (caller's clock, milliseconds since the epoch).
    pub purged_at_ms: u64,
}

#[derive(Debug)]
struct Watched {
    https: bool,
    host: String,
    url: String,
}

/// The watch list and the bounded purged list (see the module docs).
#[derive(Debug)]
pub struct PurgedUrls {
    min_hits: u32,
    capacity: usize,
    watch_capacity: usize,
    watch: HashMap<[u8; 16], Watched>,
    watch_order: VecDeque<[u8; 16]>,
    /// (host, url) → entry; `order` holds the same pairs, oldest first.
    purged: HashMap<(String, String), PurgedUrl>,
    order: VecDeque<(String, String)>,
}

impl PurgedUrls {
    /// A list of at most `capacity` URLs of pages hit at least `min_hits`
    /// times, watching at most `4 × capacity` (at least 64) popular keys.
    pub fn new(capacity: usize, min_hits: u32) -> Self {
        Self {
            min_hits: min_hits.max(1),
            capacity,
            watch_capacity: (capacity * 4).max(64),
            watch: HashMap::new(),
            watch_order: VecDeque::new(),
            purged: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Hits from which a page is popular.
    pub fn min_hits(&self) -> u32 {
        self.min_hits
    }

    /// Most keys watched.
    pub fn watch_capacity(&self) -> usize {
        self.watch_capacity
    }

    /// Keys watched now.
    pub fn watched(&self) -> usize {
        self.watch.len()
    }

    /// URLs listed now.
    pub fn len(&self) -> usize {
        self.purged.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.purged.is_empty()
    }

    /// Whether a hit that brought `key`'s count to `count` should be
    /// recorded with [`PurgedUrls::watch`] (it just reached the threshold,
    /// so the caller takes the lock once per popular key, not per hit).
    pub fn should_watch(&self, count: u32) -> bool {
        count == self.min_hits
    }

    /// Remembers `key`'s URL (a cacheable GET page that became popular).
    pub fn watch(&mut self, key: [u8; 16], https: bool, host: &str, url: &str) {
        if self.capacity == 0 || url.len() > MAX_URL_LEN || host.len() > MAX_HOST_LEN {
            return;
        }
        if let Some(w) = self.watch.get_mut(&key) {
            w.https = https;
            w.host = host.to_owned();
            w.url = url.to_owned();
            return;
        }
        while self.watch.len() >= self.watch_capacity {
            match self.watch_order.pop_front() {
                Some(old) => {
                    self.watch.remove(&old);
                }
                None => break,
            }
        }
        self.watch.insert(
            key,
            Watched {
                https,
                host: host.to_owned(),
                url: url.to_owned(),
            },
        );
        self.watch_order.push_back(key);
        if self.watch_order.len() > self.watch_capacity * 2 {
            let watch = &self.watch;
            self.watch_order.retain(|k| watch.contains_key(k));
        }
    }

    /// A purge removed (or marked stale) the object under `key`, which had
    /// `hits` hits. Lists its URL when the key was watched and popular.
    pub fn purged(&mut self, key: &[u8; 16], hits: u32, now_ms: u64) {
        let Some(w) = self.watch.remove(key) else {
            return;
        };
        if hits < self.min_hits {
            return;
        }
        let id = (w.host, w.url);
        if let Some(e) = self.purged.get_mut(&id) {
            e.https = w.https;
            e.hits = e.hits.max(hits);
            e.purged_at_ms = now_ms;
            return;
        }
        while self.purged.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.purged.remove(&old);
                }
                None => break,
            }
        }
        self.purged.insert(
            id.clone(),
            PurgedUrl {
                https: w.https,
                host: id.0.clone(),
                url: id.1.clone(),
                hits,
                purged_at_ms: now_ms,
            },
        );
        self.order.push_back(id);
    }

    /// Up to `limit` listed URLs, most hit first (then most recent).
    pub fn list(&self, limit: usize) -> Vec<PurgedUrl> {
        let mut all: Vec<PurgedUrl> = self.purged.values().cloned().collect();
        all.sort_by(|a, b| {
            b.hits
                .cmp(&a.hits)
                .then(b.purged_at_ms.cmp(&a.purged_at_ms))
                .then(a.url.cmp(&b.url))
        });
        all.truncate(limit);
        all
    }

    /// Removes `host` + `url` from the list (it was warmed again).
    pub fn forget(&mut self, host: &str, url: &str) {
        let id = (host.to_owned(), url.to_owned());
        if self.purged.remove(&id).is_some() {
            self.order.retain(|k| k != &id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(n: u32) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&n.to_le_bytes());
        k
    }

    #[test]
    fn only_watched_popular_keys_are_listed() {
        let mut p = PurgedUrls::new(10, 2);
        assert!(!p.should_watch(1));
        assert!(p.should_watch(2));
        assert!(!p.should_watch(3));
        p.watch(key(1), false, "shop.test", "/a.html");
        p.purged(&key(1), 5, 100);
        p.purged(&key(2), 9, 100); // never watched: unpopular
        let l = p.list(10);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].url, "/a.html");
        assert_eq!(l[0].host, "shop.test");
        assert_eq!(l[0].hits, 5);
        assert_eq!(l[0].purged_at_ms, 100);
        // The key left the watch list: a second purge does not list it again.
        p.forget("shop.test", "/a.html");
        p.purged(&key(1), 5, 200);
        assert!(p.is_empty());
    }

    #[test]
    fn most_hit_first_and_limit() {
        let mut p = PurgedUrls::new(10, 1);
        for (n, hits) in [(1, 3), (2, 10), (3, 7)] {
            p.watch(key(n), false, "h", &format!("/{n}"));
            p.purged(&key(n), hits, u64::from(n));
        }
        let urls: Vec<_> = p.list(10).into_iter().map(|e| e.url).collect();
        assert_eq!(urls, ["/2", "/3", "/1"]);
        assert_eq!(p.list(2).len(), 2);
    }

    #[test]
    fn the_list_and_the_watch_list_stay_bounded() {
        let mut p = PurgedUrls::new(100, 1);
        for n in 0..10_000u32 {
            p.watch(key(n), false, "h", &format!("/p{n}"));
            assert!(p.watched() <= p.watch_capacity());
        }
        for n in 0..10_000u32 {
            p.purged(&key(n), 1, u64::from(n));
            assert!(p.len() <= 100);
        }
        assert_eq!(p.len(), 100);
        // Only the most recently watched (and so purged) remain.
        assert!(p.list(100).iter().all(|e| e.purged_at_ms >= 9_900));
        assert!(p.order.len() <= 100);
        assert!(p.watch_order.len() <= p.watch_capacity() * 2);
    }

    #[test]
    fn same_url_is_listed_once() {
        let mut p = PurgedUrls::new(10, 1);
        p.watch(key(1), false, "h", "/same");
        p.purged(&key(1), 2, 1);
        p.watch(key(1), false, "h", "/same");
        p.purged(&key(1), 4, 2);
        let l = p.list(10);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].hits, 4);
        assert_eq!(l[0].purged_at_ms, 2);
    }

    #[test]
    fn long_urls_and_zero_capacity_are_not_recorded() {
        let mut p = PurgedUrls::new(10, 1);
        p.watch(key(1), false, "h", &"x".repeat(MAX_URL_LEN + 1));
        assert_eq!(p.watched(), 0);
        let mut z = PurgedUrls::new(0, 1);
        z.watch(key(1), false, "h", "/a");
        z.purged(&key(1), 3, 1);
        assert!(z.is_empty());
    }

    #[test]
    fn sketch_counts_and_resets() {
        let s = HitSketch::default();
        assert_eq!(s.hit(&key(7)), 1);
        assert_eq!(s.hit(&key(7)), 2);
        assert_eq!(s.get(&key(7)), 2);
        s.reset(&key(7));
        assert_eq!(s.get(&key(7)), 0);
        assert_eq!(s.hit(&key(7)), 1);
    }

    /// Two keys in one slot: the popular one keeps it against one-hit
    /// keys, and a key takes a slot whose holder went quiet.
    #[test]
    fn sketch_keeps_the_popular_key_of_a_slot() {
        let s = HitSketch::default();
        let popular = key(3);
        let mut other = key(3);
        other[8] = 0xaa; // same slot, another fingerprint
        for _ in 0..5 {
            s.hit(&popular);
        }
        assert_eq!(s.hit(&other), 0);
        assert_eq!(s.get(&popular), 4);
        assert_eq!(s.get(&other), 0);
        assert_eq!(s.hit(&popular), 5);
        s.reset(&other); // not its slot: nothing changes
        assert_eq!(s.get(&popular), 5);
        for _ in 0..5 {
            assert_eq!(s.hit(&other), 0);
        }
        assert_eq!(s.hit(&other), 1);
        assert_eq!(s.get(&popular), 0);
    }
}
