//! The tokio driver: endpoints, the keep-alive pool, and request/response
//! streaming over [`codec`](crate::codec) and [`response`](crate::response).
//!
//! One request runs at a time on a connection (request id 1, as nginx does);
//! concurrency comes from the pool. A [`Client`] is cheap to clone and shares
//! one pool per endpoint.
//!
//! # Streaming and memory
//!
//! The request body is polled chunk by chunk and written as STDIN records;
//! it is never collected. The response body ([`ResponseBody`]) reads from the
//! socket only when polled, and hands out STDOUT contents as zero-copy slices
//! of a bounded read buffer, so memory per request stays around
//! [`READ_BUF_SIZE`] plus what the consumer holds, whatever the response size.
//!
//! While the request body is still being sent, the driver also reads the
//! response (PHP may answer before reading all of STDIN), so neither side can
//! deadlock on full socket buffers.
//!
//! # Connection reuse
//!
//! BEGIN_REQUEST carries `FCGI_KEEP_CONN` when `max_idle > 0`. A connection
//! goes back to the pool when END_REQUEST arrives with
//! `FCGI_REQUEST_COMPLETE`, application status 0, the whole request sent and
//! nothing buffered after it. A response body dropped before END_REQUEST
//! closes its connection. An idle connection is probed with a non-blocking
//! read before reuse (end-of-file or stray bytes discard it), and a request
//! that fails on a reused connection before any response byte arrived and
//! before any request-body byte was taken from the caller's body is retried
//! once on a fresh connection.
//!
//! # PHP-FPM workers and keep-alive
//!
//! PHP-FPM dedicates a worker to a kept-alive connection for as long as it is
//! open, idle or not, and new connections wait in the listen backlog until a
//! worker is free. With more concurrent requests than `pm.max_children`,
//! pooled connections could hold every worker while requests on fresh
//! connections wait in the backlog until their read timeout. So while any
//! request waits for the first byte on a fresh connection, finished
//! connections are closed instead of pooled, which frees their workers for
//! the backlog. The price: while a slow script runs on a fresh connection,
//! keep-alive is in effect off (a connect per request), never a stall. Keep `max_idle` below `pm.max_children` as well, and mind that
//! other clients of the same FPM pool (other edge processes) cannot see each
//! other's waiters: `idle_timeout` bounds how long an idle connection pins a
//! worker.
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};

use crate::codec::{
    self, DecodeError, EncodeError, Limits, Params, ProtocolStatus, Record, RecordBody,
    RecordHeader, RecordType, Role,
};
use crate::response::{HeadError, HeadParser, ResponseHead, DEFAULT_MAX_HEADER_BYTES};

/// A boxed error from a request body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Request id used on every connection (one request at a time, like nginx).
const REQUEST_ID: u16 = 1;
/// Read buffer growth step; also the most a single socket read can add.
pub const READ_BUF_SIZE: usize = 64 * 1024;
/// Below this much free space the read buffer grows before a read.
const MIN_READ_SPACE: usize = 8 * 1024;
/// Encoded request bytes gathered before a write.
const WRITE_BATCH: usize = 64 * 1024;
/// Longest STDERR excerpt written to the log.
pub const STDERR_LOG_MAX: usize = 2048;
const DECODE_LIMITS: Limits = Limits {
    max_content_len: codec::MAX_CONTENT_LEN,
    max_name_value_len: codec::DEFAULT_MAX_NAME_VALUE_LEN,
};

// === Endpoint ===

/// Where a FastCGI server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `host:port`, resolved on each connect (`127.0.0.1:9000`, `[::1]:9000`, `php:9000`).
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// Why an endpoint string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointParseError {
    /// No `scheme://`.
    #[error("fastcgi endpoint {input:?}: expected fcgi://host:port or fcgi+unix:///path/to.sock")]
    MissingScheme {
        /// The input.
        input: String,
    },
    /// A scheme other than `fcgi` or `fcgi+unix`.
    #[error(
        "fastcgi endpoint {input:?}: unsupported scheme {scheme:?}, expected fcgi or fcgi+unix"
    )]
    UnsupportedScheme {
        /// The input.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// Empty host.
    #[error("fastcgi endpoint {input:?}: missing host")]
    MissingHost {
        /// The input.
        input: String,
    },
    /// Missing, non-numeric, zero or out-of-range port.
    #[error("fastcgi endpoint {input:?}: expected a port in 1..=65535")]
    InvalidPort {
        /// The input.
        input: String,
    },
    /// A path, query or user part after `host:port`.
    #[error("fastcgi endpoint {input:?}: only host:port may follow fcgi://")]
    UnexpectedPath {
        /// The input.
        input: String,
    },
    /// A socket path that does not start with `/`.
    #[error("fastcgi endpoint {input:?}: unix socket path must be absolute (fcgi+unix:///path)")]
    RelativePath {
        /// The input.
        input: String,
    },
}

impl FromStr for Endpoint {
    type Err = EndpointParseError;

    /// Parses `fcgi://host:port` or `fcgi+unix:///absolute/path.sock`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = || s.to_owned();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(EndpointParseError::MissingScheme { input: input() });
        };
        if scheme.eq_ignore_ascii_case("fcgi+unix") {
            if !rest.starts_with('/') {
                return Err(EndpointParseError::RelativePath { input: input() });
            }
            return Ok(Endpoint::Unix(PathBuf::from(rest)));
        }
        if !scheme.eq_ignore_ascii_case("fcgi") {
            return Err(EndpointParseError::UnsupportedScheme {
                input: input(),
                scheme: scheme.to_owned(),
            });
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(EndpointParseError::UnexpectedPath { input: input() });
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(EndpointParseError::MissingHost { input: input() });
            };
            let Some(port) = after.strip_prefix(':') else {
                return Err(EndpointParseError::InvalidPort { input: input() });
            };
            (host, port)
        } else {
            let Some((host, port)) = authority.rsplit_once(':') else {
                return Err(EndpointParseError::InvalidPort { input: input() });
            };
            if host.contains(':') {
                // An unbracketed IPv6 address.
                return Err(EndpointParseError::MissingHost { input: input() });
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(EndpointParseError::MissingHost { input: input() });
        }
        match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(EndpointParseError::InvalidPort { input: input() }),
        }
        Ok(Endpoint::Tcp(authority.to_owned()))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "fcgi://{a}"),
            Endpoint::Unix(p) => write!(f, "fcgi+unix://{}", p.display()),
        }
    }
}

// === ClientConfig, ClientStats ===

/// Pool and timeout settings of a [`Client`]. A zero duration disables that timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Most idle keep-alive connections kept; 0 disables keep-alive
    /// (no `FCGI_KEEP_CONN`). Keep it below PHP-FPM's `pm.max_children`.
    pub max_idle: usize,
    /// Limit for establishing a connection (DNS included for TCP).
    pub connect_timeout: Duration,
    /// Limit between two successive reads of the response, counted once the
    /// request has been sent (nginx `fastcgi_read_timeout`).
    pub read_timeout: Duration,
    /// Limit between two successive writes of the request while the server
    /// is not accepting bytes (nginx `fastcgi_send_timeout`).
    pub write_timeout: Duration,
    /// Idle connections older than this are closed instead of reused.
    pub idle_timeout: Duration,
    /// Ceiling for the CGI response head (nginx `fastcgi_buffer_size`).
    pub max_header_bytes: usize,
    /// Close finished connections instead of pooling them while a request
    /// waits for its first byte on a fresh one (see the module docs). Needed
    /// only when nothing caps the connections at `pm.max_children`: a caller
    /// that enforces that cap (the edge's bulkhead) turns it off, because then
    /// a fresh connection never waits in FPM's backlog, and closing would only
    /// churn connections under load.
    pub release_for_fresh_waiters: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_idle: 8,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            release_for_fresh_waiters: true,
        }
    }
}

/// Counters of a [`Client`], for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls to [`Client::request`].
    pub requests: u64,
    /// Connections established.
    pub connects: u64,
    /// Pooled connections taken for a request.
    pub reused: u64,
    /// Requests retried on a fresh connection after a stale pooled one failed.
    pub retries: u64,
    /// Finished connections closed instead of pooled because a request was
    /// waiting on a fresh connection (see the module docs).
    pub released_for_waiters: u64,
    /// Idle connections in the pool now.
    pub idle: usize,
}

// === Errors ===

/// A protocol rule the FastCGI server broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A record type a server must not send, or a foreign request id.
    #[error("unexpected fastcgi record type {record_type} for request id {request_id}")]
    UnexpectedRecord {
        /// Raw record type.
        record_type: u8,
        /// Request id of the record.
        request_id: u16,
    },
    /// The server answered UNKNOWN_TYPE.
    #[error("fastcgi server did not understand record type {0}")]
    UnknownTypeReply(u8),
    /// END_REQUEST arrived before the CGI header block ended.
    #[error("fastcgi request ended before the response head was complete")]
    EndBeforeHead,
    /// END_REQUEST with a protocol status other than `FCGI_REQUEST_COMPLETE`.
    #[error("fastcgi server refused the request: {0}")]
    Rejected(ProtocolStatus),
}

/// Why a FastCGI request failed. Messages are not part of the API; use the
/// `is_*` predicates to choose a response status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting failed: refused, unreachable, unknown host, missing socket.
    #[error("connect to fastcgi server {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: Endpoint,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than `connect_timeout`.
    #[error("connect to fastcgi server {endpoint} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The endpoint.
        endpoint: Endpoint,
        /// The limit.
        timeout: Duration,
    },
    /// The server sent nothing for `read_timeout`.
    #[error("fastcgi server sent nothing for {0:?}")]
    ReadTimeout(Duration),
    /// The server accepted no request bytes for `write_timeout`.
    #[error("fastcgi server accepted no data for {0:?}")]
    WriteTimeout(Duration),
    /// Reading or writing the connection failed.
    #[error("fastcgi connection i/o")]
    Io(#[source] io::Error),
    /// The server closed the connection before END_REQUEST.
    #[error("fastcgi server closed the connection before the end of the request")]
    UnexpectedEof,
    /// The server sent bytes that are not a valid record.
    #[error("invalid fastcgi record")]
    Decode(#[from] DecodeError),
    /// The server broke a protocol rule.
    #[error("fastcgi protocol violation")]
    Protocol(#[from] ProtocolError),
    /// The CGI response head is malformed or too large.
    #[error("invalid cgi response head")]
    Head(#[from] HeadError),
    /// The request could not be encoded (a parameter too large for a record).
    #[error("cannot encode fastcgi request")]
    Encode(#[from] EncodeError),
    /// The caller's request body failed.
    #[error("request body")]
    RequestBody(#[source] BoxError),
}

impl Error {
    /// The server could not be reached (answer 502).
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect { .. })
    }

    /// A connect, read or write timeout (answer 504).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::ConnectTimeout { .. } | Error::ReadTimeout(_) | Error::WriteTimeout(_)
        )
    }

    /// The server broke the FastCGI or CGI protocol, including a head that is
    /// too large (answer 502).
    pub fn is_protocol(&self) -> bool {
        matches!(self, Error::Decode(_) | Error::Protocol(_) | Error::Head(_))
    }

    /// The CGI response head exceeded `max_header_bytes` (answer 502, like
    /// nginx's "upstream sent too big header").
    pub fn is_header_too_large(&self) -> bool {
        matches!(self, Error::Head(HeadError::TooLarge { .. }))
    }

    /// The connection broke or was closed mid-request (answer 502).
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Io(_) | Error::UnexpectedEof)
    }

    /// The caller's request body failed: a client-side problem, not the server's.
    pub fn is_request_body(&self) -> bool {
        matches!(self, Error::RequestBody(_))
    }

    /// A request parameter was too large to encode (e.g. a huge Cookie header).
    pub fn is_params_too_large(&self) -> bool {
        matches!(self, Error::Encode(_))
    }
}

// === Request, Response ===

/// The request body sent as STDIN.
#[derive(Default)]
pub enum RequestBody {
    /// No body.
    #[default]
    Empty,
    /// A body already in memory.
    Full(Bytes),
    /// A streamed body, forwarded chunk by chunk as it arrives. Trailers are ignored.
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl RequestBody {
    /// Boxes any body with `Bytes` chunks.
    pub fn stream<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::Stream(body.map_err(Into::into).boxed_unsync())
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        Self::Full(b)
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// A response whose head has arrived; the body streams on.
#[derive(Debug)]
pub struct Response {
    /// From the CGI `Status` header (see [`crate::response`]).
    pub status: StatusCode,
    /// CGI headers without `Status`.
    pub headers: HeaderMap,
    /// STDOUT after the head.
    pub body: ResponseBody,
}

// === Client ===

/// A FastCGI client for one endpoint, with a pool of idle keep-alive
/// connections. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    config: ClientConfig,
    idle: Mutex<Vec<IdleConn>>,
    requests: AtomicU64,
    connects: AtomicU64,
    reused: AtomicU64,
    retries: AtomicU64,
    released_for_waiters: AtomicU64,
    /// Requests on a fresh connection that has not delivered a byte yet.
    fresh_waiting: AtomicUsize,
}

struct IdleConn {
    conn: Conn,
    since: Instant,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client; nothing connects until the first request.
    pub fn new(endpoint: Endpoint, config: ClientConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoint,
                idle: Mutex::new(Vec::with_capacity(config.max_idle)),
                config,
                requests: AtomicU64::new(0),
                connects: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                released_for_waiters: AtomicU64::new(0),
                fresh_waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Current counters.
    pub fn stats(&self) -> ClientStats {
        let i = &self.inner;
        ClientStats {
            requests: i.requests.load(Ordering::Relaxed),
            connects: i.connects.load(Ordering::Relaxed),
            reused: i.reused.load(Ordering::Relaxed),
            retries: i.retries.load(Ordering::Relaxed),
            released_for_waiters: i.released_for_waiters.load(Ordering::Relaxed),
            idle: lock(&i.idle).len(),
        }
    }

    /// Sends a RESPONDER request and waits for the CGI response head.
    ///
    /// `params` are sent in order as the PARAMS stream; `body` becomes STDIN.
    /// The returned body streams the rest of STDOUT; STDERR is logged with
    /// `tracing::warn!` and never reaches the client.
    ///
    /// # Errors
    ///
    /// See [`Error`] and its predicates. The request body may still be in
    /// flight when the head arrives (the server answered early); the rest is
    /// sent while the response body is polled.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future or the response body closes the connection; it is
    /// never returned to the pool half-used.
    pub async fn request(&self, params: &Params, body: RequestBody) -> Result<Response, Error> {
        let inner = &self.inner;
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let keep_conn = inner.config.max_idle > 0;
        let mut head = BytesMut::with_capacity(1024);
        let flags = if keep_conn { codec::KEEP_CONN } else { 0 };
        codec::encode_begin_request(&mut head, REQUEST_ID, Role::RESPONDER, flags);
        codec::encode_params(&mut head, REQUEST_ID, params)?;
        let head = head.freeze();

        let mut body = Some(body);
        let mut retried = false;
        loop {
            let pooled = if retried { None } else { inner.checkout() };
            let (conn, reused) = match pooled {
                Some(c) => (c, true),
                None => (inner.connect().await?, false),
            };
            let body_now = body.take().unwrap_or_default();
            let mut ex = Exchange::new(Arc::clone(inner), conn, reused, keep_conn, &head, body_now);
            let mut parser = HeadParser::new(inner.config.max_header_bytes);
            let head_result = poll_fn(|cx| ex.poll_head(cx, &mut parser)).await;
            match head_result {
                Ok(h) => return Ok(Response::new(h, ex)),
                Err(e) if !retried && ex.can_retry(&e) => {
                    tracing::debug!(endpoint = %inner.endpoint, error = %e, "Pooled FastCGI connection failed; retrying on a fresh one.");
                    inner.retries.fetch_add(1, Ordering::Relaxed);
                    retried = true;
                    body = Some(ex.into_retry_body());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn with_timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    if limit.is_zero() {
        Some(fut.await)
    } else {
        tokio::time::timeout(limit, fut).await.ok()
    }
}

impl Inner {
    fn expired(&self, idle: &IdleConn, now: Instant) -> bool {
        let limit = self.config.idle_timeout;
        !limit.is_zero() && now.saturating_duration_since(idle.since) >= limit
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Conn> {
        let now = Instant::now();
        loop {
            let idle = lock(&self.idle).pop()?;
            if self.expired(&idle, now) {
                tracing::debug!(endpoint = %self.endpoint, "Closing expired idle FastCGI connection.");
                continue;
            }
            if !idle.conn.io.probe_open() {
                tracing::debug!(endpoint = %self.endpoint, "Idle FastCGI connection was closed by the server.");
                continue;
            }
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Some(idle.conn);
        }
    }

    fn checkin(&self, mut conn: Conn) {
        if self.config.release_for_fresh_waiters && self.fresh_waiting.load(Ordering::Acquire) > 0 {
            // Its PHP-FPM worker may be what a backlogged connection waits for.
            self.released_for_waiters.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(endpoint = %self.endpoint, "Closing FastCGI connection: a request waits on a fresh one.");
            return;
        }
        conn.rbuf.clear();
        let now = Instant::now();
        let rejected = {
            let mut idle = lock(&self.idle);
            idle.retain(|c| !self.expired(c, now));
            if idle.len() < self.config.max_idle {
                idle.push(IdleConn { conn, since: now });
                None
            } else {
                Some(conn)
            }
        };
        drop(rejected);
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let attempt = async {
            match &self.endpoint {
                Endpoint::Tcp(addr) => {
                    let s = TcpStream::connect(addr.as_str()).await?;
                    s.set_nodelay(true)?;
                    Ok::<_, io::Error>(Io::Tcp(s))
                }
                Endpoint::Unix(path) => Ok(Io::Unix(UnixStream::connect(path).await?)),
            }
        };
        let limit = self.config.connect_timeout;
        let io = match with_timeout(limit, attempt).await {
            Some(Ok(io)) => io,
            Some(Err(source)) => {
                return Err(Error::Connect {
                    endpoint: self.endpoint.clone(),
                    source,
                })
            }
            None => {
                return Err(Error::ConnectTimeout {
                    endpoint: self.endpoint.clone(),
                    timeout: limit,
                })
            }
        };
        self.connects.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(endpoint = %self.endpoint, "Connected to FastCGI server.");
        Ok(Conn {
            io,
            rbuf: BytesMut::new(),
        })
    }
}

// === Conn ===

struct Conn {
    io: Io,
    /// Bytes read but not yet decoded.
    rbuf: BytesMut,
}

enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Io {
    /// True if the peer has neither closed the connection nor sent stray bytes.
    fn probe_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let r = match self {
            Io::Tcp(s) => s.try_read(&mut probe),
            Io::Unix(s) => s.try_read(&mut probe),
        };
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => {
                let r = Pin::new(&mut *s).poll_read(cx, buf);
                if matches!(r, Poll::Ready(Ok(()))) {
                    quickack(s);
                }
                r
            }
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

/// Acknowledges received data at once. PHP-FPM writes a response's last
/// STDOUT record and END_REQUEST as small separate writes without
/// `TCP_NODELAY`, so Nagle holds them until the previous segment is acked;
/// with Linux's delayed ACKs that is a 40 ms stall on every kept-alive
/// response larger than a segment. The flag is not sticky, hence after every read.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn quickack(s: &tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn quickack(_s: &tokio::net::TcpStream) {}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

// === Timer ===

/// A lazily allocated inactivity timer: armed when an operation would block,
/// disarmed on progress.
#[derive(Default)]
struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl Timer {
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// Arms the timer (if not armed yet) and reports whether it has fired;
    /// registers the waker otherwise. A zero `limit` never fires.
    fn poll_expired(&mut self, cx: &mut Context<'_>, limit: Duration) -> bool {
        if limit.is_zero() {
            return false;
        }
        if !self.armed {
            let now = Instant::now();
            let deadline = now
                .checked_add(limit)
                .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        match &mut self.sleep {
            Some(s) => s.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }
}

// === FreshWait ===

/// Counts a request in `Inner::fresh_waiting` until its first response byte
/// (or until it ends).
struct FreshWait(Arc<Inner>);

impl FreshWait {
    fn new(inner: &Arc<Inner>) -> Self {
        inner.fresh_waiting.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(inner))
    }
}

impl Drop for FreshWait {
    fn drop(&mut self) {
        self.0.fresh_waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

// === Exchange ===

/// One request on one connection: the upload state, the read side and the timers.
struct Exchange {
    inner: Arc<Inner>,
    conn: Conn,
    reused: bool,
    keep_conn: bool,
    /// Encoded records not yet written.
    wbuf: BytesMut,
    upload: Upload,
    /// The `Full` body, kept (refcounted) for a retry.
    retry_body: Option<Bytes>,
    /// A frame was taken from the caller's streamed body.
    body_consumed: bool,
    /// A byte arrived from the server.
    response_bytes: bool,
    /// Held on a fresh connection until the first byte arrives.
    fresh_wait: Option<FreshWait>,
    read_timer: Timer,
    write_timer: Timer,
}

enum Upload {
    /// In-memory body still to be encoded (empty: only the end marker is left).
    Full(Bytes),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
    /// The empty STDIN record has been encoded.
    Done,
}

enum Event {
    Stdout(Bytes),
    End {
        app_status: u32,
        protocol_status: ProtocolStatus,
    },
    Skip,
}

impl Exchange {
    fn new(
        inner: Arc<Inner>,
        conn: Conn,
        reused: bool,
        keep_conn: bool,
        head: &Bytes,
        body: RequestBody,
    ) -> Self {
        let (upload, retry_body) = match body {
            RequestBody::Empty => (Upload::Full(Bytes::new()), None),
            RequestBody::Full(b) => (Upload::Full(b.clone()), Some(b)),
            RequestBody::Stream(s) if s.is_end_stream() => (Upload::Full(Bytes::new()), None),
            RequestBody::Stream(s) => (Upload::Stream(s), None),
        };
        let mut wbuf = BytesMut::with_capacity(head.len() + 64);
        wbuf.extend_from_slice(head);
        let fresh_wait = (!reused).then(|| FreshWait::new(&inner));
        Self {
            inner,
            conn,
            reused,
            keep_conn,
            wbuf,
            upload,
            retry_body,
            body_consumed: false,
            response_bytes: false,
            fresh_wait,
            read_timer: Timer::default(),
            write_timer: Timer::default(),
        }
    }

    fn upload_complete(&self) -> bool {
        matches!(self.upload, Upload::Done) && self.wbuf.is_empty()
    }

    fn can_retry(&self, e: &Error) -> bool {
        self.reused && !self.response_bytes && !self.body_consumed && e.is_closed()
    }

    /// The caller's body, unconsumed, for a retry.
    fn into_retry_body(self) -> RequestBody {
        match (self.upload, self.retry_body) {
            (Upload::Stream(s), _) => RequestBody::Stream(s),
            (_, Some(b)) => RequestBody::Full(b),
            (_, None) => RequestBody::Empty,
        }
    }

    /// Encodes the next piece of the body into `wbuf`.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match &mut self.upload {
            Upload::Done => {}
            Upload::Full(rest) if rest.is_empty() => {
                codec::encode_stdin_end(&mut self.wbuf, REQUEST_ID);
                self.upload = Upload::Done;
            }
            Upload::Full(rest) => {
                let chunk = rest.split_to(rest.len().min(codec::MAX_STREAM_CHUNK));
                codec::encode_stdin(&mut self.wbuf, REQUEST_ID, &chunk);
            }
            Upload::Stream(body) => match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    self.body_consumed = true;
                    let end = body.is_end_stream();
                    if let Ok(data) = frame.into_data() {
                        codec::encode_stdin(&mut self.wbuf, REQUEST_ID, &data);
                    }
                    if end {
                        codec::encode_stdin_end(&mut self.wbuf, REQUEST_ID);
                        self.upload = Upload::Done;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.body_consumed = true;
                    return Poll::Ready(Err(Error::RequestBody(e)));
                }
                Poll::Ready(None) => {
                    codec::encode_stdin_end(&mut self.wbuf, REQUEST_ID);
                    self.upload = Upload::Done;
                }
            },
        }
        Poll::Ready(Ok(()))
    }

    /// Sends as much of the request as possible. `Ready(Ok)` once all is written.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            while self.wbuf.len() < WRITE_BATCH && !matches!(self.upload, Upload::Done) {
                match self.poll_fill(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if self.wbuf.is_empty() {
                // Either done, or waiting for the caller's body (waker registered).
                return if matches!(self.upload, Upload::Done) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            match Pin::new(&mut self.conn.io).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => {
                    self.wbuf.advance(n);
                    self.write_timer.disarm();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => {
                    let limit = self.inner.config.write_timeout;
                    if self.write_timer.poll_expired(cx, limit) {
                        return Poll::Ready(Err(Error::WriteTimeout(limit)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// One socket read into `rbuf`.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let rbuf = &mut self.conn.rbuf;
        if rbuf.capacity() - rbuf.len() < MIN_READ_SPACE {
            rbuf.reserve(READ_BUF_SIZE);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.conn.io), cx, rbuf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(Error::UnexpectedEof)),
            Poll::Ready(Ok(_)) => {
                self.response_bytes = true;
                self.fresh_wait = None;
                self.read_timer.disarm();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::Io(e))),
            Poll::Pending => {
                // "Between two reads" starts once the request is fully sent.
                let limit = self.inner.config.read_timeout;
                if self.upload_complete() && self.read_timer.poll_expired(cx, limit) {
                    return Poll::Ready(Err(Error::ReadTimeout(limit)));
                }
                Poll::Pending
            }
        }
    }

    /// Decodes and classifies the next buffered record, if complete.
    fn decode_event(&mut self) -> Result<Option<Event>, Error> {
        let Some(rec) = Record::decode(&mut self.conn.rbuf, &DECODE_LIMITS)? else {
            return Ok(None);
        };
        let id = rec.request_id;
        let ev = match rec.body {
            RecordBody::Stdout(d) if id == REQUEST_ID => {
                if d.is_empty() {
                    Event::Skip
                } else {
                    Event::Stdout(d)
                }
            }
            RecordBody::Stderr(d) if id == REQUEST_ID => {
                log_stderr(&self.inner.endpoint, &d);
                Event::Skip
            }
            RecordBody::EndRequest {
                app_status,
                protocol_status,
            } if id == REQUEST_ID => Event::End {
                app_status,
                protocol_status,
            },
            RecordBody::GetValuesResult(_) if id == codec::NULL_REQUEST_ID => Event::Skip,
            RecordBody::UnknownType { record_type } => {
                return Err(ProtocolError::UnknownTypeReply(record_type).into())
            }
            other => {
                return Err(ProtocolError::UnexpectedRecord {
                    record_type: other.record_type(),
                    request_id: id,
                }
                .into())
            }
        };
        Ok(Some(ev))
    }

    /// Drives the exchange until the CGI head is complete.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        parser: &mut HeadParser,
    ) -> Poll<Result<ResponseHead, Error>> {
        loop {
            if let Poll::Ready(Err(e)) = self.poll_upload(cx) {
                return Poll::Ready(Err(e));
            }
            while let Some(ev) = self.decode_event()? {
                match ev {
                    Event::Stdout(d) => {
                        if let Some(head) = parser.push(d)? {
                            return Poll::Ready(Ok(head));
                        }
                    }
                    Event::End {
                        protocol_status, ..
                    } => {
                        let e = if protocol_status == ProtocolStatus::REQUEST_COMPLETE {
                            ProtocolError::EndBeforeHead
                        } else {
                            ProtocolError::Rejected(protocol_status)
                        };
                        return Poll::Ready(Err(e.into()));
                    }
                    Event::Skip => {}
                }
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Drives the exchange until the next STDOUT chunk or END_REQUEST.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, Error>> {
        loop {
            if let Poll::Ready(Err(e)) = self.poll_upload(cx) {
                return Poll::Ready(Err(e));
            }
            match self.decode_event()? {
                Some(Event::Skip) => continue,
                Some(ev) => return Poll::Ready(Ok(ev)),
                None => {}
            }
            match self.poll_read(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// END_REQUEST arrived: pool or close the connection.
    fn finish(self, app_status: u32, protocol_status: ProtocolStatus) -> Result<(), Error> {
        if protocol_status != ProtocolStatus::REQUEST_COMPLETE {
            return Err(ProtocolError::Rejected(protocol_status).into());
        }
        let upload_complete = self.upload_complete();
        let trailing = self.conn.rbuf.len();
        drop(self.fresh_wait);
        if self.keep_conn && app_status == 0 && upload_complete && trailing == 0 {
            self.inner.checkin(self.conn);
        } else {
            tracing::debug!(
                endpoint = %self.inner.endpoint,
                app_status,
                upload_complete,
                trailing,
                "Closing FastCGI connection after the request."
            );
        }
        Ok(())
    }
}

fn log_stderr(endpoint: &Endpoint, data: &[u8]) {
    let cut = &data[..data.len().min(STDERR_LOG_MAX)];
    let text = String::from_utf8_lossy(cut);
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    tracing::warn!(
        %endpoint,
        bytes = data.len(),
        truncated = data.len() > STDERR_LOG_MAX,
        stderr = %text,
        "FastCGI server wrote to stderr."
    );
}

// === ResponseBody ===

/// The response body: STDOUT after the CGI head, streamed as it arrives.
///
/// Reads from the connection only when polled (backpressure). Ends at
/// END_REQUEST, when the connection returns to the pool. Dropping it earlier
/// closes the connection.
pub struct ResponseBody {
    /// `None` once END_REQUEST was handled or an error ended the body.
    exchange: Option<Box<Exchange>>,
    /// A chunk to yield before polling the connection again.
    ready: Option<Bytes>,
    /// An error found while looking ahead, yielded after `ready`.
    error: Option<Error>,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("streaming", &self.exchange.is_some())
            .finish_non_exhaustive()
    }
}

impl Response {
    fn new(head: ResponseHead, ex: Exchange) -> Self {
        let (status, headers, leftover) = head.into_parts();
        let mut body = ResponseBody {
            exchange: Some(Box::new(ex)),
            ready: None,
            error: None,
        };
        if leftover.is_empty() {
            body.look_ahead();
        } else {
            body.ready = Some(leftover);
        }
        Self {
            status,
            headers,
            body,
        }
    }
}

impl ResponseBody {
    fn finish(&mut self, app_status: u32, protocol_status: ProtocolStatus) -> Result<(), Error> {
        match self.exchange.take() {
            Some(ex) => ex.finish(app_status, protocol_status),
            None => Ok(()),
        }
    }

    /// Handles already-buffered records up to the next STDOUT data, so that
    /// END_REQUEST right after the last chunk is seen (and the connection
    /// pooled) even if the consumer stops polling once it has all the bytes.
    /// Call only while `ready` is empty.
    fn look_ahead(&mut self) {
        while let Some(ex) = self.exchange.as_mut() {
            match RecordHeader::peek(&ex.conn.rbuf) {
                None => return,
                Some(h) if h.record_type == RecordType::Stdout.as_u8() && h.content_len > 0 => {
                    return
                }
                Some(_) => {}
            }
            match ex.decode_event() {
                Ok(None) => return,
                Ok(Some(Event::Skip)) => {}
                Ok(Some(Event::Stdout(d))) => {
                    self.ready = Some(d);
                    return;
                }
                Ok(Some(Event::End {
                    app_status,
                    protocol_status,
                })) => {
                    if let Err(e) = self.finish(app_status, protocol_status) {
                        self.error = Some(e);
                    }
                    return;
                }
                Err(e) => {
                    self.exchange = None;
                    self.error = Some(e);
                    return;
                }
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.ready.take() {
            this.look_ahead();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(ex) = this.exchange.as_mut() else {
            return Poll::Ready(None);
        };
        match ex.poll_body(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Event::Stdout(chunk))) => {
                this.look_ahead();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Ok(Event::End {
                app_status,
                protocol_status,
            })) => match this.finish(app_status, protocol_status) {
                Ok(()) => Poll::Ready(None),
                Err(e) => Poll::Ready(Some(Err(e))),
            },
            Poll::Ready(Ok(Event::Skip)) => {
                // poll_body never yields Skip; poll again rather than stall.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => {
                this.exchange = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.exchange.is_none() && self.ready.is_none() && self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parse_tcp() {
        let ok = [
            ("fcgi://127.0.0.1:9000", "127.0.0.1:9000"),
            ("fcgi://php-fpm:9000/", "php-fpm:9000"),
            ("FCGI://[::1]:9001", "[::1]:9001"),
            ("fcgi://localhost:65535", "localhost:65535"),
        ];
        for (input, want) in ok {
            assert_eq!(input.parse(), Ok(Endpoint::Tcp(want.to_owned())), "{input}");
        }
    }

    #[test]
    fn endpoint_parse_unix() {
        assert_eq!(
            "fcgi+unix:///run/php/php8.2-fpm.sock".parse(),
            Ok(Endpoint::Unix(PathBuf::from("/run/php/php8.2-fpm.sock")))
        );
        assert!(matches!(
            "fcgi+unix://run/php.sock".parse::<Endpoint>(),
            Err(EndpointParseError::RelativePath { .. })
        ));
    }

    #[test]
    fn endpoint_parse_errors() {
        type Check = fn(&EndpointParseError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("127.0.0.1:9000", |e| {
                matches!(e, EndpointParseError::MissingScheme { .. })
            }),
            ("http://127.0.0.1:9000", |e| {
                matches!(e, EndpointParseError::UnsupportedScheme { .. })
            }),
            ("fcgi://:9000", |e| {
                matches!(e, EndpointParseError::MissingHost { .. })
            }),
            ("fcgi://host", |e| {
                matches!(e, EndpointParseError::InvalidPort { .. })
            }),
            ("fcgi://host:0", |e| {
                matches!(e, EndpointParseError::InvalidPort { .. })
            }),
            ("fcgi://host:99999", |e| {
                matches!(e, EndpointParseError::InvalidPort { .. })
            }),
            ("fcgi://host:+80", |e| {
                matches!(e, EndpointParseError::InvalidPort { .. })
            }),
            ("fcgi://host:9000/index.php", |e| {
                matches!(e, EndpointParseError::UnexpectedPath { .. })
            }),
            ("fcgi://::1:9000", |e| {
                matches!(e, EndpointParseError::MissingHost { .. })
            }),
            ("fcgi://[::1]", |e| {
                matches!(e, EndpointParseError::InvalidPort { .. })
            }),
        ];
        for (input, check) in cases {
            let err = input.parse::<Endpoint>().expect_err(input);
            assert!(check(&err), "{input}: {err:?}");
            let msg = err.to_string();
            assert!(msg.starts_with("fastcgi endpoint"), "{msg}");
        }
    }

    #[test]
    fn endpoint_display_round_trips() {
        for s in [
            "fcgi://127.0.0.1:9000",
            "fcgi+unix:///run/php.sock",
            "fcgi://[::1]:9000",
        ] {
            let e: Endpoint = s.parse().expect("valid");
            assert_eq!(e.to_string(), s);
        }
    }

    #[test]
    fn error_predicates_and_messages() {
        let connect = Error::Connect {
            endpoint: Endpoint::Tcp("127.0.0.1:1".into()),
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(connect.is_connect() && !connect.is_timeout());
        assert!(Error::ReadTimeout(Duration::from_secs(1)).is_timeout());
        assert!(Error::WriteTimeout(Duration::from_secs(1)).is_timeout());
        let too_big = Error::Head(HeadError::TooLarge { max: 1 });
        assert!(too_big.is_header_too_large() && too_big.is_protocol());
        assert!(Error::Protocol(ProtocolError::EndBeforeHead).is_protocol());
        assert!(Error::RequestBody("boom".into()).is_request_body());
        assert!(Error::UnexpectedEof.is_closed());
        for e in [
            connect,
            too_big,
            Error::UnexpectedEof,
            Error::ReadTimeout(Duration::from_millis(5)),
        ] {
            let msg = e.to_string();
            assert!(
                msg.chars().next().is_some_and(|c| c.is_lowercase()),
                "{msg}"
            );
        }
    }

    #[test]
    fn request_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let client = Client::new(Endpoint::Tcp("127.0.0.1:1".into()), ClientConfig::default());
        let params = Params::new();
        let fut = client.request(&params, RequestBody::Empty);
        assert_send(&fut);
        fn assert_body<B: Body<Data = Bytes, Error = Error> + Send + 'static>() {}
        assert_body::<ResponseBody>();
        fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
        assert_error::<Error>();
    }

    #[test]
    fn stderr_log_is_truncated_safely() {
        // Must not panic on invalid UTF-8 or on a cut in the middle of a character.
        let mut data = "é".repeat(STDERR_LOG_MAX).into_bytes();
        data.extend_from_slice(&[0xff, 0xfe]);
        log_stderr(&Endpoint::Tcp("x:1".into()), &data);
        log_stderr(&Endpoint::Tcp("x:1".into()), b"\n\n");
    }
}
