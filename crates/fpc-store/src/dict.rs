//! The tag dictionary: interns tag strings into [`TagId`]s, reference-counted
//! by the shards that index them, so tags that no object carries any more are
//! forgotten and the dictionary stays bounded by the live tag references.
//!
//! Never on the hit path: inserts and purges use it, lookups do not.
//!
//! Lock order: a shard lock may be held while this lock is taken, never the
//! reverse.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};

use hashbrown::HashTable;
use parking_lot::RwLock;

use crate::object::TagId;
use crate::{malloc_size, DICT_ENTRY_OVERHEAD};

/// Most distinct tags the dictionary holds at once (24-bit index).
pub const MAX_DISTINCT_TAGS: usize = 1 << INDEX_BITS;

const INDEX_BITS: u32 = 24;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

#[derive(Default)]
struct Entry {
    /// `None` while the index is free.
    name: Option<Box<str>>,
    /// Shards holding an index entry for the tag, plus in-flight inserts.
    refs: AtomicU32,
    generation: u8,
}

#[derive(Default)]
struct Inner {
    by_name: HashTable<u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
    bytes: u64,
}

pub(crate) struct TagDict {
    inner: RwLock<Inner>,
    hasher: RandomState,
}

/// Result of [`TagDict::acquire`].
#[derive(Debug)]
pub(crate) struct Acquired {
    /// One reference taken on each.
    pub(crate) ids: Vec<TagId>,
    /// Bytes of dictionary entries created by the call.
    pub(crate) created: u64,
    /// The dictionary hit [`MAX_DISTINCT_TAGS`]; `ids` is incomplete.
    pub(crate) full: bool,
}

pub(crate) fn entry_cost(name: &str) -> u64 {
    DICT_ENTRY_OVERHEAD + name.len() as u64
}

fn make_id(index: u32, generation: u8) -> TagId {
    TagId(index | (u32::from(generation) << INDEX_BITS))
}

fn split_id(id: TagId) -> (usize, u8) {
    ((id.0 & INDEX_MASK) as usize, (id.0 >> INDEX_BITS) as u8)
}

impl Inner {
    fn entry(&self, id: TagId) -> Option<&Entry> {
        let (index, generation) = split_id(id);
        self.entries
            .get(index)
            .filter(|e| e.generation == generation && e.name.is_some())
    }

    fn find(&self, hash: u64, name: &str) -> Option<u32> {
        let entries = &self.entries;
        self.by_name
            .find(hash, |&i| {
                entries
                    .get(i as usize)
                    .and_then(|e| e.name.as_deref())
                    .is_some_and(|n| n == name)
            })
            .copied()
    }
}

impl TagDict {
    pub(crate) fn new() -> TagDict {
        TagDict {
            inner: RwLock::new(Inner::default()),
            hasher: RandomState::new(),
        }
    }

    /// Interns `names` (distinct) and takes one reference on each. Returns the
    /// ids in input order and the bytes of dictionary entries created.
    ///
    /// When the dictionary is full, `Acquired::full` is set and `ids` holds
    /// only the tags that were interned: the caller charges `created`, then
    /// releases `ids` and credits what that frees.
    pub(crate) fn acquire(&self, names: &[&str]) -> Acquired {
        let hashes: Vec<u64> = names.iter().map(|n| self.hasher.hash_one(n)).collect();
        let mut ids: Vec<Option<TagId>> = vec![None; names.len()];
        let mut missing = false;
        {
            let r = self.inner.read();
            for (i, (name, &hash)) in names.iter().zip(&hashes).enumerate() {
                match r.find(hash, name) {
                    Some(index) => {
                        let e = &r.entries[index as usize];
                        e.refs.fetch_add(1, Ordering::Relaxed);
                        ids[i] = Some(make_id(index, e.generation));
                    }
                    None => missing = true,
                }
            }
        }
        let mut created = 0;
        let mut full = false;
        if missing {
            let mut w = self.inner.write();
            let inner = &mut *w;
            for (i, (name, &hash)) in names.iter().zip(&hashes).enumerate() {
                if ids[i].is_some() {
                    continue;
                }
                if let Some(index) = inner.find(hash, name) {
                    let e = &mut inner.entries[index as usize];
                    *e.refs.get_mut() += 1;
                    ids[i] = Some(make_id(index, e.generation));
                    continue;
                }
                let index = match inner.free.pop() {
                    Some(index) => index,
                    None if inner.entries.len() < MAX_DISTINCT_TAGS => {
                        inner.entries.push(Entry::default());
                        (inner.entries.len() - 1) as u32
                    }
                    None => {
                        full = true;
                        break;
                    }
                };
                let e = &mut inner.entries[index as usize];
                e.name = Some(Box::from(*name));
                *e.refs.get_mut() = 1;
                let id = make_id(index, e.generation);
                let entries = &inner.entries;
                let hasher = &self.hasher;
                inner.by_name.insert_unique(hash, index, |&i| {
                    entries
                        .get(i as usize)
                        .and_then(|e| e.name.as_deref())
                        .map_or(0, |n| hasher.hash_one(n))
                });
                let cost = entry_cost(name);
                inner.live += 1;
                inner.bytes += cost;
                created += cost;
                ids[i] = Some(id);
            }
        }
        Acquired {
            ids: ids.into_iter().flatten().collect(),
            created,
            full,
        }
    }

    /// Drops one reference on each id; entries left without references are
    /// removed. Returns the bytes freed.
    pub(crate) fn release(&self, ids: &[TagId]) -> u64 {
        if ids.is_empty() {
            return 0;
        }
        let mut zero = Vec::new();
        {
            let r = self.inner.read();
            for &id in ids {
                if let Some(e) = r.entry(id) {
                    if e.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                        zero.push(id);
                    }
                }
            }
        }
        if zero.is_empty() {
            return 0;
        }
        let mut freed = 0;
        let mut w = self.inner.write();
        let inner = &mut *w;
        for id in zero {
            let (index, generation) = split_id(id);
            let Some(e) = inner.entries.get_mut(index) else {
                continue;
            };
            // Re-check under the write lock: an acquire may have revived it,
            // or another releaser may already have removed it.
            if e.generation != generation || *e.refs.get_mut() != 0 {
                continue;
            }
            let Some(name) = e.name.take() else {
                continue;
            };
            e.generation = e.generation.wrapping_add(1);
            let hash = self.hasher.hash_one(&*name);
            if let Ok(found) = inner.by_name.find_entry(hash, |&i| i as usize == index) {
                found.remove();
            }
            inner.free.push(index as u32);
            let cost = entry_cost(&name);
            inner.live -= 1;
            inner.bytes -= cost;
            freed += cost;
        }
        freed
    }

    /// Ids of known names (unknown names are skipped). Takes no reference: a
    /// purge that races with the reuse of an index is protected by the
    /// generation in the id.
    pub(crate) fn lookup(&self, names: &[&str]) -> Vec<TagId> {
        let r = self.inner.read();
        names
            .iter()
            .filter_map(|name| {
                let index = r.find(self.hasher.hash_one(name), name)?;
                Some(make_id(index, r.entries[index as usize].generation))
            })
            .collect()
    }

    /// Ids of every tag whose name satisfies `pred`: one pass over the
    /// dictionary (distinct tags), never over objects.
    pub(crate) fn matching(&self, mut pred: impl FnMut(&str) -> bool) -> Vec<TagId> {
        let r = self.inner.read();
        r.entries
            .iter()
            .enumerate()
            .filter_map(|(index, e)| {
                let name = e.name.as_deref()?;
                pred(name).then(|| make_id(index as u32, e.generation))
            })
            .collect()
    }

    pub(crate) fn name(&self, id: TagId) -> Option<String> {
        let r = self.inner.read();
        r.entry(id)
            .and_then(|e| e.name.as_deref())
            .map(str::to_owned)
    }

    /// (distinct tags, accounted bytes).
    pub(crate) fn stats(&self) -> (usize, u64) {
        let r = self.inner.read();
        (r.live, r.bytes)
    }

    /// Heap bytes of the dictionary, with malloc rounding of the names.
    pub(crate) fn heap_bytes(&self) -> usize {
        let r = self.inner.read();
        let names: usize = r
            .entries
            .iter()
            .filter_map(|e| e.name.as_deref())
            .map(|n| malloc_size(n.len()))
            .sum();
        malloc_size(r.entries.capacity() * std::mem::size_of::<Entry>())
            + r.by_name.allocation_size()
            + malloc_size(r.free.capacity() * 4)
            + names
    }

    #[cfg(test)]
    pub(crate) fn refs(&self, id: TagId) -> u32 {
        let r = self.inner.read();
        r.entry(id).map_or(0, |e| e.refs.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn intern_refcount_and_forget() {
        let d = TagDict::new();
        let a = d.acquire(&["cat_p_1", "cat_c_2"]);
        assert!(!a.full);
        let ids = a.ids;
        assert_eq!(a.created, entry_cost("cat_p_1") + entry_cost("cat_c_2"));
        let b = d.acquire(&["cat_c_2"]);
        assert_eq!(b.created, 0);
        let again = b.ids;
        assert_eq!(again[0], ids[1]);
        assert_eq!(d.refs(ids[1]), 2);
        assert_eq!(d.stats().0, 2);
        assert_eq!(d.name(ids[0]).as_deref(), Some("cat_p_1"));
        assert_eq!(d.lookup(&["cat_c_2", "nope"]), vec![ids[1]]);

        assert_eq!(d.release(&[ids[1]]), 0);
        assert_eq!(
            d.release(&ids),
            entry_cost("cat_p_1") + entry_cost("cat_c_2")
        );
        assert_eq!(d.stats(), (0, 0));
        assert!(d.lookup(&["cat_p_1"]).is_empty());
        assert_eq!(d.name(ids[0]), None);
        // Releasing a stale id is a no-op.
        assert_eq!(d.release(&ids), 0);
    }

    #[test]
    fn reused_index_gets_a_new_generation() {
        let d = TagDict::new();
        let a = d.acquire(&["a"]).ids;
        d.release(&a);
        let b = d.acquire(&["b"]).ids;
        assert_eq!(a[0].0 & INDEX_MASK, b[0].0 & INDEX_MASK);
        assert_ne!(a[0], b[0]);
        assert_eq!(d.name(a[0]), None);
        assert_eq!(d.name(b[0]).as_deref(), Some("b"));
        // A stale release does not touch the new tag.
        d.release(&a);
        assert_eq!(d.refs(b[0]), 1);
    }

    #[test]
    fn matching_scans_the_dictionary() {
        let d = TagDict::new();
        let ids = d.acquire(&["cat_c_1", "cat_c_12", "cat_p_1"]).ids;
        let mut m = d.matching(|n| n.starts_with("cat_c_"));
        m.sort();
        let mut want = vec![ids[0], ids[1]];
        want.sort();
        assert_eq!(m, want);
        assert!(d.heap_bytes() > 0);
    }

    #[test]
    fn concurrent_acquire_release_keeps_counts() {
        let d = TagDict::new();
        std::thread::scope(|s| {
            for t in 0..2 {
                let d = &d;
                s.spawn(move || {
                    for i in 0..2000 {
                        let name = format!("t{}", (i + t) % 7);
                        let ids = d.acquire(&[name.as_str()]).ids;
                        d.release(&ids);
                    }
                });
            }
        });
        assert_eq!(d.stats(), (0, 0));
    }
}
