//! Filesystem facts the router needs, behind a trait so the decision logic
//! stays pure and testable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a path names, after following symlinks (nginx's default,
/// `disable_symlinks off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Exists, but is neither (socket, FIFO, device). nginx's `try_files $uri`
    /// accepts it; its static handler then answers 404.
    Other,
    /// Does not exist, or cannot be examined (dangling symlink, `ENOTDIR`,
    /// permission denied, name too long).
    Missing,
}

/// Answers "what is at this path?". Implementations must follow symlinks.
///
/// The router asks only about paths under the document root or the Magento
/// root, and never mutates anything.
pub trait Fs {
    /// The kind of `path`.
    fn kind(&self, path: &Path) -> FileKind;
}

impl<T: Fs + ?Sized> Fs for &T {
    fn kind(&self, path: &Path) -> FileKind {
        (**self).kind(path)
    }
}

/// The real filesystem, through `std::fs::metadata` (follows symlinks).
///
/// Blocking: one `stat(2)` per check, a handful per request. The edge calls
/// [`crate::Router::route`] where blocking that long is acceptable, or on a
/// blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl Fs for RealFs {
    fn kind(&self, path: &Path) -> FileKind {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => FileKind::File,
            Ok(m) if m.is_dir() => FileKind::Dir,
            Ok(_) => FileKind::Other,
            Err(_) => FileKind::Missing,
        }
    }
}

/// An in-memory tree for tests, fuzzing and examples.
///
/// Adding a file or directory also adds all of its parent directories.
/// Paths are compared component-wise, so `/a/b/` and `/a/b` are the same
/// entry (the router itself applies the `ENOTDIR` rule for a file named
/// with a trailing slash).
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    entries: BTreeMap<PathBuf, FileKind>,
}

impl MemFs {
    /// An empty tree (every path is [`FileKind::Missing`], even `/`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file and its parent directories.
    #[must_use]
    pub fn with_file(mut self, path: impl AsRef<Path>) -> Self {
        self.add(path.as_ref(), FileKind::File);
        self
    }

    /// Adds a directory and its parents.
    #[must_use]
    pub fn with_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.add(path.as_ref(), FileKind::Dir);
        self
    }

    /// Adds an entry of any kind and its parent directories.
    pub fn add(&mut self, path: &Path, kind: FileKind) {
        for parent in path.ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                continue;
            }
            self.entries.insert(parent.to_path_buf(), FileKind::Dir);
        }
        self.entries.insert(path.to_path_buf(), kind);
    }
}

impl Fs for MemFs {
    fn kind(&self, path: &Path) -> FileKind {
        self.entries.get(path).copied().unwrap_or(FileKind::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfs_adds_parents() {
        let fs = MemFs::new().with_file("/app/pub/static/a.css");
        assert_eq!(fs.kind(Path::new("/app/pub/static/a.css")), FileKind::File);
        assert_eq!(fs.kind(Path::new("/app/pub/static")), FileKind::Dir);
        assert_eq!(fs.kind(Path::new("/app/pub/static/")), FileKind::Dir);
        assert_eq!(fs.kind(Path::new("/")), FileKind::Dir);
        assert_eq!(fs.kind(Path::new("/app/pub/x")), FileKind::Missing);
    }

    #[test]
    fn realfs_follows_what_exists() {
        let dir = std::env::temp_dir();
        assert_eq!(RealFs.kind(&dir), FileKind::Dir);
        assert_eq!(
            RealFs.kind(&dir.join("magestack-routing-definitely-missing")),
            FileKind::Missing
        );
    }
}
