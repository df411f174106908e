//! The sharded store: public API.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dict::{TagDict, MAX_DISTINCT_TAGS};
use crate::malloc_size;
use crate::object::{
    charge_for, CachedObject, ObjectBuilder, PrimaryKey, TagId, Variance, MAX_HEADERS_BYTES,
};
use crate::shard::{HeapParts, InsertCtx, Shard, ShardInner};

/// Default byte ceiling: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Default number of shards.
pub const DEFAULT_SHARDS: usize = 16;
/// Most shards a store may have.
pub const MAX_SHARDS: usize = 4096;
/// Default ceiling on one object's charge: 16 MiB (further capped by the
/// shard budget, `max_bytes / shards`).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 16 << 20;
/// Default number of variants kept under one primary key; inserting one more
/// drops the oldest (protects against `Vary: User-Agent`-style explosions).
pub const DEFAULT_MAX_VARIANTS: usize = 16;
/// Default share of each shard's bytes for the S3-FIFO small queue.
pub const DEFAULT_SMALL_QUEUE_PERCENT: u8 = 10;
/// Most distinct tags one object may carry.
pub const MAX_TAGS_PER_OBJECT: usize = 16_384;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 1024;

/// Store configuration. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Hard ceiling of accounted bytes (payload + per-object and per-tag
    /// overheads + tag dictionary). Split evenly between shards.
    pub max_bytes: u64,
    /// Number of shards (clamped to `1..=MAX_SHARDS`). More shards, less lock
    /// contention; each shard evicts on its own.
    pub shards: usize,
    /// Largest charge one object may have (also capped by the shard budget).
    pub max_object_bytes: u64,
    /// Variants kept under one primary key.
    pub max_variants: usize,
    /// S3-FIFO small-queue share of each shard, in percent (clamped 1..=90).
    pub small_queue_percent: u8,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            shards: DEFAULT_SHARDS,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_variants: DEFAULT_MAX_VARIANTS,
            small_queue_percent: DEFAULT_SMALL_QUEUE_PERCENT,
        }
    }
}

/// Result of [`Store::lookup`].
#[derive(Clone, Debug)]
pub enum Lookup {
    /// A fresh object (`now < created + ttl`). Its hit counter was bumped.
    Fresh(CachedObject),
    /// An expired object still retained: within grace (servable stale while
    /// refreshing; check [`CachedObject::in_grace`]) or within keep (only for
    /// conditional revalidation, or unlimited grace while the backend is
    /// sick). Its hit counter was bumped.
    Stale(CachedObject),
    /// A live hit-for-miss marker: fetch from the backend without coalescing.
    HitForMiss,
    /// Nothing usable.
    Miss,
}

impl Lookup {
    /// A short label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Lookup::Fresh(_) => "fresh",
            Lookup::Stale(_) => "stale",
            Lookup::HitForMiss => "hit_for_miss",
            Lookup::Miss => "miss",
        }
    }

    /// The object of a fresh or stale hit.
    pub fn object(&self) -> Option<&CachedObject> {
        match self {
            Lookup::Fresh(o) | Lookup::Stale(o) => Some(o),
            Lookup::HitForMiss | Lookup::Miss => None,
        }
    }
}

/// Why an insert was refused. The response is then simply not cached.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertError {
    /// The object's charge exceeds the per-object ceiling.
    #[error("object too large: charge {charge} > {max} bytes")]
    TooLarge {
        /// Charge of the object.
        charge: u64,
        /// Effective per-object ceiling.
        max: u64,
    },
    /// More distinct tags than [`MAX_TAGS_PER_OBJECT`].
    #[error("too many tags: {count} > {max}")]
    TooManyTags {
        /// Distinct tags given.
        count: usize,
        /// The ceiling.
        max: usize,
    },
    /// A tag longer than [`MAX_TAG_LEN`].
    #[error("tag too long: {len} > {max} bytes")]
    TagTooLong {
        /// Length of the offending tag.
        len: usize,
        /// The ceiling.
        max: usize,
    },
    /// The tag dictionary holds its maximum of distinct tags.
    #[error("tag dictionary full ({max} distinct tags)")]
    TagDictionaryFull {
        /// The ceiling.
        max: usize,
    },
    /// The header block is longer than [`MAX_HEADERS_BYTES`].
    #[error("header block too large: {len} > {max} bytes")]
    HeadersTooLarge {
        /// Length of the header block.
        len: usize,
        /// The ceiling.
        max: usize,
    },
    /// The shard could not make room (its dictionary share leaves too little).
    #[error("no space in shard for {charge} bytes")]
    NoSpace {
        /// Charge of the object.
        charge: u64,
    },
}

/// What a purge did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Distinct tags that matched (0 for the "all" purges).
    pub tags_matched: usize,
    /// Objects evicted (hard) or marked stale (soft).
    pub objects: usize,
    /// Accounted bytes freed (0 for soft purges).
    pub bytes_freed: u64,
}

impl std::ops::AddAssign for PurgeStats {
    fn add_assign(&mut self, o: PurgeStats) {
        self.tags_matched += o.tags_matched;
        self.objects += o.objects;
        self.bytes_freed += o.bytes_freed;
    }
}

/// Counters and gauges of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live objects (including hit-for-miss markers).
    pub objects: usize,
    /// Accounted bytes: object charges plus the tag dictionary. Never above
    /// `max_bytes`.
    pub bytes_accounted: u64,
    /// The configured ceiling.
    pub max_bytes: u64,
    /// Body + header bytes of live objects.
    pub payload_bytes: u64,
    /// Tag references (sum over objects of their distinct tags).
    pub tag_refs: usize,
    /// Distinct tags in the dictionary.
    pub distinct_tags: usize,
    /// Accounted bytes of the dictionary (part of `bytes_accounted`).
    pub dict_bytes: u64,
    /// Fresh hits.
    pub hits: u64,
    /// Stale hits (grace or keep).
    pub stale_hits: u64,
    /// Misses.
    pub misses: u64,
    /// Hit-for-miss lookups.
    pub hit_for_miss: u64,
    /// Objects inserted.
    pub inserts: u64,
    /// Objects evicted for space.
    pub evictions: u64,
    /// Objects removed by hard purges.
    pub purged: u64,
    /// Objects marked stale by soft purges.
    pub soft_purged: u64,
    /// Objects replaced by a newer insert (same key and variance, or the
    /// oldest variant over the cap).
    pub replaced: u64,
    /// Objects removed by [`Store::remove`].
    pub removed: u64,
    /// Objects removed by [`Store::remove_expired`].
    pub expired: u64,
    /// Inserts refused.
    pub rejected: u64,
}

/// Heap bytes of the store by part, for the memory benchmark. Allocation
/// sizes follow glibc malloc (8-byte header, 16-byte granularity, 32-byte
/// minimum). Body and header bytes are payload, not overhead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Live objects.
    pub objects: usize,
    /// Tag references.
    pub tag_refs: usize,
    /// Distinct tags.
    pub distinct_tags: usize,
    /// Object allocations: refcount, metadata, tag ids, header block and
    /// body (payload included; see `overhead_bytes`).
    pub object_allocs: usize,
    /// Header bytes (payload) inside the data allocations.
    pub header_bytes: usize,
    /// Body bytes (payload) inside the data allocations.
    pub body_bytes: usize,
    /// Tag id bytes inside the data allocations.
    pub tag_id_bytes: usize,
    /// Slab arrays: object handles and the free list.
    pub slot_arrays: usize,
    /// Key index tables.
    pub key_index: usize,
    /// S3-FIFO queues.
    pub queues: usize,
    /// Ghost filters.
    pub ghost: usize,
    /// Per-shard tag → objects postings.
    pub tag_index: usize,
    /// Tag dictionary.
    pub dictionary: usize,
    /// Shard array and fixed parts.
    pub fixed: usize,
}

impl MemoryReport {
    /// Everything but payload (header and body bytes).
    pub fn overhead_bytes(&self) -> usize {
        self.object_allocs
            + self.slot_arrays
            + self.key_index
            + self.queues
            + self.ghost
            + self.tag_index
            + self.dictionary
            + self.fixed
            - self.header_bytes
            - self.body_bytes
    }

    /// The part of the overhead that grows with tag references: tag ids in
    /// the data allocations, postings and the dictionary.
    pub fn tag_overhead_bytes(&self) -> usize {
        self.tag_id_bytes + self.tag_index + self.dictionary
    }

    /// Overhead per object, not counting the tag part.
    pub fn object_overhead_per_object(&self) -> f64 {
        (self.overhead_bytes() - self.tag_overhead_bytes()) as f64 / self.objects.max(1) as f64
    }

    /// Tag overhead per tag reference.
    pub fn tag_overhead_per_ref(&self) -> f64 {
        self.tag_overhead_bytes() as f64 / self.tag_refs.max(1) as f64
    }
}

/// The in-memory object store of the full-page cache. `Send + Sync`; share
/// it behind an `Arc`.
pub struct Store {
    shards: Box<[Shard]>,
    dict: TagDict,
    config: StoreConfig,
    budget: i64,
    small_target: u64,
    max_object: u64,
    soft_purged: AtomicU64,
    rejected: AtomicU64,
    observer: Option<PurgeObserver>,
}

/// Called with each object a purge removes or marks stale (see
/// [`Store::with_purge_observer`]).
pub type PurgeObserver = Box<dyn Fn(&CachedObject) + Send + Sync>;

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new(StoreConfig::default())
    }
}

/// The shard of a key: bytes 8..16 (bytes 0..8 hash inside the shard).
fn shard_index(key: &PrimaryKey, n: usize) -> usize {
    let hi = u64::from_le_bytes([
        key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
    ]);
    (hi % n as u64) as usize
}

impl Store {
    /// A store with `config` (out-of-range values are clamped).
    pub fn new(config: StoreConfig) -> Store {
        let shards = config.shards.clamp(1, MAX_SHARDS);
        let small_queue_percent = config.small_queue_percent.clamp(1, 90);
        let budget = config.max_bytes / shards as u64;
        let config = StoreConfig {
            shards,
            small_queue_percent,
            max_variants: config.max_variants.max(1),
            ..config
        };
        Store {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            dict: TagDict::new(),
            budget: i64::try_from(budget).unwrap_or(i64::MAX),
            small_target: budget / 100 * u64::from(small_queue_percent),
            max_object: config.max_object_bytes.min(budget),
            config,
            soft_purged: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            observer: None,
        }
    }

    /// Calls `observer` with each object a purge (by tags, by pattern, of
    /// everything tagged, soft or hard) removes or marks stale. Hard purges
    /// call it after the shard's lock is released; soft purges under its
    /// read lock, so it must be cheap and must not call into the store.
    /// Evictions, replacements, [`Store::remove`], [`Store::purge_all`] and
    /// [`Store::soft_purge_all`] do not call it.
    pub fn with_purge_observer(mut self, observer: PurgeObserver) -> Store {
        self.observer = Some(observer);
        self
    }

    /// A write that reports the objects it removed to the purge observer.
    fn purge_write<R>(&self, shard: &Shard, op: impl FnOnce(&mut ShardInner) -> R) -> R {
        let mut g = shard.inner.write();
        let result = op(&mut g);
        let dead = g.take_graveyard();
        drop(g);
        if let Some(f) = &self.observer {
            for o in &dead {
                f(o);
            }
        }
        drop(dead);
        result
    }

    /// The effective (clamped) configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn shard(&self, key: &PrimaryKey) -> &Shard {
        &self.shards[shard_index(key, self.shards.len())]
    }

    /// Looks `key` up. `select` picks the variant: it is called under the
    /// shard's read lock for each retained object stored under `key` and must
    /// be cheap and must not call into the store. If several variants match,
    /// the newest wins.
    ///
    /// Bumps the object's hit counter and S3-FIFO frequency on `Fresh` and
    /// `Stale`. Objects past `created + ttl + grace + keep` are a `Miss`.
    pub fn lookup(
        &self,
        key: &PrimaryKey,
        select: impl Fn(&CachedObject) -> bool,
        now_ms: u64,
    ) -> Lookup {
        self.shard(key).lookup(key, select, now_ms)
    }

    /// Stores `obj` under `(key, variance)`, replacing the object with the
    /// same variance, evicting by S3-FIFO until it fits. Returns the shared
    /// object so the writer can deliver the very same object (its hit counter
    /// is 0: Magento's debug header says `MISS`).
    ///
    /// # Errors
    ///
    /// [`InsertError`] when the object is too large, has too many or too
    /// long tags, or the tag dictionary is full. Nothing is stored then.
    pub fn insert(
        &self,
        key: PrimaryKey,
        variance: impl Into<Variance>,
        mut obj: ObjectBuilder,
        now_ms: u64,
    ) -> Result<CachedObject, InsertError> {
        let result = self.try_insert(key, variance.into(), &mut obj, now_ms);
        if result.is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn try_insert(
        &self,
        key: PrimaryKey,
        variance: Variance,
        obj: &mut ObjectBuilder,
        now_ms: u64,
    ) -> Result<CachedObject, InsertError> {
        let mut tags = std::mem::take(&mut obj.tags);
        tags.sort_unstable();
        tags.dedup();
        if tags.len() > MAX_TAGS_PER_OBJECT {
            return Err(InsertError::TooManyTags {
                count: tags.len(),
                max: MAX_TAGS_PER_OBJECT,
            });
        }
        if let Some(t) = tags.iter().find(|t| t.len() > MAX_TAG_LEN) {
            return Err(InsertError::TagTooLong {
                len: t.len(),
                max: MAX_TAG_LEN,
            });
        }
        if obj.headers.len() > MAX_HEADERS_BYTES {
            return Err(InsertError::HeadersTooLarge {
                len: obj.headers.len(),
                max: MAX_HEADERS_BYTES,
            });
        }
        let charge = charge_for(obj.payload_bytes(), tags.len());
        if charge > self.max_object {
            return Err(InsertError::TooLarge {
                charge,
                max: self.max_object,
            });
        }
        let names: Vec<&str> = tags.iter().map(String::as_str).collect();

        let shard = self.shard(&key);
        self.write(shard, |shard| {
            let acquired = self.dict.acquire(&names);
            shard.bytes += acquired.created as i64;
            let mut ids = acquired.ids;
            if acquired.full {
                shard.release_all(&ids, &self.dict);
                return Err(InsertError::TagDictionaryFull {
                    max: MAX_DISTINCT_TAGS,
                });
            }
            ids.sort_unstable();
            let built = std::mem::replace(obj, ObjectBuilder::new(0, bytes::Bytes::new()));
            let object = built.build(key, variance, &ids, now_ms);
            let ctx = InsertCtx {
                dict: &self.dict,
                budget: self.budget,
                small_target: self.small_target,
                max_variants: self.config.max_variants,
            };
            if shard.insert(object.clone(), &ctx) {
                Ok(object)
            } else {
                shard.release_all(&ids, &self.dict);
                Err(InsertError::NoSpace { charge })
            }
        })
    }

    /// Runs a write operation on `shard`, then frees the objects it removed
    /// after the lock is released.
    fn write<R>(&self, shard: &Shard, op: impl FnOnce(&mut ShardInner) -> R) -> R {
        let mut g = shard.inner.write();
        let result = op(&mut g);
        let dead = g.take_graveyard();
        drop(g);
        drop(dead);
        result
    }

    /// Removes every variant of `key`; returns how many.
    pub fn remove(&self, key: &PrimaryKey) -> usize {
        self.write(self.shard(key), |g| g.remove_key(key, &self.dict))
    }

    /// Hard purge: evicts every object carrying any of `tags` (exact names).
    /// Costs O(shards + objects matched). Objects inserted after the call
    /// are not affected.
    pub fn purge_tags(&self, tags: &[&str]) -> PurgeStats {
        let ids = self.dict.lookup(tags);
        self.purge_ids(&ids)
    }

    /// Soft purge: marks every object carrying any of `tags` as expired at
    /// `now_ms`; it stays servable as `Stale` for its grace (from `now_ms`).
    pub fn soft_purge_tags(&self, tags: &[&str], now_ms: u64) -> PurgeStats {
        let ids = self.dict.lookup(tags);
        self.soft_purge_ids(&ids, now_ms)
    }

    /// Hard purge of every tag whose name satisfies `pred` (the regex
    /// fallback for patterns that are not a list of exact tags). `pred` runs
    /// once per distinct tag in the dictionary, never per object.
    pub fn purge_matching(&self, pred: impl FnMut(&str) -> bool) -> PurgeStats {
        let ids = self.dict.matching(pred);
        self.purge_ids(&ids)
    }

    /// Soft variant of [`Store::purge_matching`].
    pub fn soft_purge_matching(&self, pred: impl FnMut(&str) -> bool, now_ms: u64) -> PurgeStats {
        let ids = self.dict.matching(pred);
        self.soft_purge_ids(&ids, now_ms)
    }

    /// Magento's full flush (`X-Magento-Tags-Pattern: .*`): evicts every
    /// object that has at least one tag. Objects without tags stay, as in
    /// Varnish, where `obj.http.X-Magento-Tags ~ ".*"` does not match an
    /// object lacking the header. O(objects): about 0.9 µs an object in the
    /// benchmark; shards are write-locked one at a time and the objects are
    /// freed after each shard is unlocked.
    pub fn purge_all_tagged(&self) -> PurgeStats {
        let mut stats = PurgeStats::default();
        for shard in self.shards.iter() {
            let (objects, bytes_freed) =
                self.purge_write(shard, |g| g.purge_all_tagged(&self.dict));
            stats += PurgeStats {
                tags_matched: 0,
                objects,
                bytes_freed,
            };
        }
        stats
    }

    /// Soft variant of [`Store::purge_all_tagged`].
    pub fn soft_purge_all_tagged(&self, now_ms: u64) -> PurgeStats {
        self.soft_purge_each_shard(now_ms, true, |g| g.all_tagged_slots())
    }

    /// Marks every object stale, tagged or not: served again only within
    /// grace (backend down) until refetched. For a replica that may have
    /// missed purges and must not serve what it cached before as fresh.
    pub fn soft_purge_all(&self, now_ms: u64) -> PurgeStats {
        self.soft_purge_each_shard(now_ms, false, |g| g.all_slots())
    }

    /// Soft-purges the slots `pick` chooses, one shard (read lock) at a time.
    fn soft_purge_each_shard(
        &self,
        now_ms: u64,
        observe: bool,
        pick: impl Fn(&crate::shard::ShardInner) -> Vec<u32>,
    ) -> PurgeStats {
        let mut objects = 0;
        let observer = self.observer.as_deref().filter(|_| observe);
        for shard in self.shards.iter() {
            let g = shard.inner.read();
            let slots = pick(&g);
            objects += g.soft_purge_slots(&slots, now_ms, observer);
        }
        self.soft_purged
            .fetch_add(objects as u64, Ordering::Relaxed);
        PurgeStats {
            tags_matched: 0,
            objects,
            bytes_freed: 0,
        }
    }

    /// Evicts everything, tagged or not (for a replica that cannot prove its
    /// objects fresh, e.g. after missing purge messages).
    pub fn purge_all(&self) -> PurgeStats {
        let mut stats = PurgeStats::default();
        for shard in self.shards.iter() {
            let (objects, bytes_freed, old) = shard.inner.write().clear(&self.dict);
            drop(old);
            stats += PurgeStats {
                tags_matched: 0,
                objects,
                bytes_freed,
            };
        }
        stats
    }

    /// Removes objects past `created + ttl + grace + keep` (a janitor task
    /// may call this; eviction also reclaims them, as they are never hit).
    /// O(objects), one shard at a time.
    pub fn remove_expired(&self, now_ms: u64) -> usize {
        self.shards
            .iter()
            .map(|s| self.write(s, |g| g.remove_expired(now_ms, &self.dict)))
            .sum()
    }

    fn purge_ids(&self, ids: &[TagId]) -> PurgeStats {
        let mut stats = PurgeStats {
            tags_matched: ids.len(),
            ..PurgeStats::default()
        };
        if ids.is_empty() {
            return stats;
        }
        for shard in self.shards.iter() {
            // Look under the read lock first so shards without the tag never
            // block their readers.
            if shard.inner.read().tagged_slots(ids).is_empty() {
                continue;
            }
            let (objects, bytes) = self.purge_write(shard, |g| {
                let slots = g.tagged_slots(ids);
                g.purge_slots(&slots, &self.dict)
            });
            stats.objects += objects;
            stats.bytes_freed += bytes;
        }
        stats
    }

    fn soft_purge_ids(&self, ids: &[TagId], now_ms: u64) -> PurgeStats {
        let mut objects = 0;
        if !ids.is_empty() {
            for shard in self.shards.iter() {
                let g = shard.inner.read();
                let slots = g.tagged_slots(ids);
                objects += g.soft_purge_slots(&slots, now_ms, self.observer.as_deref());
            }
        }
        self.soft_purged
            .fetch_add(objects as u64, Ordering::Relaxed);
        PurgeStats {
            tags_matched: ids.len(),
            objects,
            bytes_freed: 0,
        }
    }

    /// The name of an interned tag, if it is still in the dictionary.
    pub fn tag_name(&self, id: TagId) -> Option<String> {
        self.dict.name(id)
    }

    /// The tag names of `obj` (for logs, debugging and the L2 encoding).
    pub fn tag_names(&self, obj: &CachedObject) -> Vec<String> {
        obj.tag_ids().filter_map(|t| self.dict.name(t)).collect()
    }

    /// Counters and gauges (one read lock per shard, one at a time).
    pub fn stats(&self) -> StoreStats {
        let (distinct_tags, dict_bytes) = self.dict.stats();
        let mut s = StoreStats {
            max_bytes: self.config.max_bytes,
            distinct_tags,
            dict_bytes,
            soft_purged: self.soft_purged.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            ..StoreStats::default()
        };
        let mut bytes: i64 = 0;
        for shard in self.shards.iter() {
            let g = shard.inner.read();
            let h = &g.hot;
            s.hits += h.hits.load(Ordering::Relaxed);
            s.stale_hits += h.stale_hits.load(Ordering::Relaxed);
            s.misses += h.misses.load(Ordering::Relaxed);
            s.hit_for_miss += h.hit_for_miss.load(Ordering::Relaxed);
            bytes += g.bytes;
            s.objects += g.objects;
            s.payload_bytes += g.payload;
            s.tag_refs += g.tag_refs;
            let c = g.counters;
            s.inserts += c.inserts;
            s.evictions += c.evictions;
            s.purged += c.purged;
            s.replaced += c.replaced;
            s.removed += c.removed;
            s.expired += c.expired;
        }
        s.bytes_accounted = u64::try_from(bytes).unwrap_or(0);
        s
    }

    /// Heap bytes by part (walks every object; for benchmarks and tests).
    pub fn memory_report(&self) -> MemoryReport {
        let mut parts = HeapParts::default();
        let mut r = MemoryReport::default();
        for shard in self.shards.iter() {
            let g = shard.inner.read();
            parts += g.heap_parts();
            r.objects += g.objects;
            r.tag_refs += g.tag_refs;
        }
        let (distinct_tags, _) = self.dict.stats();
        r.distinct_tags = distinct_tags;
        r.object_allocs = parts.object_allocs;
        r.header_bytes = parts.header_bytes;
        r.body_bytes = parts.body_bytes;
        r.tag_id_bytes = parts.tag_id_bytes;
        r.slot_arrays = parts.slot_arrays;
        r.key_index = parts.key_index;
        r.queues = parts.queues;
        r.ghost = parts.ghost;
        r.tag_index = parts.tag_index;
        r.dictionary = self.dict.heap_bytes();
        r.fixed = malloc_size(self.shards.len() * std::mem::size_of::<Shard>());
        r
    }

    /// Distinct `(tag, shard)` index entries (diagnostics).
    pub fn tag_index_entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.inner.read().distinct_tags())
            .sum()
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut charges = 0u64;
        let mut bytes = 0i64;
        for shard in self.shards.iter() {
            let g = shard.inner.read();
            g.check_invariants();
            assert!(g.bytes <= self.budget, "shard over budget");
            bytes += g.bytes;
            charges += g.object_charges();
        }
        let (_, dict_bytes) = self.dict.stats();
        assert_eq!(bytes, (charges + dict_bytes) as i64, "accounting drift");
    }
}
