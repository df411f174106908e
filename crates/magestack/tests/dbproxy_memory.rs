//! The cost of idle clients in a real `magestack dbproxy` process: 1,000
//! logged-in clients that send nothing hold no backend connection and cost
//! at most 16 KiB of the proxy's resident memory each (issue 15's bound;
//! PHP-FPM keeps a connection per worker open between requests, so idle
//! clients are the common case), over plain TCP and over TLS. Needs the
//! MariaDB of `scripts/deps` (and its test CA for TLS); fails loudly
//! without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{env, free_addr, Killed};
use magestack_mysql_proto::auth::{native_password, NATIVE_PASSWORD};
use magestack_mysql_proto::consts::cap;
use magestack_mysql_proto::handshake::{encode_ssl_request, HandshakeResponse, InitialHandshake};
use magestack_mysql_proto::packet::{self, Limits};

const IDLE_CLIENTS: usize = 1_000;
const BUDGET_PER_CLIENT: u64 = 16 * 1024;

fn read_packet<S: Read>(s: &mut S, buf: &mut BytesMut) -> Vec<u8> {
    loop {
        if let Some(p) = packet::decode(buf, &Limits::default()).unwrap() {
            return p.payload.to_vec();
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the proxy closed the connection during login");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A client connection, plain or TLS.
enum Client {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Client {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(b),
            Self::Tls(s) => s.read(b),
        }
    }
}

impl Write for Client {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(b),
            Self::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

/// A logged-in client as PDO makes one (native password, a schema; with
/// `tls`, the SSL Request and a TLS session that verifies the proxy), then
/// left idle.
fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Client {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = BytesMut::new();
    let hs = InitialHandshake::decode(&read_packet(&mut tcp, &mut buf)).unwrap();
    let mut seq = 1;
    let mut s = match tls {
        None => Client::Plain(tcp),
        Some(cfg) => {
            let mut b = BytesMut::new();
            encode_ssl_request(
                cap::PROTOCOL_41 | cap::SECURE_CONNECTION,
                1 << 24,
                45,
                &mut b,
            );
            let mut out = BytesMut::new();
            packet::encode(&b, seq, &mut out);
            tcp.write_all(&out).unwrap();
            seq += 1;
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
            Client::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    let resp = HandshakeResponse {
        capabilities: if tls.is_some() { cap::SSL } else { 0 }
            | cap::PROTOCOL_41
            | cap::SECURE_CONNECTION
            | cap::PLUGIN_AUTH
            | cap::CONNECT_WITH_DB
            | cap::TRANSACTIONS
            | cap::MULTI_RESULTS,
        max_packet: 1 << 24,
        charset: 45,
        username: user.as_bytes().to_vec(),
        auth_response: native_password(password.as_bytes(), &hs.scramble),
        database: Some(db.as_bytes().to_vec()),
        auth_plugin: Some(NATIVE_PASSWORD.as_bytes().to_vec()),
        connect_attrs: None,
    };
    let mut b = BytesMut::new();
    resp.encode(&mut b);
    let mut out = BytesMut::new();
    packet::encode(&b, seq, &mut out);
    s.write_all(&out).unwrap();
    let ok = read_packet(&mut s, &mut buf);
    assert_eq!(ok.first(), Some(&0), "login refused: {ok:?}");
    s
}

/// Resident memory of `pid` in bytes (`VmRSS`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

/// A gauge of the proxy's `/metrics` (summed over its label sets).
fn metric(admin: SocketAddr, name: &str) -> f64 {
    let text = common::http_raw(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_thousand_idle_clients_hold_no_backend_and_cost_at_most_16_kib_each() {
    idle_clients(false);
}

#[test]
fn a_thousand_idle_tls_clients_hold_no_backend_and_cost_at_most_16_kib_each() {
    idle_clients(true);
}

/// The client side of TLS: the test CA of `scripts/deps`, which signed the
/// certificate the proxy shows.
fn client_tls() -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(env("MAGESTACK_MARIADB_CA")).unwrap()
    {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(cfg)
}

fn idle_clients(tls: bool) {
    // Both ends hold a descriptor per client: more than a default soft limit.
    let _ = rlimit::increase_nofile_limit(8192);
    let (primary, user, password, db) = (
        env("MAGESTACK_MARIADB_PRIMARY"),
        env("MAGESTACK_MARIADB_USER"),
        env("MAGESTACK_MARIADB_PASSWORD"),
        env("MAGESTACK_MARIADB_DATABASE"),
    );
    let (listen, admin) = (free_addr(), free_addr());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_magestack"));
    cmd.args([
        "dbproxy",
        "--listen",
        &listen.to_string(),
        "--writer",
        &primary,
    ])
    .args(["--user", &user, "--admin-listen", &admin.to_string()])
    .args(["--max-backend-connections", "4"])
    .env("MAGESTACK_DB_PASSWORD", &password)
    .env("MAGESTACK_LOG", "warn");
    let dir = tempfile::tempdir().unwrap();
    let client_cfg = tls.then(client_tls);
    if tls {
        // TLS offered to clients: the server certificate of the test CA.
        let file = dir.path().join("dbproxy.toml");
        std::fs::write(
            &file,
            format!(
                "[dbproxy]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                env("MAGESTACK_MARIADB_TLS_CERT"),
                env("MAGESTACK_MARIADB_TLS_KEY")
            ),
        )
        .unwrap();
        cmd.arg("--config").arg(&file);
    }
    let mut proxy = Killed::spawn(cmd);
    proxy.wait_up(listen);
    common::wait_up(admin);
    let pid = proxy.child.id();

    // Warm up: the runtime's threads, the allocator's arenas, the pool's
    // first connection, the greeting's version: costs paid once.
    let mut warm: Vec<Client> = (0..50)
        .map(|_| login(listen, &user, &password, &db, client_cfg.as_ref()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let backends_before = metric(admin, "magestack_dbproxy_backend_connections");
    let before = rss(pid);

    let started = Instant::now();
    let idle: Vec<Client> = (0..IDLE_CLIENTS)
        .map(|_| login(listen, &user, &password, &db, client_cfg.as_ref()))
        .collect();
    let login_time = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss(pid);
    let clients = metric(admin, "magestack_dbproxy_client_connections");
    let backends_after = metric(admin, "magestack_dbproxy_backend_connections");
    let per_client = after.saturating_sub(before) / IDLE_CLIENTS as u64;
    eprintln!(
        "dbproxy idle {} clients: {IDLE_CLIENTS} logged in in {login_time:?}; RSS {} KiB -> {} KiB: {per_client} bytes ({:.1} KiB) per idle client; backend connections {backends_before} -> {backends_after}",
        if tls { "TLS" } else { "plain" },
        before / 1024,
        after / 1024,
        per_client as f64 / 1024.0
    );
    assert!(
        clients >= (IDLE_CLIENTS + warm.len()) as f64,
        "client_connections = {clients}"
    );
    assert!(
        backends_after <= backends_before.max(1.0),
        "idle clients took backend connections: {backends_before} -> {backends_after}"
    );
    assert!(
        per_client <= BUDGET_PER_CLIENT,
        "{per_client} bytes of RSS per idle client (budget {BUDGET_PER_CLIENT})"
    );
    // Still served: an idle client's next statement works.
    let mut c = warm.pop().unwrap();
    let mut q = BytesMut::new();
    packet::encode(&[0x0e], 0, &mut q); // COM_PING
    c.write_all(&q).unwrap();
    let ok = read_packet(&mut c, &mut BytesMut::new());
    assert_eq!(ok.first(), Some(&0));
    drop(idle);
}
