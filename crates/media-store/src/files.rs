//! [`MediaFiles`]: objects of the media and static sources, from the disk
//! cache or fetched once from the store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use magestack_media::{cache_name, ImageFormat, KeyError, Refusal, ResizeLimits, ResizeParams};

use crate::coalesce::Inflight;
use crate::disk::{Committed, DiskCache, Meta, TmpFile};
use crate::resize::{ResizeError, ResizePool};
use crate::store::{FetchError, Remote, RemoteSpec, StoreError};

/// What the edge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `/media/` from this store; `None` = the docroot.
    pub media: Option<RemoteSpec>,
    /// `/static/` from this store; `None` = the docroot.
    pub statics: Option<RemoteSpec>,
    /// Release for static URLs without `versionNNN`.
    pub static_deployed_version: Option<String>,
    /// Disk cache directory.
    pub cache_dir: PathBuf,
    /// Disk cache ceiling, bytes.
    pub cache_size: u64,
    /// `Retry-After` of a 503.
    pub retry_after: Duration,
    /// Image resizing; `None` = off.
    pub resize: Option<ResizeSpec>,
}

/// Image resizing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeSpec {
    /// Bounds and bomb limits.
    pub limits: ResizeLimits,
    /// Transforms at once (0: one per CPU).
    pub workers: usize,
    /// Transforms waiting before 503.
    pub queue: usize,
    /// WebP for `Accept: image/webp`.
    pub webp: bool,
}

/// Which source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `/media/`.
    Media,
    /// `/static/`.
    Static,
}

/// Whether a file came from the disk cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the disk cache.
    Hit,
    /// Fetched from the store (by this request or one it waited for).
    Miss,
}

impl CacheStatus {
    /// `HIT` or `MISS`, for `X-Cache` and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
        }
    }
}

/// Where the bytes of an [`Opened`] are.
#[derive(Debug)]
pub enum Body {
    /// In memory (a small, recently used file): a refcount, no read.
    Memory(bytes::Bytes),
    /// An open file, positioned at 0.
    File(tokio::fs::File),
}

/// Files up to this size are kept in memory once read ([`HOT_BYTES`] in all).
pub const HOT_MAX_OBJECT: u64 = 256 * 1024;
/// Memory for small, recently used files, on top of the disk cache.
pub const HOT_BYTES: u64 = 64 << 20;

/// An open cached file.
#[derive(Debug)]
pub struct Opened {
    /// Its metadata.
    pub meta: Arc<Meta>,
    /// Its bytes.
    pub body: Body,
    /// Hit or miss.
    pub status: CacheStatus,
    /// Keeps an uncached (too large) temporary file until the response is built.
    _tmp: Option<Arc<TmpFile>>,
}

impl Opened {
    /// A local file (the docroot) as an original for [`MediaFiles::variant`].
    pub fn local(meta: Meta, file: tokio::fs::File) -> Self {
        Self {
            meta: Arc::new(meta),
            body: Body::File(file),
            status: CacheStatus::Hit,
            _tmp: None,
        }
    }
}

/// Why a variant cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VariantError {
    /// Refused by the limits or the format: 400/413/415 ([`Refusal::status`]).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The resize pool is full: 503 with `Retry-After`.
    #[error("resize pool busy")]
    Busy,
    /// The original could not be decoded or the variant written: 415 / 503.
    #[error("{0}")]
    Failed(String),
    /// Resizing is off.
    #[error("resizing is off")]
    Off,
}

/// Why a file cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The path maps to no key (escape attempt, directory): 404, store not asked.
    #[error("no key: {0}")]
    NoKey(#[from] KeyError),
    /// The store has no such object: Magento's fallback (`get.php`, `static.php`).
    #[error("not found")]
    NotFound,
    /// The store is down and the file is not cached: 503 with `Retry-After`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This source is the docroot.
    #[error("not an object-store source")]
    NotRemote,
}

/// Building failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The store client.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache directory.
    #[error("media.cache_dir {dir}: {source}")]
    Disk {
        /// The directory.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Counters, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Served from the disk cache.
    pub hits: AtomicU64,
    /// Fetched from the store.
    pub misses: AtomicU64,
    /// Store fetches that failed (down, timeout).
    pub errors: AtomicU64,
    /// Objects the store does not have.
    pub not_found: AtomicU64,
    /// Bytes fetched from the store.
    pub bytes_fetched: AtomicU64,
    /// Requests refused before the store (escapes).
    pub refused: AtomicU64,
}

/// The cache name of a variant: original, its validator, the pixels asked
/// for and the output format.
fn variant_name(id: &str, etag: &str, params: &ResizeParams, out: Option<ImageFormat>) -> String {
    cache_name(&[
        "variant",
        id,
        etag,
        &params.canonical(),
        out.map_or("same", ImageFormat::as_str),
    ])
}

#[derive(Debug)]
struct Hot {
    index: magestack_media::DiskIndex,
    data: std::collections::HashMap<String, (Arc<Meta>, bytes::Bytes)>,
}

#[derive(Debug, Clone)]
enum Fetched {
    Cached(Arc<Meta>),
    Uncached(Arc<Meta>, Arc<TmpFile>),
}

/// The media and static sources with their shared disk cache.
#[derive(Debug)]
pub struct MediaFiles {
    spec: Spec,
    media: Option<Remote>,
    statics: Option<Remote>,
    cache: Arc<DiskCache>,
    inflight: Inflight<Result<Fetched, FetchError>>,
    variants: Inflight<Result<Fetched, VariantError>>,
    resize: Option<ResizePool>,
    /// Small, recently used files in memory (LRU, [`HOT_BYTES`]).
    hot: parking_lot::Mutex<Hot>,
    /// Counters.
    pub stats: Stats,
}

impl MediaFiles {
    /// Builds the clients and opens the disk cache (indexing what a previous
    /// run left).
    ///
    /// # Errors
    ///
    /// When a client cannot be built or the cache directory cannot be used.
    pub fn new(spec: Spec) -> Result<Self, BuildError> {
        let media = spec.media.clone().map(Remote::new).transpose()?;
        let statics = spec.statics.clone().map(Remote::new).transpose()?;
        let cache = DiskCache::open(&spec.cache_dir, spec.cache_size).map_err(|source| {
            BuildError::Disk {
                dir: spec.cache_dir.display().to_string(),
                source,
            }
        })?;
        Ok(Self {
            media,
            statics,
            cache: Arc::new(cache),
            inflight: Inflight::default(),
            variants: Inflight::default(),
            hot: parking_lot::Mutex::new(Hot {
                index: magestack_media::DiskIndex::new(HOT_BYTES),
                data: std::collections::HashMap::new(),
            }),
            resize: spec
                .resize
                .as_ref()
                .map(|r| ResizePool::new(r.workers, r.queue)),
            spec,
            stats: Stats::default(),
        })
    }

    /// What this was built from (a reload with the same spec keeps it).
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The disk cache.
    pub fn cache(&self) -> &DiskCache {
        &self.cache
    }

    /// True when `which` comes from a store.
    pub fn is_remote(&self, which: Which) -> bool {
        self.remote(which).is_some()
    }

    /// `Retry-After` of a 503.
    pub fn retry_after(&self) -> Duration {
        self.spec.retry_after
    }

    fn remote(&self, which: Which) -> Option<&Remote> {
        match which {
            Which::Media => self.media.as_ref(),
            Which::Static => self.statics.as_ref(),
        }
    }

    /// The object key of a normalized request path.
    ///
    /// # Errors
    ///
    /// [`ObjectError::NotRemote`] for a docroot source, [`ObjectError::NoKey`]
    /// for a path that cannot be a key.
    pub fn key(&self, which: Which, path: &str) -> Result<String, ObjectError> {
        let remote = self.remote(which).ok_or(ObjectError::NotRemote)?;
        let r = match which {
            Which::Media => magestack_media::media_key(remote.prefix(), path),
            Which::Static => magestack_media::static_key(
                remote.prefix(),
                path,
                self.spec.static_deployed_version.as_deref(),
            )
            .map(|k| k.key),
        };
        r.map_err(|e| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            ObjectError::NoKey(e)
        })
    }

    /// Opens the object `key` of `which`: from the disk cache, else fetched
    /// once from the store (concurrent requests for it wait for that fetch).
    ///
    /// # Errors
    ///
    /// [`ObjectError::NotFound`] when the store has no such object,
    /// [`ObjectError::Unavailable`] when it cannot be fetched and is not cached.
    pub async fn open(&self, which: Which, key: &str) -> Result<Opened, ObjectError> {
        let remote = self.remote(which).ok_or(ObjectError::NotRemote)?;
        let name = cache_name(&[remote.bucket(), key]);
        if let Some(o) = self.open_cached(&name).await {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(o);
        }
        let (result, _ran) = self
            .inflight
            .run(&name, || self.fetch(remote, key, &name))
            .await;
        let fetched = match result {
            Ok(f) => f,
            Err(FetchError::NotFound) => return Err(ObjectError::NotFound),
            Err(e) => return Err(ObjectError::Unavailable(e.to_string())),
        };
        match fetched {
            Fetched::Cached(meta) => {
                match tokio::fs::File::open(self.cache.dir().join(&name)).await {
                    Ok(file) => Ok(Opened {
                        meta,
                        body: Body::File(file),
                        status: CacheStatus::Miss,
                        _tmp: None,
                    }),
                    // Evicted between the commit and here: unusual, not worth a refetch loop.
                    Err(e) => Err(ObjectError::Unavailable(format!("cache file: {e}"))),
                }
            }
            Fetched::Uncached(meta, tmp) => match tokio::fs::File::open(tmp.path()).await {
                Ok(file) => Ok(Opened {
                    meta,
                    body: Body::File(file),
                    status: CacheStatus::Miss,
                    _tmp: Some(tmp),
                }),
                Err(e) => Err(ObjectError::Unavailable(format!("temporary file: {e}"))),
            },
        }
    }

    /// The resize pool, for metrics; `None` when resizing is off.
    pub fn resize_pool(&self) -> Option<&ResizePool> {
        self.resize.as_ref()
    }

    /// The resized variant of `original` (whose identity is `id`: bucket and
    /// key, or the local path) for `params`, encoded as `out` (`None`: the
    /// original's format): from the disk cache, else made once (concurrent
    /// requests for it wait for that one resize) on the resize pool.
    ///
    /// # Errors
    ///
    /// [`VariantError`]: refusals, a full pool, a corrupt original.
    pub async fn variant(
        &self,
        id: &str,
        original: Opened,
        params: &ResizeParams,
        out: Option<ImageFormat>,
    ) -> Result<Opened, VariantError> {
        let (Some(pool), Some(spec)) = (&self.resize, &self.spec.resize) else {
            return Err(VariantError::Off);
        };
        let name = variant_name(id, &original.meta.etag, params, out);
        if let Some(o) = self.open_cached(&name).await {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(o);
        }
        if original.meta.size > spec.limits.max_source_bytes {
            return Err(Refusal::TooLarge {
                what: format!(
                    "{} bytes > {} bytes",
                    original.meta.size, spec.limits.max_source_bytes
                ),
            }
            .into());
        }
        let (result, ran) = self
            .variants
            .run(&name, || async {
                use tokio::io::AsyncReadExt;
                let src = match original.body {
                    Body::Memory(b) => b,
                    Body::File(mut file) => {
                        let mut v =
                            Vec::with_capacity(usize::try_from(original.meta.size).unwrap_or(0));
                        file.read_to_end(&mut v)
                            .await
                            .map_err(|e| VariantError::Failed(format!("original: {e}")))?;
                        bytes::Bytes::from(v)
                    }
                };
                let encoded = pool
                    .run(src, params.clone(), out, spec.limits.clone())
                    .await
                    .map_err(|e| match e {
                        ResizeError::Refused(r) => VariantError::Refused(r),
                        ResizeError::Busy => VariantError::Busy,
                        ResizeError::Failed(f) => VariantError::Failed(f),
                    })?;
                let tmp = self.cache.tmp();
                tokio::fs::write(tmp.path(), &encoded.bytes)
                    .await
                    .map_err(|e| VariantError::Failed(format!("disk: {e}")))?;
                let meta = Meta {
                    etag: format!("\"v{}\"", &name[..24]),
                    last_modified: original.meta.last_modified,
                    size: encoded.bytes.len() as u64,
                    content_type: encoded.format.mime().to_owned(),
                };
                match self.cache.commit(&name, tmp, meta) {
                    Ok(Committed::Cached(m)) => Ok(Fetched::Cached(m)),
                    Ok(Committed::Uncached(m, t)) => Ok(Fetched::Uncached(m, Arc::new(t))),
                    Err(e) => Err(VariantError::Failed(format!("disk: {e}"))),
                }
            })
            .await;
        if ran {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
        }
        let (meta, path, tmp) = match result? {
            Fetched::Cached(m) => (m, self.cache.dir().join(&name), None),
            Fetched::Uncached(m, t) => (m, t.path().to_owned(), Some(t)),
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| VariantError::Failed(format!("cache file: {e}")))?;
        Ok(Opened {
            meta,
            body: Body::File(file),
            status: CacheStatus::Miss,
            _tmp: tmp,
        })
    }

    /// The variant of the original `id` with validator `etag`, when it is
    /// cached: the cheap first step for a docroot original, before opening it.
    pub async fn cached_variant(
        &self,
        id: &str,
        etag: &str,
        params: &ResizeParams,
        out: Option<ImageFormat>,
    ) -> Option<Opened> {
        self.resize.as_ref()?;
        let o = self
            .open_cached(&variant_name(id, etag, params, out))
            .await?;
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(o)
    }

    /// Resize settings, when on.
    pub fn resize_spec(&self) -> Option<&ResizeSpec> {
        self.spec.resize.as_ref()
    }

    async fn open_cached(&self, name: &str) -> Option<Opened> {
        {
            let mut hot = self.hot.lock();
            if let Some((meta, bytes)) = hot.data.get(name).cloned() {
                hot.index.touch(name);
                return Some(Opened {
                    meta,
                    body: Body::Memory(bytes),
                    status: CacheStatus::Hit,
                    _tmp: None,
                });
            }
        }
        let (meta, path) = self.cache.lookup(name)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(_) => {
                self.cache.forget(name);
                return None;
            }
        };
        if meta.size > HOT_MAX_OBJECT {
            return Some(Opened {
                meta,
                body: Body::File(file),
                status: CacheStatus::Hit,
                _tmp: None,
            });
        }
        use tokio::io::AsyncReadExt;
        let mut v = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        if file.take(meta.size).read_to_end(&mut v).await.is_err() || v.len() as u64 != meta.size {
            self.cache.forget(name);
            return None;
        }
        let bytes = bytes::Bytes::from(v);
        {
            let mut hot = self.hot.lock();
            if let Ok(evicted) = hot.index.insert(name, meta.size) {
                for e in evicted {
                    hot.data.remove(&e);
                }
                hot.data
                    .insert(name.to_owned(), (meta.clone(), bytes.clone()));
            }
        }
        Some(Opened {
            meta,
            body: Body::Memory(bytes),
            status: CacheStatus::Hit,
            _tmp: None,
        })
    }

    async fn fetch(&self, remote: &Remote, key: &str, name: &str) -> Result<Fetched, FetchError> {
        // Another request may have committed it while this one waited for the lock.
        if let Some((meta, _)) = self.cache.lookup(name) {
            return Ok(Fetched::Cached(meta));
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let tmp = self.cache.tmp();
        let meta = match remote.fetch_to(key, tmp.path()).await {
            Ok(m) => m,
            Err(FetchError::NotFound) => {
                self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                return Err(FetchError::NotFound);
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(bucket = remote.bucket(), key, error = %e, "Object store fetch failed.");
                return Err(e);
            }
        };
        self.stats
            .bytes_fetched
            .fetch_add(meta.size, Ordering::Relaxed);
        match self.cache.commit(name, tmp, meta) {
            Ok(Committed::Cached(m)) => Ok(Fetched::Cached(m)),
            Ok(Committed::Uncached(m, t)) => Ok(Fetched::Uncached(m, Arc::new(t))),
            Err(e) => Err(FetchError::Disk(e.to_string())),
        }
    }
}
