//! What the edge answers with, shared by every layer: the outcome label of a
//! response, the pool that produced it, the edge's own short answers, and
//! the cache figures. A leaf module: it imports nothing of the edge, so the
//! cache, the WAF and the pipeline can all use it without going through
//! each other.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, EdgeBody};

/// What the pipeline did with a request; the access log and metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served a file from pub/.
    Static,
    /// Answered by PHP-FPM.
    Php,
    /// Answered by an HTTP upstream.
    Proxy,
    /// Refused by a Magento deny rule (404 without PHP).
    Denied,
    /// Answered by the edge itself (redirect, 4xx).
    Edge,
    /// The upstream failed (502/504).
    UpstreamError,
    /// Served from the full-page cache.
    Cache,
}

impl Outcome {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Static => "static",
            Outcome::Php => "php",
            Outcome::Proxy => "proxy",
            Outcome::Denied => "denied",
            Outcome::Edge => "edge",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Cache => "cache",
        }
    }
}

/// Which pool served a response (`1 + index`), for the metrics.
#[derive(Clone, Copy, Debug)]
pub struct PoolSlot(pub usize);

/// Full-page cache figures, for the admin API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Objects stored (hit-for-miss markers included).
    pub objects: u64,
    /// Bytes accounted against the ceiling.
    pub bytes: u64,
    /// The ceiling (`cache.size`).
    pub max_bytes: u64,
    /// Requests served from the cache.
    pub hits: u64,
    /// Lookups that went to the backend.
    pub misses: u64,
    /// Requests that bypassed the cache.
    pub passes: u64,
    /// Accepted PURGE requests.
    pub purges: u64,
    /// Objects removed (or marked stale) by purges.
    pub purged_objects: u64,
    /// Refused PURGE requests.
    pub purges_refused: u64,
    /// Accepted PURGE requests with a pattern that is not a valid regex.
    pub purge_invalid_patterns: u64,
    /// Objects evicted for space.
    pub evictions: u64,
    /// Backend health per the probe.
    pub healthy: bool,
}

/// A short error answer produced by the edge itself.
pub fn error_page(status: StatusCode, retry_after: Option<u32>) -> Response<EdgeBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let mut r = text_page(status, text);
    if let Some(secs) = retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// A plain-text answer the edge writes itself, never cached.
pub(crate) fn text_page(status: StatusCode, text: String) -> Response<EdgeBody> {
    let len = text.len();
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
