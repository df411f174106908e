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

impl AdminAccess {
    fn allows(&self, peer: std::net::IpAddr, req: &Request<Incoming>) -> bool {
        if crate::client_ip::is_trusted(peer, &self.acl) {
            return true;
        }
        let Some(token) = &self.token else {
            return false;
        };
        let presented = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Constant-time compare: the token must not leak through timing.
        presented.is_some_and(|p| {
            p.len() == token.len()
                && p.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
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
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let ready = ready.clone();
        let live = live.clone();
        let access = access.clone();
        let reload = reload.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let ready = ready.clone();
                let edge = live.current();
                let access = access.clone();
                let reload = reload.clone();
                async move {
                    Ok::<_, Infallible>(route(
                        &req,
                        &ready,
                        &edge,
                        &access,
                        peer.ip(),
                        reload.as_ref(),
                    ))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
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

fn route(
    req: &Request<Incoming>,
    ready: &Readiness,
    edge: &Edge,
    access: &AdminAccess,
    peer: std::net::IpAddr,
    reload: Option<&ReloadHook>,
) -> Response<EdgeBody> {
    let path = req.uri().path();
    if path.starts_with("/admin/") {
        if !access.allows(peer, req) {
            return json(StatusCode::FORBIDDEN, "{\"error\":\"forbidden\"}\n".into());
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
        "/cache/stats" if !access.allows(peer, req) => (StatusCode::FORBIDDEN, "forbidden\n"),
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
        "/metrics" if !access.allows(peer, req) => (StatusCode::FORBIDDEN, "forbidden\n"),
        "/metrics" => {
            let mut r = Response::new(body::full(edge.render_metrics()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return r;
        }
        "/pools" if !access.allows(peer, req) => (StatusCode::FORBIDDEN, "forbidden\n"),
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
