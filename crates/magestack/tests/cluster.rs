//! Many edges as one cache: three `magestack edge` processes share purges
//! through a real Redis (`scripts/deps` starts one; MAGESTACK_REDIS_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test (it starts PHP-FPM and Redis)")
    })
}

fn http_raw(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

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

fn wait_up(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "edge did not start on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An edge in front of the storefront, on the purge bus of `redis`.
fn spawn_edge(addr: SocketAddr, admin: SocketAddr, redis: &str, channel: &str) -> Killed {
    let docroot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/storefront/pub");
    let config = std::env::temp_dir().join(format!(
        "magestack-cluster-{}-{}.toml",
        std::process::id(),
        addr.port()
    ));
    std::fs::write(&config, format!("[cluster]\nchannel = \"{channel}\"\n")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_magestack"))
        .args([
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
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
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
    for (a, m) in &edges {
        wait_up(*a);
        wait_bus(*m);
    }
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
