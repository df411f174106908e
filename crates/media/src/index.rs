//! The disk cache's index: which files it holds, their sizes, and which to
//! remove to stay under the byte ceiling (least recently used first).
//!
//! Pure bookkeeping: the shell removes the files [`DiskIndex::insert`]
//! returns, and at start rebuilds the index from the directory, oldest file
//! first, so the cache survives restarts with its order roughly kept.
//! Recency is a counter, not a clock.

use std::collections::{BTreeMap, HashMap};

/// An entry larger than the whole cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{size} bytes do not fit a cache of {capacity} bytes")]
pub struct TooBig {
    /// The entry's size.
    pub size: u64,
    /// The ceiling.
    pub capacity: u64,
}

/// Byte-bounded LRU index over string keys (file names).
#[derive(Debug, Clone)]
pub struct DiskIndex {
    capacity: u64,
    total: u64,
    clock: u64,
    entries: HashMap<String, (u64, u64)>,
    order: BTreeMap<u64, String>,
}

impl DiskIndex {
    /// An empty index with a ceiling of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            total: 0,
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// The ceiling.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `key` is held.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn next_tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Marks `key` as just used; false when it is not held.
    pub fn touch(&mut self, key: &str) -> bool {
        let tick = self.next_tick();
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        if let Some(k) = self.order.remove(&entry.1) {
            self.order.insert(tick, k);
        }
        entry.1 = tick;
        true
    }

    /// Adds (or replaces) `key` of `size` bytes as the most recently used
    /// entry; returns the keys evicted to make room, oldest first (never
    /// `key` itself).
    ///
    /// # Errors
    ///
    /// [`TooBig`] when `size` exceeds the ceiling; the index is unchanged.
    pub fn insert(&mut self, key: &str, size: u64) -> Result<Vec<String>, TooBig> {
        if size > self.capacity {
            return Err(TooBig {
                size,
                capacity: self.capacity,
            });
        }
        self.remove(key);
        let mut evicted = Vec::new();
        while self.total + size > self.capacity {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((s, _)) = self.entries.remove(&old) {
                self.total -= s;
            }
            evicted.push(old);
        }
        let tick = self.next_tick();
        self.entries.insert(key.to_owned(), (size, tick));
        self.order.insert(tick, key.to_owned());
        self.total += size;
        Ok(evicted)
    }

    /// Forgets `key`; its size when it was held.
    pub fn remove(&mut self, key: &str) -> Option<u64> {
        let (size, tick) = self.entries.remove(key)?;
        self.order.remove(&tick);
        self.total -= size;
        Some(size)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut i = DiskIndex::new(10);
        assert!(i.insert("a", 4).unwrap().is_empty());
        assert!(i.insert("b", 4).unwrap().is_empty());
        assert!(i.touch("a"));
        assert_eq!(i.insert("c", 4).unwrap(), ["b"]);
        assert!(i.contains("a") && i.contains("c") && !i.contains("b"));
        assert_eq!(i.insert("d", 10).unwrap(), ["a", "c"]);
        assert_eq!(i.total_bytes(), 10);
        assert_eq!(
            i.insert("e", 11),
            Err(TooBig {
                size: 11,
                capacity: 10
            })
        );
        assert_eq!(i.insert("d", 2).unwrap(), Vec::<String>::new());
        assert_eq!(i.total_bytes(), 2);
        assert_eq!(i.remove("d"), Some(2));
        assert!(i.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u64),
        Touch(u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..20, 0u64..40).prop_map(|(k, s)| Op::Insert(k, s)),
            (0u8..20).prop_map(Op::Touch),
            (0u8..20).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// The ceiling holds, the total is the sum of the entries, and an
        /// evicted key is gone.
        #[test]
        fn bounded_and_consistent(ops in proptest::collection::vec(op(), 0..200)) {
            let mut i = DiskIndex::new(100);
            let mut model: HashMap<String, u64> = HashMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, s) => {
                        let k = k.to_string();
                        let evicted = i.insert(&k, s).unwrap();
                        prop_assert!(!evicted.contains(&k));
                        for e in evicted { model.remove(&e); }
                        model.insert(k, s);
                    }
                    Op::Touch(k) => { prop_assert_eq!(i.touch(&k.to_string()), model.contains_key(&k.to_string())); }
                    Op::Remove(k) => { prop_assert_eq!(i.remove(&k.to_string()), model.remove(&k.to_string())); }
                }
                prop_assert!(i.total_bytes() <= 100);
                prop_assert_eq!(i.total_bytes(), model.values().sum::<u64>());
                prop_assert_eq!(i.len(), model.len());
            }
        }
    }
}
