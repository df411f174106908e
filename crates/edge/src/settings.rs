//! What the request pipeline needs from the validated configuration.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

pub use magestack_routing::Generation;

/// Where requests that are not static files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// PHP-FPM over FastCGI, TCP `host:port`.
    FastCgiTcp(String),
    /// PHP-FPM over FastCGI, unix socket.
    FastCgiUnix(PathBuf),
    /// An HTTP app server, `host:port`.
    Http(String),
}

/// Settings of the request pipeline.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Magento's `pub/`; `None` with an HTTP upstream means "proxy everything".
    pub docroot: Option<PathBuf>,
    /// Which `nginx.conf.sample` to emulate: G3 (immutable) or G2 (public + Expires).
    pub generation: Generation,
    /// `server_name` for `SERVER_NAME`.
    pub server_name: String,
    /// Networks whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Request body ceiling.
    pub max_body_bytes: u64,
    /// gzip on/off and its minimum length.
    pub gzip: bool,
    /// `gzip_min_length`.
    pub gzip_min_length: u64,
    /// `PHP_VALUE` (None = not sent).
    pub php_value: Option<String>,
    /// `PHP_FLAG` (None = not sent).
    pub php_flag: Option<String>,
    /// `MAGE_MODE` (None = not sent).
    pub mage_mode: Option<String>,
    /// host → (`MAGE_RUN_CODE`, `MAGE_RUN_TYPE`).
    pub mage_run: Vec<(String, String, String)>,
    /// The upstream.
    pub upstream: UpstreamTarget,
    /// Connect timeout (504 when exceeded, 502 when refused).
    pub connect_timeout: Duration,
    /// Read timeout between upstream reads (504).
    pub read_timeout: Duration,
    /// Idle keep-alive connections per upstream endpoint.
    pub keepalive_connections: usize,
    /// Response head ceiling for FastCGI (502 beyond).
    pub max_response_header_bytes: usize,
    /// Emit one access-log line per request.
    pub access_log: bool,
}
