//! `magestack dbproxy`: the MySQL proxy in front of Magento's database, the
//! tokio shell around the sans-IO core in `magestack_mysql_proto`.
//!
//! What it does today:
//!
//! * Accepts MySQL clients, checks their user and password itself
//!   (`mysql_native_password`, or `caching_sha2_password`'s fast path; any
//!   other plugin is switched to native), and logs in to the backend with
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
//! Not yet: readers and the read/write split, writer detection and
//! failover, TLS, `COM_CHANGE_USER`, the admin listener and metrics.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod backend;
mod client;
pub mod error;
mod io;
mod pool;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;

pub use backend::BackendConfig;
pub use error::{BackendError, IoError};
pub use pool::{Pool, PoolStats};

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The writer and how to log in to it.
    pub backend: BackendConfig,
    /// Hard cap on backend connections.
    pub max_backend_connections: usize,
    /// How long a client waits for a backend connection before error 1040.
    pub queue_timeout: Duration,
}

/// State shared by every client task.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: ProxyConfig,
    writer: Arc<Pool>,
    next_id: AtomicU32,
    version: Mutex<Vec<u8>>,
}

impl Shared {
    fn server_version(&self) -> Vec<u8> {
        self.version.lock().clone()
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
    /// (shown to clients); a writer that is down is not an error here.
    pub async fn new(cfg: ProxyConfig) -> Self {
        let writer = Arc::new(Pool::new(
            cfg.backend.clone(),
            cfg.max_backend_connections,
            cfg.queue_timeout,
        ));
        let mut version = DEFAULT_VERSION.to_vec();
        match writer.acquire().await {
            Ok(lease) => {
                version = lease.conn.version.clone();
                writer.release(lease);
            }
            Err(e) => tracing::warn!(error = %e, "Writer not reachable at start."),
        }
        Self {
            shared: Arc::new(Shared {
                cfg,
                writer,
                next_id: AtomicU32::new(1),
                version: Mutex::new(version),
            }),
        }
    }

    /// The writer's pool (counters).
    pub fn writer(&self) -> &Pool {
        &self.shared.writer
    }

    /// Accepts clients on `listener` until the task is dropped.
    ///
    /// # Errors
    ///
    /// Only an accept error that is not per-connection.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer): (_, SocketAddr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            tokio::spawn(client::serve(self.shared.clone(), stream, peer));
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || e.raw_os_error() == Some(24) // EMFILE: wait for descriptors to free up
        || e.raw_os_error() == Some(23)
}
