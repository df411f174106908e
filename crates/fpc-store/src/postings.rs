//! A shard's tag index: tag id → slots of the objects carrying it.
//!
//! Most `(tag, shard)` pairs hold one object (a product tag sits on a handful
//! of pages spread over many shards), so a single posting lives inline in the
//! 8-byte table entry; two to four share a 16-byte chunk; more move into a
//! [`SlotSet`] (sorted array, bitmap or hash set by size and density: a few
//! bytes a posting or less). Removal never scans a long posting list, and a
//! purge walks only the matched postings.

use hashbrown::HashTable;

use crate::object::TagId;
use crate::slot_set::{hash_u32, SlotSet};

const SINGLE: u32 = 1 << 31;
const CHUNK: u32 = 1 << 30;
const KIND: u32 = SINGLE | CHUNK;
const CHUNK_LEN: usize = 4;
const EMPTY: u32 = u32::MAX;

/// Largest slot index a shard may use (two bits of an entry give its form).
pub(crate) const MAX_SLOT: u32 = CHUNK - 1;

#[derive(Clone, Copy)]
struct Entry {
    tag: u32,
    /// `SINGLE | slot`, `CHUNK | index into chunks`, or an index into `sets`.
    data: u32,
}

enum Form {
    Single(u32),
    Chunk(usize),
    Set(usize),
}

fn form(data: u32) -> Form {
    if data & SINGLE != 0 {
        Form::Single(data & !KIND)
    } else if data & CHUNK != 0 {
        Form::Chunk((data & !KIND) as usize)
    } else {
        Form::Set(data as usize)
    }
}

#[derive(Default)]
pub(crate) struct TagIndex {
    entries: HashTable<Entry>,
    chunks: Vec<[u32; CHUNK_LEN]>,
    free_chunks: Vec<u32>,
    sets: Vec<SlotSet>,
    free_sets: Vec<u32>,
}

fn alloc<T>(items: &mut Vec<T>, free: &mut Vec<u32>, item: T) -> u32 {
    match free.pop() {
        Some(i) => {
            items[i as usize] = item;
            i
        }
        None => {
            items.push(item);
            (items.len() - 1) as u32
        }
    }
}

impl TagIndex {
    /// Adds `slot` under `tag`. Returns true if the shard had no entry for the
    /// tag before (the shard now holds a dictionary reference for it).
    /// `shard_slots` is the shard's slot count (every slot is below it).
    pub(crate) fn add(&mut self, tag: TagId, slot: u32, shard_slots: usize) -> bool {
        let tag = tag.0;
        let Some(e) = self.entries.find_mut(hash_u32(tag), |e| e.tag == tag) else {
            self.entries.insert_unique(
                hash_u32(tag),
                Entry {
                    tag,
                    data: SINGLE | slot,
                },
                |e| hash_u32(e.tag),
            );
            return true;
        };
        match form(e.data) {
            Form::Single(first) => {
                let c = alloc(
                    &mut self.chunks,
                    &mut self.free_chunks,
                    [first, slot, EMPTY, EMPTY],
                );
                e.data = CHUNK | c;
            }
            Form::Chunk(c) => {
                let chunk = &mut self.chunks[c];
                if let Some(p) = chunk.iter().position(|&s| s == EMPTY) {
                    chunk[p] = slot;
                } else {
                    let mut set = SlotSet::from_slots(chunk, shard_slots);
                    set.add(slot, shard_slots);
                    self.free_chunks.push(c as u32);
                    e.data = alloc(&mut self.sets, &mut self.free_sets, set);
                }
            }
            Form::Set(i) => {
                if let Some(set) = self.sets.get_mut(i) {
                    set.add(slot, shard_slots);
                }
            }
        }
        false
    }

    /// Removes `slot` from `tag`. Returns true if that was the tag's last
    /// object in this shard (the caller releases the dictionary reference).
    pub(crate) fn remove(&mut self, tag: TagId, slot: u32, shard_slots: usize) -> bool {
        let tag = tag.0;
        let Ok(mut found) = self.entries.find_entry(hash_u32(tag), |e| e.tag == tag) else {
            return false;
        };
        match form(found.get().data) {
            Form::Single(s) => {
                if s != slot {
                    return false;
                }
                found.remove();
                true
            }
            Form::Chunk(c) => {
                let chunk = &mut self.chunks[c];
                if let Some(p) = chunk.iter().position(|&s| s == slot) {
                    chunk[p] = EMPTY;
                }
                let mut left = chunk.iter().copied().filter(|&s| s != EMPTY);
                let (first, second) = (left.next(), left.next());
                if second.is_some() {
                    return false;
                }
                self.free_chunks.push(c as u32);
                match first {
                    Some(last) => {
                        found.get_mut().data = SINGLE | last;
                        false
                    }
                    None => {
                        found.remove();
                        true
                    }
                }
            }
            Form::Set(i) => {
                let Some(set) = self.sets.get_mut(i) else {
                    return false;
                };
                set.remove(slot, shard_slots);
                if set.len() > CHUNK_LEN / 2 {
                    return false;
                }
                // Back to a chunk (hysteresis: sets start above CHUNK_LEN).
                let mut left = Vec::with_capacity(CHUNK_LEN);
                set.collect(&mut left);
                let mut chunk = [EMPTY; CHUNK_LEN];
                for (dst, &s) in chunk.iter_mut().zip(left.iter()) {
                    *dst = s;
                }
                *set = SlotSet::default();
                self.free_sets.push(i as u32);
                match chunk {
                    [EMPTY, ..] => {
                        found.remove();
                        true
                    }
                    [only, EMPTY, ..] => {
                        found.get_mut().data = SINGLE | only;
                        false
                    }
                    _ => {
                        found.get_mut().data =
                            CHUNK | alloc(&mut self.chunks, &mut self.free_chunks, chunk);
                        false
                    }
                }
            }
        }
    }

    /// Appends the slots carrying `tag` to `out`.
    pub(crate) fn collect(&self, tag: TagId, out: &mut Vec<u32>) {
        let tag = tag.0;
        let Some(e) = self.entries.find(hash_u32(tag), |e| e.tag == tag) else {
            return;
        };
        match form(e.data) {
            Form::Single(s) => out.push(s),
            Form::Chunk(c) => {
                if let Some(chunk) = self.chunks.get(c) {
                    out.extend(chunk.iter().copied().filter(|&s| s != EMPTY));
                }
            }
            Form::Set(i) => {
                if let Some(set) = self.sets.get(i) {
                    set.collect(out);
                }
            }
        }
    }

    /// Distinct tags indexed in this shard.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tags indexed in this shard (for a full clear).
    pub(crate) fn tags(&self) -> impl Iterator<Item = TagId> + '_ {
        self.entries.iter().map(|e| TagId(e.tag))
    }

    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        *self = TagIndex::default();
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.allocation_size()
            + crate::malloc_size(self.chunks.capacity() * CHUNK_LEN * 4)
            + crate::malloc_size(self.free_chunks.capacity() * 4)
            + crate::malloc_size(self.sets.capacity() * std::mem::size_of::<SlotSet>())
            + crate::malloc_size(self.free_sets.capacity() * 4)
            + self.sets.iter().map(SlotSet::heap_bytes).sum::<usize>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SLOTS: usize = 20_000;

    fn slots(ix: &TagIndex, tag: u32) -> Vec<u32> {
        let mut v = Vec::new();
        ix.collect(TagId(tag), &mut v);
        v.sort_unstable();
        v
    }

    #[test]
    fn single_chunk_set_and_back() {
        let mut ix = TagIndex::default();
        assert!(ix.add(TagId(5), 10, SLOTS));
        assert_eq!(slots(&ix, 5), vec![10]);
        for s in 11..14 {
            assert!(!ix.add(TagId(5), s, SLOTS));
        }
        assert_eq!(slots(&ix, 5), vec![10, 11, 12, 13]);
        assert_eq!((ix.chunks.len(), ix.sets.len()), (1, 0));
        // A fifth posting moves to a set, the chunk is freed.
        assert!(!ix.add(TagId(5), 14, SLOTS));
        assert_eq!(slots(&ix, 5), vec![10, 11, 12, 13, 14]);
        assert_eq!((ix.free_chunks.len(), ix.sets.len()), (1, 1));
        assert!(!ix.remove(TagId(5), 11, SLOTS));
        assert!(!ix.remove(TagId(5), 12, SLOTS));
        assert_eq!(slots(&ix, 5), vec![10, 13, 14]);
        // Down to two: back to a chunk (the freed one is reused).
        assert!(!ix.remove(TagId(5), 13, SLOTS));
        assert_eq!(slots(&ix, 5), vec![10, 14]);
        assert_eq!((ix.free_chunks.len(), ix.free_sets.len()), (0, 1));
        assert!(!ix.remove(TagId(5), 10, SLOTS));
        assert_eq!(slots(&ix, 5), vec![14]);
        assert_eq!(ix.free_chunks.len(), 1);
        // Removing a slot that is not there changes nothing.
        assert!(!ix.remove(TagId(5), 99, SLOTS));
        assert!(!ix.remove(TagId(6), 14, SLOTS));
        assert!(ix.remove(TagId(5), 14, SLOTS));
        assert!(slots(&ix, 5).is_empty());
        assert_eq!(ix.len(), 0);
        // Freed chunks and sets are reused.
        for s in 0..6 {
            ix.add(TagId(7), s, SLOTS);
        }
        assert!(ix.free_chunks.len() == 1 && ix.free_sets.is_empty());
        assert_eq!(ix.tags().collect::<Vec<_>>(), vec![TagId(7)]);
    }

    #[test]
    fn chunk_emptied_in_any_order() {
        let mut ix = TagIndex::default();
        for s in [1, 2, 3] {
            ix.add(TagId(1), s, SLOTS);
        }
        assert!(!ix.remove(TagId(1), 2, SLOTS));
        assert!(!ix.remove(TagId(1), 1, SLOTS));
        assert_eq!(slots(&ix, 1), vec![3]);
        assert!(ix.remove(TagId(1), 3, SLOTS));
    }

    #[test]
    fn large_sets_shrink() {
        // Sparse in a large shard: the hash form, which shrinks when emptied.
        const BIG: usize = 100_000_000;
        let mut ix = TagIndex::default();
        for s in 0..10_000 {
            ix.add(TagId(1), s * 1_000, BIG);
        }
        assert_eq!(ix.sets[0].form_name(), "hash");
        let big = ix.heap_bytes();
        for s in 0..9_990 {
            assert!(!ix.remove(TagId(1), s * 1_000, BIG));
        }
        assert!(ix.heap_bytes() < big / 10);
        assert_eq!(
            slots(&ix, 1),
            (9_990..10_000).map(|s| s * 1_000).collect::<Vec<_>>()
        );
        ix.clear();
        assert_eq!(ix.len(), 0);
    }

    #[test]
    fn site_wide_tags_cost_a_bit_a_slot() {
        let mut ix = TagIndex::default();
        for s in 0..SLOTS as u32 / 2 {
            ix.add(TagId(1), s * 2, SLOTS);
        }
        assert_eq!(ix.sets[0].form_name(), "bitmap");
        // 10,000 postings in a 20,000-slot shard: a 2.5 KB bitmap.
        assert!(ix.heap_bytes() < 4_000, "{}", ix.heap_bytes());
    }

    proptest::proptest! {
        /// Any sequence of adds and removes matches a map of sets, and the
        /// "first/last posting of a tag" answers match too.
        #[test]
        fn matches_a_map_of_sets(ops in proptest::collection::vec((0u32..4, 0u32..40, proptest::bool::ANY), 1..300)) {
            use std::collections::{BTreeMap, BTreeSet};
            let mut ix = TagIndex::default();
            let mut model: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
            for (tag, slot, add) in ops {
                let set = model.entry(tag).or_default();
                if add {
                    if set.contains(&slot) {
                        continue; // (tag, slot) pairs are unique by construction
                    }
                    let was_empty = set.is_empty();
                    set.insert(slot);
                    proptest::prop_assert_eq!(ix.add(TagId(tag), slot, SLOTS), was_empty);
                } else {
                    let had = set.remove(&slot);
                    let now_empty = had && set.is_empty();
                    proptest::prop_assert_eq!(ix.remove(TagId(tag), slot, SLOTS), now_empty);
                }
                for (&t, want) in &model {
                    let got: BTreeSet<u32> = slots(&ix, t).into_iter().collect();
                    proptest::prop_assert_eq!(&got, want);
                }
                proptest::prop_assert_eq!(ix.len(), model.values().filter(|s| !s.is_empty()).count());
            }
        }
    }
}
