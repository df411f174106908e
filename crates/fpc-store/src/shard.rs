//! One shard: a slab of objects with `u32` handles, the key index, the
//! S3-FIFO queues and the shard's part of the tag index, behind one `RwLock`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use parking_lot::RwLock;

use crate::dict::TagDict;
use crate::ghost::Ghost;
use crate::object::{CachedObject, PrimaryKey, TagId};
use crate::postings::{TagIndex, MAX_SLOT};
use crate::{malloc_size, Lookup};

// A slot holding `None` is either free (on the free list, in no queue) or a
// tombstone: its object was removed but its queue entry is still queued; the
// slot is freed when the eviction hand (or a compaction) reaches the entry.
// Which queue a live object is in is a flag of the object.

/// Small-queue objects with at least this frequency move to main.
const PROMOTE_MIN_FREQ: u8 = 1;
const MAX_FREQ: u8 = 3;

#[inline]
pub(crate) fn key_hash(key: &PrimaryKey) -> u64 {
    u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ])
}

/// Why an object left the shard (for the counters).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Removal {
    Evicted,
    Purged,
    Replaced,
    Removed,
    Expired,
    /// Full flush of tagged objects: the caller drops the whole tag index
    /// afterwards, so postings are not touched one by one.
    FlushedTagged,
}

/// Counters touched on the hit path, outside the lock.
#[derive(Default)]
pub(crate) struct HotCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) stale_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) hit_for_miss: AtomicU64,
}

/// Aligned to two cache lines so neighbouring shards do not false-share.
#[repr(align(128))]
pub(crate) struct Shard {
    pub(crate) inner: RwLock<ShardInner>,
}

#[derive(Default)]
#[repr(C)]
pub(crate) struct ShardInner {
    /// First, so they share the cache line of the lock word that every
    /// reader writes anyway: a hit dirties one shard line, not two.
    pub(crate) hot: HotCounters,
    /// Slots of every object (all variants), hashed by primary key.
    index: HashTable<u32>,
    objs: Vec<Option<CachedObject>>,
    free: Vec<u32>,
    small: VecDeque<u32>,
    main: VecDeque<u32>,
    small_bytes: u64,
    main_bytes: u64,
    main_objects: usize,
    ghost: Ghost,
    tags: TagIndex,
    /// Dictionary references to release once the current operation is done.
    release: Vec<TagId>,
    /// Objects removed by the current operation, dropped by the caller after
    /// unlocking so freeing them does not lengthen the lock hold.
    graveyard: Vec<CachedObject>,

    /// Accounted bytes: object charges + dictionary bytes charged here −
    /// dictionary bytes credited here. Kept ≤ the shard budget.
    pub(crate) bytes: i64,
    pub(crate) payload: u64,
    pub(crate) objects: usize,
    pub(crate) tag_refs: usize,
    tombstones: usize,
    pub(crate) counters: Counters,
}

#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Counters {
    pub(crate) inserts: u64,
    pub(crate) evictions: u64,
    pub(crate) purged: u64,
    pub(crate) replaced: u64,
    pub(crate) removed: u64,
    pub(crate) expired: u64,
}

impl Shard {
    pub(crate) fn new() -> Shard {
        Shard {
            inner: RwLock::new(ShardInner::default()),
        }
    }

    /// The hit path: shard read lock, a hash probe, atomics.
    pub(crate) fn lookup(
        &self,
        key: &PrimaryKey,
        select: impl Fn(&CachedObject) -> bool,
        now_ms: u64,
    ) -> Lookup {
        let inner = self.inner.read();
        let mut best: Option<&CachedObject> = None;
        for &slot in inner.index.iter_hash(key_hash(key)) {
            let Some(Some(obj)) = inner.objs.get(slot as usize) else {
                continue;
            };
            if obj.key() != key || !obj.is_retained(now_ms) || !select(obj) {
                continue;
            }
            // Several matching variants: the newest wins (Varnish walks the
            // object list newest first).
            if best.is_none_or(|b| obj.created_ms() > b.created_ms()) {
                best = Some(obj);
            }
        }
        let hot = &inner.hot;
        let Some(obj) = best else {
            hot.misses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss;
        };
        if obj.is_hit_for_miss() {
            hot.hit_for_miss.fetch_add(1, Ordering::Relaxed);
            return Lookup::HitForMiss;
        }
        obj.record_hit();
        obj.bump_freq(MAX_FREQ);
        if obj.is_fresh(now_ms) {
            hot.hits.fetch_add(1, Ordering::Relaxed);
            Lookup::Fresh(obj.clone())
        } else {
            hot.stale_hits.fetch_add(1, Ordering::Relaxed);
            Lookup::Stale(obj.clone())
        }
    }
}

/// What an insert needs from the store.
pub(crate) struct InsertCtx<'a> {
    pub(crate) dict: &'a TagDict,
    pub(crate) budget: i64,
    pub(crate) small_target: u64,
    pub(crate) max_variants: usize,
}

impl ShardInner {
    fn obj(&self, slot: u32) -> Option<&CachedObject> {
        self.objs.get(slot as usize).and_then(Option::as_ref)
    }

    /// Slots of every variant stored under `key`.
    fn variants(&self, key: &PrimaryKey) -> Vec<u32> {
        self.index
            .iter_hash(key_hash(key))
            .copied()
            .filter(|&s| self.obj(s).is_some_and(|o| o.key() == key))
            .collect()
    }

    /// Removes the object in `slot`: index, postings and accounting at once;
    /// the queue entry stays as a tombstone.
    pub(crate) fn remove_slot(&mut self, slot: u32, why: Removal) -> Option<u64> {
        let obj = self.objs.get_mut(slot as usize)?.take()?;
        let hash = key_hash(obj.key());
        if let Ok(e) = self.index.find_entry(hash, |&s| s == slot) {
            e.remove();
        }
        if why != Removal::FlushedTagged {
            for tag in obj.tag_ids() {
                if self.tags.remove(tag, slot, self.objs.len()) {
                    self.release.push(tag);
                }
            }
        }
        let charge = obj.charge();
        self.bytes -= charge as i64;
        self.payload -= obj.payload_bytes() as u64;
        self.objects -= 1;
        self.tag_refs -= obj.tag_count();
        if obj.in_main() {
            self.main_bytes -= charge;
            self.main_objects -= 1;
        } else {
            self.small_bytes -= charge;
        }
        self.tombstones += 1;
        let c = &mut self.counters;
        match why {
            Removal::Evicted => c.evictions += 1,
            Removal::Purged | Removal::FlushedTagged => c.purged += 1,
            Removal::Replaced => c.replaced += 1,
            Removal::Removed => c.removed += 1,
            Removal::Expired => c.expired += 1,
        }
        self.graveyard.push(obj);
        Some(charge)
    }

    /// Objects removed since the last call, to drop outside the lock.
    pub(crate) fn take_graveyard(&mut self) -> Vec<CachedObject> {
        std::mem::take(&mut self.graveyard)
    }

    /// Releases dictionary references dropped by removals and credits the
    /// freed dictionary bytes to this shard. Call at the end of every write
    /// operation.
    pub(crate) fn flush_releases(&mut self, dict: &TagDict) {
        if !self.release.is_empty() {
            let freed = dict.release(&self.release);
            self.bytes -= freed as i64;
            self.release.clear();
        }
    }

    fn free_slot(&mut self, slot: u32) {
        self.free.push(slot);
        self.tombstones -= 1;
    }

    /// Drops tombstones from both queues when they outnumber live objects.
    fn maybe_compact(&mut self) {
        if self.tombstones < 64 || self.tombstones < self.objects {
            return;
        }
        let mut dead = Vec::with_capacity(self.tombstones);
        for q in [&mut self.small, &mut self.main] {
            q.retain(|&s| {
                let gone = self.objs.get(s as usize).is_none_or(Option::is_none);
                if gone {
                    dead.push(s);
                }
                !gone
            });
        }
        for s in dead {
            self.free_slot(s);
        }
        self.small.shrink_to(self.small.len() * 2);
        self.main.shrink_to(self.main.len() * 2);
    }

    /// Evicts one object by S3-FIFO. Returns false when nothing is left.
    fn evict_one(&mut self, small_target: u64) -> bool {
        loop {
            let from_small = !self.small.is_empty()
                && (self.small_bytes >= small_target || self.main.is_empty());
            if from_small {
                let Some(slot) = self.small.pop_front() else {
                    continue;
                };
                if self.obj(slot).is_none() {
                    self.free_slot(slot);
                    continue;
                }
                let (freq, charge) = self.obj(slot).map_or((0, 0), |o| (o.freq(), o.charge()));
                if freq >= PROMOTE_MIN_FREQ {
                    // Re-referenced while in small: promote, frequency reset.
                    if let Some(o) = self.obj(slot) {
                        o.set_freq(0);
                        o.set_in_main(true);
                    }
                    self.small_bytes -= charge;
                    self.main_bytes += charge;
                    self.main_objects += 1;
                    self.main.push_back(slot);
                    continue;
                }
                if let Some(obj) = self.obj(slot) {
                    let fp = key_hash(obj.key());
                    let window = self.ghost_window(small_target);
                    self.ghost.insert(fp, window);
                }
                self.remove_slot(slot, Removal::Evicted);
                // The tombstone just made is not queued any more.
                self.free_slot(slot);
                return true;
            }
            let Some(slot) = self.main.pop_front() else {
                return false;
            };
            if self.obj(slot).is_none() {
                self.free_slot(slot);
                continue;
            }
            if let Some(o) = self.obj(slot).filter(|o| o.freq() > 0) {
                o.set_freq(o.freq() - 1);
                self.main.push_back(slot);
                continue;
            }
            self.remove_slot(slot, Removal::Evicted);
            self.free_slot(slot);
            return true;
        }
    }

    /// The ghost remembers about as many keys as main holds objects.
    fn ghost_window(&self, small_target: u64) -> usize {
        let avg = if self.objects == 0 {
            1
        } else {
            (self.small_bytes + self.main_bytes) / self.objects as u64
        };
        let main_capacity = (small_target.saturating_mul(9)) / avg.max(1);
        usize::try_from(main_capacity)
            .unwrap_or(usize::MAX)
            .max(self.main_objects)
    }

    /// Inserts `obj` (already built, its tag references taken). Returns false
    /// if it does not fit even in an empty shard; the caller then undoes.
    pub(crate) fn insert(&mut self, obj: CachedObject, ctx: &InsertCtx<'_>) -> bool {
        let key = *obj.key();
        let variance = obj.variance();
        let charge = obj.charge() as i64;
        let mut to_main = self.ghost.contains(key_hash(&key));

        // Replace the same variance; cap the number of variants.
        let mut variants = self.variants(&key);
        // A hit-for-miss marker and real objects do not live side by side:
        // a marker matches every variance, so "newest wins" would decide
        // between them, and two inserts in the same millisecond would tie.
        // A cacheable answer ends the marker; a marker shadows (ends) the
        // variants, as it would at every lookup.
        let marker = obj.is_hit_for_miss();
        let mut i = 0;
        while i < variants.len() {
            let slot = variants[i];
            let other_is_marker = self.obj(slot).is_some_and(CachedObject::is_hit_for_miss);
            if marker || other_is_marker {
                variants.swap_remove(i);
                self.remove_slot(slot, Removal::Replaced);
            } else {
                i += 1;
            }
        }
        if let Some(pos) = variants
            .iter()
            .position(|&s| self.obj(s).is_some_and(|o| o.variance() == variance))
        {
            let slot = variants.swap_remove(pos);
            to_main |= self.obj(slot).is_some_and(CachedObject::in_main);
            self.remove_slot(slot, Removal::Replaced);
        }
        while variants.len() >= ctx.max_variants.max(1) {
            let Some(pos) = (0..variants.len())
                .min_by_key(|&i| self.obj(variants[i]).map_or(0, |o| o.created_ms()))
            else {
                break;
            };
            let slot = variants.swap_remove(pos);
            self.remove_slot(slot, Removal::Replaced);
        }

        while self.bytes + charge > ctx.budget {
            if !self.evict_one(ctx.small_target) {
                break;
            }
            self.flush_releases(ctx.dict);
        }
        self.flush_releases(ctx.dict);
        if self.bytes + charge > ctx.budget {
            return false;
        }

        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = self.objs.len();
                if s > MAX_SLOT as usize {
                    return false;
                }
                self.objs.push(None);
                s as u32
            }
        };
        for tag in obj.tag_ids() {
            if !self.tags.add(tag, slot, self.objs.len()) {
                // The shard already held a reference for this tag.
                self.release.push(tag);
            }
        }
        let objs = &self.objs;
        self.index.insert_unique(key_hash(&key), slot, |&s| {
            objs.get(s as usize)
                .and_then(Option::as_ref)
                .map_or(0, |o| key_hash(o.key()))
        });
        self.bytes += charge;
        self.payload += obj.payload_bytes() as u64;
        self.objects += 1;
        self.tag_refs += obj.tag_count();
        obj.set_in_main(to_main);
        if to_main {
            self.main.push_back(slot);
            self.main_bytes += charge as u64;
            self.main_objects += 1;
        } else {
            self.small.push_back(slot);
            self.small_bytes += charge as u64;
        }
        if let Some(o) = self.objs.get_mut(slot as usize) {
            *o = Some(obj);
        }
        self.counters.inserts += 1;
        self.flush_releases(ctx.dict);
        true
    }

    /// Removes every variant of `key`.
    pub(crate) fn remove_key(&mut self, key: &PrimaryKey, dict: &TagDict) -> usize {
        let slots = self.variants(key);
        for &s in &slots {
            self.remove_slot(s, Removal::Removed);
        }
        self.flush_releases(dict);
        self.maybe_compact();
        slots.len()
    }

    /// Slots carrying any of `tags` (sorted, distinct).
    pub(crate) fn tagged_slots(&self, tags: &[TagId]) -> Vec<u32> {
        let mut out = Vec::new();
        for &t in tags {
            self.tags.collect(t, &mut out);
        }
        if tags.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// Hard purge of `slots`: returns (objects, bytes).
    pub(crate) fn purge_slots(&mut self, slots: &[u32], dict: &TagDict) -> (usize, u64) {
        let mut n = 0;
        let mut bytes = 0;
        for &s in slots {
            if let Some(c) = self.remove_slot(s, Removal::Purged) {
                n += 1;
                bytes += c;
            }
        }
        self.flush_releases(dict);
        self.maybe_compact();
        (n, bytes)
    }

    /// Soft purge of `slots` (read lock is enough: atomics only).
    pub(crate) fn soft_purge_slots(
        &self,
        slots: &[u32],
        now_ms: u64,
        observer: Option<&(dyn Fn(&CachedObject) + Send + Sync)>,
    ) -> usize {
        let mut n = 0;
        for o in slots.iter().filter_map(|&s| self.obj(s)) {
            if !o.is_hit_for_miss() {
                o.soft_purge(now_ms);
                if let Some(f) = observer {
                    f(o);
                }
                n += 1;
            }
        }
        n
    }

    /// Removes every object with at least one tag (Magento's `.*`).
    pub(crate) fn purge_all_tagged(&mut self, dict: &TagDict) -> (usize, u64) {
        let mut n = 0;
        let mut bytes = 0;
        for s in self.all_tagged_slots() {
            if let Some(c) = self.remove_slot(s, Removal::FlushedTagged) {
                n += 1;
                bytes += c;
            }
        }
        // No tagged object is left: the shard's tag index goes as a whole.
        self.release.extend(self.tags.tags());
        self.tags = TagIndex::default();
        self.flush_releases(dict);
        self.maybe_compact();
        (n, bytes)
    }

    /// Slots of every object with at least one tag.
    pub(crate) fn all_slots(&self) -> Vec<u32> {
        self.objs
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|_| i as u32))
            .collect()
    }

    pub(crate) fn all_tagged_slots(&self) -> Vec<u32> {
        self.objs
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().filter(|o| o.tag_count() > 0).map(|_| i as u32))
            .collect()
    }

    /// Removes every object (tagged or not) and resets the shard, keeping its
    /// counters and its share of dictionary bytes. Returns the old contents
    /// for the caller to drop after unlocking.
    pub(crate) fn clear(&mut self, dict: &TagDict) -> (usize, u64, ShardInner) {
        let n = self.objects;
        let bytes = self.payload_charges();
        self.counters.purged += n as u64;
        let fresh = ShardInner {
            hot: std::mem::take(&mut self.hot),
            release: self.tags.tags().collect(),
            bytes: self.bytes - bytes as i64,
            counters: self.counters,
            ghost: std::mem::take(&mut self.ghost),
            ..ShardInner::default()
        };
        let old = std::mem::replace(self, fresh);
        self.flush_releases(dict);
        (n, bytes, old)
    }

    fn payload_charges(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    #[cfg(test)]
    pub(crate) fn object_charges(&self) -> u64 {
        self.payload_charges()
    }

    /// Drops references taken for an insert that did not happen.
    pub(crate) fn release_all(&mut self, ids: &[TagId], dict: &TagDict) {
        self.release.extend_from_slice(ids);
        self.flush_releases(dict);
    }

    /// Removes objects past their keep window.
    pub(crate) fn remove_expired(&mut self, now_ms: u64, dict: &TagDict) -> usize {
        let dead: Vec<u32> = self
            .objs
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                o.as_ref()
                    .filter(|o| !o.is_retained(now_ms))
                    .map(|_| i as u32)
            })
            .collect();
        for &s in &dead {
            self.remove_slot(s, Removal::Expired);
        }
        self.flush_releases(dict);
        self.maybe_compact();
        dead.len()
    }

    pub(crate) fn distinct_tags(&self) -> usize {
        self.tags.len()
    }

    /// Structural heap bytes by part (excluding object allocations).
    pub(crate) fn heap_parts(&self) -> HeapParts {
        let slot_arrays =
            malloc_size(self.objs.capacity() * 8) + malloc_size(self.free.capacity() * 4);
        let queues = malloc_size(self.small.capacity() * 4) + malloc_size(self.main.capacity() * 4);
        let mut objects = 0;
        let mut header_bytes = 0;
        let mut body_bytes = 0;
        let mut tag_id_bytes = 0;
        for o in self.objs.iter().flatten() {
            objects += o.allocation_bytes();
            let h = o.headers().len();
            let b = o.body_bytes().len();
            let t = o.tag_count() * 4;
            header_bytes += h;
            body_bytes += b;
            tag_id_bytes += t;
        }
        HeapParts {
            object_allocs: objects,
            header_bytes,
            body_bytes,
            tag_id_bytes,
            slot_arrays,
            key_index: self.index.allocation_size(),
            queues,
            ghost: self.ghost.heap_bytes(),
            tag_index: self.tags.heap_bytes(),
        }
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let live = self.objs.iter().flatten().count();
        assert_eq!(live, self.objects);
        assert_eq!(self.index.len(), self.objects);
        let charges: u64 = self.objs.iter().flatten().map(|o| o.charge()).sum();
        assert_eq!(charges, self.small_bytes + self.main_bytes);
        let refs: usize = self.objs.iter().flatten().map(|o| o.tag_count()).sum();
        assert_eq!(refs, self.tag_refs);
        let queued = self.small.len() + self.main.len();
        assert_eq!(queued, self.objects + self.tombstones);
        for (slot, o) in self.objs.iter().enumerate() {
            if let Some(o) = o {
                for t in o.tag_ids() {
                    let mut v = Vec::new();
                    self.tags.collect(t, &mut v);
                    assert!(v.contains(&(slot as u32)));
                }
            }
        }
        assert!(self.release.is_empty());
        assert!(self.graveyard.is_empty());
    }
}

/// Heap bytes of one shard, by part.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct HeapParts {
    pub(crate) object_allocs: usize,
    pub(crate) header_bytes: usize,
    pub(crate) body_bytes: usize,
    pub(crate) tag_id_bytes: usize,
    pub(crate) slot_arrays: usize,
    pub(crate) key_index: usize,
    pub(crate) queues: usize,
    pub(crate) ghost: usize,
    pub(crate) tag_index: usize,
}

impl std::ops::AddAssign for HeapParts {
    fn add_assign(&mut self, o: HeapParts) {
        self.object_allocs += o.object_allocs;
        self.header_bytes += o.header_bytes;
        self.body_bytes += o.body_bytes;
        self.tag_id_bytes += o.tag_id_bytes;
        self.slot_arrays += o.slot_arrays;
        self.key_index += o.key_index;
        self.queues += o.queues;
        self.ghost += o.ghost;
        self.tag_index += o.tag_index;
    }
}
