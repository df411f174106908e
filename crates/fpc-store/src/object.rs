//! Cached objects: what a hit hands out, and the builder a writer fills.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use bytes::Bytes;
use triomphe::{HeaderWithLength, ThinArc, UniqueArc};

use crate::{OBJECT_OVERHEAD, TAG_REF_OVERHEAD};

/// A primary cache key: a well-distributed 16-byte hash built by the policy
/// crate (URL, host, `X-Magento-Vary`, …). The store never re-hashes it.
pub type PrimaryKey = [u8; 16];

/// Longest duration a TTL, grace or keep can have, in milliseconds (about
/// 49.7 days). Longer values are clamped: an object then expires earlier than
/// asked, which a cache may always do.
pub const MAX_DURATION_MS: u64 = u32::MAX as u64;

/// The secondary key of an object: a hash of the request header values named
/// by the response's `Vary`, computed by the caller.
///
/// Several variants can live under one [`PrimaryKey`]; an insert replaces the
/// variant with the same `Variance`. Stored as 8 bytes; a 16-byte variance
/// hash is folded by [`Variance::from_hash`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variance(pub u64);

impl Variance {
    /// The variance of a response without `Vary`.
    pub const NONE: Variance = Variance(0);

    /// Folds a 16-byte variance hash into the stored 8 bytes.
    pub fn from_hash(hash: &[u8; 16]) -> Variance {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&hash[..8]);
        hi.copy_from_slice(&hash[8..]);
        Variance(u64::from_le_bytes(lo) ^ u64::from_le_bytes(hi))
    }
}

impl From<[u8; 16]> for Variance {
    fn from(hash: [u8; 16]) -> Self {
        Variance::from_hash(&hash)
    }
}

impl From<Option<[u8; 16]>> for Variance {
    fn from(hash: Option<[u8; 16]>) -> Self {
        hash.map_or(Variance::NONE, |h| Variance::from_hash(&h))
    }
}

/// An interned tag: index in the tag dictionary (low 24 bits) plus a
/// generation (high 8 bits) so a purge that raced with the reuse of an index
/// never matches the new tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagId(pub(crate) u32);

impl TagId {
    /// The raw 32-bit value (for logs and metrics; not stable across processes).
    pub fn raw(self) -> u32 {
        self.0
    }
}

pub(crate) const FLAG_HIT_FOR_MISS: u8 = 1;
pub(crate) const FLAG_GZIP: u8 = 1 << 1;
pub(crate) const FLAG_SOFT_PURGED: u8 = 1 << 2;
/// Set by the S3-FIFO hand when the object moves to the main queue (written
/// under the shard's write lock only).
pub(crate) const FLAG_IN_MAIN: u8 = 1 << 3;
/// Set by the first lookup that returns the object (Magento's `obj.hits > 0`).
pub(crate) const FLAG_HIT: u8 = 1 << 4;
/// The data starts with a 4-byte keep (most objects have none: Magento's VCL
/// sets no keep, so it costs nothing there).
const FLAG_KEEP: u8 = 1 << 5;

/// Longest header block an object may carry: 64 KiB (Varnish's whole
/// response head limit, `http_resp_size`, is 32 KiB by default).
pub const MAX_HEADERS_BYTES: usize = u16::MAX as usize;

/// Fixed part of an object, in front of its bytes in the same allocation.
///
/// 48 bytes; with the refcount and the slice length the allocation carries
/// 64 bytes of metadata before the (optional keep,) tag ids, the header block
/// and the body.
struct Meta {
    key: PrimaryKey,
    variance: Variance,
    created_ms: u64,
    /// Shortened by a soft purge.
    ttl_ms: AtomicU32,
    grace_ms: u32,
    headers_len: u16,
    status: u16,
    n_tags: u16,
    flags: AtomicU8,
    /// S3-FIFO 2-bit access frequency, bumped by lookups. Kept in the object
    /// so a hit touches no per-slot array.
    freq: AtomicU8,
}

/// One cached response (or a hit-for-miss marker): a cheap handle (one
/// pointer; `clone` is one atomic increment) to an immutable object shared
/// by the store and every response that delivers it.
///
/// Immutable once stored, except a few atomics: the hit counter, the flags
/// (soft purge), the S3-FIFO frequency and the TTL, which a soft purge
/// shortens to "expired now".
///
/// Everything lives in one allocation: refcount, [`Meta`], the interned tag
/// ids, the pre-encoded header block and the body. The body is copied in once
/// at insert; hits share it through [`CachedObject::body`] without copying.
/// See the crate docs for the accounting.
#[derive(Clone)]
pub struct CachedObject(ThinArc<Meta, u8>);

impl fmt::Debug for CachedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedObject")
            .field("status", &self.status())
            .field("key", &Hex(self.key()))
            .field("variance", &self.variance())
            .field("body_len", &self.body_bytes().len())
            .field("headers_len", &self.headers().len())
            .field("gzip", &self.is_gzip())
            .field("created_ms", &self.created_ms())
            .field("ttl_ms", &self.ttl_ms())
            .field("grace_ms", &self.grace_ms())
            .field("keep_ms", &self.keep_ms())
            .field("hit", &self.was_hit())
            .field("hit_for_miss", &self.is_hit_for_miss())
            .field("soft_purged", &self.is_soft_purged())
            .field("tags", &self.tag_count())
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl CachedObject {
    #[inline]
    fn meta(&self) -> &Meta {
        &self.0.header.header
    }

    #[inline]
    fn data(&self) -> &[u8] {
        &self.0.slice
    }

    /// True if both handles point to the very same stored object.
    pub fn same_object(&self, other: &CachedObject) -> bool {
        self.0.ptr() == other.0.ptr()
    }

    /// HTTP status of the stored response (0 for a hit-for-miss marker built
    /// by [`ObjectBuilder::hit_for_miss`]).
    pub fn status(&self) -> u16 {
        self.meta().status
    }

    /// The pre-encoded header block: HTTP/1.1 field lines `name: value\r\n`,
    /// exactly as the writer gave them. See [`CachedObject::header_iter`].
    pub fn headers(&self) -> &[u8] {
        let start = self.keep_bytes() + self.tag_bytes();
        let end = start + self.meta().headers_len as usize;
        self.data().get(start..end).unwrap_or(&[])
    }

    /// Iterates `(name, value)` pairs of the header block.
    pub fn header_iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            rest: self.headers(),
        }
    }

    /// The stored body as `Bytes` sharing the object's allocation: the bytes
    /// are never copied (the `Bytes` keeps the object alive). Each call makes
    /// a small handle allocation; call it once per response.
    pub fn body(&self) -> Bytes {
        Bytes::from_owner(BodyOwner(self.clone()))
    }

    /// The header block as `Bytes` sharing the object's allocation, so a
    /// delivery can build header values with `Bytes::slice_ref` (a refcount
    /// increment) instead of copying each one. One small handle allocation.
    pub fn headers_shared(&self) -> Bytes {
        Bytes::from_owner(HeadersOwner(self.clone()))
    }

    /// The stored body as a plain slice (no allocation).
    pub fn body_bytes(&self) -> &[u8] {
        let start = self.keep_bytes() + self.tag_bytes() + self.meta().headers_len as usize;
        self.data().get(start..).unwrap_or(&[])
    }

    /// Bytes of the object's one allocation as glibc malloc sizes it
    /// (refcount, metadata, slice length, keep, tag ids, headers, body).
    pub(crate) fn allocation_bytes(&self) -> usize {
        crate::malloc_size(Self::FIXED_BYTES + self.data().len())
    }

    /// Metadata bytes in front of the data: refcount, [`Meta`], length.
    pub(crate) const FIXED_BYTES: usize = 8 + std::mem::size_of::<Meta>() + 8;

    /// True if [`CachedObject::body`] is gzip-compressed (one stored
    /// representation, as Varnish does; the edge gunzips for clients that do
    /// not accept gzip).
    pub fn is_gzip(&self) -> bool {
        self.flags() & FLAG_GZIP != 0
    }

    pub(crate) fn flags(&self) -> u8 {
        self.meta().flags.load(Ordering::Relaxed)
    }

    pub(crate) fn set_in_main(&self, in_main: bool) {
        if in_main {
            self.meta().flags.fetch_or(FLAG_IN_MAIN, Ordering::Relaxed);
        } else {
            self.meta()
                .flags
                .fetch_and(!FLAG_IN_MAIN, Ordering::Relaxed);
        }
    }

    pub(crate) fn in_main(&self) -> bool {
        self.flags() & FLAG_IN_MAIN != 0
    }

    /// The primary key the object is stored under.
    pub fn key(&self) -> &PrimaryKey {
        &self.meta().key
    }

    /// The variance the object is stored under.
    pub fn variance(&self) -> Variance {
        self.meta().variance
    }

    /// Insert time, in the caller's millisecond clock.
    pub fn created_ms(&self) -> u64 {
        self.meta().created_ms
    }

    /// Current TTL in milliseconds (shortened by a soft purge).
    pub fn ttl_ms(&self) -> u64 {
        u64::from(self.meta().ttl_ms.load(Ordering::Relaxed))
    }

    /// Grace in milliseconds: how long after expiry the object may be served
    /// stale while it is refreshed.
    pub fn grace_ms(&self) -> u64 {
        u64::from(self.meta().grace_ms)
    }

    /// Keep in milliseconds: how long after grace the object is retained for
    /// conditional revalidation.
    pub fn keep_ms(&self) -> u64 {
        if self.flags() & FLAG_KEEP == 0 {
            return 0;
        }
        match self.data().get(..4) {
            Some(&[a, b, c, d]) => u64::from(u32::from_le_bytes([a, b, c, d])),
            _ => 0,
        }
    }

    fn keep_bytes(&self) -> usize {
        if self.flags() & FLAG_KEEP == 0 {
            0
        } else {
            4
        }
    }

    /// End of freshness: `created + ttl`.
    pub fn expires_ms(&self) -> u64 {
        self.created_ms().saturating_add(self.ttl_ms())
    }

    /// End of grace: `created + ttl + grace`.
    pub fn grace_until_ms(&self) -> u64 {
        self.expires_ms().saturating_add(self.grace_ms())
    }

    /// End of retention: `created + ttl + grace + keep`. A lookup after this
    /// instant is a miss.
    pub fn keep_until_ms(&self) -> u64 {
        self.grace_until_ms().saturating_add(self.keep_ms())
    }

    /// Fresh at `now_ms` (`now < created + ttl`).
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms()
    }

    /// Expired but within grace at `now_ms`: servable stale.
    pub fn in_grace(&self, now_ms: u64) -> bool {
        !self.is_fresh(now_ms) && now_ms < self.grace_until_ms()
    }

    /// Still retained (fresh, in grace or in keep) at `now_ms`.
    pub fn is_retained(&self, now_ms: u64) -> bool {
        self.is_fresh(now_ms) || now_ms < self.keep_until_ms()
    }

    /// True once a lookup has returned this object: Magento's
    /// `obj.hits > 0` (debug header `HIT` rather than `MISS`).
    pub fn was_hit(&self) -> bool {
        self.flags() & FLAG_HIT != 0
    }

    /// True for a hit-for-miss marker: "this key is uncacheable for a while;
    /// do not coalesce, go to the backend".
    pub fn is_hit_for_miss(&self) -> bool {
        self.flags() & FLAG_HIT_FOR_MISS != 0
    }

    /// True once a soft purge has marked the object stale.
    pub fn is_soft_purged(&self) -> bool {
        self.flags() & FLAG_SOFT_PURGED != 0
    }

    /// Number of tags the object carries.
    pub fn tag_count(&self) -> usize {
        usize::from(self.meta().n_tags)
    }

    /// The object's interned tags, sorted and distinct.
    pub fn tag_ids(&self) -> impl Iterator<Item = TagId> + '_ {
        let start = self.keep_bytes();
        self.data()
            .get(start..start + self.tag_bytes())
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| TagId(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
    }

    /// Body plus header bytes: the payload part of the accounted charge.
    pub fn payload_bytes(&self) -> usize {
        self.data()
            .len()
            .saturating_sub(self.keep_bytes() + self.tag_bytes())
    }

    /// Bytes this object is charged against the store's ceiling:
    /// payload + [`OBJECT_OVERHEAD`] + [`TAG_REF_OVERHEAD`] per tag.
    pub fn charge(&self) -> u64 {
        charge_for(self.payload_bytes(), self.tag_count())
    }

    fn tag_bytes(&self) -> usize {
        self.tag_count() * 4
    }

    pub(crate) fn freq(&self) -> u8 {
        self.meta().freq.load(Ordering::Relaxed)
    }

    pub(crate) fn set_freq(&self, f: u8) {
        self.meta().freq.store(f, Ordering::Relaxed);
    }

    /// Saturating at `max`. A racy load/store on purpose: concurrent readers
    /// may lose an increment, and nothing is written once saturated.
    pub(crate) fn bump_freq(&self, max: u8) {
        let f = self.freq();
        if f < max {
            self.set_freq(f + 1);
        }
    }

    pub(crate) fn record_hit(&self) {
        // Written once: later hits only read the (shared) cache line.
        if self.flags() & FLAG_HIT == 0 {
            self.meta().flags.fetch_or(FLAG_HIT, Ordering::Relaxed);
        }
    }

    /// Soft purge: TTL becomes "expired at `now_ms`", grace and keep count
    /// from there (Varnish `purge.soft()`). Returns false if the object was
    /// already expired (it is still flagged).
    pub(crate) fn soft_purge(&self, now_ms: u64) -> bool {
        let m = self.meta();
        m.flags.fetch_or(FLAG_SOFT_PURGED, Ordering::Relaxed);
        let elapsed = clamp_ms(now_ms.saturating_sub(m.created_ms));
        m.ttl_ms.fetch_min(elapsed, Ordering::Relaxed) > elapsed
    }
}

/// Owner of a header block handed out as `Bytes`: keeps the object alive.
struct HeadersOwner(CachedObject);

impl AsRef<[u8]> for HeadersOwner {
    fn as_ref(&self) -> &[u8] {
        self.0.headers()
    }
}

/// Owner of a body handed out as `Bytes`: keeps the object alive.
struct BodyOwner(CachedObject);

impl AsRef<[u8]> for BodyOwner {
    fn as_ref(&self) -> &[u8] {
        self.0.body_bytes()
    }
}

pub(crate) fn charge_for(payload: usize, tags: usize) -> u64 {
    payload as u64 + OBJECT_OVERHEAD + TAG_REF_OVERHEAD * tags as u64
}

fn clamp_ms(ms: u64) -> u32 {
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// Iterator over the `name: value\r\n` lines of a header block.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let line_end = self
                .rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .unwrap_or(self.rest.len());
            let line = &self.rest[..line_end];
            self.rest = self.rest.get(line_end + 2..).unwrap_or(&[]);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = &line[..colon];
            let mut value = &line[colon + 1..];
            while let [b' ' | b'\t', tail @ ..] = value {
                value = tail;
            }
            return Some((name, value));
        }
    }
}

/// Builds the object a writer inserts. Tags are given as strings and interned
/// by [`crate::Store::insert`].
///
/// ```
/// use bytes::Bytes;
/// use magestack_fpc_store::ObjectBuilder;
///
/// let obj = ObjectBuilder::new(200, Bytes::from_static(b"<html>hi</html>"))
///     .header(b"content-type", b"text/html; charset=UTF-8")
///     .ttl_ms(86_400_000)
///     .grace_ms(3 * 86_400_000)
///     .tags(["cat_p_42", "cat_c_7"]);
/// # let _ = obj;
/// ```
#[derive(Debug, Clone)]
pub struct ObjectBuilder {
    pub(crate) status: u16,
    pub(crate) headers: Vec<u8>,
    pub(crate) body: Bytes,
    pub(crate) gzip: bool,
    pub(crate) ttl_ms: u64,
    pub(crate) grace_ms: u64,
    pub(crate) keep_ms: u64,
    pub(crate) hit_for_miss: bool,
    pub(crate) tags: Vec<String>,
}

impl ObjectBuilder {
    /// A response with `status` and `body`; TTL, grace and keep start at 0.
    pub fn new(status: u16, body: Bytes) -> ObjectBuilder {
        ObjectBuilder {
            status,
            headers: Vec::new(),
            body,
            gzip: false,
            ttl_ms: 0,
            grace_ms: 0,
            keep_ms: 0,
            hit_for_miss: false,
            tags: Vec::new(),
        }
    }

    /// A hit-for-miss marker valid for `ttl_ms` (Varnish: 120 s for
    /// uncacheable responses). It has no grace and no keep.
    pub fn hit_for_miss(ttl_ms: u64) -> ObjectBuilder {
        let mut b = ObjectBuilder::new(0, Bytes::new());
        b.hit_for_miss = true;
        b.ttl_ms = ttl_ms;
        b
    }

    /// Appends one `name: value\r\n` line. The caller passes a valid field
    /// name and value (as `http::HeaderName`/`HeaderValue` guarantee: no
    /// `:` in names, no CR/LF anywhere).
    pub fn header(mut self, name: &[u8], value: &[u8]) -> ObjectBuilder {
        self.headers.reserve(name.len() + value.len() + 4);
        self.headers.extend_from_slice(name);
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    /// Replaces the header block with an already encoded one.
    pub fn headers_block(mut self, block: Vec<u8>) -> ObjectBuilder {
        self.headers = block;
        self
    }

    /// Marks the body as gzip-compressed.
    pub fn gzip(mut self, gzip: bool) -> ObjectBuilder {
        self.gzip = gzip;
        self
    }

    /// Freshness lifetime in ms (clamped to [`MAX_DURATION_MS`]).
    pub fn ttl_ms(mut self, ms: u64) -> ObjectBuilder {
        self.ttl_ms = ms;
        self
    }

    /// Grace in ms (clamped to [`MAX_DURATION_MS`]).
    pub fn grace_ms(mut self, ms: u64) -> ObjectBuilder {
        self.grace_ms = ms;
        self
    }

    /// Keep in ms (clamped to [`MAX_DURATION_MS`]).
    pub fn keep_ms(mut self, ms: u64) -> ObjectBuilder {
        self.keep_ms = ms;
        self
    }

    /// Adds one tag (empty strings are ignored).
    pub fn tag(mut self, tag: &str) -> ObjectBuilder {
        if !tag.is_empty() {
            self.tags.push(tag.to_owned());
        }
        self
    }

    /// Adds tags (empty strings are ignored; duplicates are removed at insert).
    pub fn tags<I, S>(mut self, tags: I) -> ObjectBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for t in tags {
            let t = t.as_ref();
            if !t.is_empty() {
                self.tags.push(t.to_owned());
            }
        }
        self
    }

    /// Payload bytes (body + header block) this object will be charged for.
    pub fn payload_bytes(&self) -> usize {
        self.body.len() + self.headers.len()
    }

    /// Builds the shared object once the tags are interned (sorted, distinct).
    /// Copies the tag ids, the header block and the body into the object's
    /// one allocation.
    pub(crate) fn build(
        self,
        key: PrimaryKey,
        variance: Variance,
        tags: &[TagId],
        now_ms: u64,
    ) -> CachedObject {
        let mut flags = 0;
        if self.hit_for_miss {
            flags |= FLAG_HIT_FOR_MISS;
        }
        if self.gzip {
            flags |= FLAG_GZIP;
        }
        let (grace, keep) = if self.hit_for_miss {
            (0, 0)
        } else {
            (clamp_ms(self.grace_ms), clamp_ms(self.keep_ms))
        };
        if keep > 0 {
            flags |= FLAG_KEEP;
        }
        let keep_len = if keep > 0 { 4 } else { 0 };
        let tag_len = tags.len() * 4;
        let len = keep_len + tag_len + self.headers.len() + self.body.len();
        let meta = Meta {
            key,
            variance,
            created_ms: now_ms,
            ttl_ms: AtomicU32::new(clamp_ms(self.ttl_ms)),
            grace_ms: grace,
            // The store refuses longer blocks before building.
            headers_len: u16::try_from(self.headers.len()).unwrap_or(u16::MAX),
            status: self.status,
            n_tags: u16::try_from(tags.len()).unwrap_or(u16::MAX),
            flags: AtomicU8::new(flags),
            freq: AtomicU8::new(0),
        };
        // Allocate the object zeroed (a memset), then copy the parts in: no
        // temporary buffer, so inserts leave no hole of the object's size in
        // the heap.
        let arc = triomphe::Arc::from_header_and_iter(
            HeaderWithLength::new(meta, len),
            std::iter::repeat_n(0u8, len),
        );
        let arc = match UniqueArc::try_from(arc) {
            Ok(mut unique) => {
                let (k, rest) = unique.slice.split_at_mut(keep_len);
                if keep_len > 0 {
                    k.copy_from_slice(&keep.to_le_bytes());
                }
                let (t, rest) = rest.split_at_mut(tag_len);
                for (dst, id) in t.chunks_exact_mut(4).zip(tags) {
                    dst.copy_from_slice(&id.0.to_le_bytes());
                }
                let (h, b) = rest.split_at_mut(self.headers.len());
                h.copy_from_slice(&self.headers);
                b.copy_from_slice(&self.body);
                unique.shareable()
            }
            // Cannot happen: the Arc was created just above.
            Err(arc) => arc,
        };
        CachedObject(triomphe::Arc::into_thin(arc))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn obj(b: ObjectBuilder, tags: &[TagId], now: u64) -> CachedObject {
        b.build([7; 16], Variance(3), tags, now)
    }

    #[test]
    fn layout_is_small() {
        // A handle is one pointer (the slab stores it as `Option`); the
        // allocation carries 72 bytes before the data.
        assert_eq!(std::mem::size_of::<Option<CachedObject>>(), 8);
        assert_eq!(std::mem::size_of::<Meta>(), 48);
        assert_eq!(CachedObject::FIXED_BYTES, 64);
    }

    #[test]
    fn headers_tags_and_body_share_one_buffer() {
        let o = obj(
            ObjectBuilder::new(200, Bytes::from_static(b"body"))
                .header(b"content-type", b"text/html")
                .header(b"x-a", b"1"),
            &[TagId(3), TagId(9)],
            5,
        );
        assert_eq!(o.headers(), b"content-type: text/html\r\nx-a: 1\r\n");
        assert_eq!(o.tag_ids().collect::<Vec<_>>(), vec![TagId(3), TagId(9)]);
        let h: Vec<_> = o.header_iter().collect();
        assert_eq!(
            h,
            vec![
                (&b"content-type"[..], &b"text/html"[..]),
                (&b"x-a"[..], &b"1"[..])
            ]
        );
        assert_eq!(o.payload_bytes(), 4 + o.headers().len());
        assert_eq!(o.body().as_ref(), b"body");
        let shared = o.headers_shared();
        assert_eq!(&shared[..], o.headers());
        assert_eq!(shared.as_ptr(), o.headers().as_ptr());
        assert_eq!(o.body_bytes(), b"body");
        // Zero-copy: every handle points into the object's buffer.
        assert_eq!(o.body().as_ptr(), o.body_bytes().as_ptr());
        assert_eq!(
            o.charge(),
            (4 + o.headers().len()) as u64 + OBJECT_OVERHEAD + 2 * TAG_REF_OVERHEAD
        );
        assert_eq!(o.status(), 200);
        assert_eq!(o.key(), &[7; 16]);
        assert_eq!(o.variance(), Variance(3));
        assert!(format!("{o:?}").contains("0707"));
    }

    #[test]
    fn header_iter_tolerates_odd_blocks() {
        let o = obj(
            ObjectBuilder::new(200, Bytes::new())
                .headers_block(b"junk\r\na:\t b\r\nlast:x".to_vec()),
            &[],
            0,
        );
        let h: Vec<_> = o.header_iter().collect();
        assert_eq!(h, vec![(&b"a"[..], &b"b"[..]), (&b"last"[..], &b"x"[..])]);
    }

    #[test]
    fn freshness_windows() {
        let o = obj(
            ObjectBuilder::new(200, Bytes::new())
                .ttl_ms(100)
                .grace_ms(50)
                .keep_ms(25),
            &[],
            1000,
        );
        assert!(o.is_fresh(1099));
        assert!(!o.is_fresh(1100));
        assert!(o.in_grace(1100) && o.in_grace(1149) && !o.in_grace(1150));
        assert!(o.is_retained(1174) && !o.is_retained(1175));
        assert_eq!(
            (o.expires_ms(), o.grace_until_ms(), o.keep_until_ms()),
            (1100, 1150, 1175)
        );
    }

    #[test]
    fn soft_purge_expires_now_and_grace_counts_from_there() {
        let o = obj(
            ObjectBuilder::new(200, Bytes::new())
                .ttl_ms(1_000)
                .grace_ms(50),
            &[],
            0,
        );
        assert!(o.soft_purge(10));
        assert!(o.is_soft_purged());
        assert!(!o.is_fresh(10));
        assert!(o.in_grace(59) && !o.in_grace(60));
        // Already expired: TTL is not extended.
        assert!(!o.soft_purge(20));
        assert_eq!(o.ttl_ms(), 10);
    }

    #[test]
    fn hit_for_miss_has_no_grace_and_durations_clamp() {
        let o = obj(ObjectBuilder::hit_for_miss(120_000).grace_ms(9), &[], 0);
        assert!(o.is_hit_for_miss());
        assert_eq!((o.grace_ms(), o.keep_ms()), (0, 0));
        let o = obj(
            ObjectBuilder::new(200, Bytes::new())
                .ttl_ms(u64::MAX)
                .gzip(true),
            &[],
            0,
        );
        assert_eq!(o.ttl_ms(), MAX_DURATION_MS);
        assert!(o.is_gzip());
    }

    #[test]
    fn first_hit_is_recorded_once() {
        let o = obj(ObjectBuilder::new(200, Bytes::new()), &[], 0);
        assert!(!o.was_hit());
        o.record_hit();
        o.record_hit();
        assert!(o.was_hit() && !o.is_gzip() && !o.is_soft_purged());
    }

    #[test]
    fn keep_is_stored_only_when_set() {
        let with = obj(
            ObjectBuilder::new(200, Bytes::from_static(b"b"))
                .header(b"a", b"1")
                .keep_ms(7),
            &[TagId(1)],
            0,
        );
        let without = obj(
            ObjectBuilder::new(200, Bytes::from_static(b"b")).header(b"a", b"1"),
            &[TagId(1)],
            0,
        );
        assert_eq!((with.keep_ms(), without.keep_ms()), (7, 0));
        for o in [&with, &without] {
            assert_eq!(o.headers(), b"a: 1\r\n");
            assert_eq!(o.body_bytes(), b"b");
            assert_eq!(o.tag_ids().collect::<Vec<_>>(), vec![TagId(1)]);
            assert_eq!(o.payload_bytes(), 7);
        }
    }

    #[test]
    fn variance_folds() {
        assert_eq!(Variance::from(None::<[u8; 16]>), Variance::NONE);
        let mut h = [0u8; 16];
        h[0] = 1;
        h[8] = 2;
        assert_eq!(Variance::from(h), Variance(3));
        assert_eq!(Variance::from(Some(h)), Variance(3));
    }

    #[test]
    fn builder_ignores_empty_tags() {
        let b = ObjectBuilder::new(200, Bytes::new())
            .tag("")
            .tag("a")
            .tags(["", "b"]);
        assert_eq!(b.tags, vec!["a".to_owned(), "b".to_owned()]);
    }
}
