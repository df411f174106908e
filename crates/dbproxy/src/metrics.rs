//! Prometheus metrics, `magestack_dbproxy_*`, encoded with the
//! `prometheus-client` crate as the edge's are. Counters are updated on the
//! hot path (atomics, no lock); per-server gauges are read from the pools at
//! scrape time. Labels are bounded: server addresses from the
//! configuration, fixed words for routes, reasons and error kinds.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use magestack_mysql_proto::PinReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Where a statement was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The writer, by the rules (a write, a transaction, a lock, …).
    Writer,
    /// A reader.
    Reader,
    /// Read-eligible, but the writer: a writer-only table or the
    /// read-your-writes window.
    WriterKept,
    /// Read-eligible, but no reader was usable (down, lagging, failed).
    ReaderFallback,
    /// The session's pinned backend.
    Pinned,
}

impl Decision {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Writer => "writer",
            Self::Reader => "reader",
            Self::WriterKept => "writer_kept",
            Self::ReaderFallback => "reader_fallback",
            Self::Pinned => "pinned",
        }
    }
}

/// Errors and recoveries, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// A client waited the queue timeout (1040).
    QueueTimeout,
    /// No backend could be reached (2003).
    BackendUnavailable,
    /// A pinned backend was lost (1213 sent).
    PinnedBackendLost,
    /// An unpinned statement was retried on another backend.
    Retried,
    /// A statement hit a read-only writer and was retried on the new one.
    ReadOnlyRetried,
    /// A read-only error reached the client (in a transaction, or no new writer).
    ReadOnly,
    /// A client failed authentication (1045).
    AuthFailed,
    /// A command the proxy does not support.
    UnknownCommand,
    /// A backend connection broke mid-response (the client's connection closes).
    BrokenMidResponse,
}

impl ErrorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::QueueTimeout => "queue_timeout",
            Self::BackendUnavailable => "backend_unavailable",
            Self::PinnedBackendLost => "pinned_backend_lost",
            Self::Retried => "retried",
            Self::ReadOnlyRetried => "read_only_retried",
            Self::ReadOnly => "read_only",
            Self::AuthFailed => "auth_failed",
            Self::UnknownCommand => "unknown_command",
            Self::BrokenMidResponse => "broken_mid_response",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ServerLabel {
    pub(crate) server: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerRoleLabel {
    server: String,
    role: &'static str,
}

/// Queue wait buckets, seconds: a free connection (well under 1 ms) to the
/// default queue timeout.
const WAIT_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The proxy's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    clients: Gauge,
    clients_total: Counter,
    routes: Family<RouteLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    pinned: Family<ReasonLabel, Gauge>,
    queue_wait: Family<ServerLabel, Histogram>,
    backends: Family<ServerLabel, Gauge>,
    backends_opened: Family<ServerLabel, Gauge>,
    up: Family<ServerLabel, Gauge>,
    role: Family<ServerRoleLabel, Gauge>,
    lag: Family<ServerLabel, Gauge<f64, AtomicU64>>,
    writer_changes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("magestack_dbproxy");
        let m = Self {
            registry: Registry::default(),
            clients: Gauge::default(),
            clients_total: Counter::default(),
            routes: Family::default(),
            errors: Family::default(),
            pinned: Family::default(),
            queue_wait: Family::new_with_constructor(|| {
                Histogram::new(WAIT_BUCKETS.iter().copied())
            }),
            backends: Family::default(),
            backends_opened: Family::default(),
            up: Family::default(),
            role: Family::default(),
            lag: Family::default(),
            writer_changes: Counter::default(),
        };
        registry.register(
            "client_connections",
            "Client connections open now",
            m.clients.clone(),
        );
        registry.register(
            "client_connections_accepted",
            "Client connections accepted",
            m.clients_total.clone(),
        );
        registry.register(
            "routing_decisions",
            "Statements by where they were sent",
            m.routes.clone(),
        );
        registry.register("errors", "Errors and recoveries by kind", m.errors.clone());
        registry.register(
            "pinned_sessions",
            "Client sessions holding a backend connection, by reason (a session may have several)",
            m.pinned.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time a statement waited for a backend connection",
            m.queue_wait.clone(),
        );
        registry.register(
            "backend_connections",
            "Backend connections open now (idle and in use)",
            m.backends.clone(),
        );
        registry.register(
            "backend_connections_opened",
            "Backend connections opened since start",
            m.backends_opened.clone(),
        );
        registry.register(
            "server_up",
            "1 when the server answered its last check",
            m.up.clone(),
        );
        registry.register(
            "server_role",
            "1 for the role the server has now (writer or reader)",
            m.role.clone(),
        );
        registry.register(
            "replica_lag_seconds",
            "Replication lag read from the server (-1: unknown, e.g. replication stopped)",
            m.lag.clone(),
        );
        registry.register(
            "writer_changes",
            "Times writer detection moved the writer",
            m.writer_changes.clone(),
        );
        Self { registry, ..m }
    }

    pub(crate) fn client_opened(&self) {
        self.clients.inc();
        self.clients_total.inc();
    }

    pub(crate) fn client_closed(&self) {
        self.clients.dec();
    }

    pub(crate) fn route(&self, d: Decision) {
        self.routes
            .get_or_create(&RouteLabel { route: d.as_str() })
            .inc();
    }

    pub(crate) fn error(&self, k: ErrorKind) {
        self.errors
            .get_or_create(&KindLabel { kind: k.as_str() })
            .inc();
    }

    /// Moves one session's pin reasons from `old` to `new` (bit masks over
    /// [`PinReason::ALL`]).
    pub(crate) fn pins_changed(&self, old: u16, new: u16) {
        for (i, r) in PinReason::ALL.iter().enumerate() {
            let bit = 1u16 << i;
            if old & bit != new & bit {
                let g = self
                    .pinned
                    .get_or_create(&ReasonLabel { reason: r.as_str() });
                if new & bit != 0 {
                    g.inc();
                } else {
                    g.dec();
                }
            }
        }
    }

    pub(crate) fn queue_wait(&self, server: &str, d: Duration) {
        self.queue_wait
            .get_or_create(&ServerLabel {
                server: server.to_owned(),
            })
            .observe(d.as_secs_f64());
    }

    pub(crate) fn writer_changed(&self) {
        self.writer_changes.inc();
    }

    /// Per-server gauges, set at scrape time.
    pub(crate) fn set_server(&self, s: &ServerView) {
        let l = ServerLabel {
            server: s.addr.clone(),
        };
        self.backends.get_or_create(&l).set(s.open as i64);
        self.backends_opened.get_or_create(&l).set(s.opened as i64);
        self.up.get_or_create(&l).set(i64::from(s.up));
        for role in ["writer", "reader"] {
            let on = (role == "writer") == s.writer;
            self.role
                .get_or_create(&ServerRoleLabel {
                    server: s.addr.clone(),
                    role,
                })
                .set(i64::from(on));
        }
        self.lag
            .get_or_create(&l)
            .set(s.lag_ms.map_or(-1.0, |ms| ms as f64 / 1000.0));
    }

    /// The Prometheus text.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The bit mask of `reasons` over [`PinReason::ALL`].
pub(crate) fn pin_mask(reasons: &[PinReason]) -> u16 {
    reasons.iter().fold(0, |m, r| {
        m | PinReason::ALL
            .iter()
            .position(|x| x == r)
            .map_or(0, |i| 1u16 << i)
    })
}

/// One server as `/backends` and the metrics show it.
#[derive(Debug, Clone)]
pub(crate) struct ServerView {
    pub(crate) addr: String,
    pub(crate) configured: &'static str,
    pub(crate) writer: bool,
    pub(crate) up: bool,
    pub(crate) read_only: Option<bool>,
    pub(crate) lag_ms: Option<u64>,
    pub(crate) reads_eligible: bool,
    pub(crate) open: usize,
    pub(crate) opened: u64,
    pub(crate) max: usize,
    pub(crate) statements: u64,
}
