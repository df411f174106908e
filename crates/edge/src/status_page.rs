//! The status page (`GET /` on the admin listener) and its data
//! (`GET /status.json`, what `magestack top` reads): the figures of
//! `/metrics`, `/pools` and `/cache/stats` for a person rather than
//! Prometheus. A sampler reads the edge's own metrics every
//! [`SAMPLE_EVERY`] and keeps [`SAMPLES`] of them, so the page can show the
//! last minute (hit ratio, purges per second, p95 by pool), small charts
//! and the last error events, with no external store.
//!
//! The page is one self-contained HTML document (no external assets): the
//! sections are rendered here, so it is a complete snapshot with JavaScript
//! off; with JavaScript on, a few lines re-fetch the sections every two
//! seconds and swap them in. One renderer, so the live page and the
//! snapshot cannot disagree, and every figure comes from the same
//! `/metrics` text the scrape sees.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::Edge;

/// How often the sampler reads the metrics.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept: five minutes at [`SAMPLE_EVERY`].
pub const SAMPLES: usize = 150;
/// The window of the "last minute" figures.
const WINDOW: Duration = Duration::from_secs(60);
/// Error events kept for "last errors".
const EVENTS: usize = 20;

/// The page's frame; `{{SECTIONS}}` is replaced with the rendered sections.
const PAGE: &str = include_str!("status_page.html");

/// One parsed line of the Prometheus text.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let body = rest.trim_end_matches('}');
                let mut labels = BTreeMap::new();
                // Label values here are pool names, rules, classes: no
                // commas or quotes inside.
                for pair in body.split(',') {
                    if let Some((k, v)) = pair.split_once('=') {
                        labels.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
                    }
                }
                (n.to_owned(), labels)
            }
            None => (head.to_owned(), BTreeMap::new()),
        };
        out.push(Series {
            name,
            labels,
            value,
        });
    }
    out
}

/// One reading of the edge's counters.
#[derive(Debug, Clone, Default)]
struct Sample {
    at: Option<Instant>,
    hits: u64,
    misses: u64,
    purges: u64,
    /// Per pool: cumulative duration buckets (upper bound, count).
    buckets: BTreeMap<String, Vec<(f64, u64)>>,
    /// Counters whose growth is an error event: (what, count).
    errors: BTreeMap<String, u64>,
    /// Endpoint health: "pool endpoint" → health.
    health: BTreeMap<String, String>,
}

fn sample(edge: &Edge, metrics: &[Series], now: Instant) -> Sample {
    let mut s = Sample {
        at: Some(now),
        ..Default::default()
    };
    if let Some(c) = edge.cache_stats() {
        s.hits = c.hits;
        s.misses = c.misses;
        s.purges = c.purges;
    }
    for m in metrics {
        let label = |k: &str| m.labels.get(k).map(String::as_str).unwrap_or("");
        match m.name.as_str() {
            "magestack_request_duration_seconds_bucket" => {
                let le = match label("le") {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or(f64::INFINITY),
                };
                let b = s.buckets.entry(label("pool").to_owned()).or_default();
                match b.iter_mut().find(|(l, _)| *l == le) {
                    Some((_, c)) => *c += m.value as u64,
                    None => b.push((le, m.value as u64)),
                }
            }
            "magestack_upstream_errors_total" => {
                s.errors.insert(
                    format!("pool {}: PHP-FPM {} errors", label("pool"), label("kind")),
                    m.value as u64,
                );
            }
            "magestack_pool_rejected_total" => {
                s.errors.insert(
                    format!(
                        "pool {}: requests refused ({})",
                        label("pool"),
                        label("reason")
                    ),
                    m.value as u64,
                );
            }
            "magestack_requests_total" if label("status_class") == "5xx" => {
                s.errors.insert("5xx answers".to_owned(), m.value as u64);
            }
            "magestack_purge_bus_gaps_total" | "magestack_purge_bus_redis_errors_total" => {
                s.errors.insert(
                    m.name.replace("magestack_", "").replace('_', " "),
                    m.value as u64,
                );
            }
            _ => {}
        }
    }
    for b in s.buckets.values_mut() {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
    }
    for p in edge.pool_stats() {
        for e in p.endpoints {
            s.health.insert(
                format!("pool {} endpoint {}", p.name, e.endpoint),
                e.health.to_owned(),
            );
        }
    }
    s
}

/// The 95th percentile (upper bucket bound, in ms) of the requests between
/// two cumulative readings.
fn p95_ms(new: &[(f64, u64)], old: Option<&Vec<(f64, u64)>>) -> Option<f64> {
    let delta: Vec<(f64, u64)> = new
        .iter()
        .map(|(le, c)| {
            let before = old
                .and_then(|o| o.iter().find(|(l, _)| l == le))
                .map_or(0, |(_, c)| *c);
            (*le, c.saturating_sub(before))
        })
        .collect();
    let total = delta.last().map_or(0, |(_, c)| *c);
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * 0.95).ceil() as u64;
    delta.iter().find(|(_, c)| *c >= rank).map(|(le, _)| {
        if le.is_finite() {
            le * 1000.0
        } else {
            f64::INFINITY
        }
    })
}

/// An error event for "last errors".
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since the epoch.
    pub unix: u64,
    /// What happened.
    pub text: String,
}

#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<Sample>,
    events: VecDeque<Event>,
}

/// The sampler's memory: a few hundred samples, bounded.
#[derive(Debug, Default)]
pub struct History(Mutex<Ring>);

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding it leaves plain data: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the edge now and keeps the reading; growth of an error
    /// counter or an endpoint turning unhealthy becomes an event.
    pub fn record(&self, edge: &Edge) {
        let metrics = parse_metrics(&edge.render_metrics());
        let now = Instant::now();
        let s = sample(edge, &metrics, now);
        let unix = unix_now();
        let mut ring = self.lock();
        if let Some(prev) = ring.samples.back() {
            let mut events = Vec::new();
            for (what, n) in &s.errors {
                let before = prev.errors.get(what).copied().unwrap_or(0);
                if *n > before {
                    events.push(format!("{what}: +{}", n - before));
                }
            }
            for (what, h) in &s.health {
                // Turning unhealthy, and recovering from it, are events;
                // the first check after start is not.
                let was = prev.health.get(what).map(String::as_str);
                if (h == "unhealthy" && was != Some("unhealthy"))
                    || (was == Some("unhealthy") && h == "healthy")
                {
                    events.push(format!("{what} is {h}"));
                }
            }
            for text in events {
                ring.events.push_back(Event { unix, text });
                if ring.events.len() > EVENTS {
                    ring.events.pop_front();
                }
            }
        }
        ring.samples.push_back(s);
        if ring.samples.len() > SAMPLES {
            ring.samples.pop_front();
        }
    }

    /// Samples every [`SAMPLE_EVERY`] as long as the task runs.
    pub async fn run(self: std::sync::Arc<Self>, live: crate::LiveEdge) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.record(&live.current());
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Everything the page and `magestack top` show.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Seconds since the epoch.
    pub unix: u64,
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// The full-page cache; `None` when off.
    pub cache: Option<CacheView>,
    /// Requests answered, by status class.
    pub requests: BTreeMap<String, u64>,
    /// PHP-FPM pools.
    pub pools: Vec<PoolView>,
    /// WAF blocks and rate-limit hits: (`blocked` | `rate_limited` | other, rule, count).
    pub waf: Vec<(String, String, u64)>,
    /// The purge bus; `None` without `[cluster]`.
    pub bus: Option<BusView>,
    /// Canary rollout state, one line (`magestack top` prints it).
    pub rollout: String,
    /// `GET /rollout`'s JSON when `[rollout]` is configured: state, step,
    /// weight, reason and the tracks' requests, errors and p95.
    pub rollout_state: Option<serde_json::Value>,
    /// Last error events, newest last.
    pub events: Vec<Event>,
    /// Seconds between chart points.
    pub step_secs: u64,
    /// Hit ratio per sample interval (`None`: no lookups then).
    pub hit_ratio_series: Vec<Option<f64>>,
    /// p95 in ms per pool per sample interval.
    pub p95_series: BTreeMap<String, Vec<Option<f64>>>,
}

/// The cache section.
#[derive(Debug, Clone, Serialize)]
pub struct CacheView {
    /// Objects held.
    pub objects: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The limit.
    pub max_bytes: u64,
    /// Since start.
    pub hits: u64,
    /// Since start.
    pub misses: u64,
    /// Since start.
    pub passes: u64,
    /// hits / (hits + misses) since start.
    pub hit_ratio: f64,
    /// Over the last minute (`None`: no lookups, or not sampled yet).
    pub hit_ratio_1m: Option<f64>,
    /// Purges since start.
    pub purges: u64,
    /// Over the last minute.
    pub purges_per_sec_1m: f64,
    /// Evicted since start.
    pub evictions: u64,
    /// The backend health probe passes.
    pub backend_healthy: bool,
}

/// One pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    /// Its name.
    pub name: String,
    /// Busy: requests in PHP now.
    pub inflight: usize,
    /// Capacity (0 = no cap).
    pub max_inflight: usize,
    /// Waiting now.
    pub queued: usize,
    /// The queue's bound.
    pub queue_size: usize,
    /// Admitted since start.
    pub requests: u64,
    /// Refused (queue full or timed out) since start.
    pub rejected: u64,
    /// PHP-FPM errors (502/504) since start.
    pub errors: u64,
    /// p95 over the last minute, ms.
    pub p95_ms_1m: Option<f64>,
    /// Endpoints.
    pub endpoints: Vec<EndpointView>,
}

/// One endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    /// Address.
    pub endpoint: String,
    /// `active`, `joining`, `draining`.
    pub state: String,
    /// `healthy`, `unhealthy`, `unknown`.
    pub health: String,
    /// Warm per the health script.
    pub warm: bool,
    /// In flight.
    pub inflight: usize,
    /// FPM's own figures: active, idle, total processes, listen queue.
    pub fpm: Option<(u64, u64, u64, u64)>,
}

/// The purge bus.
#[derive(Debug, Clone, Serialize)]
pub struct BusView {
    /// Subscribed now.
    pub connected: bool,
    /// Messages by kind.
    pub messages: BTreeMap<String, u64>,
    /// Missed-purge gaps detected.
    pub gaps: u64,
    /// Failed Redis calls.
    pub redis_errors: u64,
}

/// The snapshot now, from the same `/metrics` text a scrape would get.
pub fn snapshot(edge: &Edge, ready: bool, history: &History) -> Snapshot {
    let metrics = parse_metrics(&edge.render_metrics());
    let now = Instant::now();
    let current = sample(edge, &metrics, now);
    let ring = history.lock();
    // The oldest sample inside the window (the window's start).
    let base = ring
        .samples
        .iter()
        .find(|s| s.at.is_some_and(|t| now.duration_since(t) <= WINDOW));
    let cache = edge.cache_stats().map(|c| {
        let lookups = c.hits + c.misses;
        let (ratio_1m, purges_1m) = match base {
            Some(b) => {
                let (h, m) = (
                    c.hits.saturating_sub(b.hits),
                    c.misses.saturating_sub(b.misses),
                );
                let secs =
                    b.at.map_or(1.0, |t| now.duration_since(t).as_secs_f64().max(1.0));
                (
                    (h + m > 0).then(|| h as f64 / (h + m) as f64),
                    c.purges.saturating_sub(b.purges) as f64 / secs,
                )
            }
            None => (None, 0.0),
        };
        CacheView {
            objects: c.objects,
            bytes: c.bytes,
            max_bytes: c.max_bytes,
            hits: c.hits,
            misses: c.misses,
            passes: c.passes,
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                c.hits as f64 / lookups as f64
            },
            hit_ratio_1m: ratio_1m,
            purges: c.purges,
            purges_per_sec_1m: purges_1m,
            evictions: c.evictions,
            backend_healthy: c.healthy,
        }
    });
    let pools = edge
        .pool_stats()
        .into_iter()
        .map(|p| PoolView {
            p95_ms_1m: current
                .buckets
                .get(&p.name)
                .and_then(|b| p95_ms(b, base.and_then(|s| s.buckets.get(&p.name)))),
            name: p.name,
            inflight: p.inflight,
            max_inflight: p.max_inflight,
            queued: p.queued,
            queue_size: p.queue_size,
            requests: p.requests,
            rejected: p.rejected_queue_full + p.rejected_timeout,
            errors: p.errors_timeout + p.errors_other,
            endpoints: p
                .endpoints
                .into_iter()
                .map(|e| EndpointView {
                    fpm: e.fpm.as_ref().map(|f| {
                        (
                            f.active_processes,
                            f.idle_processes,
                            f.total_processes,
                            f.listen_queue,
                        )
                    }),
                    endpoint: e.endpoint,
                    state: e.state.to_owned(),
                    health: e.health.to_owned(),
                    warm: e.warm,
                    inflight: e.inflight,
                })
                .collect(),
        })
        .collect();
    let mut requests = BTreeMap::new();
    let mut waf = Vec::new();
    let mut bus = BusView {
        connected: false,
        messages: BTreeMap::new(),
        gaps: 0,
        redis_errors: 0,
    };
    let mut has_bus = false;
    for m in &metrics {
        let label = |k: &str| m.labels.get(k).cloned().unwrap_or_default();
        match m.name.as_str() {
            "magestack_requests_total" => {
                requests.insert(label("status_class"), m.value as u64);
            }
            "magestack_waf_blocked_total" => {
                waf.push(("blocked".to_owned(), label("reason"), m.value as u64))
            }
            "magestack_rate_limited_total" => {
                waf.push(("rate_limited".to_owned(), label("rule"), m.value as u64))
            }
            n if n.starts_with("magestack_waf_")
                && n.ends_with("_total")
                && !m.labels.is_empty() =>
            {
                let rule = m.labels.values().cloned().collect::<Vec<_>>().join(" ");
                waf.push((
                    n.trim_start_matches("magestack_waf_")
                        .trim_end_matches("_total")
                        .to_owned(),
                    rule,
                    m.value as u64,
                ));
            }
            "magestack_purge_bus_connected" => {
                has_bus = true;
                bus.connected = m.value >= 1.0;
            }
            "magestack_purge_bus_messages_total" => {
                has_bus = true;
                bus.messages.insert(label("kind"), m.value as u64);
            }
            "magestack_purge_bus_gaps_total" => bus.gaps = m.value as u64,
            "magestack_purge_bus_redis_errors_total" => bus.redis_errors = m.value as u64,
            _ => {}
        }
    }
    // Per-interval series for the charts.
    let samples: Vec<&Sample> = ring
        .samples
        .iter()
        .chain(std::iter::once(&current))
        .collect();
    let mut hit_ratio_series = Vec::new();
    let mut p95_series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for w in samples.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (h, m) = (
            b.hits.saturating_sub(a.hits),
            b.misses.saturating_sub(a.misses),
        );
        hit_ratio_series.push((h + m > 0).then(|| h as f64 / (h + m) as f64));
        for (pool, buckets) in &b.buckets {
            if pool == "none" {
                continue;
            }
            p95_series
                .entry(pool.clone())
                .or_default()
                .push(p95_ms(buckets, a.buckets.get(pool)));
        }
    }
    let rollout_state = edge.rollout.as_ref().map(|r| {
        let pools = edge.pool_stats();
        r.status_json(pools.get(r.pool_index()))
    });
    Snapshot {
        unix: unix_now(),
        ready: ready && edge.pools_ready(),
        cache,
        requests,
        pools,
        waf,
        bus: has_bus.then_some(bus),
        rollout: rollout_line(rollout_state.as_ref()),
        rollout_state,
        events: ring.events.iter().cloned().collect(),
        step_secs: SAMPLE_EVERY.as_secs(),
        hit_ratio_series,
        p95_series,
    }
}

/// The rollout in one line: `running, step 2 (weight 25%), pool frontend: reason`.
fn rollout_line(state: Option<&serde_json::Value>) -> String {
    let Some(v) = state else {
        return "none: no [rollout] is configured on this edge".to_owned();
    };
    let step = v["step"]
        .as_u64()
        .map(|s| format!(", step {}", s + 1))
        .unwrap_or_default();
    format!(
        "{}{step} (weight {}%), pool {}: {}",
        v["state"].as_str().unwrap_or("?"),
        v["weight"].as_u64().unwrap_or(0),
        v["pool"].as_str().unwrap_or("?"),
        v["reason"].as_str().unwrap_or("")
    )
}

/// The rollout section's body: the line, then the tracks' figures.
fn render_rollout(o: &mut String, s: &Snapshot) {
    let _ = write!(o, "<p id=\"rollout-line\">{}</p>", esc(&s.rollout));
    let Some(v) = &s.rollout_state else {
        return;
    };
    let num = |x: &serde_json::Value| x.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
    o.push_str("<div class=\"scroll\"><table id=\"rollout-tracks\"><tr><th>Track</th><th>Release</th><th>Requests</th><th>Errors</th><th>p95</th><th>Since start</th></tr>");
    for name in ["stable", "canary"] {
        let t = &v["tracks"][name];
        let p95 = t["p95_ms"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        let _ = write!(
            o,
            "<tr data-track=\"{name}\"><td>{name}</td><td>{}</td><td class=\"requests\">{}</td><td class=\"errors\">{}</td><td class=\"p95\">{}</td><td>{} / {} errors</td></tr>",
            esc(t["release"].as_str().unwrap_or("-")),
            num(&t["requests"]),
            num(&t["errors"]),
            p95,
            num(&t["requests_total"]),
            num(&t["errors_total"]),
        );
    }
    o.push_str("</table></div>");
    if let Some(a) = v["analysis"].as_object() {
        let _ = write!(
            o,
            "<p>Analysis: {} ({})</p>",
            esc(a.get("verdict").and_then(|x| x.as_str()).unwrap_or("-")),
            esc(a.get("reason").and_then(|x| x.as_str()).unwrap_or(""))
        );
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `HH:MM:SS` of a Unix time, UTC.
fn clock(unix: u64) -> String {
    let d = unix % 86_400;
    format!("{:02}:{:02}:{:02}", d / 3600, d % 3600 / 60, d % 60)
}

fn pct(r: f64) -> String {
    format!("{:.1} %", r * 100.0)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A small line chart as inline SVG; gaps where a point is `None`.
fn sparkline(points: &[Option<f64>], max: Option<f64>, label: &str) -> String {
    let (w, h) = (300.0, 48.0);
    let top = max.unwrap_or_else(|| {
        points
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-9)
    });
    let n = points.len().max(2) as f64 - 1.0;
    let mut path = String::new();
    let mut pen_up = true;
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) if v.is_finite() => {
                let x = i as f64 / n * w;
                let y = h - (v / top).clamp(0.0, 1.0) * (h - 2.0) - 1.0;
                let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_up { "M" } else { "L" });
                pen_up = false;
            }
            _ => pen_up = true,
        }
    }
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\"><path d=\"{path}\"/></svg>",
        esc(label)
    )
}

/// The sections of the page (also what the page's script re-fetches).
pub fn render_sections(s: &Snapshot) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<p id=\"updated\" data-unix=\"{}\">{} · figures of {} UTC</p>",
        s.unix,
        if s.ready {
            "<span class=\"ok\">ready</span>"
        } else {
            "<span class=\"bad\">NOT READY</span>"
        },
        clock(s.unix)
    );
    // Cache.
    o.push_str("<section id=\"cache\"><h2>Cache</h2>");
    match &s.cache {
        Some(c) => {
            let fill = if c.max_bytes == 0 {
                0.0
            } else {
                c.bytes as f64 / c.max_bytes as f64
            };
            let _ = write!(
                o,
                "<dl><dt>hit ratio, last minute</dt><dd data-k=\"hit_ratio_1m\">{}</dd>\
                 <dt>hit ratio since start</dt><dd data-k=\"hit_ratio\">{}</dd>\
                 <dt>hits / misses / passes</dt><dd><span data-k=\"hits\">{}</span> / <span data-k=\"misses\">{}</span> / <span data-k=\"passes\">{}</span></dd>\
                 <dt>objects</dt><dd data-k=\"objects\">{}</dd>\
                 <dt>bytes / limit</dt><dd><span data-k=\"bytes\" data-v=\"{}\">{}</span> / {} <meter min=\"0\" max=\"1\" value=\"{fill:.3}\"></meter></dd>\
                 <dt>purges</dt><dd><span data-k=\"purges\">{}</span> ({:.2}/s last minute)</dd>\
                 <dt>evictions</dt><dd data-k=\"evictions\">{}</dd>\
                 <dt>backend probe</dt><dd>{}</dd></dl>",
                c.hit_ratio_1m.map_or("–".to_owned(), pct),
                pct(c.hit_ratio),
                c.hits,
                c.misses,
                c.passes,
                c.objects,
                c.bytes,
                bytes(c.bytes),
                bytes(c.max_bytes),
                c.purges,
                c.purges_per_sec_1m,
                c.evictions,
                if c.backend_healthy { "<span class=\"ok\">healthy</span>" } else { "<span class=\"bad\">sick</span>" },
            );
            let _ = write!(
                o,
                "<figure><figcaption>hit ratio, every {} s, last {} min</figcaption>{}</figure>",
                s.step_secs,
                (s.step_secs as usize * SAMPLES) / 60,
                sparkline(&s.hit_ratio_series, Some(1.0), "hit ratio")
            );
        }
        None => o.push_str("<p>The full-page cache is off.</p>"),
    }
    o.push_str("</section>");
    // Requests.
    o.push_str("<section id=\"requests\"><h2>Requests</h2><dl>");
    for (class, n) in &s.requests {
        let _ = write!(
            o,
            "<dt>{}</dt><dd data-k=\"requests_{0}\">{n}</dd>",
            esc(class)
        );
    }
    o.push_str("</dl></section>");
    // Pools.
    o.push_str("<section id=\"pools\"><h2>PHP-FPM pools</h2>");
    if s.pools.is_empty() {
        o.push_str("<p>No FastCGI pools (HTTP upstream).</p>");
    }
    for p in &s.pools {
        let cap = if p.max_inflight == 0 {
            "no cap".to_owned()
        } else {
            p.max_inflight.to_string()
        };
        let unhealthy = p.endpoints.iter().any(|e| e.health == "unhealthy");
        let _ = write!(
            o,
            "<div class=\"pool{}\" data-pool=\"{}\"><h3>{} {}</h3><dl>\
             <dt>busy / capacity</dt><dd><span data-k=\"inflight\">{}</span> / {cap}</dd>\
             <dt>queued / bound</dt><dd><span data-k=\"queued\">{}</span> / {}</dd>\
             <dt>requests</dt><dd data-k=\"requests\">{}</dd>\
             <dt>refused / PHP errors</dt><dd>{} / {}</dd>\
             <dt>p95, last minute</dt><dd data-k=\"p95\">{}</dd></dl>",
            if unhealthy { " unhealthy" } else { "" },
            esc(&p.name),
            esc(&p.name),
            if unhealthy {
                "<span class=\"bad\">UNHEALTHY</span>"
            } else {
                ""
            },
            p.inflight,
            p.queued,
            p.queue_size,
            p.requests,
            p.rejected,
            p.errors,
            p.p95_ms_1m.map_or("–".to_owned(), |v| if v.is_finite() {
                format!("≤ {v:.0} ms")
            } else {
                "> largest bucket".to_owned()
            }),
        );
        o.push_str("<div class=\"scroll\"><table><tr><th>endpoint</th><th>state</th><th>health</th><th>warm</th><th>in flight</th><th>FPM active/idle/total</th><th>FPM queue</th></tr>");
        for e in &p.endpoints {
            let (a, i, t, q) = e.fpm.map_or(
                ("–".into(), "–".into(), "–".into(), "–".into()),
                |(a, i, t, q)| (a.to_string(), i.to_string(), t.to_string(), q.to_string()),
            );
            let _ = write!(
                o,
                "<tr data-endpoint=\"{}\"><td>{}</td><td>{}</td><td class=\"{}\" data-k=\"health\">{}</td><td>{}</td><td>{}</td><td>{a}/{i}/{t}</td><td>{q}</td></tr>",
                esc(&e.endpoint),
                esc(&e.endpoint),
                esc(&e.state),
                match e.health.as_str() { "healthy" => "ok", "unhealthy" => "bad", _ => "" },
                esc(&e.health),
                if e.warm { "yes" } else { "no" },
                e.inflight
            );
        }
        o.push_str("</table></div>");
        if let Some(series) = s.p95_series.get(&p.name) {
            let _ = write!(
                o,
                "<figure><figcaption>p95 (ms) every {} s</figcaption>{}</figure>",
                s.step_secs,
                sparkline(series, None, "p95")
            );
        }
        o.push_str("</div>");
    }
    o.push_str("</section>");
    // WAF.
    o.push_str("<section id=\"waf\"><h2>WAF and rate limits</h2><div class=\"scroll\"><table><tr><th>kind</th><th>rule</th><th>count</th></tr>");
    let mut waf = s.waf.clone();
    waf.sort_by_key(|w| std::cmp::Reverse(w.2));
    for (kind, rule, n) in &waf {
        let _ = write!(
            o,
            "<tr data-rule=\"{}\"><td>{}</td><td>{}</td><td data-k=\"count\">{n}</td></tr>",
            esc(rule),
            esc(kind),
            esc(rule)
        );
    }
    o.push_str("</table></div></section>");
    // Cluster bus.
    o.push_str("<section id=\"bus\"><h2>Cluster purge bus</h2>");
    match &s.bus {
        Some(b) => {
            let _ = write!(
                o,
                "<dl><dt>state</dt><dd data-k=\"bus_connected\">{}</dd>",
                if b.connected {
                    "<span class=\"ok\">connected</span>"
                } else {
                    "<span class=\"bad\">disconnected</span>"
                }
            );
            for (k, n) in &b.messages {
                let _ = write!(o, "<dt>messages {}</dt><dd>{n}</dd>", esc(k));
            }
            let _ = write!(
                o,
                "<dt>gaps (missed purges)</dt><dd>{}</dd><dt>Redis errors</dt><dd>{}</dd></dl>",
                b.gaps, b.redis_errors
            );
        }
        None => o.push_str(
            "<p>Not configured: this edge's purges stay local ([cluster] redis_url).</p>",
        ),
    }
    o.push_str("</section>");
    o.push_str("<section id=\"rollout\"><h2>Rollout</h2>");
    render_rollout(&mut o, s);
    o.push_str("</section>");
    o.push_str("<section id=\"errors\"><h2>Last errors</h2>");
    if s.events.is_empty() {
        o.push_str("<p>None since the edge started.</p>");
    } else {
        o.push_str("<ul>");
        for e in s.events.iter().rev() {
            let _ = write!(
                o,
                "<li><time data-unix=\"{}\">{} UTC</time> {}</li>",
                e.unix,
                clock(e.unix),
                esc(&e.text)
            );
        }
        o.push_str("</ul>");
    }
    o.push_str("</section>");
    o
}

/// The whole page.
pub fn render_page(s: &Snapshot) -> String {
    PAGE.replace("{{SECTIONS}}", &render_sections(s))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_and_p95() {
        let m = parse_metrics("# HELP x\nmagestack_requests_total{status_class=\"2xx\"} 7\nup 1\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels["status_class"], "2xx");
        let new = vec![(0.01, 90), (0.1, 99), (f64::INFINITY, 100)];
        assert_eq!(p95_ms(&new, None), Some(100.0));
        let old = vec![(0.01, 90), (0.1, 90), (f64::INFINITY, 90)];
        assert_eq!(p95_ms(&new, Some(&old)), Some(f64::INFINITY));
        assert_eq!(p95_ms(&old, Some(&old)), None);
    }

    #[test]
    fn sparkline_gaps() {
        let svg = sparkline(&[Some(0.5), None, Some(1.0)], Some(1.0), "x");
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
    }
}
