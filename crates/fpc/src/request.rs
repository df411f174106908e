//! Request classification: Magento's `vcl_recv` (contract §2), in order.
//!
//! [`classify`] turns a [`RequestView`] into a [`RequestDecision`]: purge,
//! pipe, pass (with a [`PassReason`]) or lookup (with a [`LookupPlan`]
//! holding the normalised URL, the washed `Accept-Encoding` and the
//! [`CacheKey`]).

use std::borrow::Cow;
use std::cmp::Ordering;

use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT_ENCODING};

use crate::config::FpcPolicy;
use crate::headers::X_MAGENTO_CACHE_ID;
use crate::key::{CacheKey, KeyParts};
use crate::view::is_bearer;
pub use crate::view::{is_graphql, RequestView};

/// Why a request bypasses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassReason {
    /// Method other than GET/HEAD (§2.5).
    Method,
    /// URL contains `/customer` or `/checkout` (§2.6).
    CustomerOrCheckout,
    /// `/health_check.php` or `/pub/health_check.php` (§2.7).
    HealthCheck,
    /// `/static/…` or `/media/…` (§2.12).
    StaticOrMedia,
    /// `/graphql` with `Authorization: Bearer …` and no `X-Magento-Cache-Id` (§2.13).
    GraphqlBearer,
}

impl PassReason {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            PassReason::Method => "method",
            PassReason::CustomerOrCheckout => "customer_or_checkout",
            PassReason::HealthCheck => "health_check",
            PassReason::StaticOrMedia => "static_or_media",
            PassReason::GraphqlBearer => "graphql_bearer",
        }
    }
}

/// Everything a cache lookup needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupPlan {
    /// The normalised URL (query sorted, scheme stripped, tracking parameters
    /// removed). Hashed into the key, matched by the response rules, and the
    /// URL sent to the backend on a miss.
    pub url: String,
    /// Skip the cache and fetch (Varnish `hash_always_miss`, set on restarts).
    pub always_miss: bool,
    /// The washed `Accept-Encoding`: `true` = `gzip`, `false` = removed.
    pub accept_gzip: bool,
    /// The primary cache key.
    pub key: CacheKey,
}

impl LookupPlan {
    /// The washed `Accept-Encoding` value for this request: `gzip` or none.
    pub fn washed_accept_encoding(&self) -> Option<HeaderValue> {
        self.accept_gzip.then(|| HeaderValue::from_static("gzip"))
    }

    /// Whether the URL is a GraphQL one (`~ "/graphql"`).
    pub fn is_graphql(&self) -> bool {
        is_graphql(&self.url)
    }
}

/// The outcome of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestDecision {
    /// A `PURGE`: the edge checks the ACL and runs [`crate::purge::purge_decision`].
    Purge,
    /// Unknown method: tunnel raw bytes to the backend (no header
    /// processing, no debug header), `Connection: close`.
    Pipe,
    /// Forward to the backend without touching the cache. The client's
    /// `Accept-Encoding` is forwarded verbatim; the response is delivered as
    /// `UNCACHEABLE`.
    Pass(PassReason),
    /// Look the key up; fetch on a miss.
    Lookup(LookupPlan),
}

impl RequestDecision {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestDecision::Purge => "purge",
            RequestDecision::Pipe => "pipe",
            RequestDecision::Pass(_) => "pass",
            RequestDecision::Lookup(_) => "lookup",
        }
    }
}

/// Methods that are not piped (contract §2.4; `PATCH` added per decision C).
fn is_known_method(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "TRACE" | "OPTIONS" | "DELETE"
    )
}

/// Classifies a request exactly in the order of Magento's `vcl_recv`
/// (contract §2). Pure; allocates only the normalised URL.
pub fn classify(req: &RequestView<'_>, policy: &FpcPolicy) -> RequestDecision {
    // §2.1: restarts force a miss.
    let always_miss = req.is_restart;

    // §2.2: query sorting, before anything else, for every method.
    let mut url: Cow<'_, str> = Cow::Borrowed(req.target);
    if policy.sort_query && needs_querysort(&url) {
        url = Cow::Owned(querysort(&url).into_owned());
    }

    let method = req.method.as_str();
    // §2.3: PURGE (exact, case-sensitive).
    if method == "PURGE" {
        return RequestDecision::Purge;
    }
    // §2.4: unknown methods are piped.
    if !is_known_method(method) {
        return RequestDecision::Pipe;
    }
    // §2.5: only GET and HEAD are cached.
    if method != "GET" && method != "HEAD" {
        return RequestDecision::Pass(PassReason::Method);
    }
    // §2.6: customer and checkout, anywhere in the URL (query included).
    if url.contains("/customer") || url.contains("/checkout") {
        return RequestDecision::Pass(PassReason::CustomerOrCheckout);
    }
    // §2.7: health check.
    if is_health_check(&url) {
        return RequestDecision::Pass(PassReason::HealthCheck);
    }
    // §2.8 (req.http.grace = "none") is the `GraceState::None` of a fresh hit.
    // §2.9: strip a leading scheme (absolute-form keeps its host: `host/p`).
    let url = strip_scheme(&url);
    // §2.10 (cookie collection) is done by the key builder with "; ".
    // §2.11: tracking parameters.
    let url: String = match policy.tracking_params.strip(url) {
        Some(stripped) => stripped,
        None => url.to_owned(),
    };
    // §2.12: static and media are not cached.
    if is_static_or_media(&url) {
        return RequestDecision::Pass(PassReason::StaticOrMedia);
    }
    // §2.13: authenticated GraphQL without a cache id.
    if is_graphql(&url) && !req.headers.contains_key(X_MAGENTO_CACHE_ID) && is_bearer(req.headers) {
        return RequestDecision::Pass(PassReason::GraphqlBearer);
    }
    // §2.14: lookup. Varnish core washes Accept-Encoding for lookups.
    let key = KeyParts::from_request(req, &url, policy).key();
    RequestDecision::Lookup(LookupPlan {
        accept_gzip: accepts_gzip(req.headers),
        always_miss,
        key,
        url,
    })
}

/// Steps §2.2, §2.9 and §2.11 alone: the URL a lookup would use, whatever
/// the method and the pass rules say. Useful for ESI sub-requests and logs.
pub fn normalize_url(target: &str, policy: &FpcPolicy) -> String {
    let sorted = if policy.sort_query && needs_querysort(target) {
        querysort(target)
    } else {
        Cow::Borrowed(target)
    };
    let url = strip_scheme(&sorted);
    policy
        .tracking_params
        .strip(url)
        .unwrap_or_else(|| url.to_owned())
}

/// Variant C's condition for sorting: the URL matches `\?.+&.+`, i.e. a `?`
/// followed by at least one character, an `&`, and at least one more.
pub fn needs_querysort(url: &str) -> bool {
    let Some(q) = url.find('?') else {
        return false;
    };
    let b = url.as_bytes();
    // An `&` at j with q + 2 <= j <= len - 2. (Request targets cannot hold a
    // newline, which `.` would not match.)
    b.len() >= q + 4 && b[q + 2..b.len() - 1].contains(&b'&')
}

/// Varnish `std.querysort`: no `?` or no `&` after it → unchanged; else the
/// query is split on `&`, empty parameters dropped, the parameters sorted by
/// comparing bytes up to the shorter length (as signed `char`s, like
/// Varnish on x86), and re-joined with `&`. The path is untouched.
///
/// Parameters equal up to the shorter length (`a=1` vs `a=12`) compare
/// equal; a stable sort keeps their original order, so `?a=12&a=1` and
/// `?a=1&a=12` (different pages for PHP, which keeps the last value) keep
/// different keys.
pub fn querysort(url: &str) -> Cow<'_, str> {
    let Some(q) = url.find('?') else {
        return Cow::Borrowed(url);
    };
    let query = &url[q + 1..];
    if !query.contains('&') {
        return Cow::Borrowed(url);
    }
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_by(|a, b| prefix_cmp(a.as_bytes(), b.as_bytes()));
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..=q]);
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(p);
    }
    Cow::Owned(out)
}

/// Varnish `compa`: first differing byte (signed) decides; equal up to the
/// shorter length means equal.
fn prefix_cmp(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return (*x as i8).cmp(&(*y as i8));
        }
    }
    Ordering::Equal
}

/// `^/(pub/)?(health_check.php)$`, with the unescaped `.` matching any
/// character but a newline.
fn is_health_check(url: &str) -> bool {
    let Some(rest) = url.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_prefix("pub/").unwrap_or(rest);
    let b = rest.as_bytes();
    b.len() == "health_check.php".len() && b.starts_with(b"health_check") && b.ends_with(b"php")
}

/// `regsub(url, "^http[s]?://", "")`.
pub fn strip_scheme(url: &str) -> &str {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
}

/// `^/(pub/)?(media|static)/`.
pub fn is_static_or_media(url: &str) -> bool {
    let Some(rest) = url.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_prefix("pub/").unwrap_or(rest);
    rest.starts_with("media/") || rest.starts_with("static/")
}

/// Varnish `RFC2616_Req_Gzip`: the client accepts gzip if `Accept-Encoding`
/// lists `x-gzip` (any q), or `gzip` with a q-value above zero. Tokens are
/// compared case-insensitively; every `Accept-Encoding` line is considered.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip_q_positive = false;
    for value in headers.get_all(ACCEPT_ENCODING) {
        for element in value.as_bytes().split(|&b| b == b',') {
            let mut parts = element.split(|&b| b == b';');
            let token = trim(parts.next().unwrap_or_default());
            if token.eq_ignore_ascii_case(b"x-gzip") {
                return true;
            }
            if token.eq_ignore_ascii_case(b"gzip") {
                gzip_q_positive |= q_positive(parts);
            }
        }
    }
    gzip_q_positive
}

/// Varnish `http_GetHdrQ` reduced to "is q > 0": no `q` parameter means 1;
/// a value must start with `0` or `1`, else it counts as 0.
fn q_positive<'b>(params: impl Iterator<Item = &'b [u8]>) -> bool {
    for param in params {
        let param = trim(param);
        let Some(rest) = param
            .strip_prefix(b"q")
            .or_else(|| param.strip_prefix(b"Q"))
        else {
            continue;
        };
        let rest = trim(rest);
        let Some(value) = rest.strip_prefix(b"=") else {
            continue;
        };
        let value = trim(value);
        return match value.first() {
            Some(b'1') => true,
            Some(b'0') => {
                let frac = value[1..].strip_prefix(b".").unwrap_or(b"");
                frac.iter()
                    .take_while(|b| b.is_ascii_digit())
                    .any(|&b| b != b'0')
            }
            _ => false,
        };
    }
    true
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Headers never sent to the backend on a cache-miss fetch: conditionals
/// and ranges (the object is fetched whole), the request body framing (a
/// miss is a body-less `GET`), and hop-by-hop headers.
const MISS_FETCH_DROPPED: &[&str] = &[
    "if-modified-since",
    "if-none-match",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
    "content-length",
    "transfer-encoding",
    "expect",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The headers of the backend request of a cache miss (contract §4): the
/// client's headers minus conditionals, ranges, body framing and hop-by-hop
/// headers (including those named in `Connection`), with
/// `Accept-Encoding: gzip` forced whatever the client sent. The method is
/// always `GET` (a client `HEAD` is fetched as `GET`).
pub fn miss_fetch_headers(client: &HeaderMap) -> HeaderMap {
    let mut out = client.clone();
    let named_by_connection: Vec<HeaderName> = client
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(trim(t)).ok())
        .collect();
    for name in MISS_FETCH_DROPPED {
        out.remove(*name);
    }
    for name in named_by_connection {
        out.remove(name);
    }
    out.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    out
}

#[cfg(test)]
mod tests;
