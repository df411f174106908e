//! PHP-FPM pools: endpoints behind one bulkhead each.
//!
//! A pool admits at most `max_inflight` requests into PHP (the sum of its
//! endpoints' `pm.max_children`); up to `queue_size` more wait, in arrival
//! order, for at most `queue_timeout`; anything beyond is answered 503 with
//! `Retry-After` by the caller. Waiting happens here, in the edge, where it
//! is bounded and counted, not in PHP-FPM's listen backlog. Admitted
//! requests go to the endpoint with the fewest requests in flight.
//!
//! The slot is held until the response body is finished (the permit rides
//! on the body), because PHP's worker is busy until then.
//!
//! The endpoint list can change while requests run: endpoints given by host
//! name are looked up at an interval (see [`crate::discovery`]). The list is
//! swapped whole (readers load it without a lock); a permit holds its
//! endpoint itself, so an endpoint removed from the list keeps serving the
//! requests it has (it *drains*) and goes away with the last of them.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::discovery::{self, LookupError, Resolver};
use crate::settings::{PoolSpec, UpstreamTarget};

/// Health of an endpoint, from its checks.
const UNKNOWN: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;

/// The health script run at each check (see `[readiness]`).
#[derive(Clone, Debug)]
pub(crate) struct HealthScript {
    pub(crate) script_filename: String,
    pub(crate) script_name: String,
    pub(crate) document_root: String,
    pub(crate) min_ratio: f64,
}

/// How an endpoint is spoken to.
pub(crate) enum Transport {
    FastCgi(magestack_fastcgi::Client),
    // Boxed: the hyper client is large; there is one per endpoint.
    Http(Box<crate::http_upstream::HttpUpstream>),
}

/// One endpoint of a pool.
pub(crate) struct PoolEndpoint {
    pub(crate) transport: Transport,
    pub(crate) label: String,
    /// Which configured endpoint it comes from (index into the pool's
    /// sources).
    source: usize,
    /// The address found by discovery; `None` for a configured endpoint.
    addr: Option<IpAddr>,
    /// Found by discovery and not yet through a passing check: gets no
    /// requests while others can take them.
    joining: AtomicBool,
    inflight: AtomicUsize,
    /// Where the check goes: the status page's client, or a plain connect.
    check: Check,
    health: std::sync::atomic::AtomicU8,
    failures: std::sync::atomic::AtomicU32,
    status: std::sync::Mutex<Option<magestack_fastcgi::FpmStatus>>,
    /// Runs the health script (no keep-alive: it must not pin a worker).
    health_client: Option<magestack_fastcgi::Client>,
    /// The health script said ready and OPcache is warm enough (true
    /// without a health script).
    warm: std::sync::atomic::AtomicBool,
    /// The start-up gate passed: the script once said ready (database and
    /// Redis reachable). From then on only OPcache's warmth decides `warm`;
    /// a database or Redis blip shows in the report and the metrics, and
    /// does not take the pod (and the cached pages it serves) out of
    /// rotation. Reset when the endpoint goes unhealthy (FPM restarted).
    gated: std::sync::atomic::AtomicBool,
    /// The health script's last verdict on the dependencies (for the log's
    /// transitions).
    deps_ok: std::sync::atomic::AtomicBool,
    /// The health script's last answer, for `/pools`.
    health_report: std::sync::Mutex<Option<serde_json::Value>>,
}

impl PoolEndpoint {
    /// What the logs call this endpoint: an HTTP upstream is not PHP-FPM.
    fn kind(&self) -> &'static str {
        match self.transport {
            Transport::FastCgi(_) => "PHP-FPM",
            Transport::Http(_) => "HTTP upstream",
        }
    }
}

enum Check {
    Status {
        client: magestack_fastcgi::Client,
        path: String,
    },
    Connect(magestack_fastcgi::Endpoint),
}

/// Where a pool's endpoints come from: one per configured endpoint.
enum Source {
    /// Built once, never looked up (IP address, socket, or no discovery).
    Fixed,
    /// A host name looked up every `resolve_interval`; each address is an
    /// endpoint on `port`.
    Dns {
        host: String,
        port: u16,
        http: bool,
        /// The status address: the same port on each address found when
        /// `status_endpoints` names the same host, else as configured.
        status: Option<StatusAt>,
        /// Whether the last lookup failed (logged once per change).
        failing: AtomicBool,
    },
}

enum StatusAt {
    SamePod(u16),
    Fixed(UpstreamTarget),
}

/// What building an endpoint needs, kept for the ones discovery adds later.
struct EndpointFactory {
    connect_timeout: Duration,
    request_timeout: Duration,
    keepalive: usize,
    max_inflight: usize,
    /// The bulkhead caps this pool's only endpoint at `max_inflight` (its
    /// `pm.max_children`), so connections to it never outnumber its children.
    capped_endpoint: bool,
    max_response_header_bytes: usize,
    status_path: Option<String>,
    health_script: bool,
}

/// A pool and its bulkhead.
pub(crate) struct Pool {
    pub(crate) name: String,
    /// The endpoints taking requests; replaced whole by discovery.
    endpoints: ArcSwap<Vec<Arc<PoolEndpoint>>>,
    /// Endpoints gone from DNS whose last requests may still run.
    draining: std::sync::Mutex<Vec<Weak<PoolEndpoint>>>,
    sources: Vec<Source>,
    factory: EndpointFactory,
    resolve_interval: Duration,
    lookups_ok: AtomicU64,
    lookups_failed: AtomicU64,
    endpoints_added: AtomicU64,
    endpoints_removed: AtomicU64,
    slots: Option<Arc<Semaphore>>,
    max_inflight: usize,
    inflight: AtomicUsize,
    queued: AtomicUsize,
    queue_size: usize,
    queue_timeout: Duration,
    requests: AtomicU64,
    rejected_queue_full: AtomicU64,
    rejected_timeout: AtomicU64,
    errors_timeout: AtomicU64,
    errors_other: AtomicU64,
    check_interval: Duration,
    check_timeout: Duration,
    unhealthy_after: u32,
    health_script: Option<HealthScript>,
}

/// Why a request was not admitted (the caller answers 503 + `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// `queue_size` requests were already waiting.
    QueueFull,
    /// No slot within `queue_timeout`.
    Timeout,
    /// The pool has no endpoint (its names have not resolved yet).
    NoEndpoint,
}

/// An admitted request: holds the pool slot and counts the endpoint's
/// in-flight requests until dropped.
pub(crate) struct PoolPermit {
    pool: Arc<Pool>,
    endpoint: Arc<PoolEndpoint>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl PoolPermit {
    /// The FastCGI client of the chosen endpoint (`None` for HTTP).
    pub(crate) fn fastcgi(&self) -> Option<&magestack_fastcgi::Client> {
        match &self.endpoint.transport {
            Transport::FastCgi(c) => Some(c),
            Transport::Http(_) => None,
        }
    }

    /// The chosen endpoint's address (or socket path), for logs.
    pub(crate) fn endpoint_label(&self) -> &str {
        &self.endpoint.label
    }

    /// The HTTP upstream of the chosen endpoint (`None` for FastCGI).
    pub(crate) fn http(&self) -> Option<&crate::http_upstream::HttpUpstream> {
        match &self.endpoint.transport {
            Transport::Http(h) => Some(h),
            Transport::FastCgi(_) => None,
        }
    }
}

impl Drop for PoolPermit {
    fn drop(&mut self) {
        self.endpoint.inflight.fetch_sub(1, Ordering::Relaxed);
        self.pool.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Leaves the queue however the wait ends (slot, timeout, or the client
/// went away and the future was dropped).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A point-in-time view of a pool, for the admin API and metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStats {
    /// Pool name.
    pub name: String,
    /// Requests in PHP now.
    pub inflight: usize,
    /// The cap; 0 = none.
    pub max_inflight: usize,
    /// Requests waiting for a slot now.
    pub queued: usize,
    /// The queue's bound.
    pub queue_size: usize,
    /// Requests admitted since start.
    pub requests: u64,
    /// Requests refused because the queue was full.
    pub rejected_queue_full: u64,
    /// Requests refused after waiting `queue_timeout`.
    pub rejected_timeout: u64,
    /// PHP-FPM requests that timed out (504).
    pub errors_timeout: u64,
    /// PHP-FPM requests that failed otherwise (502).
    pub errors_other: u64,
    /// In flight per endpoint: the ones taking requests, then the draining.
    pub endpoints: Vec<EndpointStats>,
    /// DNS lookups of endpoint names that succeeded / failed.
    pub dns_lookups_ok: u64,
    /// See `dns_lookups_ok`.
    pub dns_lookups_failed: u64,
    /// Endpoints discovery added / removed since start.
    pub endpoints_added: u64,
    /// See `endpoints_added`.
    pub endpoints_removed: u64,
}

/// One endpoint in [`PoolStats`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointStats {
    /// `host:port` or the socket path (the address found, for discovered
    /// endpoints).
    pub endpoint: String,
    /// `active` (takes requests), `joining` (found by DNS, first check not
    /// passed yet) or `draining` (gone from DNS, finishing its requests).
    pub state: &'static str,
    /// Requests in flight to it.
    pub inflight: usize,
    /// `unknown` (not checked yet), `healthy` or `unhealthy`.
    pub health: &'static str,
    /// Warm per the health script (true without one).
    pub warm: bool,
    /// The health script's last answer, when one is configured.
    pub health_report: Option<serde_json::Value>,
    /// PHP-FPM's status page at the last successful check, when read.
    pub fpm: Option<magestack_fastcgi::FpmStatus>,
}

impl EndpointFactory {
    /// An endpoint speaking to `t`, its status read at `status_at` (or at
    /// `t` itself).
    fn build(
        &self,
        t: &UpstreamTarget,
        status_at: Option<&UpstreamTarget>,
        source: usize,
        addr: Option<IpAddr>,
    ) -> PoolEndpoint {
        let (endpoint, label) = fcgi_endpoint(t);
        let base =
            |transport, check, health_client: Option<magestack_fastcgi::Client>| PoolEndpoint {
                transport,
                label: label.clone(),
                source,
                addr,
                joining: AtomicBool::new(addr.is_some()),
                inflight: AtomicUsize::new(0),
                check,
                health: std::sync::atomic::AtomicU8::new(UNKNOWN),
                failures: std::sync::atomic::AtomicU32::new(0),
                status: std::sync::Mutex::new(None),
                warm: AtomicBool::new(health_client.is_none()),
                health_client,
                health_report: std::sync::Mutex::new(None),
                gated: std::sync::atomic::AtomicBool::new(false),
                deps_ok: std::sync::atomic::AtomicBool::new(true),
            };
        if let UpstreamTarget::Http(authority) = t {
            return base(
                Transport::Http(Box::new(crate::http_upstream::HttpUpstream::new(
                    authority,
                    self.connect_timeout,
                    self.request_timeout,
                    self.keepalive,
                ))),
                Check::Connect(endpoint),
                None,
            );
        }
        let check = match &self.status_path {
            Some(path) => Check::Status {
                client: magestack_fastcgi::Client::new(
                    status_at.map_or(endpoint.clone(), |s| fcgi_endpoint(s).0),
                    magestack_fastcgi::ClientConfig {
                        connect_timeout: self.connect_timeout,
                        read_timeout: self.connect_timeout,
                        max_idle: 0,
                        ..Default::default()
                    },
                ),
                path: path.clone(),
            },
            None => Check::Connect(endpoint.clone()),
        };
        let client = magestack_fastcgi::Client::new(
            endpoint.clone(),
            magestack_fastcgi::ClientConfig {
                connect_timeout: self.connect_timeout,
                read_timeout: self.request_timeout,
                max_idle: if self.max_inflight > 0 {
                    self.keepalive.min(self.max_inflight)
                } else {
                    self.keepalive
                },
                max_header_bytes: self.max_response_header_bytes,
                // With the bulkhead capping connections at pm.max_children no
                // fresh connection waits in FPM's backlog: keep connections.
                // That holds for a pool's only endpoint. With several (fixed
                // or discovered), the pool's cap says nothing of one
                // endpoint's share (one down, or pods joining and leaving,
                // sends it all elsewhere): a returned connection is then
                // closed while a fresh one waits, or kept-alive idle
                // connections could hold every child of an endpoint while new
                // ones wait behind them in its backlog.
                release_for_fresh_waiters: !self.capped_endpoint,
                // An idle kept-alive connection pins a PHP-FPM child; give it
                // back soon so other clients of the pool (cron, probes) get one.
                idle_timeout: Duration::from_secs(10),
                ..Default::default()
            },
        );
        let health_client = self.health_script.then(|| {
            magestack_fastcgi::Client::new(
                endpoint,
                magestack_fastcgi::ClientConfig {
                    connect_timeout: self.connect_timeout,
                    read_timeout: self.connect_timeout.max(Duration::from_secs(2)),
                    max_idle: 0,
                    ..Default::default()
                },
            )
        });
        base(Transport::FastCgi(client), check, health_client)
    }
}

/// The FastCGI address of a target and its label.
fn fcgi_endpoint(t: &UpstreamTarget) -> (magestack_fastcgi::Endpoint, String) {
    match t {
        UpstreamTarget::FastCgiUnix(p) => (
            magestack_fastcgi::Endpoint::Unix(p.clone()),
            p.display().to_string(),
        ),
        UpstreamTarget::FastCgiTcp(a) | UpstreamTarget::Http(a) => {
            (magestack_fastcgi::Endpoint::Tcp(a.clone()), a.clone())
        }
    }
}

/// The source of a configured endpoint: looked up when it is a host name
/// and discovery is on.
fn source_of(t: &UpstreamTarget, status_at: Option<&UpstreamTarget>, resolve: bool) -> Source {
    let (authority, http) = match t {
        UpstreamTarget::FastCgiTcp(a) => (a, false),
        UpstreamTarget::Http(a) => (a, true),
        UpstreamTarget::FastCgiUnix(_) => return Source::Fixed,
    };
    let Some((host, port)) = discovery::dns_name(authority).filter(|_| resolve) else {
        return Source::Fixed;
    };
    let status = status_at.map(|s| match s {
        UpstreamTarget::FastCgiTcp(a) => match discovery::dns_name(a) {
            Some((h, p)) if h == host => StatusAt::SamePod(p),
            _ => StatusAt::Fixed(s.clone()),
        },
        other => StatusAt::Fixed(other.clone()),
    });
    Source::Dns {
        host: host.to_owned(),
        port,
        http,
        status,
        failing: AtomicBool::new(false),
    }
}

/// `ip:port` as an authority (`[v6]:port`).
fn authority(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

impl Pool {
    /// Builds a pool (no connection is opened yet). Endpoints given by host
    /// name (with discovery on) have none until [`Pool::run_discovery`]
    /// finds their addresses.
    pub(crate) fn new(
        spec: &PoolSpec,
        keepalive: usize,
        max_response_header_bytes: usize,
        health_script: Option<HealthScript>,
    ) -> Pool {
        let resolve = !spec.resolve_interval.is_zero();
        let sources: Vec<Source> = spec
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, t)| source_of(t, spec.status_endpoints.get(i), resolve))
            .collect();
        let factory = EndpointFactory {
            connect_timeout: spec.connect_timeout,
            request_timeout: spec.request_timeout,
            keepalive,
            max_inflight: spec.max_inflight,
            capped_endpoint: spec.max_inflight > 0 && matches!(sources.as_slice(), [Source::Fixed]),
            max_response_header_bytes,
            status_path: spec.status_path.clone(),
            health_script: health_script.is_some(),
        };
        let endpoints = spec
            .endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(sources.get(*i), Some(Source::Fixed)))
            .map(|(i, t)| Arc::new(factory.build(t, spec.status_endpoints.get(i), i, None)))
            .collect();
        Pool {
            name: spec.name.clone(),
            endpoints: ArcSwap::from_pointee(endpoints),
            draining: std::sync::Mutex::new(Vec::new()),
            sources,
            factory,
            resolve_interval: spec.resolve_interval,
            lookups_ok: AtomicU64::new(0),
            lookups_failed: AtomicU64::new(0),
            endpoints_added: AtomicU64::new(0),
            endpoints_removed: AtomicU64::new(0),
            slots: (spec.max_inflight > 0).then(|| Arc::new(Semaphore::new(spec.max_inflight))),
            max_inflight: spec.max_inflight,
            inflight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            queue_size: spec.queue_size,
            queue_timeout: spec.queue_timeout,
            requests: AtomicU64::new(0),
            rejected_queue_full: AtomicU64::new(0),
            rejected_timeout: AtomicU64::new(0),
            errors_timeout: AtomicU64::new(0),
            errors_other: AtomicU64::new(0),
            check_interval: spec.check_interval,
            check_timeout: spec
                .connect_timeout
                .min(spec.check_interval.max(Duration::from_millis(100))),
            unhealthy_after: spec.unhealthy_after.max(1),
            health_script,
        }
    }

    /// A reload's pool starts with the addresses the running pool found for
    /// the same names, so that it has endpoints before its first lookup
    /// (they serve at once, as they did; their checks start afresh).
    pub(crate) fn seed_from(&self, previous: &Pool) {
        let known = previous.endpoints.load();
        let mut seeded: Vec<Arc<PoolEndpoint>> = self.endpoints.load().iter().cloned().collect();
        for (index, source) in self.sources.iter().enumerate() {
            let Source::Dns { host, port, .. } = source else {
                continue;
            };
            let same = previous.sources.iter().position(
                |s| matches!(s, Source::Dns { host: h, port: p, .. } if h == host && p == port),
            );
            let Some(prev_index) = same else {
                continue;
            };
            let found: BTreeSet<IpAddr> = known
                .iter()
                .filter(|e| e.source == prev_index)
                .filter_map(|e| e.addr)
                .collect();
            for e in self.endpoints_for(index, source, &found) {
                e.joining.store(false, Ordering::Relaxed);
                seeded.push(e);
            }
        }
        self.endpoints.store(Arc::new(seeded));
    }

    /// New endpoints of `source` at the addresses `ips`.
    fn endpoints_for(
        &self,
        index: usize,
        source: &Source,
        ips: &BTreeSet<IpAddr>,
    ) -> Vec<Arc<PoolEndpoint>> {
        let Source::Dns {
            port, http, status, ..
        } = source
        else {
            return Vec::new();
        };
        ips.iter()
            .map(|&ip| {
                let a = authority(ip, *port);
                let target = if *http {
                    UpstreamTarget::Http(a)
                } else {
                    UpstreamTarget::FastCgiTcp(a)
                };
                let status_at = status.as_ref().map(|s| match s {
                    StatusAt::SamePod(p) => UpstreamTarget::FastCgiTcp(authority(ip, *p)),
                    StatusAt::Fixed(t) => t.clone(),
                });
                Arc::new(
                    self.factory
                        .build(&target, status_at.as_ref(), index, Some(ip)),
                )
            })
            .collect()
    }

    /// Whether some endpoint is given by host name (discovery must run).
    pub(crate) fn discovers(&self) -> bool {
        self.sources.iter().any(|s| matches!(s, Source::Dns { .. }))
    }

    /// Looks the endpoint names up now and every `resolve_interval`,
    /// forever (spawned once by the edge when [`Pool::discovers`]). New
    /// addresses join after their first passing check; addresses gone from
    /// DNS drain. A failed lookup, or one that finds no address, changes
    /// nothing: the endpoints known keep their health checks, which are the
    /// better judge of a pod that is really gone.
    pub(crate) async fn run_discovery(self: Arc<Self>, resolver: Arc<Resolver>) {
        let mut tick = tokio::time::interval(self.resolve_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.discover_once(&resolver).await;
        }
    }

    /// One round of [`Pool::run_discovery`]: every name looked up, the
    /// endpoints replaced and the new ones checked. Returns the names that
    /// did not resolve, with why (a rollout refuses to start on them).
    pub(crate) async fn discover_once(&self, resolver: &Resolver) -> Vec<(String, LookupError)> {
        let mut unresolved = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            let Source::Dns { host, failing, .. } = source else {
                continue;
            };
            match resolver.lookup(host).await {
                Ok(found) => {
                    self.lookups_ok.fetch_add(1, Ordering::Relaxed);
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(pool = %self.name, %host, addresses = found.len(), "Endpoint name resolves again.");
                    }
                    self.apply_lookup(index, source, &found).await;
                }
                Err(why) => {
                    self.lookups_failed.fetch_add(1, Ordering::Relaxed);
                    unresolved.push((host.clone(), why.clone()));
                    if !failing.swap(true, Ordering::Relaxed) {
                        let known = self
                            .endpoints
                            .load()
                            .iter()
                            .filter(|e| e.source == index)
                            .count();
                        match why {
                            LookupError::NoAddress => {
                                tracing::warn!(pool = %self.name, %host, known, "Endpoint name has no address now; keeping the endpoints known.")
                            }
                            LookupError::Failed(e) => {
                                tracing::warn!(pool = %self.name, %host, known, error = %e, "Endpoint name lookup failed; keeping the endpoints known.")
                            }
                        }
                    }
                }
            }
        }
        self.forget_drained();
        unresolved
    }

    /// Replaces the endpoints of `source` with the addresses `found`, then
    /// checks the new ones at once (they take requests when it passes).
    async fn apply_lookup(&self, index: usize, source: &Source, found: &BTreeSet<IpAddr>) {
        let Source::Dns { host, .. } = source else {
            return;
        };
        let current = self.endpoints.load_full();
        let in_use: BTreeSet<IpAddr> = current
            .iter()
            .filter(|e| e.source == index)
            .filter_map(|e| e.addr)
            .collect();
        let change = discovery::diff(&in_use, found);
        if change.add.is_empty() && change.remove.is_empty() {
            return;
        }
        let mut next: Vec<Arc<PoolEndpoint>> = current
            .iter()
            .filter(|e| e.source != index || e.addr.is_some_and(|a| !change.remove.contains(&a)))
            .cloned()
            .collect();
        let added = self.endpoints_for(index, source, &change.add.iter().copied().collect());
        next.extend(added.iter().cloned());
        let removed: Vec<Arc<PoolEndpoint>> = current
            .iter()
            .filter(|e| e.source == index && e.addr.is_some_and(|a| change.remove.contains(&a)))
            .cloned()
            .collect();
        self.endpoints.store(Arc::new(next));
        self.endpoints_added
            .fetch_add(added.len() as u64, Ordering::Relaxed);
        self.endpoints_removed
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        for e in &added {
            tracing::info!(pool = %self.name, %host, endpoint = %e.label, "Endpoint found in DNS; joining after its first check.");
        }
        if let Ok(mut d) = self.draining.lock() {
            for e in &removed {
                tracing::info!(pool = %self.name, %host, endpoint = %e.label, inflight = e.inflight.load(Ordering::Relaxed), "Endpoint gone from DNS; draining.");
                d.push(Arc::downgrade(e));
            }
        }
        drop(removed);
        futures_util::future::join_all(added.iter().map(|e| self.check_one(e))).await;
    }

    /// Drops the draining endpoints whose last request ended.
    fn forget_drained(&self) {
        if let Ok(mut d) = self.draining.lock() {
            d.retain(|w| w.strong_count() > 0);
        }
    }

    /// Ready for traffic: at least one endpoint passed its last checks.
    pub(crate) fn is_ready(&self) -> bool {
        self.endpoints
            .load()
            .iter()
            .any(|e| e.health.load(Ordering::Relaxed) == HEALTHY && e.warm.load(Ordering::Relaxed))
    }

    /// Checks every endpoint every `check_interval`, forever (spawned once
    /// by the edge). An endpoint failing `unhealthy_after` checks in a row
    /// gets no requests until a check passes again.
    pub(crate) async fn run_checks(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let endpoints = self.endpoints.load_full();
            let checks = endpoints.iter().map(|e| self.check_one(e));
            futures_util::future::join_all(checks).await;
        }
    }

    async fn check_one(&self, e: &PoolEndpoint) {
        let result: Result<Option<magestack_fastcgi::FpmStatus>, String> = match &e.check {
            Check::Status { client, path } => {
                match tokio::time::timeout(
                    self.check_timeout,
                    magestack_fastcgi::fetch_status(client, path),
                )
                .await
                {
                    Ok(Ok(st)) => Ok(Some(st)),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("status check timed out".into()),
                }
            }
            Check::Connect(endpoint) => {
                match tokio::time::timeout(self.check_timeout, connect(endpoint)).await {
                    Ok(Ok(())) => Ok(None),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("connect timed out".into()),
                }
            }
        };
        match result {
            Ok(status) => {
                e.failures.store(0, Ordering::Relaxed);
                if let Some(st) = status {
                    if let Ok(mut g) = e.status.lock() {
                        *g = Some(st);
                    }
                }
                if e.health.swap(HEALTHY, Ordering::Relaxed) != HEALTHY {
                    tracing::info!(pool = %self.name, endpoint = %e.label, "{} endpoint healthy.", e.kind());
                }
                e.joining.store(false, Ordering::Relaxed);
                if let (Some(client), Some(script)) = (&e.health_client, &self.health_script) {
                    self.check_warm(e, client, script).await;
                }
            }
            Err(why) => {
                let n = e.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.unhealthy_after
                    && e.health.swap(UNHEALTHY, Ordering::Relaxed) != UNHEALTHY
                {
                    // A restarted FPM passes the start-up gate again.
                    e.gated.store(false, Ordering::Relaxed);
                    tracing::warn!(pool = %self.name, endpoint = %e.label, failures = n, error = %why, "{} endpoint unhealthy; no more requests until it recovers.", e.kind());
                }
            }
        }
    }

    /// Runs the health script; the endpoint is warm when it says ready and
    /// OPcache holds enough of the expected scripts. A failed run keeps the
    /// previous verdict (the script needs a free worker; FPM's health is the
    /// status check's business).
    async fn check_warm(
        &self,
        e: &PoolEndpoint,
        client: &magestack_fastcgi::Client,
        script: &HealthScript,
    ) {
        let report = match tokio::time::timeout(
            self.check_timeout.max(Duration::from_secs(2)),
            run_health_script(client, script),
        )
        .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(why)) => {
                tracing::debug!(pool = %self.name, endpoint = %e.label, error = %why, "Health script failed.");
                return;
            }
            Err(_) => return,
        };
        let ready = report.get("ready").and_then(serde_json::Value::as_bool) == Some(true);
        let ratio = report
            .get("opcache")
            .and_then(|o| o.get("ratio"))
            .and_then(serde_json::Value::as_f64);
        let opcache_warm = ratio.is_none_or(|r| r >= script.min_ratio);
        if ready && !e.gated.swap(true, Ordering::Relaxed) {
            tracing::info!(pool = %self.name, endpoint = %e.label, "PHP start-up checks passed (database, Redis).");
        }
        let gated = e.gated.load(Ordering::Relaxed);
        if gated && e.deps_ok.swap(ready, Ordering::Relaxed) != ready {
            if ready {
                tracing::info!(pool = %self.name, endpoint = %e.label, "PHP dependencies answer again.");
            } else {
                tracing::warn!(pool = %self.name, endpoint = %e.label, report = %report, "PHP health script reports a failing dependency; the endpoint stays in service (its start-up checks passed).");
            }
        }
        let warm = gated && opcache_warm;
        if e.warm.swap(warm, Ordering::Relaxed) != warm {
            tracing::info!(pool = %self.name, endpoint = %e.label, warm, opcache_ratio = ?ratio, script_ready = ready, "PHP warmth changed.");
        }
        if let Ok(mut g) = e.health_report.lock() {
            *g = Some(report);
        }
    }

    /// Counts a failed PHP-FPM request (timeout: 504; anything else: 502).
    pub(crate) fn record_error(&self, timeout: bool) {
        let c = if timeout {
            &self.errors_timeout
        } else {
            &self.errors_other
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Admits a request: a free slot at once, or a place in the queue and a
    /// slot within `queue_timeout`.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<PoolPermit, Rejected> {
        let slot = match &self.slots {
            None => None,
            Some(sem) => match Arc::clone(sem).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(TryAcquireError::Closed) => return Err(Rejected::Timeout),
                Err(TryAcquireError::NoPermits) => {
                    if self.queued.fetch_add(1, Ordering::Relaxed) >= self.queue_size {
                        self.queued.fetch_sub(1, Ordering::Relaxed);
                        self.rejected_queue_full.fetch_add(1, Ordering::Relaxed);
                        return Err(Rejected::QueueFull);
                    }
                    let _queued = Queued(&self.queued);
                    match tokio::time::timeout(self.queue_timeout, Arc::clone(sem).acquire_owned())
                        .await
                    {
                        Ok(Ok(p)) => Some(p),
                        _ => {
                            self.rejected_timeout.fetch_add(1, Ordering::Relaxed);
                            return Err(Rejected::Timeout);
                        }
                    }
                }
            },
        };
        // Least in flight among the endpoints not known to be down and not
        // still joining; failing those, the ones not known to be down; failing
        // those, any (then the request tells). Ties go to the first.
        let endpoints = self.endpoints.load();
        let down = |e: &PoolEndpoint| e.health.load(Ordering::Relaxed) == UNHEALTHY;
        let joining = |e: &PoolEndpoint| e.joining.load(Ordering::Relaxed);
        let least = |eligible: &dyn Fn(&PoolEndpoint) -> bool| {
            endpoints
                .iter()
                .filter(|e| eligible(e))
                .min_by_key(|e| e.inflight.load(Ordering::Relaxed))
        };
        let Some(endpoint) = least(&|e| !down(e) && !joining(e))
            .or_else(|| least(&|e| !down(e)))
            .or_else(|| least(&|_| true))
            .cloned()
        else {
            return Err(Rejected::NoEndpoint);
        };
        endpoint.inflight.fetch_add(1, Ordering::Relaxed);
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(PoolPermit {
            pool: Arc::clone(self),
            endpoint,
            _slot: slot,
        })
    }

    /// Endpoints taking requests now.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.endpoints.load().len()
    }

    /// The permit's endpoint refused the connection: counts that as a failed
    /// check (enough of them take it out, as `unhealthy_after` checks would)
    /// and moves the permit, slot kept, to the least busy other endpoint that
    /// is neither down nor joining. `false` when there is none.
    pub(crate) fn reroute(&self, permit: &mut PoolPermit) -> bool {
        let failed = Arc::clone(&permit.endpoint);
        let n = failed.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.unhealthy_after
            && failed.health.swap(UNHEALTHY, Ordering::Relaxed) != UNHEALTHY
        {
            tracing::warn!(pool = %self.name, endpoint = %failed.label, failures = n, "{} endpoint unhealthy (connections refused); no more requests until a check passes.", failed.kind());
        }
        let endpoints = self.endpoints.load();
        let next = endpoints
            .iter()
            .filter(|e| {
                !Arc::ptr_eq(e, &failed)
                    && e.health.load(Ordering::Relaxed) != UNHEALTHY
                    && !e.joining.load(Ordering::Relaxed)
            })
            .min_by_key(|e| e.inflight.load(Ordering::Relaxed));
        let Some(next) = next else {
            return false;
        };
        next.inflight.fetch_add(1, Ordering::Relaxed);
        failed.inflight.fetch_sub(1, Ordering::Relaxed);
        permit.endpoint = Arc::clone(next);
        true
    }

    /// Current figures.
    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            name: self.name.clone(),
            inflight: self.inflight.load(Ordering::Relaxed),
            max_inflight: self.max_inflight,
            queued: self.queued.load(Ordering::Relaxed),
            queue_size: self.queue_size,
            requests: self.requests.load(Ordering::Relaxed),
            rejected_queue_full: self.rejected_queue_full.load(Ordering::Relaxed),
            rejected_timeout: self.rejected_timeout.load(Ordering::Relaxed),
            errors_timeout: self.errors_timeout.load(Ordering::Relaxed),
            errors_other: self.errors_other.load(Ordering::Relaxed),
            dns_lookups_ok: self.lookups_ok.load(Ordering::Relaxed),
            dns_lookups_failed: self.lookups_failed.load(Ordering::Relaxed),
            endpoints_added: self.endpoints_added.load(Ordering::Relaxed),
            endpoints_removed: self.endpoints_removed.load(Ordering::Relaxed),
            endpoints: self
                .endpoints
                .load()
                .iter()
                .map(|e| (Arc::clone(e), false))
                .chain(
                    self.draining
                        .lock()
                        .map(|d| d.iter().filter_map(Weak::upgrade).collect::<Vec<_>>())
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| (e, true)),
                )
                .map(|(e, draining)| EndpointStats {
                    endpoint: e.label.clone(),
                    state: if draining {
                        "draining"
                    } else if e.joining.load(Ordering::Relaxed) {
                        "joining"
                    } else {
                        "active"
                    },
                    inflight: e.inflight.load(Ordering::Relaxed),
                    health: match e.health.load(Ordering::Relaxed) {
                        HEALTHY => "healthy",
                        UNHEALTHY => "unhealthy",
                        _ => "unknown",
                    },
                    fpm: e.status.lock().ok().and_then(|g| g.clone()),
                    warm: e.warm.load(Ordering::Relaxed),
                    health_report: e.health_report.lock().ok().and_then(|g| g.clone()),
                })
                .collect(),
        }
    }
}

/// Why a health script gave no report.
#[derive(Debug, thiserror::Error)]
enum HealthScriptError {
    /// The FastCGI exchange failed (connect, write, read).
    #[error("{0}")]
    FastCgi(#[from] magestack_fastcgi::Error),
    /// The script answered something other than JSON.
    #[error("not JSON ({source}), status {status}")]
    NotJson {
        source: serde_json::Error,
        status: u16,
    },
}

/// `GET <script>` over FastCGI; the JSON it answers (any status: 503
/// carries the reasons).
async fn run_health_script(
    client: &magestack_fastcgi::Client,
    script: &HealthScript,
) -> Result<serde_json::Value, HealthScriptError> {
    use http_body_util::BodyExt;
    let mut params = magestack_fastcgi::Params::with_capacity(10);
    params.push(&b"GATEWAY_INTERFACE"[..], &b"CGI/1.1"[..]);
    params.push(&b"REQUEST_METHOD"[..], &b"GET"[..]);
    params.push(&b"SERVER_PROTOCOL"[..], &b"HTTP/1.1"[..]);
    params.push(
        &b"SCRIPT_FILENAME"[..],
        bytes::Bytes::from(script.script_filename.clone()),
    );
    params.push(
        &b"SCRIPT_NAME"[..],
        bytes::Bytes::from(script.script_name.clone()),
    );
    params.push(
        &b"REQUEST_URI"[..],
        bytes::Bytes::from(script.script_name.clone()),
    );
    params.push(
        &b"DOCUMENT_ROOT"[..],
        bytes::Bytes::from(script.document_root.clone()),
    );
    params.push(&b"QUERY_STRING"[..], &b""[..]);
    let resp = client
        .request(&params, magestack_fastcgi::RequestBody::Empty)
        .await?;
    let status = resp.status;
    let body = resp.body.collect().await?.to_bytes();
    serde_json::from_slice(&body).map_err(|source| HealthScriptError::NotJson {
        source,
        status: status.as_u16(),
    })
}

/// Opens (and closes) a connection: the check when no status page is read.
async fn connect(endpoint: &magestack_fastcgi::Endpoint) -> std::io::Result<()> {
    match endpoint {
        magestack_fastcgi::Endpoint::Tcp(a) => {
            tokio::net::TcpStream::connect(a.as_str()).await.map(drop)
        }
        magestack_fastcgi::Endpoint::Unix(p) => tokio::net::UnixStream::connect(p).await.map(drop),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool(max: usize, queue: usize, wait_ms: u64, endpoints: usize) -> Arc<Pool> {
        Arc::new(Pool::new(
            &PoolSpec {
                name: "t".into(),
                endpoints: (0..endpoints)
                    .map(|i| UpstreamTarget::FastCgiTcp(format!("127.0.0.1:{}", 1 + i)))
                    .collect(),
                max_inflight: max,
                queue_size: queue,
                queue_timeout: Duration::from_millis(wait_ms),
                request_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                status_path: None,
                status_endpoints: Vec::new(),
                check_interval: Duration::from_secs(5),
                unhealthy_after: 3,
                resolve_interval: Duration::ZERO,
            },
            4,
            32 * 1024,
            None,
        ))
    }

    #[tokio::test]
    async fn bulkhead_queue_then_reject() {
        let p = pool(2, 1, 50, 1);
        let a = p.acquire().await.unwrap();
        let _b = p.acquire().await.unwrap();
        // Third waits (queue 1) and times out; a fourth meanwhile finds the queue full.
        let waiting = {
            let p = p.clone();
            tokio::spawn(async move { p.acquire().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(p.stats().queued, 1);
        assert_eq!(p.acquire().await.err(), Some(Rejected::QueueFull));
        assert_eq!(waiting.await.unwrap(), Err(Rejected::Timeout));
        let st = p.stats();
        assert_eq!(
            (
                st.inflight,
                st.queued,
                st.rejected_queue_full,
                st.rejected_timeout
            ),
            (2, 0, 1, 1)
        );
        // A freed slot goes to the next waiter.
        let next = {
            let p = p.clone();
            tokio::spawn(async move { p.acquire().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(a);
        assert_eq!(next.await.unwrap(), Ok(()));
        assert_eq!(p.stats().requests, 3);
    }

    #[tokio::test]
    async fn least_inflight_spreads_over_endpoints() {
        let p = pool(0, 0, 10, 3);
        let permits: Vec<_> = futures_util::future::join_all((0..6).map(|_| p.acquire())).await;
        let st = p.stats();
        assert!(st.endpoints.iter().all(|e| e.inflight == 2), "{st:?}");
        drop(permits);
        let st = p.stats();
        assert!(st.endpoints.iter().all(|e| e.inflight == 0) && st.inflight == 0);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let p = pool(1, 4, 5_000, 1);
        let _a = p.acquire().await.unwrap();
        let waiting = {
            let p = p.clone();
            tokio::spawn(async move { p.acquire().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(p.stats().queued, 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(p.stats().queued, 0);
    }
}
