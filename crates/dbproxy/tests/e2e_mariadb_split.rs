//! Read/write split, lag, reader failure and writer failover against the
//! real MariaDB primary and GTID replica of `scripts/deps`. Its own test
//! binary, and its tests run one at a time (they stop replication and flip
//! `read_only`). Servers are "killed" through a TCP relay in front of them
//! that the test closes with every connection on it: what the proxy sees is
//! what a crashed server looks like, without taking the shared servers down.
//! A missing MariaDB fails the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use magestack_dbproxy::{BackendConfig, Proxy, ProxyConfig};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

struct Db {
    primary: String,
    replica: String,
    user: String,
    password: String,
    database: String,
    admin_user: String,
    admin_password: String,
}

fn db() -> Db {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: start MariaDB with `scripts/deps start` and source .deps/env (scripts/test does)")
        })
    };
    Db {
        primary: var("MAGESTACK_MARIADB_PRIMARY"),
        replica: var("MAGESTACK_MARIADB_REPLICA"),
        user: var("MAGESTACK_MARIADB_USER"),
        password: var("MAGESTACK_MARIADB_PASSWORD"),
        database: var("MAGESTACK_MARIADB_DATABASE"),
        admin_user: var("MAGESTACK_MARIADB_ADMIN_USER"),
        admin_password: var("MAGESTACK_MARIADB_ADMIN_PASSWORD"),
    }
}

async fn proxy(writer: &str, readers: &[String], ryw: Duration) -> (SocketAddr, Proxy) {
    let d = db();
    let cfg = ProxyConfig {
        readers: readers.to_vec(),
        max_backend_connections: 10,
        queue_timeout: Duration::from_secs(5),
        read_your_writes: ryw,
        max_replica_lag: Duration::from_secs(1),
        check_interval: Duration::from_millis(200),
        writer_only_tables: vec!["quote".into(), "sales_*".into()],
        ..ProxyConfig::new(BackendConfig {
            addr: writer.to_owned(),
            user: d.user.clone(),
            password: d.password.clone(),
            connect_timeout: Duration::from_secs(2),
            limits: Default::default(),
            tls: None,
        })
    };
    let p = Proxy::new(cfg).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(p.clone().serve(l));
    (addr, p)
}

async fn client(addr: SocketAddr) -> Conn {
    let d = db();
    let o = OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(d.user))
        .pass(Some(d.password))
        .db_name(Some(d.database))
        .prefer_socket(false);
    Conn::new(o).await.unwrap()
}

/// A direct admin connection to `server`.
async fn admin(server: &str) -> Conn {
    let d = db();
    let (host, port) = server.rsplit_once(':').unwrap();
    let o = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port.parse().unwrap())
        .user(Some(d.admin_user))
        .pass(Some(d.admin_password))
        .db_name(Some(d.database))
        .prefer_socket(false);
    Conn::new(o).await.unwrap()
}

/// Which server ran a read: the primary has server_id 1, the replica 2.
async fn server_id(c: &mut Conn, sql: &str) -> u32 {
    c.query_first::<u32, _>(sql).await.unwrap().unwrap()
}

/// Waits until the replica has `table` (replication caught up).
async fn replicated(table: &str) {
    let d = db();
    let mut r = admin(&d.replica).await;
    let q = format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{}' AND table_name = '{table}'",
        d.database
    );
    for _ in 0..100 {
        if r.query_first::<u32, _>(&q).await.unwrap() == Some(1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{table} did not reach the replica");
}

/// A TCP relay in front of a server; `kill` closes it and every connection
/// through it (a crash as the proxy sees it).
struct Relay {
    addr: String,
    tasks: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: String) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let tasks: Arc<parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut a, _)) = l.accept().await {
                let to = to.clone();
                t.lock().push(tokio::spawn(async move {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                }));
            }
        });
        Self {
            addr,
            tasks,
            accept,
        }
    }

    fn kill(&self) {
        self.accept.abort();
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_split_and_a_lagging_replica_is_skipped_while_writers_read_their_rows() {
    let _g = SERIAL.lock().await;
    let d = db();
    let mut p_admin = admin(&d.primary).await;
    p_admin
        .query_drop(
            "DROP TABLE IF EXISTS split_t, quote; CREATE TABLE split_t (id INT PRIMARY KEY, v VARCHAR(20)); \
             CREATE TABLE quote (entity_id INT PRIMARY KEY)",
        )
        .await
        .unwrap();
    replicated("quote").await;
    let (addr, proxy) = proxy(
        &d.primary,
        std::slice::from_ref(&d.replica),
        Duration::from_secs(2),
    )
    .await;
    let mut reader = client(addr).await;
    // Plain autocommit reads go to the replica; the rest to the primary.
    assert_eq!(server_id(&mut reader, "SELECT @@server_id").await, 2);
    assert_eq!(
        server_id(
            &mut reader,
            "SELECT @@server_id FROM split_t UNION SELECT @@server_id"
        )
        .await,
        2
    );
    for sql in [
        "SELECT @@server_id FROM quote UNION SELECT @@server_id",
        "SELECT @@server_id FROM split_t FOR UPDATE",
        "SELECT @@server_id FROM split_t LOCK IN SHARE MODE",
    ] {
        let v = reader.query_first::<u32, _>(sql).await.unwrap();
        assert!(v.is_none() || v == Some(1), "{sql} ran on the replica");
    }
    let (id, _free): (u32, u32) = reader
        .query_first("SELECT @@server_id, IS_FREE_LOCK('split')")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, 1, "a lock function ran on the replica");
    {
        let mut t = client(addr).await;
        t.query_drop("START TRANSACTION").await.unwrap();
        assert_eq!(server_id(&mut t, "SELECT @@server_id").await, 1);
        t.query_drop("COMMIT").await.unwrap();
    }

    // Lag: the replica's SQL thread stops; it applies nothing from here on.
    let mut r_admin = admin(&d.replica).await;
    r_admin.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    let p2 = proxy.clone();
    let result = tokio::spawn(async move {
        let proxy = p2;
        // A writer reads its row back at once (read-your-writes).
        let mut w = client(addr).await;
        for i in 0..20 {
            // Text protocol, as Magento's emulated prepares send it
            // (server-side prepares would pin the session anyway).
            w.query_drop(format!("INSERT INTO split_t VALUES ({i}, 'x')"))
                .await
                .unwrap();
            let got: Option<String> = w
                .query_first(format!("SELECT v FROM split_t WHERE id = {i}"))
                .await
                .unwrap();
            assert_eq!(got.as_deref(), Some("x"), "row {i} not read back");
        }
        // Plain reads stop going to the replica once its lag is unknown
        // (Seconds_Behind_Master is NULL with the SQL thread stopped). A
        // fresh client: the first one's locking reads put it in its own
        // read-your-writes window.
        let mut reader = client(addr).await;
        let t0 = Instant::now();
        loop {
            if server_id(&mut reader, "SELECT @@server_id").await == 1 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "still reading from the lagging replica"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(proxy.pools()[1].replica_lag(), None);
        let n: u32 = reader
            .query_first("SELECT COUNT(*) FROM split_t")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 20, "a plain read was served by the stale replica");
    })
    .await;
    r_admin.query_drop("START SLAVE SQL_THREAD").await.unwrap();
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let mut reader = client(addr).await;
    // Caught up: reads return to the replica.
    let t0 = Instant::now();
    while server_id(&mut reader, "SELECT @@server_id").await != 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "reads did not return to the replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_reader_under_load_fails_at_most_the_statements_in_flight() {
    let _g = SERIAL.lock().await;
    let d = db();
    let relay = Relay::start(d.replica.clone()).await;
    let (addr, proxy) = proxy(
        &d.primary,
        std::slice::from_ref(&relay.addr),
        Duration::ZERO,
    )
    .await;
    assert!(proxy.pools()[1].up());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client(addr).await;
            let (mut ok, mut failed, mut replica) = (0u32, 0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c.query_first::<u32, _>("SELECT @@server_id").await {
                    Ok(Some(id)) => {
                        ok += 1;
                        replica += u32::from(id == 2);
                    }
                    _ => {
                        failed += 1;
                        // The connection may be gone: a new one, as PHP would.
                        c = client(addr).await;
                    }
                }
            }
            (ok, failed, replica)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // After the kill every read is served (by the writer).
    let mut c = client(addr).await;
    for _ in 0..20 {
        assert_eq!(server_id(&mut c, "SELECT @@server_id").await, 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut replica) = (0, 0, 0);
    for t in tasks {
        let (o, f, r) = t.await.unwrap();
        assert!(
            f <= 1,
            "a client saw {f} failed statements: more than the one in flight"
        );
        ok += o;
        failed += f;
        replica += r;
    }
    assert!(replica > 0, "no read reached the replica before the kill");
    eprintln!("reader killed under load: {ok} reads served, {failed} failed (in flight), {replica} by the replica");
    assert!(!proxy.pools()[1].up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_move_to_a_promoted_replica_within_three_seconds() {
    let _g = SERIAL.lock().await;
    let d = db();
    let mut p_admin = admin(&d.primary).await;
    p_admin
        .query_drop("DROP TABLE IF EXISTS failover_t; CREATE TABLE failover_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    replicated("failover_t").await;
    let relay = Relay::start(d.primary.clone()).await;
    let (addr, proxy) = proxy(
        &relay.addr,
        std::slice::from_ref(&d.replica),
        Duration::from_secs(1),
    )
    .await;
    let mut c = client(addr).await;
    c.query_drop("INSERT INTO failover_t VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        server_id(&mut c, "SELECT @@server_id FROM failover_t FOR UPDATE").await,
        1
    );

    // The primary dies; the replica is promoted.
    let mut r_admin = admin(&d.replica).await;
    relay.kill();
    let t0 = Instant::now();
    r_admin
        .query_drop("SET GLOBAL read_only = 0")
        .await
        .unwrap();
    let (p2, replica) = (proxy.clone(), d.replica.clone());
    let result = tokio::spawn(async move {
        let proxy = p2;
        let mut moved = None;
        for i in 2..200 {
            let mut c = client(addr).await;
            match c.exec_drop("INSERT INTO failover_t VALUES (?)", (i,)).await {
                Ok(()) => {
                    moved = Some(t0.elapsed());
                    break;
                }
                Err(e) => eprintln!("during failover: {e}"),
            }
        }
        let moved = moved.expect("writes never moved");
        eprintln!("writes moved to the promoted replica after {moved:?}");
        assert!(moved < Duration::from_secs(3), "took {moved:?}");
        let mut c = client(addr).await;
        assert_eq!(
            server_id(&mut c, "SELECT @@server_id FROM failover_t FOR UPDATE").await,
            2
        );
        assert_eq!(proxy.writer().addr(), replica);
    })
    .await;
    r_admin
        .query_drop("SET GLOBAL read_only = 1")
        .await
        .unwrap();
    r_admin
        .query_drop("DELETE FROM failover_t")
        .await
        .unwrap_or(());
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_writer_1290_is_retried_on_the_new_writer_but_not_inside_a_transaction() {
    let _g = SERIAL.lock().await;
    let d = db();
    let mut p_admin = admin(&d.primary).await;
    p_admin
        .query_drop("DROP TABLE IF EXISTS demote_t; CREATE TABLE demote_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    replicated("demote_t").await;
    // Detection slower than the test, so the statements meet the demoted
    // writer before the monitor does.
    let (addr, proxy) = proxy(
        &d.primary,
        std::slice::from_ref(&d.replica),
        Duration::from_secs(1),
    )
    .await;
    let mut tx = client(addr).await;
    tx.query_drop("START TRANSACTION").await.unwrap();
    let mut c = client(addr).await;
    c.query_drop("INSERT INTO demote_t VALUES (1)")
        .await
        .unwrap();

    let mut r_admin = admin(&d.replica).await;
    p_admin
        .query_drop("SET GLOBAL read_only = 1")
        .await
        .unwrap();
    r_admin
        .query_drop("SET GLOBAL read_only = 0")
        .await
        .unwrap();
    let (p2, replica) = (proxy.clone(), d.replica.clone());
    let result = tokio::spawn(async move {
        let proxy = p2;
        let mut r_admin = admin(&replica).await;
        // Outside a transaction: retried on the new writer, no error.
        c.query_drop("INSERT INTO demote_t VALUES (2)")
            .await
            .unwrap();
        assert_eq!(proxy.writer().addr(), replica);
        // Inside one: the client's error, never a silent replay elsewhere.
        let e = tx
            .query_drop("INSERT INTO demote_t VALUES (3)")
            .await
            .unwrap_err();
        match e {
            mysql_async::Error::Server(s) => assert_eq!(s.code, 1290, "{s:?}"),
            other => panic!("{other:?}"),
        }
        let n: u32 = r_admin
            .query_first("SELECT COUNT(*) FROM demote_t WHERE id = 3")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    })
    .await;
    p_admin
        .query_drop("SET GLOBAL read_only = 0")
        .await
        .unwrap();
    r_admin
        .query_drop("SET GLOBAL read_only = 1")
        .await
        .unwrap();
    r_admin
        .query_drop("DELETE FROM demote_t")
        .await
        .unwrap_or(());
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

/// `GET path` on the admin listener: (status, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_reports_health_backends_metrics_and_digests() {
    let _g = SERIAL.lock().await;
    let d = db();
    let (addr, proxy) = proxy(&d.primary, std::slice::from_ref(&d.replica), Duration::ZERO).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = l.local_addr().unwrap();
    tokio::spawn(proxy.clone().serve_admin(l));
    let mut c = client(addr).await;
    for i in 0..5 {
        c.query_drop(format!("SELECT {i} FROM DUAL WHERE 1 IN ({i}, 7)"))
            .await
            .unwrap();
    }
    c.query_drop("START TRANSACTION").await.unwrap();
    assert_eq!(http_get(admin_addr, "/healthz").await.0, 200);
    assert_eq!(http_get(admin_addr, "/readyz").await.0, 200);
    let (_, metrics) = http_get(admin_addr, "/metrics").await;
    for want in [
        "magestack_dbproxy_client_connections 1",
        "magestack_dbproxy_pinned_sessions{reason=\"transaction\"} 1",
        "magestack_dbproxy_queue_wait_seconds_bucket",
        &format!(
            "magestack_dbproxy_replica_lag_seconds{{server=\"{}\"}} 0",
            d.replica
        ),
        &format!(
            "magestack_dbproxy_server_role{{server=\"{}\",role=\"writer\"}} 1",
            d.primary
        ),
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }
    // mysql_async's own connect-time read is counted too.
    let reads: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("magestack_dbproxy_routing_decisions_total{route=\"reader\"} ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(reads >= 5, "{metrics}");
    let (_, backends) = http_get(admin_addr, "/backends").await;
    let b: serde_json::Value = serde_json::from_str(&backends).unwrap();
    assert_eq!(b[0]["writer"], true);
    assert_eq!(b[1]["reads_eligible"], true);
    let (_, digests) = http_get(admin_addr, "/digests").await;
    let rows: serde_json::Value = serde_json::from_str(&digests).unwrap();
    let top = &rows[0];
    assert_eq!(top["fingerprint"], "SELECT ? FROM DUAL WHERE ? IN (?+)");
    assert_eq!(top["count"], 5);
    c.query_drop("COMMIT").await.unwrap();
    drop(c);
    assert_eq!(http_get(admin_addr, "/nope").await.0, 404);
}
