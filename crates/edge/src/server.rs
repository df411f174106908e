//! Listeners, protocol selection (HTTP/1.1, h2c, TLS + ALPN) and graceful drain.
//!
//! This is the I/O shell around [`crate::Edge::handle`]: it accepts sockets, applies
//! the connection-level limits (header bytes and count, head/idle timeouts) and stops
//! accepting on shutdown while in-flight requests finish within the drain timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::{BoxError, EdgeBody};
use crate::conn_io::{HeadState, HeadTimeouts, TimedIo};
use crate::framing::GuardLimits;
use crate::Edge;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connection-level limits, from `[server]` of the config.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Request head size ceiling (431 beyond).
    pub max_header_bytes: usize,
    /// Header count ceiling (431 beyond).
    pub max_headers: usize,
    /// Time to receive a whole request head once it started (408 beyond).
    pub header_read_timeout: Duration,
    /// Longest gap between bytes of a request body (408 beyond).
    pub body_read_timeout: Duration,
    /// Time a keep-alive connection may stay silent.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Accept HTTP/2 with prior knowledge on plaintext listeners.
    pub h2c: bool,
    /// Most open connections from one client address (slowloris and
    /// connection floods); 0 = no cap. Peers in `per_ip_exempt` (the
    /// trusted proxies: a CDN or load balancer carries many clients) are
    /// not counted.
    pub max_connections_per_ip: usize,
    /// Peers the per-address cap does not apply to.
    pub per_ip_exempt: Vec<ipnet::IpNet>,
    /// Most open client connections in all; at the cap the listeners stop
    /// accepting (new connections wait in the kernel's backlog) while open
    /// ones are served: the edge never runs out of descriptors. 0 = no cap.
    pub max_connections: usize,
}

/// What the handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The socket peer.
    pub peer: SocketAddr,
    /// Our local address.
    pub local: SocketAddr,
    /// Whether the client→edge hop is TLS.
    pub tls: bool,
    /// Accepted on the cluster-internal purge listener (`server.purge_listen`),
    /// not on a port the load balancer sends shoppers to.
    pub internal: bool,
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Shoppers' traffic (`server.listen`), TLS when configured.
    Traffic,
    /// Magento's purges from inside the cluster (`server.purge_listen`):
    /// plaintext, marked `internal`.
    Purge,
}

/// Longest time, within the drain timeout, that busy kept-alive clients get
/// to leave on their own (`Connection: close`) before idle connections are
/// closed.
const LAME_DUCK: Duration = Duration::from_secs(2);

/// A running set of listeners.
pub struct Server {
    edge: crate::LiveEdge,
    limits: ServerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Set at shutdown: HTTP/1 responses then carry `Connection: close`, so
    /// clients leave after their current request instead of racing a close.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Open connections per client address (only with a per-address cap).
    per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    /// Connection slots (`max_connections`); `None` without a cap.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Set at shutdown: h2 connections send GOAWAY and finish their streams.
    drain: watch::Sender<bool>,
    /// Open h2 connections (they are drained by `drain`, not by hyper-util's
    /// graceful watcher, so that they can also be closed when idle).
    h2_open: Arc<std::sync::atomic::AtomicUsize>,
}

/// Gives a per-address connection slot back when the connection ends.
struct PerIpSlot {
    map: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut m = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server that hands every request to `edge`.
    pub fn new(
        edge: Arc<Edge>,
        limits: ServerLimits,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        Self::with_live(crate::LiveEdge::new(edge), limits, tls)
    }

    /// A server that hands every request to the edge `live` holds at the
    /// time (a reload swaps it).
    pub fn with_live(
        edge: crate::LiveEdge,
        limits: ServerLimits,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let slots = (limits.max_connections > 0)
            .then(|| Arc::new(tokio::sync::Semaphore::new(limits.max_connections)));
        Self {
            edge,
            limits,
            tls,
            draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            per_ip: Arc::default(),
            slots,
            drain: watch::channel(false).0,
            h2_open: Arc::default(),
        }
    }

    /// Serves on `listeners` until `shutdown` resolves, then drains.
    ///
    /// Returns the number of connections that were still open when the drain
    /// timeout expired (0 on a clean drain).
    pub async fn run(
        self,
        listeners: Vec<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> usize {
        let tagged = listeners
            .into_iter()
            .map(|l| (l, ListenerKind::Traffic))
            .collect();
        self.run_tagged(tagged, shutdown).await
    }

    /// As [`Server::run`], with listeners of several kinds.
    pub async fn run_tagged(
        self,
        listeners: Vec<(TcpListener, ListenerKind)>,
        shutdown: impl Future<Output = ()>,
    ) -> usize {
        self.edge.current().start_background();
        let graceful = Arc::new(GracefulShutdown::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let this = Arc::new(self);
        let mut accept_tasks = Vec::new();
        for (listener, kind) in listeners {
            let this = this.clone();
            let graceful = graceful.clone();
            let mut stop = stop_rx.clone();
            accept_tasks.push(tokio::spawn(async move {
                let mut backoff = AcceptBackoff::default();
                loop {
                    // A slot first: at the cap, new connections wait in the
                    // backlog and nothing more is accepted.
                    let slot = match &this.slots {
                        None => None,
                        Some(slots) => {
                            let slots = Arc::clone(slots);
                            if slots.available_permits() == 0 {
                                backoff.at_capacity(this.limits.max_connections);
                            }
                            tokio::select! {
                                _ = stop.changed() => break,
                                permit = slots.acquire_owned() => permit.ok(),
                            }
                        }
                    };
                    tokio::select! {
                        _ = stop.changed() => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, peer)) => {
                                backoff.accepted();
                                this.clone().spawn_conn(stream, peer, &graceful, slot, kind);
                            }
                            Err(e) => {
                                drop(slot);
                                if let Some(pause) = backoff.failed(&e) {
                                    // Out of descriptors (or memory): pause accepting
                                    // while open connections keep being served.
                                    tokio::time::sleep(pause).await;
                                }
                            }
                        }
                    }
                }
                this.close_listener(listener, &graceful, kind).await;
            }));
        }
        shutdown.await;
        tracing::info!(
            drain_secs = this.limits.drain_timeout.as_secs_f64(),
            "Shutting down: no new connections, draining in-flight requests."
        );
        this.draining
            .store(true, std::sync::atomic::Ordering::Release);
        this.drain.send_replace(true);
        let _ = stop_tx.send(true);
        for t in accept_tasks {
            let _ = t.await;
        }
        // Lame duck: clients busy on kept-alive connections get their next
        // response with `Connection: close` and leave on their own (no
        // close racing a request in flight); idle ones are closed below.
        let lame_duck_until =
            tokio::time::Instant::now() + LAME_DUCK.min(this.limits.drain_timeout);
        let h2_open = || this.h2_open.load(std::sync::atomic::Ordering::Acquire);
        while graceful.count() + h2_open() > 0 && tokio::time::Instant::now() < lame_duck_until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let graceful = match Arc::try_unwrap(graceful) {
            Ok(g) => g,
            Err(_) => return 0,
        };
        let open = graceful.count() + h2_open();
        let all_closed = async {
            graceful.shutdown().await;
            while h2_open() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            () = all_closed => {
                tracing::info!(connections = open, "Drained.");
                0
            }
            _ = tokio::time::sleep(this.limits.drain_timeout) => {
                tracing::warn!("Drain timeout expired with connections still open.");
                open.max(1)
            }
        }
    }

    /// Stops a listener without refusing anyone: first a socket filter drops
    /// new SYNs (clients retransmit them; by then the socket is gone and,
    /// with `SO_REUSEPORT`, a successor edge on the same port takes them),
    /// then every connection already in the accept queue is accepted and
    /// served, then the socket closes. Closing with a non-empty queue would
    /// reset those connections.
    async fn close_listener(
        self: &Arc<Self>,
        listener: TcpListener,
        graceful: &GracefulShutdown,
        kind: ListenerKind,
    ) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // BPF "ret #0": accept nothing more into this socket's queue.
            let drop_all = [socket2::SockFilter::new(0x06, 0, 0, 0)];
            if let Err(e) = socket2::SockRef::from(&listener).attach_filter(&drop_all) {
                tracing::debug!(error = %e, "Could not filter the listener before closing it.");
            }
        }
        while let Ok(Ok((stream, peer))) =
            tokio::time::timeout(Duration::from_millis(5), listener.accept()).await
        {
            self.clone().spawn_conn(stream, peer, graceful, None, kind);
        }
        drop(listener);
    }

    fn spawn_conn(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        graceful: &GracefulShutdown,
        conn_slot: Option<tokio::sync::OwnedSemaphorePermit>,
        kind: ListenerKind,
    ) {
        // The map holds only addresses with open connections, so it is
        // bounded by the open connections themselves.
        let slot = if self.limits.max_connections_per_ip > 0
            && !crate::client_ip::is_trusted(peer.ip(), &self.limits.per_ip_exempt)
        {
            let mut m = self
                .per_ip
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = m.entry(peer.ip()).or_insert(0);
            if *n >= self.limits.max_connections_per_ip {
                drop(m);
                tracing::warn!(%peer, cap = self.limits.max_connections_per_ip, "Too many connections from one address; closing the new one.");
                return;
            }
            *n += 1;
            Some(PerIpSlot {
                map: Arc::clone(&self.per_ip),
                ip: peer.ip(),
            })
        } else {
            None
        };
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let watcher = graceful.watcher();
        // The head deadline runs from the accept: a client that sends
        // nothing is closed after `header_read_timeout`, as nginx's
        // `client_header_timeout` does.
        let head_deadline = tokio::time::Instant::now() + self.limits.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let _conn_slot = conn_slot;
            let tls = self.tls.clone().filter(|_| kind == ListenerKind::Traffic);
            let info = ConnInfo {
                peer,
                local,
                tls: tls.is_some(),
                internal: kind == ListenerKind::Purge,
            };
            if let Some(acceptor) = tls {
                let accept = tokio::time::timeout_at(head_deadline, acceptor.accept(stream));
                let tls = match accept.await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed.");
                        return;
                    }
                    Err(_) => return,
                };
                // After the handshake, the request head gets its own time.
                let head_deadline = tokio::time::Instant::now() + self.limits.header_read_timeout;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 {
                    self.serve_h2(tls, info).await;
                } else {
                    self.serve_h1(tls, info, watcher, head_deadline).await;
                }
            } else if self.limits.h2c {
                match sniff_h2(&stream, head_deadline).await {
                    Sniffed::H2 => self.serve_h2(stream, info).await,
                    Sniffed::Http1 => self.serve_h1(stream, info, watcher, head_deadline).await,
                    Sniffed::Nothing => {
                        tracing::debug!(%peer, "Connection sent nothing within the header timeout; closed.");
                    }
                }
            } else {
                self.serve_h1(stream, info, watcher, head_deadline).await;
            }
        });
    }

    async fn serve_h1<I>(
        &self,
        io: I,
        info: ConnInfo,
        watcher: hyper_util::server::graceful::Watcher,
        head_deadline: tokio::time::Instant,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(HeadState::default());
        let timeouts = HeadTimeouts {
            header_read: self.limits.header_read_timeout,
            body_read: self.limits.body_read_timeout,
            idle: self.limits.idle_timeout,
        };
        // The framing guard follows every head hyper could accept.
        let framing = GuardLimits {
            max_head_bytes: self.h1_max_buf(),
            max_headers: self.limits.max_headers,
        };
        let io = TokioIo::new(TimedIo::new(
            io,
            state.clone(),
            timeouts,
            framing,
            head_deadline,
        ));
        let live = self.edge.clone();
        let draining = self.draining.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let edge = live.current();
            let state = state.clone();
            state.request_started();
            let draining = draining.clone();
            async move {
                let mut resp = edge.handle(req, &info).await;
                if draining.load(std::sync::atomic::Ordering::Acquire) {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(resp.map(|b| FinishNotify {
                    inner: b,
                    state: Some(state),
                }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true)
            .max_headers(self.limits.max_headers)
            .max_header_size(self.limits.max_header_bytes)
            .max_buf_size(self.h1_max_buf());
        let conn = builder.serve_connection(io, service);
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(peer = %info.peer, error = %e, "HTTP/1 connection ended with an error.");
        }
    }

    /// hyper's HTTP/1 read-buffer ceiling: a head plus room for the start
    /// of a body.
    fn h1_max_buf(&self) -> usize {
        self.limits.max_header_bytes.max(8192) + 8192
    }

    /// Serves one h2 connection until it ends. It is closed (GOAWAY, then
    /// the streams in flight finish) when the edge drains, and when it has
    /// had no stream for `idle_timeout` (`header_read_timeout` before its
    /// first stream): hyper's pings alone would keep a silent client's
    /// connection, and its descriptor, forever.
    async fn serve_h2<I>(&self, io: I, info: ConnInfo)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let _open = OpenCount::new(&self.h2_open);
        let activity = Arc::new(StreamActivity::new());
        let live = self.edge.clone();
        let streams = Arc::clone(&activity);
        let service = service_fn(move |req: Request<Incoming>| {
            let edge = live.current();
            let guard = StreamActivity::start(&streams);
            async move {
                let resp = edge.handle(req, &info).await;
                Ok::<_, Infallible>(resp.map(|b| crate::body::with_guard(b, Some(guard))))
            }
        });
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.limits.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(self.limits.idle_timeout))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_concurrent_streams(Some(256));
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut drain = self.drain.subscribe();
        let mut closing = false;
        // After a GOAWAY for idleness, a client that keeps the connection
        // open without streams is dropped at this point.
        let mut hard_stop = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let (first, idle) = (self.limits.header_read_timeout, self.limits.idle_timeout);
        loop {
            let idle_at = activity.idle_deadline(first, idle);
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(peer = %info.peer, error = %e, "HTTP/2 connection ended with an error.");
                    }
                    break;
                }
                _ = drain.wait_for(|d| *d), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = tokio::time::sleep_until(idle_at), if !closing => {
                    if activity.is_idle(first, idle) {
                        if !activity.started_any() {
                            // Not even a preface and SETTINGS: nothing to say goodbye to.
                            tracing::debug!(peer = %info.peer, "HTTP/2 connection sent no request within the header timeout; closed.");
                            break;
                        }
                        tracing::debug!(peer = %info.peer, "Idle HTTP/2 connection closed.");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        hard_stop = tokio::time::Instant::now() + first;
                    }
                }
                () = tokio::time::sleep_until(hard_stop), if closing => {
                    if activity.open() == 0 {
                        break;
                    }
                    hard_stop = tokio::time::Instant::now() + first;
                }
            }
        }
    }
}

/// Counts an open h2 connection while alive.
struct OpenCount(Arc<std::sync::atomic::AtomicUsize>);

impl OpenCount {
    fn new(n: &Arc<std::sync::atomic::AtomicUsize>) -> OpenCount {
        n.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        OpenCount(Arc::clone(n))
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Streams of one h2 connection: how many are open, and since when the
/// connection has had none.
#[derive(Debug)]
struct StreamActivity {
    open: std::sync::atomic::AtomicUsize,
    started_any: std::sync::atomic::AtomicBool,
    /// Milliseconds after `epoch` of the last stream start or end.
    last_ms: std::sync::atomic::AtomicU64,
    epoch: tokio::time::Instant,
}

impl StreamActivity {
    fn new() -> StreamActivity {
        StreamActivity {
            open: Default::default(),
            started_any: Default::default(),
            last_ms: Default::default(),
            epoch: tokio::time::Instant::now(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Release);
    }

    /// A stream began; the guard ends it when its response body is done.
    fn start(this: &Arc<StreamActivity>) -> StreamGuard {
        this.open.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        this.started_any
            .store(true, std::sync::atomic::Ordering::Release);
        this.touch();
        StreamGuard(Arc::clone(this))
    }

    fn started_any(&self) -> bool {
        self.started_any.load(std::sync::atomic::Ordering::Acquire)
    }

    fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }

    fn limit(&self, first: Duration, idle: Duration) -> Duration {
        if self.started_any.load(std::sync::atomic::Ordering::Acquire) {
            idle
        } else {
            first
        }
    }

    fn idle_deadline(&self, first: Duration, idle: Duration) -> tokio::time::Instant {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Acquire));
        self.epoch + last + self.limit(first, idle)
    }

    fn is_idle(&self, first: Duration, idle: Duration) -> bool {
        self.open.load(std::sync::atomic::Ordering::Acquire) == 0
            && tokio::time::Instant::now() >= self.idle_deadline(first, idle)
    }
}

/// Ends a stream of [`StreamActivity`] when dropped.
struct StreamGuard(Arc<StreamActivity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Accept errors: per-connection ones are skipped, resource exhaustion
/// (no descriptors, no memory) pauses accepting with a growing delay, and
/// both are logged once per burst rather than once per attempt.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Duration,
    failures: u64,
    logged_at: Option<std::time::Instant>,
    capacity_logged_at: Option<std::time::Instant>,
}

/// Shortest and longest pause after an accept ran out of resources.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this interval for a burst of accept failures.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptBackoff {
    fn accepted(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "Accepting connections again.");
        }
        self.pause = Duration::ZERO;
        self.failures = 0;
        self.logged_at = None;
    }

    /// How long to pause after `e`, if at all.
    fn failed(&mut self, e: &std::io::Error) -> Option<Duration> {
        use std::io::ErrorKind;
        if matches!(
            e.kind(),
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
        ) {
            return None; // that connection only
        }
        self.failures += 1;
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(error = %e, failures = self.failures, "Accept failed (out of file descriptors?); pausing accepts, open connections are still served.");
            self.logged_at = Some(std::time::Instant::now());
        }
        self.pause = (self.pause * 2).clamp(ACCEPT_PAUSE_MIN, ACCEPT_PAUSE_MAX);
        Some(self.pause)
    }

    fn at_capacity(&mut self, cap: usize) {
        if self
            .capacity_logged_at
            .is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(cap, "server.max_client_connections reached; new connections wait in the listen backlog.");
            self.capacity_logged_at = Some(std::time::Instant::now());
        }
    }
}

/// What the first bytes of a plaintext connection say.
#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    /// The h2 preface: prior-knowledge h2c.
    H2,
    /// Anything else: HTTP/1.
    Http1,
    /// Nothing before the deadline, or the client closed.
    Nothing,
}

/// Looks at the first bytes without consuming them, until `deadline`: the
/// h2 preface means prior-knowledge h2c. Every wait is bounded by the
/// deadline (a readiness that turns out spurious must not leave the peek
/// waiting forever).
async fn sniff_h2(stream: &TcpStream, deadline: tokio::time::Instant) -> Sniffed {
    let sniff = async {
        let mut buf = [0u8; 24];
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(n) => n,
                Err(_) => return Sniffed::Nothing,
            };
            if n == 0 {
                return Sniffed::Nothing;
            }
            if buf[..n] != H2_PREFACE[..n] {
                return Sniffed::Http1;
            }
            if n == H2_PREFACE.len() {
                return Sniffed::H2;
            }
            // A partial preface: wait for the rest (rare; clients send it in one packet).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout_at(deadline, sniff)
        .await
        .unwrap_or(Sniffed::Nothing)
}

/// Response body that tells the connection's timers when the response ended.
struct FinishNotify {
    inner: EdgeBody,
    state: Option<Arc<HeadState>>,
}

impl Body for FinishNotify {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for FinishNotify {
    fn drop(&mut self) {
        if let Some(s) = self.state.take() {
            s.request_finished();
        }
    }
}
