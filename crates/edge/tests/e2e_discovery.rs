//! DNS discovery of pool endpoints, end to end: a pool whose endpoint is a
//! host name (a Kubernetes headless Service), a nameserver on loopback that
//! this test controls, two real PHP-FPM masters on two loopback addresses,
//! and load running the whole time. An address added to DNS joins the pool;
//! one removed drains and is then stopped; a nameserver failure changes
//! nothing; not one request fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use magestack_edge::settings::PoolSpec;
use magestack_edge::{Edge, UpstreamTarget};
use support::*;
use tokio::net::UdpSocket;

const NAME: &str = "php-fpm.shop.magestack.test";

/// What the test's nameserver answers for [`NAME`].
#[derive(Clone, Debug)]
enum Answer {
    /// These A records (TTL 0).
    A(Vec<Ipv4Addr>),
    /// SERVFAIL, as a nameserver in trouble.
    ServFail,
}

/// A DNS server of the test's own on loopback: A records for [`NAME`] as
/// the test sets them, NXDOMAIN for any other name, no data for other types.
/// Counts the queries for [`NAME`] it answered.
struct Nameserver {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    queries: Arc<AtomicU64>,
}

impl Nameserver {
    async fn start(initial: Answer) -> Nameserver {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(initial));
        let queries = Arc::new(AtomicU64::new(0));
        let (a, q) = (answer.clone(), queries.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let current = a.lock().unwrap().clone();
                if let Some((reply, ours)) = respond(&buf[..n], &current) {
                    if ours {
                        q.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        });
        Nameserver {
            addr,
            answer,
            queries,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

/// The reply to one query (RFC 1035 §4.1), and whether it asked for [`NAME`].
fn respond(query: &[u8], answer: &Answer) -> Option<(Vec<u8>, bool)> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question_end = i + 4;
    query.get(..question_end)?;
    let ours = labels.join(".") == NAME;
    let (rcode, records): (u8, Vec<Ipv4Addr>) = match (ours, answer) {
        (false, _) => (3, Vec::new()),
        (true, Answer::ServFail) => (2, Vec::new()),
        (true, Answer::A(ips)) if qtype == 1 => (0, ips.clone()),
        (true, Answer::A(_)) => (0, Vec::new()),
    };
    let mut r = Vec::with_capacity(question_end + 16 * records.len());
    r.extend_from_slice(&query[..2]); // id
    let rd = query[2] & 0x01;
    r.push(0x80 | 0x04 | rd); // QR, AA, RD copied
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&[0, 1]); // one question
    r.extend_from_slice(&u16::try_from(records.len()).ok()?.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    r.extend_from_slice(&query[12..question_end]);
    for ip in records {
        r.extend_from_slice(&[0xC0, 12]); // the name, by pointer
        r.extend_from_slice(&[0, 1, 0, 1]); // A, IN
        r.extend_from_slice(&[0, 0, 0, 0]); // TTL 0
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some((r, ours))
}

/// Requests PHP-FPM at `host` accepted since it started, read from its own
/// status page (not through the edge).
async fn accepted(host: &str, status_port: u16) -> u64 {
    let client = magestack_fastcgi::Client::new(
        magestack_fastcgi::Endpoint::Tcp(format!("{host}:{status_port}")),
        magestack_fastcgi::ClientConfig {
            max_idle: 0,
            ..Default::default()
        },
    );
    magestack_fastcgi::fetch_status(&client, "/status")
        .await
        .unwrap_or_else(|e| panic!("status of the FPM at {host}: {e}"))
        .accepted_conn
}

/// The pool's endpoints as `/pools` shows them: (address, state, health).
async fn endpoints(admin: SocketAddr) -> Vec<(String, String, String)> {
    let pools: serde_json::Value =
        serde_json::from_str(&get(admin, "/pools").await.text()).unwrap();
    pools[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
                e["health"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_join_and_drain_as_dns_changes_under_load() {
    let env = php_env();
    let (a_ip, b_ip) = ("127.0.0.2", "127.0.0.3");
    // One port for both FPMs, as in a headless Service: DNS gives addresses.
    let (port, status_port) = (free_port(), free_port());
    let fpm_a = start_fpm(
        &env.storefront,
        &[FpmPool {
            host: a_ip,
            status_port: Some(status_port),
            ..FpmPool::new("frontend", port, 4)
        }],
    );
    let dns = Nameserver::start(Answer::A(vec![a_ip.parse().unwrap()])).await;

    let mut s = settings(
        UpstreamTarget::FastCgiTcp(format!("{NAME}:{port}")),
        Some(env.storefront.join("pub")),
    );
    s.dns_servers = vec![dns.addr];
    s.pools = vec![PoolSpec {
        max_inflight: 8,
        queue_size: 256,
        status_path: Some("/status".into()),
        // The same name: each address's own status port.
        status_endpoints: vec![UpstreamTarget::FastCgiTcp(format!("{NAME}:{status_port}"))],
        check_interval: Duration::from_millis(200),
        unhealthy_after: 2,
        resolve_interval: Duration::from_millis(200),
        ..pool_spec(vec![UpstreamTarget::FastCgiTcp(format!("{NAME}:{port}"))])
    }];
    let edge = Arc::new(Edge::new(s).unwrap());
    edge.start_background();
    let admin = spawn_admin(magestack_edge::LiveEdge::new(edge.clone())).await;
    let server = start_existing(edge.clone()).await;
    let a_label = format!("{a_ip}:{port}");
    let b_label = format!("{b_ip}:{port}");
    wait_until(
        "the first address found and healthy",
        Duration::from_secs(5),
        || async {
            endpoints(admin).await == vec![(a_label.clone(), "active".into(), "healthy".into())]
        },
    )
    .await;
    assert_eq!(get(admin, "/readyz").await.status, 200);

    // Load for the whole test: every answer must be PHP's 200.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for _ in 0..6 {
        let (stop, ok, failed, failures) =
            (stop.clone(), ok.clone(), failed.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = get(server, "/").await;
                if r.status == 200 && r.header("x-magento-tags").is_some() {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", r.status, r.text()));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a_before_b = accepted(a_ip, status_port).await;
    assert!(a_before_b > 0);

    // A second address appears before its PHP-FPM listens (a pod published
    // too early): it stays out of rotation, nothing fails.
    dns.set(Answer::A(vec![
        a_ip.parse().unwrap(),
        b_ip.parse().unwrap(),
    ]));
    let b_joining = || async {
        endpoints(admin)
            .await
            .iter()
            .any(|(ep, state, _)| *ep == b_label && state == "joining")
    };
    wait_until(
        "the second address found, joining",
        Duration::from_secs(5),
        b_joining,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        b_joining().await,
        "an address whose FPM does not listen must not join"
    );
    // Its FPM starts: the address joins the pool and takes work.
    let fpm_b = start_fpm(
        &env.storefront,
        &[FpmPool {
            host: b_ip,
            status_port: Some(status_port),
            ..FpmPool::new("frontend", port, 4)
        }],
    );
    wait_until(
        "the second address joined and serving",
        Duration::from_secs(5),
        || async {
            let eps = endpoints(admin).await;
            eps.len() == 2
                && eps
                    .iter()
                    .all(|(_, state, health)| state == "active" && health == "healthy")
        },
    )
    .await;
    wait_until(
        "the second FPM taking requests",
        Duration::from_secs(5),
        || async { accepted(b_ip, status_port).await > 20 },
    )
    .await;

    // The nameserver fails for a while: nothing changes, nothing fails.
    let queries = dns.queries.load(Ordering::Relaxed);
    dns.set(Answer::ServFail);
    wait_until("lookups failing", Duration::from_secs(5), || async {
        // A failed lookup is counted once the resolver gives up on its
        // retries, not at the first SERVFAIL it reads.
        let pools: serde_json::Value =
            serde_json::from_str(&get(admin, "/pools").await.text()).unwrap_or_default();
        dns.queries.load(Ordering::Relaxed) >= queries + 3
            && pools[0]["dns_lookups_failed"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(
        endpoints(admin).await.len(),
        2,
        "a failed lookup must keep the endpoints"
    );

    // The first pod is going away: removed from DNS, it drains, then stops.
    dns.set(Answer::A(vec![b_ip.parse().unwrap()]));
    wait_until(
        "the first address gone from the pool",
        Duration::from_secs(5),
        || async {
            endpoints(admin).await == vec![(b_label.clone(), "active".into(), "healthy".into())]
        },
    )
    .await;
    let a_after_drain = accepted(a_ip, status_port).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        accepted(a_ip, status_port).await,
        a_after_drain,
        "a drained endpoint must get no new requests"
    );
    drop(fpm_a);
    let b_mark = accepted(b_ip, status_port).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(accepted(b_ip, status_port).await > b_mark + 20);

    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "{ok} requests answered 200, {failed} failed; FPM a accepted {a_after_drain}, b {}",
        accepted(b_ip, status_port).await
    );
    assert_eq!(
        failed,
        0,
        "failed requests: {:?}",
        failures.lock().unwrap().iter().take(5).collect::<Vec<_>>()
    );
    assert!(ok > 200, "too little load to tell: {ok}");

    let pools: serde_json::Value =
        serde_json::from_str(&get(admin, "/pools").await.text()).unwrap();
    // At least the two joins and the one removal (a lookup may also have
    // answered while the nameserver's answer was being switched).
    assert!(
        pools[0]["endpoints_added"].as_u64().unwrap() >= 2,
        "{pools}"
    );
    assert!(
        pools[0]["endpoints_removed"].as_u64().unwrap() >= 1,
        "{pools}"
    );
    assert!(
        pools[0]["dns_lookups_failed"].as_u64().unwrap() >= 1,
        "{pools}"
    );
    let metrics = get(admin, "/metrics").await.text();
    assert!(
        metrics.contains("magestack_pool_endpoints{pool=\"frontend\",state=\"active\"} 1"),
        "{metrics}"
    );
    assert!(metrics
        .contains("magestack_pool_endpoint_changes_total{pool=\"frontend\",change=\"removed\"}"));
    drop(fpm_b);
}

#[tokio::test]
async fn a_name_that_never_resolves_is_not_ready_and_answers_503() {
    let env = php_env();
    let dns = Nameserver::start(Answer::ServFail).await;
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(format!("{NAME}:9")),
        Some(env.storefront.join("pub")),
    );
    s.dns_servers = vec![dns.addr];
    s.pools = vec![PoolSpec {
        max_inflight: 2,
        queue_size: 4,
        queue_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_millis(200),
        check_interval: Duration::from_millis(200),
        unhealthy_after: 1,
        resolve_interval: Duration::from_millis(200),
        ..pool_spec(vec![UpstreamTarget::FastCgiTcp(format!("{NAME}:9"))])
    }];
    let edge = Arc::new(Edge::new(s).unwrap());
    edge.start_background();
    let admin = spawn_admin(magestack_edge::LiveEdge::new(edge.clone())).await;
    let running = start_existing(edge.clone()).await;
    wait_until("a failed lookup", Duration::from_secs(5), || async {
        dns.queries.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert_eq!(get(admin, "/readyz").await.status, 503);
    let r = get(running, "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
}

/// Serves `edge` on an ephemeral port until the test ends.
async fn start_existing(edge: Arc<Edge>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = magestack_edge::Server::new(edge, limits(), None);
    tokio::spawn(srv.run(vec![listener], std::future::pending::<()>()));
    addr
}

/// A pod that died before DNS and the health checks noticed: its connection
/// is refused, PHP saw nothing, and the request goes to the next endpoint
/// (nginx's `fastcgi_next_upstream error`), also with a body. After
/// `unhealthy_after` refusals the endpoint is out without waiting for a check.
#[tokio::test]
async fn a_refused_connection_goes_to_the_next_endpoint() {
    let env = php_env();
    let dead = dead_port();
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    // No check runs during the test (pool_spec): only the refusals tell.
    s.pools = vec![pool_spec(vec![
        UpstreamTarget::FastCgiTcp(dead.clone()),
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
    ])];
    let edge = Arc::new(Edge::new(s).unwrap());
    let admin = spawn_admin(magestack_edge::LiveEdge::new(edge.clone())).await;
    let addr = start_existing(edge.clone()).await;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..40 {
        let r = if i % 2 == 0 {
            get(addr, "/").await
        } else {
            let req = http::Request::post("/_test/echo")
                .header("host", "shop.test")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"q=tee&x=1",
                )))
                .unwrap();
            let r = request(addr, req).await;
            // The body reached PHP whole on the second endpoint.
            let echoed: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
            assert_eq!(
                echoed["body_length"].to_string().trim_matches('"'),
                "9",
                "{echoed}"
            );
            r
        };
        *statuses.entry(r.status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "{statuses:?}"
    );
    let eps = endpoints(admin).await;
    assert!(
        eps.contains(&(dead.clone(), "active".into(), "unhealthy".into())),
        "{eps:?}"
    );
}

/// Several fixed endpoints, one of them down: every request lands on the other,
/// more at once than it has children. Its kept-alive idle connections must not
/// hold every child while fresh connections wait behind them in FPM's backlog
/// (the pool's cap bounds the pool, not one endpoint's share).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_endpoint_of_several_never_stalls_behind_idle_connections() {
    let env = php_env();
    let port = free_port();
    let _fpm = start_fpm(&env.storefront, &[FpmPool::new("frontend", port, 2)]);
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(format!("127.0.0.1:{port}")),
        Some(env.storefront.join("pub")),
    );
    s.pools = vec![PoolSpec {
        // Refusals never take the dead one out: half the requests are rerouted.
        unhealthy_after: 1_000_000,
        ..pool_spec(vec![
            UpstreamTarget::FastCgiTcp(dead_port()),
            UpstreamTarget::FastCgiTcp(format!("127.0.0.1:{port}")),
        ])
    }];
    let addr = start_existing(Arc::new(Edge::new(s).unwrap())).await;
    let slow = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    let started = Instant::now();
                    let r = get(addr, "/").await;
                    assert_eq!(r.status, 200, "{}", r.text());
                    if started.elapsed() > Duration::from_secs(2) {
                        slow.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        slow.load(Ordering::Relaxed),
        0,
        "requests stalled behind idle connections"
    );
}
