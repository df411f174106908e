//! Tests of contract §2, one per rule, in VCL order.

use super::*;
use crate::config::TrackingParams;
use http::header::{HeaderValue, COOKIE, HOST};
use http::Method;

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header value")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), hv(v));
    }
    h
}

fn decide(method: &str, target: &str, h: &HeaderMap) -> RequestDecision {
    let m = Method::from_bytes(method.as_bytes()).expect("method");
    classify(&RequestView::new(&m, target, h), &FpcPolicy::default())
}

fn lookup(method: &str, target: &str, h: &HeaderMap) -> LookupPlan {
    match decide(method, target, h) {
        RequestDecision::Lookup(p) => p,
        other => panic!("{method} {target}: expected lookup, got {other:?}"),
    }
}

fn url(target: &str) -> String {
    lookup("GET", target, &HeaderMap::new()).url
}

// --- §2.1 restarts ---------------------------------------------------------

#[test]
fn s2_1_restart_forces_miss() {
    let h = HeaderMap::new();
    let m = Method::GET;
    let p = FpcPolicy::default();
    let RequestDecision::Lookup(first) = classify(&RequestView::new(&m, "/", &h), &p) else {
        panic!()
    };
    assert!(!first.always_miss);
    let RequestDecision::Lookup(again) = classify(&RequestView::new(&m, "/", &h).restarted(), &p)
    else {
        panic!()
    };
    assert!(again.always_miss);
    assert_eq!(first.key, again.key);
}

// --- §2.2 query sorting ----------------------------------------------------

#[test]
fn s2_2_querysort_condition() {
    assert!(needs_querysort("/p?b=1&a=2"));
    assert!(needs_querysort("/p?a&b"));
    assert!(!needs_querysort("/p?a=1"));
    assert!(!needs_querysort("/p?a&"));
    assert!(!needs_querysort("/p?&b"));
    assert!(!needs_querysort("/p&a=1?b"));
    assert!(!needs_querysort("/p"));
    assert!(needs_querysort("/p?&&&"));
}

#[test]
fn s2_2_querysort_semantics() {
    assert_eq!(querysort("/p?b=1&a=2"), "/p?a=2&b=1");
    assert_eq!(querysort("/p?c=3&b=2&a=1"), "/p?a=1&b=2&c=3");
    // Empty parameters dropped.
    assert_eq!(querysort("/p?b=1&&a=2&"), "/p?a=2&b=1");
    assert_eq!(querysort("/p?&&&"), "/p?");
    // No '&': unchanged (borrowed).
    assert!(matches!(querysort("/p?z=1"), Cow::Borrowed("/p?z=1")));
    assert!(matches!(querysort("/p"), Cow::Borrowed("/p")));
    // Path untouched, only the first '?' splits.
    assert_eq!(querysort("/b/a?y=1&x=2?z"), "/b/a?x=2?z&y=1");
    // Prefix-equal parameters keep their order (stable).
    assert_eq!(querysort("/p?a=12&a=1"), "/p?a=12&a=1");
    assert_eq!(querysort("/p?a=1&a=12"), "/p?a=1&a=12");
    // Bytewise: uppercase before lowercase.
    assert_eq!(querysort("/p?b=1&B=1"), "/p?B=1&b=1");
}

#[test]
fn s2_2_sorted_queries_share_a_key() {
    let h = headers(&[("host", "shop")]);
    let a = lookup("GET", "/c.html?b=1&a=2", &h);
    let b = lookup("GET", "/c.html?a=2&b=1", &h);
    assert_eq!(a.url, "/c.html?a=2&b=1");
    assert_eq!(a.key, b.key);
}

#[test]
fn s2_2_sorting_applies_before_purge_and_to_every_method() {
    // A POST is passed, but its URL was sorted first (no observable effect
    // beyond the pass): classification must not care about order.
    assert_eq!(
        decide("POST", "/x?b=1&a=2", &HeaderMap::new()),
        RequestDecision::Pass(PassReason::Method)
    );
    assert_eq!(
        normalize_url("/x?b=1&a=2", &FpcPolicy::default()),
        "/x?a=2&b=1"
    );
}

#[test]
fn s2_2_sorting_can_be_disabled() {
    let p = FpcPolicy {
        sort_query: false,
        ..FpcPolicy::default()
    };
    assert_eq!(normalize_url("/x?b=1&a=2", &p), "/x?b=1&a=2");
}

// --- §2.3 PURGE ------------------------------------------------------------

#[test]
fn s2_3_purge_is_exact_and_case_sensitive() {
    let h = HeaderMap::new();
    assert_eq!(decide("PURGE", "/", &h), RequestDecision::Purge);
    assert_eq!(decide("PURGE", "/checkout?b&a", &h), RequestDecision::Purge);
    assert_eq!(decide("purge", "/", &h), RequestDecision::Pipe);
}

// --- §2.4 pipe, §2.5 pass by method ----------------------------------------

#[test]
fn s2_4_unknown_methods_are_piped() {
    let h = HeaderMap::new();
    for m in ["CONNECT", "PROPFIND", "BAN", "get"] {
        assert_eq!(decide(m, "/", &h), RequestDecision::Pipe, "{m}");
    }
}

#[test]
fn s2_5_non_get_head_pass_and_patch_is_passed() {
    let h = HeaderMap::new();
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"] {
        assert_eq!(
            decide(m, "/", &h),
            RequestDecision::Pass(PassReason::Method),
            "{m}"
        );
    }
    assert!(matches!(
        decide("HEAD", "/", &h),
        RequestDecision::Lookup(_)
    ));
    assert!(matches!(decide("GET", "/", &h), RequestDecision::Lookup(_)));
}

// --- §2.6 customer / checkout ----------------------------------------------

#[test]
fn s2_6_customer_and_checkout_anywhere() {
    let h = HeaderMap::new();
    for t in [
        "/customer/account/",
        "/checkout/cart/",
        "/en/checkout",
        "/p?return=/customer/x",
        "/x/customerservice",
        "http://shop/checkout/",
    ] {
        assert_eq!(
            decide("GET", t, &h),
            RequestDecision::Pass(PassReason::CustomerOrCheckout),
            "{t}"
        );
    }
    // Case-sensitive.
    assert!(matches!(
        decide("GET", "/Customer/", &h),
        RequestDecision::Lookup(_)
    ));
}

// --- §2.7 health check -----------------------------------------------------

#[test]
fn s2_7_health_check() {
    let h = HeaderMap::new();
    for t in [
        "/health_check.php",
        "/pub/health_check.php",
        "/health_checkXphp",
    ] {
        assert_eq!(
            decide("GET", t, &h),
            RequestDecision::Pass(PassReason::HealthCheck),
            "{t}"
        );
    }
    for t in [
        "/health_check.php?x=1",
        "/a/health_check.php",
        "health_check.php",
        "/pub/pub/health_check.php",
        "/health_check.phpx",
    ] {
        assert!(
            matches!(decide("GET", t, &h), RequestDecision::Lookup(_)),
            "{t}"
        );
    }
}

// --- §2.9 scheme strip -----------------------------------------------------

#[test]
fn s2_9_scheme_strip_keeps_the_host() {
    assert_eq!(url("http://shop.example/p"), "shop.example/p");
    assert_eq!(url("https://shop.example/p"), "shop.example/p");
    assert_eq!(url("/http://x"), "/http://x");
    assert_eq!(strip_scheme("httpss://x"), "httpss://x");
    // Because the host stays, absolute-form static URLs are not passed.
    assert!(matches!(
        decide("GET", "http://shop/static/a.js", &HeaderMap::new()),
        RequestDecision::Lookup(_)
    ));
}

// --- §2.11 tracking parameters ---------------------------------------------

#[test]
fn s2_11_contract_examples() {
    assert_eq!(url("/p?utm_source=x&id=1"), "/p?id=1");
    assert_eq!(url("/p?id=1&gclid=abc"), "/p?id=1");
    assert_eq!(url("/p?fbclid=z"), "/p");
}

#[test]
fn s2_11_marketing_params_share_a_key() {
    let h = headers(&[("host", "shop")]);
    let a = lookup("GET", "/p.html?utm_source=a", &h);
    let b = lookup("GET", "/p.html?utm_source=b", &h);
    let c = lookup("GET", "/p.html", &h);
    assert_eq!(a.key, b.key);
    assert_eq!(a.key, c.key);
}

#[test]
fn s2_11_list_entries() {
    for (t, want) in [
        ("/p?gad_source=1", "/p"),
        ("/p?gad_campaignid=1&a=1", "/p?a=1"),
        ("/p?mkevt=1", "/p"),
        ("/p?mtm_campaign=x", "/p"),
        ("/p?matomo_kwd=x", "/p"),
        ("/p?pk_source=x", "/p"),
        ("/p?piwik_campaign=x", "/p"),
        ("/p?pik_x=1", "/p?pik_x=1"), // p(iwi)?k_ needs "pk_" or "piwik_"
        ("/p?redirect_log_mongo_id=1", "/p"),
        ("/p?ScCid=1", "/p"),
        ("/p?sccid=1", "/p?sccid=1"), // case-sensitive
        ("/p?_ga=1.2.3", "/p"),
        ("/p?ie=UTF-8", "/p"),
        ("/p?origin=x", "/p"),
        ("/p?UTM_SOURCE=x", "/p?UTM_SOURCE=x"),
    ] {
        assert_eq!(url(t), want, "{t}");
    }
}

#[test]
fn s2_11_value_charset_and_quirks() {
    // Value class [-_A-z0-9+()%.]: A-z includes [ \ ] ^ _ and backtick.
    assert_eq!(url("/p?utm_source=a[b]^`&id=1"), "/p?id=1");
    // A char outside the class ends the value: the rest stays.
    assert_eq!(url("/p?utm_source=a~b&id=1"), "/p?id=1&~b");
    // An empty value is not stripped (the class needs one char).
    assert_eq!(url("/p?utm_source=&id=1"), "/p?id=1&utm_source=");
    // Not anchored: once triggered, substrings of other names are eaten.
    assert_eq!(url("/p?cookie=1&utm_source=x"), "/p?cook");
    assert_eq!(url("/p?xfbclid=1&gclid=2"), "/p?x");
    // Not triggered without (?|&)NAME= : nothing happens.
    assert_eq!(url("/p?cookie=1"), "/p?cookie=1");
    // The whole URL is rewritten, path included.
    assert_eq!(url("/utm_x=1/p?gclid=2"), "//p");
    // Trailing run of ? | & removed.
    assert_eq!(url("/p?a=1&|&gclid=2"), "/p?a=1");
}

#[test]
fn s2_11_configurable_list() {
    let p = FpcPolicy {
        tracking_params: TrackingParams::new(["ref", "si"]).expect("compiles"),
        ..FpcPolicy::default()
    };
    assert_eq!(
        normalize_url("/p?ref=x&utm_source=y", &p),
        "/p?utm_source=y"
    );
    let p = FpcPolicy {
        tracking_params: TrackingParams::disabled(),
        ..FpcPolicy::default()
    };
    assert_eq!(normalize_url("/p?gclid=1", &p), "/p?gclid=1");
}

#[test]
fn s2_11_sorting_then_stripping() {
    // Sorted first (id < utm), then stripped; the trailing '&' goes.
    assert_eq!(url("/p?utm_source=x&id=1&b=2"), "/p?b=2&id=1");
}

// --- §2.12 static and media ------------------------------------------------

#[test]
fn s2_12_static_and_media_pass() {
    let h = HeaderMap::new();
    for t in [
        "/static/version1/frontend/a.js",
        "/pub/static/a.css",
        "/media/catalog/x.jpg",
        "/pub/media/x.jpg",
        "/media/x.jpg?utm_source=1",
    ] {
        assert_eq!(
            decide("GET", t, &h),
            RequestDecision::Pass(PassReason::StaticOrMedia),
            "{t}"
        );
    }
    for t in ["/static", "/mediax/a", "/en/static/a", "/pub/pub/static/a"] {
        assert!(
            matches!(decide("GET", t, &h), RequestDecision::Lookup(_)),
            "{t}"
        );
    }
}

// --- §2.13 GraphQL bearer --------------------------------------------------

#[test]
fn s2_13_graphql_bearer_without_cache_id_passes() {
    let bearer = headers(&[("authorization", "Bearer abc")]);
    assert_eq!(
        decide("GET", "/graphql?query=x", &bearer),
        RequestDecision::Pass(PassReason::GraphqlBearer)
    );
    let with_id = headers(&[
        ("authorization", "Bearer abc"),
        ("x-magento-cache-id", "id"),
    ]);
    assert!(matches!(
        decide("GET", "/graphql?q", &with_id),
        RequestDecision::Lookup(_)
    ));
    let basic = headers(&[("authorization", "Basic abc")]);
    assert!(matches!(
        decide("GET", "/graphql?q", &basic),
        RequestDecision::Lookup(_)
    ));
    let lower = headers(&[("authorization", "bearer abc")]);
    assert!(matches!(
        decide("GET", "/graphql?q", &lower),
        RequestDecision::Lookup(_)
    ));
    // Only /graphql URLs.
    assert!(matches!(
        decide("GET", "/rest/V1/x", &bearer),
        RequestDecision::Lookup(_)
    ));
}

// --- §2.14 lookup with cookies and Authorization ---------------------------

#[test]
fn s2_14_cookies_and_authorization_do_not_prevent_caching() {
    let h = headers(&[("cookie", "PHPSESSID=1"), ("authorization", "Basic x")]);
    assert!(matches!(decide("GET", "/", &h), RequestDecision::Lookup(_)));
}

// --- Accept-Encoding washing (Varnish core) --------------------------------

#[test]
fn s2_accept_encoding_washing() {
    let cases: &[(&[&str], bool)] = &[
        (&["gzip"], true),
        (&["gzip, deflate, br"], true),
        (&["br;q=1.0, GZIP;q=0.5"], true),
        (&["gzip;q=0"], false),
        (&["gzip;q=0.000"], false),
        (&["gzip;q=0.001"], true),
        (&["gzip; q=1"], true),
        (&["gzip;q=garbage"], false),
        (&["x-gzip;q=0"], true),
        (&["deflate, br"], false),
        (&["identity"], false),
        (&["*"], false),
        (&["gzipx"], false),
        (&["br", "gzip"], true),
        (&[], false),
        (&["will be overridden"], false),
    ];
    for (values, want) in cases {
        let mut h = HeaderMap::new();
        for v in *values {
            h.append(ACCEPT_ENCODING, hv(v));
        }
        assert_eq!(accepts_gzip(&h), *want, "{values:?}");
        let plan = lookup("GET", "/", &h);
        assert_eq!(plan.accept_gzip, *want);
        assert_eq!(
            plan.washed_accept_encoding(),
            want.then(|| HeaderValue::from_static("gzip"))
        );
    }
}

#[test]
fn s4_miss_fetch_headers_force_gzip_and_drop_conditionals() {
    let client = headers(&[
        ("accept-encoding", "will be overridden"),
        ("if-none-match", "\"x\""),
        ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("range", "bytes=0-1"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
        ("host", "shop"),
    ]);
    let h = miss_fetch_headers(&client);
    assert_eq!(h[ACCEPT_ENCODING], "gzip");
    for gone in [
        "if-none-match",
        "if-modified-since",
        "range",
        "connection",
        "x-hop",
    ] {
        assert!(!h.contains_key(gone), "{gone}");
    }
    assert_eq!(h.get_all(COOKIE).iter().count(), 2);
    assert_eq!(h[HOST], "shop");
}

#[test]
fn labels() {
    assert_eq!(PassReason::GraphqlBearer.as_str(), "graphql_bearer");
    assert_eq!(RequestDecision::Pipe.as_str(), "pipe");
    assert_eq!(RequestDecision::Purge.as_str(), "purge");
    assert_eq!(RequestDecision::Pass(PassReason::Method).as_str(), "pass");
}

#[test]
fn lookup_plan_graphql_flag() {
    assert!(lookup("GET", "/graphql?q", &HeaderMap::new()).is_graphql());
    assert!(!lookup("GET", "/", &HeaderMap::new()).is_graphql());
}
