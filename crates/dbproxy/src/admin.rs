//! The admin listener: `/healthz` (the process answers), `/readyz` (a
//! writer is reachable and writable), `/metrics` (Prometheus text),
//! `/backends` (JSON: every server, its role, health, lag and pool) and
//! `/digests` (JSON: the top statement fingerprints). Read-only, no
//! secrets and no literal values (fingerprints replace them by `?`), so no
//! token; bind it to loopback or the pod network.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::Shared;

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) if crate::is_transient(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let r = route(&shared, req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

#[derive(Serialize)]
struct BackendJson<'a> {
    server: &'a str,
    configured_as: &'static str,
    writer: bool,
    up: bool,
    read_only: Option<bool>,
    replica_lag_seconds: Option<f64>,
    reads_eligible: bool,
    connections_open: usize,
    connections_opened: u64,
    max_connections: usize,
    statements: u64,
}

/// The metrics, per-server gauges refreshed first.
pub(crate) fn metrics_text(shared: &Shared) -> String {
    for s in shared.cluster.view() {
        shared.metrics.set_server(&s);
    }
    shared.metrics.encode()
}

fn route(shared: &Shared, path: &str) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    match path {
        "/healthz" => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => {
            if shared.cluster.writer_ready() {
                respond(StatusCode::OK, TEXT, "ready\n".into())
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!(
                        "no writable writer reachable ({})\n",
                        shared.cluster.writer().addr()
                    ),
                )
            }
        }
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics_text(shared),
        ),
        "/backends" => {
            let view = shared.cluster.view();
            let rows: Vec<BackendJson<'_>> = view
                .iter()
                .map(|s| BackendJson {
                    server: &s.addr,
                    configured_as: s.configured,
                    writer: s.writer,
                    up: s.up,
                    read_only: s.read_only,
                    replica_lag_seconds: s.lag_ms.map(|ms| ms as f64 / 1000.0),
                    reads_eligible: s.reads_eligible,
                    connections_open: s.open,
                    connections_opened: s.opened,
                    max_connections: s.max,
                    statements: s.statements,
                })
                .collect();
            respond(
                StatusCode::OK,
                JSON,
                serde_json::to_string_pretty(&rows).unwrap_or_default(),
            )
        }
        "/digests" => respond(
            StatusCode::OK,
            JSON,
            serde_json::to_string_pretty(&shared.digests.rows()).unwrap_or_default(),
        ),
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}
