//! The admin listener: `/healthz` (the process is alive) and `/readyz` (it takes
//! traffic). Readiness turns false as soon as shutdown starts, so Kubernetes stops
//! routing to the pod before its listeners close. Deeper checks (PHP-FPM warm,
//! OPcache, Redis) and `/metrics` are added on top of this.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::body::{self, EdgeBody};
use crate::Edge;

/// Shared readiness flag.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks the process ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Current state.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Who may use the admin API beyond `/healthz` and `/readyz`: peers in the
/// ACL, or anyone presenting the bearer token (from `MAGESTACK_ADMIN_TOKEN`).
#[derive(Clone, Default)]
pub struct AdminAccess {
    /// Networks allowed without a token.
    pub acl: Vec<ipnet::IpNet>,
    /// Bearer token; never logged.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccess")
            .field("acl", &self.acl)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Failed admin authentications allowed per client address: a burst of
/// [`FAILURE_BURST`], then one more every `FAILURE_PERIOD / FAILURE_BURST`.
/// A token guesser gets 10 tries a minute instead of thousands a second; an
/// operator with a typo waits seconds.
pub const FAILURE_BURST: u32 = 10;
/// See [`FAILURE_BURST`].
pub const FAILURE_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);
/// Client addresses whose failures are remembered (about 48 bytes each):
/// bounded, so a flood of addresses cannot grow memory (the limiter drops
/// recovered entries first).
const FAILURE_MAX_KEYS: usize = 4096;

/// The answer of [`AdminAccess::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Allowed,
    Denied,
    /// Too many failures from this address: 429 with `Retry-After`.
    Throttled(std::time::Duration),
}

/// Counts failed authentications per client address (IPv6 per /64, which
/// one host usually holds whole).
#[derive(Debug)]
struct FailureThrottle {
    limiter: magestack_waf::Limiter,
    quota: magestack_waf::Quota,
    epoch: std::time::Instant,
}

impl FailureThrottle {
    fn new() -> FailureThrottle {
        FailureThrottle {
            limiter: magestack_waf::Limiter::new(FAILURE_MAX_KEYS),
            quota: magestack_waf::Quota::per(FAILURE_BURST, FAILURE_PERIOD),
            epoch: std::time::Instant::now(),
        }
    }

    fn key(ip: std::net::IpAddr) -> std::net::IpAddr {
        match ip {
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.into(),
                None => std::net::Ipv6Addr::from(
                    u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
                )
                .into(),
            },
            v4 => v4,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn blocked(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        match self.limiter.peek(0, Self::key(ip), self.quota, self.now()) {
            magestack_waf::Decision::Allow => None,
            magestack_waf::Decision::Deny { retry_after } => Some(retry_after),
        }
    }

    fn record_failure(&self, ip: std::net::IpAddr) {
        let _ = self.limiter.check(0, Self::key(ip), self.quota, self.now());
    }
}

impl AdminAccess {
    /// Peers in the ACL pass without a token; anyone else presents the
    /// bearer token, unless this address failed too often lately (then even
    /// the right token waits: otherwise guessing would go on unthrottled).
    fn check(
        &self,
        peer: std::net::IpAddr,
        req: &Request<Incoming>,
        throttle: &FailureThrottle,
    ) -> Access {
        if crate::client_ip::is_trusted(peer, &self.acl) {
            return Access::Allowed;
        }
        if let Some(wait) = throttle.blocked(peer) {
            return Access::Throttled(wait);
        }
        let presented = crate::token::bearer(req.headers());
        if let (Some(token), Some(p)) = (&self.token, presented) {
            if crate::token::constant_time_eq(p.as_bytes(), token.as_bytes()) {
                return Access::Allowed;
            }
        }
        throttle.record_failure(peer);
        Access::Denied
    }
}

/// Re-reads the configuration and swaps the serving edge: `Ok` with a
/// summary, or `Err` with every error (the running edge keeps serving).
pub type ReloadHook = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Serves the admin API until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<Readiness>,
    live: crate::LiveEdge,
    access: AdminAccess,
    reload: Option<ReloadHook>,
) {
    let access = Arc::new(access);
    let throttle = Arc::new(FailureThrottle::new());
    // The status page's last-minute figures and charts: one reading every
    // two seconds for as long as the admin listener serves.
    let history = Arc::new(crate::status_page::History::default());
    let _sampler = AbortOnDrop(tokio::spawn(history.clone().run(live.clone())));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let ready = ready.clone();
        let live = live.clone();
        let access = access.clone();
        let throttle = throttle.clone();
        let reload = reload.clone();
        let history = history.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let ready = ready.clone();
                let edge = live.current();
                let access = access.clone();
                let throttle = throttle.clone();
                let reload = reload.clone();
                let history = history.clone();
                async move {
                    let gate = Gate {
                        access: &access,
                        throttle: &throttle,
                        peer: peer.ip(),
                    };
                    if is_rollout_path(req.uri().path()) {
                        return Ok::<_, Infallible>(rollout_api(req, &edge, &gate).await);
                    }
                    if let Some(r) = status(&req, &ready, &edge, &gate, &history) {
                        return Ok::<_, Infallible>(r);
                    }
                    Ok::<_, Infallible>(route(&req, &ready, &edge, &gate, reload.as_ref()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Aborts the task when the admin listener's future is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The status page (`/`), its sections (`/status.html`, what the page's
/// script re-fetches) and its data (`/status.json`, what `magestack top`
/// reads): behind the same ACL or token as `/metrics`. `None` for other paths.
fn status(
    req: &Request<Incoming>,
    ready: &Readiness,
    edge: &Edge,
    gate: &Gate<'_>,
    history: &crate::status_page::History,
) -> Option<Response<EdgeBody>> {
    let path = req.uri().path();
    if !matches!(path, "/" | "/status.html" | "/status.json") {
        return None;
    }
    if let Some(refused) = gate.refuse(req) {
        return Some(refused);
    }
    let snap = crate::status_page::snapshot(edge, ready.get(), history);
    let (body, ctype) = match path {
        "/" => (
            crate::status_page::render_page(&snap),
            "text/html; charset=utf-8",
        ),
        "/status.html" => (
            crate::status_page::render_sections(&snap),
            "text/html; charset=utf-8",
        ),
        _ => (
            serde_json::to_string(&snap).unwrap_or_default() + "\n",
            "application/json",
        ),
    };
    let mut r = Response::new(body::full(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Some(r)
}

fn json(status: StatusCode, body: String) -> Response<EdgeBody> {
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `POST /admin/purge?tags=a,b[&soft=1]` or `?all=1`.
fn admin_purge(req: &Request<Incoming>, edge: &Edge) -> Response<EdgeBody> {
    let mut tags = Vec::new();
    let (mut all, mut soft) = (false, false);
    for pair in req.uri().query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
        match k {
            "tags" => tags.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            ),
            "all" => all = v == "1" || v == "true",
            "soft" => soft = v == "1" || v == "true",
            _ => {}
        }
    }
    if tags.is_empty() && !all {
        return json(
            StatusCode::BAD_REQUEST,
            "{\"error\":\"give tags=a,b or all=1\"}\n".into(),
        );
    }
    match edge.admin_purge(&tags, all, soft) {
        Some(n) => json(StatusCode::OK, format!("{{\"purged_objects\":{n}}}\n")),
        None => json(
            StatusCode::CONFLICT,
            "{\"error\":\"the full-page cache is off\"}\n".into(),
        ),
    }
}

/// Who asks, and what decides whether they may.
struct Gate<'a> {
    access: &'a AdminAccess,
    throttle: &'a FailureThrottle,
    peer: std::net::IpAddr,
}

impl Gate<'_> {
    /// `None` when the request may go on, else the 401 or 429 to send.
    ///
    /// Every admin endpoint answers a peer outside the ACL whose token is
    /// missing or wrong with **401** and `WWW-Authenticate: Bearer` (RFC
    /// 9110 §15.5.2: the request lacks valid credentials; RFC 6750 §3 for
    /// the bearer scheme), never 403: 403 would say "you are known and not
    /// allowed", and the only credential here is the token, so a script can
    /// tell "wrong token" (401) from "no such endpoint" (404) and from
    /// "too many failures" (429). Issue 18 requires 401 for the rollout
    /// commands; the other endpoints answer the same since then.
    fn refuse(&self, req: &Request<Incoming>) -> Option<Response<EdgeBody>> {
        match self.access.check(self.peer, req, self.throttle) {
            Access::Allowed => None,
            Access::Denied => {
                let mut r = json(
                    StatusCode::UNAUTHORIZED,
                    "{\"error\":\"a valid admin token is required (Authorization: Bearer $MAGESTACK_ADMIN_TOKEN)\"}\n".into(),
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"magestack-admin\""),
                );
                Some(r)
            }
            Access::Throttled(wait) => {
                tracing::warn!(client = %self.peer, retry_after_secs = wait.as_secs() + 1, "Admin API: too many failed authentications; answering 429.");
                let mut r = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    "{\"error\":\"too many failed authentications from this address\"}\n".into(),
                );
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(wait.as_secs() + 1),
                );
                Some(r)
            }
        }
    }
}

/// `GET /rollout` and `POST /admin/rollout/…`.
fn is_rollout_path(path: &str) -> bool {
    path == "/rollout" || path.starts_with("/admin/rollout/")
}

/// The rollout API: behind the ACL or token like the rest of `/admin/`
/// (a missing or wrong token is a 401, see [`Gate::refuse`]).
async fn rollout_api(req: Request<Incoming>, edge: &Edge, gate: &Gate<'_>) -> Response<EdgeBody> {
    if let Some(refused) = gate.refuse(&req) {
        return refused;
    }
    let Some(rollout) = edge.rollout.clone() else {
        return json(
            StatusCode::NOT_FOUND,
            "{\"error\":\"this edge has no [rollout]\"}\n".into(),
        );
    };
    let path = req.uri().path().to_owned();
    if path == "/rollout" {
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                "{\"error\":\"use GET\"}\n".into(),
            );
        }
        let pools = edge.pool_stats();
        return json(
            StatusCode::OK,
            format!("{}\n", rollout.status_json(pools.get(rollout.pool_index()))),
        );
    }
    if req.method() != http::Method::POST {
        let mut r = json(
            StatusCode::METHOD_NOT_ALLOWED,
            "{\"error\":\"use POST\"}\n".into(),
        );
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return r;
    }
    use magestack_rollout::Action;
    let action = match path.trim_start_matches("/admin/rollout/") {
        "start" => Action::Start,
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "promote" => Action::Promote,
        "abort" => Action::Abort,
        _ => return json(StatusCode::NOT_FOUND, "{\"error\":\"not found\"}\n".into()),
    };
    let start = if action == Action::Start {
        let limited = http_body_util::Limited::new(req.into_body(), crate::rollout::MAX_START_BODY);
        let bytes =
            match http_body_util::BodyExt::collect(limited).await {
                Ok(b) => b.to_bytes(),
                Err(_) => return json(
                    StatusCode::BAD_REQUEST,
                    "{\"error\":\"the start request's body could not be read (at most 64 KiB)\"}\n"
                        .into(),
                ),
            };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<crate::rollout::StartRequest>(&bytes) {
                Ok(s) => Some(s),
                Err(e) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "{{\"error\":{}}}\n",
                            serde_json::Value::from(format!(
                                "the body is JSON with optional \"steps\" and \"canary_endpoints\": {e}"
                            ))
                        ),
                    )
                }
            }
        }
    } else {
        None
    };
    if action == Action::Start {
        if let Err(refusal) = rollout.prepare_start(start.as_ref()).await {
            return json(
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
                format!(
                    "{{\"error\":{}}}\n",
                    serde_json::Value::from(refusal.reason)
                ),
            );
        }
    }
    match rollout.command(action, start) {
        Ok(_) => {
            let pools = edge.pool_stats();
            json(
                StatusCode::OK,
                format!("{}\n", rollout.status_json(pools.get(rollout.pool_index()))),
            )
        }
        Err(refusal) => {
            rollout.discard_prepared();
            json(
                StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
                format!(
                    "{{\"error\":{}}}\n",
                    serde_json::Value::from(refusal.reason)
                ),
            )
        }
    }
}

/// `limit` of `GET /cache/purged?limit=N`: 100 by default, at most the
/// list's capacity.
fn purged_limit(query: Option<&str>) -> usize {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("limit="))
        .find_map(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .min(crate::cache::PURGED_URLS_CAPACITY)
}

fn route(
    req: &Request<Incoming>,
    ready: &Readiness,
    edge: &Edge,
    gate: &Gate<'_>,
    reload: Option<&ReloadHook>,
) -> Response<EdgeBody> {
    let path = req.uri().path();
    let protected = path.starts_with("/admin/")
        || matches!(
            path,
            "/cache/stats" | "/cache/purged" | "/metrics" | "/pools"
        );
    if protected {
        if let Some(refused) = gate.refuse(req) {
            return refused;
        }
    }
    if path.starts_with("/admin/") {
        if req.method() != http::Method::POST {
            let mut r = json(
                StatusCode::METHOD_NOT_ALLOWED,
                "{\"error\":\"use POST\"}\n".into(),
            );
            r.headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return r;
        }
        return match path {
            "/admin/reload" => match reload {
                Some(hook) => match hook() {
                    Ok(summary) => json(
                        StatusCode::OK,
                        format!(
                            "{{\"reloaded\":true,\"summary\":{}}}\n",
                            serde_json::Value::from(summary)
                        ),
                    ),
                    Err(errors) => json(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "{{\"reloaded\":false,\"errors\":{}}}\n",
                            serde_json::Value::from(errors)
                        ),
                    ),
                },
                None => json(
                    StatusCode::NOT_IMPLEMENTED,
                    "{\"error\":\"this edge has no configuration file to reload\"}\n".into(),
                ),
            },
            "/admin/purge" => admin_purge(req, edge),
            _ => json(StatusCode::NOT_FOUND, "{\"error\":\"not found\"}\n".into()),
        };
    }
    let (status, text) = match path {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if ready.get() && edge.pools_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" if ready.get() => (StatusCode::SERVICE_UNAVAILABLE, "not ready: PHP-FPM\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/cache/stats" => {
            let body = match edge.cache_stats() {
                Some(st) => {
                    let lookups = st.hits + st.misses;
                    let ratio = if lookups == 0 {
                        0.0
                    } else {
                        st.hits as f64 / lookups as f64
                    };
                    format!(
                        "{{\"enabled\":true,\"objects\":{},\"bytes\":{},\"max_bytes\":{},\"hits\":{},\"misses\":{},\"passes\":{},\"hit_ratio\":{:.4},\"purges\":{},\"purged_objects\":{},\"purges_refused\":{},\"evictions\":{},\"backend_healthy\":{}}}\n",
                        st.objects, st.bytes, st.max_bytes, st.hits, st.misses, st.passes, ratio, st.purges, st.purged_objects, st.purges_refused, st.evictions, st.healthy
                    )
                }
                None => "{\"enabled\":false}\n".to_string(),
            };
            let mut r = Response::new(body::full(body));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return r;
        }
        "/cache/purged" => {
            let limit = purged_limit(req.uri().query());
            let list = edge.purged_urls(limit).unwrap_or_default();
            let items: Vec<serde_json::Value> = list
                .into_iter()
                .map(|e| {
                    serde_json::json!({
                        "url": e.url,
                        "host": e.host,
                        "https": e.https,
                        "hits": e.hits,
                        "purged_at": e.purged_at_ms / 1000,
                        "purged_at_ms": e.purged_at_ms,
                    })
                })
                .collect();
            let mut body = serde_json::Value::from(items).to_string();
            body.push('\n');
            return json(StatusCode::OK, body);
        }
        "/metrics" => {
            let mut r = Response::new(body::full(edge.render_metrics()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return r;
        }
        "/pools" => {
            let mut body = serde_json::to_string(&edge.pool_stats()).unwrap_or_default();
            body.push('\n');
            let mut r = Response::new(body::full(body));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return r;
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
