//! Tests of contract §3.

use super::*;
use crate::config::DesignExceptions;
use crate::request::{classify, RequestDecision};
use http::header::{HeaderName, HeaderValue};
use http::Method;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

fn key_with(policy: &FpcPolicy, target: &str, pairs: &[(&str, &str)]) -> CacheKey {
    let h = headers(pairs);
    let m = Method::GET;
    match classify(&RequestView::new(&m, target, &h), policy) {
        RequestDecision::Lookup(p) => p.key,
        other => panic!("{target}: {other:?}"),
    }
}

fn key(target: &str, pairs: &[(&str, &str)]) -> CacheKey {
    key_with(&FpcPolicy::default(), target, pairs)
}

fn vary(pairs: &[(&str, &str)]) -> Option<Vec<u8>> {
    vary_cookie(&headers(pairs)).map(|c| c.into_owned())
}

#[test]
fn s3_1_vary_cookie_extraction() {
    assert_eq!(
        vary(&[("cookie", "a=1; X-Magento-Vary=abc; b=2")]),
        Some(b"abc".to_vec())
    );
    assert_eq!(
        vary(&[("cookie", "X-Magento-Vary=abc")]),
        Some(b"abc".to_vec())
    );
    assert_eq!(vary(&[("cookie", "a=1")]), None);
    assert_eq!(vary(&[]), None);
    // Value runs to the next ';', spaces included.
    assert_eq!(
        vary(&[("cookie", "X-Magento-Vary=a b ;c=1")]),
        Some(b"a b ".to_vec())
    );
    // A cookie name, not a substring: PHP reads the cookie named
    // X-Magento-Vary, so the key does too (the VCL would take "zz").
    assert_eq!(
        vary(&[("cookie", "FooX-Magento-Vary=zz; X-Magento-Vary=abc")]),
        Some(b"abc".to_vec())
    );
    assert_eq!(
        vary(&[("cookie", "x=X-Magento-Vary=eur; X-Magento-Vary=att")]),
        Some(b"att".to_vec())
    );
    // Only inside another cookie's value: no vary cookie at all.
    assert_eq!(vary(&[("cookie", "x=X-Magento-Vary=eur")]), None);
    // The first cookie of the name wins, as in PHP's $_COOKIE.
    assert_eq!(
        vary(&[("cookie", "X-Magento-Vary=one; X-Magento-Vary=two")]),
        Some(b"one".to_vec())
    );
    // An empty first occurrence: the whole cookie string, never a later value.
    assert_eq!(
        vary(&[("cookie", "X-Magento-Vary=; X-Magento-Vary=abc")]),
        Some(b"X-Magento-Vary=; X-Magento-Vary=abc".to_vec())
    );
    // Never a value: the regsub does not match, the whole cookie is hashed.
    assert_eq!(
        vary(&[("cookie", "a=1; X-Magento-Vary=")]),
        Some(b"a=1; X-Magento-Vary=".to_vec())
    );
}

#[test]
fn s3_1_several_cookie_headers_are_joined_with_semicolon() {
    // Varnish's ", " join would make the value "abc, other=1".
    assert_eq!(
        vary(&[("cookie", "X-Magento-Vary=abc"), ("cookie", "other=1")]),
        Some(b"abc".to_vec())
    );
    assert_eq!(
        vary(&[("cookie", "a=1"), ("cookie", "X-Magento-Vary=abc")]),
        Some(b"abc".to_vec())
    );
    // Empty value at the end of one header, another in the next: PHP
    // keeps the first (empty) one, so the whole string is the component.
    assert_eq!(
        vary(&[
            ("cookie", "X-Magento-Vary="),
            ("cookie", "X-Magento-Vary=abc")
        ]),
        Some(b"X-Magento-Vary=; X-Magento-Vary=abc".to_vec())
    );
    assert_eq!(
        vary(&[("cookie", "a=1"), ("cookie", "X-Magento-Vary=")]),
        Some(b"a=1; X-Magento-Vary=".to_vec())
    );
    let one = key("/", &[("cookie", "a=1; X-Magento-Vary=abc; b=2")]);
    let split = key(
        "/",
        &[
            ("cookie", "a=1"),
            ("cookie", "X-Magento-Vary=abc"),
            ("cookie", "b=2"),
        ],
    );
    assert_eq!(one, split);
}

#[test]
fn s3_1_vary_value_partitions_the_cache() {
    let none = key("/", &[]);
    let a = key("/", &[("cookie", "X-Magento-Vary=a")]);
    let b = key("/", &[("cookie", "X-Magento-Vary=b")]);
    let a_other = key("/", &[("cookie", "PHPSESSID=9; X-Magento-Vary=a")]);
    assert_ne!(none, a);
    assert_ne!(a, b);
    // Other cookies do not matter.
    assert_eq!(a, a_other);
    assert_eq!(none, key("/", &[("cookie", "PHPSESSID=1")]));
}

#[test]
fn s3_1_graphql_with_cache_id_ignores_vary_cookie() {
    let a = key(
        "/graphql?q",
        &[("cookie", "X-Magento-Vary=a"), ("x-magento-cache-id", "id")],
    );
    let b = key(
        "/graphql?q",
        &[("cookie", "X-Magento-Vary=b"), ("x-magento-cache-id", "id")],
    );
    assert_eq!(a, b);
    // Without cache id, the cookie counts even for graphql.
    let a = key("/graphql?q", &[("cookie", "X-Magento-Vary=a")]);
    let b = key("/graphql?q", &[("cookie", "X-Magento-Vary=b")]);
    assert_ne!(a, b);
}

#[test]
fn s3_2_ssl_offload_header_partitions() {
    let plain = key("/", &[]);
    let https = key("/", &[("x-forwarded-proto", "https")]);
    let http = key("/", &[("x-forwarded-proto", "http")]);
    assert_ne!(plain, https);
    assert_ne!(https, http);
    // Present but empty differs from absent.
    assert_ne!(plain, key("/", &[("x-forwarded-proto", "")]));
    // Configurable name.
    let p = FpcPolicy {
        ssl_offloaded_header: HeaderName::from_static("x-forwarded-ssl"),
        ..FpcPolicy::default()
    };
    assert_eq!(
        key_with(&p, "/", &[]),
        key_with(&p, "/", &[("x-forwarded-proto", "https")])
    );
    assert_ne!(
        key_with(&p, "/", &[]),
        key_with(&p, "/", &[("x-forwarded-ssl", "on")])
    );
}

#[test]
fn s3_3_design_exceptions() {
    let p = FpcPolicy {
        design_exceptions: DesignExceptions::new([("(?i)iphone|android", "mobile")])
            .expect("compiles"),
        ..FpcPolicy::default()
    };
    let desktop = key_with(&p, "/", &[("user-agent", "Firefox")]);
    let iphone = key_with(&p, "/", &[("user-agent", "Mozilla iPhone")]);
    let android = key_with(&p, "/", &[("user-agent", "Android 14")]);
    assert_ne!(desktop, iphone);
    assert_eq!(iphone, android);
    assert_eq!(desktop, key_with(&p, "/", &[]));
}

#[test]
fn s3_4_graphql_components() {
    let base = [("x-magento-cache-id", "id1")];
    let k = key("/graphql?q", &base);
    assert_ne!(k, key("/graphql?q", &[("x-magento-cache-id", "id2")]));
    // Authorized marker only with a cache id.
    let authed = key(
        "/graphql?q",
        &[("x-magento-cache-id", "id1"), ("authorization", "Bearer t")],
    );
    assert_ne!(k, authed);
    // Store and currency always count for graphql URLs.
    let store = key("/graphql?q", &[("store", "default")]);
    let currency = key("/graphql?q", &[("content-currency", "default")]);
    assert_ne!(store, currency);
    assert_ne!(store, key("/graphql?q", &[]));
    // …and never for others.
    assert_eq!(key("/p", &[("store", "de")]), key("/p", &[]));
    assert_eq!(key("/p", &[("x-magento-cache-id", "x")]), key("/p", &[]));
}

#[test]
fn s3_5_url_and_host() {
    assert_ne!(key("/a", &[("host", "x")]), key("/b", &[("host", "x")]));
    assert_ne!(key("/a", &[("host", "x")]), key("/a", &[("host", "y")]));
    // Host is case-sensitive (Magento's vcl_recv returns before Varnish's
    // builtin would lower-case it).
    assert_ne!(key("/a", &[("host", "X")]), key("/a", &[("host", "x")]));
    // Fallback (HTTP/2 authority / server IP) when Host is absent.
    let h = HeaderMap::new();
    let m = Method::GET;
    let p = FpcPolicy::default();
    let with_fallback =
        |host: &str| match classify(&RequestView::new(&m, "/a", &h).with_host_fallback(host), &p) {
            RequestDecision::Lookup(plan) => plan.key,
            other => panic!("{other:?}"),
        };
    assert_ne!(with_fallback("x"), with_fallback("y"));
    // A fallback is not the same component as a Host header.
    assert_ne!(with_fallback("x"), key("/a", &[("host", "x")]));
    // The Host header wins over the fallback.
    let hh = headers(&[("host", "x")]);
    let RequestDecision::Lookup(plan) = classify(
        &RequestView::new(&m, "/a", &hh).with_host_fallback("zzz"),
        &p,
    ) else {
        panic!()
    };
    assert_eq!(plan.key, key("/a", &[("host", "x")]));
}

#[test]
fn s3_components_cannot_collide_by_concatenation() {
    // Varnish: hash("ab" "#" "c" "#") vs hash("a" "#" "bc" "#") differ by the
    // separator, but tuples with absent components collide there. Here not.
    let store_only = key("/graphql", &[("store", "eur")]);
    let currency_only = key("/graphql", &[("content-currency", "eur")]);
    assert_ne!(store_only, currency_only);
    let ssl = key("/graphql", &[("x-forwarded-proto", "eur")]);
    assert_ne!(ssl, store_only);
    let a = KeyParts {
        vary: Some(Cow::Borrowed(b"ab")),
        ssl_offload: Some(b"c"),
        design: None,
        graphql: None,
        url: "/",
        host: HostPart::None,
        requested_with: None,
        release: None,
    };
    let b = KeyParts {
        vary: Some(Cow::Borrowed(b"a")),
        ssl_offload: Some(b"bc"),
        ..a.clone()
    };
    assert_ne!(a.key(), b.key());
}

#[test]
fn key_debug_is_readable() {
    let h = headers(&[
        ("cookie", "X-Magento-Vary=abc"),
        ("x-forwarded-proto", "https"),
        ("host", "shop.test"),
        ("store", "de"),
    ]);
    let m = Method::GET;
    let p = FpcPolicy::default();
    let req = RequestView::new(&m, "/graphql?q=1", &h);
    let d = key_debug(&req, "/graphql?q=1", &p);
    assert_eq!(
        d.as_str(),
        "vary=abc ssl=https gql.store=de url=/graphql?q=1 host=shop.test"
    );
    assert_eq!(d.to_string(), d.as_str());
}

#[test]
fn cache_key_formatting() {
    let k = CacheKey {
        primary: [0xab; KEY_SIZE],
    };
    assert_eq!(k.to_hex(), "ab".repeat(16));
    assert_eq!(format!("{k}"), "ab".repeat(16));
    assert_eq!(format!("{k:?}"), format!("CacheKey({})", "ab".repeat(16)));
}

#[test]
fn key_is_stable_across_releases() {
    // Guard the encoding: a change must bump KEY_DOMAIN knowingly.
    let parts = KeyParts {
        vary: None,
        ssl_offload: None,
        design: None,
        graphql: None,
        url: "/",
        host: HostPart::Header(b"localhost"),
        requested_with: None,
        release: None,
    };
    let again = parts.clone();
    assert_eq!(parts.key(), again.key());
    assert_eq!(parts.key().to_hex().len(), 32);
}

#[test]
fn variance_key() {
    let req = headers(&[("accept-language", "de"), ("accept-encoding", "br")]);
    assert_eq!(variance(&HeaderMap::new(), &req), None);
    // Accept-Encoding alone: one copy for every client (the edge gunzips).
    let resp = headers(&[("vary", "Accept-Encoding")]);
    assert_eq!(variance(&resp, &req), None);
    let gz = headers(&[("vary", "Accept-Encoding"), ("content-encoding", "gzip")]);
    assert_eq!(variance(&gz, &req), None);
    // A coding the edge cannot undo varies on what the client sent.
    let br = headers(&[("vary", "Accept-Encoding"), ("content-encoding", "br")]);
    assert!(variance(&br, &req).is_some());
    assert_ne!(
        variance(&br, &req),
        variance(&br, &headers(&[("accept-encoding", "gzip")]))
    );
    let resp2 = headers(&[("vary", "accept-language, Accept-Encoding")]);
    let resp3 = headers(&[("vary", "Accept-Encoding"), ("vary", "Accept-Language")]);
    assert_eq!(variance(&resp2, &req), variance(&resp3, &req));
    assert!(variance(&resp2, &req).is_some());
    let req_en = headers(&[("accept-language", "en")]);
    assert_ne!(variance(&resp2, &req), variance(&resp2, &req_en));
    assert_eq!(variance(&headers(&[("vary", " , ")]), &req), None);
}

#[test]
fn x_requested_with_is_part_of_the_key() {
    // A plain GET of Magento's block renderer gets a 404 that AJAX calls
    // must never be served.
    let url = "/page_cache/block/render/?blocks=%5B%5D";
    let plain = key(url, &[]);
    let ajax = key(url, &[("x-requested-with", "XMLHttpRequest")]);
    assert_ne!(plain, ajax);
    assert_eq!(ajax, key(url, &[("x-requested-with", "XMLHttpRequest")]));
}

#[test]
fn php_cookie_reads_cookies_as_php_does() {
    let h = headers(&[("cookie", "  a=1;b ; c=x=y;;d"), ("cookie", "a=2; e=")]);
    assert_eq!(php_cookie(&h, b"a"), Some(&b"1"[..]));
    assert_eq!(php_cookie(&h, b"c"), Some(&b"x=y"[..]));
    assert_eq!(php_cookie(&h, b"d"), Some(&b""[..]));
    assert_eq!(php_cookie(&h, b"e"), Some(&b""[..]));
    assert_eq!(php_cookie(&h, b"z"), None);
}

/// Issue 18: the release is part of the key; without one the key is what it
/// was before releases existed (an L2 filled by older edges stays valid).
#[test]
fn r18_release_is_a_cache_namespace() {
    let h = headers(&[("host", "shop.test")]);
    let m = Method::GET;
    let p = FpcPolicy::default();
    let key_of = |release: Option<&str>| match classify(
        &RequestView::new(&m, "/women.html", &h).with_release(release),
        &p,
    ) {
        RequestDecision::Lookup(plan) => plan.key,
        other => panic!("{other:?}"),
    };
    let none = key_of(None);
    assert_eq!(none, key("/women.html", &[("host", "shop.test")]));
    assert_eq!(key_of(Some("")), none, "an empty release is no release");
    let a = key_of(Some("1712345678"));
    let b = key_of(Some("1712349999"));
    assert_ne!(a, none);
    assert_ne!(a, b);
    assert_eq!(a, key_of(Some("1712345678")));
    let req = RequestView::new(&m, "/women.html", &h).with_release(Some("b7"));
    assert_eq!(
        key_debug(&req, "/women.html", &p).as_str(),
        "url=/women.html host=shop.test release=b7"
    );
}
