//! `magestack dbproxy`: the MySQL proxy in front of Magento's database, the
//! tokio shell around the sans-IO core in `magestack_mysql_proto`.
//!
//! What it does today:
//!
//! * Accepts MySQL clients, checks their user and password itself
//!   (`mysql_native_password`, or `caching_sha2_password`; any other plugin
//!   is switched to native), and logs in to the backend with
//!   the same credentials.
//! * Multiplexes: a client holds a backend connection only while a command
//!   runs, unless its session is pinned (see
//!   [`magestack_mysql_proto::session`]): open transaction (from the
//!   server's status flags), `GET_LOCK` held, temporary table, `LOCK
//!   TABLES`, user variables, prepared statements, unreplayable `SET`s, or a
//!   state change reported by session tracking that the classifier did not
//!   foresee.
//! * Caps each backend at `max_backend_connections` with a fair FIFO queue
//!   and a timeout (then error 1040 naming the proxy).
//! * Replays the client's session (schema, Magento's `SET SQL_MODE`,
//!   `time_zone`, `NAMES` and other listed variables, multi-statements
//!   option) on a borrowed backend only when it differs.
//! * When a client leaves while pinned, resets its backend
//!   (`COM_RESET_CONNECTION`) before reuse, or closes it when `GET_LOCK`
//!   locks are held.
//!
//! * Splits reads from writes when readers are given: autocommit reads
//!   without locking clauses, lock functions or writer-only tables, outside
//!   the session's read-your-writes window, go to a reader within the lag
//!   bound; everything else to the writer ([`cluster`] picks them).
//! * Finds the writer by `read_only` and retries a statement that hit a
//!   demoted or lost writer outside a transaction once on the new one.
//! * Serves `/healthz`, `/readyz`, `/metrics`, `/backends` and `/digests`
//!   on an admin listener.
//!
//! * TLS to the servers (verified against a CA bundle) and from clients that
//!   ask for it; `caching_sha2_password` full authentication both ways,
//!   inside TLS or with the RSA key exchange over plain TCP.
//!
//! * `COM_CHANGE_USER`: a new login on the connection, checked like the
//!   first; the old session ends as if its client had left.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod admin;
mod backend;
mod client;
mod cluster;
mod digest;
pub mod error;
mod io;
mod metrics;
mod pool;
mod rsa_auth;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use magestack_mysql_proto::TableMatcher;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use backend::BackendConfig;
pub use error::{BackendError, IoError};
pub use pool::{Pool, PoolStats};
pub use tls::{BackendTls, ClientTls, TlsError};

use crate::cluster::{Cluster, Routing};
use crate::digest::Digests;
use crate::metrics::Metrics;

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The writer and how to log in to it (and to the readers).
    pub backend: BackendConfig,
    /// Readers, `host:port`: the read/write split is on when not empty.
    pub readers: Vec<String>,
    /// Find the writer by `read_only = 0` among the writer and readers.
    pub writer_detection: bool,
    /// Hard cap on connections to each server.
    pub max_backend_connections: usize,
    /// Most client connections at once.
    pub max_client_connections: usize,
    /// How long a client waits for a backend connection before error 1040.
    pub queue_timeout: Duration,
    /// Reads go to the writer this long after the session wrote.
    pub read_your_writes: Duration,
    /// A reader lagging more gets no reads.
    pub max_replica_lag: Duration,
    /// Server checks (read_only, lag) this often.
    pub check_interval: Duration,
    /// Tables never read from a reader (patterns, `*` = prefix).
    pub writer_only_tables: Vec<String>,
    /// Entries of the `/digests` table.
    pub digests_max: usize,
    /// TLS offered to clients (`None`: not offered).
    pub client_tls: Option<ClientTls>,
    /// Ask `caching_sha2_password` clients for full authentication (their
    /// password: in clear inside TLS, else RSA-encrypted under the proxy's
    /// key), as a MySQL 8 server does when its cache is cold, instead of
    /// accepting the scramble answer. Off by default: the proxy knows the
    /// password, so the scramble answer already proves it.
    pub client_full_auth: bool,
}

impl ProxyConfig {
    /// The defaults of `[dbproxy]` around a writer (no readers).
    pub fn new(backend: BackendConfig) -> Self {
        Self {
            backend,
            readers: Vec::new(),
            writer_detection: true,
            max_backend_connections: 20,
            max_client_connections: 10_000,
            queue_timeout: Duration::from_secs(5),
            read_your_writes: Duration::from_secs(5),
            max_replica_lag: Duration::from_secs(5),
            check_interval: Duration::from_secs(1),
            writer_only_tables: Vec::new(),
            digests_max: 1000,
            client_tls: None,
            client_full_auth: false,
        }
    }
}

/// The settings a running proxy can change without a restart.
#[derive(Debug, Clone)]
pub struct Tunables {
    /// See [`ProxyConfig::read_your_writes`].
    pub read_your_writes: Duration,
    /// See [`ProxyConfig::max_replica_lag`].
    pub max_replica_lag: Duration,
    /// See [`ProxyConfig::writer_only_tables`].
    pub writer_only_tables: Vec<String>,
}

/// State shared by every client task.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: ProxyConfig,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    digests: Digests,
    next_id: AtomicU32,
    version: Mutex<Vec<u8>>,
    clients: Arc<Semaphore>,
    /// The RSA key pair of `caching_sha2_password` full authentication over
    /// plain TCP, made when a client first needs it.
    rsa_key: tokio::sync::OnceCell<Arc<rsa_auth::ProxyKey>>,
    /// Collation id → `SET NAMES` text (`charset COLLATE collation`), as
    /// the writer listed them at start (else [`FALLBACK_COLLATIONS`]).
    collations: Vec<Option<Box<str>>>,
}

/// The collations clients commonly log in with, for a writer that was down
/// when the proxy started (the ids MySQL and MariaDB share).
const FALLBACK_COLLATIONS: &[(u8, &str, &str)] = &[
    (8, "latin1", "latin1_swedish_ci"),
    (33, "utf8mb3", "utf8mb3_general_ci"),
    (45, "utf8mb4", "utf8mb4_general_ci"),
    (46, "utf8mb4", "utf8mb4_bin"),
    (47, "latin1", "latin1_bin"),
    (63, "binary", "binary"),
    (83, "utf8mb3", "utf8mb3_bin"),
    (192, "utf8mb3", "utf8mb3_unicode_ci"),
    (224, "utf8mb4", "utf8mb4_unicode_ci"),
];

/// The id → `SET NAMES` table from `information_schema.COLLATIONS` rows
/// (`ID`, `CHARACTER_SET_NAME`, `COLLATION_NAME`), or the fallback.
fn collation_table(rows: Option<&backend::Rows>) -> Vec<Option<Box<str>>> {
    let mut t: Vec<Option<Box<str>>> = vec![None; 256];
    let names = |cs: &str, co: &str| Some(format!("{cs} COLLATE {co}").into_boxed_str());
    match rows {
        Some(rows) if !rows.rows.is_empty() => {
            for r in &rows.rows {
                if let [Some(id), Some(cs), Some(co)] = &r[..] {
                    if let Ok(id) = id.parse::<u8>() {
                        t[usize::from(id)] = names(cs, co);
                    }
                }
            }
        }
        _ => {
            for (id, cs, co) in FALLBACK_COLLATIONS {
                t[usize::from(*id)] = names(cs, co);
            }
        }
    }
    t
}

impl Shared {
    fn server_version(&self) -> Vec<u8> {
        self.version.lock().clone()
    }

    /// The `SET NAMES` text of a client's login collation, `None` for one
    /// the writer does not know (the session keeps the login default, as a
    /// server falls back to its own).
    fn login_names(&self, collation: u16) -> Option<&str> {
        self.collations
            .get(usize::from(collation))
            .and_then(|c| c.as_deref())
    }

    /// The proxy's RSA key pair, generated on first use (off the reactor).
    async fn rsa_key(&self) -> Result<Arc<rsa_auth::ProxyKey>, String> {
        self.rsa_key
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(rsa_auth::ProxyKey::generate)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(Arc::new)
            })
            .await
            .cloned()
    }
}

/// A running proxy's handle.
#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

/// Shown to clients until the writer was reached once: MariaDB's
/// compatibility prefix, so clients enable the 4.1+ protocol.
const DEFAULT_VERSION: &[u8] = b"5.5.5-10.11-magestack-dbproxy";

impl Proxy {
    /// A proxy for `cfg`. Connects once to the writer to learn its version
    /// (shown to clients; a writer that is down is not an error here),
    /// checks every server once, and starts the monitor.
    pub async fn new(cfg: ProxyConfig) -> Self {
        let metrics = Arc::new(Metrics::new());
        let mut pools = Vec::with_capacity(1 + cfg.readers.len());
        let addrs = std::iter::once(&cfg.backend.addr).chain(cfg.readers.iter());
        for (i, addr) in addrs.enumerate() {
            let mut b = cfg.backend.clone();
            b.addr.clone_from(addr);
            pools.push(Arc::new(Pool::new(
                b,
                i,
                i > 0,
                cfg.max_backend_connections,
                cfg.queue_timeout,
                metrics.clone(),
            )));
        }
        let cluster = Arc::new(Cluster::new(
            pools,
            cfg.writer_detection,
            Routing {
                read_your_writes: cfg.read_your_writes,
                max_lag: cfg.max_replica_lag,
                tables: TableMatcher::new(&cfg.writer_only_tables),
            },
            metrics.clone(),
        ));
        cluster.check_all().await;
        let mut version = DEFAULT_VERSION.to_vec();
        let mut collations = None;
        let writer = cluster.writer();
        match writer.acquire().await {
            Ok(mut lease) => {
                version = lease.conn.version.clone();
                let sql = "SELECT ID, CHARACTER_SET_NAME, COLLATION_NAME \
                           FROM information_schema.COLLATIONS WHERE ID < 256";
                match lease.conn.query_rows(sql).await {
                    Ok(Ok(rows)) => {
                        collations = Some(rows);
                        lease.release();
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %String::from_utf8_lossy(&e.message), "Collations not listed.");
                        lease.release();
                    }
                    Err(_) => lease.discard(),
                }
            }
            Err(e) => tracing::warn!(error = %e, "Writer not reachable at start."),
        }
        tokio::spawn(cluster.clone().monitor(cfg.check_interval));
        let shared = Arc::new(Shared {
            digests: Digests::new(cfg.digests_max),
            clients: Arc::new(Semaphore::new(cfg.max_client_connections.max(1))),
            cfg,
            cluster,
            metrics,
            next_id: AtomicU32::new(1),
            version: Mutex::new(version),
            rsa_key: tokio::sync::OnceCell::new(),
            collations: collation_table(collations.as_ref()),
        });
        if shared.cfg.client_full_auth {
            // Every caching_sha2 client over plain TCP will need the key:
            // make it now rather than during the first login.
            let s = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = s.rsa_key().await {
                    tracing::error!(error = %e, "RSA key generation failed.");
                }
            });
        }
        Self { shared }
    }

    /// The current writer's pool (counters).
    pub fn writer(&self) -> Arc<Pool> {
        self.shared.cluster.writer()
    }

    /// Every server's pool, the configured writer first, then the readers.
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.shared.cluster.pools
    }

    /// Applies new routing settings (on `SIGHUP`): sessions see them from
    /// their next statement.
    pub fn reload(&self, t: Tunables) {
        self.shared.cluster.set_routing(Routing {
            read_your_writes: t.read_your_writes,
            max_lag: t.max_replica_lag,
            tables: TableMatcher::new(&t.writer_only_tables),
        });
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        admin::metrics_text(&self.shared)
    }

    /// True when a writer is reachable and writable (`/readyz`).
    pub fn ready(&self) -> bool {
        self.shared.cluster.writer_ready()
    }

    /// Serves the admin listener (`/healthz`, `/readyz`, `/metrics`,
    /// `/backends`, `/digests`) until the task is dropped.
    ///
    /// # Errors
    ///
    /// Only an accept error that is not per-connection.
    pub async fn serve_admin(self, listener: TcpListener) -> std::io::Result<()> {
        admin::serve(self.shared, listener).await
    }

    /// Accepts clients on `listener` until the task is dropped. At
    /// `max_client_connections` the next client waits in the backlog.
    ///
    /// # Errors
    ///
    /// Only an accept error that is not per-connection.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let Ok(permit) = self.shared.clients.clone().acquire_owned().await else {
                return Ok(());
            };
            let (stream, peer): (_, SocketAddr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                client::serve(shared, stream, peer).await;
                drop(permit);
            });
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error() == Some(24) // EMFILE: wait for descriptors to free up
        || e.raw_os_error() == Some(23)
}
