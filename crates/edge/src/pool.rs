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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

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
    /// The health script's last answer, for `/pools`.
    health_report: std::sync::Mutex<Option<serde_json::Value>>,
}

enum Check {
    Status {
        client: magestack_fastcgi::Client,
        path: String,
    },
    Connect(magestack_fastcgi::Endpoint),
}

/// A pool and its bulkhead.
pub(crate) struct Pool {
    pub(crate) name: String,
    endpoints: Vec<PoolEndpoint>,
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
}

/// An admitted request: holds the pool slot and counts the endpoint's
/// in-flight requests until dropped.
pub(crate) struct PoolPermit {
    pool: Arc<Pool>,
    endpoint: usize,
    _slot: Option<OwnedSemaphorePermit>,
}

impl PoolPermit {
    /// The FastCGI client of the chosen endpoint (`None` for HTTP).
    pub(crate) fn fastcgi(&self) -> Option<&magestack_fastcgi::Client> {
        match &self.pool.endpoints.get(self.endpoint)?.transport {
            Transport::FastCgi(c) => Some(c),
            Transport::Http(_) => None,
        }
    }

    /// The HTTP upstream of the chosen endpoint (`None` for FastCGI).
    pub(crate) fn http(&self) -> Option<&crate::http_upstream::HttpUpstream> {
        match &self.pool.endpoints.get(self.endpoint)?.transport {
            Transport::Http(h) => Some(h),
            Transport::FastCgi(_) => None,
        }
    }
}

impl Drop for PoolPermit {
    fn drop(&mut self) {
        if let Some(e) = self.pool.endpoints.get(self.endpoint) {
            e.inflight.fetch_sub(1, Ordering::Relaxed);
        }
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
    /// In flight per endpoint.
    pub endpoints: Vec<EndpointStats>,
}

/// One endpoint in [`PoolStats`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointStats {
    /// `host:port` or the socket path.
    pub endpoint: String,
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

impl Pool {
    /// Builds a pool (no connection is opened yet).
    pub(crate) fn new(
        spec: &PoolSpec,
        keepalive: usize,
        max_response_header_bytes: usize,
        health_script: Option<HealthScript>,
    ) -> Pool {
        let fcgi = |t: &UpstreamTarget| match t {
            UpstreamTarget::FastCgiUnix(p) => (
                magestack_fastcgi::Endpoint::Unix(p.clone()),
                p.display().to_string(),
            ),
            UpstreamTarget::FastCgiTcp(a) | UpstreamTarget::Http(a) => {
                (magestack_fastcgi::Endpoint::Tcp(a.clone()), a.clone())
            }
        };
        let endpoints = spec
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (endpoint, label) = fcgi(t);
                if let UpstreamTarget::Http(authority) = t {
                    return PoolEndpoint {
                        transport: Transport::Http(Box::new(
                            crate::http_upstream::HttpUpstream::new(
                                authority,
                                spec.connect_timeout,
                                spec.request_timeout,
                                keepalive,
                            ),
                        )),
                        label,
                        inflight: AtomicUsize::new(0),
                        check: Check::Connect(endpoint),
                        health: std::sync::atomic::AtomicU8::new(UNKNOWN),
                        failures: std::sync::atomic::AtomicU32::new(0),
                        status: std::sync::Mutex::new(None),
                        health_client: None,
                        warm: std::sync::atomic::AtomicBool::new(true),
                        health_report: std::sync::Mutex::new(None),
                    };
                }
                let check = match &spec.status_path {
                    Some(path) => {
                        let at = spec
                            .status_endpoints
                            .get(i)
                            .map_or(endpoint.clone(), |s| fcgi(s).0);
                        Check::Status {
                            client: magestack_fastcgi::Client::new(
                                at,
                                magestack_fastcgi::ClientConfig {
                                    connect_timeout: spec.connect_timeout,
                                    read_timeout: spec.connect_timeout,
                                    max_idle: 0,
                                    ..Default::default()
                                },
                            ),
                            path: path.clone(),
                        }
                    }
                    None => Check::Connect(endpoint.clone()),
                };
                let client = magestack_fastcgi::Client::new(
                    endpoint,
                    magestack_fastcgi::ClientConfig {
                        connect_timeout: spec.connect_timeout,
                        read_timeout: spec.request_timeout,
                        max_idle: if spec.max_inflight > 0 {
                            keepalive.min(spec.max_inflight)
                        } else {
                            keepalive
                        },
                        max_header_bytes: max_response_header_bytes,
                        // With the bulkhead capping connections at pm.max_children no
                        // fresh connection waits in FPM's backlog: keep connections.
                        release_for_fresh_waiters: spec.max_inflight == 0,
                        // An idle kept-alive connection pins a PHP-FPM child; give it
                        // back soon so other clients of the pool (cron, probes) get one.
                        idle_timeout: Duration::from_secs(10),
                        ..Default::default()
                    },
                );
                let health_client = health_script.as_ref().map(|_| {
                    magestack_fastcgi::Client::new(
                        fcgi(t).0,
                        magestack_fastcgi::ClientConfig {
                            connect_timeout: spec.connect_timeout,
                            read_timeout: spec.connect_timeout.max(Duration::from_secs(2)),
                            max_idle: 0,
                            ..Default::default()
                        },
                    )
                });
                PoolEndpoint {
                    transport: Transport::FastCgi(client),
                    label,
                    inflight: AtomicUsize::new(0),
                    check,
                    health: std::sync::atomic::AtomicU8::new(UNKNOWN),
                    failures: std::sync::atomic::AtomicU32::new(0),
                    status: std::sync::Mutex::new(None),
                    warm: std::sync::atomic::AtomicBool::new(health_client.is_none()),
                    health_client,
                    health_report: std::sync::Mutex::new(None),
                }
            })
            .collect();
        Pool {
            name: spec.name.clone(),
            endpoints,
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

    /// Ready for traffic: at least one endpoint passed its last checks.
    pub(crate) fn is_ready(&self) -> bool {
        self.endpoints
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
            let checks = self.endpoints.iter().map(|e| self.check_one(e));
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
                    tracing::info!(pool = %self.name, endpoint = %e.label, "PHP-FPM endpoint healthy.");
                }
                if let (Some(client), Some(script)) = (&e.health_client, &self.health_script) {
                    self.check_warm(e, client, script).await;
                }
            }
            Err(why) => {
                let n = e.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.unhealthy_after
                    && e.health.swap(UNHEALTHY, Ordering::Relaxed) != UNHEALTHY
                {
                    tracing::warn!(pool = %self.name, endpoint = %e.label, failures = n, error = %why, "PHP-FPM endpoint unhealthy; no more requests until it recovers.");
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
        let warm = ready && ratio.is_none_or(|r| r >= script.min_ratio);
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
        // Least in flight among the endpoints not known to be down (all of
        // them when every one is down: then the request tells); ties go to
        // the first.
        let all_down = self
            .endpoints
            .iter()
            .all(|e| e.health.load(Ordering::Relaxed) == UNHEALTHY);
        let endpoint = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| all_down || e.health.load(Ordering::Relaxed) != UNHEALTHY)
            .min_by_key(|(_, e)| e.inflight.load(Ordering::Relaxed))
            .map_or(0, |(i, _)| i);
        if let Some(e) = self.endpoints.get(endpoint) {
            e.inflight.fetch_add(1, Ordering::Relaxed);
        }
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(PoolPermit {
            pool: Arc::clone(self),
            endpoint,
            _slot: slot,
        })
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
            endpoints: self
                .endpoints
                .iter()
                .map(|e| EndpointStats {
                    endpoint: e.label.clone(),
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

/// `GET <script>` over FastCGI; the JSON it answers (any status: 503
/// carries the reasons).
async fn run_health_script(
    client: &magestack_fastcgi::Client,
    script: &HealthScript,
) -> Result<serde_json::Value, String> {
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
        .await
        .map_err(|e| e.to_string())?;
    let body = resp
        .body
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("not JSON ({e}), status {}", resp.status))
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
