//! Request bodies on their way to PHP: size limit (413), a known length,
//! and a bound on the memory all of them may hold together.
//!
//! PHP needs `CONTENT_LENGTH` to fill `$_POST`. Every body is read whole,
//! up to `server.max_body_bytes`, before the upstream is asked for anything
//! (nginx's `fastcgi_request_buffering on` does the same): a chunked body
//! to learn its length, and a `Content-Length` body too, so that a client
//! trickling its body (slow POST, R.U.D.Y.) holds an edge connection, never
//! a PHP-FPM child.
//!
//! Where a body waits is bounded as nginx bounds it: a body up to
//! `server.body_buffer_bytes` stays in memory (nginx's
//! `client_body_buffer_size`), a larger one goes to an unlinked temporary
//! file in `server.body_spool_dir` as it arrives. Memory buffers are also
//! drawn from one budget for the whole process (`server.body_memory_bytes`):
//! when uploads in flight have used it up, the next body goes to a file even
//! if it is small. So memory held by bodies never exceeds that budget plus
//! one read buffer per upload, whatever the number of connections or h2
//! streams. Every read of a body frame is bounded by
//! `server.body_read_timeout_secs` (h2 streams included; HTTP/1 is also
//! watched at the socket by `conn_io`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

use crate::body::{BoxError, EdgeBody};

/// Why a request body was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Larger than `server.max_body_bytes` (→ 413).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// `Content-Length` unparsable (→ 400).
    #[error("invalid content-length")]
    BadLength,
    /// The client went away or sent a broken body (→ 400).
    #[error("reading request body: {0}")]
    Read(String),
    /// No byte of the body for `server.body_read_timeout_secs` (→ 408).
    #[error("request body stalled for {0:?}")]
    Timeout(Duration),
    /// The body could not be written to the spool directory (→ 503).
    #[error("spooling the request body to {dir}: {source}")]
    Spool {
        /// The spool directory.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BodyError {
    /// The client's answer: 413, 408 (and the connection closed), 400, or
    /// 503 when the spool directory failed.
    pub(crate) fn response(&self) -> http::Response<EdgeBody> {
        let status = self.status();
        match self {
            BodyError::Spool { .. } => {
                tracing::error!(error = %self, "Request body not stored; answering 503.");
            }
            BodyError::Timeout(_) => tracing::debug!(error = %self, "Request body stalled."),
            _ => {}
        }
        let retry = (status == http::StatusCode::SERVICE_UNAVAILABLE).then_some(5);
        let mut r = crate::answer::error_page(status, retry);
        if status == http::StatusCode::REQUEST_TIMEOUT {
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        r
    }

    /// The status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            BodyError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::BadLength | BodyError::Read(_) => http::StatusCode::BAD_REQUEST,
            BodyError::Timeout(_) => http::StatusCode::REQUEST_TIMEOUT,
            BodyError::Spool { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The memory all buffered request bodies may hold together.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    cap: u64,
    spooled: AtomicU64,
}

impl BodyBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            used: AtomicU64::new(0),
            cap,
            spooled: AtomicU64::new(0),
        })
    }

    /// Bytes of request bodies held in memory now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bodies written to the spool directory since the start.
    pub fn spooled(&self) -> u64 {
        self.spooled.load(Ordering::Relaxed)
    }

    fn try_reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.cap)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes drawn from the budget, given back on drop.
#[derive(Debug)]
struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Reservation {
    fn grow(&mut self, n: u64) -> bool {
        if self.budget.try_reserve(n) {
            self.bytes += n;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// How bodies are read: the limits of `[server]` and the shared budget.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// `server.max_body_bytes` (413 beyond).
    pub max_bytes: u64,
    /// `server.body_buffer_bytes`: larger bodies go to a file.
    pub buffer_bytes: u64,
    /// `server.body_read_timeout_secs`, per frame.
    pub read_timeout: Duration,
    /// `server.body_spool_dir`; `None` = the system's temporary directory.
    pub spool_dir: Option<PathBuf>,
    /// `server.body_memory_bytes`, shared by every request.
    pub budget: Arc<BodyBudget>,
}

impl BodyLimits {
    /// Limits with a fresh budget of `memory` bytes.
    pub fn new(max_bytes: u64, buffer_bytes: u64, memory: u64, read_timeout: Duration) -> Self {
        BodyLimits {
            max_bytes,
            buffer_bytes,
            read_timeout,
            spool_dir: None,
            budget: BodyBudget::new(memory),
        }
    }

    fn spool_dir(&self) -> PathBuf {
        self.spool_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// A whole request body, in memory or in an unlinked temporary file.
#[derive(Debug)]
pub struct Buffered {
    len: u64,
    data: Data,
}

#[derive(Debug)]
enum Data {
    Memory {
        bytes: Bytes,
        _reservation: Option<Reservation>,
    },
    File(Arc<std::fs::File>),
}

/// Chunk size when a spooled body is read back.
const SPOOL_CHUNK: usize = 64 * 1024;

impl Buffered {
    /// A body the edge already holds (tests, internal requests).
    pub fn from_bytes(bytes: Bytes) -> Buffered {
        Buffered {
            len: bytes.len() as u64,
            data: Data::Memory {
                bytes,
                _reservation: None,
            },
        }
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a body of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the body went to a file.
    pub fn is_spooled(&self) -> bool {
        matches!(self.data, Data::File(_))
    }

    /// The whole body in memory, when it is at most `limit` bytes (read back
    /// from its file if it was spooled): what the WAF inspects.
    pub async fn bytes_up_to(&self, limit: usize) -> Option<Bytes> {
        if self.len > limit as u64 {
            return None;
        }
        match &self.data {
            Data::Memory { bytes, .. } => Some(bytes.clone()),
            Data::File(f) => {
                let f = Arc::clone(f);
                let len = usize::try_from(self.len).ok()?;
                tokio::task::spawn_blocking(move || read_at(&f, 0, len))
                    .await
                    .ok()?
                    .ok()
            }
        }
    }

    /// The body as a stream of chunks (a refcount for memory, file reads
    /// from the start otherwise: a retry on another endpoint reads it again).
    pub fn to_edge_body(&self) -> EdgeBody {
        match &self.data {
            Data::Memory { bytes, .. } => crate::body::full(bytes.clone()),
            Data::File(f) => {
                let f = Arc::clone(f);
                let len = self.len;
                let chunks = futures_util::stream::unfold(0u64, move |offset| {
                    let f = Arc::clone(&f);
                    async move {
                        if offset >= len {
                            return None;
                        }
                        let n = usize::try_from((len - offset).min(SPOOL_CHUNK as u64))
                            .unwrap_or(SPOOL_CHUNK);
                        let read = tokio::task::spawn_blocking(move || read_at(&f, offset, n))
                            .await
                            .map_err(|e| -> BoxError { e.into() })
                            .and_then(|r| r.map_err(|e| -> BoxError { e.into() }));
                        match read {
                            Ok(b) => Some((Ok(http_body::Frame::data(b)), offset + n as u64)),
                            Err(e) => Some((Err(e), len)),
                        }
                    }
                });
                http_body_util::StreamBody::new(chunks).boxed_unsync()
            }
        }
    }
}

/// `n` bytes at `offset`, without moving a shared file position.
fn read_at(f: &std::fs::File, offset: u64, n: usize) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; n];
    f.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// A request body ready for the upstream, with its length.
#[derive(Debug)]
pub struct PreparedBody {
    /// Exact length PHP will see as `CONTENT_LENGTH`; `None` when there is no body.
    pub length: Option<u64>,
    body: Option<Buffered>,
}

impl PreparedBody {
    /// No body at all (not even an empty one).
    pub fn none() -> PreparedBody {
        PreparedBody {
            length: None,
            body: None,
        }
    }

    fn of(b: Buffered) -> PreparedBody {
        PreparedBody {
            length: Some(b.len()),
            body: Some(b),
        }
    }

    /// The body as the HTTP upstream sends it.
    pub fn to_edge_body(&self) -> EdgeBody {
        match &self.body {
            Some(b) if !b.is_empty() => b.to_edge_body(),
            _ => crate::body::empty(),
        }
    }

    /// The body as a FastCGI request sends it (a refcount for a body in
    /// memory; the file read again for a spooled one, so a retry works).
    pub fn to_fastcgi(&self) -> magestack_fastcgi::RequestBody {
        match &self.body {
            Some(Buffered {
                data: Data::Memory { bytes, .. },
                ..
            }) if !bytes.is_empty() => magestack_fastcgi::RequestBody::Full(bytes.clone()),
            Some(b) if !b.is_empty() => magestack_fastcgi::RequestBody::Stream(b.to_edge_body()),
            _ => magestack_fastcgi::RequestBody::Empty,
        }
    }
}

/// A request body as the pipeline receives it: the client's, or none for
/// requests the edge makes itself (cache fetches, ESI fragments, probes).
#[derive(Debug)]
pub enum ClientBody {
    /// The client's body stream.
    Incoming(Incoming),
    /// No body.
    Empty,
    /// A body the edge already read (to look into it).
    Buffered(Buffered),
}

/// The declared `Content-Length`, if any (400 when unparsable).
pub fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, BodyError> {
    match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(BodyError::BadLength),
        None => Ok(None),
    }
}

/// Checks the declared length and reads the body whole (memory or file).
pub async fn prepare(
    headers: &HeaderMap,
    body: ClientBody,
    limits: &BodyLimits,
) -> Result<PreparedBody, BodyError> {
    match body {
        ClientBody::Empty => Ok(PreparedBody::none()),
        ClientBody::Buffered(b) => {
            if b.len() > limits.max_bytes {
                return Err(BodyError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            Ok(PreparedBody::of(b))
        }
        ClientBody::Incoming(incoming) => {
            let declared = declared_length(headers)?;
            if declared.is_none() && incoming.is_end_stream() {
                return Ok(PreparedBody::none());
            }
            read(incoming, declared, limits).await.map(PreparedBody::of)
        }
    }
}

/// Reads a client body whole, bounded by the limits; see the module docs.
pub async fn read<B>(
    mut body: B,
    declared: Option<u64>,
    limits: &BodyLimits,
) -> Result<Buffered, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let max = limits.max_bytes;
    if declared.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge { limit: max });
    }
    if declared == Some(0) {
        return Ok(Buffered::from_bytes(Bytes::new()));
    }
    let mut sink = if declared.is_some_and(|n| n > limits.buffer_bytes) {
        Sink::File(Spool::create(limits).await?)
    } else {
        Sink::Memory {
            first: None,
            joined: None,
            reservation: Reservation {
                budget: Arc::clone(&limits.budget),
                bytes: 0,
            },
        }
    };
    let mut got = 0u64;
    loop {
        let frame = match tokio::time::timeout(limits.read_timeout, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout(limits.read_timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers: PHP has no use for them
        };
        got += data.len() as u64;
        if got > max {
            return Err(BodyError::TooLarge { limit: max });
        }
        if declared.is_some_and(|n| got > n) {
            return Err(BodyError::Read("body longer than content-length".into()));
        }
        sink = sink.push(data, got, limits).await?;
    }
    if declared.is_some_and(|n| got < n) {
        return Err(BodyError::Read("body shorter than content-length".into()));
    }
    sink.finish(got, limits).await
}

/// Where a body being read goes.
enum Sink {
    Memory {
        /// A body that arrives in one frame is kept as that frame: no copy.
        first: Option<Bytes>,
        joined: Option<BytesMut>,
        reservation: Reservation,
    },
    File(Spool),
}

impl Sink {
    async fn push(self, data: Bytes, total: u64, limits: &BodyLimits) -> Result<Sink, BodyError> {
        match self {
            Sink::File(mut spool) => {
                spool.write(&data).await?;
                Ok(Sink::File(spool))
            }
            Sink::Memory {
                first,
                mut joined,
                mut reservation,
            } => {
                if total > limits.buffer_bytes || !reservation.grow(data.len() as u64) {
                    // Too big for memory, or the budget is spent: to a file,
                    // with what was read so far.
                    let mut spool = Spool::create(limits).await?;
                    if let Some(b) = &first {
                        spool.write(b).await?;
                    }
                    if let Some(b) = &joined {
                        spool.write(b).await?;
                    }
                    spool.write(&data).await?;
                    drop(reservation);
                    return Ok(Sink::File(spool));
                }
                let first = match (first, joined.as_mut()) {
                    (_, Some(buf)) => {
                        buf.extend_from_slice(&data);
                        None
                    }
                    (Some(head), None) => {
                        // Grown as bytes arrive, never sized from a declared
                        // length: a client declaring much and sending little
                        // costs little.
                        let mut buf = BytesMut::with_capacity((head.len() + data.len()) * 2);
                        buf.extend_from_slice(&head);
                        buf.extend_from_slice(&data);
                        joined = Some(buf);
                        None
                    }
                    (None, None) => Some(data),
                };
                Ok(Sink::Memory {
                    first,
                    joined,
                    reservation,
                })
            }
        }
    }

    async fn finish(self, len: u64, limits: &BodyLimits) -> Result<Buffered, BodyError> {
        match self {
            Sink::Memory {
                first,
                joined,
                reservation,
            } => {
                let bytes = match (joined, first) {
                    (Some(buf), _) => buf.freeze(),
                    (None, Some(b)) => b,
                    (None, None) => Bytes::new(),
                };
                Ok(Buffered {
                    len,
                    data: Data::Memory {
                        bytes,
                        _reservation: Some(reservation),
                    },
                })
            }
            Sink::File(spool) => {
                let file = spool.finish(limits).await?;
                limits.budget.spooled.fetch_add(1, Ordering::Relaxed);
                Ok(Buffered {
                    len,
                    data: Data::File(Arc::new(file)),
                })
            }
        }
    }
}

/// An unlinked temporary file being written.
struct Spool {
    file: tokio::fs::File,
    dir: PathBuf,
}

impl Spool {
    async fn create(limits: &BodyLimits) -> Result<Spool, BodyError> {
        let dir = limits.spool_dir();
        let d = dir.clone();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(&d))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|source| BodyError::Spool {
                dir: dir.display().to_string(),
                source,
            })?;
        Ok(Spool {
            file: tokio::fs::File::from_std(file),
            dir,
        })
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), BodyError> {
        self.file
            .write_all(data)
            .await
            .map_err(|source| BodyError::Spool {
                dir: self.dir.display().to_string(),
                source,
            })
    }

    async fn finish(mut self, _limits: &BodyLimits) -> Result<std::fs::File, BodyError> {
        let dir = self.dir.display().to_string();
        self.file.flush().await.map_err(|source| BodyError::Spool {
            dir: dir.clone(),
            source,
        })?;
        Ok(self.file.into_std().await)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunks(parts: Vec<Vec<u8>>) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        StreamBody::new(futures_util::stream::iter(parts.into_iter().map(|p| {
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(p)))
        })))
    }

    fn limits(buffer: u64, memory: u64) -> BodyLimits {
        BodyLimits::new(1 << 20, buffer, memory, Duration::from_secs(5))
    }

    async fn collect(b: &Buffered) -> Vec<u8> {
        b.to_edge_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_and_count_against_the_budget() {
        let l = limits(1024, 4096);
        let b = read(chunks(vec![vec![1; 100], vec![2; 100]]), None, &l)
            .await
            .unwrap();
        assert!(!b.is_spooled());
        assert_eq!(b.len(), 200);
        assert_eq!(l.budget.used(), 200);
        assert_eq!(collect(&b).await, [vec![1; 100], vec![2; 100]].concat());
        drop(b);
        assert_eq!(l.budget.used(), 0);
    }

    #[tokio::test]
    async fn large_bodies_and_an_exhausted_budget_go_to_a_file() {
        let l = limits(1024, 1500);
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let parts: Vec<Vec<u8>> = body.chunks(700).map(<[u8]>::to_vec).collect();
        let big = read(chunks(parts), None, &l).await.unwrap();
        assert!(big.is_spooled());
        assert_eq!(l.budget.used(), 0, "a spooled body holds no budget");
        assert_eq!(collect(&big).await, body);
        assert_eq!(collect(&big).await, body, "read again for a retry");
        assert_eq!(big.bytes_up_to(4000).await, None);
        assert_eq!(big.bytes_up_to(5000).await.unwrap().to_vec(), body);
        // Declared larger than the buffer: straight to a file.
        let b = read(chunks(vec![vec![7; 2000]]), Some(2000), &l)
            .await
            .unwrap();
        assert!(b.is_spooled());
        // The budget: the first small body takes 1000 of 1500, the next one
        // no longer fits in memory.
        let a = read(chunks(vec![vec![1; 1000]]), None, &l).await.unwrap();
        assert!(!a.is_spooled());
        let c = read(chunks(vec![vec![2; 1000]]), None, &l).await.unwrap();
        assert!(c.is_spooled());
        assert_eq!(l.budget.used(), 1000);
        assert_eq!(l.budget.spooled(), 3);
        drop(a);
        assert_eq!(l.budget.used(), 0);
    }

    #[tokio::test]
    async fn lengths_and_limits_are_enforced() {
        let l = limits(1024, 4096);
        assert!(matches!(
            read(chunks(vec![vec![0; 10]]), Some(11), &l).await,
            Err(BodyError::Read(_))
        ));
        assert!(matches!(
            read(chunks(vec![vec![0; 12]]), Some(11), &l).await,
            Err(BodyError::Read(_))
        ));
        assert!(matches!(
            read(chunks(vec![vec![0; 10]]), Some(2 << 20), &l).await,
            Err(BodyError::TooLarge { .. })
        ));
        assert!(matches!(
            read(
                chunks(vec![vec![0; 700 << 10], vec![0; 700 << 10]]),
                None,
                &l
            )
            .await,
            Err(BodyError::TooLarge { .. })
        ));
        assert_eq!(l.budget.used(), 0, "refused bodies give their memory back");
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let l = BodyLimits::new(1024, 1024, 4096, Duration::from_millis(50));
        let stalled = StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, std::io::Error>,
        >());
        assert!(matches!(
            read(stalled, None, &l).await,
            Err(BodyError::Timeout(_))
        ));
    }
}
