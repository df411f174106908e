//! Cache poisoning, reproduced against the edge with its full-page cache in
//! front of the real PHP-FPM storefront (issue 13, items 1, 6 and 9): every
//! way the cache key and the request PHP receives could read different
//! headers. Each attack is followed by the victim's request, which must get
//! the page of its own context.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use magestack_edge::{CacheSettings, UpstreamTarget};
use support::*;
use tokio::net::TcpStream;

async fn edge_with_cache() -> Running {
    let env = php_env();
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    let mut c = CacheSettings::magento_defaults();
    c.health_check.interval = Duration::from_secs(3600);
    s.cache = Some(c);
    start(s, limits()).await
}

fn debug(r: &Resp) -> String {
    r.header("x-magento-cache-debug").unwrap_or_default()
}

fn vary_of(cookie: &str) -> String {
    cookie
        .split("; ")
        .find_map(|kv| kv.strip_prefix("X-Magento-Vary="))
        .expect("an X-Magento-Vary cookie")
        .to_owned()
}

/// A real EUR shopper: a session whose currency is EUR, and its vary cookie.
async fn eur_shopper(addr: std::net::SocketAddr) -> String {
    let r = get(addr, "/directory/currency/switch?currency=EUR").await;
    assert_eq!(r.status, 302, "{}", r.text());
    let cookie = cookies_from(&r);
    assert!(cookie.contains("PHPSESSID="), "{cookie}");
    assert!(cookie.contains("X-Magento-Vary="), "{cookie}");
    cookie
}

fn currency(page: &str) -> &str {
    let at = page.find("id=\"sf-currency\">").expect("currency marker") + 17;
    &page[at..at + 3]
}

/// Item 1: `Connection: close, Cookie` makes a proxy drop the cookie the key
/// was built from. Refused, and the EUR shopper's page stays EUR.
#[tokio::test]
async fn connection_naming_the_cookie_is_refused() {
    let edge = edge_with_cache().await;
    let shopper = eur_shopper(edge.addr).await;
    let eur_vary = vary_of(&shopper);
    let page = "/women.html?poison=connection";
    for named in [
        "Cookie",
        "X-Forwarded-Proto",
        "Host",
        "Store",
        "Content-Currency",
        "X-Magento-Cache-Id",
        "Authorization",
    ] {
        let r = get_with(
            edge.addr,
            page,
            &[
                ("connection", &format!("close, {named}")),
                ("cookie", &format!("X-Magento-Vary={eur_vary}")),
                ("x-forwarded-proto", "http"),
            ],
        )
        .await;
        assert_eq!(r.status, 400, "Connection: close, {named}");
    }
    let victim = get_with(edge.addr, page, &[("cookie", &shopper)]).await;
    assert_eq!(victim.status, 200);
    assert_eq!(currency(&victim.text()), "EUR");
    edge.shutdown().await;
}

/// Item 6: `x=X-Magento-Vary=<EUR>` is a cookie named `x`; PHP sees no vary
/// cookie and renders the default page. The VCL's substring match would
/// store that page under the EUR key.
#[tokio::test]
async fn a_vary_cookie_inside_another_cookie_does_not_key_the_page() {
    let edge = edge_with_cache().await;
    let shopper = eur_shopper(edge.addr).await;
    let eur_vary = vary_of(&shopper);
    let page = "/gear.html?poison=cookie";
    let attack = get_with(
        edge.addr,
        page,
        &[("cookie", &format!("x=X-Magento-Vary={eur_vary}; y=1"))],
    )
    .await;
    assert_eq!(attack.status, 200);
    assert_eq!(currency(&attack.text()), "USD");
    let victim = get_with(edge.addr, page, &[("cookie", &shopper)]).await;
    assert_eq!(
        currency(&victim.text()),
        "EUR",
        "the EUR shopper got the page rendered for the attacker ({})",
        debug(&victim)
    );
    edge.shutdown().await;
}

/// The echo page, publicly cacheable: what PHP saw, as the cache stored it.
fn echo(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// Item 6: two `X-Forwarded-Proto` values. The key read the first
/// (`https`), PHP got `"https, http"` (not HTTPS for Magento); the next
/// HTTPS visitor got that page.
#[tokio::test]
async fn a_repeated_forwarded_proto_reaches_php_as_the_key_read_it() {
    let edge = edge_with_cache().await;
    let url = "/_test/echo?cache=public&poison=proto";
    let attack = get_with(
        edge.addr,
        url,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http"),
        ],
    )
    .await;
    assert_eq!(attack.status, 200);
    let victim = get_with(edge.addr, url, &[("x-forwarded-proto", "https")]).await;
    let seen = echo(&victim);
    assert_eq!(seen["params"]["HTTP_X_FORWARDED_PROTO"], "https", "{seen}");
    assert_eq!(seen["params"]["HTTPS"], "on", "{seen}");
    // A client the edge does not trust cannot claim HTTPS at all: covered by
    // the unit tests (every loopback peer is a trusted proxy here).
    edge.shutdown().await;
}

/// Item 6: Magento's block renderer answers a plain GET with a public 404;
/// the AJAX call for the same URL must not get it from the cache.
#[tokio::test]
async fn a_plain_get_of_the_block_renderer_is_not_served_to_ajax() {
    let edge = edge_with_cache().await;
    let url = "/page_cache/block/render/?blocks=%5B%22minicart%22%5D&handles=%5B%22default%22%5D";
    let plain = get(edge.addr, url).await;
    assert_eq!(plain.status, 404);
    let again = get(edge.addr, url).await;
    assert_eq!(debug(&again), "HIT", "the 404 is cacheable, as in Magento");
    let ajax = get_with(edge.addr, url, &[("x-requested-with", "XMLHttpRequest")]).await;
    assert_eq!(
        ajax.status,
        200,
        "AJAX got {} ({})",
        ajax.status,
        debug(&ajax)
    );
    assert!(ajax.text().contains("minicart"), "{}", ajax.text());
    edge.shutdown().await;
}

/// Item 6: Host must be present (HTTP/1.1), once, and agree with h2's
/// `:authority`.
#[tokio::test]
async fn host_is_present_once_and_agrees_with_the_authority() {
    let edge = edge_with_cache().await;
    let wait = Duration::from_secs(3);
    let no_host = raw(
        edge.addr,
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host}");
    let two = raw(
        edge.addr,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    let ten = raw(edge.addr, b"GET /robots.txt HTTP/1.0\r\n\r\n", wait).await;
    assert!(
        ten.starts_with("HTTP/1.1 200") || ten.starts_with("HTTP/1.0 200"),
        "{ten}"
    );

    // h2c with prior knowledge: Host beside a different :authority.
    let stream = TcpStream::connect(edge.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let send = |host: &'static str| {
        Request::get("http://shop.test/robots.txt")
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let bad = sender.send_request(send("evil.test")).await.unwrap();
    assert_eq!(bad.status(), 400);
    let _ = bad.into_body().collect().await;
    let good = sender.send_request(send("shop.test")).await.unwrap();
    assert_eq!(good.status(), 200);
    edge.shutdown().await;
}

/// Item 9: a load balancer that writes ports into `X-Forwarded-For`.
#[tokio::test]
async fn forwarded_for_with_ports_gives_php_the_client() {
    let edge = edge_with_cache().await;
    for (xff, want) in [
        ("1.2.3.4:5555", "1.2.3.4"),
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("203.0.113.9, 127.0.0.1:4000", "203.0.113.9"),
    ] {
        let r = get_with(edge.addr, "/_test/echo", &[("x-forwarded-for", xff)]).await;
        let seen = echo(&r);
        assert_eq!(seen["params"]["REMOTE_ADDR"], want, "{xff}: {seen}");
    }
    // Garbage: the proxy's own address, never a guess from the chain.
    let r = get_with(
        edge.addr,
        "/_test/echo",
        &[("x-forwarded-for", "1.2.3.4, unknown")],
    )
    .await;
    assert_eq!(echo(&r)["params"]["REMOTE_ADDR"], "127.0.0.1");
    edge.shutdown().await;
}
