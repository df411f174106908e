//! Tests of contract §5, including its "Consequences worth testing".

use super::*;
use crate::request::{classify, RequestDecision};
use http::header::HeaderName;
use http::Method;
use std::time::UNIX_EPOCH;

const DAY: u64 = 86_400;

fn now() -> SystemTime {
    // Sun, 06 Nov 1994 08:49:37 GMT
    UNIX_EPOCH + Duration::from_secs(784_111_777)
}

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

struct Case {
    policy: FpcPolicy,
    method: Method,
    target: String,
    req: HeaderMap,
}

impl Case {
    fn get(target: &str) -> Self {
        Self {
            policy: FpcPolicy::default(),
            method: Method::GET,
            target: target.to_owned(),
            req: HeaderMap::new(),
        }
    }
    fn variant_c(mut self) -> Self {
        self.policy.error_statuses = ErrorStatusPolicy::NoErrors;
        self
    }
    fn req(mut self, pairs: &[(&str, &str)]) -> Self {
        self.req = headers(pairs);
        self
    }
    fn respond(&self, status: u16, pairs: &[(&str, &str)]) -> Cacheability {
        let view = RequestView::new(&self.method, &self.target, &self.req);
        let resp_h = headers(pairs);
        let resp = ResponseView {
            status: StatusCode::from_u16(status).expect("status"),
            headers: &resp_h,
        };
        match classify(&view, &self.policy) {
            RequestDecision::Lookup(plan) => {
                classify_response(&view, Fetch::Lookup(&plan), &resp, now(), &self.policy)
            }
            RequestDecision::Pass(_) => {
                classify_response(&view, Fetch::Pass, &resp, now(), &self.policy)
            }
            other => panic!("{other:?}"),
        }
    }
}

fn ttl_of(c: &Cacheability) -> u64 {
    match c {
        Cacheability::Cacheable { ttl, .. } => ttl.as_secs(),
        other => panic!("expected cacheable, got {other:?}"),
    }
}

fn uncacheable(c: &Cacheability) -> (u64, bool, NoCacheReason) {
    match c {
        Cacheability::Uncacheable {
            hit_for_miss_ttl,
            strip_set_cookie,
            reason,
            ..
        } => (hit_for_miss_ttl.as_secs(), *strip_set_cookie, *reason),
        other => panic!("expected uncacheable, got {other:?}"),
    }
}

// --- Consequences worth testing (§5) ---------------------------------------

#[test]
fn s5_magento_public_page_cached_86400_and_set_cookie_stripped() {
    let c = Case::get("/women.html").respond(
        200,
        &[
            ("cache-control", "public, max-age=86400, s-maxage=86400"),
            ("set-cookie", "PHPSESSID=1; path=/"),
            ("x-magento-tags", "cat_c_3,cms_b_1,store"),
            ("content-type", "text/html; charset=UTF-8"),
        ],
    );
    assert_eq!(ttl_of(&c), 86_400);
    match &c {
        Cacheability::Cacheable {
            grace,
            keep,
            strip_set_cookie,
            esi,
            gzip,
            tags,
            ..
        } => {
            assert_eq!(grace.as_secs(), 3 * DAY);
            assert_eq!(keep.as_secs(), 0);
            assert!(strip_set_cookie);
            assert!(esi);
            assert!(gzip);
            assert_eq!(tags, &["cat_c_3", "cms_b_1", "store"]);
        }
        _ => unreachable!(),
    }
    let mut h = headers(&[("set-cookie", "a=1"), ("set-cookie", "b=2")]);
    c.apply_to_headers(&mut h);
    assert!(!h.contains_key(SET_COOKIE));
}

#[test]
fn s5_magento_no_cache_page_keeps_set_cookie_hit_for_miss_120() {
    let c = Case::get("/p").respond(
        200,
        &[
            (
                "cache-control",
                "no-store, no-cache, must-revalidate, max-age=0",
            ),
            ("pragma", "no-cache"),
            ("set-cookie", "PHPSESSID=1"),
        ],
    );
    assert_eq!(uncacheable(&c), (120, false, NoCacheReason::ZeroTtl));
    let mut h = headers(&[("set-cookie", "a=1")]);
    c.apply_to_headers(&mut h);
    assert!(h.contains_key(SET_COOKIE));
}

#[test]
fn s5_no_caching_headers_cached_default_ttl() {
    assert_eq!(ttl_of(&Case::get("/").respond(200, &[])), 120);
    let p = Case {
        policy: FpcPolicy {
            default_ttl_secs: 30,
            ..FpcPolicy::default()
        },
        ..Case::get("/")
    };
    assert_eq!(ttl_of(&p.respond(200, &[])), 30);
}

#[test]
fn s5_404_without_cc_variant_a_cached_variant_c_not() {
    assert_eq!(ttl_of(&Case::get("/nope").respond(404, &[])), 120);
    assert_eq!(
        uncacheable(&Case::get("/nope").variant_c().respond(404, &[])),
        (120, false, NoCacheReason::ErrorStatus)
    );
}

#[test]
fn s5_301_with_max_age_a_uncacheable_c_cacheable() {
    let cc = [("cache-control", "public, max-age=600")];
    assert_eq!(
        uncacheable(&Case::get("/old").respond(301, &cc)),
        (DAY, false, NoCacheReason::Status)
    );
    assert_eq!(
        ttl_of(&Case::get("/old").variant_c().respond(301, &cc)),
        600
    );
}

#[test]
fn s5_405_uncacheable_in_all_variants() {
    assert_eq!(
        uncacheable(&Case::get("/x").respond(405, &[])),
        (DAY, false, NoCacheReason::Status)
    );
    assert_eq!(
        uncacheable(&Case::get("/x").variant_c().respond(405, &[])),
        (120, false, NoCacheReason::ZeroTtl)
    );
}

// --- Variant C error statuses ----------------------------------------------

#[test]
fn s5_variant_c_error_statuses_skip_everything() {
    for status in [403, 404, 500, 503, 599] {
        let c = Case::get("/x").variant_c().respond(
            status,
            &[
                ("cache-control", "public, max-age=600"),
                ("content-type", "text/html"),
                ("x-magento-debug", "1"),
            ],
        );
        match &c {
            Cacheability::Uncacheable {
                hit_for_miss_ttl,
                strip_set_cookie,
                reason,
                gzip,
                esi,
            } => {
                assert_eq!(hit_for_miss_ttl.as_secs(), 120);
                assert!(!strip_set_cookie);
                assert_eq!(*reason, NoCacheReason::ErrorStatus);
                assert!(!gzip && !esi, "no ESI/gzip after the early return");
            }
            other => panic!("{status}: {other:?}"),
        }
        let mut h = headers(&[("x-magento-debug", "1"), ("cache-control", "public")]);
        c.apply_to_headers(&mut h);
        assert!(!h.contains_key(X_MAGENTO_CACHE_CONTROL), "step 4 skipped");
    }
    // Variant C still caches 200 and 410.
    assert_eq!(ttl_of(&Case::get("/x").variant_c().respond(410, &[])), 120);
}

// --- Core TTL (Varnish RFC2616_Ttl) ----------------------------------------

#[test]
fn s5_core_ttl_precedence() {
    let c = Case::get("/x").variant_c();
    // s-maxage > max-age.
    assert_eq!(
        ttl_of(&c.respond(200, &[("cache-control", "max-age=0, s-maxage=300")])),
        300
    );
    // Cache-Control beats Expires.
    assert_eq!(
        ttl_of(&c.respond(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
            ]
        )),
        60
    );
    // Expires relative to our clock when Date is absent or close.
    assert_eq!(
        ttl_of(&c.respond(200, &[("expires", "Sun, 06 Nov 1994 09:49:37 GMT")])),
        3600
    );
    assert_eq!(
        ttl_of(&c.respond(
            200,
            &[
                ("expires", "Sun, 06 Nov 1994 09:49:37 GMT"),
                ("date", "Sun, 06 Nov 1994 08:49:40 GMT")
            ]
        )),
        3600
    );
    // Clocks out of whack: Expires − Date.
    assert_eq!(
        ttl_of(&c.respond(
            200,
            &[
                ("expires", "Mon, 07 Nov 1994 00:10:00 GMT"),
                ("date", "Mon, 07 Nov 1994 00:00:00 GMT")
            ]
        )),
        600
    );
    // Invalid Expires (Magento's "-1" style) is ignored → default TTL.
    assert_eq!(ttl_of(&c.respond(200, &[("expires", "-1")])), 120);
}

#[test]
fn s5_core_ttl_expired_expires_is_zero() {
    let c = Case::get("/x");
    // Expires < Date.
    assert_eq!(
        uncacheable(&c.respond(
            200,
            &[
                ("expires", "Sun, 06 Nov 1994 08:00:00 GMT"),
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT")
            ]
        ))
        .2,
        NoCacheReason::ZeroTtl
    );
    // Expires in our past, no Date.
    assert_eq!(
        uncacheable(&c.respond(200, &[("expires", "Sun, 06 Nov 1994 08:00:00 GMT")])).2,
        NoCacheReason::ZeroTtl
    );
}

#[test]
fn s5_core_ttl_age_is_subtracted() {
    let c = Case::get("/x");
    assert_eq!(
        ttl_of(&c.respond(200, &[("cache-control", "max-age=600"), ("age", "100")])),
        500
    );
    match c.respond(200, &[("cache-control", "max-age=600"), ("age", "100")]) {
        Cacheability::Cacheable { age, .. } => assert_eq!(age.as_secs(), 100),
        other => panic!("{other:?}"),
    }
    // Older than max-age: zero TTL → hit-for-miss.
    assert_eq!(
        uncacheable(&c.respond(200, &[("cache-control", "max-age=60"), ("age", "60")])).2,
        NoCacheReason::ZeroTtl
    );
    // Default TTL too.
    assert_eq!(ttl_of(&c.respond(200, &[("age", "20")])), 100);
}

#[test]
fn s5_core_ttl_302_307_no_default() {
    let c = Case::get("/x").variant_c();
    for status in [302, 307] {
        assert_eq!(
            uncacheable(&c.respond(status, &[])).2,
            NoCacheReason::ZeroTtl,
            "{status}"
        );
        assert_eq!(
            ttl_of(&c.respond(status, &[("cache-control", "max-age=30")])),
            30
        );
    }
}

#[test]
fn s5_core_ttl_other_statuses_have_none() {
    let c = Case::get("/x").variant_c();
    for status in [201, 206, 400, 401, 402, 405, 418] {
        assert_eq!(
            uncacheable(&c.respond(status, &[("cache-control", "max-age=30")])).2,
            NoCacheReason::ZeroTtl,
            "{status}"
        );
    }
    for status in [203, 204, 300, 410, 414] {
        assert_eq!(ttl_of(&c.respond(status, &[])), 120, "{status}");
    }
}

#[test]
fn s5_core_ttl_garbage_max_age_is_zero() {
    let c = Case::get("/x");
    assert_eq!(
        uncacheable(&c.respond(200, &[("cache-control", "max-age=soon")])).2,
        NoCacheReason::ZeroTtl
    );
    // s-maxage without a value falls through to Expires/default.
    assert_eq!(
        ttl_of(&c.respond(200, &[("cache-control", "s-maxage, max-age=5")])),
        120
    );
}

// --- §5.2 / §5.3 ESI and gzip flags ----------------------------------------

fn flags(c: &Cacheability) -> (bool, bool) {
    (c.esi(), c.gzip())
}

#[test]
fn s5_2_3_esi_and_gzip_flags() {
    let c = Case::get("/x");
    assert_eq!(
        flags(&c.respond(200, &[("content-type", "text/html")])),
        (true, true)
    );
    assert_eq!(
        flags(&c.respond(200, &[("content-type", "application/json")])),
        (false, true)
    );
    assert_eq!(
        flags(&c.respond(200, &[("content-type", "application/javascript")])),
        (false, true)
    );
    assert_eq!(
        flags(&c.respond(200, &[("content-type", "text/css")])),
        (true, true)
    );
    assert_eq!(
        flags(&c.respond(200, &[("content-type", "image/png")])),
        (false, false)
    );
    assert_eq!(flags(&c.respond(200, &[])), (false, false));
    // Case-sensitive, like the VCL.
    assert_eq!(
        flags(&c.respond(200, &[("content-type", "TEXT/HTML")])),
        (false, false)
    );
    // URL ending in .js (query defeats it).
    assert_eq!(flags(&Case::get("/a.js").respond(200, &[])), (false, true));
    assert_eq!(
        flags(&Case::get("/a.js?v=1").respond(200, &[])),
        (false, false)
    );
}

#[test]
fn s5_2_esi_flag_survives_uncacheable() {
    // First visit: the page sets X-Magento-Vary and is uncacheable, but
    // its ESI includes must still be processed.
    let c = Case::get("/").respond(
        200,
        &[
            ("content-type", "text/html"),
            ("cache-control", "public, max-age=600"),
            ("set-cookie", "X-Magento-Vary=abc; path=/"),
        ],
    );
    assert!(!c.is_cacheable());
    assert!(c.esi());
    assert!(c.gzip());
}

// --- §5.4 debug copy -------------------------------------------------------

#[test]
fn s5_4_debug_cache_control_copy() {
    let mut h = headers(&[
        ("x-magento-debug", "1"),
        ("cache-control", "public"),
        ("cache-control", "max-age=5"),
    ]);
    copy_debug_cache_control(&mut h);
    assert_eq!(h[X_MAGENTO_CACHE_CONTROL], "public, max-age=5");
    let mut h = headers(&[("cache-control", "public")]);
    copy_debug_cache_control(&mut h);
    assert!(!h.contains_key(X_MAGENTO_CACHE_CONTROL));
    let mut h = headers(&[("x-magento-debug", "1")]);
    copy_debug_cache_control(&mut h);
    assert!(!h.contains_key(X_MAGENTO_CACHE_CONTROL));
}

// --- §5.5 private ----------------------------------------------------------

#[test]
fn s5_5_private_is_uncacheable_86400_and_keeps_set_cookie() {
    for c in [Case::get("/x"), Case::get("/x").variant_c()] {
        let d = c.respond(
            200,
            &[
                ("cache-control", "private, max-age=600"),
                ("set-cookie", "X-Magento-Vary=1"),
            ],
        );
        assert_eq!(uncacheable(&d), (DAY, false, NoCacheReason::Private));
    }
    // Substring, case-sensitive.
    assert_eq!(
        uncacheable(&Case::get("/x").respond(200, &[("cache-control", "max-age=5, xprivatex")])).2,
        NoCacheReason::Private
    );
    assert_eq!(
        ttl_of(&Case::get("/x").respond(200, &[("cache-control", "Private, max-age=5")])),
        5
    );
    // In a second Cache-Control line too.
    assert_eq!(
        uncacheable(&Case::get("/x").respond(
            200,
            &[("cache-control", "max-age=5"), ("cache-control", "private")]
        ))
        .2,
        NoCacheReason::Private
    );
}

// --- §5.6 Set-Cookie and X-Magento-Vary -----------------------------------

#[test]
fn s5_6_response_sets_vary_but_request_lacks_it() {
    let resp = [
        ("cache-control", "max-age=600"),
        ("set-cookie", "X-Magento-Vary=abc; Path=/; HttpOnly"),
    ];
    let d = Case::get("/").respond(200, &resp);
    assert_eq!(uncacheable(&d), (120, true, NoCacheReason::SetsVaryCookie));
    // Request with the cookie: cacheable, Set-Cookie stripped.
    let d = Case::get("/")
        .req(&[("cookie", "X-Magento-Vary=abc")])
        .respond(200, &resp);
    assert_eq!(ttl_of(&d), 600);
    assert!(d.strip_set_cookie());
}

#[test]
fn s5_6_every_set_cookie_header_is_considered() {
    let d = Case::get("/multi").respond(
        200,
        &[
            ("cache-control", "max-age=600"),
            ("set-cookie", "foo=bar; Path=/; HttpOnly"),
            ("set-cookie", "X-Magento-Vary=abc; Path=/; HttpOnly"),
        ],
    );
    assert_eq!(uncacheable(&d), (120, true, NoCacheReason::SetsVaryCookie));
}

#[test]
fn s5_6_other_set_cookie_is_stripped_and_cached() {
    let d = Case::get("/").respond(
        200,
        &[("cache-control", "max-age=600"), ("set-cookie", "foo=bar")],
    );
    assert_eq!(ttl_of(&d), 600);
    assert!(d.strip_set_cookie());
}

#[test]
fn s5_6_graphql_with_cache_id_ignores_vary_set_cookie() {
    let d = Case::get("/graphql")
        .req(&[("x-magento-cache-id", "id-1")])
        .respond(
            200,
            &[
                ("cache-control", "max-age=600"),
                ("set-cookie", "X-Magento-Vary=abc"),
                ("x-magento-cache-id", "id-1"),
            ],
        );
    assert_eq!(ttl_of(&d), 600);
    assert!(d.strip_set_cookie());
}

#[test]
fn s5_6_pass_keeps_set_cookie() {
    let mut c = Case::get("/x");
    c.method = Method::POST;
    let d = c.respond(
        200,
        &[
            ("cache-control", "max-age=600"),
            ("set-cookie", "a=1"),
            ("content-type", "text/html"),
        ],
    );
    match d {
        Cacheability::Uncacheable {
            hit_for_miss_ttl,
            strip_set_cookie,
            reason,
            esi,
            gzip,
        } => {
            assert_eq!(hit_for_miss_ttl, Duration::ZERO);
            assert!(!strip_set_cookie);
            assert_eq!(reason, NoCacheReason::Pass);
            assert!(esi && gzip);
        }
        other => panic!("{other:?}"),
    }
}

// --- §5.7 hit-for-miss -----------------------------------------------------

#[test]
fn s5_7_no_store_no_cache_vary_star_surrogate() {
    let c = Case::get("/x");
    let reason = |pairs: &[(&str, &str)]| uncacheable(&c.respond(200, pairs));
    assert_eq!(
        reason(&[("cache-control", "no-cache, max-age=60")]),
        (120, true, NoCacheReason::NoCacheNoStore)
    );
    assert_eq!(
        reason(&[("cache-control", "max-age=60, no-store")]).2,
        NoCacheReason::NoCacheNoStore
    );
    assert_eq!(
        reason(&[
            ("surrogate-control", "no-store"),
            ("cache-control", "max-age=60")
        ])
        .2,
        NoCacheReason::SurrogateNoStore
    );
    assert_eq!(
        reason(&[("vary", "*"), ("cache-control", "max-age=60")]).2,
        NoCacheReason::VaryStar
    );
    // Surrogate-Control present (without no-store) overrides CC no-cache.
    assert_eq!(
        ttl_of(&c.respond(
            200,
            &[
                ("surrogate-control", "max-age=60"),
                ("cache-control", "no-cache, max-age=60")
            ]
        )),
        60
    );
    // Vary must equal "*" exactly.
    assert_eq!(
        ttl_of(&c.respond(
            200,
            &[
                ("vary", "Accept-Encoding, *"),
                ("cache-control", "max-age=60")
            ]
        )),
        60
    );
}

// --- §5.8 GraphQL cache id -------------------------------------------------

#[test]
fn s5_8_graphql_cache_id_mismatch() {
    let c = Case::get("/graphql?q").req(&[("x-magento-cache-id", "id-1")]);
    let cc = ("cache-control", "public, max-age=600");
    assert_eq!(
        uncacheable(&c.respond(200, &[cc, ("x-magento-cache-id", "id-2")])),
        (0, true, NoCacheReason::GraphqlCacheIdMismatch)
    );
    assert_eq!(
        uncacheable(&c.respond(200, &[cc])),
        (0, true, NoCacheReason::GraphqlCacheIdMismatch)
    );
    assert_eq!(
        ttl_of(&c.respond(200, &[cc, ("x-magento-cache-id", "id-1")])),
        600
    );
    // Request without cache id: no check.
    assert_eq!(
        ttl_of(&Case::get("/graphql?q").respond(200, &[cc, ("x-magento-cache-id", "id-9")])),
        600
    );
    // After rule 7 fired, the mismatch brings the marker TTL to 0.
    assert_eq!(
        uncacheable(&c.respond(
            200,
            &[("cache-control", "no-store"), ("x-magento-cache-id", "x")]
        )),
        (0, true, NoCacheReason::NoCacheNoStore)
    );
}

// --- Tags and pools ---------------------------------------------------------

#[test]
fn tags_and_pools_are_split() {
    let d = Case::get("/x").respond(
        200,
        &[
            ("x-magento-tags", "a,b,,c"),
            ("x-magento-tags", "d"),
            ("x-pool", "blue"),
        ],
    );
    match d {
        Cacheability::Cacheable { tags, pools, .. } => {
            assert_eq!(tags, ["a", "b", "c", "d"]);
            assert_eq!(pools, ["blue"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn object_times_from_decision() {
    let d = Case::get("/x").respond(200, &[("cache-control", "max-age=60"), ("age", "10")]);
    let t = d.object_times(now()).expect("cacheable");
    assert_eq!(t.fresh_until, now() + Duration::from_secs(50));
    assert_eq!(t.origin, now() - Duration::from_secs(10));
    assert_eq!(t.grace, Duration::from_secs(3 * DAY));
    assert!(Case::get("/x")
        .respond(500, &[])
        .object_times(now())
        .is_none());
}

#[test]
fn reason_labels() {
    assert_eq!(NoCacheReason::SetsVaryCookie.as_str(), "sets_vary_cookie");
    assert_eq!(
        NoCacheReason::GraphqlCacheIdMismatch.as_str(),
        "graphql_cache_id_mismatch"
    );
    assert_eq!(Case::get("/").respond(200, &[]).as_str(), "cacheable");
    assert_eq!(Case::get("/").respond(500, &[]).as_str(), "status");
}

// --- §10 gzip header edits ---------------------------------------------------

#[test]
fn s10_gzip_stored_headers() {
    let mut h = headers(&[("content-length", "10"), ("etag", "\"abc\"")]);
    assert!(!is_encoded(&h));
    gzip_stored_headers(&mut h);
    assert_eq!(h["content-encoding"], "gzip");
    assert!(!h.contains_key("content-length"));
    assert_eq!(h["etag"], "W/\"abc\"");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert!(is_encoded(&h));

    let mut h = headers(&[("etag", "W/\"x\""), ("vary", "Cookie"), ("vary", "Origin")]);
    gzip_stored_headers(&mut h);
    assert_eq!(h["etag"], "W/\"x\"");
    assert_eq!(h["vary"], "Cookie, Origin, Accept-Encoding");
    assert_eq!(h.get_all("vary").iter().count(), 1);

    let mut h = headers(&[("vary", "accept-encoding, Cookie")]);
    gzip_stored_headers(&mut h);
    assert_eq!(h["vary"], "accept-encoding, Cookie");

    assert!(!is_encoded(&headers(&[("content-encoding", "identity")])));
    assert!(is_encoded(&headers(&[("content-encoding", "br")])));
}
