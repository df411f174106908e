//! What the MariaDB end-to-end tests share: the servers `scripts/deps`
//! started (service `mariadb`; a missing one fails the test loudly), a proxy
//! in front of the primary, clients through it and admin connections around it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use magestack_dbproxy::{BackendConfig, Proxy, ProxyConfig};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

pub struct Db {
    pub primary: String,
    pub user: String,
    pub password: String,
    pub database: String,
    pub admin_user: String,
    pub admin_password: String,
}

pub fn db() -> Db {
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

pub async fn proxy(max: usize) -> (SocketAddr, Proxy) {
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

pub fn opts(addr: SocketAddr, user: &str, password: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(db().database))
        .prefer_socket(false)
}

pub async fn client(addr: SocketAddr) -> Conn {
    let d = db();
    Conn::new(opts(addr, &d.user, &d.password)).await.unwrap()
}

/// A direct admin connection to the primary.
pub async fn admin() -> Conn {
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

pub async fn table(name: &str, ddl: &str) {
    let mut a = admin().await;
    let d = db().database;
    a.query_drop(format!("DROP TABLE IF EXISTS {d}.{name}"))
        .await
        .unwrap();
    a.query_drop(format!("CREATE TABLE {d}.{name} {ddl}"))
        .await
        .unwrap();
}
