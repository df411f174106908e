//! The binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_magestack"))
}

#[test]
fn check_reports_every_error_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:8080\"]\nmax_headers = \"many\"\n\n[upstream]\nurl = \"fcgi://127.0.0.1:9000\"\nconect_timeout_secs = 5\n",
    )
    .unwrap();
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":3:") && err.contains("server.max_headers"),
        "{err}"
    );
    assert!(
        err.contains(":7:") && err.contains("upstream.conect_timeout_secs"),
        "{err}"
    );
}

#[test]
fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/edge.toml");
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn wait_up(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "edge did not start on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PHP-FPM with the storefront, from `scripts/deps` (fails loudly when missing).
fn fpm_addr() -> String {
    std::env::var("MAGESTACK_FPM_ADDR").unwrap_or_else(|_| {
        panic!("MAGESTACK_FPM_ADDR is not set: run ./scripts/test (it starts PHP-FPM with the storefront)")
    })
}

/// `magestack edge` with flags only in front of the storefront, plus `extra` flags.
fn spawn_storefront_edge(addr: SocketAddr, extra: &[String]) -> Killed {
    let docroot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/storefront/pub");
    let child = bin()
        .args([
            "edge",
            "--listen",
            &addr.to_string(),
            "--upstream",
            &format!("fcgi://{}", fpm_addr()),
            "--docroot",
            docroot,
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
}

#[test]
fn edge_with_flags_only_serves_the_storefront_and_denies_secrets() {
    let addr = free_addr();
    let _guard = spawn_storefront_edge(addr, &[]);
    wait_up(addr);
    let home = http_get(addr, "/");
    assert!(home.starts_with("HTTP/1.1 200"), "{home}");
    for p in [
        "/app/etc/env.php",
        "/.git/config",
        "/cron.php",
        "/media/customer/x",
    ] {
        let r = http_get(addr, p);
        assert!(r.starts_with("HTTP/1.1 404"), "{p}: {r}");
    }
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let addr = free_addr();
    let mut child = bin()
        .args([
            "edge",
            "--listen",
            &addr.to_string(),
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_up(addr);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "edge did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn header_of(resp: &str, name: &str) -> Option<String> {
    resp.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    })
}

#[test]
fn purge_command_and_cache_stats_against_the_php_storefront() {
    let addr = free_addr();
    let admin = free_addr();
    let _guard = spawn_storefront_edge(addr, &["--admin-listen".to_string(), admin.to_string()]);
    wait_up(addr);
    // The cache is on with flags only, as a Varnish in Magento's place would be.
    let first = http_get(addr, "/women.html");
    assert_eq!(
        header_of(&first, "x-magento-cache-debug").as_deref(),
        Some("MISS"),
        "{first}"
    );
    let second = http_get(addr, "/women.html");
    assert_eq!(
        header_of(&second, "x-magento-cache-debug").as_deref(),
        Some("HIT")
    );
    assert!(
        header_of(&second, "x-magento-tags").is_none(),
        "tags never reach the browser"
    );
    let out = bin()
        .args(["purge", "--tags", "cat_c_4", "--edge", &addr.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("200 Purged"));
    let third = http_get(addr, "/women.html");
    assert_eq!(
        header_of(&third, "x-magento-cache-debug").as_deref(),
        Some("MISS")
    );
    wait_up(admin);
    let stats = http_get(admin, "/cache/stats");
    assert!(stats.contains("\"purges\":1"), "{stats}");
    assert!(stats.contains("\"hits\":1"), "{stats}");
}

fn sigterm(child: &Child) {
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// A rolling restart on one host: edge B binds the port of edge A
/// (`SO_REUSEPORT`) while wrk drives load, then A gets SIGTERM and drains.
/// wrk must see no socket error and no non-2xx answer.
#[test]
fn rolling_restart_on_the_same_port_loses_no_request_under_wrk() {
    let wrk = std::env::var("MAGESTACK_WRK").unwrap_or_else(|_| {
        panic!("MAGESTACK_WRK is not set: run ./scripts/test (scripts/deps installs wrk)")
    });
    let addr = free_addr();
    let mut a = spawn_storefront_edge(addr, &[]);
    wait_up(addr);
    // Warm the page: wrk then measures cached hits.
    let _ = http_get(addr, "/women/tops.html");
    let load = Command::new(&wrk)
        .args(["-t2", "-c32", "-d5s", "--timeout", "5s"])
        .arg(format!("http://{addr}/women/tops.html"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _b = spawn_storefront_edge(addr, &[]);
    // B shares the port, so a connect cannot tell when it listens; it binds
    // within milliseconds of starting.
    std::thread::sleep(Duration::from_millis(700));
    sigterm(&a.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = a.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "old edge did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "old edge exit {status:?}");
    let out = load.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    assert!(requests > 1_000, "{text}");
    assert!(!text.contains("Socket errors"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    // After the takeover the port is still served (by B).
    assert!(http_get(addr, "/women/tops.html").starts_with("HTTP/1.1 200"));
}
