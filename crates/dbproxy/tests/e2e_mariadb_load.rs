//! Multiplexing under load against the real MariaDB primary. Its own test
//! binary: cargo runs binaries one after another, so the connections the
//! server counts here are this proxy's alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use magestack_dbproxy::{BackendConfig, Proxy, ProxyConfig};
use mysql_async::prelude::*;
use mysql_async::{Conn, Error, OptsBuilder};

struct Db {
    primary: String,
    user: String,
    password: String,
    database: String,
    admin_user: String,
    admin_password: String,
}

fn db() -> Db {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: start MariaDB with `MAGESTACK_DEPS_SERVICES=\"php_fpm redis mariadb\" scripts/deps` and source its env (scripts/test does)")
        })
    };
    Db {
        primary: var("MAGESTACK_MARIADB_PRIMARY"),
        user: var("MAGESTACK_MARIADB_USER"),
        password: var("MAGESTACK_MARIADB_PASSWORD"),
        database: var("MAGESTACK_MARIADB_DATABASE"),
        admin_user: var("MAGESTACK_MARIADB_ADMIN_USER"),
        admin_password: var("MAGESTACK_MARIADB_ADMIN_PASSWORD"),
    }
}

async fn proxy(max: usize) -> (SocketAddr, Proxy) {
    let d = db();
    let cfg = ProxyConfig {
        max_backend_connections: max,
        queue_timeout: Duration::from_secs(10),
        ..ProxyConfig::new(BackendConfig {
            addr: d.primary.clone(),
            user: d.user.clone(),
            password: d.password.clone(),
            connect_timeout: Duration::from_secs(5),
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

fn opts(addr: SocketAddr, user: &str, password: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(db().database))
        .prefer_socket(false)
}

async fn client(addr: SocketAddr) -> Conn {
    let d = db();
    Conn::new(opts(addr, &d.user, &d.password)).await.unwrap()
}

/// A direct admin connection to the primary.
async fn admin() -> Conn {
    let d = db();
    let (host, port) = d.primary.rsplit_once(':').unwrap();
    let o = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port.parse().unwrap())
        .user(Some(d.admin_user))
        .pass(Some(d.admin_password))
        .prefer_socket(false);
    Conn::new(o).await.unwrap()
}

async fn table(name: &str, ddl: &str) {
    let mut a = admin().await;
    let d = db().database;
    a.query_drop(format!("DROP TABLE IF EXISTS {d}.{name}"))
        .await
        .unwrap();
    a.query_drop(format!("CREATE TABLE {d}.{name} {ddl}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_twenty_backend_connections() {
    table("e2e_load", "(id INT AUTO_INCREMENT PRIMARY KEY, v INT)").await;
    let (addr, p) = proxy(20).await;
    let max_conns: i64 = std::env::var("MAGESTACK_MARIADB_MAX_CONNECTIONS")
        .unwrap()
        .parse()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        tasks.push(tokio::spawn(async move {
            let mut c = client(addr).await;
            for j in 0..10 {
                c.query_drop(format!("INSERT INTO e2e_load (v) VALUES ({})", i * 100 + j))
                    .await?;
                let _: Option<i64> = c.query_first("SELECT COUNT(*) FROM e2e_load").await?;
            }
            c.disconnect().await?;
            Ok::<_, Error>(())
        }));
    }
    let sampler = tokio::spawn(async move {
        let mut a = admin().await;
        let mut peak = 0i64;
        for _ in 0..40 {
            let n: i64 = a
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'magento'",
                )
                .await
                .unwrap()
                .unwrap();
            peak = peak.max(n);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    });
    let mut errors = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            errors += 1;
        }
    }
    let peak = sampler.await.unwrap();
    let n: i64 = client(addr)
        .await
        .query_first("SELECT COUNT(*) FROM e2e_load")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((errors, n), (0, 2000));
    assert!(
        200 > max_conns,
        "the premise: more clients than the server allows"
    );
    assert!(peak <= 20, "server saw {peak} magento connections");
    assert!(
        p.writer()
            .stats
            .open
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 20
    );
    eprintln!("200 clients x 10 inserts + 10 reads: 0 errors, peak {peak} backend connections on the server (max_connections {max_conns})");
}
