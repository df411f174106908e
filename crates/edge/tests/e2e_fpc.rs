//! The full-page cache end to end against a scripted origin: Magento's four
//! shipped varnishtest scenarios (`dev/tests/varnish/*.vtc`, contract §13)
//! ported to sockets, the list of §13.5, and Magento's exact PURGE bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use magestack_edge::{CacheSettings, UpstreamTarget};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Handler = Arc<dyn Fn(&Request<Incoming>, u32) -> Response<Full<Bytes>> + Send + Sync>;

/// A backend that answers by script and counts what it received.
#[derive(Clone)]
struct Origin {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u32>>>,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

impl Origin {
    async fn start(handler: Handler) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
        let (h2, s2) = (hits.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, hits, seen) = (handler.clone(), h2.clone(), s2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let n = {
                            let mut m = hits.lock().unwrap();
                            let e = m.entry(req.uri().path().to_string()).or_insert(0);
                            *e += 1;
                            *e
                        };
                        seen.lock().unwrap().push((path, req.headers().clone()));
                        let handler = handler.clone();
                        // Scripts may sleep like a slow PHP page: keep them off the runtime's threads.
                        let resp = tokio::task::spawn_blocking(move || handler(&req, n));
                        async move { Ok::<_, Infallible>(resp.await.unwrap()) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin { addr, hits, seen }
    }

    fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn last_headers(&self, path: &str) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .unwrap()
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

async fn edge_for(origin: &Origin, tweak: impl FnOnce(&mut CacheSettings)) -> Running {
    let mut s = settings(UpstreamTarget::Http(origin.addr.to_string()), None);
    let mut c = CacheSettings::magento_defaults();
    c.health_check.interval = Duration::from_secs(3600);
    tweak(&mut c);
    s.cache = Some(c);
    s.gzip = false;
    start(s, limits()).await
}

fn debug(r: &Resp) -> String {
    r.header("x-magento-cache-debug").unwrap_or_default()
}

/// compression.vtc: the backend sees the client's Accept-Encoding on pass and `gzip` on a miss.
#[tokio::test]
async fn vtc_compression() {
    let origin = Origin::start(Arc::new(|_r, _n| reply(200, &[], "ok"))).await;
    let edge = edge_for(&origin, |_| {}).await;
    let req = Request::post("/")
        .header("host", "shop.test")
        .header("accept-encoding", "something completely random")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request(edge.addr, req).await;
    assert_eq!(
        origin.last_headers("/")["accept-encoding"],
        "something completely random"
    );
    get_with(edge.addr, "/", &[("accept-encoding", "will be overridden")]).await;
    assert_eq!(origin.last_headers("/")["accept-encoding"], "gzip");
    get_with(
        edge.addr,
        "/foo.tgz",
        &[("accept-encoding", "will be overridden")],
    )
    .await;
    assert_eq!(origin.last_headers("/foo.tgz")["accept-encoding"], "gzip");
    edge.shutdown().await;
}

/// debug.vtc: POST is UNCACHEABLE, then GET MISS, then GET HIT without a backend request.
#[tokio::test]
async fn vtc_debug() {
    let origin = Origin::start(Arc::new(|r, _n| {
        reply(200, &[("answer-to", r.method().as_str())], "x")
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let post = request(
        edge.addr,
        Request::post("/")
            .header("host", "shop.test")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(post.header("answer-to").as_deref(), Some("POST"));
    assert_eq!(debug(&post), "UNCACHEABLE");
    let first = get(edge.addr, "/").await;
    assert_eq!(first.header("answer-to").as_deref(), Some("GET"));
    assert_eq!(debug(&first), "MISS");
    let second = get(edge.addr, "/").await;
    assert_eq!(second.header("answer-to").as_deref(), Some("GET"));
    assert_eq!(debug(&second), "HIT");
    assert_eq!(
        origin.hits("/"),
        2,
        "one POST and one GET reached the backend"
    );
    edge.shutdown().await;
}

/// no-caching.vtc: how many times each URL reaches the backend.
#[tokio::test]
async fn vtc_no_caching() {
    let origin = Origin::start(Arc::new(|r, _n| match r.uri().path() {
        "/405uncacheable" => reply(405, &[], ""),
        "/200uncacheable" | "/404uncacheable" => reply(200, &[("cache-control", "private")], ""),
        "/404cacheable" => reply(404, &[], ""),
        _ => reply(200, &[], ""),
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    for path in [
        "/405uncacheable",
        "/200uncacheable",
        "/404uncacheable",
        "/200cacheable",
        "/404cacheable",
    ] {
        get(edge.addr, path).await;
        get(edge.addr, path).await;
    }
    assert_eq!(origin.hits("/405uncacheable"), 2);
    assert_eq!(origin.hits("/200uncacheable"), 2);
    assert_eq!(origin.hits("/404uncacheable"), 2);
    assert_eq!(origin.hits("/200cacheable"), 1);
    assert_eq!(origin.hits("/404cacheable"), 1);
    edge.shutdown().await;
}

/// x-magento-vary.vtc: Set-Cookie stripped; a response that sets X-Magento-Vary to a
/// request without it is not cached; GraphQL with a matching cache id is.
#[tokio::test]
async fn vtc_x_magento_vary() {
    let origin = Origin::start(Arc::new(|r, n| {
        let vary = ("set-cookie", "X-Magento-Vary=abc; Path=/; HttpOnly");
        match r.uri().path() {
            "/" => reply(
                200,
                &[("cache-control", "max-age=600"), vary],
                &format!("non-graphql-{n}"),
            ),
            "/graphql" => reply(
                200,
                &[
                    ("cache-control", "max-age=600"),
                    vary,
                    ("x-magento-cache-id", "id-1"),
                ],
                &format!("graphql-{n}"),
            ),
            "/multi" => {
                let other = if n == 1 {
                    "foo=bar; Path=/; HttpOnly"
                } else {
                    "baz=qux; Path=/; HttpOnly"
                };
                reply(
                    200,
                    &[
                        ("cache-control", "max-age=600"),
                        ("set-cookie", other),
                        vary,
                    ],
                    &format!("multi-{n}"),
                )
            }
            _ => reply(404, &[], ""),
        }
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let expect = |r: &Resp, dbg: &str, body: &str| {
        assert_eq!(r.status, 200);
        assert!(
            r.header("set-cookie").is_none(),
            "Set-Cookie must be stripped"
        );
        assert_eq!(debug(r), dbg, "{}", r.text());
        assert!(r.text().contains(body), "{} !~ {body}", r.text());
    };
    expect(&get(edge.addr, "/").await, "UNCACHEABLE", "non-graphql-1");
    expect(&get(edge.addr, "/").await, "UNCACHEABLE", "non-graphql-2");
    expect(
        &get_with(edge.addr, "/graphql", &[("x-magento-cache-id", "id-1")]).await,
        "MISS",
        "graphql-1",
    );
    expect(
        &get_with(edge.addr, "/graphql", &[("x-magento-cache-id", "id-1")]).await,
        "HIT",
        "graphql-1",
    );
    expect(&get(edge.addr, "/multi").await, "UNCACHEABLE", "multi-1");
    expect(&get(edge.addr, "/multi").await, "UNCACHEABLE", "multi-2");
    edge.shutdown().await;
}

fn tagged_origin() -> Handler {
    Arc::new(|r, n| match r.uri().path() {
        "/p1" => reply(
            200,
            &[
                ("x-magento-tags", "cat_p_1,cat_c_3"),
                ("cache-control", "public, max-age=86400, s-maxage=86400"),
            ],
            &format!("p1-{n}"),
        ),
        "/p2" => reply(
            200,
            &[
                ("x-magento-tags", "cat_p_2,cat_c_3"),
                ("cache-control", "public, max-age=86400, s-maxage=86400"),
            ],
            &format!("p2-{n}"),
        ),
        "/untagged" => reply(
            200,
            &[("cache-control", "public, max-age=86400")],
            &format!("u-{n}"),
        ),
        _ => reply(
            200,
            &[
                ("x-magento-tags", "cms_p_1"),
                ("x-powered-by", "PHP"),
                ("server", "Apache"),
                ("link", "<x>"),
                ("via", "1.1 x"),
            ],
            &format!("{}-{n}", r.uri()),
        ),
    })
}

/// Magento's PURGE exactly as `PurgeCache::sendPurgeRequest` writes it, raw.
async fn raw_purge(addr: SocketAddr, pattern: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req =
        format!("PURGE / HTTP/1.1\r\nX-Magento-Tags-Pattern: {pattern}\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // Magento reads until EOF: the edge must close after answering.
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("edge did not close after PURGE")
        .unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn purge_by_tag_evicts_only_matching_objects() {
    let origin = Origin::start(tagged_origin()).await;
    let edge = edge_for(&origin, |_| {}).await;
    for p in ["/p1", "/p2", "/untagged"] {
        get(edge.addr, p).await;
        assert_eq!(debug(&get(edge.addr, p).await), "HIT");
    }
    let (answer, _) = raw_purge(edge.addr, "((^|,)cat_p_1(,|$))").await;
    assert!(answer.starts_with("HTTP/1.1 200 Purged\r\n"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("content-length:"),
        "{answer}"
    );
    assert_eq!(debug(&get(edge.addr, "/p1").await), "MISS");
    assert_eq!(debug(&get(edge.addr, "/p2").await), "HIT");
    // Category tag hits both products.
    raw_purge(edge.addr, "((^|,)cat_c_3(,|$))").await;
    assert_eq!(debug(&get(edge.addr, "/p1").await), "MISS");
    assert_eq!(debug(&get(edge.addr, "/p2").await), "MISS");
    // Full flush: tagged objects go, untagged stay (Varnish semantics).
    raw_purge(edge.addr, ".*").await;
    assert_eq!(debug(&get(edge.addr, "/p1").await), "MISS");
    assert_eq!(debug(&get(edge.addr, "/untagged").await), "HIT");
    edge.shutdown().await;
}

#[tokio::test]
async fn magento_purge_bytes_with_7600_byte_pattern_answer_fast() {
    let origin = Origin::start(tagged_origin()).await;
    let edge = edge_for(&origin, |_| {}).await;
    get(edge.addr, "/p1").await;
    let mut tags: Vec<String> = (0..400)
        .map(|i| format!("((^|,)cat_p_{}(,|$))", 1000 + i))
        .collect();
    tags.push("((^|,)cat_p_1(,|$))".into());
    let mut pattern = tags.join("|");
    while pattern.len() < 7600 {
        pattern.push_str("|((^|,)cat_p_9(,|$))");
    }
    assert!(pattern.len() >= 7600);
    let (answer, took) = raw_purge(edge.addr, &pattern).await;
    assert!(answer.starts_with("HTTP/1.1 200 Purged\r\n"), "{answer}");
    assert!(took < Duration::from_millis(100), "purge took {took:?}");
    assert_eq!(debug(&get(edge.addr, "/p1").await), "MISS");
    edge.shutdown().await;
}

#[tokio::test]
async fn purge_acl_and_missing_headers() {
    let origin = Origin::start(tagged_origin()).await;
    let edge = edge_for(&origin, |c| {
        c.purge_acl = vec!["10.9.9.9/32".parse().unwrap()]
    })
    .await;
    let (answer, _) = raw_purge(edge.addr, ".*").await;
    assert!(
        answer.starts_with("HTTP/1.1 405 Method not allowed\r\n"),
        "{answer}"
    );
    edge.shutdown().await;
    let edge = edge_for(&origin, |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"PURGE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 400 X-Magento-Tags-Pattern or X-Pool header required\r\n"),
        "{out}"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn contract_13_5_scenarios() {
    let origin = Origin::start(tagged_origin()).await;
    let edge = edge_for(&origin, |_| {}).await;
    let a = edge.addr;
    // /checkout and /customer anywhere in the URL → pass
    assert_eq!(debug(&get(a, "/x/checkout/y").await), "UNCACHEABLE");
    assert_eq!(debug(&get(a, "/y?next=/customer").await), "UNCACHEABLE");
    // static/media → pass, Cache-Control untouched
    let r = get(a, "/static/x.css").await;
    assert_eq!(debug(&r), "UNCACHEABLE");
    assert_ne!(
        r.header("cache-control").as_deref(),
        Some("no-store, no-cache, must-revalidate, max-age=0")
    );
    // marketing parameters share an entry; query order does not matter
    get(a, "/m?utm_source=a").await;
    assert_eq!(debug(&get(a, "/m?utm_source=b").await), "HIT");
    get(a, "/q?a=2&b=1").await;
    assert_eq!(debug(&get(a, "/q?b=1&a=2").await), "HIT");
    // the X-Magento-Vary cookie partitions the cache
    get_with(a, "/v", &[("cookie", "X-Magento-Vary=one")]).await;
    assert_eq!(
        debug(&get_with(a, "/v", &[("cookie", "X-Magento-Vary=one")]).await),
        "HIT"
    );
    assert_eq!(
        debug(&get_with(a, "/v", &[("cookie", "X-Magento-Vary=two")]).await),
        "MISS"
    );
    // …also when HTTP/2-style split Cookie headers carry it
    assert_eq!(
        debug(
            &get_with(
                a,
                "/v",
                &[("cookie", "a=1"), ("cookie", "X-Magento-Vary=one")]
            )
            .await
        ),
        "HIT"
    );
    // the SSL offload header partitions the cache
    get_with(a, "/s", &[("x-forwarded-proto", "https")]).await;
    assert_eq!(debug(&get(a, "/s").await), "MISS");
    // GraphQL: Bearer without cache id → pass; Store and Content-Currency partition
    assert_eq!(
        debug(&get_with(a, "/graphql?q=1", &[("authorization", "Bearer x")]).await),
        "UNCACHEABLE"
    );
    // header hygiene
    let r = get(a, "/hyg").await;
    let r2 = get(a, "/hyg").await;
    for h in [
        "x-magento-tags",
        "server",
        "x-powered-by",
        "via",
        "link",
        "age",
        "x-varnish",
    ] {
        assert!(r2.header(h).is_none(), "{h} must be removed");
    }
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("no-store, no-cache, must-revalidate, max-age=0")
    );
    assert_eq!(r.header("pragma").as_deref(), Some("no-cache"));
    assert_eq!(r.header("expires").as_deref(), Some("-1"));
    assert_eq!(r2.header("grace").as_deref(), Some("none"));
    edge.shutdown().await;
}

#[tokio::test]
async fn coalescing_one_backend_fetch_for_concurrent_misses() {
    let origin = Origin::start(Arc::new(|_r, n| {
        std::thread::sleep(Duration::from_millis(300));
        reply(200, &[("x-magento-tags", "cat_p_1")], &format!("slow-{n}"))
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let addr = edge.addr;
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(async move { get(addr, "/slow").await }))
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.text(), "slow-1");
    }
    assert_eq!(origin.hits("/slow"), 1);
    edge.shutdown().await;
}

#[tokio::test]
async fn failed_fetch_releases_waiters_and_is_not_cached() {
    let origin = Origin::start(Arc::new(|_r, n| {
        std::thread::sleep(Duration::from_millis(200));
        if n == 1 {
            reply(500, &[], "boom")
        } else {
            reply(200, &[], &format!("ok-{n}"))
        }
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let addr = edge.addr;
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(async move { get(addr, "/flaky").await }))
        .collect();
    let started = Instant::now();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.status == 500 || r.status == 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "waiters hung");
    edge.shutdown().await;
}

#[tokio::test]
async fn conditional_request_on_a_hit_is_304() {
    let origin = Origin::start(Arc::new(|_r, _n| {
        reply(
            200,
            &[("etag", "\"v1\""), ("content-type", "text/plain")],
            "body",
        )
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    get(edge.addr, "/c").await;
    let r = get_with(edge.addr, "/c", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    edge.shutdown().await;
}

#[tokio::test]
async fn gzip_stored_once_served_gzip_or_plain() {
    let page = "<html>".to_string() + &"Magento page ".repeat(500) + "</html>";
    let p2 = page.clone();
    let origin = Origin::start(Arc::new(move |_r, _n| {
        reply(200, &[("content-type", "text/html; charset=UTF-8")], &p2)
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let gz = get_with(edge.addr, "/g", &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!(gz.header("content-encoding").as_deref(), Some("gzip"));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut out)
        .unwrap();
    assert_eq!(out, page);
    let plain = get(edge.addr, "/g").await;
    assert!(plain.header("content-encoding").is_none());
    assert_eq!(plain.text(), page);
    edge.shutdown().await;
}

#[tokio::test]
async fn esi_includes_are_assembled_with_their_own_ttl() {
    let origin = Origin::start(Arc::new(|r, n| match r.uri().path() {
        "/page" => reply(
            200,
            &[("content-type", "text/html"), ("x-magento-tags", "cms_p_1")],
            &format!("<html>page-{n} <esi:include src=\"/esi/menu\" /> end</html>"),
        ),
        "/esi/menu" => reply(
            200,
            &[
                ("content-type", "text/html"),
                ("cache-control", "public, max-age=1, s-maxage=1"),
                ("x-magento-tags", "cms_b_menu"),
            ],
            &format!("menu-{n}"),
        ),
        _ => reply(404, &[], ""),
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let r = get(edge.addr, "/page").await;
    assert_eq!(r.text(), "<html>page-1 menu-1 end</html>");
    let r = get(edge.addr, "/page").await;
    assert_eq!(r.text(), "<html>page-1 menu-1 end</html>");
    assert_eq!(origin.hits("/esi/menu"), 1);
    edge.shutdown().await;
}

#[tokio::test]
async fn grace_serves_stale_while_refreshing() {
    let origin = Origin::start(Arc::new(|_r, n| {
        reply(
            200,
            &[("cache-control", "public, s-maxage=1")],
            &format!("v{n}"),
        )
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    assert_eq!(get(edge.addr, "/gr").await.text(), "v1");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = get(edge.addr, "/gr").await;
    assert_eq!(stale.text(), "v1", "stale object served within grace");
    assert_eq!(
        stale.header("grace").as_deref(),
        Some("normal (healthy server)")
    );
    // The background refresh stores the new object.
    wait_until("the background refresh", Duration::from_secs(5), || async {
        get(edge.addr, "/gr").await.text() == "v2"
    })
    .await;
    assert_eq!(origin.hits("/gr"), 2, "one refresh, not one per request");
    edge.shutdown().await;
}

#[tokio::test]
async fn brotli_for_clients_that_accept_it() {
    let page = "<html>".to_string() + &"Magento brotli page ".repeat(300) + "</html>";
    let p2 = page.clone();
    let origin = Origin::start(Arc::new(move |_r, _n| {
        reply(200, &[("content-type", "text/html; charset=UTF-8")], &p2)
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    get_with(edge.addr, "/b", &[("accept-encoding", "gzip")]).await;
    let br = get_with(edge.addr, "/b", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(br.header("content-encoding").as_deref(), Some("br"));
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(&br.body[..], 4096), &mut out)
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), page);
    let gz = get_with(edge.addr, "/b", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(origin.hits("/b"), 1);
    edge.shutdown().await;
}

#[tokio::test]
async fn soft_purge_serves_stale_while_refreshing() {
    let origin = Origin::start(Arc::new(|_r, n| {
        reply(
            200,
            &[
                ("x-magento-tags", "cat_p_7"),
                ("cache-control", "public, s-maxage=3600"),
            ],
            &format!("v{n}"),
        )
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    assert_eq!(get(edge.addr, "/soft").await.text(), "v1");
    let mut s = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"PURGE / HTTP/1.1\r\nX-Magento-Tags-Pattern: ((^|,)cat_p_7(,|$))\r\nX-Magestack-Purge: soft\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let stale = get(edge.addr, "/soft").await;
    assert_eq!(stale.text(), "v1", "soft purge keeps serving within grace");
    assert_eq!(
        stale.header("grace").as_deref(),
        Some("normal (healthy server)")
    );
    wait_until(
        "the refresh after a soft purge",
        Duration::from_secs(5),
        || async { get(edge.addr, "/soft").await.text() == "v2" },
    )
    .await;
    edge.shutdown().await;
}

#[tokio::test]
async fn unlimited_grace_while_the_backend_is_sick() {
    let sick = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = sick.clone();
    let origin = Origin::start(Arc::new(move |r, n| {
        let down = flag.load(std::sync::atomic::Ordering::Relaxed);
        match (r.uri().path(), down) {
            ("/health_check.php", true) => reply(500, &[], ""),
            ("/health_check.php", false) => reply(200, &[], ""),
            (_, true) => reply(503, &[], "down"),
            (_, false) => reply(
                200,
                &[("cache-control", "public, s-maxage=1")],
                &format!("v{n}"),
            ),
        }
    }))
    .await;
    let edge = edge_for(&origin, |c| {
        c.health_check.interval = Duration::from_millis(50);
        c.policy.grace_period_secs = 0;
    })
    .await;
    assert_eq!(get(edge.addr, "/sick").await.text(), "v1");
    sick.store(true, std::sync::atomic::Ordering::Relaxed);
    // Past the TTL (1 s; the store reads the wall clock), and the probe
    // has seen the backend sick.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    wait_until(
        "the probe to mark the backend sick",
        Duration::from_secs(5),
        || async {
            get(edge.addr, "/sick").await.header("grace").as_deref()
                == Some("unlimited (unhealthy server)")
        },
    )
    .await;
    let r = get(edge.addr, "/sick").await;
    assert_eq!(
        r.text(),
        "v1",
        "stale content instead of the backend's error"
    );
    assert_eq!(
        r.header("grace").as_deref(),
        Some("unlimited (unhealthy server)")
    );
    edge.shutdown().await;
}

/// Regression: a hit-for-miss marker stored under the response's variance was
/// never found again, so every request for an uncacheable page queued behind
/// the previous one (coalescing) instead of going straight to the backend.
#[tokio::test]
async fn uncacheable_pages_are_fetched_concurrently_not_queued() {
    let origin = Origin::start(Arc::new(|_r, n| {
        std::thread::sleep(Duration::from_millis(200));
        reply(
            200,
            &[
                ("cache-control", "no-store, no-cache"),
                ("vary", "Accept-Encoding"),
            ],
            &format!("n{n}"),
        )
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    get(edge.addr, "/nc").await; // leaves the marker
    let addr = edge.addr;
    let started = Instant::now();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(async move { get_with(addr, "/nc", &[("accept-encoding", "gzip")]).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(debug(&t.await.unwrap()), "UNCACHEABLE");
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "requests were serialised: {:?}",
        started.elapsed()
    );
    edge.shutdown().await;
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

/// Varnish with `http_gzip_support` stores one gzip copy and gunzips it for
/// clients that do not take gzip: one origin fetch for both kinds of client,
/// in either order (Magento sends `Vary: Accept-Encoding`).
#[tokio::test]
async fn one_stored_copy_serves_gzip_and_plain_clients() {
    let page = "<html>".to_string() + &"Magento page ".repeat(500) + "</html>";
    let p2 = page.clone();
    let origin = Origin::start(Arc::new(move |_r, _n| {
        reply(
            200,
            &[
                ("content-type", "text/html; charset=UTF-8"),
                ("cache-control", "public, max-age=86400"),
                ("vary", "Accept-Encoding"),
            ],
            &p2,
        )
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let gz = get_with(edge.addr, "/a", &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!(gz.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(gunzip(&gz.body), page);
    let plain = get(edge.addr, "/a").await;
    assert_eq!(debug(&plain), "HIT");
    assert!(plain.header("content-encoding").is_none());
    assert_eq!(plain.text(), page);
    assert_eq!(origin.hits("/a"), 1);
    // The other order.
    let plain = get(edge.addr, "/b").await;
    assert_eq!(plain.text(), page);
    let gz = get_with(edge.addr, "/b", &[("accept-encoding", "gzip")]).await;
    assert_eq!(debug(&gz), "HIT");
    assert_eq!(gunzip(&gz.body), page);
    assert_eq!(origin.hits("/b"), 1);
    edge.shutdown().await;
}

/// A page the origin already gzips is stored as it came and is a hit for the
/// next gzip client (and gunzipped for a plain one).
#[tokio::test]
async fn an_origin_gzipped_page_is_served_from_the_cache() {
    let page = "<html>".to_string() + &"Gzipped by PHP ".repeat(400) + "</html>";
    let body = gzip(&page);
    let origin = Origin::start(Arc::new(move |_r, _n| {
        let mut r = Response::new(Full::new(Bytes::from(body.clone())));
        for (k, v) in [
            ("content-type", "text/html; charset=UTF-8"),
            ("content-encoding", "gzip"),
            ("cache-control", "public, max-age=86400"),
            ("vary", "Accept-Encoding"),
        ] {
            r.headers_mut().insert(k, v.parse().unwrap());
        }
        r
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    let first = get_with(edge.addr, "/z", &[("accept-encoding", "gzip")]).await;
    assert_eq!(first.status, 200);
    assert_eq!(gunzip(&first.body), page);
    let second = get_with(edge.addr, "/z", &[("accept-encoding", "gzip")]).await;
    assert_eq!(debug(&second), "HIT");
    assert_eq!(second.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(gunzip(&second.body), page);
    let plain = get(edge.addr, "/z").await;
    assert_eq!(debug(&plain), "HIT");
    assert_eq!(plain.text(), page);
    assert_eq!(origin.hits("/z"), 1);
    edge.shutdown().await;
}

/// After a hit-for-miss marker, the first cacheable answer replaces it: the
/// request right after is a hit, every time (Varnish's behaviour).
#[tokio::test]
async fn a_cacheable_answer_replaces_a_hit_for_miss_marker() {
    let origin = Origin::start(Arc::new(|_r, n| {
        if n == 1 {
            reply(
                200,
                &[("content-type", "text/html"), ("cache-control", "private")],
                "private",
            )
        } else {
            reply(
                200,
                &[
                    ("content-type", "text/html"),
                    ("cache-control", "public, max-age=86400"),
                    ("vary", "Accept-Encoding"),
                ],
                "public",
            )
        }
    }))
    .await;
    let edge = edge_for(&origin, |_| {}).await;
    for round in 0..12 {
        let path = format!("/hfm{round}");
        let enc: &[(&str, &str)] = if round % 2 == 0 {
            &[("accept-encoding", "gzip")]
        } else {
            &[]
        };
        let a = get_with(edge.addr, &path, enc).await;
        assert_eq!(a.text(), "private", "round {round}");
        let b = get_with(edge.addr, &path, enc).await;
        assert_eq!(debug(&b), "MISS", "round {round}");
        let c = get_with(edge.addr, &path, enc).await;
        assert_eq!(
            debug(&c),
            "HIT",
            "round {round}: the marker was not replaced"
        );
        assert_eq!(origin.hits(&path), 2, "round {round}");
    }
    edge.shutdown().await;
}

/// A trusted proxy's `X-Forwarded-For` reaches an HTTP upstream with the
/// peer appended (nginx's `$proxy_add_x_forwarded_for`), and several
/// `Cookie` headers as one, joined with `; ` (issue 13, item 8).
#[tokio::test]
async fn forwarded_for_and_cookies_reach_an_http_upstream_whole() {
    let origin = Origin::start(Arc::new(|_r, _n| {
        reply(
            200,
            &[
                ("content-type", "text/plain"),
                ("cache-control", "no-store"),
            ],
            "ok",
        )
    }))
    .await;
    // The test settings trust 127.0.0.0/8: this client is a trusted proxy.
    let edge = edge_for(&origin, |_| {}).await;
    let r = get_with(
        edge.addr,
        "/xff",
        &[
            ("x-forwarded-for", "203.0.113.7, 198.51.100.2"),
            ("cookie", "PHPSESSID=abc"),
            ("cookie", "form_key=xyz"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = origin.last_headers("/xff");
    let xff: Vec<_> = seen.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, ["203.0.113.7, 198.51.100.2, 127.0.0.1"]);
    let cookies: Vec<_> = seen.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["PHPSESSID=abc; form_key=xyz"]);
    edge.shutdown().await;
}
