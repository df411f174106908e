//! PURGE behind a load balancer (issue 14, item 7): every client request's
//! socket peer is then the balancer, an address inside `cache.purge_acl`'s
//! network. With `server.behind_load_balancer`, a PURGE from a non-loopback
//! peer needs the purge token, ACL or not; loopback (Magento purging its own
//! pod's edge) needs none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use magestack_edge::settings::PurgeGuard;
use magestack_edge::{CacheSettings, Edge, ListenerKind, Server, UpstreamTarget};
use support::*;
use tokio::net::TcpListener;

/// This machine's address on its outgoing interface: a peer that is not
/// loopback. Without one, the test cannot run: it fails, it never skips.
fn non_loopback_ip() -> IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.255:9")
        .or_else(|_| s.connect("10.255.255.255:9"))
        .expect("no route off loopback: this test needs a non-loopback interface");
    let ip = s.local_addr().unwrap().ip();
    assert!(!ip.is_loopback(), "only loopback here ({ip})");
    ip
}

/// The edge's traffic port on `ip`, a loopback traffic port, and its
/// purge listener on `ip`.
async fn edge(ip: IpAddr, guard: PurgeGuard) -> (SocketAddr, SocketAddr, SocketAddr) {
    let mut s = settings(UpstreamTarget::Http(dead_port()), None);
    let mut c = CacheSettings::magento_defaults();
    c.purge_acl = vec!["127.0.0.0/8".parse().unwrap(), ipnet::IpNet::from(ip)];
    c.purge_guard = guard;
    s.cache = Some(c);
    let edge = Arc::new(Edge::new(s).unwrap());
    let outside = TcpListener::bind((ip, 0)).await.unwrap();
    let inside = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let purge = TcpListener::bind((ip, 0)).await.unwrap();
    let addrs = (
        outside.local_addr().unwrap(),
        inside.local_addr().unwrap(),
        purge.local_addr().unwrap(),
    );
    tokio::spawn(Server::new(edge, limits(), None).run_tagged(
        vec![
            (outside, ListenerKind::Traffic),
            (inside, ListenerKind::Traffic),
            (purge, ListenerKind::Purge),
        ],
        std::future::pending(),
    ));
    addrs
}

async fn purge(addr: SocketAddr, auth: Option<&str>) -> u16 {
    let mut b = http::Request::builder()
        .method("PURGE")
        .uri("/")
        .header("host", "shop.test")
        .header("x-magento-tags-pattern", "((^|,)cat_p_1(,|$))");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    request(addr, b.body(Full::new(Bytes::new())).unwrap())
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn behind_a_load_balancer_purge_needs_the_token_except_from_loopback() {
    let ip = non_loopback_ip();
    let token = "k3Jf9sQ2vX7pL0aZ8mN4bC6dE1gH5iT2uY9wR3eO7qU";
    let (outside, inside, purge_port) = edge(
        ip,
        PurgeGuard {
            behind_load_balancer: true,
            token: Some(Arc::from(token)),
        },
    )
    .await;
    // The peer is inside purge_acl, yet without the token: refused.
    assert_ne!(purge(outside, None).await, 200);
    assert_ne!(purge(outside, Some("Bearer wrong")).await, 200);
    assert_ne!(
        purge(outside, Some(token)).await,
        200,
        "the Bearer scheme is required"
    );
    assert_eq!(purge(outside, Some(&format!("Bearer {token}"))).await, 200);
    // Magento on the pod's loopback needs none, nor through the
    // cluster-internal purge listener (a ClusterIP Service the balancer
    // never sends to), from the same non-loopback peer.
    assert_eq!(purge(inside, None).await, 200);
    assert_eq!(purge(purge_port, None).await, 200);

    // Without a token configured, only loopback may purge.
    let (outside, inside, _) = edge(
        ip,
        PurgeGuard {
            behind_load_balancer: true,
            token: None,
        },
    )
    .await;
    assert_ne!(purge(outside, Some(&format!("Bearer {token}"))).await, 200);
    assert_eq!(purge(inside, None).await, 200);

    // Not behind a load balancer: the ACL alone decides, as in Varnish.
    let (outside, _, _) = edge(ip, PurgeGuard::default()).await;
    assert_eq!(purge(outside, None).await, 200);
}
