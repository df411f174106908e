//! End-to-end: the edge in front of real PHP-FPM running `examples/storefront`.
//! Every worked routing example of the design doc (§1.10) is checked over sockets.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

/// The storefront's `/_test/echo` answers with PHP's view of the request.
async fn echo(addr: std::net::SocketAddr, path: &str) -> serde_json_lite::Map {
    let r = get(addr, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json_lite::parse(&r.text())
}

mod serde_json_lite {
    //! PHP's JSON as a flat map of strings.
    pub type Map = std::collections::HashMap<String, String>;
    pub fn parse(s: &str) -> Map {
        let v: serde_json::Value = serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"));
        v.as_object()
            .expect("a JSON object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect()
    }
}

#[tokio::test]
async fn front_controller_gets_magento_params() {
    let (edge, _env) = start_php().await;
    let p = echo(edge.addr, "/_test/echo?p=2&x=%41").await;
    assert_eq!(p["SCRIPT_NAME"], "/index.php");
    assert_eq!(p["DOCUMENT_URI"], "/index.php");
    assert_eq!(p["REQUEST_URI"], "/_test/echo?p=2&x=%41");
    assert_eq!(p["QUERY_STRING"], "p=2&x=%41");
    assert_eq!(p["HTTP_HOST"], "shop.test");
    assert_eq!(p["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(p["GATEWAY_INTERFACE"], "CGI/1.1");
    assert!(p["SCRIPT_FILENAME"].ends_with("/pub/index.php"));
    edge.shutdown().await;
}

#[tokio::test]
async fn worked_routing_examples() {
    let (edge, env) = start_php().await;
    let a = edge.addr;

    // GET / → index.php
    let r = get(a, "/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-magento-tags").is_some(), "home page comes from index.php");

    // category with args
    let r = get(a, "/women/tops.html?p=2").await;
    assert_eq!(r.status, 200);

    // versioned static, existing
    let r = get(a, "/static/version1712345678/frontend/Magento/luma/en_US/mage/calendar.css").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control").unwrap(), "public, max-age=31536000, immutable");
    assert_eq!(r.header("x-frame-options").unwrap(), "SAMEORIGIN");
    assert!(r.header("expires").is_none());

    // versioned static, missing → static.php?resource=…
    let r = get(a, "/static/version1/frontend/Magento/luma/en_US/missing.css?x=1").await;
    assert_ne!(r.status, 200);

    // PHP under /static/ → banned → 404 page
    let r = get(a, "/static/foo.php").await;
    assert_eq!(r.status, 404);

    // missing media → get.php
    let r = get(a, "/media/catalog/product/x/y/missing.jpg").await;
    assert!(r.status == 404 || r.status == 200);

    // existing media served statically
    let r = get(a, "/media/catalog/product/a/b/ab.jpg").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control").unwrap(), "public, max-age=31536000, immutable");

    // denied
    for path in [
        "/media/customer/secret.txt",
        "/media/customer/x",
        "/media/theme_customization/x.xml",
        "/media/import/x.csv",
        "/media/downloadable/x",
        "/media/custom_options/x",
        "/errors/local.xml",
        "/cron.php",
        "/update.php",
        "/pub/index.php",
        "/.git/config",
        "/.user.ini",
        "/app/etc/env.php",
        "/SETUP/index.php",
    ] {
        let r = get(a, path).await;
        assert_eq!(r.status, 404, "{path} must be 404, got {} {}", r.status, r.text());
        assert!(!r.text().contains("secret"), "{path} leaked content");
    }
    // cron.php never ran
    assert!(!env.storefront.join("var/cron_ran").exists());

    // whitelisted error script
    let r = get(a, "/errors/report.php?id=123").await;
    assert!(r.status.as_u16() < 500, "report.php runs: {}", r.status);

    // health check
    let r = get(a, "/health_check.php").await;
    assert_eq!(r.status, 200);

    // /pub/ alias
    let r = get(a, "/pub/media/catalog/product/a/b/ab.jpg").await;
    assert_eq!(r.status, 200);

    // existing file at the root
    let r = get(a, "/robots.txt").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    edge.shutdown().await;
}

#[tokio::test]
async fn post_body_is_forwarded_intact() {
    let (edge, _env) = start_php().await;
    let mut data = vec![0u8; 3 * 1024 * 1024 + 17];
    let mut x: u32 = 12345;
    for b in data.iter_mut() {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let req = Request::post("/_test/echo")
        .header("host", "shop.test")
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(data.clone())))
        .unwrap();
    let r = request(edge.addr, req).await;
    assert_eq!(r.status, 200);
    let p = serde_json_lite::parse(&r.text());
    assert_eq!(p["length"], data.len().to_string());
    assert_eq!(p["md5"], md5_hex(&data));
    edge.shutdown().await;
}

#[tokio::test]
async fn chunked_post_gets_a_content_length() {
    let (edge, _env) = start_php().await;
    let body = "a=1&b=2";
    let raw_req = format!(
        "POST /_test/echo HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        body.len(),
        body
    );
    let out = raw(edge.addr, raw_req.as_bytes(), Duration::from_secs(10)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"length\":\"7\"") || out.contains("\"length\":7"), "{out}");
    edge.shutdown().await;
}

#[tokio::test]
async fn streams_100_mb_with_bounded_memory() {
    use http_body_util::BodyExt;
    let (edge, _env) = start_php().await;
    let stream = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let before = rss_bytes();
    let req = Request::get("/_test/stream?mb=100").header("host", "shop.test").body(Full::new(Bytes::new())).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut total: u64 = 0;
    let mut peak = before;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(d) = frame.data_ref() {
            total += d.len() as u64;
        }
        if total % (8 << 20) < 70_000 {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(total, 100 * 1024 * 1024);
    let growth = peak.saturating_sub(before);
    assert!(growth < 48 << 20, "edge buffered the response: RSS grew by {} MiB", growth >> 20);
    edge.shutdown().await;
}

#[tokio::test]
async fn fpm_down_is_502() {
    let env = php_env();
    let s = settings(magestack_edge::UpstreamTarget::FastCgiTcp(dead_port()), Some(env.storefront.join("pub")));
    let edge = start(s, limits()).await;
    let r = get(edge.addr, "/women.html").await;
    assert_eq!(r.status, 502);
    assert!(r.header("retry-after").is_some());
    assert!(r.body.len() < 200);
    edge.shutdown().await;
}

#[tokio::test]
async fn fpm_hang_is_504() {
    let env = php_env();
    let mut s = settings(magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()), Some(env.storefront.join("pub")));
    s.read_timeout = Duration::from_millis(700);
    let edge = start(s, limits()).await;
    let started = std::time::Instant::now();
    let r = get(edge.addr, "/_test/sleep?ms=4000").await;
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(3));
    edge.shutdown().await;
}

#[tokio::test]
async fn unix_socket_upstream() {
    let env = php_env();
    let sock = env.fpm_sock.clone().expect("MAGESTACK_FPM_SOCK is not set by scripts/deps");
    let s = settings(magestack_edge::UpstreamTarget::FastCgiUnix(sock), Some(env.storefront.join("pub")));
    let edge = start(s, limits()).await;
    let r = get(edge.addr, "/").await;
    assert_eq!(r.status, 200);
    edge.shutdown().await;
}

#[tokio::test]
async fn gzip_for_html() {
    let (edge, _env) = start_php().await;
    let r = get_with(edge.addr, "/women/tops.html", &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
    assert!(r.header("vary").unwrap().to_ascii_lowercase().contains("accept-encoding"));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut out).unwrap();
    assert!(out.contains("</html>"));
    let plain = get(edge.addr, "/women/tops.html").await;
    assert!(plain.header("content-encoding").is_none());
    edge.shutdown().await;
}

#[tokio::test]
async fn https_on_behind_trusted_tls_proxy() {
    let (edge, _env) = start_php().await;
    let r = get_with(edge.addr, "/_test/echo", &[("x-forwarded-proto", "https"), ("x-forwarded-for", "203.0.113.9")]).await;
    let p = serde_json_lite::parse(&r.text());
    assert_eq!(p.get("HTTPS").map(String::as_str), Some("on"));
    assert_eq!(p["REMOTE_ADDR"], "203.0.113.9");
    edge.shutdown().await;
}

#[tokio::test]
async fn graceful_drain_finishes_in_flight_requests() {
    let (edge, _env) = start_php().await;
    let addr = edge.addr;
    let slow = tokio::spawn(async move { get(addr, "/_test/sleep?ms=1200").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = edge.shutdown().await;
    assert_eq!(open, 0, "drain left connections open");
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener still accepts after shutdown");
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
