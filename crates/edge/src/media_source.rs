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
use magestack_media_store::{Body, MediaFiles, ObjectError, Opened, Spec};
use magestack_routing::{FileKind, Fs, NormalizedPath, RealFs, Route, Router, StaticHeaders};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::answer::error_page;
use crate::body::{self, EdgeBody};
use crate::static_files;

use magestack_media_store::VariantError;
pub use magestack_media_store::{RemoteSpec, ResizeSpec, Spec as MediaSpec};

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
        let under_media = file.starts_with(&dirs.0);
        if under_media {
            if let Some(spec) = self.files.resize_spec() {
                match magestack_media::params::parse(query.unwrap_or(""), &spec.limits) {
                    Ok(None) => {}
                    Ok(Some(params)) => {
                        return self
                            .resized(
                                router,
                                &dirs,
                                method,
                                req_headers,
                                path,
                                query,
                                file,
                                *headers,
                                *x_frame_options,
                                &params,
                            )
                            .await;
                    }
                    Err(refusal) => {
                        tracing::debug!(error = %refusal, "Resize parameters refused.");
                        return Handled::Response(refused(&refusal));
                    }
                }
            }
        }
        let which = if under_media && self.files.is_remote(Which::Media) {
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
                Handled::Response(self.unavailable())
            }
            Err(_) => Handled::Response(error_page(StatusCode::NOT_FOUND, None)),
        }
    }
}

impl MediaSource {
    /// A resize URL: the original from the store (or the docroot), the
    /// variant from the disk cache or made once.
    #[allow(clippy::too_many_arguments)]
    async fn resized(
        &self,
        router: &Router,
        dirs: &(PathBuf, PathBuf),
        method: &Method,
        req_headers: &HeaderMap,
        path: &NormalizedPath,
        query: Option<&str>,
        file: &Path,
        cache: StaticHeaders,
        x_frame_options: bool,
        params: &magestack_media::ResizeParams,
    ) -> Handled {
        let webp = self.files.resize_spec().is_some_and(|r| r.webp);
        let accept = req_headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let out = (webp && accept.is_some_and(magestack_media::format::accepts_webp))
            .then_some(magestack_media::ImageFormat::Webp);
        let (id, original) = if self.files.is_remote(Which::Media) {
            let Some(path_str) = path.to_str() else {
                return Handled::Response(error_page(StatusCode::NOT_FOUND, None));
            };
            let Ok(key) = self.files.key(Which::Media, path_str) else {
                return Handled::Response(error_page(StatusCode::NOT_FOUND, None));
            };
            match self.files.open(Which::Media, &key).await {
                Ok(o) => (key, o),
                Err(ObjectError::NotFound) => {
                    return Handled::Route(router.route(&self.fs(dirs, false), method, path, query))
                }
                Err(ObjectError::Unavailable(e)) => {
                    tracing::warn!(key, error = %e, "Object store unavailable; 503.");
                    return Handled::Response(self.unavailable());
                }
                Err(_) => return Handled::Response(error_page(StatusCode::NOT_FOUND, None)),
            }
        } else {
            // A docroot original: its validators from one stat, and the file opened only
            // when the variant is not cached yet.
            let Some(meta) = local_meta(file) else {
                return Handled::Response(error_page(StatusCode::NOT_FOUND, None));
            };
            let id = file.to_string_lossy().into_owned();
            if let Some(hit) = self
                .files
                .cached_variant(&id, &meta.etag, params, out)
                .await
            {
                return Handled::Response(
                    self.variant_response(
                        method,
                        req_headers,
                        hit,
                        file,
                        cache,
                        x_frame_options,
                        webp,
                    )
                    .await,
                );
            }
            match tokio::fs::File::open(file).await {
                Ok(f) => (id, Opened::local(meta, f)),
                Err(_) => return Handled::Response(error_page(StatusCode::NOT_FOUND, None)),
            }
        };
        match self.files.variant(&id, original, params, out).await {
            Ok(opened) => Handled::Response(
                self.variant_response(
                    method,
                    req_headers,
                    opened,
                    file,
                    cache,
                    x_frame_options,
                    webp,
                )
                .await,
            ),
            Err(VariantError::Refused(refusal)) => Handled::Response(refused(&refusal)),
            Err(VariantError::Busy) => Handled::Response(self.unavailable()),
            Err(VariantError::Failed(e)) => {
                tracing::warn!(id, error = %e, "Resize failed.");
                Handled::Response(error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, None))
            }
            Err(_) => Handled::Response(error_page(StatusCode::NOT_FOUND, None)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn variant_response(
        &self,
        method: &Method,
        req_headers: &HeaderMap,
        opened: Opened,
        file: &Path,
        cache: StaticHeaders,
        x_frame_options: bool,
        webp: bool,
    ) -> Response<EdgeBody> {
        let mut r = respond(
            method,
            req_headers,
            opened,
            file,
            cache,
            x_frame_options,
            SystemTime::now(),
        )
        .await;
        if webp {
            r.headers_mut()
                .append(header::VARY, HeaderValue::from_static("Accept"));
        }
        r
    }

    fn unavailable(&self) -> Response<EdgeBody> {
        let secs = self.files.retry_after().as_secs().max(1);
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(u32::try_from(secs).unwrap_or(u32::MAX)),
        )
    }
}

impl MediaSource {
    /// Adds the media metrics to a text exposition (before `# EOF`).
    pub fn append_metrics(&self, text: &mut String) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.files;
        let st = &f.stats;
        let mut m = String::with_capacity(2048);
        family(
            &mut m,
            "magestack_media_requests",
            "counter",
            "Object-store files asked for, by result (hit: disk cache; miss: fetched; not_found: fallback to PHP; error: store down; refused: path refused before the store)",
            &[
                ("{result=\"hit\"}", st.hits.load(Relaxed)),
                ("{result=\"miss\"}", st.misses.load(Relaxed)),
                ("{result=\"not_found\"}", st.not_found.load(Relaxed)),
                ("{result=\"error\"}", st.errors.load(Relaxed)),
                ("{result=\"refused\"}", st.refused.load(Relaxed)),
            ],
        );
        family(
            &mut m,
            "magestack_media_fetched_bytes",
            "counter",
            "Bytes fetched from the object store",
            &[("", st.bytes_fetched.load(Relaxed))],
        );
        let c = f.cache();
        family(
            &mut m,
            "magestack_media_cache_bytes",
            "gauge",
            "Bytes in the media disk cache",
            &[("", c.bytes())],
        );
        family(
            &mut m,
            "magestack_media_cache_capacity_bytes",
            "gauge",
            "Ceiling of the media disk cache (media.cache_size)",
            &[("", c.capacity())],
        );
        family(
            &mut m,
            "magestack_media_cache_files",
            "gauge",
            "Files (objects and variants) in the media disk cache",
            &[("", c.len() as u64)],
        );
        family(
            &mut m,
            "magestack_media_cache_evictions",
            "counter",
            "Files evicted from the media disk cache",
            &[("", c.evictions())],
        );
        if let Some(pool) = f.resize_pool() {
            let r = &pool.stats;
            family(
                &mut m,
                "magestack_media_resizes",
                "counter",
                "Images resized, by output format",
                &[
                    ("{format=\"jpeg\"}", r.done[0].load(Relaxed)),
                    ("{format=\"png\"}", r.done[1].load(Relaxed)),
                    ("{format=\"gif\"}", r.done[2].load(Relaxed)),
                    ("{format=\"webp\"}", r.done[3].load(Relaxed)),
                ],
            );
            let micros = r.busy_micros.load(Relaxed);
            let _ = writeln!(
                m,
                "# HELP magestack_media_resize_seconds Time spent resizing"
            );
            let _ = writeln!(m, "# TYPE magestack_media_resize_seconds counter");
            let _ = writeln!(
                m,
                "magestack_media_resize_seconds_total {}.{:06}",
                micros / 1_000_000,
                micros % 1_000_000
            );
            family(
                &mut m,
                "magestack_media_resize_rejected",
                "counter",
                "Resizes refused with 503 because the resize pool and its queue were full",
                &[("", r.rejected.load(Relaxed))],
            );
            family(
                &mut m,
                "magestack_media_resize_failed",
                "counter",
                "Resizes refused (413, 415) or failed",
                &[("", r.failed.load(Relaxed))],
            );
        }
        match text.rfind("# EOF") {
            Some(at) => text.insert_str(at, &m),
            None => text.push_str(&m),
        }
    }
}

/// One metric family in the text exposition.
fn family(m: &mut String, name: &str, kind: &str, help: &str, rows: &[(&str, u64)]) {
    use std::fmt::Write;
    let _ = writeln!(m, "# HELP {name} {help}");
    let _ = writeln!(m, "# TYPE {name} {kind}");
    let suffix = if kind == "counter" { "_total" } else { "" };
    for (labels, v) in rows {
        let _ = writeln!(m, "{name}{suffix}{labels} {v}");
    }
}

/// A refused resize: 400, 413 or 415.
fn refused(r: &magestack_media::Refusal) -> Response<EdgeBody> {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_page(status, None)
}

/// A docroot file's validators, as nginx makes them (one `stat`, like the
/// router's own checks).
fn local_meta(file: &Path) -> Option<magestack_media_store::Meta> {
    let m = std::fs::metadata(file).ok()?;
    if !m.is_file() {
        return None;
    }
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Some(magestack_media_store::Meta {
        etag: format!("\"{mtime:x}-{:x}\"", m.len()),
        last_modified: mtime,
        size: m.len(),
        content_type: String::new(),
    })
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
    let Opened { meta, body, .. } = opened;
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
    let body = match body {
        _ if method == Method::HEAD || len == 0 => body::empty(),
        Body::Memory(bytes) => {
            let (from, to) = (
                usize::try_from(start).unwrap_or(usize::MAX),
                usize::try_from(start + len).unwrap_or(usize::MAX),
            );
            match bytes.get(from..to) {
                Some(_) => body::full(bytes.slice(from..to)),
                None => {
                    return static_files::plain(StatusCode::INTERNAL_SERVER_ERROR, "read error\n")
                }
            }
        }
        Body::File(mut file) => {
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
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}
