//! Connection-level exhaustion (issue 13, item 3): connections that send
//! nothing, kept-alive connections that stay silent, and a flood of idle
//! connections against the descriptor limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits until the server closes `s` (EOF or reset); how long it took.
async fn closed_after(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

fn short_limits() -> magestack_edge::ServerLimits {
    magestack_edge::ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..limits()
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let (edge, _env) = {
        let env = php_env();
        let s = settings(
            magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
            Some(env.storefront.join("pub")),
        );
        (start(s, short_limits()).await, env)
    };
    let s = TcpStream::connect(edge.addr).await.unwrap();
    let took = closed_after(s, Duration::from_secs(8)).await;
    assert!(
        took.is_some_and(|d| d < Duration::from_millis(1900)),
        "silent connection closed after {took:?} (header timeout 1 s)"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let env = php_env();
    let s = settings(
        magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    let edge = start(s, short_limits()).await;
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"GET /robots.txt HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let took = closed_after(s, Duration::from_secs(10)).await;
    assert!(
        took.is_some_and(|d| d > Duration::from_millis(1500) && d < Duration::from_millis(3500)),
        "kept-alive connection closed after {took:?} (idle timeout 2 s)"
    );
    edge.shutdown().await;
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_after_the_idle_timeout() {
    let env = php_env();
    let s = settings(
        magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    let edge = start(s, short_limits()).await;
    let stream = TcpStream::connect(edge.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let t = Instant::now();
    let driver = tokio::spawn(conn);
    let r = sender
        .send_request(
            http::Request::get("http://shop.test/robots.txt")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    assert!(ended.is_ok(), "idle h2 connection still open after 10 s");
    assert!(
        t.elapsed() < Duration::from_millis(4500),
        "{:?}",
        t.elapsed()
    );
    edge.shutdown().await;
}
