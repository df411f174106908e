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
    let _b = spawn_storefront_edge(addr, &["--takeover".to_owned()]);
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

// === issue 13: operations hardening ===
// See: issue 13, items 11–14. Each test failed on the code before the fix.

/// Runs `cmd` to its end, or kills it after `secs` and returns `None`: a
/// command that should refuse to start must not hang the test if it starts.
fn run_briefly(mut cmd: Command, secs: u64) -> Option<std::process::Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `openssl rand -hex 32`.
const STRONG_TOKEN: &str = "3f9c1a7e5b2d8c4f0a6e1b9d7c3f5a2e8b4d0c6f1a9e7b3d5c2f8a4e0b6d1c9f";

fn admin_edge(admin: &str, token: &str) -> Command {
    let mut cmd = bin();
    cmd.args([
        "edge",
        "--listen",
        &free_addr().to_string(),
        "--admin-listen",
        admin,
        "--upstream",
        "http://127.0.0.1:1",
    ])
    .env("MAGESTACK_ADMIN_TOKEN", token)
    .env_remove("MAGESTACK_ADMIN_TOKEN_FILE");
    cmd
}

/// Item 11: a one-character token on a public admin listener was accepted.
#[test]
fn r13_a_public_admin_listener_refuses_a_weak_token() {
    let admin = format!("0.0.0.0:{}", free_addr().port());
    for weak in ["x", &"ab".repeat(40), &STRONG_TOKEN[..63]] {
        let out = run_briefly(admin_edge(&admin, weak), 20)
            .unwrap_or_else(|| panic!("the edge started with the token {weak:?}"));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("MAGESTACK_ADMIN_TOKEN")
                && err.contains("64 hex digits or 43 other characters"),
            "{err}"
        );
    }
    // A strong one starts; on loopback any token does.
    let port = free_addr().port();
    let mut strong = Killed::spawn(admin_edge(&format!("0.0.0.0:{port}"), STRONG_TOKEN));
    strong.wait_up(format!("127.0.0.1:{port}").parse().unwrap());
    let local = free_addr();
    let mut weak_local = Killed::spawn(admin_edge(&local.to_string(), "x"));
    weak_local.wait_up(local);
}

/// One admin request from `from` (a loopback address) to `admin`.
fn admin_get_from(from: &str, admin: SocketAddr, path: &str, token: &str) -> String {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&admin.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Item 11: ~1,500 wrong tokens in seconds met no throttling. Now an address
/// gets 10 failures, then 429 with Retry-After (the right token too, or the
/// guessing would go on); another address is not affected.
#[test]
fn r13_failed_admin_tokens_are_throttled_per_address() {
    let admin = free_addr();
    let mut edge = Killed::spawn(admin_edge(&admin.to_string(), STRONG_TOKEN));
    edge.wait_up(admin);
    // 127.0.0.2 and .3 are loopback but outside the default purge_acl
    // (127.0.0.1/32, ::1/128): they need the token.
    let mut statuses = Vec::new();
    for i in 0..30 {
        let r = admin_get_from("127.0.0.2", admin, "/pools", &format!("guess{i}"));
        statuses.push(r.lines().next().unwrap_or("").to_owned());
        if r.starts_with("HTTP/1.1 429") {
            let retry = header_of(&r, "retry-after").expect("429 without Retry-After");
            assert!(retry.parse::<u64>().unwrap() >= 1, "{r}");
        }
    }
    let unauthorized = statuses.iter().filter(|s| s.contains(" 401")).count();
    let throttled = statuses.iter().filter(|s| s.contains(" 429")).count();
    assert_eq!((unauthorized, throttled), (10, 20), "{statuses:?}");
    let right = admin_get_from("127.0.0.2", admin, "/pools", STRONG_TOKEN);
    assert!(right.starts_with("HTTP/1.1 429"), "{right}");
    let other = admin_get_from("127.0.0.3", admin, "/pools", STRONG_TOKEN);
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // Health checks are never throttled.
    let health = admin_get_from("127.0.0.2", admin, "/healthz", "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

/// Item 12: a second edge started silently on a port in use (both served,
/// a PURGE reached one). Now it is refused as nginx refuses it, unless it
/// is the successor of a restart (`--takeover`).
#[test]
fn r13_a_second_edge_on_a_port_in_use_is_refused_unless_takeover() {
    let addr = free_addr();
    // The admin listener takes part in the hand-over too.
    let admin = free_addr();
    let edge = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.args([
            "edge",
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--upstream",
            "http://127.0.0.1:9",
        ])
        .args(extra);
        cmd
    };
    let mut a = Killed::spawn(edge(&[]));
    a.wait_up(addr);
    let out = run_briefly(edge(&[]), 20).expect("a second edge started on a port in use");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "bind() to {addr} failed (98: Address already in use)"
        )),
        "{err}"
    );
    assert!(err.contains("--takeover"), "{err}");
    // The restart path: the successor starts beside the old edge, which
    // then drains and leaves the port to it.
    let mut b = Killed::spawn(edge(&["--takeover"]));
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "the successor exited"
    );
    sigterm(&a.child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "old edge did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    b.wait_up(addr);
}

/// Items 13 and 14: the demo's hints run as printed (this binary's path,
/// not `magestack` off PATH), say where the stripped X-Magento-Tags can be
/// seen, and show the deny rules; the health log names an HTTP upstream
/// as such; the cart page is titled as a cart.
#[test]
fn r13_demo_hints_are_runnable_and_show_what_they_claim() {
    use std::io::BufRead;
    let addr = free_addr();
    let mut cmd = bin();
    cmd.args(["demo", "--listen", &addr.to_string()])
        .stdout(Stdio::piped());
    let mut child = Killed::spawn_keeping_stdout(cmd);
    let stdout = child.child.stdout.take().unwrap();
    let mut hints = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        hints.push_str(&line);
        hints.push('\n');
        if line.starts_with("Stop with") {
            break;
        }
    }
    let me = env!("CARGO_BIN_EXE_magestack");
    assert!(
        hints.contains(&format!("  {me} purge --all --edge {addr}")),
        "{hints}"
    );
    assert!(!hints.contains("  magestack purge"), "{hints}");
    // The tags hint points at the app, which does send them; the edge strips them.
    let app: SocketAddr = hints
        .split("curl -si http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no hint showing the tags from the app:\n{hints}"));
    assert!(hints.contains("strips them"), "{hints}");
    wait_up(addr);
    let from_app = http_get(app, "/women/tops.html");
    assert!(
        header_of(&from_app, "x-magento-tags").is_some(),
        "{from_app}"
    );
    let from_edge = http_get(addr, "/women/tops.html");
    assert!(from_edge.starts_with("HTTP/1.1 200"), "{from_edge}");
    assert!(
        header_of(&from_edge, "x-magento-tags").is_none(),
        "{from_edge}"
    );
    // Denied by Magento's rules at the edge: the app never renders them.
    assert!(hints.contains("/app/etc/env.php"), "{hints}");
    for p in [
        "/app/etc/env.php",
        "/.git/config",
        "/cron.php",
        "/media/customer/x",
    ] {
        let r = http_get(addr, p);
        assert!(r.starts_with("HTTP/1.1 404"), "{p}: {r}");
        assert!(
            !r.contains("Rendered by the demo app"),
            "{p} reached the app: {r}"
        );
    }
    let cart = http_get(addr, "/checkout/cart/");
    assert!(cart.contains("<title>Shopping Cart</title>"), "{cart}");
    // The health check's line: logged by a background task through the
    // batched writer, so wait for it rather than read once.
    let deadline = Instant::now() + Duration::from_secs(15);
    let logs = loop {
        let logs = child.stderr_text();
        if logs.contains("HTTP upstream endpoint healthy") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!logs.contains("PHP-FPM endpoint"), "{logs}");
    assert!(logs.contains("HTTP upstream endpoint healthy"), "{logs}");
}

/// Item 14: a FastCGI connect failure logged no OS cause; nginx logs
/// `connect() failed (111: Connection refused)`.
#[test]
fn r13_a_fastcgi_connect_failure_logs_the_os_cause() {
    let addr = free_addr();
    let closed = free_addr();
    let docroot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/storefront/pub");
    let mut cmd = bin();
    cmd.args([
        "edge",
        "--listen",
        &addr.to_string(),
        "--upstream",
        &format!("fcgi://{closed}"),
        "--docroot",
        docroot,
    ]);
    let mut edge = Killed::spawn(cmd);
    edge.wait_up(addr);
    let r = http_get(addr, "/");
    assert!(r.starts_with("HTTP/1.1 50"), "{r}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = edge.stderr_text();
        if logs.contains("PHP-FPM request failed") {
            assert!(logs.contains("111: Connection refused"), "{logs}");
            break;
        }
        assert!(Instant::now() < deadline, "no failure logged:\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item 14: `magestack purge` without options named only `--tags`.
#[test]
fn r13_purge_without_options_names_tags_and_all() {
    let out = bin().arg("purge").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tags") && err.contains("--all"), "{err}");
}

/// Item 14: `--edge http://host:port` failed with a DNS error.
#[test]
fn r13_purge_accepts_the_edge_as_an_http_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            req.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 Purged\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        String::from_utf8(req).unwrap()
    });
    let out = run_briefly(
        {
            let mut c = bin();
            c.args(["purge", "--all", "--edge", &format!("http://{addr}/")]);
            c
        },
        20,
    )
    .expect("purge hung");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let req = server.join().unwrap();
    assert!(req.starts_with("PURGE / HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("X-Magento-Tags-Pattern: .*\r\n"), "{req}");
    let https = bin()
        .args(["purge", "--all", "--edge", "https://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!https.status.success());
    assert!(String::from_utf8_lossy(&https.stderr).contains("plain HTTP"));
}

/// Item 14: `magestack edge` with no arguments complained about `magento.docroot`.
#[test]
fn r13_edge_without_arguments_says_what_it_needs() {
    let out = run_briefly(
        {
            let mut c = bin();
            c.arg("edge");
            c
        },
        20,
    )
    .expect("edge without arguments started");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--upstream") && err.contains("--docroot") && err.contains("--config"),
        "{err}"
    );
    assert!(!err.contains("magento.docroot"), "{err}");
}

/// Items 13 and 14: `--help` names only commands that exist, and the admin
/// listener's help names what it serves.
#[test]
fn r13_help_is_accurate() {
    let top = bin().arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&top.stdout);
    for command in ["edge", "dbproxy", "check", "purge", "cdn", "demo"] {
        assert!(top.contains(&format!("\n  {command} ")), "{command}: {top}");
    }
    // Every command the help lists (and every one the description names)
    // exists: its own --help succeeds.
    let listed: Vec<&str> = top
        .split("Commands:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(listed.len() >= 6, "{top}");
    for command in listed {
        let out = bin().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help failed");
    }
    let edge = bin().args(["edge", "--help"]).output().unwrap();
    let edge = String::from_utf8_lossy(&edge.stdout);
    for served in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/pools",
        "/cache/stats",
        "/admin/reload",
        "/admin/purge",
    ] {
        assert!(edge.contains(served), "{served}: {edge}");
    }
    assert!(edge.contains("--takeover"), "{edge}");
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Item 13: `scripts/test` ends with one verdict line over every suite and
/// check. Its summing script, on cargo's own output.
#[test]
fn r13_scripts_test_verdict_sums_every_suite_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cargo");
    std::fs::write(
        &log,
        "running 3 tests\ntest a ... ok\n\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
         test result: FAILED. 40 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.00s\n\
         test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
    )
    .unwrap();
    let counts = dir.path().join("deploy");
    std::fs::write(&counts, "20 1\n").unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/lib/test-verdict"
    );
    let run = |rc: &str, counts: &std::path::Path| {
        let out = Command::new("bash")
            .arg(script)
            .arg(&log)
            .arg(rc)
            .arg(counts)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let line = run("101", &counts);
    assert!(line.starts_with("test: 63 passed, 3 failed ("), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    // Several checkers, each with its label.
    let code = dir.path().join("code");
    std::fs::write(&code, "18 0\n").unwrap();
    let out = Command::new("bash")
        .arg(script)
        .arg(&log)
        .arg("101")
        .arg(format!("code checks={}", code.display()))
        .arg(format!("deploy-kit checks={}", counts.display()))
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("test: 81 passed, 3 failed ("), "{line}");
    assert!(line.contains("code checks: 18 passed, 0 failed"), "{line}");
    assert!(
        line.contains("deploy-kit checks: 20 passed, 1 failed"),
        "{line}"
    );
    // A build error runs no test: never "0 failed" beside a red run.
    std::fs::write(&log, "error[E0425]: cannot find value\n").unwrap();
    let line = run("101", &dir.path().join("absent"));
    assert!(line.starts_with("test: 0 passed, 1 failed ("), "{line}");
    // And scripts/test prints it last.
    let test = repo_file("scripts/test");
    let last = test
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("exit"))
        .unwrap();
    assert!(last.contains("scripts/lib/test-verdict"), "{last}");
}

/// Items 13 and 14: what the README and docs say is what exists.
#[test]
fn r13_docs_say_how_to_install_and_point_at_what_exists() {
    let readme = repo_file("README.md");
    assert!(readme.contains("cargo install --path crates/magestack"));
    let manifest = repo_file("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        readme.contains(&format!("Rust ≥ {rust_version}")),
        "rust-version {rust_version}"
    );
    assert!(readme.contains("sudo"));
    // The two fan-out figures say which is the test and which the benchmark.
    let fanout = readme.split("1.7–3.7 ms").next().unwrap();
    assert!(
        fanout.ends_with("a_purge_sent_to_one_edge_reaches_all_three_within_100_ms`\n  requires under 100 ms for the slowest of three edges and has seen "),
        "the README's fan-out figure does not name its test"
    );
    assert!(repo_file("crates/magestack/tests/cluster.rs")
        .contains("fn a_purge_sent_to_one_edge_reaches_all_three_within_100_ms"));
    let magento = repo_file("docs/magento.md");
    assert!(!magento.contains("later release"));
    // Every markdown file the docs name is in the repository.
    for (doc, dir) in [
        ("README.md", ""),
        ("docs/magento.md", "docs/"),
        ("docs/configuration.md", "docs/"),
    ] {
        let text = repo_file(doc);
        for piece in text
            .split(['(', '`', ' ', '['])
            .filter(|p| p.contains(".md"))
        {
            let name = piece.split(['#', ')', '`', ',', ' ']).next().unwrap();
            if !name.ends_with(".md") || name.starts_with("http") {
                continue;
            }
            let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
            // Relative to the document (links) or to the repository (paths in prose).
            let exists = [format!("{root}/{dir}{name}"), format!("{root}/{name}")]
                .iter()
                .any(|p| std::path::Path::new(p).exists());
            assert!(exists, "{doc} names {name}, which is not in the repository");
        }
    }
    assert!(
        !repo_file("scripts/check-deploy").contains("skipped \"providers cannot be installed here")
    );
    assert!(repo_file("scripts/lib/php_preload_check.py").contains("as intended"));
}
