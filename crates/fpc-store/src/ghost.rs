//! The S3-FIFO ghost queue, as two generations of a Bloom filter.
//!
//! S3-FIFO remembers the keys recently evicted from the small queue so that a
//! key that comes back soon is admitted straight into the main queue. The
//! paper keeps an exact FIFO of hashes as long as the main queue; a pair of
//! rotating Bloom filters gives the same "remembered for about one main-queue
//! length of evictions" window in ~2.5 bytes per remembered key. A false
//! positive only admits an object into main a little early.

const BITS_PER_ITEM: usize = 10;
const HASHES: u64 = 3;
const MIN_ITEMS: usize = 64;

#[derive(Default)]
pub(crate) struct Ghost {
    current: Box<[u64]>,
    previous: Box<[u64]>,
    current_items: usize,
    capacity_items: usize,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finalizer.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn positions(fingerprint: u64, bits: u64) -> impl Iterator<Item = u64> {
    let h = mix(fingerprint);
    let h1 = h & 0xffff_ffff;
    let h2 = (h >> 32) | 1;
    (0..HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

fn test(filter: &[u64], fingerprint: u64) -> bool {
    if filter.is_empty() {
        return false;
    }
    let bits = filter.len() as u64 * 64;
    positions(fingerprint, bits).all(|p| filter[(p / 64) as usize] & (1 << (p % 64)) != 0)
}

impl Ghost {
    /// Remembers `fingerprint`. `window` is how many keys a generation holds
    /// before rotating (the main queue's length in objects).
    pub(crate) fn insert(&mut self, fingerprint: u64, window: usize) {
        if self.current_items >= self.capacity_items {
            let window = window.max(MIN_ITEMS);
            let words = (window * BITS_PER_ITEM).div_ceil(64);
            self.previous = std::mem::replace(&mut self.current, vec![0; words].into());
            self.capacity_items = window;
            self.current_items = 0;
        }
        let bits = self.current.len() as u64 * 64;
        for p in positions(fingerprint, bits) {
            self.current[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.current_items += 1;
    }

    pub(crate) fn contains(&self, fingerprint: u64) -> bool {
        test(&self.current, fingerprint) || test(&self.previous, fingerprint)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        (self.current.len() + self.previous.len()) * 8
    }

    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        *self = Ghost::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn remembers_about_two_windows() {
        let mut g = Ghost::default();
        assert!(!g.contains(1));
        for k in 0..1000u64 {
            g.insert(k, 1000);
        }
        assert!((0..1000).all(|k| g.contains(k)));
        for k in 1000..2000u64 {
            g.insert(k, 1000);
        }
        // Both generations still held.
        assert!((0..2000).all(|k| g.contains(k)));
        for k in 2000..3000u64 {
            g.insert(k, 1000);
        }
        let old_fp = (0..1000).filter(|&k| g.contains(k)).count();
        assert!(old_fp < 100, "first generation forgotten, fp {old_fp}");
        assert!((1000..3000).all(|k| g.contains(k)));
        let fp = (10_000..20_000u64).filter(|&k| g.contains(k)).count();
        assert!(fp < 600, "false positive rate too high: {fp}/10000");
        assert!(g.heap_bytes() > 0);
        g.clear();
        assert!(!g.contains(2500));
    }
}
