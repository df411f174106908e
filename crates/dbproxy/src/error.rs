//! Errors of the proxy runtime.

use magestack_mysql_proto::handshake::BackendAuthError;
use magestack_mysql_proto::{FrameError, ParseError};

/// A connection-level failure on one side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// A socket error.
    #[error("socket")]
    Io(#[from] std::io::Error),
    /// Not MySQL framing within the limits.
    #[error("framing")]
    Frame(#[from] FrameError),
    /// A packet that does not parse.
    #[error("protocol")]
    Parse(#[from] ParseError),
}

/// Failure to get a usable backend connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// Connecting or talking to the backend failed.
    #[error("backend {addr}")]
    Io {
        /// The backend.
        addr: String,
        /// What failed.
        #[source]
        source: IoError,
    },
    /// Logging in was refused or impossible.
    #[error("backend {addr}: authentication")]
    Auth {
        /// The backend.
        addr: String,
        /// Why.
        #[source]
        source: BackendAuthError,
    },
    /// The backend answered a setup statement with an error.
    #[error("backend {addr}: setup statement failed: {message}")]
    Setup {
        /// The backend.
        addr: String,
        /// The server's message.
        message: String,
    },
    /// TLS to the backend failed: not offered, the certificate did not
    /// verify, or the handshake broke.
    #[error("backend {addr}: tls")]
    Tls {
        /// The backend.
        addr: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Connecting took longer than the connect timeout.
    #[error("backend {addr}: connect timed out")]
    ConnectTimeout {
        /// The backend.
        addr: String,
    },
    /// Every connection is busy and the wait exceeded the queue timeout.
    #[error("no backend connection free within the queue timeout")]
    QueueTimeout,
}
