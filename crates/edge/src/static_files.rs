//! Static files from Magento's `pub/` (`/static/`, `/media/`, `robots.txt`, …).
//!
//! nginx semantics: `ETag` as `"<mtime hex>-<size hex>"`, `Last-Modified`,
//! conditional GET (304), single byte ranges (206/416), `HEAD`, `405` for other
//! methods, and the location's `add_header`/`expires` set applied only to the
//! statuses nginx applies them to. What a file is comes from the
//! [`OpenFileCache`]: a known small file is answered from memory with headers
//! encoded once, and its gzip variant is made once (or taken from a `.gz`
//! sibling) instead of per request. Files larger than
//! [`crate::open_file_cache::INLINE_MAX`] are streamed in 64 KiB reads, so
//! memory does not grow with file size.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::body::{self, EdgeBody};
use crate::compress::{self, ClientEncoding, GzipDecision};
use crate::open_file_cache::{Lookup, OpenFileCache};
use magestack_media::conditional::{self, RangeResult};

pub use crate::open_file_cache::INLINE_MAX;
const CHUNK: usize = 64 * 1024;

pub use magestack_routing::{mime_type as content_type, StaticHeaders};

/// What nginx's gzip filter would do for this request: `magento.gzip`,
/// `gzip_min_length` and the client's `Accept-Encoding`/`User-Agent`.
#[derive(Debug, Clone, Copy)]
pub struct GzipPolicy {
    /// `magento.gzip`.
    pub enabled: bool,
    /// `magento.gzip_min_length`.
    pub min_length: u64,
    /// What the client accepts.
    pub client: ClientEncoding,
}

impl GzipPolicy {
    /// No gzip variant (tests, HEAD).
    pub const OFF: Self = Self {
        enabled: false,
        min_length: 0,
        client: ClientEncoding {
            gzip: false,
            msie6: false,
        },
    };
}

/// One static-file request.
#[derive(Debug, Clone, Copy)]
pub struct StaticRequest<'a> {
    /// GET or HEAD (anything else is 405).
    pub method: &'a Method,
    /// For conditionals and ranges.
    pub headers: &'a HeaderMap,
    /// The file the route resolved to.
    pub file: &'a Path,
    /// The location's cache headers.
    pub cache: StaticHeaders,
    /// The location's `X-Frame-Options`.
    pub x_frame_options: bool,
    /// For `Expires`.
    pub now: SystemTime,
    /// Whether a gzip variant may be sent.
    pub gzip: GzipPolicy,
}

/// Serves a static file, honouring conditional and range headers.
pub async fn serve(files: &Arc<OpenFileCache>, req: StaticRequest<'_>) -> Response<EdgeBody> {
    let method = req.method;
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let info = match files.lookup(req.file).await {
        Lookup::File(f) => f,
        Lookup::Forbidden => return plain(StatusCode::FORBIDDEN, "forbidden\n"),
        Lookup::NotFound => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let size = info.size;
    let mtime_secs = info.mtime_secs;
    let etag = info.etag.to_str().unwrap_or("");

    let mut headers = HeaderMap::with_capacity(12);
    headers.insert(header::CONTENT_TYPE, info.content_type.clone());
    headers.insert(header::LAST_MODIFIED, info.last_modified.clone());
    headers.insert(header::ETAG, info.etag.clone());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    apply_location_headers(&mut headers, req.cache, req.x_frame_options, req.now);

    if not_modified(req.headers, etag, mtime_secs) {
        headers.remove(header::CONTENT_TYPE);
        headers.remove(header::ACCEPT_RANGES);
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        *r.headers_mut() = headers;
        return r;
    }

    let (status, start, len) = match range(req.headers, etag, mtime_secs, size) {
        RangeResult::Full => (StatusCode::OK, 0, size),
        RangeResult::Partial(start, end) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeResult::Unsatisfiable => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE, "");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));

    // The whole file to a client that takes gzip: the variant made once.
    if status == StatusCode::OK && method == Method::GET && info.body.is_some() {
        let g = req.gzip;
        if compress::decide(g.enabled, g.min_length, status, g.client, &headers)
            == GzipDecision::Compress
        {
            if let Some(gz) = files.gzip(req.file, &info).await {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(gz.len()));
                headers.insert(header::ETAG, info.weak_etag.clone());
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                compress::add_vary(&mut headers);
                let mut r = Response::new(body::full(gz));
                *r.headers_mut() = headers;
                return r;
            }
        }
    }

    let body = if method == Method::HEAD || len == 0 {
        body::empty()
    } else if let Some(bytes) = &info.body {
        let (start, end) = (start as usize, (start + len) as usize);
        match bytes.get(start..end) {
            Some(_) => body::full(bytes.slice(start..end)),
            None => return plain(StatusCode::INTERNAL_SERVER_ERROR, "read error\n"),
        }
    } else {
        match read_from_disk(req.file, start, len).await {
            Ok(b) => b,
            Err(StatusCode::NOT_FOUND) => return plain(StatusCode::NOT_FOUND, "not found\n"),
            Err(StatusCode::FORBIDDEN) => return plain(StatusCode::FORBIDDEN, "forbidden\n"),
            Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "read error\n"),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// `len` bytes from `start` of a file the cache does not hold: small reads in
/// one go, larger ones streamed.
async fn read_from_disk(file: &Path, start: u64, len: u64) -> Result<EdgeBody, StatusCode> {
    let mut f = match tokio::fs::File::open(file).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(StatusCode::FORBIDDEN)
        }
        Err(_) => return Err(StatusCode::NOT_FOUND),
    };
    if start > 0 && f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    if len <= INLINE_MAX {
        let mut buf = Vec::with_capacity(len as usize);
        if (&mut f).take(len).read_to_end(&mut buf).await.is_err() {
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
        Ok(body::full(buf))
    } else {
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), CHUNK)
            .map_ok(http_body::Frame::data)
            .map_err(|e| -> crate::body::BoxError { e.into() });
        Ok(http_body_util::StreamBody::new(stream).boxed_unsync())
    }
}

/// `add_header`/`expires` of the matched location. nginx emits them only for
/// 200, 201, 204, 206, 301, 302, 303, 304, 307 and 308; every caller here answers
/// one of those.
pub fn apply_location_headers(
    headers: &mut HeaderMap,
    cache: StaticHeaders,
    x_frame_options: bool,
    now: SystemTime,
) {
    // `expires` comes first, then `add_header`, as nginx writes them.
    if let Some(secs) = cache.expires_secs() {
        if let Ok(v) =
            HeaderValue::from_str(&httpdate::fmt_http_date(now + Duration::from_secs(secs)))
        {
            headers.insert(header::EXPIRES, v);
        }
    }
    for line in cache.cache_control() {
        headers.append(header::CACHE_CONTROL, HeaderValue::from_static(line));
    }
    if x_frame_options {
        headers.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
}

fn header(req: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    req.get(name).and_then(|v| v.to_str().ok())
}

/// nginx's conditional GET (the rules shared with object-store sources).
fn not_modified(req: &HeaderMap, etag: &str, mtime_secs: u64) -> bool {
    conditional::not_modified(
        header(req, header::IF_NONE_MATCH),
        header(req, header::IF_MODIFIED_SINCE),
        etag,
        mtime_secs,
    )
}

/// One `bytes=` range, as nginx serves it; several ranges get the whole file.
fn range(req: &HeaderMap, etag: &str, mtime_secs: u64, size: u64) -> RangeResult {
    conditional::range(
        header(req, header::RANGE),
        header(req, header::IF_RANGE),
        etag,
        mtime_secs,
        size,
    )
}

/// A small plain-text response.
pub fn plain(status: StatusCode, text: &'static str) -> Response<EdgeBody> {
    let mut r = Response::new(body::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `serve` with a fresh cache, as the edge calls it.
    async fn serve_path(
        method: &Method,
        headers: &HeaderMap,
        file: &Path,
        cache: StaticHeaders,
        x_frame_options: bool,
        now: SystemTime,
    ) -> Response<EdgeBody> {
        let files = Arc::new(OpenFileCache::new(Default::default()));
        serve(
            &files,
            StaticRequest {
                method,
                headers,
                file,
                cache,
                x_frame_options,
                now,
                gzip: GzipPolicy::OFF,
            },
        )
        .await
    }

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn ranges() {
        let e = "\"1-a\"";
        assert_eq!(range(&req(&[]), e, 1, 10), RangeResult::Full);
        assert_eq!(
            range(&req(&[("range", "bytes=0-3")]), e, 1, 10),
            RangeResult::Partial(0, 3)
        );
        assert_eq!(
            range(&req(&[("range", "bytes=5-")]), e, 1, 10),
            RangeResult::Partial(5, 9)
        );
        assert_eq!(
            range(&req(&[("range", "bytes=-4")]), e, 1, 10),
            RangeResult::Partial(6, 9)
        );
        assert_eq!(
            range(&req(&[("range", "bytes=2-100")]), e, 1, 10),
            RangeResult::Partial(2, 9)
        );
        assert_eq!(
            range(&req(&[("range", "bytes=10-")]), e, 1, 10),
            RangeResult::Unsatisfiable
        );
        assert_eq!(
            range(&req(&[("range", "bytes=-0")]), e, 1, 10),
            RangeResult::Unsatisfiable
        );
        assert_eq!(
            range(&req(&[("range", "bytes=0-1,4-5")]), e, 1, 10),
            RangeResult::Full
        );
        assert_eq!(
            range(&req(&[("range", "items=0-1")]), e, 1, 10),
            RangeResult::Full
        );
        assert_eq!(
            range(&req(&[("range", "bytes=x-1")]), e, 1, 10),
            RangeResult::Full
        );
        assert_eq!(
            range(
                &req(&[("range", "bytes=0-1"), ("if-range", "\"other\"")]),
                e,
                1,
                10
            ),
            RangeResult::Full
        );
    }

    #[test]
    fn conditionals() {
        assert!(not_modified(
            &req(&[("if-none-match", "\"5-a\"")]),
            "\"5-a\"",
            5
        ));
        assert!(not_modified(
            &req(&[("if-none-match", "W/\"5-a\", \"x\"")]),
            "\"5-a\"",
            5
        ));
        assert!(!not_modified(
            &req(&[("if-none-match", "\"6-a\"")]),
            "\"5-a\"",
            5
        ));
        let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(100));
        assert!(not_modified(
            &req(&[("if-modified-since", &date)]),
            "\"x\"",
            100
        ));
        assert!(!not_modified(
            &req(&[("if-modified-since", &date)]),
            "\"x\"",
            101
        ));
    }

    #[tokio::test]
    async fn serves_file_with_g3_headers_and_304() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("styles.css");
        std::fs::write(&p, "body{}").unwrap();
        let now = SystemTime::now();
        let r = serve_path(
            &Method::GET,
            &HeaderMap::new(),
            &p,
            StaticHeaders::Immutable,
            true,
            now,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers()["x-frame-options"], "SAMEORIGIN");
        assert_eq!(r.headers()["content-type"], "text/css");
        assert!(r.headers().get("expires").is_none());
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let r = serve_path(
            &Method::GET,
            &req(&[("if-none-match", &etag)]),
            &p,
            StaticHeaders::Immutable,
            true,
            now,
        )
        .await;
        assert_eq!(r.status(), 304);
        let r = serve_path(
            &Method::POST,
            &HeaderMap::new(),
            &p,
            StaticHeaders::Immutable,
            true,
            now,
        )
        .await;
        assert_eq!(r.status(), 405);
    }

    #[tokio::test]
    async fn g2_sends_expires_and_two_cache_control_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.js");
        std::fs::write(&p, "x").unwrap();
        let r = serve_path(
            &Method::GET,
            &HeaderMap::new(),
            &p,
            StaticHeaders::PublicExpires,
            true,
            SystemTime::now(),
        )
        .await;
        assert!(r.headers().get("expires").is_some());
        let cc: Vec<_> = r.headers().get_all("cache-control").iter().collect();
        assert_eq!(cc.len(), 2);
    }
}
