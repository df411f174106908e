//! End-to-end: request smuggling and slow-body defences, over raw sockets,
//! in front of the real PHP-FPM storefront (whose hit counter proves a
//! refused request never ran).
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
        // HTTP/1.0 cannot be chunked; lengths must agree.
        format!("POST {path} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        // Pipelined behind a clean request, in the same write.
        format!("GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
    ];
    for (i, req) in cases.iter().enumerate() {
        let out = raw(edge.addr, req.as_bytes(), Duration::from_secs(3)).await;
        assert!(out.contains("HTTP/1.1 400 Bad Request"), "case {i}: {out}");
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
    let started = Instant::now();
    let out = raw(
        edge.addr,
        b"POST /_test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b",
        Duration::from_secs(6),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    edge.shutdown().await;
}
