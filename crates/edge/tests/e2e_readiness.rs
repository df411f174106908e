//! Deep readiness: `/readyz` follows PHP-FPM. A pod whose FPM is down (or
//! not yet up) takes no traffic; it turns ready once FPM's status page
//! answers, and unready again when FPM goes away. The status figures reach
//! `/pools` and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use magestack_edge::settings::{PoolSpec, UpstreamTarget};
use magestack_edge::Edge;
use support::*;
use tokio::net::TcpListener;

async fn wait_for(admin: std::net::SocketAddr, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = get(admin, "/readyz").await;
        if r.status.as_u16() == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "/readyz stayed {} ({}) instead of {status}",
            r.status,
            r.text().trim()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_follows_php_fpm_and_status_reaches_metrics() {
    let env = php_env();
    let (port, status_port) = (free_port(), free_port());
    let endpoint = format!("127.0.0.1:{port}");
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(endpoint.clone()),
        Some(env.storefront.join("pub")),
    );
    s.pools = vec![PoolSpec {
        name: "frontend".into(),
        endpoints: vec![UpstreamTarget::FastCgiTcp(endpoint.clone())],
        max_inflight: 3,
        queue_size: 16,
        queue_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_millis(500),
        status_path: Some("/status".into()),
        status_endpoints: vec![UpstreamTarget::FastCgiTcp(format!(
            "127.0.0.1:{status_port}"
        ))],
        check_interval: Duration::from_millis(200),
        unhealthy_after: 2,
        resolve_interval: Duration::ZERO,
    }];
    let edge = Arc::new(Edge::new(s).unwrap());
    edge.start_background();
    let admin_addr = spawn_admin(magestack_edge::LiveEdge::new(edge.clone())).await;

    // FPM not running: not ready, and it stays so.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = get(admin_addr, "/readyz").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("PHP-FPM"));

    // FPM starts: ready within a few checks.
    let fpm = start_fpm(
        &env.storefront,
        &[FpmPool {
            status_port: Some(status_port),
            ..FpmPool::new("frontend", port, 3)
        }],
    );
    let took = wait_for(admin_addr, 200, Duration::from_secs(5)).await;
    eprintln!("ready {took:?} after php-fpm listened");

    // Its status reaches /pools and /metrics.
    let pools: serde_json::Value =
        serde_json::from_str(&get(admin_addr, "/pools").await.text()).unwrap();
    let ep = &pools[0]["endpoints"][0];
    assert_eq!(ep["health"], "healthy", "{pools}");
    assert_eq!(ep["fpm"]["total processes"], 3, "{pools}");
    assert_eq!(ep["fpm"]["process manager"], "static", "{pools}");
    let metrics = get(admin_addr, "/metrics").await.text();
    assert!(
        metrics.contains("magestack_fpm_total_processes{pool=\"frontend\",endpoint=\"0\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("magestack_pool_endpoint_up{pool=\"frontend\",endpoint=\"0\"} 1"));

    // FPM goes away: unready after `unhealthy_after` failed checks.
    drop(fpm);
    let took = wait_for(admin_addr, 503, Duration::from_secs(5)).await;
    eprintln!("unready {took:?} after php-fpm stopped");
    let pools: serde_json::Value =
        serde_json::from_str(&get(admin_addr, "/pools").await.text()).unwrap();
    assert_eq!(pools[0]["endpoints"][0]["health"], "unhealthy", "{pools}");
}

/// An edge on its own php-fpm whose health script checks OPcache against a
/// manifest of the storefront's front-controller scripts.
async fn opcache_edge(
    env: &PhpEnv,
    warmup: Vec<String>,
) -> (Running, std::net::SocketAddr, Fpm, tempfile::TempDir) {
    let (port, status_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("opcache-manifest.txt");
    let sf = env.storefront.canonicalize().unwrap();
    let scripts = [
        "pub/index.php",
        "app/bootstrap.php",
        "app/routes.php",
        "app/layout.php",
        "app/catalog.php",
    ];
    std::fs::write(
        &manifest,
        scripts
            .iter()
            .map(|s| format!("{}\n", sf.join(s).display()))
            .collect::<String>(),
    )
    .unwrap();
    let fpm = start_fpm(
        &env.storefront,
        &[FpmPool {
            status_port: Some(status_port),
            env: vec![
                ("MAGESTACK_HEALTH_CHECKS".into(), "opcache".into()),
                (
                    "MAGESTACK_OPCACHE_MANIFEST".into(),
                    manifest.display().to_string(),
                ),
            ],
            ..FpmPool::new("frontend", port, 2)
        }],
    );
    let endpoint = format!("127.0.0.1:{port}");
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(endpoint.clone()),
        Some(env.storefront.join("pub")),
    );
    s.pools = vec![PoolSpec {
        name: "frontend".into(),
        endpoints: vec![UpstreamTarget::FastCgiTcp(endpoint)],
        max_inflight: 2,
        queue_size: 16,
        queue_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_millis(500),
        status_path: Some("/status".into()),
        status_endpoints: vec![UpstreamTarget::FastCgiTcp(format!(
            "127.0.0.1:{status_port}"
        ))],
        check_interval: Duration::from_millis(200),
        unhealthy_after: 2,
        resolve_interval: Duration::ZERO,
    }];
    s.readiness = magestack_edge::settings::ReadinessSpec {
        health_script: Some("magestack-health.php".into()),
        opcache_min_ratio: 0.8,
        warmup_urls: warmup,
    };
    let edge = Arc::new(Edge::new(s).unwrap());
    let live = magestack_edge::LiveEdge::new(edge);
    let admin_addr = spawn_admin(live.clone()).await;
    let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = traffic.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = magestack_edge::Server::with_live(live, limits(), None);
    let done = tokio::spawn(server.run(vec![traffic], async move {
        let _ = rx.await;
    }));
    (
        Running {
            addr,
            stop: Some(tx),
            done,
        },
        admin_addr,
        fpm,
        dir,
    )
}

fn opcache_ratio(pools: &serde_json::Value) -> f64 {
    pools[0]["endpoints"][0]["health_report"]["opcache"]["ratio"]
        .as_f64()
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn readyz_waits_for_a_warm_opcache() {
    let env = php_env();
    let (edge, admin, _fpm, _dir) = opcache_edge(&env, Vec::new()).await;
    // FPM answers, but OPcache holds none of the storefront's scripts.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = get(admin, "/readyz").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let pools: serde_json::Value =
        serde_json::from_str(&get(admin, "/pools").await.text()).unwrap();
    assert_eq!(pools[0]["endpoints"][0]["health"], "healthy", "{pools}");
    assert_eq!(pools[0]["endpoints"][0]["warm"], false, "{pools}");
    assert!(opcache_ratio(&pools) < 0.8, "{pools}");
    // The health script is not reachable over HTTP (not in nginx's PHP whitelist).
    assert_eq!(get(edge.addr, "/magestack-health.php").await.status, 404);

    // Shoppers' first pages compile the scripts: ready.
    for path in ["/", "/women/tops.html"] {
        assert_eq!(get(edge.addr, path).await.status, 200);
    }
    let took = wait_for(admin, 200, Duration::from_secs(5)).await;
    let pools: serde_json::Value =
        serde_json::from_str(&get(admin, "/pools").await.text()).unwrap();
    eprintln!(
        "warm {took:?} after the first pages; opcache ratio {}",
        opcache_ratio(&pools)
    );
    assert!(opcache_ratio(&pools) >= 0.8, "{pools}");
    edge.shutdown().await;
}

#[tokio::test]
async fn warm_up_urls_make_a_cold_pod_ready_by_itself() {
    let env = php_env();
    let (edge, admin, _fpm, _dir) =
        opcache_edge(&env, vec!["/".into(), "/women/tops.html".into()]).await;
    // Nobody sends traffic: the edge's own warm-up does.
    let took = wait_for(admin, 200, Duration::from_secs(10)).await;
    eprintln!("ready {took:?} after start, warmed by readiness.warmup_urls");
    edge.shutdown().await;
}

/// Issue 14, item 5: `/readyz` follows the pool that serves shoppers. An
/// admin pool whose FPM is down (an admin pod away) leaves the storefront
/// ready, and its cached pages served.
#[tokio::test]
async fn an_admin_pool_down_leaves_the_storefront_ready() {
    let env = php_env();
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    let pool = |name: &str, endpoint: String| PoolSpec {
        name: name.into(),
        check_interval: Duration::from_millis(200),
        unhealthy_after: 1,
        ..pool_spec(vec![UpstreamTarget::FastCgiTcp(endpoint)])
    };
    s.pools = vec![
        pool("frontend", env.fpm_addr.clone()),
        pool("admin", dead_port()),
    ];
    s.cache = Some(magestack_edge::CacheSettings::magento_defaults());
    let edge = Arc::new(Edge::new(s).unwrap());
    let live = magestack_edge::LiveEdge::new(edge);
    let admin = spawn_admin(live.clone()).await;
    let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = traffic.local_addr().unwrap();
    tokio::spawn(
        magestack_edge::Server::with_live(live, limits(), None)
            .run(vec![traffic], std::future::pending()),
    );
    wait_for(admin, 200, Duration::from_secs(5)).await;
    // The admin pool is known to be down, and /readyz stays 200.
    wait_until(
        "the admin pool's check to fail",
        Duration::from_secs(5),
        || async {
            let pools: serde_json::Value =
                serde_json::from_str(&get(admin, "/pools").await.text()).unwrap_or_default();
            pools[1]["endpoints"][0]["health"] == "unhealthy"
        },
    )
    .await;
    assert_eq!(get(admin, "/readyz").await.status, 200);
    let path = "/gear.html?readiness=admin-down";
    assert_eq!(get(addr, path).await.status, 200);
    let hit = get(addr, path).await;
    assert_eq!(hit.header("x-magento-cache-debug").as_deref(), Some("HIT"));
}

/// Issue 14, item 5: the database and Redis are a start-up gate. A pod is
/// not ready before its PHP reaches Redis; once it was, a Redis outage shows
/// in the metrics and the log, and the pod stays in rotation.
#[tokio::test]
async fn a_redis_outage_after_start_keeps_the_pod_ready() {
    let env = php_env();
    let redis_bin = std::env::var("MAGESTACK_REDIS_SERVER").expect(
        "MAGESTACK_REDIS_SERVER is not set: run ./scripts/test (scripts/deps starts Redis)",
    );
    let (port, status_port, redis_port) = (free_port(), free_port(), free_port());
    // A Magento root whose env.php names a Redis cache backend.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("app/etc")).unwrap();
    std::fs::write(
        root.path().join("app/etc/env.php"),
        format!(
            "<?php return ['cache' => ['frontend' => ['default' => ['backend' => 'Magento\\\\Framework\\\\Cache\\\\Backend\\\\Redis', 'backend_options' => ['server' => '127.0.0.1', 'port' => '{redis_port}']]]]];\n"
        ),
    )
    .unwrap();
    let fpm = start_fpm(
        &env.storefront,
        &[FpmPool {
            status_port: Some(status_port),
            env: vec![
                ("MAGESTACK_HEALTH_CHECKS".into(), "redis".into()),
                ("MAGENTO_ROOT".into(), root.path().display().to_string()),
            ],
            ..FpmPool::new("frontend", port, 2)
        }],
    );
    let endpoint = format!("127.0.0.1:{port}");
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(endpoint.clone()),
        Some(env.storefront.join("pub")),
    );
    s.pools = vec![PoolSpec {
        status_path: Some("/status".into()),
        status_endpoints: vec![UpstreamTarget::FastCgiTcp(format!(
            "127.0.0.1:{status_port}"
        ))],
        check_interval: Duration::from_millis(200),
        ..pool_spec(vec![UpstreamTarget::FastCgiTcp(endpoint)])
    }];
    s.readiness = magestack_edge::settings::ReadinessSpec {
        health_script: Some("magestack-health.php".into()),
        opcache_min_ratio: 0.0,
        warmup_urls: Vec::new(),
    };
    let edge = Arc::new(Edge::new(s).unwrap());
    let live = magestack_edge::LiveEdge::new(edge);
    let admin = spawn_admin(live.clone()).await;
    live.current().start_background();

    // Before Redis answers: the start-up gate keeps the pod out, once the
    // health script has reported.
    wait_until(
        "the health script's first report",
        Duration::from_secs(5),
        || async {
            let pools: serde_json::Value =
                serde_json::from_str(&get(admin, "/pools").await.text()).unwrap_or_default();
            !pools[0]["endpoints"][0]["health_report"].is_null()
        },
    )
    .await;
    assert_eq!(get(admin, "/readyz").await.status, 503);
    let mut redis = std::process::Command::new(&redis_bin)
        .args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(admin, 200, Duration::from_secs(10)).await;

    // Redis goes away: the metrics say so, the pod stays ready.
    redis.kill().unwrap();
    redis.wait().unwrap();
    let start = Instant::now();
    loop {
        let m = get(admin, "/metrics").await.text();
        if m.contains("magestack_php_dependency_up{pool=\"frontend\",dependency=\"redis\"} 0") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the outage never reached the metrics:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(admin, "/readyz").await.status, 200);
    drop(fpm);
}
