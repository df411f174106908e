//! Multiplexing under load against the real MariaDB primary. Its own test
//! binary: cargo runs binaries one after another, so the connections the
//! server counts here are this proxy's alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::Error;

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
