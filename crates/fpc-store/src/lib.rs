//! The in-memory object store of the magestack full-page cache, with its tag
//! index.
//!
//! # What it is
//!
//! A byte-bounded, sharded map from a 16-byte primary key (plus a variance for
//! `Vary`) to `Arc<CachedObject>`: status, a pre-encoded header block, the
//! body, TTL/grace/keep, the object's tags, a hit counter and the
//! hit-for-miss / soft-purged flags. The insert copies the header block and
//! the body into the object's one buffer; a hit returns an `Arc` clone and
//! [`CachedObject::body`] a [`bytes::Bytes`] pointing into that buffer:
//! body bytes are never copied on hits.
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
//! probes a hash table and bumps atomics (object hit counter, the slot's
//! 2-bit frequency, a per-shard counter); there is no global lock. The tag
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
//! | allocations (`memory_report`) | 145.6 B | 17.8 B (id 4 + postings 11.1 + dictionary 2.7) |
//! | RSS delta − payload (headers + bodies), / objects | 240.2 B (156.4 beyond 16 B per tag ref) | |
//! | accounted (`bytes_accounted − payload`) | 251.1 B | |
//!
//! So [`OBJECT_OVERHEAD`] = 152 (145.6, plus ~2.5 B of ghost filter once
//! eviction runs, plus margin; RSS says 156.4 beyond 16 B per tag reference,
//! the rest being the tag part's 1.8 B per reference above 16),
//! [`TAG_REF_OVERHEAD`] = 16 (id + postings = 15.1) and
//! [`DICT_ENTRY_OVERHEAD`] = 64 (≈ 59 measured, per distinct tag, plus its
//! name) keep the accounted bytes at or above what the process really uses
//! for this workload. (Before each object had one data buffer: 165.8 B by
//! allocations, 186.1 B by RSS, charged 176.)
//!
//! The per-object part: the `Arc` allocation of the 72-byte
//! [`CachedObject`] is 96 bytes with the refcounts and malloc's header (the
//! 72 are a weak self-pointer so [`CachedObject::body`] can hand out a
//! `Bytes` that keeps the object alive, the 16-byte data pointer, the
//! 16-byte key, variance, insert time, TTL, hits, status, tag count, flags
//! and frequency); the data buffer's 12-byte prefix (grace, keep, header
//! length) and its malloc header and rounding (≈ 13.5); the slab pointer and
//! meta byte (9.4), the key index bucket (10.5 at this fill; 6–11 with
//! hashbrown's load factor) and a queue entry (4.2). Each call of
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
mod store;

pub use dict::MAX_DISTINCT_TAGS;
pub use object::{
    CachedObject, HeaderIter, ObjectBuilder, PrimaryKey, TagId, Variance, MAX_DURATION_MS,
};
pub use store::{
    InsertError, Lookup, MemoryReport, PurgeStats, Store, StoreConfig, StoreStats,
    DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECT_BYTES, DEFAULT_MAX_VARIANTS, DEFAULT_SHARDS,
    DEFAULT_SMALL_QUEUE_PERCENT, MAX_SHARDS, MAX_TAGS_PER_OBJECT, MAX_TAG_LEN,
};

/// Bytes charged per object on top of its payload (see the crate docs for
/// how it was measured).
pub const OBJECT_OVERHEAD: u64 = 152;

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
