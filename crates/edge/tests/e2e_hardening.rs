//! End-to-end: request smuggling, slow-body (slowloris, R.U.D.Y.) and
//! security-header behaviour, over raw sockets, in front of the real PHP-FPM
//! storefront (whose hit counter proves a refused request never ran).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

fn hits(key: &str) -> String {
    format!("/_test/hits?key={key}")
}

#[tokio::test]
async fn ambiguous_framing_is_400_and_never_reaches_php() {
    let (edge, _env) = start_php().await;
    let key = format!("smuggle-{}", std::process::id());
    let peek = format!("{}&peek=1", hits(&key));
    let before = get(edge.addr, &peek).await.text();
    let path = hits(&key);
    let cases = [
        // CL.TE / TE.CL: hyper alone would drop the length and read chunks.
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"),
        // Obfuscated or repeated codings.
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n Transfer-Encoding: x\r\n\r\n0\r\n\r\n"),
        // HTTP/1.0 cannot be chunked; lengths must agree, and come once.
        format!("POST {path} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc"),
        // Pipelined behind a clean request, in the same write.
        format!("GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
    ];
    for (i, req) in cases.iter().enumerate() {
        let out = raw(edge.addr, req.as_bytes(), Duration::from_secs(3)).await;
        // hyper's own 400 (for the cases it refuses) closes too.
        assert!(
            out.contains("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n"),
            "case {i}: {out}"
        );
        assert!(
            !out.contains("HTTP/1.1 200") || i == cases.len() - 1,
            "case {i}: {out}"
        );
    }
    assert_eq!(
        get(edge.addr, &peek).await.text(),
        before,
        "a refused request reached PHP"
    );
    // Clean framing still works: chunked, length, and a keep-alive pipeline.
    let ok = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\nPOST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na=2GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let out = raw(edge.addr, ok.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    edge.shutdown().await;
}

/// A client that starts a body and stalls gets 408 after the body-read
/// timeout (2 s in the test limits) and the connection is closed.
#[tokio::test]
async fn a_stalled_body_gets_408() {
    let (edge, _env) = start_php().await;
    let stalls: [&[u8]; 3] = [
        b"POST /_test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b",
        // Chunked, inside chunk data and inside a size line.
        b"POST /_test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly ten b",
        b"POST /_test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1",
    ];
    for req in stalls {
        let started = Instant::now();
        let out = raw(edge.addr, req, Duration::from_secs(6)).await;
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("connection: close"), "{out}");
        // The edge's 408 is the only answer: not followed by the handler's
        // error page for the body that just failed.
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(6),
            "{took:?}"
        );
    }
    edge.shutdown().await;
}

/// Smuggling payload: hyper alone reads it as a chunked POST to `path`.
fn smuggled(path: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
}

/// Ways to make a framing tracker lose its place so that a later head
/// passes unseen: each must still end in a 400, with PHP never reached.
#[tokio::test]
async fn the_guard_cannot_be_desynced() {
    let env = php_env();
    let mut l = limits();
    // Limits above the guard's fast-path arrays: it must follow hyper's.
    l.max_headers = 300;
    l.max_header_bytes = 160 * 1024;
    let edge = start(
        settings(
            magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
            Some(env.storefront.join("pub")),
        ),
        l,
    )
    .await;
    let key = format!("desync-{}", std::process::id());
    let peek = format!("{}&peek=1", hits(&key));
    let mut before = get(edge.addr, &peek).await.text();
    let s = smuggled(&hits(&key));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = "a".repeat(100 * 1024);
    let cases = [
        // An upgrade the edge never grants: hyper goes on reading heads.
        format!("GET {peek} HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n{s}"),
        format!("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n{s}"),
        // Leading zeros in a chunk size (hyper takes any number of digits).
        format!("POST {peek} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n000000000000000000001\r\na\r\n0\r\n\r\n{s}"),
        // Trailers: hyper ends them at CRLF CRLF only, not at a bare LF LF.
        format!(
            "POST {peek} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-A: 1\n\nGET / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{s}",
            s.len()
        ),
        // More headers than the guard's stack array, fewer than hyper's cap
        // (a static file: PHP-FPM refuses such large params by itself).
        format!("GET /robots.txt HTTP/1.1\r\nHost: x\r\n{many}\r\n{s}"),
        // A head longer than the guard used to follow, shorter than hyper's cap.
        format!("GET /robots.txt HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n{s}"),
        // The same length twice (hyper takes it; nginx refuses it).
        format!("POST {peek} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
    ];
    // Every case runs, then all failures are reported together.
    let mut failures = Vec::new();
    for (i, req) in cases.iter().enumerate() {
        let out = raw(edge.addr, req.as_bytes(), Duration::from_secs(3)).await;
        let statuses: Vec<&str> = out.lines().filter(|l| l.starts_with("HTTP/1.")).collect();
        if !out.contains("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n") {
            failures.push(format!(
                "case {i}: no 400 with connection: close, got {statuses:?}"
            ));
        }
        let now = get(edge.addr, &peek).await.text();
        if now != before {
            failures.push(format!(
                "case {i}: a smuggled request reached PHP ({statuses:?})"
            ));
            before = now;
        }
    }
    edge.shutdown().await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Slow POST (R.U.D.Y.): clients trickling bodies, each byte inside the
/// body-read timeout, must not hold PHP-FPM children. The edge reads a
/// body whole before it asks for a child (nginx's
/// `fastcgi_request_buffering on`), so with every child of a two-child
/// pool "busy" with tricklers, a page still renders at once.
#[tokio::test]
async fn trickled_bodies_do_not_hold_php_children() {
    use tokio::io::AsyncWriteExt;
    let env = php_env();
    let port = free_port();
    let _fpm = start_fpm(&env.storefront, &[FpmPool::new("www", port, 2)]);
    let edge = start(
        settings(
            magestack_edge::UpstreamTarget::FastCgiTcp(format!("127.0.0.1:{port}")),
            Some(env.storefront.join("pub")),
        ),
        limits(),
    )
    .await;
    // Not a type the injection filter reads first: straight to PHP.
    let head = "POST /_test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n";
    let mut tricklers = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        tricklers.push(s);
    }
    let trickle = tokio::spawn(async move {
        // A byte per client every 300 ms, well inside the 2 s gap limit.
        for _ in 0..40 {
            for s in tricklers.iter_mut() {
                let _ = s.write_all(b"x").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tricklers
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let key = format!("rudy-{}", std::process::id());
    let r = tokio::time::timeout(Duration::from_secs(5), get(edge.addr, &hits(&key)))
        .await
        .expect("a page waited behind trickling uploads");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    trickle.abort();
    edge.shutdown().await;
}

/// Security headers where Magento's `nginx.conf.sample` (mage-os @0ed8945b)
/// adds them, and nowhere else: `X-Frame-Options: SAMEORIGIN` on files the
/// edge serves from `/static/`, `/media/` and `/pub/` (304s included), none
/// on the catch-all `/` location (`robots.txt`), and PHP's own header on
/// pages, never a second one from the edge. The sample adds no
/// `X-Content-Type-Options`; HSTS is TLS-only (`e2e_tls`).
#[tokio::test]
async fn security_headers_follow_the_nginx_sample() {
    let (edge, _env) = start_php().await;
    let xfo = |r: &Resp| {
        r.headers
            .get_all("x-frame-options")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for path in [
        "/media/catalog/product/a/b/ab.jpg",
        "/media/wysiwyg/readme.txt",
        "/pub/media/catalog/product/a/b/ab.jpg",
        "/static/frontend/Magento/luma/en_US/mage/calendar.css",
    ] {
        let r = get(edge.addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(xfo(&r), ["SAMEORIGIN"], "{path}");
        // A revalidation keeps the location's headers (nginx adds them to 304).
        let etag = r.header("etag").unwrap();
        let r = get_with(edge.addr, path, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status, 304, "{path}");
        assert_eq!(xfo(&r), ["SAMEORIGIN"], "{path} (304)");
    }
    let r = get(edge.addr, "/robots.txt").await;
    assert_eq!(r.status, 200);
    assert!(xfo(&r).is_empty(), "{:?}", r.headers);
    let r = get(edge.addr, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(xfo(&r), ["SAMEORIGIN"], "Magento's own, once");
    assert!(r.header("strict-transport-security").is_none());
    edge.shutdown().await;
}

/// Magento's sample serves these through its `/pub/` alias (200 with the
/// file); the README promises they are denied.
#[tokio::test]
async fn the_pub_alias_denies_what_the_docroot_denies() {
    let (edge, _env) = start_php().await;
    for p in [
        "/pub/.user.ini",
        "/pub/errors/local.xml",
        "/pub/errors/design.xml",
        "/.user.ini",
        "/errors/local.xml",
    ] {
        let r = get(edge.addr, p).await;
        assert_eq!(r.status, 404, "{p}");
        assert!(!r.text().contains("MAGESTACK-SECRET"), "{p} leaked");
    }
    edge.shutdown().await;
}
