//! Client network rules, checked first for every request: an allowlist
//! (never blocked or rate limited), a denylist from the config and from
//! files re-read when they change (reputation feeds), and an admin
//! allowlist that hides the admin front name (404) from other networks.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use magestack_waf::IpSet;

use crate::settings::IpRulesSpec;

/// What the network rules say about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpVerdict {
    /// In `waf.allow`: skip the other defences.
    Allowlisted,
    /// No rule applies.
    Pass,
    /// In `waf.deny` or a deny file: 403.
    Deny,
    /// An admin path from outside `waf.admin_allow`: 404.
    AdminHidden,
}

#[derive(Debug)]
pub(crate) struct IpFilter {
    allow: IpSet,
    static_deny: IpSet,
    deny: ArcSwap<IpSet>,
    files: Vec<(PathBuf, Mutex<Option<SystemTime>>)>,
    admin_allow: Option<IpSet>,
    admin_front: String,
    /// The admin front name is custom and `/admin` is closed (404 at the
    /// edge: scanners probing the default path never reach PHP).
    close_default_admin: bool,
    pub(crate) denied: AtomicU64,
    pub(crate) admin_hidden: AtomicU64,
    empty: bool,
}

/// A `waf.deny_files` file that could not be used (the previous list stays).
#[derive(Debug, thiserror::Error)]
pub enum DenyFileError {
    /// Not readable.
    #[error("waf.deny_files {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A line that is not an address or network.
    #[error("waf.deny_files {}: {source}", path.display())]
    Parse {
        path: std::path::PathBuf,
        source: magestack_waf::ipset::ParseError,
    },
}

impl IpFilter {
    /// Builds the filter and reads the deny files.
    ///
    /// # Errors
    ///
    /// A deny file cannot be read or has a line that is not a network.
    pub(crate) fn new(spec: &IpRulesSpec, admin_front: &str) -> Result<IpFilter, DenyFileError> {
        let static_deny = IpSet::new(spec.deny.iter().copied());
        let f = IpFilter {
            allow: IpSet::new(spec.allow.iter().copied()),
            deny: ArcSwap::from_pointee(static_deny.clone()),
            static_deny,
            files: spec
                .deny_files
                .iter()
                .map(|p| (p.clone(), Mutex::new(None)))
                .collect(),
            admin_allow: (!spec.admin_allow.is_empty())
                .then(|| IpSet::new(spec.admin_allow.iter().copied())),
            admin_front: admin_front.trim_matches('/').to_owned(),
            close_default_admin: spec.close_default_admin
                && admin_front.trim_matches('/') != "admin",
            denied: AtomicU64::new(0),
            admin_hidden: AtomicU64::new(0),
            empty: spec.allow.is_empty()
                && spec.deny.is_empty()
                && spec.deny_files.is_empty()
                && spec.admin_allow.is_empty(),
        };
        f.reload_files(true)?;
        Ok(f)
    }

    /// Re-reads the deny files when one changed (or when `force`). On an
    /// error the previous list stays. Returns whether the list changed.
    pub(crate) fn reload_files(&self, force: bool) -> Result<bool, DenyFileError> {
        if self.files.is_empty() {
            return Ok(false);
        }
        let mut changed = force;
        for (path, seen) in &self.files {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let mut seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen != mtime {
                *seen = mtime;
                changed = true;
            }
        }
        if !changed {
            return Ok(false);
        }
        let mut set = self.static_deny.clone();
        for (path, _) in &self.files {
            let text = std::fs::read_to_string(path).map_err(|source| DenyFileError::Read {
                path: path.clone(),
                source,
            })?;
            let list = IpSet::parse(&text).map_err(|source| DenyFileError::Parse {
                path: path.clone(),
                source,
            })?;
            set = set.union(&list);
        }
        tracing::info!(ranges = set.ranges(), "Deny list loaded.");
        self.deny.store(Arc::new(set));
        Ok(true)
    }

    /// True when deny files are watched.
    pub(crate) fn watches_files(&self) -> bool {
        !self.files.is_empty()
    }

    pub(crate) fn check(&self, client: IpAddr, path: &str) -> IpVerdict {
        if self.close_default_admin && crate::pool_route::is_admin_front(path, "admin") {
            self.admin_hidden.fetch_add(1, Ordering::Relaxed);
            return IpVerdict::AdminHidden;
        }
        if self.empty {
            return IpVerdict::Pass;
        }
        if self.allow.contains(client) {
            return IpVerdict::Allowlisted;
        }
        if self.deny.load().contains(client) {
            self.denied.fetch_add(1, Ordering::Relaxed);
            return IpVerdict::Deny;
        }
        if let Some(admins) = &self.admin_allow {
            if crate::pool_route::is_admin_front(path, &self.admin_front)
                && !admins.contains(client)
            {
                self.admin_hidden.fetch_add(1, Ordering::Relaxed);
                return IpVerdict::AdminHidden;
            }
        }
        IpVerdict::Pass
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> IpRulesSpec {
        IpRulesSpec {
            allow: vec!["10.20.0.0/16".parse().unwrap()],
            deny: vec![
                "192.0.2.0/24".parse().unwrap(),
                "10.20.5.0/24".parse().unwrap(),
            ],
            deny_files: Vec::new(),
            admin_allow: vec!["10.20.30.0/24".parse().unwrap()],
            close_default_admin: false,
        }
    }

    #[test]
    fn default_admin_path_is_closed_only_with_a_custom_front_name() {
        let spec = IpRulesSpec {
            close_default_admin: true,
            ..IpRulesSpec::default()
        };
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let f = IpFilter::new(&spec, "backoffice_7x").unwrap();
        for p in ["/admin", "/admin/", "/index.php/admin/dashboard/"] {
            assert_eq!(f.check(ip, p), IpVerdict::AdminHidden, "{p}");
        }
        for p in ["/backoffice_7x/", "/administrator-tips.html", "/"] {
            assert_eq!(f.check(ip, p), IpVerdict::Pass, "{p}");
        }
        let f = IpFilter::new(&spec, "admin").unwrap();
        assert_eq!(f.check(ip, "/admin/"), IpVerdict::Pass);
    }

    #[test]
    fn order_allow_deny_admin() {
        let f = IpFilter::new(&spec(), "admin").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            f.check(ip("10.20.5.1"), "/"),
            IpVerdict::Allowlisted,
            "allow wins"
        );
        assert_eq!(f.check(ip("192.0.2.9"), "/"), IpVerdict::Deny);
        assert_eq!(
            f.check(ip("198.51.100.1"), "/admin/dashboard"),
            IpVerdict::AdminHidden
        );
        assert_eq!(
            f.check(ip("198.51.100.1"), "/index.php/admin"),
            IpVerdict::AdminHidden
        );
        assert_eq!(
            f.check(ip("198.51.100.1"), "/administrator"),
            IpVerdict::Pass
        );
        assert_eq!(
            f.check(ip("198.51.100.1"), "/women/tops.html"),
            IpVerdict::Pass
        );
        assert_eq!(f.check(ip("10.20.30.4"), "/admin"), IpVerdict::Allowlisted);
        assert_eq!(f.denied.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn deny_files_are_reread_when_they_change_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("feed.txt");
        std::fs::write(&file, "203.0.113.0/24\n").unwrap();
        let mut s = spec();
        s.deny_files = vec![file.clone()];
        let f = IpFilter::new(&s, "admin").unwrap();
        let bad = "198.51.100.77".parse().unwrap();
        assert_eq!(
            f.check("203.0.113.5".parse().unwrap(), "/"),
            IpVerdict::Deny
        );
        assert_eq!(f.check(bad, "/"), IpVerdict::Pass);
        assert!(!f.reload_files(false).unwrap(), "unchanged");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "203.0.113.0/24\n198.51.100.77\n").unwrap();
        // Force: coarse mtimes may not have moved within the test.
        assert!(f.reload_files(true).unwrap());
        assert_eq!(f.check(bad, "/"), IpVerdict::Deny);
        std::fs::write(&file, "garbage\n").unwrap();
        let e = f.reload_files(true).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert_eq!(f.check(bad, "/"), IpVerdict::Deny, "previous list kept");
        std::fs::write(&file, "nope\n").unwrap();
        let e = IpFilter::new(&s, "admin").unwrap_err();
        assert!(matches!(e, DenyFileError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("feed.txt"));
    }
}
