//! The logic of Magento's shipped VTC suite (`dev/tests/varnish/*.vtc`,
//! contract §13.1–13.4) and of the held-out scenarios of §13.5, replayed
//! against the pure policy.
//!
//! A tiny in-test cache stands in for the store and a scripted backend for
//! PHP: requests go through `classify` → lookup/hit decision →
//! `classify_response` → `apply_to_headers` → `deliver_headers`, exactly the
//! sequence the edge runs. The assertions are the VTCs' own: debug header,
//! body, `Set-Cookie`, what the backend received, and how often it was hit.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT_ENCODING, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};
use magestack_fpc::deliver::CacheDebug;
use magestack_fpc::grace::{GraceState, HealthWindow};
use magestack_fpc::prelude::*;

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

/// One scripted backend answer.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: &'static str,
}

fn reply(status: u16, pairs: &[(&str, &str)], body: &'static str) -> Reply {
    Reply {
        status,
        headers: headers(pairs),
        body,
    }
}

/// What the backend saw.
#[derive(Debug)]
struct BackendRequest {
    method: Method,
    url: String,
    headers: HeaderMap,
}

// A test stand-in for the store: size differences do not matter.
#[allow(clippy::large_enum_variant)]
enum Entry {
    Object {
        headers: HeaderMap,
        body: Bytes,
        times: ObjectTimes,
        tags: Vec<String>,
        hits: u64,
    },
    HitForMiss {
        until: SystemTime,
    },
}

struct Delivered {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Delivered {
    fn debug(&self) -> &str {
        self.headers
            .get("x-magento-cache-debug")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn body(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf8")
    }
}

/// The edge, reduced to the policy calls and a map.
struct Harness {
    policy: FpcPolicy,
    cache: HashMap<CacheKey, Entry>,
    script: VecDeque<Reply>,
    seen: Vec<BackendRequest>,
    now: SystemTime,
    health: HealthWindow,
}

impl Harness {
    /// The VTC harness: `grace_period` 0, SSL header `unused`, probe
    /// `.initial = 10` (healthy from the start).
    fn vtc(script: Vec<Reply>) -> Self {
        let policy = FpcPolicy {
            grace_period_secs: 0,
            ssl_offloaded_header: HeaderName::from_static("unused"),
            ..FpcPolicy::default()
        };
        Self::with_policy(policy, script)
    }

    fn with_policy(policy: FpcPolicy, script: Vec<Reply>) -> Self {
        Self {
            policy,
            cache: HashMap::new(),
            script: script.into(),
            seen: Vec::new(),
            now: UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            health: HealthWindow::new(10, 5, 10),
        }
    }

    fn backend(&mut self, method: Method, url: &str, h: HeaderMap) -> Reply {
        self.seen.push(BackendRequest {
            method,
            url: url.to_owned(),
            headers: h,
        });
        self.script
            .pop_front()
            .unwrap_or_else(|| panic!("unexpected backend request {url}"))
    }

    fn request(&mut self, method: &str, target: &str, pairs: &[(&str, &str)]) -> Delivered {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let req_headers = headers(pairs);
        let mut restarted = false;
        loop {
            let mut view = RequestView::new(&method, target, &req_headers);
            if restarted {
                view = view.restarted();
            }
            match classify(&view, &self.policy) {
                RequestDecision::Purge | RequestDecision::Pipe => panic!("not used here"),
                RequestDecision::Pass(_) => {
                    let r = self.backend(method.clone(), target, req_headers.clone());
                    let resp = ResponseView {
                        status: StatusCode::from_u16(r.status).expect("status"),
                        headers: &r.headers,
                    };
                    let d = classify_response(&view, Fetch::Pass, &resp, self.now, &self.policy);
                    let mut h = r.headers.clone();
                    d.apply_to_headers(&mut h);
                    deliver_headers(&mut h, CacheDebug::Uncacheable, target, 0);
                    return Delivered {
                        status: resp.status,
                        headers: h,
                        body: Bytes::from_static(r.body.as_bytes()),
                    };
                }
                RequestDecision::Lookup(plan) => {
                    if !plan.always_miss {
                        if let Some(out) = self.try_hit(&plan) {
                            match out {
                                HitOutcome::Delivered(d) => return d,
                                HitOutcome::Restart => {
                                    restarted = true;
                                    continue;
                                }
                                HitOutcome::Fetch => {}
                            }
                        }
                    }
                    return self.miss(&view, &plan, &req_headers);
                }
            }
        }
    }

    fn try_hit(&mut self, plan: &LookupPlan) -> Option<HitOutcome> {
        let now = self.now;
        let healthy = self.health.healthy();
        match self.cache.get_mut(&plan.key)? {
            Entry::HitForMiss { until } => {
                if now < *until {
                    Some(HitOutcome::Fetch)
                } else {
                    None
                }
            }
            Entry::Object {
                headers,
                body,
                times,
                hits,
                ..
            } => match hit_decision(times, now, healthy, &self.policy) {
                HitDecision::Miss => Some(HitOutcome::Restart),
                HitDecision::Fresh | HitDecision::StaleServe { .. } => {
                    let grace = match hit_decision(times, now, healthy, &self.policy) {
                        HitDecision::StaleServe { grace, .. } => grace,
                        _ => GraceState::None,
                    };
                    *hits += 1;
                    let mut h = headers.clone();
                    deliver_headers(
                        &mut h,
                        CacheDebug::Hit { grace },
                        &plan.url,
                        times.age_secs(now),
                    );
                    Some(HitOutcome::Delivered(Delivered {
                        status: StatusCode::OK,
                        headers: h,
                        body: body.clone(),
                    }))
                }
            },
        }
    }

    fn miss(&mut self, view: &RequestView<'_>, plan: &LookupPlan, client: &HeaderMap) -> Delivered {
        let r = self.backend(Method::GET, &plan.url, miss_fetch_headers(client));
        let status = StatusCode::from_u16(r.status).expect("status");
        let resp = ResponseView {
            status,
            headers: &r.headers,
        };
        let d = classify_response(view, Fetch::Lookup(plan), &resp, self.now, &self.policy);
        let mut h = r.headers.clone();
        d.apply_to_headers(&mut h);
        let body = Bytes::from_static(r.body.as_bytes());
        let debug = match &d {
            Cacheability::Cacheable { tags, .. } => {
                let times = d.object_times(self.now).expect("times");
                self.cache.insert(
                    plan.key,
                    Entry::Object {
                        headers: h.clone(),
                        body: body.clone(),
                        times,
                        tags: tags.clone(),
                        hits: 0,
                    },
                );
                CacheDebug::Miss
            }
            Cacheability::Uncacheable {
                hit_for_miss_ttl, ..
            } => {
                if !hit_for_miss_ttl.is_zero() {
                    self.cache.insert(
                        plan.key,
                        Entry::HitForMiss {
                            until: self.now + *hit_for_miss_ttl,
                        },
                    );
                }
                CacheDebug::Uncacheable
            }
        };
        deliver_headers(&mut h, debug, &plan.url, 0);
        Delivered {
            status,
            headers: h,
            body,
        }
    }

    fn purge(&mut self, pattern: &str) -> usize {
        let h = headers(&[("x-magento-tags-pattern", pattern)]);
        let PurgeVerdict::Purge(PurgeRequest { tags: Some(p), .. }) = purge_decision(true, &h)
        else {
            panic!("purge expected");
        };
        let before = self.cache.len();
        self.cache.retain(|_, e| match e {
            Entry::Object { tags, .. } => !p.matches_object(tags),
            Entry::HitForMiss { .. } => true,
        });
        before - self.cache.len()
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    fn backend_hits(&self) -> usize {
        self.seen.len()
    }

    fn done(&self) {
        assert!(
            self.script.is_empty(),
            "{} replies unused",
            self.script.len()
        );
    }
}

enum HitOutcome {
    Delivered(Delivered),
    Restart,
    Fetch,
}

// --- §13.1 compression.vtc -------------------------------------------------

#[test]
fn s13_1_compression_vtc() {
    let mut h = Harness::vtc(vec![
        reply(200, &[("answer-to", "POST")], ""),
        reply(200, &[("answer-to", "POST")], ""),
        reply(200, &[("answer-to", "POST")], ""),
    ]);
    h.request(
        "POST",
        "/",
        &[("accept-encoding", "something completely random")],
    );
    h.request("GET", "/", &[("accept-encoding", "will be overridden")]);
    h.request(
        "GET",
        "/foo.tgz",
        &[("accept-encoding", "will be overridden")],
    );
    let ae: Vec<&str> = h
        .seen
        .iter()
        .map(|r| r.headers[ACCEPT_ENCODING].to_str().expect("ascii"))
        .collect();
    assert_eq!(ae, ["something completely random", "gzip", "gzip"]);
    assert_eq!(h.seen[0].method, Method::POST);
    assert_eq!(h.seen[1].method, Method::GET);
}

#[test]
fn s13_1_head_is_fetched_as_get() {
    let mut h = Harness::vtc(vec![reply(200, &[], "x")]);
    h.request("HEAD", "/", &[]);
    assert_eq!(h.seen[0].method, Method::GET);
}

// --- §13.2 debug.vtc -------------------------------------------------------

#[test]
fn s13_2_debug_vtc() {
    let mut h = Harness::vtc(vec![
        reply(200, &[("answer-to", "POST")], ""),
        reply(200, &[("answer-to", "GET")], ""),
    ]);
    let r = h.request("POST", "/", &[]);
    assert_eq!(r.headers["answer-to"], "POST");
    assert_eq!(r.debug(), "UNCACHEABLE");
    let r = h.request("GET", "/", &[]);
    assert_eq!(r.headers["answer-to"], "GET");
    assert_eq!(r.debug(), "MISS");
    let r = h.request("GET", "/", &[]);
    assert_eq!(r.headers["answer-to"], "GET");
    assert_eq!(r.debug(), "HIT");
    assert_eq!(r.headers["grace"], "none");
    assert_eq!(h.backend_hits(), 2);
    h.done();
}

// --- §13.3 no-caching.vtc --------------------------------------------------

#[test]
fn s13_3_no_caching_vtc() {
    let private = [("cache-control", "private")];
    let mut h = Harness::vtc(vec![
        reply(405, &[], ""),
        reply(405, &[], ""),
        reply(200, &private, ""),
        reply(200, &private, ""),
        reply(200, &private, ""),
        reply(200, &private, ""),
        reply(200, &[], ""),
        reply(404, &[], ""),
    ]);
    fn count(h: &mut Harness, url: &str) -> usize {
        let before = h.backend_hits();
        h.request("GET", url, &[]);
        h.request("GET", url, &[]);
        h.backend_hits() - before
    }
    assert_eq!(count(&mut h, "/405uncacheable"), 2);
    assert_eq!(count(&mut h, "/200uncacheable"), 2);
    assert_eq!(count(&mut h, "/404uncacheable"), 2);
    assert_eq!(count(&mut h, "/200cacheable"), 1);
    assert_eq!(count(&mut h, "/404cacheable"), 1);
    let urls: Vec<&str> = h.seen.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "/405uncacheable",
            "/405uncacheable",
            "/200uncacheable",
            "/200uncacheable",
            "/404uncacheable",
            "/404uncacheable",
            "/200cacheable",
            "/404cacheable"
        ]
    );
    h.done();
}

#[test]
fn s13_3_no_caching_vtc_fails_with_variant_c() {
    // Documented conflict (contract §0): variant C does not cache the 404.
    let policy = FpcPolicy {
        error_statuses: ErrorStatusPolicy::NoErrors,
        ..FpcPolicy::default()
    };
    let mut h = Harness::with_policy(policy, vec![reply(404, &[], ""), reply(404, &[], "")]);
    h.request("GET", "/404cacheable", &[]);
    h.request("GET", "/404cacheable", &[]);
    assert_eq!(h.backend_hits(), 2);
}

// --- §13.4 x-magento-vary.vtc ----------------------------------------------

#[test]
fn s13_4_x_magento_vary_vtc() {
    let vary = ("set-cookie", "X-Magento-Vary=abc; Path=/; HttpOnly");
    let cc = ("cache-control", "max-age=600");
    let mut h = Harness::vtc(vec![
        reply(200, &[cc, vary], "non-graphql-1"),
        reply(200, &[cc, vary], "non-graphql-2"),
        reply(
            200,
            &[cc, vary, ("x-magento-cache-id", "id-1")],
            "graphql-1",
        ),
        reply(
            200,
            &[cc, ("set-cookie", "foo=bar; Path=/; HttpOnly"), vary],
            "multi-1",
        ),
        reply(
            200,
            &[cc, ("set-cookie", "baz=qux; Path=/; HttpOnly"), vary],
            "multi-2",
        ),
    ]);
    let check = |r: &Delivered, debug: &str, body: &str| {
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            !r.headers.contains_key(SET_COOKIE),
            "Set-Cookie must be stripped"
        );
        assert_eq!(r.debug(), debug);
        assert!(r.body().contains(body), "{} vs {body}", r.body());
    };
    check(&h.request("GET", "/", &[]), "UNCACHEABLE", "non-graphql-1");
    check(&h.request("GET", "/", &[]), "UNCACHEABLE", "non-graphql-2");
    let gql = [("x-magento-cache-id", "id-1")];
    check(&h.request("GET", "/graphql", &gql), "MISS", "graphql-1");
    check(&h.request("GET", "/graphql", &gql), "HIT", "graphql-1");
    check(&h.request("GET", "/multi", &[]), "UNCACHEABLE", "multi-1");
    check(&h.request("GET", "/multi", &[]), "UNCACHEABLE", "multi-2");
    assert_eq!(h.backend_hits(), 5);
    assert_eq!(h.seen[2].headers["x-magento-cache-id"], "id-1");
    h.done();
}

// --- §13.5 held-out scenarios ----------------------------------------------

#[test]
fn s13_5_tag_purge_evicts_only_matching_and_full_flush_keeps_untagged() {
    let mut h = Harness::vtc(vec![
        reply(200, &[("x-magento-tags", "cat_p_1,store")], "p1"),
        reply(200, &[("x-magento-tags", "cat_p_2,store")], "p2"),
        reply(200, &[], "untagged"),
        reply(200, &[("x-magento-tags", "cat_p_1,store")], "p1 again"),
    ]);
    h.request("GET", "/p1", &[]);
    h.request("GET", "/p2", &[]);
    h.request("GET", "/plain", &[]);
    assert_eq!(h.purge("((^|,)cat_p_1(,|$))"), 1);
    assert_eq!(h.request("GET", "/p2", &[]).debug(), "HIT");
    assert_eq!(h.request("GET", "/p1", &[]).body(), "p1 again");
    assert_eq!(h.purge(".*"), 2);
    assert_eq!(h.request("GET", "/plain", &[]).debug(), "HIT");
    h.done();
}

#[test]
fn s13_5_customer_checkout_static_media_are_uncacheable() {
    let cc = [("cache-control", "public, max-age=31536000")];
    let mut h = Harness::vtc(vec![
        reply(200, &cc, ""),
        reply(200, &cc, ""),
        reply(200, &cc, ""),
        reply(200, &cc, ""),
    ]);
    let r = h.request("GET", "/checkout/cart/", &[]);
    assert_eq!(r.debug(), "UNCACHEABLE");
    assert_eq!(
        r.headers["cache-control"],
        magestack_fpc::deliver::BROWSER_NO_CACHE
    );
    assert_eq!(
        h.request("GET", "/customer/account/", &[]).debug(),
        "UNCACHEABLE"
    );
    let r = h.request("GET", "/static/frontend/a.js", &[]);
    assert_eq!(r.debug(), "UNCACHEABLE");
    assert_eq!(r.headers["cache-control"], "public, max-age=31536000");
    let r = h.request("GET", "/media/a.jpg", &[]);
    assert_eq!(r.headers["cache-control"], "public, max-age=31536000");
    h.done();
}

#[test]
fn s13_5_marketing_params_and_query_order_share_entries() {
    let mut h = Harness::vtc(vec![reply(200, &[], "a"), reply(200, &[], "b")]);
    assert_eq!(h.request("GET", "/p?utm_source=b", &[]).debug(), "MISS");
    assert_eq!(h.request("GET", "/p?utm_source=a", &[]).debug(), "HIT");
    assert_eq!(h.seen[0].url, "/p");
    assert_eq!(h.request("GET", "/q?a=2&b=1", &[]).debug(), "MISS");
    assert_eq!(h.request("GET", "/q?b=1&a=2", &[]).debug(), "HIT");
    h.done();
}

#[test]
fn s13_5_vary_cookie_and_ssl_header_partition() {
    let policy = FpcPolicy {
        grace_period_secs: 0,
        ..FpcPolicy::default()
    };
    let mut h = Harness::with_policy(
        policy,
        vec![
            reply(200, &[], "anon"),
            reply(200, &[], "group-a"),
            reply(200, &[], "https"),
        ],
    );
    h.request("GET", "/", &[]);
    assert_eq!(
        h.request("GET", "/", &[("cookie", "X-Magento-Vary=a")])
            .body(),
        "group-a"
    );
    assert_eq!(
        h.request("GET", "/", &[("x-forwarded-proto", "https")])
            .body(),
        "https"
    );
    assert_eq!(
        h.request(
            "GET",
            "/",
            &[("cookie", "a=1"), ("cookie", "X-Magento-Vary=a")]
        )
        .body(),
        "group-a"
    );
    assert_eq!(h.request("GET", "/", &[]).body(), "anon");
    h.done();
}

#[test]
fn s13_5_graphql_rules() {
    let cc = ("cache-control", "public, max-age=600");
    let mut h = Harness::vtc(vec![
        reply(200, &[cc], "bearer"),
        reply(200, &[cc, ("x-magento-cache-id", "other")], "mismatch-1"),
        reply(200, &[cc, ("x-magento-cache-id", "other")], "mismatch-2"),
        reply(200, &[cc], "store-de"),
        reply(200, &[cc], "store-fr"),
    ]);
    let r = h.request("GET", "/graphql?q", &[("authorization", "Bearer t")]);
    assert_eq!(r.debug(), "UNCACHEABLE");
    let id = [("x-magento-cache-id", "mine")];
    assert_eq!(h.request("GET", "/graphql?q", &id).debug(), "UNCACHEABLE");
    // Mismatch leaves no marker and no object: fetched again.
    assert_eq!(h.request("GET", "/graphql?q", &id).body(), "mismatch-2");
    assert_eq!(
        h.request("GET", "/graphql?s", &[("store", "de")]).body(),
        "store-de"
    );
    assert_eq!(
        h.request("GET", "/graphql?s", &[("store", "fr")]).body(),
        "store-fr"
    );
    assert_eq!(
        h.request("GET", "/graphql?s", &[("store", "de")]).debug(),
        "HIT"
    );
    h.done();
}

#[test]
fn s13_5_headers_removed_and_debug_mode_age() {
    let mut h = Harness::vtc(vec![
        reply(
            200,
            &[
                ("x-magento-tags", "a"),
                ("server", "nginx"),
                ("x-powered-by", "PHP"),
                ("via", "x"),
                ("x-varnish", "1"),
                ("link", "<a>"),
                ("age", "3"),
            ],
            "",
        ),
        reply(
            200,
            &[
                ("x-magento-debug", "1"),
                ("cache-control", "public, max-age=100"),
            ],
            "",
        ),
    ]);
    let r = h.request("GET", "/a", &[]);
    for gone in [
        "x-magento-tags",
        "server",
        "x-powered-by",
        "via",
        "x-varnish",
        "link",
        "age",
    ] {
        assert!(!r.headers.contains_key(gone), "{gone}");
    }
    assert_eq!(r.headers["pragma"], "no-cache");
    assert_eq!(r.headers["expires"], "-1");
    h.request("GET", "/dbg", &[]);
    h.advance(7);
    let r = h.request("GET", "/dbg", &[]);
    assert_eq!(r.headers["age"], "7");
    assert_eq!(r.headers["x-magento-cache-control"], "public, max-age=100");
    assert!(!r.headers.contains_key("x-magento-debug"));
    h.done();
}

#[test]
fn s13_5_grace_healthy_and_sick() {
    let cc = [("cache-control", "max-age=10")];
    let mut h = Harness::with_policy(
        FpcPolicy::default(),
        vec![reply(200, &cc, "v1"), reply(200, &cc, "v2")],
    );
    h.request("GET", "/g", &[]);
    h.advance(20); // 10 s stale, within the 300 s grace period
    let r = h.request("GET", "/g", &[]);
    assert_eq!(r.debug(), "HIT");
    assert_eq!(r.headers["grace"], "normal (healthy server)");
    // Backend goes sick: stale served unlimited.
    for _ in 0..10 {
        h.health.record(false);
    }
    h.advance(1_000);
    let r = h.request("GET", "/g", &[]);
    assert_eq!(r.headers["grace"], "unlimited (unhealthy server)");
    assert_eq!(r.body(), "v1");
    // Healthy again and past grace_period: restart → synchronous miss.
    for _ in 0..10 {
        h.health.record(true);
    }
    let r = h.request("GET", "/g", &[]);
    assert_eq!(r.debug(), "MISS");
    assert_eq!(r.body(), "v2");
    h.done();
}

#[test]
fn s13_5_grace_zero_restarts_as_miss() {
    let mut h = Harness::vtc(vec![
        reply(200, &[("cache-control", "max-age=10")], "v1"),
        reply(200, &[("cache-control", "max-age=10")], "v2"),
    ]);
    h.request("GET", "/g", &[]);
    h.advance(11);
    let r = h.request("GET", "/g", &[]);
    assert_eq!(r.debug(), "MISS");
    assert_eq!(r.body(), "v2");
    h.done();
}

#[test]
fn s13_5_esi_include_assembled_and_cached_separately() {
    let page = "<html><esi:include src=\"http://shop/page_cache/block/esi/blocks/x/\" /></html>";
    let mut h = Harness::vtc(vec![
        reply(
            200,
            &[
                ("content-type", "text/html"),
                ("cache-control", "max-age=600"),
            ],
            page,
        ),
        reply(
            200,
            &[
                ("content-type", "text/html"),
                ("cache-control", "max-age=60"),
            ],
            "<b>block</b>",
        ),
    ]);
    let parent_headers = [("host", "shop"), ("cookie", "X-Magento-Vary=v")];
    let r = h.request("GET", "/page", &parent_headers);
    let body = r.body.clone();
    let segs = parse_esi(&body, &EsiLimits::default())
        .expect("ok")
        .expect("has esi");
    let mut out = Vec::new();
    for seg in segs {
        match seg {
            EsiSegment::Literal(b) => out.extend_from_slice(&b),
            EsiSegment::Include(inc) => {
                let target = resolve_include(&inc.src, "/page").expect("http include");
                let mut sub = subrequest_headers(&headers(&parent_headers), false);
                target.apply_host(&mut sub);
                let pairs: Vec<(String, String)> = sub
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_owned()))
                    .collect();
                let pairs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let frag = h.request("GET", &target.url, &pairs);
                assert_eq!(frag.debug(), "MISS");
                out.extend_from_slice(&frag.body);
            }
        }
    }
    assert_eq!(
        std::str::from_utf8(&out).expect("utf8"),
        "<html><b>block</b></html>"
    );
    assert_eq!(h.seen[1].url, "/page_cache/block/esi/blocks/x/");
    assert_eq!(h.seen[1].headers["cookie"], "X-Magento-Vary=v");
    // Both cached: second page view hits both.
    assert_eq!(h.request("GET", "/page", &parent_headers).debug(), "HIT");
    h.done();
}
