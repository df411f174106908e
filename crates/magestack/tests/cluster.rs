//! Many edges as one cache: three `magestack edge` processes share purges
//! through a real Redis (`scripts/deps` starts one; MAGESTACK_REDIS_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{edge_command, env, free_addr, http_raw, storefront_pub, wait_up, Killed};

fn cache_status(addr: SocketAddr, path: &str) -> String {
    let r = http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
    );
    r.lines()
        .find_map(|l| {
            l.strip_prefix("x-magento-cache-debug: ")
                .or_else(|| l.strip_prefix("X-Magento-Cache-Debug: "))
        })
        .unwrap_or("none")
        .trim()
        .to_owned()
}

/// An edge in front of the storefront, on the purge bus of `redis`; returns
/// once it listens and its bus is connected.
fn spawn_edge(addr: SocketAddr, admin: SocketAddr, redis: &str, channel: &str) -> Killed {
    let docroot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/storefront/pub");
    let config = std::env::temp_dir().join(format!(
        "magestack-cluster-{}-{}.toml",
        std::process::id(),
        addr.port()
    ));
    std::fs::write(&config, format!("[cluster]\nchannel = \"{channel}\"\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_magestack"));
    cmd.args([
        "edge",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
        "--admin-listen",
        &admin.to_string(),
        "--upstream",
        &format!("fcgi://{}", env("MAGESTACK_FPM_ADDR")),
        "--docroot",
        docroot,
        "--redis",
        redis,
    ]);
    let mut edge = Killed::spawn(cmd);
    edge.wait_up(addr);
    wait_bus(admin);
    edge
}

/// Waits until the edge's purge bus is subscribed (its metrics say so).
fn wait_bus(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        wait_up(admin);
        let m = http_raw(
            admin,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if m.contains("magestack_purge_bus_connected 1") {
            return;
        }
        assert!(Instant::now() < deadline, "purge bus not connected:\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Others' purges this edge applied from the bus.
fn applied(admin: SocketAddr) -> u64 {
    let m = http_raw(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    m.lines()
        .find_map(|l| l.strip_prefix("magestack_purge_bus_messages_total{kind=\"applied\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no applied counter in:\n{m}"))
}

fn purge(edge: SocketAddr, tags: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_magestack"))
        .args(["purge", "--tags", tags, "--edge", &edge.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PURGE sent to edge 1 evicts the page on edges 2 and 3 too, within
/// 100 ms of edge 1's answer (measured by polling them).
#[test]
fn a_purge_sent_to_one_edge_reaches_all_three_within_100_ms() {
    let redis = env("MAGESTACK_REDIS_URL");
    let channel = format!("magestack:test:{}", std::process::id());
    let edges: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let _guards: Vec<Killed> = edges
        .iter()
        .map(|(a, m)| spawn_edge(*a, *m, &redis, &channel))
        .collect();
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let path = format!("/women.html?round={round}");
        for (a, _) in &edges {
            cache_status(*a, &path);
            assert_eq!(cache_status(*a, &path), "HIT", "warm on {a}");
        }
        let before: Vec<u64> = edges[1..].iter().map(|(_, m)| applied(*m)).collect();
        let sent = Instant::now();
        purge(edges[0].0, "cat_c_3");
        let answered = Instant::now();
        // Applied on the others: their bus counter moved (cheap to poll).
        for ((_, m), b) in edges[1..].iter().zip(&before) {
            while applied(*m) == *b {
                assert!(
                    sent.elapsed() < Duration::from_secs(5),
                    "purge never reached {m}"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let lag = answered.elapsed();
        worst = worst.max(lag);
        // And the page is really gone everywhere.
        for (a, _) in &edges {
            assert_eq!(cache_status(*a, &path), "MISS", "purged on {a}");
        }
        println!("round {round}: purge applied on all 3 edges {lag:?} after edge 1 answered ({:?} after it was sent)", sent.elapsed());
    }
    println!("purge fan-out across 3 edges: worst {worst:?}");
    assert!(worst < Duration::from_millis(100), "fan-out took {worst:?}");
}

fn purged_urls(admin: SocketAddr) -> Vec<String> {
    let r = http_raw(
        admin,
        "GET /cache/purged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let body = r.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let list: Vec<serde_json::Value> =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {r}"));
    let mut urls: Vec<String> = list
        .iter()
        .map(|e| e["url"].as_str().unwrap().to_owned())
        .collect();
    urls.sort();
    urls
}

/// The list of recently purged popular pages (`warm --after-purge`) is
/// kept by every replica: purges arriving on the bus fill it as local ones
/// do, and so do soft purges of the admin API.
#[test]
fn purges_from_the_bus_and_the_admin_api_list_the_popular_pages_they_removed() {
    let redis = env("MAGESTACK_REDIS_URL");
    let channel = format!("magestack:test:purged:{}", std::process::id());
    let edges: Vec<(SocketAddr, SocketAddr)> = (0..2).map(|_| (free_addr(), free_addr())).collect();
    let _guards: Vec<Killed> = edges
        .iter()
        .map(|(a, m)| spawn_edge(*a, *m, &redis, &channel))
        .collect();
    let (a2, m2) = edges[1];
    cache_status(a2, "/about-us");
    assert_eq!(cache_status(a2, "/about-us"), "HIT");
    cache_status(a2, "/privacy-policy-cookie-restriction-mode"); // once: not popular
    let before = applied(m2);
    purge(edges[0].0, "cms_p_5");
    let sent = Instant::now();
    while applied(m2) == before {
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "the purge never reached {m2}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(purged_urls(m2), ["/about-us"]);
    // The admin API, soft: the object stays for grace, its URL is listed.
    cache_status(a2, "/gear.html");
    assert_eq!(cache_status(a2, "/gear.html"), "HIT");
    let r = http_raw(
        m2,
        "POST /admin/purge?tags=cat_c_6&soft=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(purged_urls(m2), ["/about-us", "/gear.html"]);
}

/// A TCP proxy to Redis the test can cut: `pause` closes every connection
/// and refuses new ones, `resume` lets them through again.
struct CutProxy {
    addr: SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl CutProxy {
    fn start(target: SocketAddr) -> CutProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                c.lock().unwrap().push(client.try_clone().unwrap());
                c.lock().unwrap().push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CutProxy { addr, open, conns }
    }

    fn pause(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn resume(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn metric(admin: SocketAddr, line_prefix: &str) -> Option<String> {
    let m = http_raw(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    m.lines()
        .find_map(|l| l.strip_prefix(line_prefix).map(|v| v.trim().to_owned()))
}

fn wait_metric(admin: SocketAddr, line_prefix: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(admin, line_prefix).as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{line_prefix} never became {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Edge 3 loses Redis; a purge sent to edge 1 meanwhile cannot reach it.
/// When it reconnects it sees the purge counter moved and marks its cache
/// stale, so the purged page is never served from it as fresh again.
#[test]
fn a_purge_missed_while_disconnected_never_leaves_a_fresh_stale_page() {
    let redis = env("MAGESTACK_REDIS_URL");
    let target: SocketAddr = redis.trim_start_matches("redis://").parse().unwrap();
    let proxy = CutProxy::start(target);
    let channel = format!("magestack:test-gap:{}", std::process::id());
    let edges: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let urls = [
        redis.clone(),
        redis.clone(),
        format!("redis://{}", proxy.addr),
    ];
    let _guards: Vec<Killed> = edges
        .iter()
        .zip(&urls)
        .map(|((a, m), u)| spawn_edge(*a, *m, u, &channel))
        .collect();
    let path = "/women/tops.html?gap=1";
    for (a, _) in &edges {
        cache_status(*a, path);
        assert_eq!(cache_status(*a, path), "HIT");
    }
    let (edge3, admin3) = edges[2];
    proxy.pause();
    wait_metric(admin3, "magestack_purge_bus_connected ", "0");
    purge(edges[0].0, "cat_c_4");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache_status(edges[1].0, path) == "HIT" {
        assert!(Instant::now() < deadline, "edge 2 never got the purge");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Disconnected, edge 3 keeps serving what it has (documented trade-off).
    assert_eq!(cache_status(edge3, path), "HIT");
    proxy.resume();
    wait_metric(admin3, "magestack_purge_bus_connected ", "1");
    assert_eq!(
        metric(admin3, "magestack_purge_bus_gaps_total ").as_deref(),
        Some("1"),
        "the missed purge was noticed"
    );
    // Never fresh again: a miss, or a stale copy marked by the Grace header
    // while it is refetched.
    let r = http_raw(
        edge3,
        &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
    );
    let lower = r.to_ascii_lowercase();
    let hit = lower.contains("x-magento-cache-debug: hit");
    assert!(
        !hit || lower.contains("\r\ngrace: "),
        "edge 3 served the purged page as fresh:\n{r}"
    );
}

/// A private redis-server the test may kill and restart on the same port.
fn start_redis(port: u16) -> Killed {
    let server = env("MAGESTACK_REDIS_SERVER");
    let dir = std::env::temp_dir();
    let mut cmd = Command::new(server);
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let mut redis = Killed::spawn(cmd);
    redis.wait_up(format!("127.0.0.1:{port}").parse().unwrap());
    redis
}

/// Redis killed and restarted under load: every request is still answered
/// 200, the replicas reconnect, and a purge after the restart still reaches
/// all of them.
#[test]
fn redis_killed_and_restarted_under_load_fails_no_request() {
    let port = free_addr().port();
    let mut redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}");
    let channel = format!("magestack:test-kill:{}", std::process::id());
    let edges: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let _guards: Vec<Killed> = edges
        .iter()
        .map(|(a, m)| spawn_edge(*a, *m, &url, &channel))
        .collect();
    purge(edges[0].0, "cat_c_5"); // a number on the counter before the restart
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = edges
        .iter()
        .map(|(a, _)| {
            let (a, stop) = (*a, stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let path =
                        ["/women.html", "/women/bottoms.html", "/sale.html", "/"][n as usize % 4];
                    let r = http_raw(
                        a,
                        &format!(
                            "GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
                        ),
                    );
                    if r.starts_with("HTTP/1.1 200") {
                        ok += 1;
                    } else {
                        failed.push(r.lines().next().unwrap_or("<nothing>").to_owned());
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    for (_, m) in &edges {
        wait_metric(*m, "magestack_purge_bus_connected ", "0");
    }
    std::thread::sleep(Duration::from_millis(1000));
    redis = start_redis(port);
    for (_, m) in &edges {
        wait_bus(*m);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for t in load {
        let (ok, failed) = t.join().unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during the Redis restart: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 100, "load ran: {total} requests");
    // The restarted Redis lost the counter: each replica noticed a gap.
    for (_, m) in &edges {
        let gaps: u64 = metric(*m, "magestack_purge_bus_gaps_total ")
            .unwrap()
            .parse()
            .unwrap();
        assert!(gaps >= 1, "gap after the restart not noticed on {m}");
    }
    // The bus works again.
    let path = "/gear.html?after=restart";
    for (a, _) in &edges {
        cache_status(*a, path);
        assert_eq!(cache_status(*a, path), "HIT");
    }
    purge(edges[1].0, "cat_c_6");
    let deadline = Instant::now() + Duration::from_secs(5);
    for (a, _) in &edges {
        while cache_status(*a, path) == "HIT" {
            assert!(
                Instant::now() < deadline,
                "purge after restart did not reach {a}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    println!("redis restart under load: {total} requests, 0 failed");
    drop(redis);
}

/// With L2 on, a fourth edge started after three others warmed the cache
/// serves those pages from its first request without asking PHP; a tag purge
/// removes them from L2 as well.
#[test]
fn a_new_edge_is_warm_from_l2_and_purges_reach_l2() {
    let redis = env("MAGESTACK_REDIS_URL");
    let channel = format!("magestack:test-l2:{}", std::process::id());
    let spawn_l2 = |a: SocketAddr, m: SocketAddr| {
        let (mut cmd, config) = edge_command(
            &format!("[cluster]\nchannel = \"{channel}\"\nl2 = true\n"),
            a,
            m,
            storefront_pub(),
        );
        cmd.args(["--redis", &redis]);
        let mut edge = Killed::spawn(cmd);
        edge.wait_up(a);
        wait_bus(m);
        (edge, config)
    };
    let edges: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let mut guards: Vec<(Killed, tempfile::TempPath)> =
        edges.iter().map(|(a, m)| spawn_l2(*a, *m)).collect();
    let warm = [
        "/women.html?l2=1",
        "/women/tops.html?l2=1",
        "/sale.html?l2=1",
        "/product/WS02.html?l2=1",
    ];
    for (i, p) in warm.iter().enumerate() {
        let (a, m) = edges[i % 3];
        assert_eq!(cache_status(a, p), "MISS");
        // Written to L2 in the background: wait for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(m, "magestack_l2_written_bytes_total ").is_none_or(|v| v == "0") {
            assert!(Instant::now() < deadline, "nothing written to L2");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let (a4, m4) = (free_addr(), free_addr());
    guards.push(spawn_l2(a4, m4));
    for p in warm {
        assert_eq!(cache_status(a4, p), "HIT", "{p} from L2 on the new edge");
    }
    assert_eq!(
        metric(m4, "magestack_l2_lookups_total{result=\"hit\"} ").as_deref(),
        Some("4")
    );
    let php = metric(m4, "magestack_cache_misses_total ").unwrap_or_default();
    assert_eq!(php, "0", "the new edge asked PHP");
    // A tag purge reaches L2: a fifth edge does not find the Women page
    // (its listing tag), and still finds Tops.
    purge(edges[0].0, "cat_c_p_3");
    let (a5, m5) = (free_addr(), free_addr());
    guards.push(spawn_l2(a5, m5));
    assert_eq!(
        cache_status(a5, "/women.html?l2=1"),
        "MISS",
        "purged from L2"
    );
    assert_eq!(
        cache_status(a5, "/women/tops.html?l2=1"),
        "HIT",
        "other pages stay in L2"
    );
}
