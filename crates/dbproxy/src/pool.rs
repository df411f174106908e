//! One server: its connection pool (a hard cap on open connections and a
//! fair FIFO queue, tokio's semaphore being FIFO, with a timeout for
//! clients waiting for one) and its health as last seen by the monitor or
//! by a failed connect.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{BackendConfig, BackendConn};
use crate::error::BackendError;
use crate::metrics::Metrics;

/// Counters of one pool, for tests and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections open now (idle + in use).
    pub open: AtomicUsize,
    /// Connections ever opened.
    pub opened_total: AtomicU64,
    /// Clients refused after waiting the queue timeout.
    pub queue_timeouts_total: AtomicU64,
    /// Backends reset before reuse.
    pub resets_total: AtomicU64,
    /// Backends closed because their client left holding user locks.
    pub closed_with_locks_total: AtomicU64,
    /// Statements (and other commands) run here.
    pub statements_total: AtomicU64,
}

/// `read_only` as last read: unknown until the first check.
pub(crate) const RO_UNKNOWN: u8 = 0;
pub(crate) const RO_OFF: u8 = 1;
pub(crate) const RO_ON: u8 = 2;

/// What the monitor (and failed connects) know of a server.
#[derive(Debug)]
pub(crate) struct Health {
    /// The last check or connect succeeded.
    pub(crate) up: AtomicBool,
    /// `RO_*`.
    pub(crate) read_only: AtomicU8,
    /// Replication lag in ms; -1 unknown (stopped, NULL, not checked).
    pub(crate) lag_ms: AtomicI64,
}

/// The pool of one backend server.
#[derive(Debug)]
pub struct Pool {
    pub(crate) cfg: BackendConfig,
    /// Position in the configuration: 0 the configured writer, then readers.
    pub(crate) index: usize,
    /// Configured as a reader.
    pub(crate) reader: bool,
    max: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<BackendConn>>,
    queue_timeout: Duration,
    pub(crate) health: Health,
    metrics: Arc<Metrics>,
    /// Counters.
    pub stats: PoolStats,
}

/// A connection in use: it holds a permit until it is returned or dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) conn: BackendConn,
    pub(crate) pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Returns a connection whose session is clean.
    pub(crate) fn release(self) {
        let pool = self.pool.clone();
        pool.idle.lock().push(self.conn);
    }

    /// Closes a connection (broken, or holding state no one may inherit).
    pub(crate) fn discard(self) {
        let pool = self.pool.clone();
        drop(self);
        pool.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// A pool of at most `max` connections to `cfg.addr`.
    pub(crate) fn new(
        cfg: BackendConfig,
        index: usize,
        reader: bool,
        max: usize,
        queue_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cfg,
            index,
            reader,
            max,
            permits: Arc::new(Semaphore::new(max)),
            idle: Mutex::new(Vec::new()),
            queue_timeout,
            health: Health {
                up: AtomicBool::new(true),
                read_only: AtomicU8::new(RO_UNKNOWN),
                lag_ms: AtomicI64::new(-1),
            },
            metrics,
            stats: PoolStats::default(),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.cfg.addr
    }

    /// Waits (FIFO, up to the queue timeout) for a free slot, then takes an
    /// idle connection or opens one.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Lease, BackendError> {
        let start = Instant::now();
        let permit =
            match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(p)) => p,
                _ => {
                    self.stats
                        .queue_timeouts_total
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(BackendError::QueueTimeout);
                }
            };
        self.metrics.queue_wait(&self.cfg.addr, start.elapsed());
        self.lease(permit).await
    }

    /// A lease only if a slot is free now: the monitor never queues behind
    /// clients (a busy pool is a live server).
    pub(crate) async fn try_acquire(self: &Arc<Self>) -> Option<Result<Lease, BackendError>> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.lease(permit).await)
    }

    async fn lease(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Result<Lease, BackendError> {
        // The most recently used connection first: its buffers are warm and
        // older ones may idle out.
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(c) => c,
            None => match BackendConn::connect(&self.cfg).await {
                Ok(c) => {
                    self.stats.open.fetch_add(1, Ordering::Relaxed);
                    self.stats.opened_total.fetch_add(1, Ordering::Relaxed);
                    self.health.up.store(true, Ordering::Relaxed);
                    c
                }
                Err(e) => {
                    self.mark_down();
                    return Err(e);
                }
            },
        };
        Ok(Lease {
            conn,
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// The server failed: no reads go here until a check succeeds, and its
    /// idle connections (likely dead too) are closed.
    pub(crate) fn mark_down(&self) {
        self.health.up.store(false, Ordering::Relaxed);
        let drained = std::mem::take(&mut *self.idle.lock());
        self.stats.open.fetch_sub(drained.len(), Ordering::Relaxed);
    }

    /// Closes the idle connections: one failed mid-use, so the server may
    /// have restarted and the others be dead too.
    pub(crate) fn drain_idle(&self) {
        let drained = std::mem::take(&mut *self.idle.lock());
        self.stats.open.fetch_sub(drained.len(), Ordering::Relaxed);
    }

    pub(crate) fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Relaxed)
    }

    pub(crate) fn read_only(&self) -> u8 {
        self.health.read_only.load(Ordering::Relaxed)
    }

    /// Replication lag as last read (`None`: unknown, e.g. replication
    /// stopped, or not checked yet).
    pub fn replica_lag(&self) -> Option<Duration> {
        self.lag()
    }

    /// True when the server answered its last check.
    pub fn up(&self) -> bool {
        self.is_up()
    }

    /// Replication lag, when known.
    pub(crate) fn lag(&self) -> Option<Duration> {
        let ms = self.health.lag_ms.load(Ordering::Relaxed);
        u64::try_from(ms).ok().map(Duration::from_millis)
    }
}
