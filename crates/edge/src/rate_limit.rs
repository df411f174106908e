//! The edge's rate limits: the pure [`magestack_waf::Limiter`] and
//! [`magestack_waf::RateRules`] with a clock, per-rule rejection counters,
//! and what a config reload keeps.
//!
//! A reload rebuilds the rules (a changed `waf.rate_limit_rules` takes
//! effect) and carries the per-client counters of every rule that still
//! exists, matched by name: nobody gets a fresh quota from a reload, and a
//! renamed or removed rule's counters are dropped.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;

use crate::settings::{RateLimitSpec, RuleMatch};

/// What the rate limits say about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// No rule applies.
    NotLimited,
    /// A rule applies and the client is within it (bypass the cache).
    Allow,
    /// Over the limit of `rule`.
    Deny {
        rule: Arc<str>,
        /// Seconds, rounded up.
        retry_after: u32,
    },
}

/// The edge's rate limiter, its rules and per-rule rejection counters.
#[derive(Debug)]
pub(crate) struct RateLimit {
    limiter: magestack_waf::Limiter,
    rules: magestack_waf::RateRules,
    /// Rule names, for log and metric labels (shared with the edge a
    /// reload replaced when the rule keeps its name).
    names: Vec<Arc<str>>,
    /// Rejections per rule, shared with the edge this one replaced when
    /// the rule keeps its name (counters continue across reloads).
    rejected: Vec<Arc<AtomicU64>>,
    ipv6_prefix_len: u8,
    /// The limiter's clock origin, kept across reloads (its timestamps are
    /// nanoseconds since this instant).
    epoch: Instant,
}

impl RateLimit {
    /// Rules from `spec` (configured ones first, then Magento's defaults).
    /// With `previous` (a reload), its per-client counters are carried over
    /// for the rules that keep their name.
    pub(crate) fn new(
        spec: &RateLimitSpec,
        admin_front_name: &str,
        previous: Option<&RateLimit>,
    ) -> RateLimit {
        let mut list: Vec<magestack_waf::RateRule> = spec
            .rules
            .iter()
            .filter_map(|r| {
                let path = match &r.matcher {
                    RuleMatch::Prefix(p) => magestack_waf::PathMatch::Prefix(p.clone()),
                    RuleMatch::Regex(x) => match regex::Regex::new(x) {
                        Ok(re) => magestack_waf::PathMatch::Regex(re),
                        Err(e) => {
                            tracing::error!(rule = %r.name, error = %e, "Rate limit rule skipped: invalid regex.");
                            return None;
                        }
                    },
                };
                Some(magestack_waf::RateRule {
                    name: r.name.clone(),
                    methods: r
                        .methods
                        .iter()
                        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                        .collect(),
                    path,
                    quota: magestack_waf::Quota::per(r.limit, r.period),
                    graphql_mutation: None,
                })
            })
            .collect();
        list.extend(magestack_waf::default_rules(admin_front_name));
        let rules = magestack_waf::RateRules::new(list);
        let old_index =
            |name: &str| previous.and_then(|p| p.names.iter().position(|n| &**n == name));
        let names: Vec<Arc<str>> = rules
            .rules()
            .iter()
            .map(
                |r| match old_index(&r.name).and_then(|i| previous?.names.get(i)) {
                    Some(n) => Arc::clone(n),
                    None => Arc::from(r.name.as_str()),
                },
            )
            .collect();
        let rejected = rules
            .rules()
            .iter()
            .map(|r| {
                old_index(&r.name)
                    .and_then(|i| previous?.rejected.get(i).cloned())
                    .unwrap_or_default()
            })
            .collect();
        let limiter = magestack_waf::Limiter::new(spec.max_keys);
        let epoch = previous.map_or_else(Instant::now, |p| p.epoch);
        let rl = RateLimit {
            limiter,
            rules,
            names,
            rejected,
            ipv6_prefix_len: spec.ipv6_prefix_len,
            epoch,
        };
        if let Some(prev) = previous {
            // Old rule index → new rule index, by name (the first rule of a
            // name: names are unique in a valid config).
            let map: Vec<Option<u16>> = prev
                .names
                .iter()
                .map(|n| {
                    rl.names
                        .iter()
                        .position(|m| m == n)
                        .and_then(|i| u16::try_from(i).ok())
                })
                .collect();
            rl.limiter.absorb(&prev.limiter, rl.now(), |old| {
                map.get(usize::from(old)).copied().flatten()
            });
        }
        rl
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// True when a rule reads this request's body (GraphQL mutations).
    pub(crate) fn needs_body(&self, method: &Method, path: &str) -> bool {
        self.rules.needs_body(method, path)
    }

    /// Counts a request against the rules it matches. `path` is the raw
    /// request path; `body` the request body when [`RateLimit::needs_body`]
    /// asked for it.
    pub(crate) fn check(
        &self,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
        client: IpAddr,
    ) -> RateVerdict {
        let hits = self.rules.matching(method, path, body);
        if hits.is_empty() {
            return RateVerdict::NotLimited;
        }
        let client = magestack_waf::client_key(client, self.ipv6_prefix_len);
        let now = self.now();
        let mut verdict = RateVerdict::Allow;
        for hit in hits {
            let decision = self
                .limiter
                .check_n(hit.index, client, hit.rule.quota, now, hit.cost);
            if let magestack_waf::Decision::Deny { retry_after } = decision {
                let i = usize::from(hit.index);
                if let Some(c) = self.rejected.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                if verdict == RateVerdict::Allow {
                    verdict = RateVerdict::Deny {
                        rule: self
                            .names
                            .get(i)
                            .map_or_else(|| Arc::from("rule"), Arc::clone),
                        retry_after: retry_secs(retry_after),
                    };
                }
            }
        }
        verdict
    }

    /// Rejections per rule name, for `/metrics`.
    pub(crate) fn counts(&self) -> Vec<(Arc<str>, u64)> {
        self.names
            .iter()
            .zip(&self.rejected)
            .map(|(n, c)| (Arc::clone(n), c.load(Ordering::Relaxed)))
            .collect()
    }
}

fn retry_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs() + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::settings::RateRuleSpec;

    fn spec(rules: Vec<RateRuleSpec>) -> RateLimitSpec {
        RateLimitSpec {
            rules,
            ..RateLimitSpec::default()
        }
    }

    fn rule(name: &str, prefix: &str, limit: u32) -> RateRuleSpec {
        RateRuleSpec {
            name: name.into(),
            matcher: RuleMatch::Prefix(prefix.into()),
            methods: vec!["POST".into()],
            limit,
            period: Duration::from_secs(60),
        }
    }

    fn post(rl: &RateLimit, path: &str, ip: &str) -> RateVerdict {
        rl.check(&Method::POST, path, None, ip.parse().unwrap())
    }

    /// See: issue 13, item 5. A reload that changes the rules applies them
    /// and keeps the counters of rules that still exist.
    #[test]
    fn r13_reload_rebuilds_rules_and_keeps_counters() {
        let old = RateLimit::new(&spec(vec![rule("feeds", "/feeds/", 2)]), "admin", None);
        for _ in 0..4 {
            assert_eq!(
                post(&old, "/customer/account/loginPost", "10.0.0.1"),
                RateVerdict::Allow
            );
        }
        assert_eq!(post(&old, "/feeds/x", "10.0.0.1"), RateVerdict::Allow);
        // The new config drops `feeds` and adds `newsletter` first, which
        // moves every built-in rule's index.
        let new = RateLimit::new(
            &spec(vec![rule("newsletter", "/newsletter/", 1)]),
            "admin",
            Some(&old),
        );
        assert_eq!(
            post(&new, "/newsletter/subscriber/new", "10.0.0.1"),
            RateVerdict::Allow
        );
        assert!(matches!(
            post(&new, "/newsletter/subscriber/new", "10.0.0.1"),
            RateVerdict::Deny { rule, .. } if &*rule == "newsletter"
        ));
        assert_eq!(post(&new, "/feeds/x", "10.0.0.1"), RateVerdict::NotLimited);
        // The login quota continues: one left of five.
        assert_eq!(
            post(&new, "/customer/account/loginPost", "10.0.0.1"),
            RateVerdict::Allow
        );
        assert!(matches!(
            post(&new, "/customer/account/loginPost", "10.0.0.1"),
            RateVerdict::Deny { rule, .. } if &*rule == "customer_login"
        ));
    }

    /// See: issue 13, item 5.
    #[test]
    fn r13_ipv6_clients_share_the_quota_of_their_64() {
        let rl = RateLimit::new(&spec(vec![]), "admin", None);
        for i in 0..5 {
            assert_eq!(
                post(
                    &rl,
                    "/customer/account/loginPost",
                    &format!("2001:db8:0:7::{i}")
                ),
                RateVerdict::Allow
            );
        }
        assert!(matches!(
            post(&rl, "/customer/account/loginPost", "2001:db8:0:7:ffff::9"),
            RateVerdict::Deny { .. }
        ));
        assert_eq!(
            post(&rl, "/customer/account/loginPost", "2001:db8:0:8::1"),
            RateVerdict::Allow
        );
        let per_address = RateLimit::new(
            &RateLimitSpec {
                ipv6_prefix_len: 128,
                ..spec(vec![])
            },
            "admin",
            None,
        );
        for i in 0..10 {
            assert_eq!(
                post(
                    &per_address,
                    "/customer/account/loginPost",
                    &format!("2001:db8::{i}")
                ),
                RateVerdict::Allow
            );
        }
    }
}
