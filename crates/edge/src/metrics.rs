//! Prometheus metrics at `/metrics` on the admin listener.
//!
//! Live on the request path (pre-created handles, atomics only: no
//! allocation, no lock; prometheus-client's `Histogram` takes a mutex per
//! observation, so the duration histogram is our own array of atomics,
//! encoded with the crate's encoder):
//! `magestack_request_duration_seconds{pool,cache}` (histogram; buckets fit
//! for p95 from 0.5 ms to 10 s) and `magestack_requests_total{status_class}`.
//! Read at scrape time from the counters the edge keeps anyway: the pools
//! (in flight, capacity, queue, rejections, upstream errors) and the cache.
//! Labels are bounded: pool names from the config, four cache results, five
//! status classes; never a URL or an IP.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::answer::CacheStats;
use crate::pool::PoolStats;

/// Histogram buckets in seconds: cache hits (sub-millisecond) to slow PHP.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `cache` label values.
pub const CACHE_RESULTS: [&str; 4] = ["hit", "miss", "uncacheable", "none"];

type Labels = Vec<(&'static str, String)>;

/// A histogram of atomics: one counter per bucket (the last is `+Inf`),
/// the sum in nanoseconds, the count.
#[derive(Debug, Default)]
struct AtomicHistogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    fn observe(&self, seconds: f64) {
        let i = DURATION_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((seconds.max(0.0) * 1e9) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(sum seconds, count, per-bucket (upper bound, count))` as the
    /// encoder wants them (it accumulates the buckets itself).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets = DURATION_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        (
            self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            self.count.load(Ordering::Relaxed),
            buckets,
        )
    }
}

/// The duration histograms: `[pool slot][cache result]`; slot 0 is `none`
/// (no PHP involved).
#[derive(Debug)]
struct Durations {
    slots: Vec<String>,
    hist: Vec<[AtomicHistogram; 4]>,
}

/// Metrics of one edge.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    durations: Arc<Durations>,
    /// 1xx..5xx.
    statuses: [Counter; 5],
}

impl Metrics {
    /// Metrics for an edge with these pools (`frontend` first).
    pub fn new(pool_names: &[String]) -> Metrics {
        let mut registry = Registry::default();
        let statuses_family = Family::<Labels, Counter>::default();
        let slots: Vec<String> = std::iter::once("none".to_owned())
            .chain(pool_names.iter().cloned())
            .collect();
        let durations = Arc::new(Durations {
            hist: slots.iter().map(|_| Default::default()).collect(),
            slots,
        });
        let statuses = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
            statuses_family
                .get_or_create(&vec![("status_class", class.to_owned())])
                .clone()
        });
        registry.register(
            "magestack_requests",
            "Responses sent, by status class",
            statuses_family,
        );
        Metrics {
            registry,
            durations,
            statuses,
        }
    }

    /// Records one response. `pool_slot` is 0 for none, `1 + index` for a pool.
    pub fn observe(&self, pool_slot: usize, cache: &str, status: u16, seconds: f64) {
        let c = match cache {
            "HIT" => 0,
            "MISS" => 1,
            "UNCACHEABLE" => 2,
            _ => 3,
        };
        let hist = &self.durations.hist;
        if let Some(h) = hist.get(pool_slot).or_else(|| hist.first()) {
            h[c].observe(seconds);
        }
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.statuses[class].inc();
    }

    /// The text exposition: live metrics plus a snapshot of pools and cache.
    pub fn render(
        &self,
        pools: Vec<PoolStats>,
        cache: Option<CacheStats>,
        rate_limited: Vec<(Arc<str>, u64)>,
        injection: (Vec<crate::injection::InjectionCount>, u64),
        bus: Option<crate::purge_bus::BusStats>,
        usage: Usage,
    ) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let mut snapshot = Registry::default();
        snapshot.register_collector(Box::new(Snapshot {
            durations: Arc::clone(&self.durations),
            pools,
            cache,
            rate_limited,
            injection,
            bus,
            bodies: usage.bodies,
            files: usage.files,
        }));
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &snapshot);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

#[derive(Debug)]
struct Snapshot {
    durations: Arc<Durations>,
    pools: Vec<PoolStats>,
    cache: Option<CacheStats>,
    rate_limited: Vec<(Arc<str>, u64)>,
    /// Injection findings by attack/location/action, and bodies too large to inspect.
    injection: (Vec<crate::injection::InjectionCount>, u64),
    /// The purge bus, when configured.
    bus: Option<crate::purge_bus::BusStats>,
    bodies: BodyStats,
    files: FileCacheStats,
}

/// Memory the edge holds for requests: bodies in flight and kept static files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Request bodies.
    pub bodies: BodyStats,
    /// The open-file cache.
    pub files: FileCacheStats,
}

/// The open-file cache (static files kept in memory).
#[derive(Debug, Clone, Copy, Default)]
pub struct FileCacheStats {
    /// Paths kept now (bounded by `magento.open_file_cache_entries`).
    pub entries: u64,
    /// Bytes of file contents and gzip variants kept (bounded by `magento.open_file_cache_size`).
    pub bytes: u64,
    /// Static requests answered from a trusted entry.
    pub hits: u64,
    /// Static requests that had to stat or read the file.
    pub misses: u64,
    /// Entries evicted for room.
    pub evictions: u64,
}

/// Request bodies waiting to be sent upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyStats {
    /// Bytes held in memory now (bounded by `server.body_memory_bytes`).
    pub memory_bytes: u64,
    /// Bodies written to temporary files since the start.
    pub spooled: u64,
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            // `name 1`, not `name{} 1`.
            ConstGauge::new(v).encode(m)?;
            return Ok(());
        }
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            // `name_total 1`, not `name_total{} 1`.
            ConstCounter::new(v).encode(m)?;
            return Ok(());
        }
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A health-script check passed: `{"ok":true}`, or a list of them all ok
/// (one per Redis instance).
fn dependency_ok(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Array(items) => items.iter().all(dependency_ok),
        other => other.get("ok").and_then(serde_json::Value::as_bool) == Some(true),
    }
}

fn as_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        {
            let mut m = enc.encode_descriptor(
                "magestack_request_duration_seconds",
                "Time from request head to response head, by PHP-FPM pool (none: not PHP) and cache result",
                None,
                MetricType::Histogram,
            )?;
            let d = &self.durations;
            for (pool, hists) in d.slots.iter().zip(&d.hist) {
                for (cache, h) in CACHE_RESULTS.iter().zip(hists) {
                    let labels: Labels =
                        vec![("pool", pool.clone()), ("cache", (*cache).to_owned())];
                    let (sum, count, buckets) = h.snapshot();
                    m.encode_family(&labels)?
                        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
                }
            }
        }
        let by_pool = |f: &dyn Fn(&PoolStats) -> i64| -> Vec<(Labels, i64)> {
            self.pools
                .iter()
                .map(|p| (vec![("pool", p.name.clone())], f(p)))
                .collect()
        };
        gauge(
            &mut enc,
            "magestack_pool_inflight",
            "Requests in PHP-FPM now",
            by_pool(&|p| as_i64(p.inflight)),
        )?;
        gauge(
            &mut enc,
            "magestack_pool_capacity",
            "Most requests in PHP-FPM at once (sum of pm.max_children; 0 = no cap)",
            by_pool(&|p| as_i64(p.max_inflight)),
        )?;
        gauge(
            &mut enc,
            "magestack_pool_queue_depth",
            "Requests waiting for a PHP-FPM slot now",
            by_pool(&|p| as_i64(p.queued)),
        )?;
        gauge(
            &mut enc,
            "magestack_pool_queue_capacity",
            "Requests that may wait for a slot",
            by_pool(&|p| as_i64(p.queue_size)),
        )?;
        counter(
            &mut enc,
            "magestack_pool_requests",
            "Requests admitted into PHP-FPM",
            self.pools
                .iter()
                .map(|p| (vec![("pool", p.name.clone())], p.requests)),
        )?;
        counter(
            &mut enc,
            "magestack_pool_rejected",
            "Requests answered 503 by the pool's bulkhead, by reason",
            self.pools.iter().flat_map(|p| {
                [
                    (
                        vec![
                            ("pool", p.name.clone()),
                            ("reason", "queue_full".to_owned()),
                        ],
                        p.rejected_queue_full,
                    ),
                    (
                        vec![
                            ("pool", p.name.clone()),
                            ("reason", "queue_timeout".to_owned()),
                        ],
                        p.rejected_timeout,
                    ),
                ]
            }),
        )?;
        counter(
            &mut enc,
            "magestack_upstream_errors",
            "Failed PHP-FPM requests, by kind (timeout: 504; connect and protocol: 502)",
            self.pools.iter().flat_map(|p| {
                [
                    (
                        vec![("pool", p.name.clone()), ("kind", "timeout".to_owned())],
                        p.errors_timeout,
                    ),
                    (
                        vec![("pool", p.name.clone()), ("kind", "other".to_owned())],
                        p.errors_other,
                    ),
                ]
            }),
        )?;
        // Endpoint discovery (endpoints given by host name).
        counter(
            &mut enc,
            "magestack_pool_dns_lookups",
            "DNS lookups of endpoint names, by result (a failed lookup keeps the endpoints known)",
            self.pools.iter().flat_map(|p| {
                [
                    (
                        vec![("pool", p.name.clone()), ("result", "ok".to_owned())],
                        p.dns_lookups_ok,
                    ),
                    (
                        vec![("pool", p.name.clone()), ("result", "failed".to_owned())],
                        p.dns_lookups_failed,
                    ),
                ]
            }),
        )?;
        counter(
            &mut enc,
            "magestack_pool_endpoint_changes",
            "Endpoints discovery added (found in DNS) or removed (gone from DNS, drained)",
            self.pools.iter().flat_map(|p| {
                [
                    (
                        vec![("pool", p.name.clone()), ("change", "added".to_owned())],
                        p.endpoints_added,
                    ),
                    (
                        vec![("pool", p.name.clone()), ("change", "removed".to_owned())],
                        p.endpoints_removed,
                    ),
                ]
            }),
        )?;
        // What the health script says of PHP's dependencies, per pool: 1 when
        // every endpoint's last report has the check passing. They gate
        // readiness only at start (see `Pool`); afterwards this is where a
        // database or Redis outage shows.
        gauge(
            &mut enc,
            "magestack_php_dependency_up",
            "PHP's dependencies per the health script's last reports (1: every endpoint reports the check passing)",
            self.pools.iter().flat_map(|p| {
                ["db", "redis"].into_iter().filter_map(move |dep| {
                    let reports: Vec<&serde_json::Value> = p
                        .endpoints
                        .iter()
                        .filter_map(|e| e.health_report.as_ref())
                        .filter(|r| r.get(dep).is_some())
                        .collect();
                    if reports.is_empty() {
                        return None;
                    }
                    let up = reports.iter().all(|r| dependency_ok(&r[dep]));
                    Some((
                        vec![("pool", p.name.clone()), ("dependency", dep.to_owned())],
                        i64::from(up),
                    ))
                })
            }),
        )?;
        gauge(
            &mut enc,
            "magestack_pool_endpoints",
            "Endpoints of the pool, by state (active, joining: first check pending, draining: finishing its requests)",
            self.pools.iter().flat_map(|p| {
                ["active", "joining", "draining"].into_iter().map(move |state| {
                    (
                        vec![("pool", p.name.clone()), ("state", state.to_owned())],
                        p.endpoints.iter().filter(|e| e.state == state).count() as i64,
                    )
                })
            }),
        )?;
        // Per endpoint. The label is the endpoint's position in the pool's
        // current list, not its address: labels stay bounded (pod addresses
        // churn with every rollout); `/pools` maps positions to addresses.
        let endpoints: Vec<(Labels, &crate::pool::EndpointStats)> = self
            .pools
            .iter()
            .flat_map(|p| {
                p.endpoints.iter().enumerate().map(move |(i, e)| {
                    (
                        vec![("pool", p.name.clone()), ("endpoint", i.to_string())],
                        e,
                    )
                })
            })
            .collect();
        gauge(
            &mut enc,
            "magestack_pool_endpoint_up",
            "1 while the endpoint passes its health checks",
            endpoints
                .iter()
                .map(|(l, e)| (l.clone(), i64::from(e.health == "healthy"))),
        )?;
        let fpm: Vec<(Labels, &magestack_fastcgi::FpmStatus)> = endpoints
            .iter()
            .filter_map(|(l, e)| e.fpm.as_ref().map(|f| (l.clone(), f)))
            .collect();
        let fpm_gauge = |f: fn(&magestack_fastcgi::FpmStatus) -> u64| -> Vec<(Labels, i64)> {
            fpm.iter().map(|(l, s)| (l.clone(), as_i64(f(s)))).collect()
        };
        gauge(
            &mut enc,
            "magestack_fpm_active_processes",
            "PHP-FPM workers serving a request (status page)",
            fpm_gauge(|s| s.active_processes),
        )?;
        gauge(
            &mut enc,
            "magestack_fpm_idle_processes",
            "PHP-FPM workers waiting for a request",
            fpm_gauge(|s| s.idle_processes),
        )?;
        gauge(
            &mut enc,
            "magestack_fpm_total_processes",
            "PHP-FPM workers alive (pm.max_children with pm = static)",
            fpm_gauge(|s| s.total_processes),
        )?;
        gauge(
            &mut enc,
            "magestack_fpm_listen_queue",
            "Connections waiting in PHP-FPM's listen backlog",
            fpm_gauge(|s| s.listen_queue),
        )?;
        counter(
            &mut enc,
            "magestack_fpm_max_children_reached",
            "Times PHP-FPM wanted more workers than pm.max_children",
            fpm.iter().map(|(l, s)| (l.clone(), s.max_children_reached)),
        )?;
        counter(
            &mut enc,
            "magestack_fpm_accepted_connections",
            "Requests PHP-FPM accepted since it started",
            fpm.iter().map(|(l, s)| (l.clone(), s.accepted_conn)),
        )?;
        // Rate-limit rules answer 429; the network rules (`waf_*`) 403/404.
        let (blocked, limited): (Vec<_>, Vec<_>) = self
            .rate_limited
            .iter()
            .partition(|(name, _)| name.starts_with("waf_"));
        counter(
            &mut enc,
            "magestack_rate_limited",
            "Requests answered 429 by a rate limit, by rule",
            limited
                .iter()
                .map(|(rule, n)| (vec![("rule", rule.to_string())], *n)),
        )?;
        gauge(
            &mut enc,
            "magestack_request_body_memory_bytes",
            "Bytes of request bodies held in memory now (bounded by server.body_memory_bytes)",
            std::iter::once((Labels::new(), as_i64(self.bodies.memory_bytes))),
        )?;
        gauge(
            &mut enc,
            "magestack_open_file_cache_entries",
            "Paths the open-file cache keeps (bounded by magento.open_file_cache_entries)",
            std::iter::once((Labels::new(), as_i64(self.files.entries))),
        )?;
        gauge(
            &mut enc,
            "magestack_open_file_cache_bytes",
            "Bytes of static files and their gzip variants kept in memory (bounded by magento.open_file_cache_size)",
            std::iter::once((Labels::new(), as_i64(self.files.bytes))),
        )?;
        counter(
            &mut enc,
            "magestack_open_file_cache_lookups",
            "Static file lookups: hit (answered from memory or a trusted entry) or miss (stat or read)",
            [
                (vec![("result", "hit".to_owned())], self.files.hits),
                (vec![("result", "miss".to_owned())], self.files.misses),
            ],
        )?;
        counter(
            &mut enc,
            "magestack_open_file_cache_evictions",
            "Open-file cache entries evicted for room",
            std::iter::once((Labels::new(), self.files.evictions)),
        )?;
        counter(
            &mut enc,
            "magestack_request_bodies_spooled",
            "Request bodies written to temporary files (larger than server.body_buffer_bytes, or the memory budget was spent)",
            std::iter::once((Labels::new(), self.bodies.spooled)),
        )?;
        counter(
            &mut enc,
            "magestack_waf_blocked",
            "Requests refused by the network rules (deny: 403; admin_allow: 404)",
            blocked.iter().map(|(name, n)| {
                let reason = name.trim_start_matches("waf_");
                (vec![("reason", reason.to_owned())], *n)
            }),
        )?;
        counter(
            &mut enc,
            "magestack_waf_injection",
            "Requests with an SQL injection or XSS finding, by attack, location and action (blocked: 403; detected: passed on)",
            self.injection.0.iter().map(|c| {
                (
                    vec![
                        ("attack", c.attack.to_owned()),
                        ("location", c.location.to_owned()),
                        ("action", c.action.to_owned()),
                    ],
                    c.count,
                )
            }),
        )?;
        counter(
            &mut enc,
            "magestack_waf_uninspected_bodies",
            "Request bodies larger than waf.inspect_body_bytes, passed on without injection inspection",
            std::iter::once((Labels::new(), self.injection.1)),
        )?;
        if let Some(b) = &self.bus {
            counter(
                &mut enc,
                "magestack_purge_bus_messages",
                "Purge bus messages: sent (published here), received, applied (others' purges), duplicate (skipped), dropped (queue full, not published)",
                [
                    ("sent", b.sent),
                    ("received", b.received),
                    ("applied", b.applied),
                    ("duplicate", b.duplicates),
                    ("dropped", b.dropped),
                ]
                .into_iter()
                .map(|(k, v)| (vec![("kind", k.to_owned())], v)),
            )?;
            counter(
                &mut enc,
                "magestack_purge_bus_gaps",
                "Times this replica found it may have missed purges and marked its whole cache stale",
                std::iter::once((Labels::new(), b.gaps)),
            )?;
            counter(
                &mut enc,
                "magestack_purge_bus_redis_errors",
                "Failed Redis calls and lost connections of the purge bus",
                std::iter::once((Labels::new(), b.errors)),
            )?;
            if b.l2 {
                counter(
                    &mut enc,
                    "magestack_l2_lookups",
                    "Local cache misses looked up in the shared L2 store, by result (hit: served without PHP)",
                    [("hit", b.l2_hits), ("miss", b.l2_misses)]
                        .into_iter()
                        .map(|(k, v)| (vec![("result", k.to_owned())], v)),
                )?;
                counter(
                    &mut enc,
                    "magestack_l2_written_bytes",
                    "Bytes of cached pages copied to the shared L2 store",
                    std::iter::once((Labels::new(), b.l2_bytes_written)),
                )?;
                counter(
                    &mut enc,
                    "magestack_l2_errors",
                    "L2 calls that failed or took longer than 50 ms (PHP was asked instead)",
                    std::iter::once((Labels::new(), b.l2_errors)),
                )?;
            }
            gauge(
                &mut enc,
                "magestack_purge_bus_connected",
                "1 while subscribed to the purge bus",
                std::iter::once((Labels::new(), i64::from(b.connected))),
            )?;
        }
        if let Some(c) = &self.cache {
            let one = |v: u64| std::iter::once((Labels::new(), v));
            counter(
                &mut enc,
                "magestack_cache_hits",
                "Requests served from the full-page cache",
                one(c.hits),
            )?;
            counter(
                &mut enc,
                "magestack_cache_misses",
                "Cache lookups that went to the backend",
                one(c.misses),
            )?;
            counter(
                &mut enc,
                "magestack_cache_passes",
                "Requests that bypassed the cache",
                one(c.passes),
            )?;
            counter(
                &mut enc,
                "magestack_cache_purges",
                "Accepted PURGE requests",
                one(c.purges),
            )?;
            counter(
                &mut enc,
                "magestack_cache_purged_objects",
                "Objects removed or marked stale by purges",
                one(c.purged_objects),
            )?;
            counter(
                &mut enc,
                "magestack_cache_purges_refused",
                "PURGE requests refused by the ACL",
                one(c.purges_refused),
            )?;
            counter(
                &mut enc,
                "magestack_cache_purge_invalid_patterns",
                "Accepted PURGE requests whose tag or pool pattern is not a valid regex (nothing purged)",
                one(c.purge_invalid_patterns),
            )?;
            counter(
                &mut enc,
                "magestack_cache_evictions",
                "Objects evicted for space",
                one(c.evictions),
            )?;
            let g = |v: u64| std::iter::once((Labels::new(), as_i64(v)));
            gauge(
                &mut enc,
                "magestack_cache_objects",
                "Objects stored",
                g(c.objects),
            )?;
            gauge(
                &mut enc,
                "magestack_cache_bytes",
                "Bytes accounted against cache.size",
                g(c.bytes),
            )?;
            gauge(
                &mut enc,
                "magestack_cache_max_bytes",
                "cache.size in bytes",
                g(c.max_bytes),
            )?;
            gauge(
                &mut enc,
                "magestack_cache_backend_healthy",
                "1 while the health probe says the backend is healthy",
                g(u64::from(c.healthy)),
            )?;
        }
        Ok(())
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_families_and_labels() {
        let m = Metrics::new(&["frontend".into(), "admin".into()]);
        m.observe(1, "MISS", 200, 0.003);
        m.observe(0, "HIT", 304, 0.0002);
        m.observe(2, "UNCACHEABLE", 503, 1.5);
        m.observe(99, "?", 999, 0.1);
        let text = m.render(
            Vec::new(),
            None,
            vec![(Arc::from("customer_login"), 2)],
            (Vec::new(), 0),
            None,
            Usage {
                bodies: BodyStats {
                    memory_bytes: 4096,
                    spooled: 3,
                },
                files: FileCacheStats {
                    entries: 7,
                    ..Default::default()
                },
            },
        );
        assert!(
            text.contains("magestack_open_file_cache_entries 7"),
            "{text}"
        );
        assert!(
            text.contains("magestack_request_body_memory_bytes 4096"),
            "{text}"
        );
        assert!(
            text.contains("magestack_request_bodies_spooled_total 3"),
            "{text}"
        );
        assert!(
            text.contains("magestack_rate_limited_total{rule=\"customer_login\"} 2"),
            "{text}"
        );
        assert!(text.contains("magestack_request_duration_seconds_bucket{le=\"0.005\",pool=\"frontend\",cache=\"miss\"} 1"), "{text}");
        assert!(
            text.contains("magestack_requests_total{status_class=\"5xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("magestack_requests_total{status_class=\"3xx\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
