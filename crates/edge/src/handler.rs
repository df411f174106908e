//! The request pipeline: one [`Edge`] per process, shared by every connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

pub use crate::answer::{error_page, CacheStats, Outcome, PoolSlot};
use crate::body::{self, EdgeBody};
use crate::cache::Cache;
use crate::cgi::{self, CgiRequest};
use crate::client_ip;
use crate::compress::{self, GzipDecision};
use crate::pool::Pool;
use crate::pool_route::PoolRouter;
use crate::rate_limit::RateLimit;
use crate::request_body::{self, ClientBody};
use crate::server::ConnInfo;
use crate::settings::{EdgeSettings, PoolSpec, UpstreamTarget};
use crate::static_files;
use crate::upstream_failure::UpstreamFailure;

/// The upstream pools (`frontend` first) and the rules choosing one. All
/// endpoints speak FastCGI (PHP-FPM) or all speak HTTP, as `upstream.url`.
struct Upstream {
    pools: Vec<Arc<Pool>>,
    router: PoolRouter,
    http: bool,
    /// Looks up endpoints given by host name; `None` when there are none.
    resolver: Option<Arc<crate::discovery::Resolver>>,
}

/// The edge: routing, static files and the upstream, shared by all connections.
pub struct Edge {
    pub(crate) s: EdgeSettings,
    router: Option<magestack_routing::Router>,
    /// What the edge knows about the files under the docroot (nginx's
    /// `open_file_cache`, with the bytes of small files).
    pub(crate) files: Arc<crate::open_file_cache::OpenFileCache>,
    upstream: Upstream,
    pub(crate) cache: Option<Arc<Cache>>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Per-client rate limits (credential endpoints by default).
    pub(crate) rate_limit: Option<Arc<RateLimit>>,
    /// Allow/deny networks and the admin allowlist.
    pub(crate) ip_filter: Arc<crate::ip_filter::IpFilter>,
    /// SQL injection / XSS inspection.
    pub(crate) injection: Option<Arc<crate::injection::Injection>>,
    /// Purges to and from the other replicas (kept across reloads).
    pub(crate) bus: Option<Arc<crate::purge_bus::PurgeBus>>,
    /// Stops this edge's background tasks when a reload replaces it.
    stop: tokio::sync::watch::Sender<bool>,
    /// How request bodies are read, and the memory they share.
    pub(crate) body_limits: request_body::BodyLimits,
    /// The release the upstream runs ([`crate::release`]): the cache
    /// namespace of its pages. Read when the edge is built (start, reload).
    pub(crate) release: Option<Arc<str>>,
    /// The canary of `[rollout]` ([`crate::rollout`]); `None` without one.
    pub(crate) rollout: Option<Arc<crate::rollout::Rollout>>,
    /// `/media/` and `/static/` from an object store (kept across reloads
    /// while its spec is unchanged).
    pub(crate) media: Option<Arc<crate::media_source::MediaSource>>,
}

/// Most warm-up rounds.
const WARMUP_ROUNDS: u32 = 30;

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("settings", &self.s)
            .finish_non_exhaustive()
    }
}

/// Why the edge could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// FastCGI needs a document root to name scripts.
    #[error("magento.docroot is required with a FastCGI upstream")]
    DocrootRequired,
    /// The document root is not a directory.
    #[error("magento.docroot {0}: not a directory")]
    DocrootMissing(String),
    /// A deny-list file could not be read or parsed.
    #[error(transparent)]
    DenyList(#[from] crate::ip_filter::DenyFileError),
    /// A pool's endpoints do not speak the upstream's protocol.
    #[error("pool {0}: every endpoint must speak the protocol of upstream.url (all FastCGI or all HTTP)")]
    PoolKindMismatch(String),
    /// The pool routing is inconsistent.
    #[error(transparent)]
    PoolRouting(#[from] crate::pool_route::PoolRouteError),
    /// A pool has no endpoint.
    #[error("pool {0} has no endpoint")]
    PoolWithoutEndpoint(String),
    /// Endpoints are given by host name and no DNS resolver can be built.
    #[error("endpoint discovery: {0}")]
    Dns(#[from] crate::discovery::ResolverError),
    /// The object-store sources or their disk cache cannot be set up.
    #[error("media: {0}")]
    Media(String),
}

impl Edge {
    /// Builds the pipeline; no sockets are opened until the first request.
    pub fn new(s: EdgeSettings) -> Result<Self, EdgeError> {
        Self::build(s, None)
    }

    /// The edge a config reload builds: new settings, the running edge's
    /// cache (its objects survive; `cache.*` changes other than turning it
    /// off or on wait for a restart) and, when the pools are the same by
    /// name, its metrics (counters continue).
    pub fn reloaded(s: EdgeSettings, previous: &Edge) -> Result<Self, EdgeError> {
        Self::build(s, Some(previous))
    }

    fn build(s: EdgeSettings, previous: Option<&Edge>) -> Result<Self, EdgeError> {
        let router = match &s.docroot {
            Some(d) => {
                if !d.is_dir() {
                    return Err(EdgeError::DocrootMissing(d.display().to_string()));
                }
                let docroot = d.canonicalize().unwrap_or_else(|_| d.clone());
                Some(magestack_routing::Router::new(docroot, s.generation))
            }
            None => None,
        };
        let http = matches!(s.upstream, UpstreamTarget::Http(_));
        if !http && router.is_none() {
            return Err(EdgeError::DocrootRequired);
        }
        let specs = if s.pools.is_empty() {
            // One pool from `upstream`, waiting as long as a connect may take.
            vec![PoolSpec {
                name: "frontend".into(),
                endpoints: vec![s.upstream.clone()],
                max_inflight: s.max_connections,
                queue_size: usize::MAX,
                queue_timeout: s.connect_timeout,
                request_timeout: s.read_timeout,
                connect_timeout: s.connect_timeout,
                status_path: None,
                status_endpoints: Vec::new(),
                check_interval: Duration::from_secs(5),
                unhealthy_after: 3,
                resolve_interval: Duration::from_secs(5),
            }]
        } else {
            s.pools.clone()
        };
        if let Some(p) = specs.iter().find(|p| p.endpoints.is_empty()) {
            return Err(EdgeError::PoolWithoutEndpoint(p.name.clone()));
        }
        if let Some(p) = specs.iter().find(|p| {
            p.endpoints
                .iter()
                .any(|e| matches!(e, UpstreamTarget::Http(_)) != http)
        }) {
            return Err(EdgeError::PoolKindMismatch(p.name.clone()));
        }
        let names: Vec<&str> = specs.iter().map(|p| p.name.as_str()).collect();
        let pool_router = PoolRouter::new(&s.pool_routing, &names)?;
        let health_script = match (&s.readiness.health_script, &s.docroot, http) {
            (Some(script), Some(root), false) => {
                let root = root.canonicalize().unwrap_or_else(|_| root.clone());
                Some(crate::pool::HealthScript {
                    script_filename: root.join(script).to_string_lossy().into_owned(),
                    script_name: format!("/{}", script.to_string_lossy()),
                    document_root: root.to_string_lossy().into_owned(),
                    min_ratio: s.readiness.opcache_min_ratio,
                })
            }
            _ => None,
        };
        let pools = specs
            .iter()
            .map(|spec| {
                Arc::new(Pool::new(
                    spec,
                    s.keepalive_connections,
                    s.max_response_header_bytes,
                    health_script.clone(),
                ))
            })
            .collect::<Vec<Arc<Pool>>>();
        if let Some(prev) = previous {
            for pool in &pools {
                if let Some(old) = prev.upstream.pools.iter().find(|p| p.name == pool.name) {
                    pool.seed_from(old);
                }
            }
        }
        let resolver = if pools.iter().any(|p| p.discovers()) {
            Some(Arc::new(
                crate::discovery::Resolver::new(&s.dns_servers).map_err(EdgeError::Dns)?,
            ))
        } else {
            None
        };
        let upstream = Upstream {
            pools,
            router: pool_router,
            http,
            resolver,
        };
        let cache = match (s.cache.clone(), previous.and_then(|p| p.cache.clone())) {
            (Some(_), Some(running)) => Some(running),
            (Some(c), None) => Some(Arc::new(Cache::new(c))),
            (None, _) => None,
        };
        let pool_names: Vec<String> = upstream.pools.iter().map(|p| p.name.clone()).collect();
        let metrics = match previous {
            Some(p) if p.pool_names() == pool_names => Arc::clone(&p.metrics),
            _ => Arc::new(crate::metrics::Metrics::new(&pool_names)),
        };
        // A reload rebuilds the rules and keeps the counters (nobody gets a
        // fresh quota).
        let rate_limit = s.rate_limit.as_ref().map(|spec| {
            let running = previous.and_then(|p| p.rate_limit.as_deref());
            Arc::new(RateLimit::new(
                spec,
                &s.pool_routing.admin_front_name,
                running,
            ))
        });
        let ip_filter = Arc::new(
            crate::ip_filter::IpFilter::new(&s.ip_rules, &s.pool_routing.admin_front_name)
                .map_err(EdgeError::DenyList)?,
        );
        let injection = s.injection.as_ref().map(|spec| {
            Arc::new(crate::injection::Injection::new(
                spec,
                &s.pool_routing.admin_front_name,
            ))
        });
        let bus = match (&s.cluster, previous.and_then(|p| p.bus.clone())) {
            (Some(spec), Some(running)) if running.spec() == spec => Some(running),
            (Some(spec), _) => Some(crate::purge_bus::PurgeBus::start(
                spec.clone(),
                cache.clone(),
            )),
            (None, _) => None,
        };
        let body_limits = {
            let mut l = request_body::BodyLimits::new(
                s.max_body_bytes,
                s.body.buffer_bytes,
                s.body.memory_bytes,
                s.body.read_timeout,
            );
            l.spool_dir = s.body.spool_dir.clone();
            // Bodies in flight keep counting against the running budget.
            if let Some(prev) = previous.filter(|p| p.s.body.memory_bytes == s.body.memory_bytes) {
                l.budget = Arc::clone(&prev.body_limits.budget);
            }
            l
        };
        let files = Arc::new(crate::open_file_cache::OpenFileCache::new(
            s.open_file_cache,
        ));
        let release = crate::release::resolve(s.docroot.as_deref(), s.release.as_deref());
        tracing::info!(
            release = release.as_deref().unwrap_or("none"),
            "Release of the upstream (cache namespace)."
        );
        let rollout = match &s.rollout {
            Some(spec) => {
                let index = specs.iter().position(|p| p.name == spec.pool).unwrap_or(0);
                let redis = s.cluster.as_ref().and_then(|c| {
                    redis::Client::open(crate::purge_bus::connection_url(c))
                        .ok()
                        .map(|client| (client, c.channel.clone()))
                });
                Some(Arc::new(crate::rollout::Rollout::new(
                    spec.clone(),
                    index,
                    specs[index].clone(),
                    s.keepalive_connections,
                    s.max_response_header_bytes,
                    s.generation,
                    http,
                    release.clone(),
                    redis,
                    upstream.resolver.clone(),
                    s.dns_servers.clone(),
                )))
            }
            None => None,
        };
        let media = match (&s.media, previous.and_then(|p| p.media.clone())) {
            (Some(spec), Some(running)) if running.spec() == spec => Some(running),
            (Some(spec), _) => Some(Arc::new(
                crate::media_source::MediaSource::new(spec.clone())
                    .map_err(|e| EdgeError::Media(e.to_string()))?,
            )),
            (None, _) => None,
        };
        if media.is_some() && router.is_none() {
            return Err(EdgeError::Media(
                "object-store sources need magento.docroot (its nginx rules and PHP fallbacks)"
                    .into(),
            ));
        }
        Ok(Self {
            rollout,
            release,
            media,
            body_limits,
            files,
            s,
            router,
            upstream,
            cache,
            metrics,
            rate_limit,
            ip_filter,
            injection,
            bus,
            stop: tokio::sync::watch::channel(false).0,
        })
    }

    /// True when the pool that serves shoppers (`frontend`: the first pool,
    /// where every request no routing rule claims goes) has an endpoint
    /// that passed its checks. Part of `/readyz`. Other pools (the admin's
    /// FPM, reached over the network) do not gate it: one admin pod down
    /// must not take every storefront pod, and the cached pages it serves,
    /// out of rotation; their state is in `/pools` and the metrics.
    pub fn pools_ready(&self) -> bool {
        self.upstream.pools.first().is_none_or(|p| p.is_ready())
    }

    /// Figures of each PHP-FPM pool (`frontend` first); empty with an HTTP
    /// upstream.
    pub fn pool_stats(&self) -> Vec<crate::pool::PoolStats> {
        self.upstream.pools.iter().map(|p| p.stats()).collect()
    }

    /// The Prometheus text exposition (`/metrics`).
    pub fn render_metrics(&self) -> String {
        let mut limited = self
            .rate_limit
            .as_ref()
            .map(|rl| rl.counts())
            .unwrap_or_default();
        limited.push((
            Arc::from("waf_deny"),
            self.ip_filter.denied.load(Ordering::Relaxed),
        ));
        limited.push((
            Arc::from("waf_admin_allow"),
            self.ip_filter.admin_hidden.load(Ordering::Relaxed),
        ));
        let mut text = self.metrics.render(
            self.pool_stats(),
            self.cache_stats(),
            limited,
            self.injection
                .as_ref()
                .map(|i| i.counts())
                .unwrap_or_default(),
            self.bus.as_ref().map(|b| b.stats()),
            crate::metrics::Usage {
                bodies: crate::metrics::BodyStats {
                    memory_bytes: self.body_limits.budget.used(),
                    spooled: self.body_limits.budget.spooled(),
                },
                files: {
                    let st = &self.files.stats;
                    crate::metrics::FileCacheStats {
                        entries: self.files.len() as u64,
                        bytes: self.files.bytes(),
                        hits: st.hits.load(Ordering::Relaxed),
                        misses: st.misses.load(Ordering::Relaxed),
                        evictions: st.evictions.load(Ordering::Relaxed),
                    }
                },
            },
        );
        if let Some(media) = &self.media {
            media.append_metrics(&mut text);
        }
        crate::rollout::with_metrics(text, self.rollout.as_deref())
    }

    /// The index of the pool a path goes to (`frontend` = 0).
    pub(crate) fn pool_index_for(&self, path: &str) -> usize {
        self.upstream
            .router
            .pick(path)
            .min(self.upstream.pools.len().saturating_sub(1))
    }

    /// The release the upstream runs (`None`: none known).
    pub fn release(&self) -> Option<&str> {
        self.release.as_deref()
    }

    /// The settings the edge runs with.
    pub fn settings(&self) -> &EdgeSettings {
        &self.s
    }

    pub(crate) fn cache_ref(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }

    fn pool_names(&self) -> Vec<String> {
        self.upstream.pools.iter().map(|p| p.name.clone()).collect()
    }

    /// Starts the background tasks (pool health checks, the cache's backend
    /// probe) until [`Edge::stop_background`]. Call once per edge; the
    /// server and a reload do.
    pub fn start_background(self: &Arc<Self>) {
        let until_stopped = |task: futures_util::future::BoxFuture<'static, ()>| {
            let mut stop = self.stop.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    () = task => {}
                }
            });
        };
        for pool in &self.upstream.pools {
            until_stopped(Box::pin(Arc::clone(pool).run_checks()));
            if let (true, Some(resolver)) = (pool.discovers(), &self.upstream.resolver) {
                until_stopped(Box::pin(
                    Arc::clone(pool).run_discovery(Arc::clone(resolver)),
                ));
            }
        }
        if self.ip_filter.watches_files() {
            let filter = Arc::clone(&self.ip_filter);
            until_stopped(Box::pin(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    if let Err(e) = filter.reload_files(false) {
                        tracing::error!(error = %e, "Deny list not reloaded; the previous one stays.");
                    }
                }
            }));
        }
        if let Some(cache) = &self.cache {
            let this = self.clone();
            let cache = cache.clone();
            until_stopped(Box::pin(async move { this.health_probe(cache).await }));
        }
        if let Some(rollout) = &self.rollout {
            until_stopped(Box::pin(Arc::clone(rollout).run()));
        }
        if !self.s.readiness.warmup_urls.is_empty() {
            let this = self.clone();
            until_stopped(Box::pin(async move { this.warm_up().await }));
        }
    }

    /// Requests `readiness.warmup_urls` through PHP, round after round, until
    /// every pool is ready (OPcache warm per the health script) or
    /// [`WARMUP_ROUNDS`] rounds have run: a cold pod warms itself before it
    /// takes traffic instead of making its first shoppers wait.
    async fn warm_up(self: Arc<Self>) {
        let local: SocketAddr = ([127, 0, 0, 1], 0).into();
        let conn = ConnInfo {
            peer: local,
            local,
            tls: false,
            internal: true,
        };
        let urls = &self.s.readiness.warmup_urls;
        for round in 1..=WARMUP_ROUNDS {
            let mut answered = 0;
            for url in urls {
                let Ok(req) = Request::get(url.as_str())
                    .header(header::HOST, self.s.server_name.as_str())
                    .body(ClientBody::Empty)
                else {
                    continue;
                };
                let (resp, _) = self.dispatch(req, &conn, local.ip()).await;
                if resp.status().as_u16() < 500 {
                    answered += 1;
                }
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
            // Give the pool checks a moment to see the warmth.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let ready = self.pools_ready();
            tracing::info!(round, answered, urls = urls.len(), ready, "Warm-up round.");
            if ready {
                return;
            }
        }
        tracing::warn!(
            rounds = WARMUP_ROUNDS,
            "Warm-up ended before the pools were ready; /readyz follows the checks."
        );
    }

    /// Stops the background tasks (the edge was replaced by a reload).
    pub fn stop_background(&self) {
        self.stop.send_replace(true);
    }

    /// Magento's VCL probe: `GET /health_check.php` every interval; healthy with
    /// `threshold` good answers among the last `window`.
    async fn health_probe(self: Arc<Self>, cache: Arc<Cache>) {
        let hc = cache.s.health_check.clone();
        let mut window =
            magestack_fpc::prelude::HealthWindow::new(hc.window, hc.threshold, hc.threshold);
        let local: SocketAddr = ([127, 0, 0, 1], 0).into();
        let conn = ConnInfo {
            peer: local,
            local,
            tls: false,
            internal: true,
        };
        let mut tick = tokio::time::interval(hc.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let req = Request::get(hc.path.as_str())
                .header(header::HOST, self.s.server_name.as_str())
                .header(header::CONNECTION, "close")
                .body(ClientBody::Empty);
            let Ok(req) = req else { return };
            let ok = match tokio::time::timeout(hc.timeout, self.dispatch(req, &conn, local.ip()))
                .await
            {
                Ok((resp, _)) => {
                    let status = resp.status().as_u16();
                    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                    magestack_fpc::grace::probe_ok(status)
                }
                Err(_) => false,
            };
            let before = cache.healthy.load(Ordering::Relaxed);
            window.record(ok);
            let now = window.healthy();
            cache.healthy.store(now, Ordering::Relaxed);
            if before != now {
                tracing::warn!(healthy = now, path = %hc.path, "Backend health changed.");
            }
        }
    }

    /// Recently purged popular URLs, most hit first (`GET /cache/purged`);
    /// `None` when the cache is off.
    pub fn purged_urls(&self, limit: usize) -> Option<Vec<magestack_fpc::purged::PurgedUrl>> {
        let c = self.cache.as_ref()?;
        let list = c.purged.lock().list(limit);
        Some(list)
    }

    /// Cache counters and store statistics, for the admin API.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        let c = self.cache.as_ref()?;
        let st = c.store.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Some(CacheStats {
            objects: st.objects as u64,
            bytes: st.bytes_accounted,
            max_bytes: c.s.size_bytes,
            hits: load(&c.counters.hits),
            misses: load(&c.counters.misses),
            passes: load(&c.counters.passes),
            purges: load(&c.counters.purges),
            purged_objects: load(&c.counters.purged_objects),
            purges_refused: load(&c.counters.purges_refused),
            purge_invalid_patterns: load(&c.counters.purge_invalid_patterns),
            evictions: st.evictions,
            healthy: c.healthy.load(Ordering::Relaxed),
        })
    }

    /// Routes a request by Magento's nginx rules and answers it from a file,
    /// PHP or the HTTP upstream. The cache layer calls this for its fetches.
    pub(crate) async fn dispatch(
        &self,
        req: Request<ClientBody>,
        conn: &ConnInfo,
        client: IpAddr,
    ) -> (Response<EdgeBody>, Outcome) {
        if !req.uri().path().starts_with('/') {
            return (error_page(StatusCode::BAD_REQUEST, None), Outcome::Edge);
        }
        let canary = crate::rollout::canary_of(&req);
        let Some(router) = canary
            .as_ref()
            .and_then(|c| c.router.as_ref())
            .or(self.router.as_ref())
        else {
            let denied = self.s.deny_without_docroot
                && magestack_routing::normalize(req.uri().path())
                    .is_ok_and(|p| magestack_routing::is_denied(&p));
            if denied {
                return (error_page(StatusCode::NOT_FOUND, None), Outcome::Denied);
            }
            return self.proxy(req, conn, client).await;
        };
        let path = match magestack_routing::normalize(req.uri().path()) {
            Ok(p) => p,
            Err(_) => return (error_page(StatusCode::BAD_REQUEST, None), Outcome::Edge),
        };
        let route = match &self.media {
            // One dispatch point for object-store sources (issue 19).
            Some(media) => match media
                .handle(
                    router,
                    req.method(),
                    req.headers(),
                    &path,
                    req.uri().query(),
                )
                .await
            {
                crate::media_source::Handled::Response(r) => return (r, Outcome::Static),
                crate::media_source::Handled::Route(route) => route,
            },
            None => router.route(&*self.files, req.method(), &path, req.uri().query()),
        };
        match route {
            magestack_routing::Route::Static {
                file,
                headers,
                x_frame_options,
            } => {
                let r = static_files::serve(
                    &self.files,
                    static_files::StaticRequest {
                        method: req.method(),
                        headers: req.headers(),
                        file: &file,
                        cache: headers,
                        x_frame_options,
                        now: SystemTime::now(),
                        gzip: static_files::GzipPolicy {
                            enabled: self.s.gzip,
                            min_length: self.s.gzip_min_length,
                            client: compress::ClientEncoding::of(req.headers()),
                        },
                    },
                )
                .await;
                (r, Outcome::Static)
            }
            magestack_routing::Route::FastCgi(php) => self.php(req, conn, client, &php).await,
            magestack_routing::Route::Redirect { location } => {
                let mut r = error_page(StatusCode::MOVED_PERMANENTLY, None);
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                (r, Outcome::Edge)
            }
            magestack_routing::Route::NotFound => {
                (error_page(StatusCode::NOT_FOUND, None), Outcome::Denied)
            }
            magestack_routing::Route::Forbidden => {
                (error_page(StatusCode::FORBIDDEN, None), Outcome::Denied)
            }
            magestack_routing::Route::MethodNotAllowed => {
                let mut r = error_page(StatusCode::METHOD_NOT_ALLOWED, None);
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                (r, Outcome::Edge)
            }
            magestack_routing::Route::LoopError => (
                error_page(StatusCode::INTERNAL_SERVER_ERROR, None),
                Outcome::Edge,
            ),
        }
    }

    /// A request for a PHP script.
    async fn php(
        &self,
        req: Request<ClientBody>,
        conn: &ConnInfo,
        client: IpAddr,
        php: &magestack_routing::FastCgiRoute,
    ) -> (Response<EdgeBody>, Outcome) {
        if self.upstream.http {
            return self.proxy(req, conn, client).await;
        }
        let (parts, incoming) = req.into_parts();
        let prepared = if php.error_page {
            // nginx discards the body when it redirects to the error page.
            request_body::PreparedBody::none()
        } else {
            match request_body::prepare(&parts.headers, incoming, &self.body_limits).await {
                Ok(p) => p,
                Err(e) => return (e.response(), Outcome::Edge),
            }
        };
        let https = client_ip::is_https(
            conn.tls,
            conn.peer.ip(),
            &parts.headers,
            &self.s.trusted_proxies,
        );
        let host = cgi::host_of(
            &parts.headers,
            parts.uri.authority().map(|a| a.as_str()),
            &self.s.server_name,
        );
        let mage_run = self
            .s
            .mage_run
            .iter()
            .find(|(h, _, _)| h.eq_ignore_ascii_case(&host))
            .map(|(_, code, kind)| (code.as_str(), kind.as_str()));
        let (php_value, php_flag) = self.php_ini(php);
        let method = match php.request_method(parts.method.as_str()) {
            "GET" => Method::GET,
            _ => parts.method.clone(),
        };
        let request_uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let script_filename = php.script_filename.to_string_lossy();
        let document_root = php.document_root.to_string_lossy();
        let cgi_req = CgiRequest {
            method: &method,
            request_uri,
            version: parts.version,
            headers: &parts.headers,
            host: &host,
            script_name: &php.script_name,
            script_filename: &script_filename,
            document_root: &document_root,
            document_uri: &php.document_uri,
            query_string: &php.query_string,
            path_info: php.path_info.as_deref(),
            content_length: prepared.length,
            https,
            remote: SocketAddr::new(client, conn.peer.port()),
            local: conn.local,
            server_name: &self.s.server_name,
            php_value,
            php_flag,
            mage_mode: self.s.mage_mode.as_deref(),
            mage_run,
        };
        // Wait for a free PHP-FPM child of the request's pool, in the edge
        // (bounded, counted), rather than inside FPM's backlog.
        let routed = parts.extensions.get::<crate::rollout::Routed>().cloned();
        let canary = routed.as_ref().and_then(|r| r.canary.clone());
        let (pool, permit, slot) = match self.admit(parts.uri.path(), canary.as_ref()).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let mut params = magestack_fastcgi::Params::with_capacity(48);
        cgi::build_params(&cgi_req, |k, v| {
            params.push(Bytes::copy_from_slice(k), Bytes::copy_from_slice(v))
        });
        let mut permit = permit;
        // A connection refused (or not made in time) means PHP saw nothing:
        // the request goes to the pool's next endpoint, as nginx's
        // `fastcgi_next_upstream error timeout` does, so a pod that died
        // before DNS and the health checks noticed costs no request.
        let params = &params;
        let prepared = &prepared;
        let asked = std::time::Instant::now();
        let outcome = with_failover(
            pool,
            &mut permit,
            "PHP-FPM",
            |p| p.fastcgi().cloned(),
            |fcgi| async move {
                fcgi.request(params, prepared.to_fastcgi())
                    .await
                    .map_err(UpstreamFailure::from)
            },
        )
        .await;
        self.observe_rollout(
            routed.as_ref(),
            outcome.as_ref().ok().map(|r| r.status.as_u16()),
            asked,
        );
        match outcome {
            Ok(r) => {
                let body = http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
                    r.body,
                    |e| -> crate::body::BoxError { e.into() },
                ));
                let mut resp = Response::new(crate::body::with_guard(body, Some(permit)));
                *resp.status_mut() = r.status;
                *resp.headers_mut() = r.headers;
                resp.extensions_mut().insert(slot);
                (
                    resp,
                    if php.error_page {
                        Outcome::Denied
                    } else {
                        Outcome::Php
                    },
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, side = e.side, timeout = e.is_timeout(), script = %php.script_name, pool = %pool.name, "PHP-FPM request failed.");
                pool.record_error(e.is_timeout());
                (e.response(slot), Outcome::UpstreamError)
            }
        }
    }

    /// `PHP_VALUE`/`PHP_FLAG`: the configured ones for the main block, the
    /// sample's fixed ones for `/setup` and `/update`.
    fn php_ini(&self, php: &magestack_routing::FastCgiRoute) -> (Option<&str>, Option<&str>) {
        match php.profile {
            magestack_routing::PhpProfile::Main => {
                (self.s.php_value.as_deref(), self.s.php_flag.as_deref())
            }
            other => (other.php_value(), other.php_flag()),
        }
    }

    /// Picks the request's pool and waits for a slot in it: the pool, the
    /// permit (held until the response body ends) and the metrics label; or
    /// the 503 (`Retry-After`) a full pool answers.
    async fn admit<'a>(
        &'a self,
        path: &str,
        canary: Option<&'a Arc<crate::rollout::CanaryTrack>>,
    ) -> Result<(&'a Arc<Pool>, crate::pool::PoolPermit, PoolSlot), (Response<EdgeBody>, Outcome)>
    {
        let pools = &self.upstream.pools;
        let index = self.pool_index_for(path);
        let slot = PoolSlot(index + 1);
        // A request on the canary track goes to the canary's own pool.
        let Some(pool) = canary.map(|c| &c.pool).or_else(|| pools.get(index)) else {
            return Err((
                error_page(StatusCode::BAD_GATEWAY, None),
                Outcome::UpstreamError,
            ));
        };
        match pool.acquire().await {
            Ok(permit) => Ok((pool, permit, slot)),
            Err(why) => {
                tracing::warn!(pool = %pool.name, reason = ?why, %path, "No PHP slot; answering 503.");
                let mut r = error_page(StatusCode::SERVICE_UNAVAILABLE, Some(5));
                r.extensions_mut().insert(slot);
                Err((r, Outcome::UpstreamError))
            }
        }
    }

    /// Forwards the request as-is to an HTTP upstream.
    async fn proxy(
        &self,
        req: Request<ClientBody>,
        conn: &ConnInfo,
        _client: IpAddr,
    ) -> (Response<EdgeBody>, Outcome) {
        if !self.upstream.http {
            return (error_page(StatusCode::NOT_FOUND, None), Outcome::Edge);
        }
        let https = client_ip::is_https(
            conn.tls,
            conn.peer.ip(),
            req.headers(),
            &self.s.trusted_proxies,
        );
        let (parts, incoming) = req.into_parts();
        // The body first, then a slot: a client trickling its body must not
        // hold a worker of the app meanwhile (as on the FastCGI path).
        let prepared =
            match request_body::prepare(&parts.headers, incoming, &self.body_limits).await {
                Ok(p) => p,
                Err(e) => return (e.response(), Outcome::Edge),
            };
        let routed = parts.extensions.get::<crate::rollout::Routed>().cloned();
        let canary = routed.as_ref().and_then(|r| r.canary.clone());
        let (pool, permit, slot) = match self.admit(parts.uri.path(), canary.as_ref()).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let mut head = parts;
        if let Some(len) = prepared.length {
            head.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if head.headers.get(header::HOST).is_none() {
            if let Some(a) = head.uri.authority().cloned() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    head.headers.insert(header::HOST, v);
                }
            }
        }
        let forwarded_for = forwarded_for(
            &head.headers,
            conn.peer.ip(),
            client_ip::is_trusted(conn.peer.ip(), &self.s.trusted_proxies),
        );
        // As on the FastCGI path: a refused connection goes to the next endpoint.
        let mut permit = permit;
        let (head, prepared, target, forwarded_for) = (&head, &prepared, &target, &forwarded_for);
        let asked = std::time::Instant::now();
        let outcome = with_failover(
            pool,
            &mut permit,
            "HTTP upstream",
            |p| p.http().cloned(),
            |up| async move {
                let mut out = Request::new(prepared.to_edge_body());
                *out.method_mut() = head.method.clone();
                *out.uri_mut() = head.uri.clone();
                *out.version_mut() = head.version;
                *out.headers_mut() = head.headers.clone();
                up.forward(out, target, forwarded_for, https)
                    .await
                    .map_err(UpstreamFailure::from)
            },
        )
        .await;
        self.observe_rollout(
            routed.as_ref(),
            outcome.as_ref().ok().map(|r| r.status().as_u16()),
            asked,
        );
        match outcome {
            Ok(r) => {
                let mut r = r.map(|b| crate::body::with_guard(b, Some(permit)));
                r.extensions_mut().insert(slot);
                (r, Outcome::Proxy)
            }
            Err(e) => {
                tracing::warn!(error = %e, side = e.side, timeout = e.is_timeout(), pool = %pool.name, "HTTP upstream request failed.");
                pool.record_error(e.is_timeout());
                (e.response(slot), Outcome::UpstreamError)
            }
        }
    }

    /// Counts an answer of the split pool's PHP for the rollout's analysis.
    fn observe_rollout(
        &self,
        routed: Option<&crate::rollout::Routed>,
        status: Option<u16>,
        asked: std::time::Instant,
    ) {
        if let (Some(rollout), Some(r)) = (&self.rollout, routed.filter(|r| r.counted)) {
            rollout.observe(r.track, status, asked.elapsed());
        }
    }

    /// nginx's output filters: `charset utf-8` and gzip.
    pub(crate) fn filter_response(
        &self,
        client: compress::ClientEncoding,
        is_head: bool,
        resp: &mut Response<EdgeBody>,
    ) {
        if let Some(ct) = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            if !ct.to_ascii_lowercase().contains("charset=")
                && magestack_routing::charset_applies(ct)
            {
                if let Ok(v) =
                    HeaderValue::from_str(&format!("{ct}; charset={}", magestack_routing::CHARSET))
                {
                    resp.headers_mut().insert(header::CONTENT_TYPE, v);
                }
            }
        }
        if is_head {
            return;
        }
        match compress::decide(
            self.s.gzip,
            self.s.gzip_min_length,
            resp.status(),
            client,
            resp.headers(),
        ) {
            GzipDecision::Skip => {}
            GzipDecision::VaryOnly => compress::add_vary(resp.headers_mut()),
            GzipDecision::Compress => {
                let body = std::mem::replace(resp.body_mut(), body::empty());
                let new = compress::compress(resp.headers_mut(), body);
                *resp.body_mut() = new;
            }
        }
    }
}

/// Sends a request to the permit's endpoint with `send`; a connection that
/// was refused (or not made in time: the app saw nothing) goes to the
/// pool's next endpoint, as nginx's `fastcgi_next_upstream error timeout`
/// does, so a pod that died before DNS and the health checks noticed costs
/// no request. One loop for FastCGI and HTTP pools.
async fn with_failover<C, T, Fut>(
    pool: &Arc<Pool>,
    permit: &mut crate::pool::PoolPermit,
    side: &'static str,
    client_of: impl Fn(&crate::pool::PoolPermit) -> Option<C>,
    mut send: impl FnMut(C) -> Fut,
) -> Result<T, UpstreamFailure>
where
    Fut: std::future::Future<Output = Result<T, UpstreamFailure>>,
{
    let mut tried = 1;
    loop {
        let Some(client) = client_of(permit) else {
            return Err(UpstreamFailure::no_endpoint(side));
        };
        match send(client).await {
            Err(e) if e.retryable() && tried < pool.endpoint_count() => {
                let failed = permit.endpoint_label().to_owned();
                if !pool.reroute(permit) {
                    return Err(e);
                }
                tracing::warn!(error = %e, pool = %pool.name, endpoint = %failed, next = %permit.endpoint_label(), "{side} endpoint refused the connection; trying the next one.");
                tried += 1;
            }
            other => return other,
        }
    }
}

/// `X-Forwarded-For` for an HTTP upstream: a trusted proxy's chain with the
/// peer appended (nginx's `$proxy_add_x_forwarded_for`, Varnish's default),
/// so the app sees every hop; from anyone else, the peer alone (nginx would
/// append to whatever the client wrote; an app that trusts the header must
/// not get a chain the client made up).
fn forwarded_for(headers: &http::HeaderMap, peer: IpAddr, trusted_peer: bool) -> String {
    let peer = client_ip::canonical(peer);
    let mut chain = String::new();
    if trusted_peer {
        for v in headers.get_all("x-forwarded-for") {
            if let Ok(v) = v.to_str() {
                let v = v.trim();
                if !v.is_empty() {
                    chain.push_str(v);
                    chain.push_str(", ");
                }
            }
        }
    }
    chain.push_str(&peer.to_string());
    chain
}
