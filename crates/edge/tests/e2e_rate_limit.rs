//! End-to-end: the credential-endpoint rate limits against the real PHP-FPM
//! storefront, through every spelling Magento routes to the same action
//! (`/index.php/` prefix, repeated slashes, case, JSON escapes in a GraphQL
//! body, aliases), across a config reload, and for IPv6 clients.
//!
//! See: issue 13, items 4 and 5.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

fn form_post(path: &str, client: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "shop.test")
        .header("x-forwarded-for", client)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(
            b"form_key=abc&login%5Busername%5D=a%40example.com&login%5Bpassword%5D=wrong",
        )))
        .unwrap()
}

fn graphql_post(path: &str, client: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "shop.test")
        .header("x-forwarded-for", client)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// Five POSTs a minute per client on each form, whichever way the path is
/// spelled: the quota is one, and the sixth POST through any spelling gets
/// 429 without reaching PHP.
#[tokio::test]
async fn r13_login_forms_are_limited_through_every_path_spelling() {
    let (edge, _env) = start_php().await;
    let spellings = [
        (
            "/customer/account/loginPost/",
            "/index.php/customer/account/loginPost",
        ),
        (
            "/customer/account/loginPost/",
            "//customer/account/loginPost",
        ),
        (
            "/customer/account/loginPost/",
            "/index.php//customer/account/loginPost/",
        ),
        (
            "/customer/account/loginPost/",
            "/customer/account/LoginPost",
        ),
        (
            "/customer/account/createpost/",
            "/index.php/customer/account/createpost",
        ),
        (
            "/customer/account/createpost/",
            "//customer/account/createpost",
        ),
        (
            "/customer/account/forgotpasswordpost/",
            "/index.php/customer/account/forgotpasswordpost",
        ),
        (
            "/customer/account/forgotpasswordpost/",
            "//customer/account/forgotpasswordpost",
        ),
    ];
    for (i, (canonical, spelled)) in spellings.iter().enumerate() {
        // Through the spelling alone.
        let client = format!("203.0.113.{}", 10 + i);
        for n in 0..5 {
            let r = request(edge.addr, form_post(spelled, &client)).await;
            assert_ne!(r.status, 429, "{spelled}: attempt {}", n + 1);
        }
        let r = request(edge.addr, form_post(spelled, &client)).await;
        assert_eq!(r.status, 429, "{spelled}: 6th POST");
        assert!(r.header("retry-after").is_some());
        // Mixed with the canonical path: one quota.
        let client = format!("203.0.113.{}", 100 + i);
        for n in 0..5 {
            let path = if n % 2 == 0 { canonical } else { spelled };
            let r = request(edge.addr, form_post(path, &client)).await;
            assert_ne!(r.status, 429, "{path}: attempt {}", n + 1);
        }
        assert_eq!(
            request(edge.addr, form_post(spelled, &client)).await.status,
            429,
            "{spelled} after the canonical path"
        );
        assert_eq!(
            request(edge.addr, form_post(canonical, &client))
                .await
                .status,
            429,
            "{canonical} after {spelled}"
        );
    }
    edge.shutdown().await;
}

/// GraphQL's customer login: other URL spellings, JSON escapes PHP's
/// `json_decode` restores, comments and aliases all count.
#[tokio::test]
async fn r13_graphql_login_is_limited_through_spellings_escapes_and_aliases() {
    let (edge, _env) = start_php().await;
    const TOKEN: &str = r#"{"query":"mutation { generateCustomerToken(email: \"a@example.com\", password: \"wrong\") { token } }"}"#;
    const ESCAPED: &str = r#"{"query":"mutation { generateCustomer\u0054oken(email: \"a@example.com\", password: \"wrong\") { token } }"}"#;
    const COMMENTED: &str = r#"{"query":"mutation Q # x\n { t: generateCustomerToken # y\n (email: \"a@example.com\", password: \"wrong\") { token } }","operationName":"Other"}"#;
    let cases = [
        ("/index.php/graphql", TOKEN),
        ("//graphql", TOKEN),
        ("/graphql", ESCAPED),
        ("/graphql", COMMENTED),
        ("/index.php/graphql", ESCAPED),
    ];
    for (i, (path, body)) in cases.iter().enumerate() {
        let client = format!("198.51.100.{}", 10 + i);
        for n in 0..5 {
            let r = request(edge.addr, graphql_post(path, &client, body)).await;
            assert_ne!(r.status, 429, "{path} {body}: attempt {}", n + 1);
        }
        let r = request(edge.addr, graphql_post(path, &client, body)).await;
        assert_eq!(r.status, 429, "{path} {body}: 6th POST");
    }
    // Six password attempts in one request under aliases: over the quota at once.
    let aliased = format!(
        r#"{{"query":"mutation {{ {} }}"}}"#,
        (0..6)
            .map(|i| format!(
                r#"a{i}: generateCustomerToken(email: \"a@example.com\", password: \"p{i}\") {{ token }}"#
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let r = request(
        edge.addr,
        graphql_post("/graphql", "198.51.100.99", &aliased),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    // Queries are not limited, and PHP still gets their body.
    let products = r#"{"query":"{ products(filter: {sku: {eq: \"24-MB01\"}}) { total_count } }"}"#;
    for _ in 0..8 {
        let r = request(
            edge.addr,
            graphql_post("/graphql", "198.51.100.10", products),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    edge.shutdown().await;
}

/// A reload that adds a rule applies it, and the login counters survive it.
#[tokio::test]
async fn r13_reload_applies_new_rate_rules_and_keeps_counters() {
    let env = php_env();
    let base = || {
        settings(
            magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
            Some(env.storefront.join("pub")),
        )
    };
    let first = Arc::new(magestack_edge::Edge::new(base()).unwrap());
    let live = magestack_edge::LiveEdge::new(first);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = magestack_edge::server::Server::with_live(live.clone(), limits(), None);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.run(vec![listener], async move {
        let _ = stopped.await;
    }));
    let from = [("x-forwarded-for", "192.0.2.44")];
    for _ in 0..3 {
        assert_eq!(get_with(addr, "/_test/echo?a=1", &from).await.status, 200);
    }
    for n in 0..4 {
        let r = request(
            addr,
            form_post("/customer/account/loginPost/", "192.0.2.44"),
        )
        .await;
        assert_ne!(r.status, 429, "login attempt {}", n + 1);
    }
    let mut s = base();
    s.rate_limit = Some(magestack_edge::settings::RateLimitSpec {
        rules: vec![magestack_edge::settings::RateRuleSpec {
            name: "echo".into(),
            matcher: magestack_edge::settings::RuleMatch::Prefix("/_test/echo".into()),
            methods: vec![],
            limit: 2,
            period: Duration::from_secs(60),
        }],
        ..Default::default()
    });
    let next = magestack_edge::Edge::reloaded(s, &live.current()).unwrap();
    live.replace(Arc::new(next));
    assert_eq!(get_with(addr, "/_test/echo?a=2", &from).await.status, 200);
    assert_eq!(get_with(addr, "/_test/echo?a=3", &from).await.status, 200);
    let r = get_with(addr, "/_test/echo?a=4", &from).await;
    assert_eq!(r.status, 429, "the rule added by the reload");
    // Four login attempts before the reload, one left after it.
    let r = request(
        addr,
        form_post("/customer/account/loginPost/", "192.0.2.44"),
    )
    .await;
    assert_ne!(r.status, 429);
    let r = request(
        addr,
        form_post("/customer/account/loginPost/", "192.0.2.44"),
    )
    .await;
    assert_eq!(r.status, 429, "the reload gave a fresh quota");
    let _ = stop.send(());
    let _ = done.await;
}

/// IPv6 clients count per /64: rotating addresses inside one subscriber's
/// network does not reset the quota.
#[tokio::test]
async fn r13_ipv6_clients_are_counted_per_64() {
    let (edge, _env) = start_php().await;
    for i in 1..=5 {
        let client = format!("2001:db8:42:7::{i:x}");
        let r = request(
            edge.addr,
            form_post("/customer/account/loginPost/", &client),
        )
        .await;
        assert_ne!(r.status, 429, "{client}");
    }
    let r = request(
        edge.addr,
        form_post("/customer/account/loginPost/", "2001:db8:42:7:ffff:1:2:3"),
    )
    .await;
    assert_eq!(r.status, 429, "a sixth address of the same /64");
    let r = request(
        edge.addr,
        form_post("/customer/account/loginPost/", "2001:db8:42:8::1"),
    )
    .await;
    assert_ne!(r.status, 429, "another /64");
    edge.shutdown().await;
}
