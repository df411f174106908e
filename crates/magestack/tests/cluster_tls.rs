//! The purge bus and the shared L2 over TLS with a password (`rediss://`,
//! `cluster.redis_ca_file`, `MAGESTACK_REDIS_PASSWORD_FILE`), as production
//! reaches ElastiCache with in-transit encryption and an AUTH token. Runs
//! against the Redis of `scripts/deps`' datatier stand-in (TLS only, a
//! password, a certificate from a private CA): MAGESTACK_DT_REDIS_PORT,
//! MAGESTACK_DT_CA, MAGESTACK_DT_REDIS_SECRET.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{edge_command, free_addr, http_raw, storefront_pub, wait_up, Killed};

fn datatier(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the data-tier stand-in \
             (MAGESTACK_DEPS_SERVICES=\"php_fpm datatier\" scripts/deps start; . .deps/env)"
        )
    })
}

fn tls_url() -> String {
    // The stand-in's certificate names localhost and 127.0.0.1.
    format!("rediss://localhost:{}", datatier("MAGESTACK_DT_REDIS_PORT"))
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
            "{line_prefix} never became {want} (now {:?})",
            metric(admin, line_prefix)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cache_status(addr: SocketAddr, path: &str) -> String {
    let r = http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
    );
    r.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case("x-magento-cache-debug").then_some(v)
        })
        .unwrap_or("none")
        .trim()
        .to_owned()
}

struct Edge {
    process: Killed,
    addr: SocketAddr,
    admin: SocketAddr,
    _config: tempfile::TempPath,
}

/// An edge in front of the storefront with `[cluster]` as given; the Redis
/// password is read from `password_file`.
fn spawn_edge(cluster: &str, password_file: &Path) -> Edge {
    let (addr, admin) = (free_addr(), free_addr());
    let (mut cmd, config) = edge_command(
        &format!("[cluster]\n{cluster}"),
        addr,
        admin,
        storefront_pub(),
    );
    cmd.env_remove("MAGESTACK_REDIS_PASSWORD")
        .env("MAGESTACK_REDIS_PASSWORD_FILE", password_file);
    let mut process = Killed::spawn(cmd);
    process.wait_up(addr);
    wait_up(admin);
    Edge {
        process,
        addr,
        admin,
        _config: config,
    }
}

fn tls_cluster(channel: &str, ca: &str) -> String {
    format!(
        "redis_url = \"{}\"\nredis_ca_file = \"{ca}\"\nchannel = \"{channel}\"\nl2 = true\n",
        tls_url()
    )
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

/// Two edges on the TLS Redis: a page one of them fetched is a hit from L2
/// on the other, and a purge sent to the first reaches the second (and L2).
/// The password never shows in their logs.
#[test]
fn purges_and_l2_travel_over_tls_with_a_password() {
    let ca = datatier("MAGESTACK_DT_CA");
    let secret = PathBuf::from(datatier("MAGESTACK_DT_REDIS_SECRET"));
    let password = std::fs::read_to_string(&secret).unwrap().trim().to_owned();
    let channel = format!("magestack:test-tls:{}", std::process::id());
    let cluster = tls_cluster(&channel, &ca);
    let one = spawn_edge(&cluster, &secret);
    let two = spawn_edge(&cluster, &secret);
    wait_metric(one.admin, "magestack_purge_bus_connected ", "1");
    wait_metric(two.admin, "magestack_purge_bus_connected ", "1");

    let path = "/women.html?tls=1";
    assert_eq!(cache_status(one.addr, path), "MISS");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(one.admin, "magestack_l2_written_bytes_total ").is_none_or(|v| v == "0") {
        assert!(Instant::now() < deadline, "nothing written to L2 over TLS");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cache_status(two.addr, path), "HIT", "from L2 over TLS");
    assert_eq!(
        metric(two.admin, "magestack_l2_lookups_total{result=\"hit\"} ").as_deref(),
        Some("1")
    );

    purge(one.addr, "cat_c_p_3");
    wait_metric(
        two.admin,
        "magestack_purge_bus_messages_total{kind=\"applied\"} ",
        "1",
    );
    assert_eq!(
        cache_status(two.addr, path),
        "MISS",
        "purged through the bus"
    );
    for e in [&one, &two] {
        let log = e.process.stderr_text();
        assert!(
            !log.contains(&password),
            "the Redis password was logged:\n{log}"
        );
        assert!(!log.contains("TLS to Redis refused"), "{log}");
    }
}

/// A CA bundle that does not vouch for the server's certificate: the bus
/// stays disconnected (requests are served), and the log says what to fix,
/// naming the key. A wrong password is named too. A CA file without a
/// certificate stops the edge at start, with the key and path.
#[test]
fn a_wrong_ca_or_password_is_refused_with_a_clear_error() {
    let secret = PathBuf::from(datatier("MAGESTACK_DT_REDIS_SECRET"));
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the data tier's CA",
        ])
        .arg("-keyout")
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let channel = format!("magestack:test-tls-bad:{}", std::process::id());

    let edge = spawn_edge(&tls_cluster(&channel, other_ca.to_str().unwrap()), &secret);
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = edge.process.stderr_text();
        if log.contains("TLS to Redis refused") {
            break log;
        }
        assert!(Instant::now() < deadline, "no TLS refusal logged:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        log.contains("not signed by a CA in cluster.redis_ca_file")
            && log.contains(other_ca.to_str().unwrap()),
        "{log}"
    );
    assert_eq!(
        metric(edge.admin, "magestack_purge_bus_connected ").as_deref(),
        Some("0")
    );
    assert_ne!(
        cache_status(edge.addr, "/women.html?tls=2"),
        "none",
        "still serving"
    );
    drop(edge);

    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-auth-token\n").unwrap();
    let edge = spawn_edge(&tls_cluster(&channel, &datatier("MAGESTACK_DT_CA")), &wrong);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !edge
        .process
        .stderr_text()
        .contains("MAGESTACK_REDIS_PASSWORD[_FILE]) was refused")
    {
        assert!(
            Instant::now() < deadline,
            "no password refusal logged:\n{}",
            edge.process.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!edge.process.stderr_text().contains("not-the-auth-token"));
    drop(edge);

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\n{}",
            tls_cluster(&channel, empty.to_str().unwrap())
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_magestack"))
        .args(["edge", "--config", config.to_str().unwrap()])
        .args(["--listen", &free_addr().to_string()])
        .args(["--upstream", "http://127.0.0.1:9"])
        .env("MAGESTACK_REDIS_PASSWORD_FILE", &secret)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cluster.redis_ca_file") && stderr.contains("holds no PEM certificate"),
        "{stderr}"
    );
}
