//! A set of slots for a tag carried by many objects of one shard.
//!
//! Three forms, chosen by size and density so a posting costs a few bytes at
//! any scale and add/remove stay cheap:
//!
//! - `Sorted`: a sorted `Vec<u32>` (4 bytes a posting) for up to
//!   [`SORTED_MAX`] postings; add/remove move at most 8 KiB.
//! - `Bitmap`: one bit per shard slot once the tag is on at least one slot in
//!   [`DENSE`] (at most `8 × DENSE / 8` bits a posting, O(1) add/remove). Site-wide
//!   tags (`store`, footer CMS blocks) end up here at a fraction of a byte.
//! - `Hash`: a hash set of `u32` (5–10 bytes a posting) for large sparse sets.
//!
//! Conversions have hysteresis (a factor of two) so a set at a boundary does
//! not flip on every add/remove.

use hashbrown::HashTable;

use crate::malloc_size;

/// The hash of a slot or tag id for the hash tables here and in
/// `postings`.
#[inline]
pub(crate) fn hash_u32(x: u32) -> u64 {
    // Fibonacci hashing: a bijection on the low bits, well mixed high bits
    // (hashbrown takes its 7-bit tag from the top).
    u64::from(x).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Most postings of the sorted form.
#[cfg(not(test))]
pub(crate) const SORTED_MAX: usize = 2048;
/// Small in tests so property tests cross every boundary.
#[cfg(test)]
pub(crate) const SORTED_MAX: usize = 8;

/// A set past [`SORTED_MAX`] becomes a bitmap when at least one shard slot in
/// `DENSE` carries the tag (a bitmap is then at most `DENSE / 8` bytes a
/// posting), and goes back when under half that density.
const DENSE: usize = 32;

pub(crate) enum SlotSet {
    Sorted(Vec<u32>),
    Bitmap { words: Vec<u64>, len: usize },
    Hash(HashTable<u32>),
}

impl Default for SlotSet {
    fn default() -> Self {
        SlotSet::Sorted(Vec::new())
    }
}

fn words_for(slots: usize) -> usize {
    slots.div_ceil(64)
}

fn hash_insert(set: &mut HashTable<u32>, slot: u32) {
    set.insert_unique(hash_u32(slot), slot, |&s| hash_u32(s));
}

impl SlotSet {
    /// A set of the given slots (distinct), in the form their count asks for.
    pub(crate) fn from_slots(slots: &[u32], shard_slots: usize) -> SlotSet {
        let mut v = slots.to_vec();
        v.sort_unstable();
        let mut set = SlotSet::Sorted(v);
        set.reshape(shard_slots);
        set
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            SlotSet::Sorted(v) => v.len(),
            SlotSet::Bitmap { len, .. } => *len,
            SlotSet::Hash(h) => h.len(),
        }
    }

    /// Adds `slot` (not already present). `shard_slots` is the shard's slot
    /// count (every slot is below it).
    pub(crate) fn add(&mut self, slot: u32, shard_slots: usize) {
        match self {
            SlotSet::Sorted(v) => {
                if let Err(at) = v.binary_search(&slot) {
                    v.insert(at, slot);
                }
            }
            SlotSet::Bitmap { words, len } => {
                let (w, bit) = (slot as usize / 64, 1u64 << (slot % 64));
                if w >= words.len() {
                    words.resize(w + 1, 0);
                }
                if words[w] & bit == 0 {
                    words[w] |= bit;
                    *len += 1;
                }
            }
            SlotSet::Hash(h) => {
                if h.find(hash_u32(slot), |&s| s == slot).is_none() {
                    hash_insert(h, slot);
                }
            }
        }
        self.reshape(shard_slots);
    }

    /// Removes `slot` if present.
    pub(crate) fn remove(&mut self, slot: u32, shard_slots: usize) {
        match self {
            SlotSet::Sorted(v) => {
                if let Ok(at) = v.binary_search(&slot) {
                    v.remove(at);
                }
                if v.capacity() > 16 && v.len() * 4 < v.capacity() {
                    v.shrink_to(v.len() * 2);
                }
            }
            SlotSet::Bitmap { words, len } => {
                let (w, bit) = (slot as usize / 64, 1u64 << (slot % 64));
                if let Some(word) = words.get_mut(w) {
                    if *word & bit != 0 {
                        *word &= !bit;
                        *len -= 1;
                    }
                }
            }
            SlotSet::Hash(h) => {
                if let Ok(e) = h.find_entry(hash_u32(slot), |&s| s == slot) {
                    e.remove();
                }
                if h.capacity() > 64 && h.len() * 4 < h.capacity() {
                    h.shrink_to(h.len() * 2, |&s| hash_u32(s));
                }
            }
        }
        self.reshape(shard_slots);
    }

    /// Moves to the form the current size and density ask for.
    fn reshape(&mut self, shard_slots: usize) {
        let n = self.len();
        let dense_enough = |factor: usize| n * DENSE * factor >= shard_slots.max(1);
        let target = match self {
            SlotSet::Sorted(_) if n > SORTED_MAX => {
                if dense_enough(1) {
                    Form::Bitmap
                } else {
                    Form::Hash
                }
            }
            SlotSet::Hash(_) if n <= SORTED_MAX / 2 => Form::Sorted,
            SlotSet::Hash(_) if dense_enough(1) => Form::Bitmap,
            SlotSet::Bitmap { .. } if n <= SORTED_MAX / 2 => Form::Sorted,
            SlotSet::Bitmap { .. } if !dense_enough(2) => Form::Hash,
            _ => return,
        };
        let slots = self.to_vec();
        *self = match target {
            Form::Sorted => {
                let mut v = slots;
                v.sort_unstable();
                SlotSet::Sorted(v)
            }
            Form::Bitmap => {
                let max = slots.iter().copied().max().map_or(0, |m| m as usize + 1);
                let mut words = vec![0u64; words_for(max.max(shard_slots))];
                for s in &slots {
                    words[*s as usize / 64] |= 1 << (s % 64);
                }
                SlotSet::Bitmap {
                    words,
                    len: slots.len(),
                }
            }
            Form::Hash => {
                let mut h = HashTable::with_capacity(slots.len());
                for s in slots {
                    hash_insert(&mut h, s);
                }
                SlotSet::Hash(h)
            }
        };
    }

    fn to_vec(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len());
        self.collect(&mut out);
        out
    }

    /// Appends every slot to `out`.
    pub(crate) fn collect(&self, out: &mut Vec<u32>) {
        match self {
            SlotSet::Sorted(v) => out.extend_from_slice(v),
            SlotSet::Bitmap { words, .. } => {
                for (i, &w) in words.iter().enumerate() {
                    let mut w = w;
                    while w != 0 {
                        let bit = w.trailing_zeros();
                        out.push((i * 64) as u32 + bit);
                        w &= w - 1;
                    }
                }
            }
            SlotSet::Hash(h) => out.extend(h.iter().copied()),
        }
    }

    /// Heap bytes (glibc malloc sizes).
    pub(crate) fn heap_bytes(&self) -> usize {
        let bytes = match self {
            SlotSet::Sorted(v) => v.capacity() * 4,
            SlotSet::Bitmap { words, .. } => words.capacity() * 8,
            SlotSet::Hash(h) => h.allocation_size(),
        };
        if bytes == 0 {
            0
        } else {
            malloc_size(bytes)
        }
    }

    #[cfg(test)]
    pub(crate) fn form_name(&self) -> &'static str {
        match self {
            SlotSet::Sorted(_) => "sorted",
            SlotSet::Bitmap { .. } => "bitmap",
            SlotSet::Hash(_) => "hash",
        }
    }
}

enum Form {
    Sorted,
    Bitmap,
    Hash,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sorted(s: &SlotSet) -> Vec<u32> {
        let mut v = s.to_vec();
        v.sort_unstable();
        v
    }

    #[test]
    fn forms_follow_size_and_density() {
        // Dense: 20 of 100 slots → bitmap past SORTED_MAX.
        let mut s = SlotSet::default();
        for slot in 0..20 {
            s.add(slot * 5, 100);
        }
        assert_eq!(s.form_name(), "bitmap");
        assert_eq!(sorted(&s), (0..20).map(|x| x * 5).collect::<Vec<_>>());
        // Sparse: 20 of 100,000 slots → hash.
        let mut h = SlotSet::default();
        for slot in 0..20 {
            h.add(slot * 5_000, 100_000);
        }
        assert_eq!(h.form_name(), "hash");
        // Back to sorted when small again.
        for slot in 0..16 {
            s.remove(slot * 5, 100);
            h.remove(slot * 5_000, 100_000);
        }
        assert_eq!((s.form_name(), h.form_name()), ("sorted", "sorted"));
        assert_eq!(sorted(&s), vec![80, 85, 90, 95]);
        assert_eq!(sorted(&h), vec![80_000, 85_000, 90_000, 95_000]);
    }

    #[test]
    fn bitmap_grows_past_its_words_and_thins_to_hash() {
        let mut s = SlotSet::from_slots(&(0..40).collect::<Vec<_>>(), 64);
        assert_eq!(s.form_name(), "bitmap");
        s.add(1_000, 1_001);
        assert!(sorted(&s).contains(&1_000));
        // The shard grew to 100k slots: 41 postings are sparse now.
        s.remove(0, 100_000);
        assert_eq!(s.form_name(), "hash");
        assert_eq!(s.len(), 40);
    }

    proptest::proptest! {
        #[test]
        fn matches_a_set(ops in proptest::collection::vec((0u32..300, proptest::bool::ANY), 1..400), slots in 300usize..20_000) {
            use std::collections::BTreeSet;
            let mut s = SlotSet::default();
            let mut model = BTreeSet::new();
            for (slot, add) in ops {
                if add {
                    if model.insert(slot) {
                        s.add(slot, slots);
                    }
                } else {
                    model.remove(&slot);
                    s.remove(slot, slots);
                }
                proptest::prop_assert_eq!(s.len(), model.len());
                proptest::prop_assert_eq!(sorted(&s), model.iter().copied().collect::<Vec<_>>());
            }
        }
    }
}
