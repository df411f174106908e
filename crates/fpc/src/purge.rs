//! `PURGE` handling as pure decisions (contract §2.3 and §8).
//!
//! Magento sends `PURGE /` with `X-Magento-Tags-Pattern:
//! ((^|,)TAG(,|$))|((^|,)TAG2(,|$))…` (or `.*` for a full flush), and
//! optionally `X-Pool`. Varnish bans every object whose `X-Magento-Tags`
//! (resp. `X-Pool`) header matches the regex. magestack instead evaluates the
//! pattern against its **tag dictionary** (the store's index of tags), never
//! against objects:
//!
//! * [`PurgePattern::Tags`]: Magento's exact shape, parsed to a list of tags:
//!   the store looks them up directly (O(objects matched));
//! * [`PurgePattern::All`]: `.*` evicts every **tagged** object. Objects
//!   without `X-Magento-Tags` stay, as in Varnish, where `~` on a missing
//!   header never matches;
//! * [`PurgePattern::Regex`]: anything else, matched against each tag of the
//!   dictionary. Equivalent to Varnish for every pattern that does not span
//!   a comma between two tags (all that Magento generates);
//! * [`PurgePattern::Empty`]: an empty value purges nothing (Varnish fails to
//!   parse `obj.http.X-Magento-Tags ~ ` and logs an error; the answer is
//!   still `200 Purged`);
//! * [`PurgePattern::Invalid`]: the regex does not compile: nothing purged,
//!   still `200 Purged` (as Varnish, which logs the ban error).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;

use crate::headers::{X_MAGENTO_TAGS_PATTERN, X_POOL};

/// Compiled-size ceiling of fallback purge regexes (the header is at most a
/// few KiB; this only stops pathological patterns).
pub const PURGE_REGEX_SIZE_LIMIT: usize = 16 << 20;

/// A parsed purge pattern. See the module docs for the semantics.
#[derive(Debug, Clone)]
pub enum PurgePattern {
    /// `.*`: every tagged object.
    All,
    /// Exact tags (Magento's `((^|,)TAG(,|$))|…` shape), in header order.
    Tags(Vec<String>),
    /// Fallback regex, to be matched against each tag of the dictionary.
    Regex(regex::Regex),
    /// Empty header value: matches nothing.
    Empty,
    /// Not a valid regex (the message says why): matches nothing.
    Invalid(String),
}

impl PurgePattern {
    /// Whether a single tag (one entry of an object's `X-Magento-Tags`)
    /// matches. Used by stores for the regex fallback and by tests.
    pub fn matches_tag(&self, tag: &str) -> bool {
        match self {
            PurgePattern::All => true,
            PurgePattern::Tags(tags) => tags.iter().any(|t| t == tag),
            PurgePattern::Regex(re) => re.is_match(tag),
            PurgePattern::Empty | PurgePattern::Invalid(_) => false,
        }
    }

    /// Whether an object with these tags is purged: any tag matches. An
    /// object without tags is never purged, not even by [`PurgePattern::All`].
    pub fn matches_object<S: AsRef<str>>(&self, tags: &[S]) -> bool {
        tags.iter().any(|t| self.matches_tag(t.as_ref()))
    }

    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            PurgePattern::All => "all",
            PurgePattern::Tags(_) => "tags",
            PurgePattern::Regex(_) => "regex",
            PurgePattern::Empty => "empty",
            PurgePattern::Invalid(_) => "invalid",
        }
    }
}

impl PartialEq for PurgePattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PurgePattern::All, PurgePattern::All) | (PurgePattern::Empty, PurgePattern::Empty) => {
                true
            }
            (PurgePattern::Tags(a), PurgePattern::Tags(b)) => a == b,
            (PurgePattern::Regex(a), PurgePattern::Regex(b)) => a.as_str() == b.as_str(),
            (PurgePattern::Invalid(a), PurgePattern::Invalid(b)) => a == b,
            _ => false,
        }
    }
}

/// Characters that make a tag a regex rather than a literal.
fn is_literal_tag_byte(b: u8) -> bool {
    !matches!(
        b,
        b'\\'
            | b'.'
            | b'^'
            | b'$'
            | b'|'
            | b'?'
            | b'*'
            | b'+'
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b','
            | b'#'
            | b' '
            | b'\t'
    ) && b.is_ascii_graphic()
}

/// Parses an `X-Magento-Tags-Pattern` value.
///
/// The fast path recognises exactly a `|`-join of `((^|,)TAG(,|$))` groups
/// (or the bare `(^|,)TAG(,|$)` form) where every TAG is non-empty printable
/// ASCII without regex metacharacters; it is a single linear scan (a
/// 7,680-byte Magento header parses in microseconds). Anything else is
/// compiled as a regex.
pub fn parse_tags_pattern(value: &str) -> PurgePattern {
    if value.is_empty() {
        return PurgePattern::Empty;
    }
    if value == ".*" {
        return PurgePattern::All;
    }
    if let Some(tags) = parse_magento_groups(value) {
        return PurgePattern::Tags(tags);
    }
    match regex::RegexBuilder::new(value)
        .size_limit(PURGE_REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => PurgePattern::Regex(re),
        Err(e) => PurgePattern::Invalid(e.to_string()),
    }
}

/// Parses an `X-Pool` purge value. Same grammar and semantics as tags: the
/// store indexes each object's `X-Pool` value split on `,` exactly like its
/// tags.
pub fn parse_pool_pattern(value: &str) -> PurgePattern {
    parse_tags_pattern(value)
}

/// `((^|,)T1(,|$))|((^|,)T2(,|$))…` → `[T1, T2, …]`, or `None` if the value
/// has any other shape.
fn parse_magento_groups(value: &str) -> Option<Vec<String>> {
    const WRAPPED_OPEN: &str = "((^|,)";
    const WRAPPED_CLOSE: &str = "(,|$))";
    const BARE_OPEN: &str = "(^|,)";
    const BARE_CLOSE: &str = "(,|$)";
    let mut rest = value;
    let mut tags = Vec::with_capacity(value.len() / 24 + 1);
    loop {
        let (open, close) = if rest.starts_with(WRAPPED_OPEN) {
            (WRAPPED_OPEN, WRAPPED_CLOSE)
        } else if rest.starts_with(BARE_OPEN) {
            (BARE_OPEN, BARE_CLOSE)
        } else {
            return None;
        };
        rest = &rest[open.len()..];
        let tag_len = rest.bytes().take_while(|&b| is_literal_tag_byte(b)).count();
        if tag_len == 0 {
            return None;
        }
        let (tag, after) = rest.split_at(tag_len);
        rest = after.strip_prefix(close)?;
        tags.push(tag.to_owned());
        if rest.is_empty() {
            return Some(tags);
        }
        rest = rest.strip_prefix('|')?;
    }
}

/// The tag and pool patterns of an accepted `PURGE`.
#[derive(Debug, Clone, PartialEq)]
pub struct PurgeRequest {
    /// From `X-Magento-Tags-Pattern` (first header line), if present.
    pub tags: Option<PurgePattern>,
    /// From `X-Pool` (first header line), if present.
    pub pool: Option<PurgePattern>,
}

/// The outcome of a `PURGE` (contract §2.3).
#[derive(Debug, Clone, PartialEq)]
pub enum PurgeVerdict {
    /// Client IP not in the purge ACL: `405 Method not allowed`.
    NotAllowed,
    /// Neither header present: `400 X-Magento-Tags-Pattern or X-Pool header required`.
    MissingHeaders,
    /// Apply the patterns (both if both are present): `200 Purged`.
    Purge(PurgeRequest),
}

impl PurgeVerdict {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            PurgeVerdict::NotAllowed => "not_allowed",
            PurgeVerdict::MissingHeaders => "missing_headers",
            PurgeVerdict::Purge(_) => "purge",
        }
    }

    /// Status and reason phrase of the synthetic answer.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            PurgeVerdict::NotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            PurgeVerdict::MissingHeaders => (
                StatusCode::BAD_REQUEST,
                "X-Magento-Tags-Pattern or X-Pool header required",
            ),
            PurgeVerdict::Purge(_) => (StatusCode::OK, "Purged"),
        }
    }
}

/// Decides a `PURGE` request: `acl_allowed` is the edge's check of the client
/// IP against the purge ACL. Header values that are not UTF-8 become
/// [`PurgePattern::Invalid`].
pub fn purge_decision(acl_allowed: bool, headers: &HeaderMap) -> PurgeVerdict {
    if !acl_allowed {
        return PurgeVerdict::NotAllowed;
    }
    let tags = headers
        .get(X_MAGENTO_TAGS_PATTERN)
        .map(|v| parse_value(v, parse_tags_pattern));
    let pool = headers
        .get(X_POOL)
        .map(|v| parse_value(v, parse_pool_pattern));
    if tags.is_none() && pool.is_none() {
        return PurgeVerdict::MissingHeaders;
    }
    PurgeVerdict::Purge(PurgeRequest { tags, pool })
}

fn parse_value(v: &HeaderValue, parse: fn(&str) -> PurgePattern) -> PurgePattern {
    match v.to_str() {
        Ok(s) => parse(s),
        Err(_) => PurgePattern::Invalid("header value is not visible ASCII".to_owned()),
    }
}

/// A synthetic response (Varnish `vcl_synth`): status line, headers and
/// body. The edge adds `Date`, `Content-Length` and, for purges,
/// `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticResponse {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase for the HTTP/1.1 status line (`Purged`, not `OK`).
    pub reason: &'static str,
    /// `Content-Type: text/html; charset=utf-8` and `Retry-After: 5`.
    pub headers: HeaderMap,
    /// The HTML page.
    pub body: Bytes,
}

/// Varnish's builtin `vcl_synth` page for `status`/`reason`; `xid` is the
/// request id shown as `XID:`. No `X-Magento-Cache-Debug` (`vcl_deliver`
/// does not run for synthetic responses).
pub fn synthetic_response(status: StatusCode, reason: &'static str, xid: u64) -> SyntheticResponse {
    let code = status.as_u16();
    let body = format!(
        "<!DOCTYPE html>\n\
         <html>\n  \
         <head>\n    \
         <title>{code} {reason}</title>\n  \
         </head>\n  \
         <body>\n    \
         <h1>Error {code} {reason}</h1>\n    \
         <p>{reason}</p>\n    \
         <h3>Guru Meditation:</h3>\n    \
         <p>XID: {xid}</p>\n    \
         <hr>\n    \
         <p>Varnish cache server</p>\n  \
         </body>\n\
         </html>\n"
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
    SyntheticResponse {
        status,
        reason,
        headers,
        body: Bytes::from(body),
    }
}

/// The synthetic answer to a `PURGE` with this verdict (§8.1).
pub fn purge_response(verdict: &PurgeVerdict, xid: u64) -> SyntheticResponse {
    let (status, reason) = verdict.status();
    synthetic_response(status, reason, xid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[&str]) -> PurgePattern {
        PurgePattern::Tags(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn s8_full_flush() {
        assert_eq!(parse_tags_pattern(".*"), PurgePattern::All);
        assert!(PurgePattern::All.matches_object(&["x"]));
        // Untagged objects survive a full flush.
        assert!(!PurgePattern::All.matches_object::<&str>(&[]));
    }

    #[test]
    fn s8_magento_tag_groups() {
        assert_eq!(
            parse_tags_pattern("((^|,)cat_p_42(,|$))|((^|,)cat_c_7(,|$))"),
            tags(&["cat_p_42", "cat_c_7"])
        );
        assert_eq!(parse_tags_pattern("((^|,)cms_b(,|$))"), tags(&["cms_b"]));
        assert_eq!(
            parse_tags_pattern("(^|,)a(,|$)|(^|,)b-c(,|$)"),
            tags(&["a", "b-c"])
        );
    }

    #[test]
    fn s8_group_shape_variations_fall_back_to_regex() {
        for v in [
            "((^|,)cat.p(,|$))",          // metachar in tag
            "((^|,)cat_p_42(,|$))|",      // trailing |
            "((^|,)(,|$))",               // empty tag
            "((^|,)a(,|$))((^|,)b(,|$))", // missing |
            "cat_p_42",
            "^cat_p_4[0-9]$",
        ] {
            let p = parse_tags_pattern(v);
            assert!(matches!(p, PurgePattern::Regex(_)), "{v}: {p:?}");
        }
        // The fallback keeps regex semantics per tag.
        let p = parse_tags_pattern("((^|,)cat.p(,|$))");
        assert!(p.matches_tag("cat_p"));
        assert!(p.matches_tag("catXp"));
        assert!(!p.matches_tag("cat_p_1"));
        let p = parse_tags_pattern("cat_p_4");
        assert!(p.matches_tag("cat_p_42")); // unanchored, as in Varnish
    }

    #[test]
    fn s8_fast_path_equals_regex_semantics() {
        let v = "((^|,)cat_p_42(,|$))|((^|,)cms_b_footer-links(,|$))";
        let fast = parse_tags_pattern(v);
        let re = regex::Regex::new(v).expect("regex");
        for header in [
            "cat_p_42",
            "a,cat_p_42",
            "cat_p_42,b",
            "cat_p_420",
            "xcat_p_42",
            "cms_b_footer-links",
            "store,cms_b",
            "",
        ] {
            let object_tags: Vec<&str> = header.split(',').filter(|t| !t.is_empty()).collect();
            assert_eq!(
                fast.matches_object(&object_tags),
                re.is_match(header) && !header.is_empty(),
                "{header}"
            );
        }
    }

    #[test]
    fn s8_empty_and_invalid() {
        assert_eq!(parse_tags_pattern(""), PurgePattern::Empty);
        assert!(!PurgePattern::Empty.matches_tag(""));
        let p = parse_tags_pattern("((^|,)a");
        assert!(matches!(p, PurgePattern::Invalid(_)), "{p:?}");
        assert!(!p.matches_tag("a"));
        assert_eq!(p.as_str(), "invalid");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // informational timing only
    fn s8_large_magento_header_parses_on_the_fast_path() {
        // ~7,600 bytes of groups, as PurgeCache::chunkTags produces.
        let mut groups = Vec::new();
        let mut len = 0;
        let mut i = 0;
        while len < 7_600 {
            let g = format!("((^|,)cat_p_{i}(,|$))");
            len += g.len() + 1;
            groups.push(g);
            i += 1;
        }
        let value = groups.join("|");
        assert!(value.len() >= 7_600);
        let started = std::time::Instant::now();
        let p = parse_tags_pattern(&value);
        let elapsed = started.elapsed();
        match &p {
            PurgePattern::Tags(t) => {
                assert_eq!(t.len(), i);
                assert_eq!(t[0], "cat_p_0");
                assert_eq!(t[i - 1], format!("cat_p_{}", i - 1));
            }
            other => panic!("not the fast path: {}", other.as_str()),
        }
        // Informational only (no timing assertion).
        eprintln!("parsed {} bytes into {i} tags in {elapsed:?}", value.len());
    }

    #[test]
    fn s2_3_purge_decisions() {
        let mut h = HeaderMap::new();
        assert_eq!(purge_decision(false, &h), PurgeVerdict::NotAllowed);
        assert_eq!(purge_decision(true, &h), PurgeVerdict::MissingHeaders);
        h.insert(X_POOL, HeaderValue::from_static("blue"));
        assert_eq!(
            purge_decision(true, &h),
            PurgeVerdict::Purge(PurgeRequest {
                tags: None,
                pool: Some(PurgePattern::Regex(regex::Regex::new("blue").expect("re"))),
            })
        );
        h.insert(X_MAGENTO_TAGS_PATTERN, HeaderValue::from_static(".*"));
        let PurgeVerdict::Purge(req) = purge_decision(true, &h) else {
            panic!("purge expected");
        };
        assert_eq!(req.tags, Some(PurgePattern::All));
        assert!(req.pool.is_some());
        // An empty header is present: a purge that matches nothing.
        let mut h = HeaderMap::new();
        h.insert(X_MAGENTO_TAGS_PATTERN, HeaderValue::from_static(""));
        assert_eq!(
            purge_decision(true, &h),
            PurgeVerdict::Purge(PurgeRequest {
                tags: Some(PurgePattern::Empty),
                pool: None
            })
        );
        // Non-ASCII value.
        let mut h = HeaderMap::new();
        h.insert(
            X_MAGENTO_TAGS_PATTERN,
            HeaderValue::from_bytes(b"\xff").expect("opaque"),
        );
        let PurgeVerdict::Purge(req) = purge_decision(true, &h) else {
            panic!("purge expected");
        };
        assert!(matches!(req.tags, Some(PurgePattern::Invalid(_))));
    }

    #[test]
    fn s8_1_synthetic_purged_page() {
        let verdict = PurgeVerdict::Purge(PurgeRequest {
            tags: Some(PurgePattern::All),
            pool: None,
        });
        let r = purge_response(&verdict, 32770);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.reason, "Purged");
        assert_eq!(r.headers[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(r.headers[RETRY_AFTER], "5");
        let expected = "<!DOCTYPE html>\n<html>\n  <head>\n    <title>200 Purged</title>\n  </head>\n  <body>\n    <h1>Error 200 Purged</h1>\n    <p>Purged</p>\n    <h3>Guru Meditation:</h3>\n    <p>XID: 32770</p>\n    <hr>\n    <p>Varnish cache server</p>\n  </body>\n</html>\n";
        assert_eq!(r.body, Bytes::from_static(expected.as_bytes()));
    }

    #[test]
    fn s8_1_synthetic_errors() {
        let r = purge_response(&PurgeVerdict::NotAllowed, 1);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.reason, "Method not allowed");
        assert!(std::str::from_utf8(&r.body)
            .expect("utf8")
            .contains("<h1>Error 405 Method not allowed</h1>"));
        let r = purge_response(&PurgeVerdict::MissingHeaders, 1);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.reason, "X-Magento-Tags-Pattern or X-Pool header required");
    }
}
