//! `/media/` and `/static/` from an object store (issue 19), at one point of
//! [`crate::handler`]'s dispatch.
//!
//! The nginx rules stay the router's: it is asked with a filesystem view in
//! which every path under `pub/media` (or `pub/static`) of a remote source
//! exists ([`RemoteFs`]), so denies, the PHP whitelist and the cache headers
//! of each location apply unchanged. When it answers "serve this file", the
//! file is the store's object: from the disk cache, else fetched once
//! ([`magestack_media_store::MediaFiles`]). An object the store does not
//! have is routed again with those paths missing, so the sample's fallbacks
//! apply (`get.php` for media, `static.php` for static). A store that is down
//! gives 503 with `Retry-After` for what is not cached.
//!
//! Responses carry the store's `ETag` and `Last-Modified`, and answer
//! conditional requests and single ranges as local files do
//! ([`magestack_media::conditional`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use magestack_media::conditional::{self, RangeResult};
use magestack_media_store::files::{BuildError, Which};
use magestack_media_store::{MediaFiles, ObjectError, Opened, Spec};
use magestack_routing::{FileKind, Fs, NormalizedPath, RealFs, Route, Router, StaticHeaders};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::answer::error_page;
use crate::body::{self, EdgeBody};
use crate::static_files;

pub use magestack_media_store::{RemoteSpec, Spec as MediaSpec};

/// Bodies up to this size are read at once; larger ones are streamed.
const INLINE_MAX: u64 = 256 * 1024;
const CHUNK: usize = 64 * 1024;

/// The remote sources of an edge, kept across config reloads while their
/// spec is unchanged (one disk-cache index per directory).
#[derive(Debug)]
pub struct MediaSource {
    files: MediaFiles,
}

/// What [`MediaSource::handle`] decided.
pub(crate) enum Handled {
    /// Answered from the store (or refused).
    Response(Response<EdgeBody>),
    /// Not ours, or a fallback: dispatch this route as usual.
    Route(Route),
}

/// Which paths under the docroot a remote source stands for, and whether
/// they exist.
struct RemoteFs<'a> {
    media: Option<&'a Path>,
    statics: Option<&'a Path>,
    present: bool,
}

impl Fs for RemoteFs<'_> {
    fn kind(&self, path: &Path) -> FileKind {
        let remote = [self.media, self.statics]
            .into_iter()
            .flatten()
            .any(|dir| path.starts_with(dir) && path != dir);
        match (remote, self.present) {
            (true, true) => FileKind::File,
            (true, false) => FileKind::Missing,
            (false, _) => RealFs.kind(path),
        }
    }
}

impl MediaSource {
    /// Opens the disk cache and builds the store clients.
    ///
    /// # Errors
    ///
    /// As [`MediaFiles::new`].
    pub fn new(spec: Spec) -> Result<Self, BuildError> {
        Ok(Self {
            files: MediaFiles::new(spec)?,
        })
    }

    /// What this was built from.
    pub fn spec(&self) -> &Spec {
        self.files.spec()
    }

    /// The files, for metrics.
    pub fn files(&self) -> &MediaFiles {
        &self.files
    }

    fn fs<'a>(&self, dirs: &'a (PathBuf, PathBuf), present: bool) -> RemoteFs<'a> {
        RemoteFs {
            media: self
                .files
                .is_remote(Which::Media)
                .then_some(dirs.0.as_path()),
            statics: self
                .files
                .is_remote(Which::Static)
                .then_some(dirs.1.as_path()),
            present,
        }
    }

    /// Routes the request; serves it from the store when the route is a
    /// file of a remote source.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        router: &Router,
        method: &Method,
        req_headers: &HeaderMap,
        path: &NormalizedPath,
        query: Option<&str>,
    ) -> Handled {
        let root = router.docroot();
        let dirs = (root.join("media"), root.join("static"));
        let route = router.route(&self.fs(&dirs, true), method, path, query);
        let Route::Static {
            file,
            headers,
            x_frame_options,
        } = &route
        else {
            return Handled::Route(route);
        };
        let which = if file.starts_with(&dirs.0) && self.files.is_remote(Which::Media) {
            Which::Media
        } else if file.starts_with(&dirs.1) && self.files.is_remote(Which::Static) {
            Which::Static
        } else {
            return Handled::Route(route);
        };
        let Some(path_str) = path.to_str() else {
            return Handled::Response(error_page(StatusCode::NOT_FOUND, None));
        };
        let key = match self.files.key(which, path_str) {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!(path = path_str, error = %e, "Media path refused before the store.");
                return Handled::Response(error_page(StatusCode::NOT_FOUND, None));
            }
        };
        match self.files.open(which, &key).await {
            Ok(opened) => Handled::Response(
                respond(
                    method,
                    req_headers,
                    opened,
                    file,
                    *headers,
                    *x_frame_options,
                    SystemTime::now(),
                )
                .await,
            ),
            Err(ObjectError::NotFound) => {
                Handled::Route(router.route(&self.fs(&dirs, false), method, path, query))
            }
            Err(ObjectError::Unavailable(e)) => {
                tracing::warn!(key, error = %e, "Object store unavailable; 503.");
                let secs = self.files.retry_after().as_secs().max(1);
                Handled::Response(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(u32::try_from(secs).unwrap_or(u32::MAX)),
                ))
            }
            Err(_) => Handled::Response(error_page(StatusCode::NOT_FOUND, None)),
        }
    }
}

/// The response for an open object, as `static_files::serve` answers for a
/// local file, with the store's validators.
async fn respond(
    method: &Method,
    req: &HeaderMap,
    opened: Opened,
    file_name: &Path,
    cache: StaticHeaders,
    x_frame_options: bool,
    now: SystemTime,
) -> Response<EdgeBody> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = static_files::plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Opened { meta, mut file, .. } = opened;
    let size = meta.size;
    let mtime = meta.last_modified;
    let mut headers = HeaderMap::new();
    let ctype = if meta.content_type.is_empty() {
        static_files::content_type(file_name)
    } else {
        meta.content_type.as_str()
    };
    if let Ok(v) = HeaderValue::from_str(ctype) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(
        UNIX_EPOCH + Duration::from_secs(mtime),
    )) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&meta.etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    static_files::apply_location_headers(&mut headers, cache, x_frame_options, now);
    let h = |name: header::HeaderName| req.get(name).and_then(|v| v.to_str().ok());

    if conditional::not_modified(
        h(header::IF_NONE_MATCH),
        h(header::IF_MODIFIED_SINCE),
        &meta.etag,
        mtime,
    ) {
        headers.remove(header::CONTENT_TYPE);
        headers.remove(header::ACCEPT_RANGES);
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        *r.headers_mut() = headers;
        return r;
    }
    let (status, start, len) = match conditional::range(
        h(header::RANGE),
        h(header::IF_RANGE),
        &meta.etag,
        mtime,
        size,
    ) {
        RangeResult::Full => (StatusCode::OK, 0, size),
        RangeResult::Partial(start, end) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeResult::Unsatisfiable => {
            let mut r = static_files::plain(StatusCode::RANGE_NOT_SATISFIABLE, "");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = if method == Method::HEAD || len == 0 {
        body::empty()
    } else {
        if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return static_files::plain(StatusCode::INTERNAL_SERVER_ERROR, "read error\n");
        }
        if len <= INLINE_MAX {
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            if (&mut file).take(len).read_to_end(&mut buf).await.is_err() {
                return static_files::plain(StatusCode::INTERNAL_SERVER_ERROR, "read error\n");
            }
            body::full(buf)
        } else {
            let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), CHUNK)
                .map_ok(http_body::Frame::data)
                .map_err(|e| -> crate::body::BoxError { e.into() });
            http_body_util::StreamBody::new(stream).boxed_unsync()
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}
