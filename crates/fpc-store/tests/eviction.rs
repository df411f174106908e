//! S3-FIFO against plain LRU on a scan + hot-set workload.
//!
//! A storefront's cache sees a hot set (home, top categories, best sellers)
//! mixed with long scans of pages requested once (crawlers walking the
//! catalogue, long-tail products). LRU lets every scanned page push the hot
//! set out; S3-FIFO keeps one-hit pages in its small queue and the reused
//! ones in main.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use magestack_fpc_store::{
    Lookup, ObjectBuilder, PrimaryKey, Store, StoreConfig, Variance, OBJECT_OVERHEAD,
};

fn key(n: u64) -> PrimaryKey {
    let a = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x55;
    let b = n.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(29);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    k
}

/// Deterministic xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Textbook LRU over object counts.
struct Lru {
    capacity: usize,
    tick: u64,
    by_key: HashMap<u64, u64>,
    by_tick: BTreeMap<u64, u64>,
}

impl Lru {
    fn new(capacity: usize) -> Lru {
        Lru {
            capacity,
            tick: 0,
            by_key: HashMap::new(),
            by_tick: BTreeMap::new(),
        }
    }

    /// Returns true on a hit; inserts on a miss.
    fn access(&mut self, k: u64) -> bool {
        self.tick += 1;
        let hit = if let Some(old) = self.by_key.insert(k, self.tick) {
            self.by_tick.remove(&old);
            true
        } else {
            false
        };
        self.by_tick.insert(self.tick, k);
        while self.by_key.len() > self.capacity {
            if let Some((_, victim)) = self.by_tick.pop_first() {
                self.by_key.remove(&victim);
            }
        }
        hit
    }
}

/// The request stream: `hot` keys requested with probability `hot_share`,
/// otherwise the next key of a never-ending scan.
fn workload(requests: usize, hot: u64, hot_share: u64, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let mut scan = 1_000_000;
    (0..requests)
        .map(|_| {
            if rng.below(100) < hot_share {
                rng.below(hot)
            } else {
                scan += 1;
                scan
            }
        })
        .collect()
}

fn run_store(reqs: &[u64], capacity_objects: u64, shards: usize) -> f64 {
    let body = Bytes::from(vec![b'x'; 1000]);
    let charge = 1000 + OBJECT_OVERHEAD;
    let store = Store::new(StoreConfig {
        max_bytes: charge * capacity_objects,
        shards,
        ..StoreConfig::default()
    });
    let mut hits = 0;
    for (now, &k) in reqs.iter().enumerate() {
        match store.lookup(&key(k), |_| true, now as u64) {
            Lookup::Fresh(_) => hits += 1,
            _ => {
                store
                    .insert(
                        key(k),
                        Variance::NONE,
                        ObjectBuilder::new(200, body.clone()).ttl_ms(u64::MAX),
                        now as u64,
                    )
                    .expect("fits");
            }
        }
        assert!(store.stats().bytes_accounted <= charge * capacity_objects);
    }
    hits as f64 / reqs.len() as f64
}

fn run_lru(reqs: &[u64], capacity_objects: usize) -> f64 {
    let mut lru = Lru::new(capacity_objects);
    let hits = reqs.iter().filter(|&&k| lru.access(k)).count();
    hits as f64 / reqs.len() as f64
}

#[test]
fn s3fifo_beats_lru_on_scan_plus_hot_set() {
    // Cache of 1,000 objects, hot set of 400 requested 30% of the time, the
    // rest a scan. Between two requests of one hot key come ~930 scan pages
    // on average: LRU loses most of the hot set, S3-FIFO keeps it in main.
    let reqs = workload(60_000, 400, 30, 0x5eed);
    let lru = run_lru(&reqs, 1_000);
    let s3_one_shard = run_store(&reqs, 1_000, 1);
    let s3_sharded = run_store(&reqs, 1_000, 4);
    println!(
        "hit_ratio lru={lru:.3} s3fifo_1shard={s3_one_shard:.3} s3fifo_4shards={s3_sharded:.3}"
    );
    // The best any policy can do here is ~0.30 (every scan request misses).
    assert!(s3_one_shard > 0.25, "s3fifo {s3_one_shard}");
    assert!(s3_sharded > 0.24, "s3fifo sharded {s3_sharded}");
    assert!(
        s3_one_shard > lru * 1.5 && s3_one_shard - lru > 0.08,
        "s3fifo {s3_one_shard} vs lru {lru}"
    );
}

#[test]
fn s3fifo_is_not_worse_than_lru_without_scans() {
    // Pure skewed reuse (no scan): S3-FIFO should stay close to LRU.
    let mut rng = Rng(42);
    let reqs: Vec<u64> = (0..60_000)
        .map(|_| {
            // Roughly Zipfian: square of a uniform draw skews to small keys.
            let u = rng.below(3_000);
            u * u / 3_000
        })
        .collect();
    let lru = run_lru(&reqs, 500);
    let s3 = run_store(&reqs, 500, 1);
    println!("hit_ratio_skewed lru={lru:.3} s3fifo={s3:.3}");
    assert!(s3 > lru - 0.03, "s3fifo {s3} vs lru {lru}");
}
