//! [`FpcPolicy`]: the knobs of Magento's VCL template, plus the variant
//! switches magestack adds where Magento's published VCLs disagree.
//!
//! Regexes (tracking parameters, design exceptions) are compiled once when the
//! policy is built, never per request.

use http::header::HeaderName;
use regex::Regex;

use crate::esi::EsiLimits;

/// Which statuses may be cached (contract §0 and §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorStatusPolicy {
    /// Variant A/B (default): only `200` and `404` are cacheable; any other
    /// status is uncacheable with a 86400 s hit-for-miss. Required by
    /// Magento's shipped `no-caching.vtc` (a 404 must be served from cache).
    #[default]
    CacheOkAnd404,
    /// Variant C: `403`, `404` and `>= 500` are never cached (120 s
    /// hit-for-miss, checked before anything else); other statuses follow
    /// Varnish's core TTL rules (so a `301` with `max-age` is cacheable).
    NoErrors,
}

impl ErrorStatusPolicy {
    /// Label for logs and config dumps.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorStatusPolicy::CacheOkAnd404 => "cache-ok-and-404",
            ErrorStatusPolicy::NoErrors => "no-errors",
        }
    }
}

/// Tracking-parameter names of Magento's newest VCL (variant C), plus `ie` and
/// `origin` from variant A (contract §2.11 and "Decisions for magestack").
///
/// Each entry is a regex fragment, exactly as in the VCL alternation.
pub const DEFAULT_TRACKING_PARAMS: &[&str] = &[
    "_branch_match_id",
    "_bta_[a-z]+",
    "_ga",
    "_gl",
    "_ke",
    "_kx",
    "campid",
    "ceneo_cid",
    "clickId",
    "cof",
    "customid",
    "cx",
    "dclid",
    "dm_i",
    "ef_id",
    "epik",
    "fbclid",
    "gad_[a-z]+",
    "gbraid",
    "gclid",
    "gclsrc",
    "gdf[a-z]+",
    "hsa_[a-z]+",
    "igshid",
    "mc_[a-z]+",
    "mk[a-z]{3}",
    "msclkid",
    "(mtm|matomo)_[a-z]+",
    "pcrid",
    "p(iwi)?k_[a-z]+",
    "redirect(_log)?_mongo_id",
    "s_kwcid",
    "sb_referer_host",
    "ScCid",
    "siteurl",
    "snrai_[a-z]+",
    "srsltid",
    "tduid",
    "trk_[a-z]+",
    "utm_[a-z]+",
    "wbraid",
    "zanpid",
    "ie",
    "origin",
];

/// Errors building a policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A tracking-parameter name is not a valid regex fragment.
    #[error("tracking parameter {index} ({name:?}) is not a valid regex")]
    TrackingParam {
        /// Position in the configured list.
        index: usize,
        /// The offending entry.
        name: String,
        /// Why the regex did not compile.
        #[source]
        source: regex::Error,
    },
    /// A tracking-parameter name is empty.
    #[error("tracking parameter {index} is empty")]
    EmptyTrackingParam {
        /// Position in the configured list.
        index: usize,
    },
    /// A design-exception User-Agent pattern is not a valid regex.
    #[error("design exception {index} ({pattern:?}) is not a valid regex")]
    DesignException {
        /// Position in the configured list.
        index: usize,
        /// The offending pattern.
        pattern: String,
        /// Why the regex did not compile.
        #[source]
        source: regex::Error,
    },
}

/// The tracking-parameter filter of contract §2.11, compiled.
///
/// Reproduces the VCL literally, quirks included: the trigger is
/// `(\?|&)(NAMES)=`; once triggered, `regsuball(url, "(NAMES)=[-_A-z0-9+()%.]+&?", "")`
/// runs over the **whole** URL and is not anchored to `?`/`&` (so `cookie=1`
/// loses its `ie=1` when `ie` is in the list), then a trailing run of `?`, `|`
/// and `&` is removed.
#[derive(Debug, Clone)]
pub struct TrackingParams {
    names: Vec<String>,
    compiled: Option<(Regex, Regex)>,
}

impl TrackingParams {
    /// Compiles a list of names (regex fragments). An empty list disables
    /// stripping.
    ///
    /// # Errors
    /// [`PolicyError::TrackingParam`] naming the first entry that is not a
    /// valid regex fragment.
    pub fn new<I, S>(names: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        for (index, name) in names.iter().enumerate() {
            // Validate each entry alone so the error names the culprit: an
            // entry that compiles by itself has balanced groups and cannot
            // escape its branch of the joined alternation (`a)|(b` would).
            // An empty entry would make the alternation match bare `=`.
            if name.is_empty() {
                return Err(PolicyError::EmptyTrackingParam { index });
            }
            if let Err(source) = Regex::new(name) {
                return Err(PolicyError::TrackingParam {
                    index,
                    name: name.clone(),
                    source,
                });
            }
        }
        if names.is_empty() {
            return Ok(Self {
                names,
                compiled: None,
            });
        }
        let alternation = names.join("|");
        let trigger = Regex::new(&format!(r"(\?|&)({alternation})="));
        let strip = Regex::new(&format!(r"({alternation})=[-_A-z0-9+()%.]+&?"));
        match (trigger, strip) {
            (Ok(t), Ok(s)) => Ok(Self {
                names,
                compiled: Some((t, s)),
            }),
            (Err(source), _) | (_, Err(source)) => Err(PolicyError::TrackingParam {
                index: 0,
                name: alternation,
                source,
            }),
        }
    }

    /// No stripping at all.
    pub fn disabled() -> Self {
        Self {
            names: Vec::new(),
            compiled: None,
        }
    }

    /// The configured names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Applies the filter to a URL (contract §2.11). Returns `None` when the
    /// trigger does not match (URL unchanged).
    pub fn strip(&self, url: &str) -> Option<String> {
        let (trigger, strip) = self.compiled.as_ref()?;
        if !trigger.is_match(url) {
            return None;
        }
        let stripped = strip.replace_all(url, "");
        // regsub(url, "[?|&]+$", ""): the leftmost match of a class run
        // anchored at the end is the whole trailing run.
        let trimmed = stripped.trim_end_matches(['?', '|', '&']);
        Some(trimmed.to_owned())
    }
}

impl Default for TrackingParams {
    fn default() -> Self {
        // The default list is a constant known to compile (unit-tested).
        Self::new(DEFAULT_TRACKING_PARAMS.iter().copied()).unwrap_or_else(|_| Self::disabled())
    }
}

/// One design exception: requests whose `User-Agent` matches `pattern` get
/// `value` (a theme) added to the cache key (contract §3.3).
#[derive(Debug, Clone)]
pub struct DesignException {
    pattern: regex::bytes::Regex,
    value: String,
}

impl DesignException {
    /// The theme value hashed into the key.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The User-Agent regex.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }
}

/// Magento's design exceptions (`design/theme/ua_regexp`), in order: the first
/// match wins (the VCL's `if … elsif …` chain).
#[derive(Debug, Clone, Default)]
pub struct DesignExceptions {
    rules: Vec<DesignException>,
}

impl DesignExceptions {
    /// Compiles `(User-Agent regex, theme value)` pairs. Patterns use Rust
    /// `regex` syntax, i.e. what Magento's generator emits after turning
    /// `/pat/flags` into `(?flags)pat` (see [`php_regex_to_vcl`]).
    ///
    /// # Errors
    /// [`PolicyError::DesignException`] naming the first invalid pattern.
    pub fn new<I, P, V>(pairs: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = (P, V)>,
        P: AsRef<str>,
        V: Into<String>,
    {
        let mut rules = Vec::new();
        for (index, (pattern, value)) in pairs.into_iter().enumerate() {
            let pattern = pattern.as_ref();
            let compiled = regex::bytes::Regex::new(pattern).map_err(|source| {
                PolicyError::DesignException {
                    index,
                    pattern: pattern.to_owned(),
                    source,
                }
            })?;
            rules.push(DesignException {
                pattern: compiled,
                value: value.into(),
            });
        }
        Ok(Self { rules })
    }

    /// The configured rules.
    pub fn rules(&self) -> &[DesignException] {
        &self.rules
    }

    /// The value of the first rule matching `user_agent`. An absent
    /// User-Agent is matched as the empty string (VCL reads an unset header
    /// as empty in a regex match).
    pub fn lookup(&self, user_agent: Option<&[u8]>) -> Option<&str> {
        let ua = user_agent.unwrap_or(b"");
        self.rules
            .iter()
            .find(|r| r.pattern.is_match(ua))
            .map(|r| r.value.as_str())
    }
}

/// Converts a PHP regex as stored by Magento (`/firefox/i`) into the form its
/// VCL generator emits (`(?i)firefox`): a leading non-word delimiter, the same
/// delimiter at the end, optional word-character flags. Anything else is
/// returned unchanged.
pub fn php_regex_to_vcl(php: &str) -> String {
    let mut chars = php.chars();
    let Some(delim) = chars.next() else {
        return String::new();
    };
    if delim.is_alphanumeric() || delim == '_' || delim.is_whitespace() || delim == '\\' {
        return php.to_owned();
    }
    let rest = &php[delim.len_utf8()..];
    let Some(end) = rest.rfind(delim) else {
        return php.to_owned();
    };
    let (body, flags) = (&rest[..end], &rest[end + delim.len_utf8()..]);
    if flags.is_empty() {
        body.to_owned()
    } else if flags.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("(?{flags}){body}")
    } else {
        php.to_owned()
    }
}

/// The full-page-cache policy: everything Magento's VCL template is
/// parameterised with, and magestack's variant switches.
///
/// Build it once at config load; it is immutable and shared by all requests.
#[derive(Debug, Clone)]
pub struct FpcPolicy {
    /// Header whose value (e.g. `https`) is part of the cache key
    /// (`web/secure/offloader_header`, `_` → `-`). Default `X-Forwarded-Proto`.
    pub ssl_offloaded_header: HeaderName,
    /// Magento's `grace_period`: how long past its TTL a stale object is
    /// served while the backend is healthy. Default 300 s.
    pub grace_period_secs: u64,
    /// Varnish `default_ttl` for cacheable responses without `max-age`,
    /// `s-maxage` or `Expires`. Default 120 s.
    pub default_ttl_secs: u64,
    /// Hit-for-miss lifetime of uncacheable responses (VCL `ttl = 120s`).
    /// Default 120 s.
    pub hit_for_miss_ttl_secs: u64,
    /// Hit-for-miss lifetime of `private` (and, variant A, non-200/404)
    /// responses (VCL `ttl = 86400s`). Default 86400 s.
    pub private_hit_for_miss_ttl_secs: u64,
    /// How long objects are retained past their TTL (VCL `grace = 3d`).
    /// Default 259200 s.
    pub object_grace_secs: u64,
    /// Varnish `default_keep`. Default 0.
    pub keep_secs: u64,
    /// Varnish `clock_skew`: how far the backend's `Date` may be from ours
    /// before `Expires` is read relative to `Date`. Default 10 s.
    pub clock_skew_secs: u64,
    /// Which error statuses may be cached. Default variant A.
    pub error_statuses: ErrorStatusPolicy,
    /// Sort the query when the URL matches `\?.+&.+` (variant C). Default on.
    pub sort_query: bool,
    /// Tracking parameters stripped from cacheable URLs.
    pub tracking_params: TrackingParams,
    /// User-Agent → theme rules added to the key.
    pub design_exceptions: DesignExceptions,
    /// Bounds of the ESI parser.
    pub esi_limits: EsiLimits,
}

impl Default for FpcPolicy {
    fn default() -> Self {
        Self {
            ssl_offloaded_header: HeaderName::from_static("x-forwarded-proto"),
            grace_period_secs: 300,
            default_ttl_secs: 120,
            hit_for_miss_ttl_secs: 120,
            private_hit_for_miss_ttl_secs: 86_400,
            object_grace_secs: 3 * 86_400,
            keep_secs: 0,
            clock_skew_secs: 10,
            error_statuses: ErrorStatusPolicy::default(),
            sort_query: true,
            tracking_params: TrackingParams::default(),
            design_exceptions: DesignExceptions::default(),
            esi_limits: EsiLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let p = FpcPolicy::default();
        assert_eq!(p.ssl_offloaded_header.as_str(), "x-forwarded-proto");
        assert_eq!(p.grace_period_secs, 300);
        assert_eq!(p.default_ttl_secs, 120);
        assert_eq!(p.hit_for_miss_ttl_secs, 120);
        assert_eq!(p.private_hit_for_miss_ttl_secs, 86_400);
        assert_eq!(p.object_grace_secs, 259_200);
        assert_eq!(p.error_statuses, ErrorStatusPolicy::CacheOkAnd404);
        assert!(p.sort_query);
        assert_eq!(
            p.tracking_params.names().len(),
            DEFAULT_TRACKING_PARAMS.len()
        );
    }

    #[test]
    fn default_tracking_list_compiles() {
        let t = TrackingParams::new(DEFAULT_TRACKING_PARAMS.iter().copied()).expect("compiles");
        assert!(t.compiled.is_some());
        for name in ["ie", "origin", "utm_[a-z]+", "gad_[a-z]+", "fbclid"] {
            assert!(t.names().iter().any(|n| n == name), "{name}");
        }
    }

    #[test]
    fn invalid_tracking_param_is_named() {
        match TrackingParams::new(["utm_[a-z]+", "bad(("]) {
            Err(PolicyError::TrackingParam { index, name, .. }) => {
                assert_eq!(index, 1);
                assert_eq!(name, "bad((");
            }
            other => panic!("{other:?}"),
        }
        // A stray ')' would unbalance the joined alternation: rejected too.
        assert!(TrackingParams::new(["a)|(b"]).is_err());
        assert!(matches!(
            TrackingParams::new(["a", ""]),
            Err(PolicyError::EmptyTrackingParam { index: 1 })
        ));
    }

    #[test]
    fn empty_tracking_list_disables() {
        let t = TrackingParams::new(Vec::<String>::new()).expect("ok");
        assert_eq!(t.strip("/p?utm_source=x"), None);
        assert_eq!(TrackingParams::disabled().strip("/p?gclid=1"), None);
    }

    #[test]
    fn design_exceptions_first_match_wins() {
        let d = DesignExceptions::new([("(?i)iphone", "mobile"), ("Mobile", "other")])
            .expect("compiles");
        assert_eq!(d.lookup(Some(b"Mozilla (iPhone) Mobile")), Some("mobile"));
        assert_eq!(d.lookup(Some(b"Android Mobile")), Some("other"));
        assert_eq!(d.lookup(Some(b"Desktop")), None);
        assert_eq!(d.lookup(None), None);
        assert!(matches!(
            DesignExceptions::new([("ok", "a"), ("(", "b")]),
            Err(PolicyError::DesignException { index: 1, .. })
        ));
    }

    #[test]
    fn php_regex_conversion() {
        assert_eq!(php_regex_to_vcl("/firefox/i"), "(?i)firefox");
        assert_eq!(php_regex_to_vcl("#iPhone|iPod#"), "iPhone|iPod");
        assert_eq!(php_regex_to_vcl("/a\\/b/"), "a\\/b");
        assert_eq!(php_regex_to_vcl("plain"), "plain");
        assert_eq!(php_regex_to_vcl(""), "");
        assert_eq!(php_regex_to_vcl("/unterminated"), "/unterminated");
    }
}
