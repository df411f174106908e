//! The in-memory object store of the magestack full-page cache, with its tag
//! index.
//!
//! # What it is
//!
//! A byte-bounded, sharded map from a 16-byte primary key (plus a variance for
//! `Vary`) to [`CachedObject`]: status, a pre-encoded header block, the
//! body, TTL/grace/keep, the object's tags and the hit / hit-for-miss /
//! soft-purged flags. The insert copies the tag ids, the header block and the
//! body into the object's one allocation; a hit returns a handle clone (one
//! atomic increment) and [`CachedObject::body`] a [`bytes::Bytes`] pointing
//! into that allocation: body bytes are never copied on hits.
//!
//! - [`Store::lookup`] → [`Lookup`]`::{Fresh, Stale, HitForMiss, Miss}`;
//!   [`Store::insert`], [`Store::remove`].
//! - Tags are interned into [`TagId`]s. [`Store::purge_tags`] costs
//!   O(shards + objects matched), not O(objects cached);
//!   [`Store::purge_matching`] runs a predicate (the regex fallback) over the
//!   dictionary of distinct tags, never over objects;
//!   [`Store::purge_all_tagged`] is Magento's `.*`. Each has a soft variant
//!   that marks objects expired now and keeps them for grace. A purge
//!   affects the objects present when it runs.
//! - [`coalesce`]: the sans-IO half of request coalescing (who fetches a
//!   missing key, who waits).
//!
//! # What it is not
//!
//! Pure: no tokio, no sockets, no threads, no clock. Time comes in as
//! `now_ms: u64`, a millisecond clock of the caller's choosing (monotonic in
//! the edge). It knows nothing of Magento's rules: cache keys, variance and
//! cacheability are computed by the policy crate and the edge; the Redis L2,
//! purge fan-out and the async waiting of coalesced requests live in the edge.
//!
//! # Threads and locks
//!
//! The store is split into shards picked by key bytes 8..16 (keys are
//! already hashes). Each shard is one `parking_lot::RwLock` over a slab of
//! objects addressed by `u32` slots, a key index, the S3-FIFO queues and the
//! shard's part of the tag index. The hit path takes one shard's read lock,
//! probes a hash table and bumps atomics (the object's hit flag and 2-bit
//! frequency, a per-shard counter); there is no global lock. The tag
//! dictionary is a separate `RwLock` used by inserts and purges only.
//!
//! # Memory accounting
//!
//! `max_bytes` is a hard ceiling of the accounted bytes, split evenly between
//! shards; each shard evicts until an insert fits its share, so the sum never
//! exceeds it. An object is charged
//!
//! ```text
//! body.len() + headers.len() + OBJECT_OVERHEAD + TAG_REF_OVERHEAD × tags
//! ```
//!
//! and each distinct tag in the dictionary `DICT_ENTRY_OVERHEAD + name.len()`
//! (charged to the shard whose insert created it, credited to the shard whose
//! removal freed it). Tags no object carries are dropped from the dictionary,
//! so it is bounded by the live tag references.
//!
//! The constants were measured with `examples/store_bench.rs` (1,000,000
//! objects, 5.24 tags each on average drawn like a Magento catalogue, 16
//! shards, glibc malloc, release build on x86-64), two ways: by summing the
//! real allocation sizes ([`Store::memory_report`]) and by the process RSS
//! delta (`VmRSS`) minus the payload (header blocks and bodies). Results:
//!
//! | | per object | per tag reference |
//! |---|---|---|
//! | allocations (`memory_report`) | 100.7 B | 14.7 B (id 4 + postings 8.0 + dictionary 2.7) |
//! | allocations, total / objects | 177.6 B (93.8 beyond 16 B per tag ref) | |
//! | RSS delta − payload (headers + bodies), / objects | 183.0 B (99.2 beyond 16 B per tag ref) | |
//!
//! So [`OBJECT_OVERHEAD`] = 112 (100.7, plus ~2.5 B of ghost filter once
//! eviction runs, plus margin for the RSS's 99.2 + 5.5 B of allocator
//! slack), [`TAG_REF_OVERHEAD`] = 16 (id + postings = 12) and
//! [`DICT_ENTRY_OVERHEAD`] = 64 (≈ 59 measured, per distinct tag, plus its
//! name) keep the accounted bytes at or above what the process really uses
//! for this workload. (Earlier layouts: an `Arc` object plus a data buffer,
//! 145.6 B + 17.8 B a tag reference, charged 152; before that 165.8 B.)
//!
//! The per-object part: one allocation per object holds the refcount (8),
//! a 48-byte header (16-byte key, variance, insert time, TTL, grace, header
//! length, status, tag count, flags, frequency) and the slice length (8)
//! before the (keep,) tag ids, header block and body; with malloc's header
//! and rounding that is ≈ 77.7 B. Then the slab's 8-byte handle (8.4 with
//! the free list), the key index bucket (10.5 at this fill; 6–11 with
//! hashbrown's load factor) and a queue entry (4.2). Tag postings live
//! inline in the tag index when a shard holds one to four objects of a tag,
//! then in a sorted array, a bitmap (site-wide tags: a fraction of a byte a
//! posting) or a hash set, by size and density. Each call of
//! [`CachedObject::body`] makes a transient 32-byte handle allocation,
//! freed with the `Bytes`.
//!
//! Not accounted: the fixed shard array, and page rounding of data buffers
//! large enough for malloc to `mmap` them (≥ 128 KiB by default).
//!
//! # Eviction: S3-FIFO
//!
//! Per shard, S3-FIFO (Yang et al., SOSP 2023): new objects enter a small
//! FIFO holding ~10% of the shard's bytes; objects reaching its head are
//! promoted to the main FIFO if they were hit while there, otherwise evicted
//! and remembered in a ghost filter (two rotating Bloom filters sized to the
//! main queue's object count). A key found in the ghost is inserted straight
//! into main. The main FIFO gives objects with a non-zero 2-bit frequency
//! another round (decrementing it) and evicts the rest. One-hit wonders and
//! scans therefore churn through the small queue without flushing the hot
//! set, which plain LRU does (`tests/eviction.rs` measures it). A hit is two
//! relaxed atomic operations on the slot; nothing moves in a list.
//!
//! Removed objects (purge, replace) leave a tombstone in their queue; the
//! eviction hand frees tombstones as it meets them, and a shard compacts its
//! queues when tombstones outnumber live objects.
//!
//! # Freshness
//!
//! `Fresh` while `now < created + ttl`; `Stale` until `+ grace + keep` (the
//! caller decides with [`CachedObject::in_grace`] whether to serve it: within
//! grace while the backend is healthy, any retained object while it is
//! sick); then `Miss`. Hit-for-miss markers live for their TTL only. A soft
//! purge sets the TTL to "expired now", so grace and keep count from the
//! purge, as Varnish's soft purge does. Durations are stored as `u32`
//! milliseconds and clamped to [`MAX_DURATION_MS`] (~49.7 days).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod coalesce;
mod dict;
mod ghost;
mod object;
mod postings;
mod shard;
mod slot_set;
mod store;

pub use dict::MAX_DISTINCT_TAGS;
pub use object::{
    CachedObject, HeaderIter, ObjectBuilder, PrimaryKey, TagId, Variance, MAX_DURATION_MS,
    MAX_HEADERS_BYTES,
};
pub use store::{
    InsertError, Lookup, MemoryReport, PurgeObserver, PurgeStats, Store, StoreConfig, StoreStats,
    DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECT_BYTES, DEFAULT_MAX_VARIANTS, DEFAULT_SHARDS,
    DEFAULT_SMALL_QUEUE_PERCENT, MAX_SHARDS, MAX_TAGS_PER_OBJECT, MAX_TAG_LEN,
};

/// Bytes charged per object on top of its payload (see the crate docs for
/// how it was measured).
pub const OBJECT_OVERHEAD: u64 = 112;

/// Bytes charged per tag reference of an object: the 4-byte id in the
/// object plus its posting in the shard's tag index.
pub const TAG_REF_OVERHEAD: u64 = 16;

/// Bytes charged per distinct tag in the dictionary, on top of the name.
pub const DICT_ENTRY_OVERHEAD: u64 = 64;

/// Resident size of a heap allocation of `n` bytes under glibc malloc
/// (8-byte chunk header, 16-byte granularity, 32-byte minimum).
pub(crate) fn malloc_size(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
