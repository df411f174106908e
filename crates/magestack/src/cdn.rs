//! `magestack cdn export`: the CDN's cache rules, written from the edge's own
//! configuration so that CloudFront and the edge cannot drift apart.
//!
//! The AWS case study's CloudFront rules are the edge's rules seen from one
//! hop further out: static and media are the same for everybody (no cookies,
//! long TTL); pages vary by exactly what the edge's key varies by (the
//! `X-Magento-Vary` cookie, the host) plus the `store` and `currency`
//! cookies (a key finer than the edge's, never coarser); and everything the
//! edge never caches (customer and checkout anywhere in the path, the admin
//! under its configured front name, the health check) goes to the origin
//! untouched. REST and GraphQL go there too: their cache key lives in
//! headers (`Authorization`, `Store`, `Content-Currency`,
//! `X-Magento-Cache-Id`) that only the edge reads correctly.
//!
//! Pure: configuration in, text out.

use std::fmt::Write as _;

use magestack_config::Validated;

/// Seconds CloudFront keeps static and media files: nginx.conf.sample's
/// `expires +1y`, which the edge sends as `max-age=31536000` (G3: immutable).
const STATIC_TTL_SECS: u64 = 31_536_000;

/// The cache rules of the CDN in front of the edge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CdnRules {
    /// Files the same for every visitor: cookies, headers and query strings
    /// stripped from the key and from the request to the origin.
    pub r#static: StaticRules,
    /// Pages: the default behaviour.
    pub dynamic: DynamicRules,
    /// Never cached at the CDN; everything forwarded.
    pub bypass: BypassRules,
}

/// See [`CdnRules::r#static`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticRules {
    /// CloudFront path patterns.
    pub path_patterns: Vec<String>,
    /// Seconds.
    pub min_ttl: u64,
    /// Seconds.
    pub default_ttl: u64,
    /// Seconds.
    pub max_ttl: u64,
}

/// See [`CdnRules::dynamic`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DynamicRules {
    /// Cookies in the cache key (a whitelist: the session cookie never is).
    pub cookies: Vec<String>,
    /// Headers in the cache key.
    pub headers: Vec<String>,
    /// `"all"`: every query parameter is in the key (the edge strips
    /// marketing parameters itself; CloudFront's list of ten could not hold
    /// Magento's forty).
    pub query_strings: String,
    /// Key and forward `Accept-Encoding: gzip`.
    pub gzip: bool,
    /// Key and forward `Accept-Encoding: br` (the edge serves brotli).
    pub brotli: bool,
    /// Seconds. Zero with a default of zero: the origin's headers decide,
    /// and the edge sends pages to downstream caches with `no-store` (as
    /// Magento's VCL does), because a purge reaches the edges, not the CDN.
    pub min_ttl: u64,
    /// Seconds.
    pub default_ttl: u64,
    /// Seconds.
    pub max_ttl: u64,
}

/// See [`CdnRules::bypass`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BypassRules {
    /// CloudFront path patterns, checked after the static ones.
    pub path_patterns: Vec<String>,
}

/// The rules for an edge running with `cfg`.
pub fn rules(cfg: &Validated) -> CdnRules {
    let admin = &cfg.routing.admin_front_name;
    CdnRules {
        r#static: StaticRules {
            path_patterns: ["/static/*", "/media/*", "/pub/static/*", "/pub/media/*"]
                .map(String::from)
                .to_vec(),
            min_ttl: 0,
            default_ttl: STATIC_TTL_SECS,
            max_ttl: STATIC_TTL_SECS,
        },
        dynamic: DynamicRules {
            // The edge's key (the `X-Magento-Vary` cookie), plus two cookies
            // the CDN keys on defensively: its key may be finer than the
            // edge's, never coarser. `store` picks the store view before
            // `X-Magento-Vary` exists; `currency` is set by currency switchers
            // (Magento 2 itself keeps the currency in the session and in
            // `X-Magento-Vary`). Absent cookies cost nothing.
            cookies: vec![
                magestack_fpc::headers::X_MAGENTO_VARY_COOKIE.to_owned(),
                "currency".to_owned(),
                "store".to_owned(),
            ],
            headers: vec!["Host".to_owned()],
            query_strings: "all".to_owned(),
            gzip: cfg.magento.gzip,
            brotli: cfg.cache.brotli,
            min_ttl: 0,
            default_ttl: 0,
            max_ttl: STATIC_TTL_SECS,
        },
        bypass: BypassRules {
            path_patterns: vec![
                format!("/{admin}"),
                format!("/{admin}/*"),
                format!("/index.php/{admin}*"),
                "/checkout*".to_owned(),
                "*/checkout/*".to_owned(),
                "/customer*".to_owned(),
                "*/customer/*".to_owned(),
                "/rest/*".to_owned(),
                "/graphql*".to_owned(),
                "/health_check.php".to_owned(),
                "/pub/health_check.php".to_owned(),
            ],
        },
    }
}

/// Terraform variable definitions (`.tfvars`), formatted as `terraform fmt`
/// writes them, for the `cdn` stack's `magestack_cdn` variable.
pub fn terraform(rules: &CdnRules, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by `magestack cdn export --format terraform`; do not edit."
    );
    let _ = writeln!(
        out,
        "# From: {source}. Regenerate after changing the edge's cache or routing settings."
    );
    out.push_str("magestack_cdn = {\n");
    let s = &rules.r#static;
    block(
        &mut out,
        "static",
        &[
            ("path_patterns", list(&s.path_patterns)),
            ("min_ttl", s.min_ttl.to_string()),
            ("default_ttl", s.default_ttl.to_string()),
            ("max_ttl", s.max_ttl.to_string()),
        ],
    );
    let d = &rules.dynamic;
    block(
        &mut out,
        "dynamic",
        &[
            ("cookies", list(&d.cookies)),
            ("headers", list(&d.headers)),
            ("query_strings", quote(&d.query_strings)),
            ("gzip", d.gzip.to_string()),
            ("brotli", d.brotli.to_string()),
            ("min_ttl", d.min_ttl.to_string()),
            ("default_ttl", d.default_ttl.to_string()),
            ("max_ttl", d.max_ttl.to_string()),
        ],
    );
    block(
        &mut out,
        "bypass",
        &[("path_patterns", list(&rules.bypass.path_patterns))],
    );
    out.push_str("}\n");
    out
}

/// One nested object, its `=` aligned as `terraform fmt` aligns them.
fn block(out: &mut String, name: &str, items: &[(&str, String)]) {
    let width = items.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let _ = writeln!(out, "  {name} = {{");
    for (k, v) in items {
        let _ = writeln!(out, "    {k:<width$} = {v}");
    }
    out.push_str("  }\n");
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// An HCL string literal.
fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "$${")
        .replace("%{", "%%{");
    format!("\"{escaped}\"")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn defaults() -> Validated {
        magestack_config::load_str("[upstream]\nurl = \"http://127.0.0.1:9000\"\n", "t.toml")
            .unwrap()
    }

    #[test]
    fn the_key_is_the_edges_and_never_the_session() {
        let r = rules(&defaults());
        assert_eq!(r.dynamic.cookies, ["X-Magento-Vary", "currency", "store"]);
        assert!(!r.dynamic.cookies.iter().any(|c| c == "PHPSESSID"));
        assert!(r.bypass.path_patterns.contains(&"/admin/*".to_owned()));
        assert!(r.bypass.path_patterns.contains(&"*/checkout/*".to_owned()));
    }

    #[test]
    fn admin_front_name_and_brotli_follow_the_config() {
        let cfg = magestack_config::load_str(
            "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[routing]\nadmin_front_name = \"backoffice_7f3\"\n[cache]\nbrotli = false\n",
            "t.toml",
        )
        .unwrap();
        let text = terraform(&rules(&cfg), "t.toml");
        assert!(text.contains("\"/backoffice_7f3/*\""), "{text}");
        assert!(!text.contains("\"/admin/*\""), "{text}");
        assert!(text.contains("    brotli        = false\n"), "{text}");
    }

    #[test]
    fn hcl_strings_are_escaped() {
        assert_eq!(quote("a\"b\\c${x}%{y}$5"), "\"a\\\"b\\\\c$${x}%%{y}$5\"");
    }
}
