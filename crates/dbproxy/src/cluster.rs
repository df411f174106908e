//! The servers behind the proxy: which one is the writer, which readers
//! may take reads, and the monitor that finds out.
//!
//! Every `check_interval` (or at once when a client saw a failure) each
//! server is asked `SELECT @@read_only` and, for readers, its replication
//! lag, on a connection of its own pool taken only when one is free: the
//! monitor opens no connection outside the cap, and a pool whose every
//! connection is busy is a live server. With writer detection, the writer
//! is the current one while it is up and writable, else the first server
//! (configured writer, then readers) that is: a promoted replica takes the
//! writes, and an old primary that comes back writable does not take them
//! back (two writable servers is the operator's to settle, not a flip-flop).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use magestack_mysql_proto::TableMatcher;
use parking_lot::RwLock;
use tokio::sync::{watch, Notify};

use crate::backend::BackendConn;
use crate::metrics::{Metrics, ServerView};
use crate::pool::{Pool, RO_OFF, RO_ON, RO_UNKNOWN};

/// ER_PARSE_ERROR: `SHOW REPLICA STATUS` on a server that only knows
/// `SHOW SLAVE STATUS`.
const PARSE_ERROR: u16 = 1064;

/// Servers, roles and routing inputs.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) pools: Vec<Arc<Pool>>,
    writer: watch::Sender<usize>,
    detection: bool,
    rr: AtomicUsize,
    check_now: Notify,
    /// Routing settings that `SIGHUP` replaces.
    routing: RwLock<Arc<Routing>>,
    metrics: Arc<Metrics>,
}

/// Routing settings, replaced whole on reload.
#[derive(Debug)]
pub(crate) struct Routing {
    pub(crate) read_your_writes: Duration,
    pub(crate) max_lag: Duration,
    pub(crate) tables: TableMatcher,
}

impl Cluster {
    pub(crate) fn new(
        pools: Vec<Arc<Pool>>,
        detection: bool,
        routing: Routing,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pools,
            writer: watch::Sender::new(0),
            detection,
            rr: AtomicUsize::new(0),
            check_now: Notify::new(),
            routing: RwLock::new(Arc::new(routing)),
            metrics,
        }
    }

    /// The routing settings now.
    pub(crate) fn routing(&self) -> Arc<Routing> {
        self.routing.read().clone()
    }

    /// Replaces the routing settings (`SIGHUP`).
    pub(crate) fn set_routing(&self, r: Routing) {
        *self.routing.write() = Arc::new(r);
    }

    /// True when there are readers: the read/write split is on.
    pub(crate) fn has_readers(&self) -> bool {
        self.pools.iter().any(|p| p.reader)
    }

    pub(crate) fn writer_index(&self) -> usize {
        *self.writer.borrow()
    }

    /// The writer's pool.
    pub(crate) fn writer(&self) -> Arc<Pool> {
        self.pools[self.writer_index().min(self.pools.len() - 1)].clone()
    }

    /// A writer that answered its last check and is writable (or not
    /// checked yet): `/readyz`.
    pub(crate) fn writer_ready(&self) -> bool {
        let w = self.writer();
        w.is_up() && w.read_only() != RO_ON
    }

    fn reads_eligible(&self, p: &Pool) -> bool {
        let max_lag = self.routing.read().max_lag;
        p.reader
            && p.index != self.writer_index()
            && p.is_up()
            && p.lag().is_some_and(|l| l <= max_lag)
    }

    /// A reader for one read, round robin over those up and within the lag
    /// bound; `None` sends the read to the writer.
    pub(crate) fn reader(&self) -> Option<Arc<Pool>> {
        let n = self.pools.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.pools[(start + i) % n])
            .find(|p| self.reads_eligible(p))
            .cloned()
    }

    /// Asks the monitor to check now (a client saw a failure).
    pub(crate) fn check_soon(&self) {
        self.check_now.notify_one();
    }

    /// After the writer at `old` failed or refused a write as read-only:
    /// waits up to `wait` for detection to name another writer.
    pub(crate) async fn wait_new_writer(&self, old: usize, wait: Duration) -> Option<Arc<Pool>> {
        if !self.detection {
            return None;
        }
        self.check_soon();
        let mut rx = self.writer.subscribe();
        let changed = tokio::time::timeout(wait, rx.wait_for(|w| *w != old)).await;
        match changed {
            Ok(Ok(_)) => Some(self.writer()),
            _ => None,
        }
    }

    /// The monitor: checks every `interval`, or sooner when asked.
    pub(crate) async fn monitor(self: Arc<Self>, interval: Duration) {
        loop {
            self.check_all().await;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.check_now.notified() => {
                    // Coalesce a burst of requests from many clients.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// One round: every server checked concurrently, then the election.
    pub(crate) async fn check_all(&self) {
        let mut set = tokio::task::JoinSet::new();
        for p in &self.pools {
            set.spawn(check(p.clone()));
        }
        while set.join_next().await.is_some() {}
        self.elect();
    }

    fn elect(&self) {
        if !self.detection {
            return;
        }
        let cur = self.writer_index();
        let ok = |p: &Pool| p.is_up() && p.read_only() == RO_OFF;
        if ok(&self.pools[cur]) {
            return;
        }
        if let Some(next) = self.pools.iter().position(|p| ok(p)) {
            tracing::warn!(
                from = %self.pools[cur].addr(),
                to = %self.pools[next].addr(),
                "Writer changed: the old writer is down or read-only."
            );
            self.metrics.writer_changed();
            self.writer.send_replace(next);
        }
    }

    /// Every server, for `/backends` and the metrics.
    pub(crate) fn view(&self) -> Vec<ServerView> {
        let w = self.writer_index();
        self.pools
            .iter()
            .map(|p| ServerView {
                addr: p.addr().to_owned(),
                configured: if p.reader { "reader" } else { "writer" },
                writer: p.index == w,
                up: p.is_up(),
                read_only: match p.read_only() {
                    RO_UNKNOWN => None,
                    ro => Some(ro == RO_ON),
                },
                lag_ms: p.lag().map(|d| d.as_millis() as u64),
                reads_eligible: self.reads_eligible(p),
                open: p.stats.open.load(Ordering::Relaxed),
                opened: p.stats.opened_total.load(Ordering::Relaxed),
                max: p.max(),
                statements: p.stats.statements_total.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Checks one server on a free pooled connection (none free: busy, alive).
async fn check(p: Arc<Pool>) {
    let Some(lease) = p.try_acquire().await else {
        return;
    };
    let Ok(mut lease) = lease else {
        // try_acquire marked it down.
        return;
    };
    let conn = &mut lease.conn;
    let ro = match conn.query_rows("SELECT @@global.read_only").await {
        Ok(Ok(rows)) => rows.rows.first().and_then(|r| r.first().cloned().flatten()),
        Ok(Err(e)) => {
            tracing::debug!(server = %p.addr(), code = e.code, "read_only check refused.");
            None
        }
        Err(e) => {
            tracing::warn!(server = %p.addr(), error = %e, "Server check failed.");
            lease.discard();
            p.mark_down();
            return;
        }
    };
    let ro = match ro.as_deref() {
        Some("0") | Some("OFF") => RO_OFF,
        Some(_) => RO_ON,
        None => RO_UNKNOWN,
    };
    p.health.read_only.store(ro, Ordering::Relaxed);
    if p.reader {
        match replica_lag(conn).await {
            Ok(lag) => p.health.lag_ms.store(
                lag.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                Ordering::Relaxed,
            ),
            Err(e) => {
                tracing::warn!(server = %p.addr(), error = %e, "Server check failed.");
                lease.discard();
                p.mark_down();
                return;
            }
        }
    }
    p.health.up.store(true, Ordering::Relaxed);
    lease.release();
}

/// Replication lag: MariaDB/MySQL replica status (`Seconds_Behind_Master`,
/// or `_Source` on MySQL 8.0.22+; NULL when replication is stopped:
/// unknown), else Aurora's `replica_host_status` for this instance, else
/// (no replication at all) zero.
async fn replica_lag(conn: &mut BackendConn) -> Result<Option<Duration>, crate::IoError> {
    let mut rows = conn.query_rows("SHOW REPLICA STATUS").await?;
    if matches!(&rows, Err(e) if e.code == PARSE_ERROR) {
        rows = conn.query_rows("SHOW SLAVE STATUS").await?;
    }
    if let Ok(rows) = &rows {
        if let Some(v) = rows.first(&["Seconds_Behind_Master", "Seconds_Behind_Source"]) {
            return Ok(v
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs));
        }
    }
    let aurora = conn
        .query_rows(
            "SELECT REPLICA_LAG_IN_MILLISECONDS FROM information_schema.REPLICA_HOST_STATUS \
             WHERE SERVER_ID = @@aurora_server_id",
        )
        .await?;
    Ok(match aurora {
        Ok(r) => match r.rows.first().and_then(|row| row.first()) {
            Some(v) => v
                .as_deref()
                .and_then(|s| s.parse::<f64>().ok())
                .map(|ms| Duration::from_millis(ms.max(0.0) as u64)),
            None => Some(Duration::ZERO),
        },
        Err(_) => Some(Duration::ZERO),
    })
}
