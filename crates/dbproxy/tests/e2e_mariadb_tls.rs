//! End-to-end TLS: the proxy to the `secure` MariaDB of `scripts/deps`
//! (`require_secure_transport=ON`, a private CA, as Aurora's parameter
//! group), clients to the proxy over TLS (the `mariadb` CLI and PHP's PDO,
//! which verify the proxy's certificate), and `caching_sha2_password` full
//! authentication inside TLS against a scripted server (MariaDB has no
//! `caching_sha2_password`; MySQL 8 and Aurora MySQL 3 do). A missing
//! MariaDB fails the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use magestack_dbproxy::{BackendConfig, BackendTls, ClientTls, Proxy, ProxyConfig};
use magestack_mysql_proto::auth::{caching_sha2_password, xor_scramble, CACHING_SHA2_PASSWORD};
use magestack_mysql_proto::consts::{cap, status};
use magestack_mysql_proto::handshake::{
    ClientHello, InitialHandshake, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY,
};
use magestack_mysql_proto::packet::{self, Limits};
use magestack_mysql_proto::OkPacket;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::Generate as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

struct Db {
    primary: String,
    secure: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    user: String,
    password: String,
    database: String,
}

fn db() -> Db {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: start MariaDB with `MAGESTACK_DEPS_SERVICES=\"php_fpm redis mariadb\" scripts/deps` and source its env (scripts/test does)")
        })
    };
    Db {
        primary: var("MAGESTACK_MARIADB_PRIMARY"),
        secure: var("MAGESTACK_MARIADB_TLS"),
        ca: var("MAGESTACK_MARIADB_CA").into(),
        cert: var("MAGESTACK_MARIADB_TLS_CERT").into(),
        key: var("MAGESTACK_MARIADB_TLS_KEY").into(),
        user: var("MAGESTACK_MARIADB_USER"),
        password: var("MAGESTACK_MARIADB_PASSWORD"),
        database: var("MAGESTACK_MARIADB_DATABASE"),
    }
}

async fn start(cfg: ProxyConfig) -> (SocketAddr, Proxy) {
    let p = Proxy::new(cfg).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(p.clone().serve(l));
    (addr, p)
}

fn backend(addr: &str, tls: Option<BackendTls>) -> BackendConfig {
    let d = db();
    BackendConfig {
        addr: addr.to_owned(),
        user: d.user,
        password: d.password,
        connect_timeout: Duration::from_secs(5),
        limits: Default::default(),
        tls: tls.map(Arc::new),
    }
}

async fn client(addr: SocketAddr) -> Result<Conn, mysql_async::Error> {
    let d = db();
    let o = OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(d.user))
        .pass(Some(d.password))
        .db_name(Some(d.database))
        .prefer_socket(false);
    Conn::new(o).await
}

#[tokio::test]
async fn backend_tls_reaches_a_server_that_requires_secure_transport() {
    let d = db();
    let tls = BackendTls::from_pem(&d.ca, None).unwrap();
    let (addr, p) = start(ProxyConfig::new(backend(&d.secure, Some(tls)))).await;
    let mut c = client(addr).await.unwrap();
    // The server's own view of the session: TLS, and a real cipher.
    let v: Option<(String, String)> = c
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .unwrap();
    let (_, version) = v.unwrap();
    assert!(version.starts_with("TLSv1."), "{version:?}");
    c.query_drop("CREATE TABLE IF NOT EXISTS e2e_tls (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("START TRANSACTION").await.unwrap();
    c.query_drop("REPLACE INTO e2e_tls VALUES (1)")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM e2e_tls").await.unwrap();
    assert_eq!(n, Some(1));
    assert!(
        p.writer()
            .stats
            .opened_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn without_tls_or_with_another_ca_the_secure_server_is_not_reached() {
    let d = db();
    // Plain TCP: the server refuses the login.
    let (addr, _p) = start(ProxyConfig {
        queue_timeout: Duration::from_secs(2),
        ..ProxyConfig::new(backend(&d.secure, None))
    })
    .await;
    let e = client(addr).await.unwrap_err();
    assert!(
        matches!(e, mysql_async::Error::Server(ref s) if s.code == 2003),
        "{e:?}"
    );
    // A CA that did not sign the server's certificate: verification fails,
    // and the proxy never falls back to plain TCP.
    let dir = tempfile_dir();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let tls = BackendTls::from_pem(&other_ca, None).unwrap();
    let (addr, p) = start(ProxyConfig {
        queue_timeout: Duration::from_secs(2),
        ..ProxyConfig::new(backend(&d.secure, Some(tls)))
    })
    .await;
    let e = client(addr).await.unwrap_err();
    let msg = format!("{e:?}");
    assert!(msg.contains("2003") && msg.contains("tls"), "{msg}");
    assert_eq!(
        p.writer()
            .stats
            .opened_total
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // The right CA but a name the certificate does not hold: refused too.
    let tls = BackendTls::from_pem(&d.ca, Some("db.example.com")).unwrap();
    let (addr, _p) = start(ProxyConfig {
        queue_timeout: Duration::from_secs(2),
        ..ProxyConfig::new(backend(&d.secure, Some(tls)))
    })
    .await;
    assert!(client(addr).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dbproxy-tls-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A proxy that offers TLS to clients (the test CA's server certificate),
/// in front of the plain primary.
async fn tls_proxy(required: bool) -> (SocketAddr, Proxy) {
    let d = db();
    let ct = ClientTls::from_pem(&d.cert, &d.key, required).unwrap();
    start(ProxyConfig {
        client_tls: Some(ct),
        ..ProxyConfig::new(backend(&d.primary, None))
    })
    .await
}

async fn mariadb_cli(addr: SocketAddr, tls_args: &[&str], sql: &str) -> std::process::Output {
    let d = db();
    tokio::process::Command::new("mariadb")
        .arg("--no-defaults")
        .args(["-h", &addr.ip().to_string(), "-P", &addr.port().to_string()])
        .args(["-u", &d.user, &d.database, "--batch", "--skip-column-names"])
        .args(tls_args)
        .args(["-e", sql])
        .env("MYSQL_PWD", &d.password)
        .output()
        .await
        .expect("the mariadb client (scripts/deps installs mariadb-client)")
}

#[tokio::test]
async fn clients_may_log_in_over_tls_and_must_when_required() {
    let d = db();
    let ca = d.ca.to_string_lossy().into_owned();
    let (addr, _p) = tls_proxy(false).await;
    // The CLI verifies the proxy's certificate against the CA.
    let out = mariadb_cli(
        addr,
        &["--ssl", "--ssl-ca", &ca, "--ssl-verify-server-cert"],
        "SELECT 40 + 2; SHOW STATUS LIKE 'Ssl_cipher'",
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("42\n"), "{stdout}");
    // Plain clients still log in when TLS is optional.
    let mut c = client(addr).await.unwrap();
    let v: Option<i64> = c.query_first("SELECT 7").await.unwrap();
    assert_eq!(v, Some(7));

    // PHP's PDO as Magento configures TLS (driver_options).
    let script = format!(
        r#"
$pdo = new PDO('mysql:host={ip};port={port};dbname={db}', '{user}', getenv('PW'), [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::MYSQL_ATTR_SSL_CA => '{ca}',
    PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => true,
]);
echo $pdo->query("SELECT 6 * 7")->fetchColumn();
"#,
        ip = addr.ip(),
        port = addr.port(),
        db = d.database,
        user = d.user,
    );
    let out = tokio::process::Command::new("php")
        .arg("-r")
        .arg(&script)
        .env("PW", &d.password)
        .output()
        .await
        .expect("php-cli (scripts/deps installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Required: a plain client is refused with 3159, a TLS one served.
    let (addr, _p) = tls_proxy(true).await;
    let out = mariadb_cli(addr, &["--skip-ssl"], "SELECT 1").await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3159"), "{stderr}");
    let out = mariadb_cli(addr, &["--ssl", "--ssl-ca", &ca], "SELECT 1").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// === caching_sha2_password full authentication ===

async fn send<S: AsyncWrite + Unpin>(s: &mut S, payload: &[u8], seq: u8) {
    let mut b = BytesMut::new();
    packet::encode(payload, seq, &mut b);
    s.write_all(&b).await.unwrap();
}

async fn recv<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Option<Vec<u8>> {
    loop {
        if let Some(p) = packet::decode(buf, &Limits::default()).unwrap() {
            return Some(p.payload.to_vec());
        }
        if s.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

fn ok_payload() -> Vec<u8> {
    let mut b = BytesMut::new();
    OkPacket {
        status: status::AUTOCOMMIT,
        ..Default::default()
    }
    .encode(0, cap::PROTOCOL_41, &mut b);
    b.to_vec()
}

/// A scripted MySQL 8 login: `caching_sha2_password` with an empty cache,
/// so after the scramble it asks for full authentication: inside TLS the
/// cleartext password, over plain TCP (`tls` false) only after the client
/// asked for its RSA public key, encrypted under it. Sends the password it
/// recovered on `got`; then answers every command with OK.
async fn sha2_server(
    tcp: tokio::net::TcpStream,
    tls: bool,
    acceptor: tokio_rustls::TlsAcceptor,
    got: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) {
    let scramble = b"0123456789abcdefghij".to_vec();
    let hs = InitialHandshake {
        server_version: b"8.0.36".to_vec(),
        connection_id: 1,
        scramble: scramble.clone(),
        capabilities: cap::PROTOCOL_41
            | cap::SECURE_CONNECTION
            | cap::PLUGIN_AUTH
            | cap::PLUGIN_AUTH_LENENC_DATA
            | cap::TRANSACTIONS
            | cap::MULTI_STATEMENTS
            | cap::MULTI_RESULTS
            | if tls { cap::SSL } else { 0 },
        charset: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: CACHING_SHA2_PASSWORD.as_bytes().to_vec(),
    };
    let mut b = BytesMut::new();
    hs.encode(&mut b);
    let mut tcp = tcp;
    send(&mut tcp, &b, 0).await;
    if !tls {
        // Plain TCP: the password only RSA-encrypted under our key.
        let mut buf = BytesMut::new();
        let resp = recv(&mut tcp, &mut buf).await.unwrap();
        let Ok(ClientHello::Response(r)) = ClientHello::decode(&resp) else {
            panic!("not a handshake response");
        };
        assert_eq!(r.capabilities & cap::SSL, 0);
        send(&mut tcp, PERFORM_FULL_AUTH, 2).await;
        let req = recv(&mut tcp, &mut buf).await.unwrap();
        if req != [REQUEST_PUBLIC_KEY] {
            got.send(req).unwrap(); // e.g. a cleartext password: a failure
            return;
        }
        let key = rsa::PrivateKey::generate();
        let pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let mut more = vec![0x01];
        more.extend_from_slice(pem.as_bytes());
        send(&mut tcp, &more, 4).await;
        let ct = recv(&mut tcp, &mut buf).await.unwrap();
        let pw = key
            .oaep_decrypt::<sha1_011::Sha1>(&ct)
            .map(|x| xor_scramble(&x, &scramble))
            .unwrap_or_default();
        let accepted = pw == b"sha2-secret\0";
        got.send(pw).unwrap();
        if !accepted {
            return;
        }
        send(&mut tcp, &ok_payload(), 6).await;
        while let Some(cmd) = recv(&mut tcp, &mut buf).await {
            if <[u8]>::first(&cmd) == Some(&1) {
                return;
            }
            send(&mut tcp, &ok_payload(), 1).await;
        }
        return;
    }
    // Exactly the SSL Request (4-byte header + 32): the TLS ClientHello that
    // follows at once must stay in the socket for the acceptor.
    let mut first = [0u8; 36];
    if tcp.read_exact(&mut first).await.is_err() {
        return;
    }
    let first = &first[4..];
    let mut buf = BytesMut::new();
    assert!(matches!(
        ClientHello::decode(first),
        Ok(ClientHello::SslRequest { .. })
    ));
    let mut s = acceptor.accept(tcp).await.unwrap();
    let resp = recv(&mut s, &mut buf).await.unwrap();
    let Ok(ClientHello::Response(r)) = ClientHello::decode(&resp) else {
        panic!("not a handshake response");
    };
    assert_ne!(r.capabilities & cap::SSL, 0);
    assert_eq!(
        r.auth_response,
        caching_sha2_password(b"sha2-secret", &scramble)
    );
    send(&mut s, PERFORM_FULL_AUTH, 3).await;
    let pw = recv(&mut s, &mut buf).await.unwrap();
    let accepted = pw == b"sha2-secret\0";
    got.send(pw).unwrap();
    if !accepted {
        return;
    }
    send(&mut s, &ok_payload(), 5).await;
    while let Some(cmd) = recv(&mut s, &mut buf).await {
        if <[u8]>::first(&cmd) == Some(&1) {
            return;
        }
        send(&mut s, &ok_payload(), 1).await;
    }
}

#[tokio::test]
async fn caching_sha2_full_authentication_sends_the_password_only_inside_tls() {
    let d = db();
    let acceptor = ClientTlsAcceptor::new(&d.cert, &d.key);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let acc = acceptor.0.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(sha2_server(tcp, true, acc.clone(), tx.clone()));
        }
    });
    let mut cfg = backend(
        &server_addr.to_string(),
        Some(BackendTls::from_pem(&d.ca, None).unwrap()),
    );
    cfg.password = "sha2-secret".into();
    let p = Proxy::new(ProxyConfig {
        writer_detection: false,
        ..ProxyConfig::new(cfg)
    })
    .await;
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"sha2-secret\0");
    assert!(
        p.writer()
            .stats
            .opened_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert!(p.writer().up());
}

#[tokio::test]
async fn caching_sha2_full_authentication_over_plain_tcp_encrypts_the_password_with_the_servers_key(
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let d = db();
    let acc = ClientTlsAcceptor::new(&d.cert, &d.key).0;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(sha2_server(tcp, false, acc.clone(), tx.clone()));
        }
    });
    let mut cfg = backend(&server_addr.to_string(), None);
    cfg.password = "sha2-secret".into();
    let p = Proxy::new(ProxyConfig {
        writer_detection: false,
        ..ProxyConfig::new(cfg)
    })
    .await;
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"sha2-secret\0");
    assert!(p.writer().up());
}

/// A proxy with `client_full_auth`: clients log in with
/// `caching_sha2_password` and give their password itself.
async fn full_auth_proxy() -> (SocketAddr, Proxy) {
    let d = db();
    let ct = ClientTls::from_pem(&d.cert, &d.key, false).unwrap();
    start(ProxyConfig {
        client_tls: Some(ct),
        client_full_auth: true,
        ..ProxyConfig::new(backend(&d.primary, None))
    })
    .await
}

async fn pdo(addr: SocketAddr, password: &str, tls: bool) -> std::process::Output {
    let d = db();
    let ssl = if tls {
        format!(
            "PDO::MYSQL_ATTR_SSL_CA => '{}', PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => true,",
            d.ca.display()
        )
    } else {
        String::new()
    };
    let script = format!(
        r#"
try {{
    $pdo = new PDO('mysql:host={ip};port={port};dbname={db}', '{user}', getenv('PW'), [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, {ssl}
    ]);
    echo $pdo->query("SELECT 6 * 7")->fetchColumn();
}} catch (PDOException $e) {{ echo 'error ', $e->getCode(), ' ', $e->getMessage(); }}
"#,
        ip = addr.ip(),
        port = addr.port(),
        db = d.database,
        user = d.user,
    );
    tokio::process::Command::new("php")
        .arg("-r")
        .arg(&script)
        .env("PW", password)
        .output()
        .await
        .expect("php-cli (scripts/deps installs it)")
}

#[tokio::test]
async fn caching_sha2_clients_give_their_password_rsa_encrypted_over_plain_tcp_and_in_tls() {
    let (addr, _p) = full_auth_proxy().await;
    // mysql_async over plain TCP: perform-full-auth, 0x02, the proxy's PEM,
    // the password XOR the scramble under RSA-OAEP.
    let mut c = client(addr).await.unwrap();
    let v: Option<i64> = c.query_first("SELECT 40 + 2").await.unwrap();
    assert_eq!(v, Some(42));
    // COM_CHANGE_USER goes through the same exchange.
    c.change_user(mysql_async::ChangeUserOpts::default())
        .await
        .unwrap();
    let v: Option<i64> = c.query_first("SELECT 6 * 7").await.unwrap();
    assert_eq!(v, Some(42));
    c.disconnect().await.unwrap();
    // A wrong password through the same exchange: 1045.
    let d = db();
    let o = OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(d.user.clone()))
        .pass(Some("not-the-password"))
        .prefer_socket(false);
    match Conn::new(o).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1045, "{e}"),
        other => panic!("expected 1045, got {other:?}"),
    }
    // PHP's mysqlnd (as Magento connects): RSA over plain TCP, cleartext
    // inside TLS; a wrong password refused with 1045 either way.
    for tls in [false, true] {
        let out = pdo(addr, &d.password, tls).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            "42",
            "tls {tls}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = pdo(addr, "not-the-password", tls).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("1045"), "tls {tls}: {stdout}");
    }
}

#[tokio::test]
async fn a_command_that_rustls_already_decrypted_is_answered_by_an_idle_tls_client() {
    // An idle TLS client waits on its socket, not in a read: a second
    // command already decrypted by rustls must not be left waiting there.
    use magestack_mysql_proto::auth::native_password;
    use magestack_mysql_proto::handshake::{encode_ssl_request, HandshakeResponse};
    use rustls::pki_types::pem::PemObject;
    let d = db();
    let (addr, _p) = tls_proxy(false).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    let hs = InitialHandshake::decode(&recv(&mut tcp, &mut buf).await.unwrap()).unwrap();
    let caps = cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH;
    let mut b = BytesMut::new();
    encode_ssl_request(caps, 1 << 24, 45, &mut b);
    send(&mut tcp, &b, 1).await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&d.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let resp = HandshakeResponse {
        capabilities: caps | cap::SSL,
        max_packet: 1 << 24,
        charset: 45,
        username: d.user.into_bytes(),
        auth_response: native_password(d.password.as_bytes(), &hs.scramble),
        database: None,
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        connect_attrs: None,
    };
    let mut b = BytesMut::new();
    resp.encode(&mut b);
    send(&mut s, &b, 2).await;
    let mut buf = BytesMut::new();
    let ok = recv(&mut s, &mut buf).await.unwrap();
    assert_eq!(<[u8]>::first(&ok), Some(&0));
    // Let the proxy reach its idle wait, then a query and a COM_PING in one
    // write: past some sizes the ping is still in rustls, decrypted, when
    // the query's answer is sent.
    // 4078 and 20462: the query packet fills the proxy's read buffer exactly.
    for pad in [10, 4078, 5000, 20462, 40000] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut q = b"\x03SELECT 1 /*".to_vec();
        q.resize(q.len() + pad, b'x');
        q.extend_from_slice(b"*/");
        let mut two = BytesMut::new();
        packet::encode(&q, 0, &mut two);
        packet::encode(&[0x0e], 0, &mut two);
        s.write_all(&two).await.unwrap();
        // The result set: column count, column, EOF, row, EOF; then the OK.
        for i in 0..6 {
            let p = tokio::time::timeout(Duration::from_secs(2), recv(&mut s, &mut buf))
                .await
                .unwrap_or_else(|_| panic!("pad {pad}: packet {i} never came"))
                .unwrap();
            if i == 5 {
                assert_eq!(<[u8]>::first(&p), Some(&0), "pad {pad}");
            }
        }
    }
}

struct ClientTlsAcceptor(tokio_rustls::TlsAcceptor);

impl ClientTlsAcceptor {
    fn new(cert: &std::path::Path, key: &std::path::Path) -> Self {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    }
}
