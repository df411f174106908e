//! Request bodies under attack (issue 13, item 2), in front of the real
//! PHP-FPM storefront: uploads held one byte short over HTTP/1.1 and over
//! one h2c connection with many streams must not hold their bytes in
//! memory, a stalled h2 stream gets 408, and a large upload still reaches
//! PHP intact (through the spool file).
//!
//! One test per binary: it reads the process's RSS, which other tests in
//! the same process would disturb.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::StreamBody;
use magestack_edge::settings::BodySettings;
use magestack_edge::UpstreamTarget;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;
const H1_UPLOADS: usize = 8;
const H1_BYTES: u64 = 40 * MIB;
const H2_STREAMS: usize = 16;
const H2_BYTES: u64 = 12 * MIB;
const BUDGET: u64 = 16 * MIB;

fn chunk() -> Bytes {
    Bytes::from(vec![b'x'; 64 * 1024])
}

/// Sends `len - 1` bytes of a `len`-byte upload, then nothing more; counts
/// the bytes written.
async fn h1_upload_held_short(
    addr: std::net::SocketAddr,
    len: u64,
    sent: Arc<AtomicU64>,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /_test/echo HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let c = chunk();
    let mut left = len - 1;
    while left > 0 {
        let n = left.min(c.len() as u64) as usize;
        if s.write_all(&c[..n]).await.is_err() {
            break;
        }
        left -= n as u64;
        sent.fetch_add(n as u64, Ordering::Relaxed);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_held_short_do_not_hold_memory() {
    let env = php_env();
    let spool = tempfile::tempdir().unwrap();
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    s.injection = None;
    s.body = BodySettings {
        buffer_bytes: MIB,
        memory_bytes: BUDGET,
        spool_dir: Some(spool.path().to_owned()),
        read_timeout: Duration::from_secs(4),
    };
    let limits = magestack_edge::ServerLimits {
        body_read_timeout: Duration::from_secs(4),
        ..limits()
    };
    let edge = start(s, limits).await;

    // Nothing is lost: a 20 MiB upload goes through the spool file to PHP.
    let body: Vec<u8> = (0..20 * MIB).map(|i| (i % 253) as u8).collect();
    let want = format!("{:x}", <md5::Md5 as md5::Digest>::digest(&body));
    let r = request(
        edge.addr,
        http::Request::post("/_test/echo")
            .header("host", "shop.test")
            .header("content-type", "application/octet-stream")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let echo: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(echo["body_md5"], want.as_str());
    assert_eq!(echo["body_length"], 20 * MIB);

    let baseline = rss_bytes();
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    // Eight HTTP/1.1 uploads held one byte short.
    let h1: Vec<_> = (0..H1_UPLOADS)
        .map(|_| tokio::spawn(h1_upload_held_short(edge.addr, H1_BYTES, Arc::clone(&sent))))
        .collect();

    // One h2c connection, sixteen streams, each held one byte short.
    let stream = TcpStream::connect(edge.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut h2 = Vec::new();
    for _ in 0..H2_STREAMS {
        let sent = Arc::clone(&sent);
        let c = chunk();
        let full = (H2_BYTES / c.len() as u64) as usize;
        let frames = (0..full).map(move |i| {
            let b = if i + 1 == full {
                c.slice(..c.len() - 1)
            } else {
                c.clone()
            };
            sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(http_body::Frame::data(b))
        });
        let body = StreamBody::new(futures_util::StreamExt::chain(
            futures_util::stream::iter(frames),
            futures_util::stream::pending(),
        ));
        let req = http::Request::post("http://shop.test/_test/echo")
            .header("content-length", H2_BYTES.to_string())
            .header("content-type", "application/octet-stream")
            .body(body)
            .unwrap();
        let mut sender = sender.clone();
        h2.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = sender.send_request(req).await.unwrap();
            (r.status(), t.elapsed())
        }));
    }

    // Wait until (nearly) everything was handed to the sockets.
    let total = H1_UPLOADS as u64 * (H1_BYTES - 1) + H2_STREAMS as u64 * (H2_BYTES - 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::Relaxed) < total - 4 * MIB {
        assert!(
            Instant::now() < deadline,
            "uploads stalled at {} of {total}",
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut peak = 0;
    for _ in 0..10 {
        peak = peak.max(rss_bytes().saturating_sub(baseline));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = total / MIB;
    eprintln!(
        "bodies held: {held} MiB in {} uploads ({:?}); edge memory growth: {:.1} MiB (budget {} MiB)",
        H1_UPLOADS + H2_STREAMS,
        started.elapsed(),
        peak as f64 / MIB as f64,
        BUDGET / MIB
    );
    // The budget, h2's receive windows (one per stream) and read buffers.
    let bound = BUDGET + H2_STREAMS as u64 * MIB + 48 * MIB;
    assert!(
        peak < bound,
        "memory grew by {} MiB holding {held} MiB of bodies (bound {} MiB)",
        peak / MIB,
        bound / MIB
    );

    // The stalled h2 streams get 408 after the body read timeout.
    for h in h2 {
        let (status, took) = tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("a stalled h2 stream never got an answer")
            .unwrap();
        assert_eq!(status, 408);
        assert!(took < Duration::from_secs(30), "{took:?}");
    }
    // And so do the HTTP/1.1 ones, whose connections then close.
    for h in h1 {
        let mut s = h.await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "spool files are unlinked"
    );
    edge.shutdown().await;
}
