//! A backend's connection pool: a hard cap on open connections and a fair
//! FIFO queue (tokio's semaphore is FIFO) with a timeout for clients
//! waiting for one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{BackendConfig, BackendConn};
use crate::error::BackendError;

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
}

/// The pool of one backend server.
#[derive(Debug)]
pub struct Pool {
    pub(crate) cfg: BackendConfig,
    max: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<BackendConn>>,
    queue_timeout: Duration,
    /// Counters.
    pub stats: PoolStats,
}

/// A connection in use: it holds a permit until it is returned or dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) conn: BackendConn,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool of at most `max` connections to `cfg.addr`.
    pub fn new(cfg: BackendConfig, max: usize, queue_timeout: Duration) -> Self {
        Self {
            cfg,
            max,
            permits: Arc::new(Semaphore::new(max)),
            idle: Mutex::new(Vec::new()),
            queue_timeout,
            stats: PoolStats::default(),
        }
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits (FIFO, up to the queue timeout) for a free slot, then takes an
    /// idle connection or opens one.
    pub(crate) async fn acquire(&self) -> Result<Lease, BackendError> {
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
        // The most recently used connection first: its buffers are warm and
        // older ones may idle out.
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = BackendConn::connect(&self.cfg).await?;
                self.stats.open.fetch_add(1, Ordering::Relaxed);
                self.stats.opened_total.fetch_add(1, Ordering::Relaxed);
                c
            }
        };
        Ok(Lease {
            conn,
            _permit: permit,
        })
    }

    /// Returns a connection whose session is clean.
    pub(crate) fn release(&self, lease: Lease) {
        self.idle.lock().push(lease.conn);
    }

    /// Closes a connection (broken, or holding state no one may inherit).
    pub(crate) fn discard(&self, lease: Lease) {
        drop(lease);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}
