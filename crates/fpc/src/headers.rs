//! Header names Magento and its VCL use, and small helpers that read header
//! values the way Varnish does (first value, or all values collected).
//!
//! Names that `http::header` already provides (`Cookie`, `Cache-Control`, …)
//! are used from there; only the Magento/Varnish-specific ones live here.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName};

/// `X-Magento-Tags`: comma-separated cache tags of a response (`cat_p_42,cms_b_3`).
pub const X_MAGENTO_TAGS: HeaderName = HeaderName::from_static("x-magento-tags");
/// `X-Magento-Tags-Pattern`: the tag regex of a `PURGE` request.
pub const X_MAGENTO_TAGS_PATTERN: HeaderName = HeaderName::from_static("x-magento-tags-pattern");
/// `X-Pool`: deployment pool marker on responses, and pool regex on `PURGE`.
pub const X_POOL: HeaderName = HeaderName::from_static("x-pool");
/// `X-Magento-Cache-Id`: GraphQL cache identity (request and response).
pub const X_MAGENTO_CACHE_ID: HeaderName = HeaderName::from_static("x-magento-cache-id");
/// `X-Magento-Debug`: developer-mode marker on backend responses.
pub const X_MAGENTO_DEBUG: HeaderName = HeaderName::from_static("x-magento-debug");
/// `X-Magento-Cache-Debug`: `HIT` / `MISS` / `UNCACHEABLE` on every delivered response.
pub const X_MAGENTO_CACHE_DEBUG: HeaderName = HeaderName::from_static("x-magento-cache-debug");
/// `X-Magento-Cache-Control`: copy of the backend `Cache-Control` in developer mode.
pub const X_MAGENTO_CACHE_CONTROL: HeaderName = HeaderName::from_static("x-magento-cache-control");
/// `X-Powered-By`: removed on delivery.
pub const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
/// `X-Varnish`: removed on delivery (never added by magestack).
pub const X_VARNISH: HeaderName = HeaderName::from_static("x-varnish");
/// `Surrogate-Control`: edge-cache directives (`no-store`).
pub const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");
/// `Store`: GraphQL store code, part of the key for `/graphql` URLs.
pub const STORE: HeaderName = HeaderName::from_static("store");
/// `Content-Currency`: GraphQL currency, part of the key for `/graphql` URLs.
pub const CONTENT_CURRENCY: HeaderName = HeaderName::from_static("content-currency");
/// `X-Requested-With`: `XMLHttpRequest` on Magento's AJAX calls.
pub const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
/// `Grace`: grace state of a hit (`none`, `normal (healthy server)`, …).
pub const GRACE: HeaderName = HeaderName::from_static("grace");

/// Name of the vary cookie Magento sets (`X-Magento-Vary=<sha1>`).
pub const X_MAGENTO_VARY_COOKIE: &str = "X-Magento-Vary";

/// The first value of `name`, as Varnish's `req.http.NAME` reads it.
pub(crate) fn first<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

/// All values of `name` joined with `sep` (Varnish `std.collect`), borrowed
/// when there is only one. `None` when the header is absent.
pub(crate) fn collect<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    sep: &[u8],
) -> Option<Cow<'h, [u8]>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first.as_bytes()));
    };
    let mut joined = Vec::with_capacity(first.len() + sep.len() + second.len());
    joined.extend_from_slice(first.as_bytes());
    for v in std::iter::once(second).chain(values) {
        joined.extend_from_slice(sep);
        joined.extend_from_slice(v.as_bytes());
    }
    Some(Cow::Owned(joined))
}

/// Whether any value of `name` contains `needle` (a VCL `~ "literal"` match
/// against the collected header: a literal without separators cannot span two
/// values, so checking each value is the same).
pub(crate) fn any_contains(headers: &HeaderMap, name: &HeaderName, needle: &[u8]) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| contains(v.as_bytes(), needle))
}

/// Byte-substring search (short haystacks: header values and URLs).
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Position of the first occurrence of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    if needle.len() > haystack.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                let at = i + off;
                if &haystack[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// Lossy, escaped rendering of header bytes for logs.
pub(crate) fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, COOKIE};

    #[test]
    fn find_positions() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"abc", b""), Some(0));
        assert_eq!(find(b"aaab", b"aab"), Some(1));
        assert_eq!(find(b"", b"a"), None);
    }

    #[test]
    fn collect_joins_in_order() {
        let mut h = HeaderMap::new();
        assert!(collect(&h, &COOKIE, b"; ").is_none());
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        assert!(matches!(
            collect(&h, &COOKIE, b"; "),
            Some(Cow::Borrowed(b"a=1"))
        ));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        h.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(
            collect(&h, &COOKIE, b"; ").as_deref(),
            Some(&b"a=1; b=2; c=3"[..])
        );
    }
}
