//! One view of a request for the cache key and for PHP.
//!
//! The full-page cache keys a page on request headers (the `X-Magento-Vary`
//! cookie, the SSL-offload header, `Host`, `Store`, `Content-Currency`, …) and
//! PHP renders it from the headers it receives. Whenever the two can read
//! different headers, an attacker can have PHP render one context and the
//! cache store it under another's key (cache poisoning). This module runs
//! first, before the WAF, the cache and the upstream, and makes the request
//! one that every later phase reads alike:
//!
//! - **`Connection` naming an end-to-end header** (`Connection: close,
//!   Cookie`): a proxy drops the named headers before the next hop, so PHP
//!   would not see what the key was built from. A request naming one of
//!   Magento's key or identity headers is refused (400, as Varnish answers
//!   it); any other named header is removed here, once, so the cache's `Vary`
//!   matching and the upstream both see the request without it.
//! - **Repeated key headers** (`Store: a` + `Store: b`): the key reads the
//!   first value, PHP a `", "`-joined list. Refused (400).
//! - **`Host`**: HTTP/1.1 without one, more than one, or an h2 `Host` that
//!   differs from `:authority`: refused (400, RFC 9112 §3.2 and RFC 9113
//!   §8.3.1).
//! - **`X-Forwarded-Proto`**: exactly one value leaves this module. From a
//!   trusted proxy, its first value (the one the edge's HTTPS decision reads);
//!   from anyone else, the scheme the client really used on this hop (a client
//!   cannot claim HTTPS by sending the header, nor split the key from PHP by
//!   sending it twice). nginx passes the client's header on untouched.
//!
//! Pure: headers in, a decision out; no I/O.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};

/// Why a request is refused before anything else looks at it (→ 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `Connection` names a header the cache key or Magento depends on.
    #[error("Connection names the end-to-end header {0}")]
    ConnectionNamesEndToEnd(String),
    /// A header the cache key reads once was sent more than once.
    #[error("header {0} repeated")]
    RepeatedKeyHeader(&'static str),
    /// HTTP/1.1 without `Host`.
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    /// More than one `Host`.
    #[error("more than one Host header")]
    RepeatedHost,
    /// An h2 request whose `Host` differs from its `:authority`.
    #[error("Host differs from :authority")]
    HostAuthorityMismatch,
}

impl Refusal {
    /// Short label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::ConnectionNamesEndToEnd(_) => "connection_names_end_to_end",
            Refusal::RepeatedKeyHeader(_) => "repeated_key_header",
            Refusal::MissingHost => "missing_host",
            Refusal::RepeatedHost => "repeated_host",
            Refusal::HostAuthorityMismatch => "host_authority_mismatch",
        }
    }
}

/// Headers the cache key, Magento's context or the client's identity come
/// from: `Connection` may not name them.
const END_TO_END: [&str; 16] = [
    "cookie",
    "host",
    "authorization",
    "store",
    "content-currency",
    "x-magento-cache-id",
    "x-magento-vary",
    "x-requested-with",
    "user-agent",
    "content-length",
    "content-type",
    "transfer-encoding",
    "forwarded",
    "x-real-ip",
    "proxy",
    "accept-encoding",
];

/// Prefixes of header families that are end-to-end for Magento
/// (`X-Forwarded-For`, `-Proto`, `-Host`, `-Port`, `-Ssl`, …).
const END_TO_END_PREFIXES: [&str; 2] = ["x-forwarded-", "x-magento-"];

/// Headers the cache key reads once (its first value) while PHP would get
/// every value joined: they must come once.
const KEY_HEADERS_ONCE: [(HeaderName, &str); 5] = [
    (HeaderName::from_static("store"), "Store"),
    (
        HeaderName::from_static("content-currency"),
        "Content-Currency",
    ),
    (
        HeaderName::from_static("x-magento-cache-id"),
        "X-Magento-Cache-Id",
    ),
    (
        HeaderName::from_static("x-requested-with"),
        "X-Requested-With",
    ),
    (header::AUTHORIZATION, "Authorization"),
];

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the hygiene needs to know about the connection.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The client→edge hop is TLS.
    pub tls: bool,
    /// The socket peer is a trusted proxy (`server.trusted_proxies`).
    pub trusted_peer: bool,
    /// `cache.ssl_offloaded_header` when it is not `X-Forwarded-Proto`
    /// (it must come once as well).
    pub ssl_offloaded_header: Option<&'a HeaderName>,
}

/// Checks and normalises a request head in place; see the module docs.
pub fn apply(
    version: Version,
    uri: &Uri,
    headers: &mut HeaderMap,
    hop: Hop<'_>,
) -> Result<(), Refusal> {
    check_host(version, uri, headers)?;
    strip_connection_named(headers)?;
    for (name, label) in &KEY_HEADERS_ONCE {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(Refusal::RepeatedKeyHeader(label));
        }
    }
    if let Some(name) = hop
        .ssl_offloaded_header
        .filter(|n| **n != X_FORWARDED_PROTO)
    {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(Refusal::RepeatedKeyHeader("ssl offloaded header"));
        }
    }
    canonical_forwarded_proto(headers, hop);
    Ok(())
}

fn check_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::RepeatedHost);
    }
    match (version, first, uri.authority()) {
        (Version::HTTP_11, None, _) => Err(Refusal::MissingHost),
        (Version::HTTP_2, Some(host), Some(authority))
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            Err(Refusal::HostAuthorityMismatch)
        }
        _ => Ok(()),
    }
}

/// Refuses a `Connection` naming an end-to-end header; removes the other
/// named headers (they are hop-by-hop by the client's own word).
fn strip_connection_named(headers: &mut HeaderMap) -> Result<(), Refusal> {
    if !headers.contains_key(header::CONNECTION) {
        return Ok(());
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"upgrade")
                || token.eq_ignore_ascii_case(b"te")
            {
                continue;
            }
            let Ok(name) = HeaderName::from_bytes(token) else {
                continue; // not a header name: names nothing
            };
            let n = name.as_str();
            if END_TO_END.contains(&n)
                || END_TO_END_PREFIXES.iter().any(|p| n.starts_with(p))
                || n == header::CONNECTION.as_str()
            {
                return Err(Refusal::ConnectionNamesEndToEnd(n.to_owned()));
            }
            named.push(name);
        }
    }
    for name in named {
        headers.remove(name);
    }
    Ok(())
}

fn canonical_forwarded_proto(headers: &mut HeaderMap, hop: Hop<'_>) {
    let own = || HeaderValue::from_static(if hop.tls { "https" } else { "http" });
    let value = if hop.trusted_peer && !hop.tls {
        match headers.get(&X_FORWARDED_PROTO) {
            // The first element of the first value: what `is_https` reads.
            Some(v) => {
                let first = v
                    .as_bytes()
                    .split(|&b| b == b',')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                if first.eq_ignore_ascii_case(b"https") {
                    HeaderValue::from_static("https")
                } else if first.eq_ignore_ascii_case(b"http") {
                    HeaderValue::from_static("http")
                } else {
                    // Neither scheme: the proxy said nothing usable.
                    own()
                }
            }
            None => return,
        }
    } else {
        own()
    };
    headers.insert(X_FORWARDED_PROTO, value);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    const DIRECT: Hop<'static> = Hop {
        tls: false,
        trusted_peer: false,
        ssl_offloaded_header: None,
    };
    const PROXIED: Hop<'static> = Hop {
        tls: false,
        trusted_peer: true,
        ssl_offloaded_header: None,
    };

    fn run(pairs: &[(&str, &str)], hop: Hop<'_>) -> Result<HeaderMap, Refusal> {
        let mut m = h(pairs);
        apply(Version::HTTP_11, &Uri::from_static("/"), &mut m, hop).map(|()| m)
    }

    #[test]
    fn connection_may_not_name_what_the_key_or_magento_reads() {
        for named in [
            "Cookie",
            "cookie",
            "Host",
            "Authorization",
            "Store",
            "Content-Currency",
            "X-Magento-Cache-Id",
            "X-Forwarded-Proto",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "x-forwarded-ssl",
            "User-Agent",
            "X-Requested-With",
        ] {
            let conn = format!("close, {named}");
            let r = run(&[("host", "shop"), ("connection", &conn)], DIRECT);
            assert!(
                matches!(r, Err(Refusal::ConnectionNamesEndToEnd(_))),
                "{named}: {r:?}"
            );
        }
    }

    #[test]
    fn other_named_headers_are_removed_before_anything_reads_them() {
        let m = run(
            &[
                ("host", "shop"),
                ("connection", "keep-alive, X-Custom"),
                ("x-custom", "1"),
                ("x-other", "2"),
            ],
            DIRECT,
        )
        .unwrap();
        assert!(m.get("x-custom").is_none());
        assert_eq!(m.get("x-other").unwrap(), "2");
        assert_eq!(m.get("connection").unwrap(), "keep-alive, X-Custom");
        assert!(run(&[("host", "shop"), ("connection", "close")], DIRECT).is_ok());
    }

    #[test]
    fn host_must_be_there_once_and_agree_with_authority() {
        let mut m = h(&[]);
        assert_eq!(
            apply(Version::HTTP_11, &Uri::from_static("/"), &mut m, DIRECT),
            Err(Refusal::MissingHost)
        );
        let mut m = h(&[]);
        assert!(apply(Version::HTTP_10, &Uri::from_static("/"), &mut m, DIRECT).is_ok());
        let mut m = h(&[("host", "a"), ("host", "b")]);
        assert_eq!(
            apply(Version::HTTP_11, &Uri::from_static("/"), &mut m, DIRECT),
            Err(Refusal::RepeatedHost)
        );
        let uri = Uri::from_static("https://shop.test/");
        let mut m = h(&[("host", "evil.test")]);
        assert_eq!(
            apply(Version::HTTP_2, &uri, &mut m, DIRECT),
            Err(Refusal::HostAuthorityMismatch)
        );
        let mut m = h(&[("host", "SHOP.test")]);
        assert!(apply(Version::HTTP_2, &uri, &mut m, DIRECT).is_ok());
        let mut m = h(&[]);
        assert!(apply(Version::HTTP_2, &uri, &mut m, DIRECT).is_ok());
    }

    #[test]
    fn repeated_key_headers_are_refused() {
        for name in [
            "store",
            "content-currency",
            "x-magento-cache-id",
            "authorization",
        ] {
            let r = run(&[("host", "s"), (name, "a"), (name, "b")], DIRECT);
            assert!(matches!(r, Err(Refusal::RepeatedKeyHeader(_))), "{name}");
        }
        let custom = HeaderName::from_static("x-ssl");
        let hop = Hop {
            ssl_offloaded_header: Some(&custom),
            ..DIRECT
        };
        assert!(run(&[("host", "s"), ("x-ssl", "on"), ("x-ssl", "off")], hop).is_err());
    }

    #[test]
    fn forwarded_proto_leaves_with_one_value() {
        // A trusted proxy's first value; the key and PHP read the same.
        let m = run(
            &[
                ("host", "s"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-proto", "http"),
            ],
            PROXIED,
        )
        .unwrap();
        let all: Vec<_> = m.get_all("x-forwarded-proto").iter().collect();
        assert_eq!(all, ["https"]);
        let m = run(
            &[("host", "s"), ("x-forwarded-proto", "HTTPS, http")],
            PROXIED,
        )
        .unwrap();
        assert_eq!(m.get("x-forwarded-proto").unwrap(), "https");
        // Absent from a trusted proxy: stays absent.
        let m = run(&[("host", "s")], PROXIED).unwrap();
        assert!(m.get("x-forwarded-proto").is_none());
        // From a client: the scheme it really used.
        let m = run(&[("host", "s"), ("x-forwarded-proto", "https")], DIRECT).unwrap();
        assert_eq!(m.get("x-forwarded-proto").unwrap(), "http");
        let tls = Hop {
            tls: true,
            ..DIRECT
        };
        let m = run(&[("host", "s")], tls).unwrap();
        assert_eq!(m.get("x-forwarded-proto").unwrap(), "https");
    }
}
