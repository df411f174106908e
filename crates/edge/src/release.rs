//! Which release (code version) an upstream track runs: the cache namespace.
//!
//! Magento's static content deploy writes `pub/static/deployed_version.txt`
//! (a Unix time; the `versionNNN` of static URLs). That file, read from the
//! track's docroot, names the release; `magento.release` is the fallback for
//! docroots without one (and for HTTP upstreams, which have no docroot). The
//! file wins so that the pods of a rolling or Argo Rollouts deploy, which
//! share one config but not one image, each know their own release without
//! anyone editing the config.
//!
//! The release id goes into every cache key (`magestack_fpc::key`), so a
//! page rendered by one release is never served for another, in the local
//! store or through the shared L2; purges select by tag and so reach every
//! namespace. An edge that knows no release keys pages as before.

use std::path::Path;
use std::sync::Arc;

/// The file Magento's `setup:static-content:deploy` writes under `pub/`.
pub const DEPLOYED_VERSION_FILE: &str = "static/deployed_version.txt";

/// Largest `deployed_version.txt` read (it holds a number and a newline).
const MAX_FILE_BYTES: u64 = 4096;

/// The release of a docroot (`pub/`): the trimmed first line of its
/// `static/deployed_version.txt` when that is a valid release id
/// ([`magestack_rollout::is_release_id`]), else `None` (no file, unreadable,
/// too large or not an id: logged, never fatal).
pub fn deployed_version(docroot: &Path) -> Option<String> {
    let path = docroot.join(DEPLOYED_VERSION_FILE);
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        tracing::warn!(path = %path.display(), bytes = meta.len(), "deployed_version.txt is not a small file; ignored.");
        return None;
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "deployed_version.txt unreadable; ignored.");
            return None;
        }
    };
    let id = text.lines().next().unwrap_or("").trim();
    if magestack_rollout::is_release_id(id) {
        Some(id.to_owned())
    } else {
        tracing::warn!(path = %path.display(), "deployed_version.txt does not hold a release id; ignored.");
        None
    }
}

/// The release of a track: its docroot's `deployed_version.txt`, else the
/// configured id, else none.
pub fn resolve(docroot: Option<&Path>, configured: Option<&str>) -> Option<Arc<str>> {
    docroot
        .and_then(deployed_version)
        .or_else(|| configured.map(str::to_owned))
        .map(Arc::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_docroot_file_wins_over_the_config() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(Some(dir.path()), None), None);
        assert_eq!(
            resolve(Some(dir.path()), Some("cfg")).as_deref(),
            Some("cfg")
        );
        std::fs::create_dir(dir.path().join("static")).unwrap();
        std::fs::write(dir.path().join(DEPLOYED_VERSION_FILE), "1712345678\n").unwrap();
        assert_eq!(
            resolve(Some(dir.path()), Some("cfg")).as_deref(),
            Some("1712345678")
        );
        // Not an id: the config applies.
        std::fs::write(dir.path().join(DEPLOYED_VERSION_FILE), "<?php echo 1;\n").unwrap();
        assert_eq!(
            resolve(Some(dir.path()), Some("cfg")).as_deref(),
            Some("cfg")
        );
        assert_eq!(resolve(None, Some("cfg")).as_deref(), Some("cfg"));
    }
}
