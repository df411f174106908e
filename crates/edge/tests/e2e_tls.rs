//! TLS termination: rustls with ALPN, h2 and HTTP/1.1 over TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use magestack_edge::{Edge, Server, UpstreamTarget};
use rustls::pki_types::ServerName;
use support::*;
use tokio::net::{TcpListener, TcpStream};

async fn tls_edge(dir: &std::path::Path) -> (std::net::SocketAddr, rustls::RootCertStore) {
    let cert = rcgen::generate_simple_self_signed(vec!["shop.test".to_string()]).unwrap();
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();

    let app = magestack_edge::demo::spawn_storefront().await.unwrap();
    let edge = Arc::new(Edge::new(settings(UpstreamTarget::Http(app.to_string()), None)).unwrap());
    let acceptor = magestack_edge::tls::acceptor(&cert_path, &key_path, true).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::new(edge, limits(), Some(acceptor)).run(vec![listener], std::future::pending()),
    );
    (addr, roots)
}

async fn connect(
    addr: std::net::SocketAddr,
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("shop.test").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn h2_over_tls_via_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, roots) = tls_edge(dir.path()).await;
    let tls = connect(addr, roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("https://shop.test/")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("Home page"));
}

#[tokio::test]
async fn http1_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, roots) = tls_edge(dir.path()).await;
    let tls = connect(addr, roots, &[b"http/1.1"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("/women/tops.html")
                .header("host", "shop.test")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap()),
        Some("max-age=31536000"),
        "HSTS on TLS listeners"
    );
}

/// A client that completes the TLS handshake and then sends nothing is
/// closed after the header timeout (2 s here), over HTTP/1.1 and h2 alike
/// (issue 13, item 3).
#[tokio::test]
async fn a_silent_client_after_the_handshake_is_closed() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (addr, roots) = tls_edge(dir.path()).await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut tls = connect(addr, roots.clone(), &[alpn]).await;
        let t = std::time::Instant::now();
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(8), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {} // an h2 SETTINGS or GOAWAY frame
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{}: silent TLS connection still open after 8 s",
            String::from_utf8_lossy(alpn)
        );
        assert!(
            t.elapsed() < std::time::Duration::from_secs(4),
            "{:?}",
            t.elapsed()
        );
    }
}
