//! Releases in the cache (issue 18): an edge's release (its docroot's
//! `static/deployed_version.txt`) is part of every cache key, so edges of two
//! releases sharing one Redis L2 never exchange pages, and a purge reaches
//! both namespaces. Real PHP-FPM and Redis (`scripts/deps`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::storefront_release;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{edge_command, env, free_addr, http_raw, wait_up, Killed};

fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let r = http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
    );
    let debug = r
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-magento-cache-debug")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "none".into());
    (debug, r)
}

/// The release a storefront page was rendered by (its marker).
fn marker(page: &str) -> &str {
    let key = "<meta name=\"magestack-release\" content=\"";
    let at = page
        .find(key)
        .unwrap_or_else(|| panic!("no release marker in:\n{page}"));
    let rest = &page[at + key.len()..];
    &rest[..rest.find('"').unwrap()]
}

fn metric(admin: SocketAddr, prefix: &str) -> Option<String> {
    let m = http_raw(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    m.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Edge {
    addr: SocketAddr,
    admin: SocketAddr,
    _guard: Killed,
    _config: tempfile::TempPath,
}

/// An edge in front of `docroot` on the shared Redis with L2, once its bus is up.
fn spawn_edge(docroot: &Path, channel: &str) -> Edge {
    let (addr, admin) = (free_addr(), free_addr());
    let (mut cmd, config) = edge_command(
        &format!("[cluster]\nchannel = \"{channel}\"\nl2 = true\n"),
        addr,
        admin,
        docroot.to_str().unwrap(),
    );
    cmd.args(["--redis", &env("MAGESTACK_REDIS_URL")]);
    let mut guard = Killed::spawn(cmd);
    guard.wait_up(addr);
    wait_up(admin);
    wait_until("the purge bus", || {
        metric(admin, "magestack_purge_bus_connected ").as_deref() == Some("1")
    });
    Edge {
        addr,
        admin,
        _guard: guard,
        _config: config,
    }
}

/// Two edges of different releases on one Redis (L2 on) never exchange
/// pages; a third edge of the first release is warm from L2 (so the
/// isolation is the namespace, not a cold L2); one purge removes the page
/// from both namespaces.
#[test]
fn r18_edges_of_two_releases_on_one_redis_never_exchange_pages() {
    let channel = format!("magestack:test-release:{}", std::process::id());
    let (rel_a, rel_b) = ("1000000001", "1000000002");
    let (root_a, root_b) = (storefront_release(rel_a), storefront_release(rel_b));
    let a = spawn_edge(&root_a.path().join("pub"), &channel);
    let b = spawn_edge(&root_b.path().join("pub"), &channel);
    let path = "/women.html?release-test=1";

    let (debug, page) = get(a.addr, path);
    assert_eq!((debug.as_str(), marker(&page)), ("MISS", rel_a));
    assert_eq!(get(a.addr, path).0, "HIT");
    wait_until("edge A's copy in L2", || {
        metric(a.admin, "magestack_l2_written_bytes_total ").is_some_and(|v| v != "0")
    });

    // Release B misses (locally and in L2) and renders its own page.
    let (debug, page) = get(b.addr, path);
    assert_eq!(
        (debug.as_str(), marker(&page)),
        ("MISS", rel_b),
        "release B must never get release A's page"
    );
    let (debug, page) = get(b.addr, path);
    assert_eq!((debug.as_str(), marker(&page)), ("HIT", rel_b));
    wait_until("edge B's copy in L2", || {
        metric(b.admin, "magestack_l2_written_bytes_total ").is_some_and(|v| v != "0")
    });

    // A new edge of release A is warm from L2, with A's page, never B's.
    let a2 = spawn_edge(&root_a.path().join("pub"), &channel);
    let (debug, page) = get(a2.addr, path);
    assert_eq!(
        (debug.as_str(), marker(&page)),
        ("HIT", rel_a),
        "A's page from L2"
    );
    // ... and so is one of release B, with B's.
    let b2 = spawn_edge(&root_b.path().join("pub"), &channel);
    let (debug, page) = get(b2.addr, path);
    assert_eq!(
        (debug.as_str(), marker(&page)),
        ("HIT", rel_b),
        "B's page from L2"
    );

    // One purge (sent to edge A) removes the page in both namespaces:
    // once the others applied it, edge A and edge B both miss, which means
    // neither their own store nor L2 (looked up on a local miss) held it.
    let applied = |e: &Edge| {
        metric(
            e.admin,
            "magestack_purge_bus_messages_total{kind=\"applied\"} ",
        )
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
    };
    let before: Vec<u64> = [&b, &a2, &b2].iter().map(|e| applied(e)).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_magestack"))
        .args(["purge", "--tags", "cat_c_3", "--edge", &a.addr.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (e, n) in [&b, &a2, &b2].iter().zip(before) {
        wait_until("the purge on every edge", || applied(e) > n);
    }
    let (debug, page) = get(a.addr, path);
    assert_eq!(
        (debug.as_str(), marker(&page)),
        ("MISS", rel_a),
        "purged in A's namespace"
    );
    let (debug, page) = get(b.addr, path);
    assert_eq!(
        (debug.as_str(), marker(&page)),
        ("MISS", rel_b),
        "purged in B's namespace"
    );
    // Whatever the others serve now is their own release's page.
    assert_eq!(marker(&get(a2.addr, path).1), rel_a);
    assert_eq!(marker(&get(b2.addr, path).1), rel_b);
}
