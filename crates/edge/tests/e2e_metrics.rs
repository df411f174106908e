//! `/metrics` on the admin listener, scraped after real traffic through
//! PHP-FPM and the cache, and parsed with an independent Prometheus
//! text-format parser: names, types, labels and values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use magestack_edge::{CacheSettings, Edge, Server, UpstreamTarget};
use prometheus_parse::{Scrape, Value};
use support::*;
use tokio::net::TcpListener;

#[tokio::test]
async fn metrics_scrape_parses_with_the_expected_families() {
    let env = php_env();
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    s.cache = Some(CacheSettings::magento_defaults());
    let edge = Arc::new(Edge::new(s).unwrap());
    let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = traffic.local_addr().unwrap();
    let admin_addr = spawn_admin(magestack_edge::LiveEdge::new(edge.clone())).await;
    let server = Server::new(edge, limits(), None);
    tokio::spawn(server.run(vec![traffic], std::future::pending::<()>()));

    // A cacheable page twice (MISS then HIT), an uncacheable PHP page, a 404.
    let path = "/women/tops.html?metrics=1";
    assert_eq!(
        get(addr, path)
            .await
            .header("x-magento-cache-debug")
            .as_deref(),
        Some("MISS")
    );
    assert_eq!(
        get(addr, path)
            .await
            .header("x-magento-cache-debug")
            .as_deref(),
        Some("HIT")
    );
    assert_eq!(get(addr, "/_test/bench").await.status, 200);
    assert_eq!(get(addr, "/static/nope/missing.css").await.status, 404);

    let r = get(admin_addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();

    // Declared types, straight from the TYPE lines.
    let types: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for (name, kind) in [
        ("magestack_request_duration_seconds", "histogram"),
        ("magestack_requests", "counter"),
        ("magestack_pool_inflight", "gauge"),
        ("magestack_pool_capacity", "gauge"),
        ("magestack_pool_queue_depth", "gauge"),
        ("magestack_pool_queue_capacity", "gauge"),
        ("magestack_pool_requests", "counter"),
        ("magestack_pool_rejected", "counter"),
        ("magestack_upstream_errors", "counter"),
        ("magestack_cache_hits", "counter"),
        ("magestack_cache_misses", "counter"),
        ("magestack_cache_objects", "gauge"),
        ("magestack_cache_bytes", "gauge"),
        ("magestack_cache_purges", "counter"),
    ] {
        assert_eq!(types.get(name).copied(), Some(kind), "{name} in\n{text}");
    }
    assert!(types.keys().all(|n| n.starts_with("magestack_")));

    // The shipped dashboard and autoscaling rules only use metrics that exist
    // (with the suffixes their types give them).
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for file in [
        "deploy/grafana/magestack.json",
        "deploy/prometheus/adapter-rules.yaml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let mut seen = 0;
        for (i, _) in text.match_indices("magestack_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "magestack_"
                || text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            {
                continue; // part of another word (a uid, a file name)
            }
            let known = types.get(name.as_str()).is_some_and(|t| *t != "counter")
                || name
                    .strip_suffix("_total")
                    .is_some_and(|b| types.get(b) == Some(&"counter"))
                || ["_bucket", "_count", "_sum"].iter().any(|sfx| {
                    name.strip_suffix(sfx)
                        .is_some_and(|b| types.get(b) == Some(&"histogram"))
                })
                // The adapter's names for the metrics it derives.
                || file.ends_with(".yaml")
                    && ["magestack_pool_busy_ratio", "magestack_request_p95_seconds"].contains(&name.as_str());
            assert!(known, "{file} uses {name}, which /metrics does not export");
            seen += 1;
        }
        assert!(seen >= 5, "{file}: only {seen} metric references");
    }

    let value = |metric: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(b) => b.last().map_or(0.0, |c| c.count),
                Value::Summary(_) => f64::NAN,
            })
    };
    // Histograms parse into buckets; the HIT and the MISS are both there.
    let hit = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "magestack_request_duration_seconds"
                && s.labels.get("cache") == Some("hit")
                && s.labels.get("pool") == Some("none")
        })
        .expect("hit histogram");
    match &hit.value {
        Value::Histogram(b) => {
            assert!(b.len() >= 14, "{b:?}");
            assert_eq!(b.last().unwrap().count, 1.0);
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(
        value(
            "magestack_request_duration_seconds_count",
            &[("pool", "frontend"), ("cache", "miss")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("magestack_requests_total", &[("status_class", "2xx")]),
        Some(3.0)
    );
    assert_eq!(
        value("magestack_requests_total", &[("status_class", "4xx")]),
        Some(1.0)
    );
    // The MISS fetch, the PHP page, static.php for the missing file, and the
    // cache's health probe when it has run.
    assert!(value("magestack_pool_requests_total", &[("pool", "frontend")]).unwrap() >= 3.0);
    assert_eq!(
        value("magestack_pool_inflight", &[("pool", "frontend")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            "magestack_pool_rejected_total",
            &[("pool", "frontend"), ("reason", "queue_full")]
        ),
        Some(0.0)
    );
    assert_eq!(value("magestack_cache_hits_total", &[]), Some(1.0));
    assert!(value("magestack_cache_objects", &[]).unwrap() >= 1.0);
    // Bounded labels: no URL or address anywhere.
    assert!(!text.contains("tops.html") && !text.contains("127.0.0.1"));
}

/// A PURGE whose pattern is not a regex purges nothing and is answered 200,
/// as Varnish does; it is counted (and logged) so a broken pattern shows.
#[tokio::test]
async fn a_purge_with_an_invalid_pattern_is_counted() {
    let mut s = settings(UpstreamTarget::Http(dead_port()), None);
    s.cache = Some(CacheSettings::magento_defaults());
    let edge = Arc::new(Edge::new(s).unwrap());
    let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = traffic.local_addr().unwrap();
    let admin_addr = spawn_admin(magestack_edge::LiveEdge::new(edge.clone())).await;
    let server = Server::new(edge.clone(), limits(), None);
    tokio::spawn(server.run(vec![traffic], std::future::pending::<()>()));
    let purge = |pattern: &'static str| {
        http::Request::builder()
            .method("PURGE")
            .uri("/")
            .header("host", "shop.test")
            .header("x-magento-tags-pattern", pattern)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    assert_eq!(request(addr, purge("((^|,)cat_p_1(,|$)")).await.status, 200);
    assert_eq!(
        request(addr, purge("((^|,)cat_p_1(,|$))")).await.status,
        200
    );
    let stats = edge.cache_stats().unwrap();
    assert_eq!((stats.purges, stats.purge_invalid_patterns), (2, 1));
    let text = get(admin_addr, "/metrics").await.text();
    assert!(
        text.contains("magestack_cache_purge_invalid_patterns_total 1"),
        "{text}"
    );
}
