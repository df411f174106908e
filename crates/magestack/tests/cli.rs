//! The binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_addr, http_raw, wait_up, Killed};

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

fn http_get(addr: SocketAddr, path: &str) -> String {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
    )
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
    let mut cmd = bin();
    cmd.args([
        "edge",
        "--listen",
        &addr.to_string(),
        "--upstream",
        &format!("fcgi://{}", fpm_addr()),
        "--docroot",
        docroot,
    ])
    .args(extra);
    Killed::spawn(cmd)
}

#[test]
fn edge_with_flags_only_serves_the_storefront_and_denies_secrets() {
    let addr = free_addr();
    let mut guard = spawn_storefront_edge(addr, &[]);
    guard.wait_up(addr);
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
    let mut guard = spawn_storefront_edge(addr, &["--admin-listen".to_string(), admin.to_string()]);
    guard.wait_up(addr);
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
    a.wait_up(addr);
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
    sigterm(&a.child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
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

/// One request on a kept-alive connection; returns the status line.
fn keepalive_get(s: &mut TcpStream, path: &str) -> String {
    write!(s, "GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert_eq!(
            n,
            1,
            "connection closed; head so far: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = header_of(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head.lines().next().unwrap().to_owned()
}

fn http_post(addr: SocketAddr, path: &str) -> String {
    http_raw(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn pool_max_inflight(admin: SocketAddr) -> u64 {
    let r = http_get(admin, "/pools");
    let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {r}"));
    v[0]["max_inflight"].as_u64().unwrap()
}

#[test]
fn reload_applies_pool_limits_keeps_connections_and_refuses_a_broken_file() {
    let addr = free_addr();
    let admin = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let docroot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/storefront/pub");
    let config = |max: u32, extra: &str| {
        format!(
            "[server]\nlisten = [\"{addr}\"]\nadmin_listen = \"{admin}\"\n\
             [magento]\ndocroot = \"{docroot}\"\n\
             [upstream]\nurl = \"fcgi://{fpm}\"\n\
             [pools.frontend]\nmax_inflight = {max}\n{extra}",
            fpm = fpm_addr()
        )
    };
    std::fs::write(&path, config(4, "")).unwrap();
    let mut cmd = bin();
    cmd.args(["edge", "--config"]).arg(&path);
    let mut edge = Killed::spawn(cmd);
    edge.wait_up(addr);
    edge.wait_up(admin);
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let file = "/media/wysiwyg/readme.txt";
    assert!(keepalive_get(&mut conn, file).contains("200"));
    assert_eq!(pool_max_inflight(admin), 4);

    // A new limit through the admin API: applied, the connection lives on.
    std::fs::write(&path, config(2, "")).unwrap();
    let r = http_post(admin, "/admin/reload");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("frontend: max_inflight 2"), "{r}");
    assert_eq!(pool_max_inflight(admin), 2);
    assert!(keepalive_get(&mut conn, file).contains("200"));
    // PHP still answers through the new pool.
    assert!(http_get(addr, "/_test/bench").starts_with("HTTP/1.1 200"));

    // A broken file: refused with the key and line, the old config serves.
    std::fs::write(&path, config(1, "surprise = true\n")).unwrap();
    let r = http_post(admin, "/admin/reload");
    assert!(r.starts_with("HTTP/1.1 422"), "{r}");
    assert!(r.contains("edge.toml:10") && r.contains("surprise"), "{r}");
    assert_eq!(pool_max_inflight(admin), 2);
    assert!(keepalive_get(&mut conn, file).contains("200"));

    // SIGHUP does the same as the admin API.
    std::fs::write(&path, config(3, "")).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &edge.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool_max_inflight(admin) != 3 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(keepalive_get(&mut conn, file).contains("200"));
    // The admin API wants POST.
    assert!(http_get(admin, "/admin/reload").starts_with("HTTP/1.1 405"));
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let out = bin()
        .args([
            "edge",
            "--listen",
            &free_addr().to_string(),
            "--admin-listen",
            "0.0.0.0:0",
            "--upstream",
            "http://127.0.0.1:1",
        ])
        .env_remove("MAGESTACK_ADMIN_TOKEN")
        .env_remove("MAGESTACK_ADMIN_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAGESTACK_ADMIN_TOKEN"), "{err}");
}

/// The CDN rules checked into the deploy kit's environments are what the edge's
/// default config exports: regenerate them (`magestack cdn export -o …`) when
/// the edge's rules change, or this fails.
#[test]
fn cdn_export_matches_the_deploy_kit() {
    let out = bin()
        .args(["cdn", "export", "--format", "terraform"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported = String::from_utf8(out.stdout).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for env in ["staging", "production"] {
        let path = root.join(format!("deploy/terraform/envs/{env}/magestack-cdn.tfvars"));
        let checked_in =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            checked_in,
            exported,
            "{} is stale: run `magestack cdn export -o {}`",
            path.display(),
            path.display()
        );
    }
}

/// A rule changed in the edge's config changes the export: the CDN follows
/// the edge, never the other way round.
#[test]
fn cdn_export_follows_the_edge_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[routing]\nadmin_front_name = \"backoffice_7f3\"\n[cache]\nbrotli = false\n",
    )
    .unwrap();
    let default = bin().args(["cdn", "export"]).output().unwrap();
    let changed = bin()
        .args(["cdn", "export", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let (default, changed) = (
        String::from_utf8(default.stdout).unwrap(),
        String::from_utf8(changed.stdout).unwrap(),
    );
    assert_ne!(default, changed);
    assert!(
        changed.contains("\"/backoffice_7f3/*\"") && !changed.contains("\"/admin/*\""),
        "{changed}"
    );
    assert!(changed.contains("brotli        = false") && default.contains("brotli        = true"));
    // JSON carries the same rules.
    let json = bin()
        .args(["cdn", "export", "--format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["dynamic"]["brotli"], false);
    // A config error names the key and line, and nothing is written.
    std::fs::write(&cfg, "[routing]\nadmin_front_nam = \"x\"\n").unwrap();
    let bad = bin()
        .args(["cdn", "export", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(":2:") && err.contains("admin_front_nam"),
        "{err}"
    );
    assert!(bad.stdout.is_empty());
}
