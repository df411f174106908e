//! Which PHP-FPM pool a request goes to: pure, path in, pool index out.
//!
//! Configured rules first, in order; then Magento's admin traffic (the admin
//! front name, asynchronous/bulk REST, REST imports) to `admin`; everything
//! else to `frontend` (index 0). Matching uses the request path as received
//! (no query), so a shopper cannot reach the admin pool's queue except
//! through admin URLs, which Magento itself guards.

use regex::Regex;

use crate::settings::{PoolRouting, RuleMatch};

/// A compiled routing table over pools indexed `0..n` (0 = `frontend`).
#[derive(Debug, Clone)]
pub struct PoolRouter {
    admin_front: String,
    rules: Vec<(Matcher, usize)>,
    /// Where the built-in admin rules send requests (`frontend` when no
    /// `admin` pool exists).
    admin: usize,
}

#[derive(Debug, Clone)]
enum Matcher {
    Prefix(String),
    Regex(Regex),
}

/// Why a routing table could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolRouteError {
    /// A rule names a pool that does not exist.
    #[error("routing rule {index} names unknown pool {pool:?}")]
    UnknownPool {
        /// Position of the rule.
        index: usize,
        /// The name.
        pool: String,
    },
    /// A rule's regex does not compile.
    #[error("routing rule {index}: invalid regex: {reason}")]
    Regex {
        /// Position of the rule.
        index: usize,
        /// The regex crate's message.
        reason: String,
    },
}

impl PoolRouter {
    /// Builds the table for pools named `names` (`frontend` first).
    /// A rule naming `admin` when no `admin` pool exists goes to `frontend`.
    pub fn new(routing: &PoolRouting, names: &[&str]) -> Result<PoolRouter, PoolRouteError> {
        let index_of = |name: &str| names.iter().position(|n| *n == name);
        let admin = index_of("admin").unwrap_or(0);
        let mut rules = Vec::with_capacity(routing.rules.len());
        for (index, rule) in routing.rules.iter().enumerate() {
            let pool = match index_of(&rule.pool) {
                Some(i) => i,
                None if rule.pool == "admin" => admin,
                None => {
                    return Err(PoolRouteError::UnknownPool {
                        index,
                        pool: rule.pool.clone(),
                    })
                }
            };
            let m = match &rule.matcher {
                RuleMatch::Prefix(p) => Matcher::Prefix(p.clone()),
                RuleMatch::Regex(r) => {
                    Matcher::Regex(Regex::new(r).map_err(|e| PoolRouteError::Regex {
                        index,
                        reason: e.to_string(),
                    })?)
                }
            };
            rules.push((m, pool));
        }
        Ok(PoolRouter {
            admin_front: routing.admin_front_name.trim_matches('/').to_owned(),
            rules,
            admin,
        })
    }

    /// The pool for a request path.
    pub fn pick(&self, path: &str) -> usize {
        for (m, pool) in &self.rules {
            let hit = match m {
                Matcher::Prefix(p) => path.starts_with(p.as_str()),
                Matcher::Regex(r) => r.is_match(path),
            };
            if hit {
                return *pool;
            }
        }
        if self.admin != 0 && is_admin_path(path, &self.admin_front) {
            return self.admin;
        }
        0
    }
}

/// The admin front name itself: `/<front>`, `/<front>/…`, also behind
/// `/index.php/` (matched exactly, as Magento's router does).
pub use magestack_waf::is_admin_front;

/// Magento admin traffic: `/<front>[/…]`, `/index.php/<front>[/…]`,
/// `/rest/<store>/async/…` (asynchronous and bulk web API) and
/// `/rest/<store>/V1/import/…` (REST imports).
pub fn is_admin_path(path: &str, front: &str) -> bool {
    if is_admin_front(path, front) {
        return true;
    }
    let rest = path.strip_prefix("/index.php").unwrap_or(path);
    let mut segs = rest.split('/').skip(1);
    if segs.next() != Some("rest") {
        return false;
    }
    let _store = segs.next();
    match segs.next() {
        Some("async") => true,
        Some("V1") => segs.next() == Some("import"),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::settings::PoolRule;

    fn routing(rules: Vec<PoolRule>) -> PoolRouting {
        PoolRouting {
            admin_front_name: "admin".into(),
            rules,
        }
    }

    #[test]
    fn magento_admin_traffic_goes_to_admin() {
        let r = PoolRouter::new(&routing(vec![]), &["frontend", "admin"]).unwrap();
        for admin in [
            "/admin",
            "/admin/",
            "/admin/catalog/product/save/id/5/",
            "/index.php/admin/import/index/",
            "/admin/import/run",
            "/rest/default/async/bulk/V1/products",
            "/rest/all/async/V1/orders",
            "/rest/all/V1/import/csv",
        ] {
            assert_eq!(r.pick(admin), 1, "{admin}");
        }
        for shop in [
            "/",
            "/women/tops.html",
            "/administrator.html",
            "/catalog/admin/x",
            "/rest/default/V1/carts/mine",
            "/rest/V1/products",
            "/static/admin/x.js",
        ] {
            assert_eq!(r.pick(shop), 0, "{shop}");
        }
    }

    #[test]
    fn custom_front_name_and_rules_come_first() {
        let mut rt = routing(vec![
            PoolRule {
                matcher: RuleMatch::Prefix("/feeds/".into()),
                pool: "cron".into(),
            },
            PoolRule {
                matcher: RuleMatch::Regex("^/[a-z]{2}/export".into()),
                pool: "admin".into(),
            },
        ]);
        rt.admin_front_name = "/backoffice_x1/".into();
        let r = PoolRouter::new(&rt, &["frontend", "admin", "cron"]).unwrap();
        assert_eq!(r.pick("/feeds/google.xml"), 2);
        assert_eq!(r.pick("/de/export/all"), 1);
        assert_eq!(r.pick("/backoffice_x1/dashboard"), 1);
        assert_eq!(r.pick("/admin/dashboard"), 0);
    }

    #[test]
    fn without_an_admin_pool_everything_is_frontend() {
        let rt = routing(vec![PoolRule {
            matcher: RuleMatch::Prefix("/x".into()),
            pool: "admin".into(),
        }]);
        let r = PoolRouter::new(&rt, &["frontend"]).unwrap();
        assert_eq!(r.pick("/admin/x"), 0);
        assert_eq!(r.pick("/x"), 0);
    }

    #[test]
    fn bad_rules_are_errors() {
        let rt = routing(vec![PoolRule {
            matcher: RuleMatch::Prefix("/x".into()),
            pool: "nope".into(),
        }]);
        assert!(matches!(
            PoolRouter::new(&rt, &["frontend"]),
            Err(PoolRouteError::UnknownPool { index: 0, .. })
        ));
        let rt = routing(vec![PoolRule {
            matcher: RuleMatch::Regex("(".into()),
            pool: "frontend".into(),
        }]);
        assert!(matches!(
            PoolRouter::new(&rt, &["frontend"]),
            Err(PoolRouteError::Regex { .. })
        ));
    }

    proptest::proptest! {
        /// Any path gets a pool in range and never panics.
        #[test]
        fn any_path_routes(path in "\\PC{0,64}") {
            let r = PoolRouter::new(&routing(vec![]), &["frontend", "admin"]).unwrap();
            proptest::prop_assert!(r.pick(&path) < 2);
        }
    }
}
