//! nginx's `open_file_cache`, with the bytes: what the edge knows about the
//! files under Magento's `pub/`, so that a request for a known static file
//! costs no system call and no hand-off to the blocking pool.
//!
//! An entry holds a path's kind (file, directory, missing), and for a file its
//! size, modification time and inode, the pre-encoded `ETag`, `Last-Modified`
//! and `Content-Type`, the bytes of files up to [`INLINE_MAX`], and a gzip
//! variant made once (from a `.gz` sibling when there is one, as nginx's
//! `gzip_static`, else compressed on the blocking pool the first time a client
//! asks for it). An entry is trusted for `valid`; the first request after that
//! checks it with one `stat`: unchanged, it is trusted for another `valid`;
//! changed or gone, it is replaced. So a deployed file is served fresh at most
//! `valid` after it changed, and a deleted one answers 404 from then on.
//!
//! Bounded on two axes: at most `max_entries` paths (the least recently used
//! of a sample is evicted, as Redis does) and `max_bytes` of file bytes and
//! gzip variants; a file that does not fit is read per request, as without
//! the cache. Missing paths are not cached (nginx's `open_file_cache_errors
//! off`): a file that Magento's `static.php` or `get.php` writes is served as
//! a file from the next request on, and random URLs cannot fill the cache.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;
use magestack_routing::{FileKind, Fs};
use parking_lot::RwLock;

/// Files up to this size are kept in memory (and served from it).
pub const INLINE_MAX: u64 = 256 * 1024;
/// Shards of the path map: requests for different files rarely share a lock.
const SHARDS: usize = 16;
/// Entries looked at to pick one to evict.
const EVICTION_SAMPLE: usize = 8;

/// How the cache is sized (`magento.open_file_cache_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileCacheLimits {
    /// Paths kept; 0 turns the cache off (every request stats and reads).
    pub max_entries: usize,
    /// Bytes of file contents and gzip variants kept.
    pub max_bytes: u64,
    /// How long an entry is trusted before it is checked again.
    pub valid: Duration,
}

impl Default for OpenFileCacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            valid: Duration::from_secs(5),
        }
    }
}

/// What a file is, as far as serving it goes. Shared by every request for it.
#[derive(Debug)]
pub struct FileInfo {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, whole seconds since the epoch (nginx's resolution).
    pub mtime_secs: u64,
    /// `"<mtime hex>-<size hex>"`, nginx's format.
    pub etag: HeaderValue,
    /// `W/` + [`Self::etag`]: the validator of a gzip variant.
    pub weak_etag: HeaderValue,
    /// The modification time as an HTTP date.
    pub last_modified: HeaderValue,
    /// From the extension (nginx's `mime.types`).
    pub content_type: HeaderValue,
    /// The contents, when the file is small enough and the budget allowed.
    pub body: Option<Bytes>,
    /// The gzip variant: `None` until made; `Some(None)` when it is not kept.
    gzip: tokio::sync::OnceCell<Option<Bytes>>,
    /// Identity of the version on disk: a change of any of these is a new file.
    stamp: Stamp,
}

impl FileInfo {
    /// The gzip variant kept for this file, if one was made.
    pub fn gzip_ready(&self) -> Option<&Bytes> {
        self.gzip.get().and_then(Option::as_ref)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            size: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// One path's entry.
#[derive(Debug)]
struct Entry {
    kind: FileKind,
    /// For files: what serving needs.
    file: Option<Arc<FileInfo>>,
    /// Milliseconds since the cache's start when this entry was last checked.
    checked_ms: AtomicU64,
    /// Milliseconds since the cache's start when a request last used it.
    used_ms: AtomicU64,
    /// Bytes this entry added to the cache's total (changed under its shard's lock only).
    counted: AtomicU64,
}

impl Entry {
    fn bytes(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| {
            f.body.as_ref().map_or(0, |b| b.len() as u64)
                + f.gzip_ready().map_or(0, |b| b.len() as u64)
        })
    }
}

/// One shard of the path map.
type Shard = RwLock<HashMap<OsString, Arc<Entry>>>;

/// A file to serve: its description and, when known to be small, its bytes.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A regular file.
    File(Arc<FileInfo>),
    /// Not there (or not a regular file).
    NotFound,
    /// There but not readable (403).
    Forbidden,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct OpenFileCacheStats {
    /// Requests answered from a trusted entry.
    pub hits: AtomicU64,
    /// Requests that had to stat or read.
    pub misses: AtomicU64,
    /// Entries evicted for room.
    pub evictions: AtomicU64,
}

/// The cache. Cheap to share (`Arc`); every method is safe to call from any task.
#[derive(Debug)]
pub struct OpenFileCache {
    shards: Box<[Shard]>,
    limits: OpenFileCacheLimits,
    per_shard: usize,
    bytes: AtomicU64,
    entries: AtomicUsize,
    epoch: Instant,
    rotate: AtomicUsize,
    /// Hits, misses and evictions.
    pub stats: OpenFileCacheStats,
}

impl OpenFileCache {
    /// An empty cache with these limits.
    pub fn new(limits: OpenFileCacheLimits) -> Self {
        let per_shard = limits.max_entries.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            limits,
            per_shard,
            bytes: AtomicU64::new(0),
            entries: AtomicUsize::new(0),
            epoch: Instant::now(),
            rotate: AtomicUsize::new(0),
            stats: OpenFileCacheStats::default(),
        }
    }

    /// Paths currently cached.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of file contents and gzip variants held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The limits it was built with.
    pub fn limits(&self) -> OpenFileCacheLimits {
        self.limits
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn shard(&self, path: &Path) -> &Shard {
        use std::hash::BuildHasher;
        // One fixed hasher for shard selection; the maps keep their own.
        let h =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one(path.as_os_str());
        &self.shards[(h as usize) % SHARDS]
    }

    /// The entry for `path` when it is trusted at `now_ms`.
    fn fresh(&self, path: &Path, now_ms: u64) -> Option<Arc<Entry>> {
        let e = self.shard(path).read().get(path.as_os_str()).cloned()?;
        let checked = e.checked_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(checked) < self.limits.valid.as_millis() as u64 {
            e.used_ms.store(now_ms, Ordering::Relaxed);
            Some(e)
        } else {
            None
        }
    }

    /// Checks `path` on disk (one `stat`) and brings its entry up to date:
    /// an unchanged file keeps its bytes and gzip variant.
    fn revalidate(&self, path: &Path, now_ms: u64) -> Arc<Entry> {
        let meta = std::fs::metadata(path);
        let old = self.shard(path).read().get(path.as_os_str()).cloned();
        if let (Some(old), Ok(m)) = (&old, &meta) {
            let same = match &old.file {
                Some(f) => m.is_file() && f.stamp == Stamp::of(m),
                None => old.kind == kind_of(m),
            };
            if same {
                old.checked_ms.store(now_ms, Ordering::Relaxed);
                old.used_ms.store(now_ms, Ordering::Relaxed);
                return old.clone();
            }
        }
        let entry = Arc::new(match meta {
            Ok(m) if m.is_file() => Entry {
                kind: FileKind::File,
                file: Some(Arc::new(describe(path, &m, None))),
                checked_ms: AtomicU64::new(now_ms),
                used_ms: AtomicU64::new(now_ms),
                counted: AtomicU64::new(0),
            },
            Ok(m) => bare(kind_of(&m), now_ms),
            Err(_) => {
                if old.is_some() {
                    self.remove(path);
                }
                return Arc::new(bare(FileKind::Missing, now_ms));
            }
        });
        self.insert(path, entry.clone());
        entry
    }

    fn insert(&self, path: &Path, entry: Arc<Entry>) {
        if self.limits.max_entries == 0 {
            return;
        }
        let added = entry.bytes();
        entry.counted.store(added, Ordering::Relaxed);
        let mut shard = self.shard(path).write();
        if !shard.contains_key(path.as_os_str()) && shard.len() >= self.per_shard {
            self.evict_one(&mut shard);
        }
        match shard.insert(path.as_os_str().to_owned(), entry) {
            Some(old) => {
                self.bytes
                    .fetch_sub(old.counted.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            None => {
                self.entries.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
    }

    fn remove(&self, path: &Path) {
        let mut shard = self.shard(path).write();
        if let Some(old) = shard.remove(path.as_os_str()) {
            self.bytes
                .fetch_sub(old.counted.load(Ordering::Relaxed), Ordering::Relaxed);
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes the least recently used of a few entries.
    fn evict_one(&self, shard: &mut HashMap<OsString, Arc<Entry>>) {
        let skip = self.rotate.fetch_add(1, Ordering::Relaxed) % shard.len().max(1);
        let victim = shard
            .iter()
            .cycle()
            .skip(skip)
            .take(EVICTION_SAMPLE.min(shard.len()))
            .min_by_key(|(_, e)| e.used_ms.load(Ordering::Relaxed))
            .map(|(p, _)| p.clone());
        if let Some(p) = victim {
            if let Some(old) = shard.remove(&p) {
                self.bytes
                    .fetch_sub(old.counted.load(Ordering::Relaxed), Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
                self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The kind of `path`: from a trusted entry, else one `stat`.
    pub fn kind_of(&self, path: &Path) -> FileKind {
        let now = self.now_ms();
        match self.fresh(path, now) {
            Some(e) => e.kind,
            None => self.revalidate(path, now).kind,
        }
    }

    /// What to serve for `path`. A trusted entry with its bytes answers
    /// without any system call; otherwise the file is checked and, when it is
    /// small enough and the budget allows, read once on the blocking pool
    /// and kept.
    pub async fn lookup(self: &Arc<Self>, path: &Path) -> Lookup {
        let now = self.now_ms();
        let entry = match self.fresh(path, now) {
            Some(e) => e,
            None => self.revalidate(path, now),
        };
        let Some(file) = &entry.file else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return Lookup::NotFound;
        };
        if file.body.is_some() || file.size > INLINE_MAX || !self.has_room(file.size) {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::File(file.clone());
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        // Read it once (off the async workers) and keep it.
        let p = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let data = std::fs::read(&p)?;
            let meta = std::fs::metadata(&p)?;
            let gz = gzip_sibling(&p, &meta);
            Ok((data, meta, gz))
        })
        .await;
        match read {
            Ok(Ok((data, meta, gz))) if meta.is_file() && data.len() as u64 == meta.len() => {
                let info = describe(path, &meta, Some(Bytes::from(data)));
                if let Some(gz) = gz {
                    // A `.gz` sibling (nginx's gzip_static): the variant is the file's own.
                    let _ = info.gzip.set(Some(gz));
                }
                let info = Arc::new(info);
                let entry = Arc::new(Entry {
                    kind: FileKind::File,
                    file: Some(info.clone()),
                    checked_ms: AtomicU64::new(now),
                    used_ms: AtomicU64::new(now),
                    counted: AtomicU64::new(0),
                });
                if self.has_room(entry.bytes()) {
                    self.insert(path, entry);
                }
                Lookup::File(info)
            }
            // Changed while being read: serve what the disk has now, uncached.
            Ok(Ok(_)) => match std::fs::metadata(path) {
                Ok(m) if m.is_file() => Lookup::File(Arc::new(describe(path, &m, None))),
                _ => Lookup::NotFound,
            },
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => Lookup::Forbidden,
            _ => Lookup::NotFound,
        }
    }

    fn has_room(&self, more: u64) -> bool {
        self.limits.max_entries > 0
            && self.bytes.load(Ordering::Relaxed).saturating_add(more) <= self.limits.max_bytes
    }

    /// The gzip variant of a kept file, made once (level 6, as Magento's
    /// nginx sample) on the blocking pool; `None` when it cannot be kept (the
    /// caller then compresses as it streams, as before).
    pub async fn gzip(self: &Arc<Self>, path: &Path, file: &Arc<FileInfo>) -> Option<Bytes> {
        let body = file.body.clone()?;
        file.gzip
            .get_or_init(|| async move {
                let gz = tokio::task::spawn_blocking(move || gzip_bytes(&body))
                    .await
                    .ok()
                    .flatten()?;
                // Kept only when it fits, and counted only while its entry is
                // in the map (under the shard's lock, like every count change).
                if !self.has_room(gz.len() as u64) {
                    return None;
                }
                let shard = self.shard(path).write();
                if let Some(e) = shard.get(path.as_os_str()) {
                    if e.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, file)) {
                        e.counted.fetch_add(gz.len() as u64, Ordering::Relaxed);
                        self.bytes.fetch_add(gz.len() as u64, Ordering::Relaxed);
                    }
                }
                Some(gz)
            })
            .await
            .clone()
    }
}

impl Fs for OpenFileCache {
    fn kind(&self, path: &Path) -> FileKind {
        self.kind_of(path)
    }
}

fn bare(kind: FileKind, now_ms: u64) -> Entry {
    Entry {
        kind,
        file: None,
        checked_ms: AtomicU64::new(now_ms),
        used_ms: AtomicU64::new(now_ms),
        counted: AtomicU64::new(0),
    }
}

fn kind_of(m: &std::fs::Metadata) -> FileKind {
    if m.is_file() {
        FileKind::File
    } else if m.is_dir() {
        FileKind::Dir
    } else {
        FileKind::Other
    }
}

fn describe(path: &Path, m: &std::fs::Metadata, body: Option<Bytes>) -> FileInfo {
    let size = m.len();
    let mtime_secs = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{mtime_secs:x}-{size:x}\"");
    let weak = format!("W/{etag}");
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(mtime_secs));
    FileInfo {
        size,
        mtime_secs,
        etag: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0-0\"")),
        weak_etag: HeaderValue::from_str(&weak).unwrap_or(HeaderValue::from_static("W/\"0-0\"")),
        last_modified: HeaderValue::from_str(&date)
            .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")),
        content_type: HeaderValue::from_static(magestack_routing::mime_type(path)),
        body,
        gzip: tokio::sync::OnceCell::new(),
        stamp: Stamp::of(m),
    }
}

/// `file.gz` beside `file`, when it exists, is not older than the file and is
/// small enough to keep (nginx's `gzip_static on`).
fn gzip_sibling(path: &Path, meta: &std::fs::Metadata) -> Option<Bytes> {
    let mut gz = path.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    let gm = std::fs::metadata(&gz).ok()?;
    if !gm.is_file() || gm.len() > INLINE_MAX || gm.mtime() < meta.mtime() {
        return None;
    }
    std::fs::read(&gz).ok().map(Bytes::from)
}

fn gzip_bytes(data: &[u8]) -> Option<Bytes> {
    crate::compress::gzip_all(data).ok().map(Bytes::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cache(entries: usize, bytes: u64, valid_ms: u64) -> Arc<OpenFileCache> {
        Arc::new(OpenFileCache::new(OpenFileCacheLimits {
            max_entries: entries,
            max_bytes: bytes,
            valid: Duration::from_millis(valid_ms),
        }))
    }

    fn body(l: &Lookup) -> Bytes {
        match l {
            Lookup::File(f) => f.body.clone().unwrap(),
            other => panic!("not a file: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_known_file_is_served_from_memory_until_it_is_checked_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.css");
        std::fs::write(&p, "one").unwrap();
        let c = cache(100, 1 << 20, 60_000);
        assert_eq!(body(&c.lookup(&p).await), "one");
        // Within `valid`, a change on disk is not looked at.
        std::fs::write(&p, "two!").unwrap();
        assert_eq!(body(&c.lookup(&p).await), "one");
        assert!(c.stats.hits.load(Ordering::Relaxed) >= 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), 3);
    }

    #[tokio::test]
    async fn a_changed_file_is_served_fresh_once_valid_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.js");
        std::fs::write(&p, "old").unwrap();
        let c = cache(100, 1 << 20, 0);
        assert_eq!(body(&c.lookup(&p).await), "old");
        std::fs::write(&p, "newer").unwrap();
        assert_eq!(body(&c.lookup(&p).await), "newer");
        assert_eq!(c.bytes(), 5, "the old bytes are released");
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(c.lookup(&p).await, Lookup::NotFound));
        assert_eq!(c.kind_of(&p), FileKind::Missing);
        assert_eq!(c.bytes(), 0);
        assert_eq!(c.len(), 0, "a missing path is not kept");
        // Created again (static.php deploying it): a file at once, whatever `valid` is.
        let c = cache(100, 1 << 20, 60_000);
        assert_eq!(c.kind_of(&p), FileKind::Missing);
        std::fs::write(&p, "back").unwrap();
        assert_eq!(body(&c.lookup(&p).await), "back");
    }

    #[tokio::test]
    async fn an_unchanged_file_keeps_its_bytes_and_gzip_after_a_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.css");
        std::fs::write(&p, "body { color: red }\n".repeat(100)).unwrap();
        let c = cache(100, 1 << 20, 0);
        let Lookup::File(f1) = c.lookup(&p).await else {
            panic!()
        };
        let gz = c.gzip(&p, &f1).await.unwrap();
        let Lookup::File(f2) = c.lookup(&p).await else {
            panic!()
        };
        assert!(
            Arc::ptr_eq(&f1, &f2),
            "a check that finds no change keeps the entry"
        );
        assert_eq!(f2.gzip_ready(), Some(&gz));
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut d, &mut out).unwrap();
        assert_eq!(out.len(), 2000);
    }

    #[tokio::test]
    async fn a_gz_sibling_is_the_gzip_variant() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.js");
        std::fs::write(&p, "x".repeat(5000)).unwrap();
        std::fs::write(
            dir.path().join("a.js.gz"),
            gzip_bytes(b"precompressed").unwrap(),
        )
        .unwrap();
        let c = cache(100, 1 << 20, 60_000);
        let Lookup::File(f) = c.lookup(&p).await else {
            panic!()
        };
        let gz = c.gzip(&p, &f).await.unwrap();
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut d, &mut out).unwrap();
        assert_eq!(out, "precompressed");
    }

    #[tokio::test]
    async fn memory_stays_within_both_limits() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(32, 10_000, 60_000);
        for i in 0..500 {
            let p = dir.path().join(format!("f{i}.css"));
            std::fs::write(&p, vec![b'a'; 1000]).unwrap();
            // Over the byte budget a file is still described, then read per request.
            let Lookup::File(f) = c.lookup(&p).await else {
                panic!("{p:?} not found")
            };
            assert_eq!(f.size, 1000);
            let _ = c.kind_of(&dir.path().join(format!("missing{i}")));
            assert!(c.len() <= 32 + SHARDS, "entries {}", c.len());
            assert!(c.bytes() <= 10_000, "bytes {}", c.bytes());
        }
        assert!(c.stats.evictions.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn big_files_are_described_but_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.mp4");
        std::fs::write(&p, vec![0u8; (INLINE_MAX + 1) as usize]).unwrap();
        let c = cache(100, 1 << 30, 60_000);
        let Lookup::File(f) = c.lookup(&p).await else {
            panic!()
        };
        assert!(f.body.is_none());
        assert_eq!(f.size, INLINE_MAX + 1);
        assert_eq!(c.bytes(), 0);
    }

    #[tokio::test]
    async fn turned_off_it_keeps_nothing_and_still_answers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.css");
        std::fs::write(&p, "one").unwrap();
        let c = cache(0, 1 << 20, 60_000);
        assert!(matches!(c.lookup(&p).await, Lookup::File(_)));
        std::fs::write(&p, "two").unwrap();
        let Lookup::File(f) = c.lookup(&p).await else {
            panic!()
        };
        assert!(f.body.is_none(), "nothing kept: read per request");
        assert_eq!(c.len(), 0);
        assert_eq!(c.kind_of(dir.path()), FileKind::Dir);
    }
}
