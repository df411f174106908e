//! End-to-end HTTP behaviour of the edge that needs no PHP: limits and their
//! statuses, malformed input, h2c, and the HTTP upstream (built-in demo storefront).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use magestack_edge::UpstreamTarget;
use support::*;

async fn demo_edge() -> Running {
    let app = magestack_edge::demo::spawn_storefront().await.unwrap();
    start(
        settings(UpstreamTarget::Http(app.to_string()), None),
        limits(),
    )
    .await
}

#[tokio::test]
async fn proxies_to_http_upstream() {
    let edge = demo_edge().await;
    let r = get(edge.addr, "/women/tops.html").await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-magento-tags").unwrap().contains("cat_c_3"));
    // HSTS only over TLS (e2e_tls).
    assert!(r.header("strict-transport-security").is_none());
    let r = get(edge.addr, "/nope").await;
    assert_eq!(r.status, 404);
    edge.shutdown().await;
}

#[tokio::test]
async fn http_upstream_down_is_502() {
    let edge = start(settings(UpstreamTarget::Http(dead_port()), None), limits()).await;
    let r = get(edge.addr, "/").await;
    assert_eq!(r.status, 502);
    edge.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_400_not_a_panic() {
    let edge = demo_edge().await;
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let out = raw(edge.addr, bad, Duration::from_secs(3)).await;
        assert!(
            out.starts_with("HTTP/1.1 4"),
            "{:?} → {out:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // still serving
    assert_eq!(get(edge.addr, "/").await.status, 200);
    edge.shutdown().await;
}

#[tokio::test]
async fn too_large_head_is_431() {
    let edge = demo_edge().await;
    let big = "a".repeat(20 * 1024);
    let out = raw(
        edge.addr,
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = raw(
        edge.addr,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    edge.shutdown().await;
}

#[tokio::test]
async fn too_large_body_is_413() {
    let mut s = settings(
        UpstreamTarget::Http(
            magestack_edge::demo::spawn_storefront()
                .await
                .unwrap()
                .to_string(),
        ),
        None,
    );
    s.max_body_bytes = 1024;
    let edge = start(s, limits()).await;
    let out = raw(
        edge.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    let chunk = "x".repeat(2000);
    let req = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let out = raw(edge.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    edge.shutdown().await;
}

#[tokio::test]
async fn slow_head_is_408_and_idle_is_closed_quietly() {
    let edge = demo_edge().await;
    // header_read_timeout is 2 s in the test limits
    let started = std::time::Instant::now();
    let out = raw(
        edge.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        Duration::from_secs(6),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // keep-alive: the timer does not carry over from the first request
    let mut s = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    edge.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let edge = demo_edge().await;
    let stream = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://shop.test/women/tops.html")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("Women / Tops"));
    edge.shutdown().await;
}

/// An HTTP pool of two app servers, one of them down: the health checks take
/// the dead one out and every request lands on the live one.
#[tokio::test]
async fn http_pool_routes_around_a_dead_endpoint() {
    let app = magestack_edge::demo::spawn_storefront().await.unwrap();
    let dead = dead_port();
    let mut s = settings(UpstreamTarget::Http(app.to_string()), None);
    s.pools = vec![magestack_edge::settings::PoolSpec {
        max_inflight: 8,
        queue_size: 8,
        queue_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_millis(300),
        check_interval: Duration::from_millis(50),
        unhealthy_after: 1,
        ..pool_spec(vec![
            UpstreamTarget::Http(dead.clone()),
            UpstreamTarget::Http(app.to_string()),
        ])
    }];
    let edge = std::sync::Arc::new(magestack_edge::Edge::new(s).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = magestack_edge::Server::new(edge.clone(), limits(), None);
    tokio::spawn(server.run(vec![listener], std::future::pending::<()>()));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = edge.pool_stats();
        if st[0].endpoints[0].health == "unhealthy" && st[0].endpoints[1].health == "healthy" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(edge.pools_ready());
    for _ in 0..20 {
        assert_eq!(get(addr, "/women/tops.html").await.status, 200);
    }
    let st = edge.pool_stats();
    assert_eq!(st[0].requests, 20, "{st:?}");
    assert_eq!(st[0].errors_other, 0, "{st:?}");
}

/// Connection floods: past `max_connections_per_ip` open connections from
/// one address, new ones are closed at once; a freed slot is usable again.
#[tokio::test]
async fn connections_per_address_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = magestack_edge::demo::spawn_storefront().await.unwrap();
    let mut l = limits();
    l.max_connections_per_ip = 2;
    let edge = start(settings(UpstreamTarget::Http(app.to_string()), None), l).await;
    let a = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let b = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .expect("the third connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection got data");
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut d = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    d.write_all(b"GET /women/tops.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    d.read_to_end(&mut out).await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    drop((b, c));
    edge.shutdown().await;
}

/// A client trickling its body holds no slot of the HTTP pool: with one slot,
/// a stalled upload does not make other visitors wait (the body is read
/// first, then the slot is taken, as on the FastCGI path).
#[tokio::test]
async fn a_stalled_upload_holds_no_http_pool_slot() {
    use tokio::io::AsyncWriteExt;
    let app = magestack_edge::demo::spawn_storefront().await.unwrap();
    let mut s = settings(UpstreamTarget::Http(app.to_string()), None);
    // Without the injection inspection, which reads bodies itself first.
    s.injection = None;
    s.pools = vec![magestack_edge::settings::PoolSpec {
        max_inflight: 1,
        queue_size: 0,
        queue_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_millis(300),
        check_interval: Duration::from_secs(5),
        unhealthy_after: 1,
        ..pool_spec(vec![UpstreamTarget::Http(app.to_string())])
    }];
    let edge = start(s, limits()).await;
    let mut slow = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    slow.write_all(
        b"POST /customer/account/loginPost/ HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nlogin",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let r = get(edge.addr, "/women/tops.html").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    drop(slow);
    edge.shutdown().await;
}

/// Before any health check has run, a refused connection to one app server
/// is retried on the next: no visitor sees the dead one.
#[tokio::test]
async fn http_refused_connection_goes_to_the_next_endpoint() {
    let app = magestack_edge::demo::spawn_storefront().await.unwrap();
    let dead = dead_port();
    let mut s = settings(UpstreamTarget::Http(app.to_string()), None);
    s.pools = vec![magestack_edge::settings::PoolSpec {
        queue_size: 8,
        queue_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_millis(300),
        unhealthy_after: 100,
        ..pool_spec(vec![
            UpstreamTarget::Http(dead.clone()),
            UpstreamTarget::Http(app.to_string()),
        ])
    }];
    let edge = start(s, limits()).await;
    for _ in 0..20 {
        let r = get(edge.addr, "/women/tops.html").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    edge.shutdown().await;
}
