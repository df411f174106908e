//! The full-page cache on the request path: the I/O shell around the pure
//! policy ([`magestack_fpc`]) and the object store ([`magestack_fpc_store`]).
//!
//! Phases, in order (Magento's VCL, `magento-fpc-contract.md`):
//! classify (purge / pass / lookup) → lookup (fresh, stale within grace,
//! hit-for-miss, miss) → on a miss one fetch per key while others wait
//! (coalescing) → cacheability → store (gzip once, ESI parsed once) →
//! delivery with Magento's header hygiene and `X-Magento-Cache-Debug`.
//! Stale objects are refreshed in the background; while the health probe says
//! the backend is sick they are served without limit.

use std::io::Read;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use magestack_fpc::key::variance;
use magestack_fpc::prelude::*;
use magestack_fpc::purged::{HitSketch, PurgedUrls};
use magestack_fpc_store::coalesce::{Flights, Join};
use magestack_fpc_store::{CachedObject, Lookup, ObjectBuilder, Store, StoreConfig, Variance};
use tokio::sync::watch;

use crate::answer::{error_page, Outcome, PoolSlot};
use crate::body::{self, BoxError, EdgeBody};
use crate::request_body::ClientBody;
use crate::server::ConnInfo;
use crate::settings::CacheSettings;
use crate::Edge;

/// Most ESI nesting levels followed (Varnish `max_esi_depth` is 5).
const MAX_ESI_DEPTH: u8 = 5;

/// Wakes the requests waiting for a fetch of the same key (level-triggered).
#[derive(Clone)]
pub(crate) struct FlightSignal(Arc<watch::Sender<bool>>);

impl magestack_fpc_store::coalesce::FlightSignal for FlightSignal {
    fn wake(&self) {
        self.0.send_replace(true);
    }
}

/// Counters for the admin API and metrics.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Requests served from the cache (fresh or stale).
    pub hits: AtomicU64,
    /// Lookups that fetched.
    pub misses: AtomicU64,
    /// Requests passed (never looked up).
    pub passes: AtomicU64,
    /// Accepted `PURGE` requests.
    pub purges: AtomicU64,
    /// Objects removed or marked stale by purges.
    pub purged_objects: AtomicU64,
    /// Refused `PURGE` requests (ACL or missing headers).
    pub purges_refused: AtomicU64,
    /// Accepted `PURGE` requests whose pattern is not a valid regex: they
    /// purge nothing (Varnish answers 200 all the same), so they are logged
    /// and counted, or a broken pattern in Magento would go unseen.
    pub purge_invalid_patterns: AtomicU64,
}

/// The cache state shared by every request.
pub(crate) struct Cache {
    pub(crate) s: CacheSettings,
    pub(crate) store: Store,
    flights: Arc<Flights<FlightSignal>>,
    /// Backend health from the probe; starts healthy.
    pub(crate) healthy: AtomicBool,
    xid: AtomicU64,
    pub(crate) counters: CacheCounters,
    /// Per-key hit counts of cacheable GET pages (for the purged list).
    hot: Arc<HitSketch>,
    /// Recently purged popular URLs (`GET /cache/purged`).
    pub(crate) purged: Arc<parking_lot::Mutex<PurgedUrls>>,
}

/// Distinct URLs kept in the list of recently purged popular pages.
pub const PURGED_URLS_CAPACITY: usize = 1_000;
/// Hits from which a page counts as popular (requested twice: one miss,
/// one hit).
pub const PURGED_URLS_MIN_HITS: u32 = 1;

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("settings", &self.s)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(s: CacheSettings) -> Self {
        let hot = Arc::new(HitSketch::default());
        let purged = Arc::new(parking_lot::Mutex::new(PurgedUrls::new(
            PURGED_URLS_CAPACITY,
            PURGED_URLS_MIN_HITS,
        )));
        let (sketch, list) = (hot.clone(), purged.clone());
        let store = Store::new(StoreConfig {
            max_bytes: s.size_bytes,
            max_object_bytes: s.max_object_bytes as u64 + 64 * 1024,
            ..StoreConfig::default()
        })
        .with_purge_observer(Box::new(move |obj| {
            let key = obj.key();
            let hits = sketch.get(key);
            if hits == 0 {
                return;
            }
            sketch.reset(key);
            if hits >= PURGED_URLS_MIN_HITS {
                list.lock().purged(key, hits, ms(SystemTime::now()));
            }
        }));
        Self {
            hot,
            purged,
            s,
            store,
            flights: Flights::new(64),
            healthy: AtomicBool::new(true),
            xid: AtomicU64::new(1),
            counters: CacheCounters::default(),
        }
    }
}

impl Cache {
    /// Counts a hit of a cacheable GET page; the hit that makes it popular
    /// records its URL (one lock per popular key, not per hit).
    fn count_hit(&self, key: &[u8; 16], uri: &Uri, headers: &HeaderMap) {
        let n = self.hot.hit(key);
        if n != PURGED_URLS_MIN_HITS {
            return;
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let url = uri.path_and_query().map_or("/", |pq| pq.as_str());
        // Request hygiene has dropped an untrusted X-Forwarded-Proto by now.
        let https = headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        self.purged.lock().watch(*key, https, host, url);
    }
}

/// Milliseconds since the epoch: the store's clock.
fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A response about to be delivered, with what the cache did.
pub(crate) struct Served {
    pub(crate) resp: Response<EdgeBody>,
    pub(crate) outcome: Outcome,
    /// `X-Magento-Cache-Debug` value, for the access log.
    pub(crate) cache: &'static str,
}

/// What a delivery needs to know about the client request.
struct ClientView {
    /// The release of the track the request goes to: its cache namespace
    /// (ESI fragments inherit it, and the track).
    release: Option<Arc<str>>,
    routed: Option<crate::rollout::Routed>,
    method: Method,
    headers: HeaderMap,
    accept_gzip: bool,
    accept_br: bool,
}

impl Edge {
    /// Entry point for every request when the cache is on.
    pub(crate) async fn cached(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        req: Request<ClientBody>,
        conn: &ConnInfo,
        client: IpAddr,
    ) -> Served {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let authority = req.uri().authority().map(|a| a.as_str().to_owned());
        let routed = req.extensions().get::<crate::rollout::Routed>().cloned();
        let release = match &routed {
            Some(r) => r.release.clone(),
            None => self.release.clone(),
        };
        let decision = {
            let mut view = RequestView::new(req.method(), &target, req.headers())
                .with_release(release.as_deref());
            if let Some(a) = authority.as_deref() {
                view = view.with_host_fallback(a);
            }
            classify(&view, &cache.s.policy)
        };
        match decision {
            RequestDecision::Purge => self.purge(cache, &req, conn),
            RequestDecision::Pipe | RequestDecision::Pass(_) => {
                cache.counters.passes.fetch_add(1, Ordering::Relaxed);
                let path = req.uri().path().to_owned();
                let (mut resp, outcome) = self.dispatch(req, conn, client).await;
                deliver_headers(resp.headers_mut(), CacheDebug::Uncacheable, &path, 0);
                Served {
                    resp,
                    outcome,
                    cache: "UNCACHEABLE",
                }
            }
            RequestDecision::Lookup(plan) => {
                let (mut parts, _body) = req.into_parts();
                // The headers move into the client view: no copy on the hit path.
                let headers = std::mem::take(&mut parts.headers);
                let cv = ClientView {
                    release,
                    routed,
                    accept_gzip: plan.accept_gzip,
                    accept_br: plan.accept_gzip && crate::compress::accepts(&headers, "br"),
                    method: parts.method.clone(),
                    headers,
                };
                self.lookup(cache, parts, plan, &cv, conn, client, 0).await
            }
        }
    }

    /// `PURGE` as Magento sends it (contract §8): ACL on the socket peer,
    /// Varnish's synthetic answer, connection closed afterwards.
    fn purge(&self, cache: &Cache, req: &Request<ClientBody>, conn: &ConnInfo) -> Served {
        let peer = conn.peer.ip();
        let allowed = crate::client_ip::is_trusted(peer, &cache.s.purge_acl)
            && cache
                .s
                .purge_guard
                .admits(peer, req.headers(), conn.internal);
        let verdict = purge_decision(allowed, req.headers());
        let mut purged = 0u64;
        match &verdict {
            PurgeVerdict::Purge(p) => {
                let now = ms(SystemTime::now());
                // `X-Magestack-Purge: soft|hard` overrides `cache.soft_purge` per request.
                let soft = match req.headers().get(PURGE_MODE).map(|v| v.as_bytes()) {
                    Some(b"soft") => true,
                    Some(b"hard") => false,
                    _ => cache.s.soft_purge,
                };
                for (header, pattern) in [("X-Magento-Tags-Pattern", &p.tags), ("X-Pool", &p.pool)]
                {
                    if let Some(PurgePattern::Invalid(why)) = pattern {
                        cache
                            .counters
                            .purge_invalid_patterns
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, header, error = %why, "PURGE pattern is not a valid regex; nothing purged (answered 200, as Varnish does).");
                    }
                }
                if let Some(tags) = &p.tags {
                    purged += apply_pattern(cache, tags, now, "", soft);
                }
                if let Some(pool) = &p.pool {
                    purged += apply_pattern(cache, pool, now, POOL_PREFIX, soft);
                }
                cache.counters.purges.fetch_add(1, Ordering::Relaxed);
                cache
                    .counters
                    .purged_objects
                    .fetch_add(purged, Ordering::Relaxed);
                tracing::info!(%peer, objects = purged, "Purged.");
                if let Some(bus) = &self.bus {
                    // The raw header values: every replica parses them alike.
                    let raw = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    bus.publish(
                        soft,
                        magestack_cluster::PurgeCommand::Pattern {
                            tags_pattern: p.tags.as_ref().and(raw("x-magento-tags-pattern")),
                            pool_pattern: p.pool.as_ref().and(raw("x-pool")),
                        },
                    );
                }
            }
            _ => {
                cache
                    .counters
                    .purges_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, verdict = verdict.as_str(), "PURGE refused.");
            }
        }
        let xid = cache.xid.fetch_add(1, Ordering::Relaxed);
        let synth = purge_response(&verdict, xid);
        let len = synth.body.len();
        let mut resp = Response::new(body::full(synth.body));
        *resp.status_mut() = synth.status;
        *resp.headers_mut() = synth.headers;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        // Magento's socket client reads until EOF: answer and close.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(synth.reason.as_bytes()) {
            resp.extensions_mut().insert(reason);
        }
        Served {
            resp,
            outcome: Outcome::Edge,
            cache: "PURGE",
        }
    }

    /// A purge from the admin API (`POST /admin/purge`): exact tags, or
    /// every tagged object (`all`), soft or hard. `None` without a cache.
    pub fn admin_purge(&self, tags: &[String], all: bool, soft: bool) -> Option<u64> {
        let cache = self.cache_ref()?;
        let now = ms(SystemTime::now());
        let store = &cache.store;
        let stats = if all {
            if soft {
                store.soft_purge_all_tagged(now)
            } else {
                store.purge_all_tagged()
            }
        } else {
            let names: Vec<&str> = tags.iter().map(String::as_str).collect();
            if soft {
                store.soft_purge_tags(&names, now)
            } else {
                store.purge_tags(&names)
            }
        };
        let n = stats.objects as u64;
        if let Some(bus) = &self.bus {
            bus.publish(
                soft,
                if all {
                    magestack_cluster::PurgeCommand::All
                } else {
                    magestack_cluster::PurgeCommand::Tags {
                        tags: tags.to_vec(),
                    }
                },
            );
        }
        cache.counters.purges.fetch_add(1, Ordering::Relaxed);
        cache
            .counters
            .purged_objects
            .fetch_add(n, Ordering::Relaxed);
        tracing::info!(
            objects = n,
            all,
            soft,
            tags = tags.len(),
            "Purged (admin API)."
        );
        Some(n)
    }

    /// Lookup, then hit / grace / coalesced miss.
    #[allow(clippy::too_many_arguments)]
    fn lookup<'a>(
        self: &'a Arc<Self>,
        cache: &'a Arc<Cache>,
        parts: http::request::Parts,
        plan: LookupPlan,
        cv: &'a ClientView,
        conn: &'a ConnInfo,
        client: IpAddr,
        esi_depth: u8,
    ) -> futures_util::future::BoxFuture<'a, Served> {
        Box::pin(async move {
            let mut plan = plan;
            for attempt in 0..3 {
                let now = SystemTime::now();
                let found = if plan.always_miss {
                    Lookup::Miss
                } else {
                    cache.store.lookup(
                        &plan.key.primary,
                        |obj| variance_matches(obj, &cv.headers),
                        ms(now),
                    )
                };
                // A hit to deliver, with its grace state; a stale object past grace falls through.
                let hit = match &found {
                    Lookup::Fresh(obj) => Some((obj.clone(), GraceState::None)),
                    Lookup::Stale(obj) => {
                        let times = object_times(obj);
                        let healthy = cache.healthy.load(Ordering::Relaxed);
                        match hit_decision(&times, now, healthy, &cache.s.policy) {
                            HitDecision::Fresh => Some((obj.clone(), GraceState::None)),
                            HitDecision::StaleServe { refresh, grace } => {
                                if refresh {
                                    self.refresh_in_background(
                                        cache,
                                        &parts,
                                        &cv.headers,
                                        &plan,
                                        conn,
                                        client,
                                    );
                                }
                                Some((obj.clone(), grace))
                            }
                            HitDecision::Miss => {
                                // Varnish restarts with hash_always_miss: fetch now.
                                plan.always_miss = true;
                                None
                            }
                        }
                    }
                    Lookup::HitForMiss | Lookup::Miss => None,
                };
                if let Some((obj, grace)) = hit {
                    cache.counters.hits.fetch_add(1, Ordering::Relaxed);
                    if esi_depth == 0 && obj.status() == 200 && parts.method == http::Method::GET {
                        cache.count_hit(&plan.key.primary, &parts.uri, &cv.headers);
                    }
                    let debug = CacheDebug::Hit { grace };
                    return self
                        .deliver(cache, &obj, cv, &plan, debug, conn, client, esi_depth)
                        .await;
                }
                match found {
                    Lookup::HitForMiss => {
                        cache.counters.misses.fetch_add(1, Ordering::Relaxed);
                        return self
                            .fetch_and_deliver(cache, &parts, &plan, cv, conn, client, esi_depth)
                            .await;
                    }
                    // Stale past grace: fetch now, as a miss.
                    Lookup::Miss | Lookup::Fresh(_) | Lookup::Stale(_) => {}
                }
                cache.counters.misses.fetch_add(1, Ordering::Relaxed);
                if attempt == 2 {
                    break;
                }
                match cache.flights.join(plan.key.primary, || {
                    FlightSignal(Arc::new(watch::channel(false).0))
                }) {
                    Join::Leader(guard) => {
                        // The shared L2 before PHP: its variants go into the
                        // local store and the lookup runs again.
                        if let Some(bus) = self.bus.as_ref().filter(|b| b.l2_enabled()) {
                            if !plan.always_miss && attempt == 0 {
                                let objects = bus.l2_get(&plan.key.primary).await;
                                if !objects.is_empty() {
                                    for o in objects {
                                        from_l2(&cache.store, plan.key.primary, o);
                                    }
                                    cache.counters.misses.fetch_sub(1, Ordering::Relaxed);
                                    drop(guard);
                                    continue;
                                }
                            }
                        }
                        let served = self
                            .fetch_and_deliver(cache, &parts, &plan, cv, conn, client, esi_depth)
                            .await;
                        drop(guard);
                        return served;
                    }
                    Join::Follower(signal) => {
                        let mut rx = signal.0.subscribe();
                        let wait = rx.wait_for(|done| *done);
                        // A leader that hangs must not hang its followers longer than it may.
                        let _ = tokio::time::timeout(
                            self.read_timeout() + Duration::from_secs(1),
                            wait,
                        )
                        .await;
                        plan.always_miss = false;
                    }
                }
            }
            self.fetch_and_deliver(cache, &parts, &plan, cv, conn, client, esi_depth)
                .await
        })
    }

    /// Refreshes a stale object once per key, off the request path.
    fn refresh_in_background(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        parts: &http::request::Parts,
        headers: &HeaderMap,
        plan: &LookupPlan,
        conn: &ConnInfo,
        client: IpAddr,
    ) {
        let guard = match cache.flights.join(plan.key.primary, || {
            FlightSignal(Arc::new(watch::channel(false).0))
        }) {
            Join::Leader(g) => g,
            Join::Follower(_) => return,
        };
        let this = self.clone();
        let cache = cache.clone();
        let plan = plan.clone();
        let conn = *conn;
        let fetch_parts = fetch_parts(parts, headers, &plan);
        tokio::spawn(async move {
            let fetched = this.fetch(&cache, fetch_parts, &plan, &conn, client).await;
            if let Err(e) = fetched {
                tracing::debug!(error = %e, "Background refresh failed; the stale object stays.");
            }
            drop(guard);
        });
    }

    /// Fetches for a miss, stores what may be stored, and delivers it.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_and_deliver(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        parts: &http::request::Parts,
        plan: &LookupPlan,
        cv: &ClientView,
        conn: &ConnInfo,
        client: IpAddr,
        esi_depth: u8,
    ) -> Served {
        match self
            .fetch(
                cache,
                fetch_parts(parts, &cv.headers, plan),
                plan,
                conn,
                client,
            )
            .await
        {
            Ok(Fetched::Stored(obj, slot)) => {
                let mut served = self
                    .deliver(
                        cache,
                        &obj,
                        cv,
                        plan,
                        CacheDebug::Miss,
                        conn,
                        client,
                        esi_depth,
                    )
                    .await;
                if let Some(slot) = slot {
                    served.resp.extensions_mut().insert(slot);
                }
                served
            }
            Ok(Fetched::Uncacheable {
                mut resp,
                outcome,
                esi,
            }) => {
                if esi && cache.s.esi && esi_depth < MAX_ESI_DEPTH {
                    resp = self
                        .assemble_esi_response(cache, resp, cv, plan, conn, client, esi_depth)
                        .await;
                }
                deliver_headers(resp.headers_mut(), CacheDebug::Uncacheable, &plan.url, 0);
                let resp = decode_for_client(resp, cv.accept_gzip);
                Served {
                    resp,
                    outcome,
                    cache: "UNCACHEABLE",
                }
            }
            Err(FetchError::Upstream(resp, outcome)) => Served {
                resp,
                outcome,
                cache: "UNCACHEABLE",
            },
            Err(FetchError::Body(e)) => {
                tracing::warn!(error = %e, url = %plan.url, "Backend body failed during a cache fetch.");
                Served {
                    resp: error_page(StatusCode::BAD_GATEWAY, Some(5)),
                    outcome: Outcome::UpstreamError,
                    cache: "UNCACHEABLE",
                }
            }
        }
    }

    /// The backend fetch of a lookup: GET, normalised URL, `Accept-Encoding: gzip`.
    async fn fetch(
        &self,
        cache: &Cache,
        parts: http::request::Parts,
        plan: &LookupPlan,
        conn: &ConnInfo,
        client: IpAddr,
    ) -> Result<Fetched, FetchError> {
        // The purge number before the fetch: a copy for L2 is written only
        // if no purge was published meanwhile.
        let seq_at_fetch = self
            .bus
            .as_ref()
            .filter(|b| b.l2_enabled())
            .map(|b| b.last_seq());
        let req_headers = parts.headers.clone();
        let req = Request::from_parts(parts, ClientBody::Empty);
        let (resp, outcome) = self.dispatch(req, conn, client).await;
        if outcome == Outcome::UpstreamError {
            return Err(FetchError::Upstream(resp, outcome));
        }
        let (mut head, body_stream) = resp.into_parts();
        let pool_slot = head.extensions.get::<PoolSlot>().copied();
        // Buffer up to the object ceiling; beyond it the response streams through uncached.
        let mut buf = BytesMut::new();
        let mut stream = body_stream;
        let mut overflow: Option<EdgeBody> = None;
        while let Some(frame) = stream.frame().await {
            let frame = frame.map_err(FetchError::Body)?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() > cache.s.max_object_bytes {
                    overflow = Some(stream);
                    break;
                }
            }
        }
        if let Some(rest) = overflow {
            let prefix = buf.freeze();
            use futures_util::StreamExt;
            let chained = futures_util::stream::once(async move {
                Ok::<_, BoxError>(http_body::Frame::data(prefix))
            })
            .chain(http_body_util::BodyStream::new(rest));
            let body = http_body_util::StreamBody::new(chained).boxed_unsync();
            head.headers.remove(header::CONTENT_LENGTH);
            return Ok(Fetched::Uncacheable {
                resp: Response::from_parts(head, body),
                outcome,
                esi: false,
            });
        }
        let body = buf.freeze();
        let now = SystemTime::now();
        let verdict = {
            let view = RequestView::new(&Method::GET, &plan.url, &req_headers);
            classify_response(
                &view,
                Fetch::Lookup(plan),
                &ResponseView {
                    status: head.status,
                    headers: &head.headers,
                },
                now,
                &cache.s.policy,
            )
        };
        verdict.apply_to_headers(&mut head.headers);
        // ESI documents are found once, here; their bodies stay uncompressed so
        // assembly needs no gunzip, and the edge's gzip filter compresses the result.
        let has_esi = cache.s.esi
            && verdict.esi()
            && verdict.is_cacheable()
            && !magestack_fpc::response::is_encoded(&head.headers)
            && matches!(parse_esi(&body, &cache.s.policy.esi_limits), Ok(Some(_)));
        // Only stored objects are compressed here (once, for all their hits);
        // uncacheable responses go out as they came, and the edge's gzip filter
        // compresses them for the clients that accept it.
        let gzip = verdict.is_cacheable()
            && !has_esi
            && verdict.gzip()
            && !magestack_fpc::response::is_encoded(&head.headers);
        // Compressed once, here: gzip (and brotli back to back in the same
        // buffer, its offset recorded in an internal header line).
        let (body, gzipped, br_offset) = if gzip {
            let brotli = cache.s.brotli;
            if body.len() > COMPRESS_INLINE_BYTES {
                // A large page costs milliseconds of CPU: off the async
                // workers, so other requests on this thread are not held up.
                let input = body.clone();
                match tokio::task::spawn_blocking(move || compress_for_store(&input, brotli)).await
                {
                    Ok((b, off)) => (b, true, off),
                    Err(_) => (body, false, None),
                }
            } else {
                let (b, off) = compress_for_store(&body, brotli);
                (b, true, off)
            }
        } else {
            (body, false, None)
        };
        if gzipped {
            magestack_fpc::response::gzip_stored_headers(&mut head.headers);
        }
        match verdict {
            Cacheability::Cacheable {
                ttl,
                grace,
                keep,
                esi,
                tags,
                pools,
                ..
            } => {
                let variance = Variance::from(variance(&head.headers, &req_headers));
                let mut block = Vec::with_capacity(512);
                if has_esi {
                    block.extend_from_slice(ESI_MARKER_LINE);
                }
                if let Some(off) = br_offset {
                    block.extend_from_slice(format!("{BR_OFFSET}: {off}\r\n").as_bytes());
                }
                for (name, value) in head.headers.iter() {
                    if name == header::CONTENT_LENGTH {
                        continue;
                    }
                    block.extend_from_slice(name.as_str().as_bytes());
                    block.extend_from_slice(b": ");
                    block.extend_from_slice(value.as_bytes());
                    block.extend_from_slice(b"\r\n");
                }
                let _ = esi; // ESI documents are parsed on delivery; see `deliver`.
                let builder = ObjectBuilder::new(head.status.as_u16(), body.clone())
                    .headers_block(block)
                    .gzip(gzipped)
                    .ttl_ms(ttl.as_millis() as u64)
                    .grace_ms(grace.as_millis() as u64)
                    .keep_ms(keep.as_millis() as u64)
                    .tags(
                        tags.iter()
                            .cloned()
                            .chain(pools.iter().map(|p| format!("{POOL_PREFIX}{p}"))),
                    );
                match cache
                    .store
                    .insert(plan.key.primary, variance, builder, ms(now))
                {
                    Ok(obj) => {
                        if let (Some(bus), Some(seq)) = (&self.bus, seq_at_fetch) {
                            bus.l2_put(plan.key.primary, to_l2(&cache.store, &obj), seq);
                        }
                        Ok(Fetched::Stored(obj, pool_slot))
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, url = %plan.url, "Object not stored.");
                        let body = match br_offset {
                            Some(off) => body.slice(..off),
                            None => body,
                        };
                        let mut resp = Response::from_parts(head, body::full(body));
                        resp.headers_mut().remove(header::CONTENT_LENGTH);
                        Ok(Fetched::Uncacheable { resp, outcome, esi })
                    }
                }
            }
            Cacheability::Uncacheable {
                hit_for_miss_ttl,
                esi,
                reason,
                ..
            } => {
                if !hit_for_miss_ttl.is_zero() {
                    // A marker has no headers, so it is stored without variance: it
                    // must match every request for the key, or lookups would miss it
                    // and coalesce behind each other forever.
                    let _ = cache.store.insert(
                        plan.key.primary,
                        Variance::from(None::<[u8; 16]>),
                        ObjectBuilder::hit_for_miss(hit_for_miss_ttl.as_millis() as u64),
                        ms(now),
                    );
                }
                tracing::debug!(reason = reason.as_str(), url = %plan.url, "Uncacheable.");
                head.headers.remove(header::CONTENT_LENGTH);
                let body = match br_offset {
                    Some(off) => body.slice(..off),
                    None => body,
                };
                Ok(Fetched::Uncacheable {
                    resp: Response::from_parts(head, body::full(body)),
                    outcome,
                    esi,
                })
            }
        }
    }

    /// Builds the client response from a stored object.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        obj: &CachedObject,
        cv: &ClientView,
        plan: &LookupPlan,
        debug: CacheDebug,
        conn: &ConnInfo,
        client: IpAddr,
        esi_depth: u8,
    ) -> Served {
        let mut headers = HeaderMap::with_capacity(16);
        // Values point into the object (no copy per header).
        let block = obj.headers_shared();
        for (name, value) in obj.header_iter() {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(block.slice_ref(value)),
            ) {
                headers.append(n, v);
            }
        }
        let times = object_times(obj);
        let now = SystemTime::now();
        let is_esi = headers.remove(ESI_MARKER).is_some() && esi_depth < MAX_ESI_DEPTH;
        let br_offset = headers
            .remove(BR_OFFSET)
            .and_then(|v| v.to_str().ok().and_then(|v| v.parse::<usize>().ok()))
            .filter(|&off| off <= obj.body_bytes().len());
        deliver_headers(&mut headers, debug, &plan.url, times.age_secs(now));
        let label = debug.as_str();
        let status = StatusCode::from_u16(obj.status()).unwrap_or(StatusCode::OK);
        if status == StatusCode::OK
            && (cv.method == Method::GET || cv.method == Method::HEAD)
            && evaluate_conditional(&cv.headers, &headers, now, Some(times.fetched_at))
        {
            let mut r = Response::new(body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [
                header::CONTENT_ENCODING,
                header::CONTENT_LENGTH,
                header::CONTENT_TYPE,
            ] {
                headers.remove(name);
            }
            *r.headers_mut() = headers;
            return Served {
                resp: r,
                outcome: Outcome::Cache,
                cache: label,
            };
        }
        let stored = obj.body();
        let payload = match br_offset {
            Some(off) if cv.accept_br => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
                stored.slice(off..)
            }
            Some(off) => stored.slice(..off),
            None => stored.clone(),
        };
        let mut resp = Response::new(body::full(payload));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        if is_esi {
            resp = self
                .assemble_esi_response(cache, resp, cv, plan, conn, client, esi_depth)
                .await;
        }
        let resp = decode_for_client(resp, cv.accept_gzip);
        Served {
            resp,
            outcome: Outcome::Cache,
            cache: label,
        }
    }

    /// Splices `<esi:include>` fragments into an uncompressed text response.
    #[allow(clippy::too_many_arguments)]
    async fn assemble_esi_response(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        resp: Response<EdgeBody>,
        cv: &ClientView,
        plan: &LookupPlan,
        conn: &ConnInfo,
        client: IpAddr,
        esi_depth: u8,
    ) -> Response<EdgeBody> {
        let (mut head, body_stream) = resp.into_parts();
        let Ok(collected) = body_stream.collect().await else {
            return error_page(StatusCode::BAD_GATEWAY, Some(5));
        };
        let mut plain = collected.to_bytes();
        if head
            .headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.as_bytes())
            == Some(b"gzip")
        {
            match gunzip_bytes(&plain) {
                Some(p) => plain = p,
                None => return Response::from_parts(head, body::full(plain)),
            }
            head.headers.remove(header::CONTENT_ENCODING);
        }
        let segments = match parse_esi(&plain, &cache.s.policy.esi_limits) {
            Ok(Some(s)) => s,
            Ok(None) => return Response::from_parts(head, body::full(plain)),
            Err(e) => {
                tracing::warn!(error = %e, url = %plan.url, "ESI document refused; delivered as is.");
                return Response::from_parts(head, body::full(plain));
            }
        };
        let mut out = BytesMut::with_capacity(plain.len() + 4096);
        for seg in segments {
            match seg {
                EsiSegment::Literal(b) => out.extend_from_slice(&b),
                EsiSegment::Include(inc) => {
                    let Some(target) = resolve_include(&inc.src, &plan.url) else {
                        continue;
                    };
                    // A failed fragment is left out and the page goes on, with or
                    // without `onerror="continue"`: Varnish's default.
                    if let Some(frag) = self
                        .esi_fragment(cache, &target, cv, conn, client, esi_depth + 1)
                        .await
                    {
                        out.extend_from_slice(&frag);
                    }
                }
            }
        }
        head.headers.remove(header::CONTENT_LENGTH);
        head.headers.remove(header::ETAG);
        Response::from_parts(head, body::full(out.freeze()))
    }

    /// One ESI include, through the whole pipeline with its own key, TTL and tags.
    async fn esi_fragment(
        self: &Arc<Self>,
        cache: &Arc<Cache>,
        target: &magestack_fpc::esi::IncludeTarget,
        cv: &ClientView,
        conn: &ConnInfo,
        client: IpAddr,
        depth: u8,
    ) -> Option<Bytes> {
        let mut headers = subrequest_headers(&cv.headers, false);
        target.apply_host(&mut headers);
        let uri: Uri = target.url.parse().ok()?;
        let decision = classify(
            &RequestView::new(&Method::GET, &target.url, &headers)
                .with_release(cv.release.as_deref()),
            &cache.s.policy,
        );
        let (mut parts, ()) = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(())
            .ok()?
            .into_parts();
        if let Some(r) = &cv.routed {
            parts.extensions.insert(r.clone());
        }
        let sub_cv = ClientView {
            release: cv.release.clone(),
            routed: cv.routed.clone(),
            method: Method::GET,
            headers,
            accept_gzip: false,
            accept_br: false,
        };
        let served = match decision {
            RequestDecision::Lookup(plan) => {
                self.lookup(cache, parts, plan, &sub_cv, conn, client, depth)
                    .await
            }
            _ => {
                let mut parts = parts;
                parts.headers = sub_cv.headers.clone();
                let (resp, outcome) = self
                    .dispatch(Request::from_parts(parts, ClientBody::Empty), conn, client)
                    .await;
                Served {
                    resp,
                    outcome,
                    cache: "UNCACHEABLE",
                }
            }
        };
        if !served.resp.status().is_success() {
            return None;
        }
        let resp = decode_for_client(served.resp, false);
        resp.into_body().collect().await.ok().map(|c| c.to_bytes())
    }

    fn read_timeout(&self) -> Duration {
        self.settings().read_timeout
    }
}

enum Fetched {
    /// Stored; the pool that produced it (for the metrics of this request).
    Stored(CachedObject, Option<PoolSlot>),
    Uncacheable {
        resp: Response<EdgeBody>,
        outcome: Outcome,
        esi: bool,
    },
}

enum FetchError {
    Upstream(Response<EdgeBody>, Outcome),
    Body(BoxError),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Upstream(resp, _) => write!(f, "backend answered {}", resp.status()),
            FetchError::Body(e) => write!(f, "backend body: {e}"),
        }
    }
}

/// Internal marker stored with objects whose body has ESI markup; never delivered.
const ESI_MARKER: &str = "x-magestack-esi";
const ESI_MARKER_LINE: &[u8] = b"x-magestack-esi: 1\r\n";
/// Internal header line: where the brotli encoding starts in a stored body.
const BR_OFFSET: &str = "x-magestack-br-offset";

/// Tags under which `X-Pool` values are indexed, so `X-Pool` purges use the same index.
pub(crate) const POOL_PREFIX: &str = "\u{1}pool:";

/// Request header choosing soft or hard purge for one PURGE.
const PURGE_MODE: &str = "x-magestack-purge";

fn apply_pattern(
    cache: &Cache,
    pattern: &PurgePattern,
    now_ms: u64,
    prefix: &str,
    soft: bool,
) -> u64 {
    let store = &cache.store;
    let stats = match pattern {
        PurgePattern::All if prefix.is_empty() => {
            if soft {
                store.soft_purge_all_tagged(now_ms)
            } else {
                store.purge_all_tagged()
            }
        }
        PurgePattern::Tags(tags) => {
            let names: Vec<String> = tags.iter().map(|t| format!("{prefix}{t}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            if soft {
                store.soft_purge_tags(&refs, now_ms)
            } else {
                store.purge_tags(&refs)
            }
        }
        PurgePattern::Empty | PurgePattern::Invalid(_) => return 0,
        other => {
            let pred = |tag: &str| -> bool {
                let is_pool = tag.starts_with(POOL_PREFIX);
                if prefix.is_empty() {
                    !is_pool && other.matches_tag(tag)
                } else {
                    is_pool && other.matches_tag(&tag[POOL_PREFIX.len()..])
                }
            };
            if soft {
                store.soft_purge_matching(pred, now_ms)
            } else {
                store.purge_matching(pred)
            }
        }
    };
    stats.objects as u64
}

/// A stored object as an L2 record.
fn to_l2(store: &Store, obj: &CachedObject) -> magestack_cluster::L2Object {
    magestack_cluster::L2Object {
        status: obj.status(),
        gzip: obj.is_gzip(),
        variance: obj.variance().0,
        created_ms: obj.created_ms(),
        ttl_ms: obj.ttl_ms(),
        grace_ms: obj.grace_ms(),
        keep_ms: obj.keep_ms(),
        tags: store.tag_names(obj),
        headers: obj.headers().to_vec(),
        body: obj.body_bytes().to_vec(),
    }
}

/// Puts an L2 record into the local store, with its original age.
fn from_l2(store: &Store, primary: [u8; 16], o: magestack_cluster::L2Object) {
    let builder = ObjectBuilder::new(o.status, Bytes::from(o.body))
        .headers_block(o.headers)
        .gzip(o.gzip)
        .ttl_ms(o.ttl_ms)
        .grace_ms(o.grace_ms)
        .keep_ms(o.keep_ms)
        .tags(o.tags);
    let _ = store.insert(primary, Variance(o.variance), builder, o.created_ms);
}

/// Applies a purge received from the bus (or accepted here): the same
/// parsers as a local `PURGE`, so every replica reads a pattern alike.
pub(crate) fn apply_command(
    cache: &Cache,
    command: &magestack_cluster::PurgeCommand,
    soft: bool,
) -> u64 {
    use magestack_cluster::PurgeCommand;
    let now = ms(SystemTime::now());
    let store = &cache.store;
    let n = match command {
        PurgeCommand::Pattern {
            tags_pattern,
            pool_pattern,
        } => {
            let mut n = 0;
            if let Some(t) = tags_pattern {
                n += apply_pattern(cache, &parse_tags_pattern(t), now, "", soft);
            }
            if let Some(p) = pool_pattern {
                n += apply_pattern(
                    cache,
                    &magestack_fpc::purge::parse_pool_pattern(p),
                    now,
                    POOL_PREFIX,
                    soft,
                );
            }
            n
        }
        PurgeCommand::Tags { tags } => {
            let names: Vec<&str> = tags.iter().map(String::as_str).collect();
            let stats = if soft {
                store.soft_purge_tags(&names, now)
            } else {
                store.purge_tags(&names)
            };
            stats.objects as u64
        }
        PurgeCommand::All => {
            let stats = if soft {
                store.soft_purge_all_tagged(now)
            } else {
                store.purge_all_tagged()
            };
            stats.objects as u64
        }
    };
    cache.counters.purges.fetch_add(1, Ordering::Relaxed);
    cache
        .counters
        .purged_objects
        .fetch_add(n, Ordering::Relaxed);
    n
}

/// Marks every cached object stale (a replica that may have missed purges).
pub(crate) fn soft_purge_everything(cache: &Cache, now: SystemTime) -> u64 {
    cache.store.soft_purge_all(ms(now)).objects as u64
}

/// The fetch request of a lookup: GET, normalised URL, miss headers.
fn fetch_parts(
    parts: &http::request::Parts,
    headers: &HeaderMap,
    plan: &LookupPlan,
) -> http::request::Parts {
    let mut builder = Request::builder()
        .method(Method::GET)
        .version(http::Version::HTTP_11);
    builder = builder.uri(
        plan.url
            .parse::<Uri>()
            .unwrap_or_else(|_| parts.uri.clone()),
    );
    let (mut p, ()) = match builder.body(()) {
        Ok(r) => r.into_parts(),
        Err(_) => Request::new(()).into_parts(),
    };
    p.headers = miss_fetch_headers(headers);
    // The fetch goes to the request's track.
    if let Some(r) = parts.extensions.get::<crate::rollout::Routed>() {
        p.extensions.insert(r.clone());
    }
    if let Some(a) = parts.uri.authority() {
        if !p.headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                p.headers.insert(header::HOST, v);
            }
        }
    }
    p
}

/// Whether a stored object is the variant for this request (Varnish `Vary` matching).
///
/// Runs under the shard's read lock for every candidate, so the usual cases
/// allocate nothing: an object without `Vary`, and Magento's `Vary:
/// Accept-Encoding` on a plain or gzip body (one copy for every client, see
/// [`variance`]).
fn variance_matches(obj: &CachedObject, req: &HeaderMap) -> bool {
    let mut vary_lines = 0usize;
    let mut only_accept_encoding = true;
    let mut foreign_coding = false;
    for (name, value) in obj.header_iter() {
        if name.eq_ignore_ascii_case(b"vary") {
            vary_lines += 1;
            only_accept_encoding &= value
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .filter(|n| !n.is_empty())
                .all(|n| n.eq_ignore_ascii_case(b"accept-encoding"));
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            let v = value.trim_ascii();
            foreign_coding = !(v.is_empty()
                || v.eq_ignore_ascii_case(b"gzip")
                || v.eq_ignore_ascii_case(b"identity"));
        }
    }
    if vary_lines == 0 || (only_accept_encoding && !foreign_coding) {
        return obj.variance() == Variance::from(None::<[u8; 16]>);
    }
    let mut resp = HeaderMap::new();
    for (name, value) in obj.header_iter() {
        let name = if name.eq_ignore_ascii_case(b"vary") {
            header::VARY
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            header::CONTENT_ENCODING
        } else {
            continue;
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            resp.append(name, v);
        }
    }
    Variance::from(variance(&resp, req)) == obj.variance()
}

fn object_times(obj: &CachedObject) -> ObjectTimes {
    let created = UNIX_EPOCH + Duration::from_millis(obj.created_ms());
    ObjectTimes::new(
        created,
        Duration::from_millis(obj.ttl_ms()),
        Duration::from_millis(obj.grace_ms()),
        Duration::from_millis(obj.keep_ms()),
        Duration::ZERO,
    )
}

/// Bodies up to this size are compressed on the request's own task (a few
/// hundred microseconds at most); larger ones on the blocking pool.
const COMPRESS_INLINE_BYTES: usize = 64 * 1024;

/// gzip, and brotli back to back in the same buffer: the stored body and
/// where its brotli encoding starts.
fn compress_for_store(body: &[u8], brotli: bool) -> (Bytes, Option<usize>) {
    let gz = gzip_bytes(body);
    if !brotli {
        return (gz, None);
    }
    let br = brotli_bytes(body);
    let mut both = BytesMut::with_capacity(gz.len() + br.len());
    both.extend_from_slice(&gz);
    both.extend_from_slice(&br);
    (both.freeze(), Some(gz.len()))
}

/// Level 6, as nginx and Varnish use (window sized for the body).
fn gzip_bytes(data: &[u8]) -> Bytes {
    crate::compress::gzip_all(data)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::copy_from_slice(data))
}

/// Quality 5: most of brotli's gain on HTML at a fraction of quality 11's cost.
fn brotli_bytes(data: &[u8]) -> Bytes {
    use std::io::Write;
    let mut out = Vec::with_capacity(data.len() / 4 + 64);
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 16 * 1024, 5, 22);
        if w.write_all(data).is_err() {
            return Bytes::new();
        }
    }
    Bytes::from(out)
}

fn gunzip_bytes(data: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(Bytes::from(out))
}

/// Clients that do not accept gzip get the stored gzip body decompressed.
fn decode_for_client(resp: Response<EdgeBody>, accept_gzip: bool) -> Response<EdgeBody> {
    let gz = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.as_bytes() == b"gzip")
        .unwrap_or(false);
    if !gz || accept_gzip {
        return resp;
    }
    let (mut head, body) = resp.into_parts();
    head.headers.remove(header::CONTENT_ENCODING);
    head.headers.remove(header::CONTENT_LENGTH);
    let decoded = crate::compress::gunzip(body);
    Response::from_parts(head, decoded)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use magestack_fpc_store::{ObjectBuilder, Store};

    /// The allocation-free paths agree with the policy's `variance` for every
    /// stored/requested combination.
    #[test]
    fn variance_fast_paths_agree_with_the_policy() {
        let store = Store::default();
        let varies: [&[&str]; 5] = [
            &[],
            &["Accept-Encoding"],
            &["accept-encoding ,Accept-Encoding"],
            &["Accept-Encoding", "Cookie"],
            &["X-Magento-Vary"],
        ];
        let requests = [
            HeaderMap::new(),
            HeaderMap::from_iter([(header::COOKIE, HeaderValue::from_static("a=1"))]),
            HeaderMap::from_iter([(header::ACCEPT_ENCODING, HeaderValue::from_static("br"))]),
        ];
        let mut n = 0u8;
        for vary in varies {
            for coding in [None, Some("gzip"), Some("br")] {
                let mut resp = HeaderMap::new();
                let mut b = ObjectBuilder::new(200, Bytes::from_static(b"x"));
                for v in vary {
                    resp.append(header::VARY, HeaderValue::from_static(v));
                    b = b.header(b"vary", v.as_bytes());
                }
                if let Some(c) = coding {
                    resp.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
                    b = b.header(b"content-encoding", c.as_bytes());
                }
                for stored_for in &requests {
                    n += 1;
                    let stored = Variance::from(variance(&resp, stored_for));
                    let obj = store.insert([n; 16], stored, b.clone(), 0).unwrap();
                    for req in &requests {
                        let want = Variance::from(variance(&resp, req)) == stored;
                        assert_eq!(
                            variance_matches(&obj, req),
                            want,
                            "vary {vary:?}, coding {coding:?}, stored for {stored_for:?}, request {req:?}"
                        );
                    }
                }
            }
        }
    }
}
