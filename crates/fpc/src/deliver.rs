//! Delivery header hygiene: Magento's `vcl_deliver` (contract §6), and
//! conditional-request evaluation for hits (Varnish `RFC2616_Do_Cond`).

use std::time::SystemTime;

use http::header::{
    HeaderMap, HeaderValue, AGE, CACHE_CONTROL, DATE, ETAG, EXPIRES, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED, LINK, PRAGMA, RANGE, SERVER, VIA,
};

use crate::cache_control::header_date;
use crate::grace::GraceState;
use crate::headers::{
    self, GRACE, X_MAGENTO_CACHE_DEBUG, X_MAGENTO_DEBUG, X_MAGENTO_TAGS, X_POWERED_BY, X_VARNISH,
};
use crate::request::is_static_or_media;

/// The `X-Magento-Cache-Debug` state of a delivered response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheDebug {
    /// Served from a stored object that had been fetched earlier
    /// (`obj.hits > 0`), with its grace state.
    Hit {
        /// Drives the `Grace` header.
        grace: GraceState,
    },
    /// The object was fetched for this request and stored.
    Miss,
    /// Pass, hit-for-miss, or any uncacheable fetch.
    Uncacheable,
}

impl CacheDebug {
    /// The header value: `HIT`, `MISS` or `UNCACHEABLE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheDebug::Hit { .. } => "HIT",
            CacheDebug::Miss => "MISS",
            CacheDebug::Uncacheable => "UNCACHEABLE",
        }
    }
}

/// The `Cache-Control` Magento's VCL sends to browsers for pages.
pub const BROWSER_NO_CACHE: &str = "no-store, no-cache, must-revalidate, max-age=0";

/// Applies Magento's `vcl_deliver` to a response about to be sent (not to
/// synthetic or piped responses):
///
/// * `X-Magento-Cache-Debug: HIT|MISS|UNCACHEABLE`, plus `Grace: <state>` on hits;
/// * unless `Cache-Control ~ "private"` or `url ~ "^/(pub/)?(media|static)/"`:
///   `Pragma: no-cache`, `Expires: -1`,
///   `Cache-Control: no-store, no-cache, must-revalidate, max-age=0`;
/// * `Age: <age_secs>` if the response carries `X-Magento-Debug`, else no `Age`;
/// * removes `X-Magento-Debug`, `X-Magento-Tags`, `X-Powered-By`, `Server`,
///   `X-Varnish`, `Via` and `Link`.
///
/// `url` is the request URL as `vcl_deliver` sees it: the lookup's
/// normalised URL, or the received target for a pass. `age_secs` is the
/// object's age ([`crate::grace::ObjectTimes::age_secs`]; the backend's
/// `Age` for a pass or miss).
pub fn deliver_headers(headers: &mut HeaderMap, debug: CacheDebug, url: &str, age_secs: u64) {
    headers.insert(
        X_MAGENTO_CACHE_DEBUG,
        HeaderValue::from_static(debug.as_str()),
    );
    if let CacheDebug::Hit { grace } = debug {
        headers.insert(GRACE, HeaderValue::from_static(grace.as_str()));
    }

    if !headers::any_contains(headers, &CACHE_CONTROL, b"private") && !is_static_or_media(url) {
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        headers.insert(EXPIRES, HeaderValue::from_static("-1"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(BROWSER_NO_CACHE));
    }

    if headers.contains_key(X_MAGENTO_DEBUG) {
        headers.insert(AGE, HeaderValue::from(age_secs));
    } else {
        headers.remove(AGE);
    }
    for name in [&X_MAGENTO_DEBUG, &X_MAGENTO_TAGS, &X_POWERED_BY, &X_VARNISH] {
        headers.remove(name);
    }
    for name in [SERVER, VIA, LINK] {
        headers.remove(name);
    }
}

/// Whether a hit may be answered `304 Not Modified` (Varnish
/// `RFC2616_Do_Cond`). Call only for `GET`/`HEAD` requests served from a
/// stored `200` object.
///
/// * `If-None-Match` present: it decides alone (RFC 9110 §13.1.2): `*`
///   matches any `ETag`; otherwise any listed entity tag must equal the
///   response's, compared weakly (or strongly when the request has `Range`).
///   No `ETag` → no 304.
/// * Otherwise `If-Modified-Since`: a valid date not later than `now`, and
///   the object's `Last-Modified` (or, without one, `fallback_last_modified`
///   — Varnish uses the fetch time — or else the response `Date`) is not
///   later than it.
///
/// Broader than Varnish, which compares the whole `If-None-Match` value as
/// one tag (no lists, no `*`).
pub fn evaluate_conditional(
    req: &HeaderMap,
    resp: &HeaderMap,
    now: SystemTime,
    fallback_last_modified: Option<SystemTime>,
) -> bool {
    if let Some(inm) = req.get(IF_NONE_MATCH) {
        let Some(etag) = resp.get(ETAG) else {
            return false;
        };
        let strong = req.contains_key(RANGE);
        return if_none_match_matches(inm.as_bytes(), etag.as_bytes(), strong);
    }
    if req.contains_key(IF_MODIFIED_SINCE) {
        let Some(ims) = header_date(req, &IF_MODIFIED_SINCE) else {
            return false;
        };
        if ims > now {
            return false;
        }
        let last_modified = if resp.contains_key(LAST_MODIFIED) {
            header_date(resp, &LAST_MODIFIED)
        } else {
            fallback_last_modified.or_else(|| header_date(resp, &DATE))
        };
        return last_modified.is_some_and(|lm| lm <= ims);
    }
    false
}

/// Matches an `If-None-Match` list against an `ETag`.
fn if_none_match_matches(inm: &[u8], etag: &[u8], strong: bool) -> bool {
    let etag = etag.trim_ascii();
    let (etag_weak, etag_opaque) = split_weak(etag);
    for candidate in split_etag_list(inm) {
        if candidate == b"*" {
            return true;
        }
        let (weak, opaque) = split_weak(candidate);
        if opaque != etag_opaque {
            continue;
        }
        if !strong || (!weak && !etag_weak) {
            return true;
        }
    }
    false
}

fn split_weak(tag: &[u8]) -> (bool, &[u8]) {
    match tag.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    }
}

/// Splits an entity-tag list on commas outside quotes.
fn split_etag_list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in v.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&v[start..]);
    parts
        .into_iter()
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::SET_COOKIE;
    use std::time::{Duration, UNIX_EPOCH};

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    fn backend() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, hv("public, max-age=86400, s-maxage=86400"));
        h.insert(PRAGMA, hv("cache"));
        h.insert(EXPIRES, hv("Thu, 01 Jan 2099 00:00:00 GMT"));
        h.insert(X_MAGENTO_TAGS, hv("cat_p_1,store"));
        h.insert(X_POWERED_BY, hv("PHP/8.3"));
        h.insert(SERVER, hv("nginx"));
        h.insert(X_VARNISH, hv("1234"));
        h.insert(VIA, hv("1.1 varnish"));
        h.insert(LINK, hv("</x.css>; rel=preload"));
        h.insert(AGE, hv("10"));
        h.insert(SET_COOKIE, hv("a=b"));
        h.insert(crate::headers::X_MAGENTO_CACHE_ID, hv("id"));
        h.insert(crate::headers::X_POOL, hv("pool1"));
        h
    }

    #[test]
    fn s6_hit_headers_and_removals() {
        let mut h = backend();
        deliver_headers(
            &mut h,
            CacheDebug::Hit {
                grace: GraceState::None,
            },
            "/p",
            7,
        );
        assert_eq!(h[X_MAGENTO_CACHE_DEBUG], "HIT");
        assert_eq!(h[GRACE], "none");
        assert_eq!(h[CACHE_CONTROL], BROWSER_NO_CACHE);
        assert_eq!(h[PRAGMA], "no-cache");
        assert_eq!(h[EXPIRES], "-1");
        for gone in [AGE, SERVER, VIA, LINK] {
            assert!(!h.contains_key(&gone), "{gone}");
        }
        for gone in [X_MAGENTO_TAGS, X_POWERED_BY, X_VARNISH, X_MAGENTO_DEBUG] {
            assert!(!h.contains_key(&gone), "{gone}");
        }
        // Kept.
        assert!(h.contains_key(SET_COOKIE));
        assert!(h.contains_key(crate::headers::X_MAGENTO_CACHE_ID));
        assert!(h.contains_key(crate::headers::X_POOL));
    }

    #[test]
    fn s6_miss_and_uncacheable_have_no_grace_header() {
        let mut h = backend();
        deliver_headers(&mut h, CacheDebug::Miss, "/p", 0);
        assert_eq!(h[X_MAGENTO_CACHE_DEBUG], "MISS");
        assert!(!h.contains_key(GRACE));
        let mut h = backend();
        deliver_headers(&mut h, CacheDebug::Uncacheable, "/p", 0);
        assert_eq!(h[X_MAGENTO_CACHE_DEBUG], "UNCACHEABLE");
        assert!(!h.contains_key(GRACE));
    }

    #[test]
    fn s6_stale_hit_grace_values() {
        let mut h = backend();
        deliver_headers(
            &mut h,
            CacheDebug::Hit {
                grace: GraceState::Unlimited,
            },
            "/p",
            0,
        );
        assert_eq!(h[GRACE], "unlimited (unhealthy server)");
    }

    #[test]
    fn s6_private_keeps_backend_cache_headers() {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, hv("private, max-age=60"));
        h.insert(EXPIRES, hv("Thu, 01 Jan 2099 00:00:00 GMT"));
        deliver_headers(&mut h, CacheDebug::Uncacheable, "/customer/section/load", 0);
        assert_eq!(h[CACHE_CONTROL], "private, max-age=60");
        assert!(!h.contains_key(PRAGMA));
        assert_eq!(h[EXPIRES], "Thu, 01 Jan 2099 00:00:00 GMT");
    }

    #[test]
    fn s6_static_and_media_keep_backend_cache_headers() {
        for url in [
            "/static/a.js",
            "/pub/static/a.js",
            "/media/x.jpg",
            "/pub/media/x.jpg",
        ] {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, hv("public, max-age=31536000"));
            deliver_headers(&mut h, CacheDebug::Uncacheable, url, 0);
            assert_eq!(h[CACHE_CONTROL], "public, max-age=31536000", "{url}");
        }
        // Not anchored at '/': suppressed.
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, hv("public"));
        deliver_headers(&mut h, CacheDebug::Miss, "/x/static/a.js", 0);
        assert_eq!(h[CACHE_CONTROL], BROWSER_NO_CACHE);
    }

    #[test]
    fn s6_no_cache_control_gets_suppression() {
        let mut h = HeaderMap::new();
        deliver_headers(&mut h, CacheDebug::Miss, "/", 0);
        assert_eq!(h[CACHE_CONTROL], BROWSER_NO_CACHE);
        assert_eq!(h[PRAGMA], "no-cache");
    }

    #[test]
    fn s6_debug_mode_keeps_age() {
        let mut h = backend();
        h.insert(X_MAGENTO_DEBUG, hv("1"));
        deliver_headers(
            &mut h,
            CacheDebug::Hit {
                grace: GraceState::Normal,
            },
            "/p",
            42,
        );
        assert_eq!(h[AGE], "42");
        assert!(!h.contains_key(X_MAGENTO_DEBUG));
        assert_eq!(h[GRACE], "normal (healthy server)");
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, hv(v));
        }
        h
    }

    #[test]
    fn conditional_if_none_match() {
        let resp = req(&[("etag", "\"abc\"")]);
        let n = now();
        assert!(evaluate_conditional(
            &req(&[("if-none-match", "\"abc\"")]),
            &resp,
            n,
            None
        ));
        assert!(evaluate_conditional(
            &req(&[("if-none-match", "W/\"abc\"")]),
            &resp,
            n,
            None
        ));
        assert!(evaluate_conditional(
            &req(&[("if-none-match", "\"x\", \"abc\"")]),
            &resp,
            n,
            None
        ));
        assert!(evaluate_conditional(
            &req(&[("if-none-match", "*")]),
            &resp,
            n,
            None
        ));
        assert!(!evaluate_conditional(
            &req(&[("if-none-match", "\"x\"")]),
            &resp,
            n,
            None
        ));
        // No ETag on the object.
        assert!(!evaluate_conditional(
            &req(&[("if-none-match", "\"abc\"")]),
            &HeaderMap::new(),
            n,
            None
        ));
        // Weak object tag (gzip weakens ETags), weak comparison.
        let weak = req(&[("etag", "W/\"abc\"")]);
        assert!(evaluate_conditional(
            &req(&[("if-none-match", "\"abc\"")]),
            &weak,
            n,
            None
        ));
        // With Range: strong comparison.
        assert!(!evaluate_conditional(
            &req(&[("if-none-match", "\"abc\""), ("range", "bytes=0-1")]),
            &weak,
            n,
            None
        ));
        assert!(evaluate_conditional(
            &req(&[("if-none-match", "\"abc\""), ("range", "bytes=0-1")]),
            &resp,
            n,
            None
        ));
        // A comma inside a quoted tag does not split it.
        let odd = req(&[("etag", "\"a,b\"")]);
        assert!(evaluate_conditional(
            &req(&[("if-none-match", "\"a,b\"")]),
            &odd,
            n,
            None
        ));
    }

    #[test]
    fn conditional_if_none_match_beats_if_modified_since() {
        let resp = req(&[
            ("etag", "\"abc\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let r = req(&[
            ("if-none-match", "\"other\""),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(!evaluate_conditional(&r, &resp, now(), None));
    }

    #[test]
    fn conditional_if_modified_since() {
        let resp = req(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        let n = now();
        let same = req(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        let later = req(&[("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT")]);
        let earlier = req(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]);
        let garbage = req(&[("if-modified-since", "yesterday")]);
        let future = req(&[("if-modified-since", "Thu, 01 Jan 2099 00:00:00 GMT")]);
        assert!(evaluate_conditional(&same, &resp, n, None));
        assert!(evaluate_conditional(&later, &resp, n, None));
        assert!(!evaluate_conditional(&earlier, &resp, n, None));
        assert!(!evaluate_conditional(&garbage, &resp, n, None));
        assert!(!evaluate_conditional(&future, &resp, n, None));
        // Unparsable Last-Modified: no 304.
        let bad = req(&[("last-modified", "nope")]);
        assert!(!evaluate_conditional(&same, &bad, n, None));
        // No Last-Modified: the fallback (fetch time), then Date.
        let fetched = UNIX_EPOCH + Duration::from_secs(784_000_000);
        assert!(evaluate_conditional(
            &same,
            &HeaderMap::new(),
            n,
            Some(fetched)
        ));
        let dated = req(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert!(evaluate_conditional(&same, &dated, n, None));
        assert!(!evaluate_conditional(&same, &HeaderMap::new(), n, None));
    }

    #[test]
    fn no_conditionals_no_304() {
        assert!(!evaluate_conditional(
            &HeaderMap::new(),
            &req(&[("etag", "\"a\"")]),
            now(),
            None
        ));
    }
}
