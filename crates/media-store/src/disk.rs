//! The disk cache: one data file and one `.meta` file per object or
//! variant, named by [`magestack_media::cache_name`], bounded in bytes by a
//! [`DiskIndex`], rebuilt from the directory at start (oldest file first),
//! so it survives restarts.
//!
//! Files are written under a temporary name and renamed into place, so a
//! reader never sees half a file; temporary files left by a crash are
//! removed at start. An evicted file that a response is still reading stays
//! readable through its open descriptor (Unix semantics).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use magestack_media::DiskIndex;
use parking_lot::Mutex;

/// What is known of a cached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Strong `ETag`, quoted.
    pub etag: String,
    /// `Last-Modified`, seconds since the epoch.
    pub last_modified: u64,
    /// Length of the data file.
    pub size: u64,
    /// Media type of a variant (`image/webp`); empty for objects (the edge
    /// derives it from the name, as for local files).
    pub content_type: String,
}

/// Bytes counted for a `.meta` file beside its data.
const META_OVERHEAD: u64 = 256;
const TMP_PREFIX: &str = "tmp.";
const META_SUFFIX: &str = ".meta";

impl Meta {
    fn encode(&self) -> String {
        format!(
            "v1\n{}\n{}\n{}\n{}\n",
            self.etag, self.last_modified, self.size, self.content_type
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut l = text.split('\n');
        if l.next()? != "v1" {
            return None;
        }
        Some(Self {
            etag: l.next()?.to_owned(),
            last_modified: l.next()?.parse().ok()?,
            size: l.next()?.parse().ok()?,
            content_type: l.next()?.to_owned(),
        })
    }
}

struct Inner {
    index: DiskIndex,
    meta: HashMap<String, Arc<Meta>>,
}

/// A byte-bounded directory of cached files.
pub struct DiskCache {
    dir: PathBuf,
    inner: Mutex<Inner>,
    tmp_seq: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A file being written; removed on drop unless committed.
#[derive(Debug)]
pub struct TmpFile {
    path: PathBuf,
    keep: bool,
}

impl TmpFile {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where a committed file is.
#[derive(Debug)]
pub enum Committed {
    /// In the cache under its name.
    Cached(Arc<Meta>),
    /// Larger than the whole cache: served from the temporary file, which
    /// is removed when the last holder drops it.
    Uncached(Arc<Meta>, TmpFile),
}

impl DiskCache {
    /// Opens (creating) `dir` with a ceiling of `capacity` bytes and indexes
    /// what a previous run left, oldest first; removes temporary files,
    /// orphans and what no longer fits.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created or listed.
    pub fn open(dir: &Path, capacity: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(std::time::SystemTime, String, Meta)> = Vec::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            names.push(name);
        }
        for name in &names {
            let path = dir.join(name);
            if !is_ours(name) {
                // Never touch what this cache did not write.
                continue;
            }
            if name.starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Some(base) = name.strip_suffix(META_SUFFIX) {
                let data = dir.join(base);
                let meta = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| Meta::decode(&t));
                let data_meta = std::fs::metadata(&data).ok();
                match (meta, data_meta) {
                    (Some(m), Some(d)) if d.is_file() && d.len() == m.size => {
                        let when = d.modified().unwrap_or(std::time::UNIX_EPOCH);
                        found.push((when, base.to_owned(), m));
                    }
                    _ => {
                        let _ = std::fs::remove_file(&path);
                        let _ = std::fs::remove_file(&data);
                    }
                }
            } else if !names.iter().any(|n| n == &format!("{name}{META_SUFFIX}")) {
                let _ = std::fs::remove_file(&path);
            }
        }
        found.sort_by_key(|a| a.0);
        let mut inner = Inner {
            index: DiskIndex::new(capacity),
            meta: HashMap::new(),
        };
        for (_, name, meta) in found {
            match inner.index.insert(&name, meta.size + META_OVERHEAD) {
                Ok(evicted) => {
                    for e in evicted {
                        inner.meta.remove(&e);
                        remove_pair(dir, &e);
                    }
                    inner.meta.insert(name, Arc::new(meta));
                }
                Err(_) => remove_pair(dir, &name),
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            inner: Mutex::new(inner),
            tmp_seq: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    /// The cached file `name` (marked as just used) and its path.
    pub fn lookup(&self, name: &str) -> Option<(Arc<Meta>, PathBuf)> {
        let mut inner = self.inner.lock();
        let meta = inner.meta.get(name)?.clone();
        inner.index.touch(name);
        Some((meta, self.dir.join(name)))
    }

    /// Forgets `name` (its file vanished under us) and removes what is left.
    pub fn forget(&self, name: &str) {
        let mut inner = self.inner.lock();
        inner.index.remove(name);
        inner.meta.remove(name);
        remove_pair(&self.dir, name);
    }

    /// A fresh temporary file name in the cache directory (same filesystem,
    /// so the commit is a rename).
    pub fn tmp(&self) -> TmpFile {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        TmpFile {
            path: self
                .dir
                .join(format!("{TMP_PREFIX}{}.{n}", std::process::id())),
            keep: false,
        }
    }

    /// Moves a fully written temporary file into the cache as `name`,
    /// evicting the least recently used files to make room.
    ///
    /// # Errors
    ///
    /// When the `.meta` file cannot be written or the rename fails.
    pub fn commit(&self, name: &str, mut tmp: TmpFile, meta: Meta) -> io::Result<Committed> {
        let meta = Arc::new(meta);
        let cost = meta.size + META_OVERHEAD;
        if cost > self.inner.lock().index.capacity() {
            return Ok(Committed::Uncached(meta, tmp));
        }
        let meta_tmp = self.tmp();
        std::fs::write(meta_tmp.path(), meta.encode())?;
        let data_path = self.dir.join(name);
        std::fs::rename(tmp.path(), &data_path)?;
        tmp.keep = true;
        let mut meta_tmp = meta_tmp;
        std::fs::rename(
            meta_tmp.path(),
            self.dir.join(format!("{name}{META_SUFFIX}")),
        )?;
        meta_tmp.keep = true;
        let mut inner = self.inner.lock();
        let evicted = inner.index.insert(name, cost).unwrap_or_default();
        for e in &evicted {
            inner.meta.remove(e);
        }
        inner.meta.insert(name.to_owned(), meta.clone());
        drop(inner);
        self.evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        for e in evicted {
            remove_pair(&self.dir, &e);
        }
        Ok(Committed::Cached(meta))
    }

    /// Bytes held (data plus a fixed overhead per file).
    pub fn bytes(&self) -> u64 {
        self.inner.lock().index.total_bytes()
    }

    /// Files held.
    pub fn len(&self) -> usize {
        self.inner.lock().index.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ceiling in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.lock().index.capacity()
    }

    /// Files evicted since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A name this cache writes: 64 hex digits ([`magestack_media::cache_name`]),
/// with `.meta`, or a temporary `tmp.<pid>.<n>`.
fn is_ours(name: &str) -> bool {
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
        return rest
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    }
    hex(name.strip_suffix(META_SUFFIX).unwrap_or(name))
}

fn remove_pair(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(name));
    let _ = std::fs::remove_file(dir.join(format!("{name}{META_SUFFIX}")));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(name: &str) -> String {
        magestack_media::cache_name(&[name])
    }

    fn put(c: &DiskCache, name: &str, body: &[u8]) -> Committed {
        let name = &n(name);
        let t = c.tmp();
        std::fs::write(t.path(), body).unwrap();
        c.commit(
            name,
            t,
            Meta {
                etag: "\"e\"".to_owned(),
                last_modified: 7,
                size: body.len() as u64,
                content_type: String::new(),
            },
        )
        .unwrap()
    }

    #[test]
    fn bounded_evicting_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 3 * (1000 + META_OVERHEAD);
        let c = DiskCache::open(dir.path(), cap).unwrap();
        for n in ["a", "b", "c"] {
            assert!(matches!(put(&c, n, &[1; 1000]), Committed::Cached(_)));
        }
        assert!(c.lookup(&n("a")).is_some()); // a is now the most recent
        put(&c, "d", &[2; 1000]);
        assert!(c.lookup(&n("b")).is_none());
        assert!(!dir.path().join(n("b")).exists());
        assert_eq!(c.len(), 3);
        assert!(matches!(
            put(&c, "huge", &[0; 5000]),
            Committed::Uncached(..)
        ));
        // A crash leaves a temporary file and an orphan.
        std::fs::write(dir.path().join("tmp.1.1"), b"x").unwrap();
        std::fs::write(dir.path().join(n("orphan")), b"x").unwrap();
        std::fs::write(dir.path().join("not-ours.txt"), b"x").unwrap();
        drop(c);
        let c = DiskCache::open(dir.path(), cap).unwrap();
        assert_eq!(c.len(), 3);
        let (m, p) = c.lookup(&n("d")).unwrap();
        assert_eq!(m.etag, "\"e\"");
        assert_eq!(std::fs::read(p).unwrap(), vec![2; 1000]);
        assert!(!dir.path().join("tmp.1.1").exists());
        assert!(!dir.path().join(n("orphan")).exists());
        assert!(!dir.path().join(n("huge")).exists());
        assert!(
            dir.path().join("not-ours.txt").exists(),
            "foreign files are left alone"
        );
        // A smaller ceiling after a restart evicts down to it.
        drop(c);
        let c = DiskCache::open(dir.path(), 1000 + META_OVERHEAD).unwrap();
        assert_eq!(c.len(), 1);
    }
}
