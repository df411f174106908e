//! The configuration file as written: serde types that mirror the TOML
//! one to one.
//!
//! Every table refuses unknown keys (`deny_unknown_fields`) and every key has a
//! default, so an empty file is a valid file. Values stay close to their TOML
//! form here (addresses and URLs are strings, durations are `*_secs`
//! integers); [`compile`](crate::compile) turns them into
//! [`Validated`](crate::Validated) and checks what types cannot.
//!
//! The `///` comments on these fields are the reference manual;
//! `docs/configuration.md` repeats them for operators.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default `server.listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `server.server_name`.
pub const DEFAULT_SERVER_NAME: &str = "localhost";
/// Default `server.max_header_bytes` (64 KiB).
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Default `server.max_headers` (hyper's `DEFAULT_MAX_HEADERS`).
pub const DEFAULT_MAX_HEADERS: u32 = 100;
/// Default `server.max_body_bytes` (64 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Default `server.header_read_timeout_secs`.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Default `server.idle_timeout_secs` (nginx's default `keepalive_timeout 75s`).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 75;
/// Default `server.drain_timeout_secs`.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 30;
/// Default `log.format`.
pub const DEFAULT_LOG_FORMAT: &str = "text";
/// Default `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default `magento.nginx_generation`.
pub const DEFAULT_NGINX_GENERATION: &str = "g3";
/// Default `magento.gzip_min_length` (Magento's `gzip_min_length 1100`).
pub const DEFAULT_GZIP_MIN_LENGTH: u64 = 1100;
/// Default `magento.php_value` (Magento's `nginx.conf.sample`).
pub const DEFAULT_PHP_VALUE: &str = "memory_limit=756M\nmax_execution_time=18000";
/// Default `magento.php_flag` (Magento's `nginx.conf.sample`).
pub const DEFAULT_PHP_FLAG: &str = "session.auto_start=off\nsuhosin.session.cryptua=off";
/// Default `magento.run[].type`.
pub const DEFAULT_RUN_TYPE: &str = "store";
/// Default `upstream.url`.
pub const DEFAULT_UPSTREAM_URL: &str = "fcgi://127.0.0.1:9000";
/// Default `upstream.connect_timeout_secs`.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;
/// Default `upstream.read_timeout_secs` (Magento's `fastcgi_read_timeout 600s`).
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 600;
/// Default `upstream.keepalive_connections`.
pub const DEFAULT_KEEPALIVE_CONNECTIONS: u32 = 32;
/// Default `upstream.max_connections` (0 = no cap).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 0;
/// Default `upstream.max_response_header_bytes` (Magento's `fastcgi_buffer_size 32k`).
pub const DEFAULT_MAX_RESPONSE_HEADER_BYTES: u64 = 32 * 1024;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: listeners, client-facing limits and timeouts, TLS.
    pub server: ServerConfig,
    /// `[log]`: log format, filter and the access log.
    pub log: LogConfig,
    /// `[magento]`: how requests are handed to Magento (docroot, FastCGI params, multi-store).
    pub magento: MagentoConfig,
    /// `[upstream]`: where PHP runs and how the edge talks to it.
    pub upstream: UpstreamConfig,
}

/// `[server]`: the client side of the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Socket addresses (`IP:PORT`) that accept traffic. At least one; no two
    /// may claim the same port. Default `["127.0.0.1:8080"]`.
    pub listen: Vec<String>,
    /// Socket address of the admin listener (health, metrics, admin API).
    /// Must not clash with `listen`. Default: none (no admin listener).
    pub admin_listen: Option<String>,
    /// Sent to PHP as `SERVER_NAME`. Default `"localhost"`.
    pub server_name: String,
    /// Peers (CIDR blocks or single IPs) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` headers are believed. Everyone else is identified
    /// by the socket address. Default `[]` (trust nobody).
    pub trusted_proxies: Vec<String>,
    /// Largest request head (request line plus headers) in bytes; larger
    /// requests get 431. Default 65536.
    pub max_header_bytes: u64,
    /// Most request headers; more get 431. Default 100.
    pub max_headers: u32,
    /// Largest request body in bytes; larger bodies get 413. Default 67108864 (64 MiB).
    pub max_body_bytes: u64,
    /// Seconds a client has to send the full request head; then 408. Default 30.
    pub header_read_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept open. Default 75.
    pub idle_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM before the
    /// process exits; 0 exits at once. Default 30.
    pub drain_timeout_secs: u64,
    /// Accept HTTP/2 with prior knowledge (h2c) on plaintext listeners.
    /// Default true.
    pub h2c: bool,
    /// `[server.tls]`: when present, every `listen` address speaks TLS
    /// (h2 and http/1.1 via ALPN). Default: absent (plaintext).
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![DEFAULT_LISTEN.to_owned()],
            admin_listen: None,
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            trusted_proxies: Vec::new(),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            drain_timeout_secs: DEFAULT_DRAIN_TIMEOUT_SECS,
            h2c: true,
            tls: None,
        }
    }
}

/// `[server.tls]`: certificate and key for the listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first. Required when
    /// `[server.tls]` is present. Relative paths are relative to the working
    /// directory.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1). Required when
    /// `[server.tls]` is present.
    pub key_file: PathBuf,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `"text"` (human-readable) or `"json"` (one object per line). Default `"text"`.
    pub format: String,
    /// A `tracing` filter directive, e.g. `"info"` or
    /// `"info,magestack_edge=debug"`. Default `"info"`.
    pub level: String,
    /// Log one line per request. Default true.
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: DEFAULT_LOG_FORMAT.to_owned(),
            level: DEFAULT_LOG_LEVEL.to_owned(),
            access_log: true,
        }
    }
}

/// `[magento]`: what the edge does the way Magento's `nginx.conf.sample` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MagentoConfig {
    /// Absolute path of Magento's `pub/` directory: static files are served
    /// from it and PHP gets `SCRIPT_FILENAME` under it. Required when
    /// `upstream.url` is FastCGI; unused with an `http://` upstream.
    /// Default: none.
    pub docroot: Option<PathBuf>,
    /// Which `nginx.conf.sample` headers static files get: `"g3"`
    /// (`Cache-Control: public, max-age=31536000, immutable`) or `"g2"`
    /// (`Cache-Control: public` plus `Expires` one year ahead). Default `"g3"`.
    pub nginx_generation: String,
    /// Gzip compressible responses for clients that accept it. Default true.
    pub gzip: bool,
    /// Smallest response body in bytes that is gzipped. Default 1100.
    pub gzip_min_length: u64,
    /// Sent to PHP as `PHP_VALUE` (newline-separated `name=value` lines);
    /// `""` sends nothing. Default `"memory_limit=756M\nmax_execution_time=18000"`.
    pub php_value: String,
    /// Sent to PHP as `PHP_FLAG` (newline-separated `name=value` lines);
    /// `""` sends nothing. Default `"session.auto_start=off\nsuhosin.session.cryptua=off"`.
    pub php_flag: String,
    /// When not empty, sent to PHP as `MAGE_MODE`: `"default"`, `"developer"`
    /// or `"production"`. Default `""` (not sent; `app/etc/env.php` decides).
    pub mage_mode: String,
    /// `[[magento.run]]`: host to store/website map for multi-store setups,
    /// sent as `MAGE_RUN_CODE` and `MAGE_RUN_TYPE`. Default: empty.
    pub run: Vec<RunConfig>,
}

impl Default for MagentoConfig {
    fn default() -> Self {
        Self {
            docroot: None,
            nginx_generation: DEFAULT_NGINX_GENERATION.to_owned(),
            gzip: true,
            gzip_min_length: DEFAULT_GZIP_MIN_LENGTH,
            php_value: DEFAULT_PHP_VALUE.to_owned(),
            php_flag: DEFAULT_PHP_FLAG.to_owned(),
            mage_mode: String::new(),
            run: Vec::new(),
        }
    }
}

/// One `[[magento.run]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Request host this entry applies to, matched case-insensitively
    /// without the port, e.g. `"de.example.com"`. Required.
    pub host: String,
    /// Store or website code sent as `MAGE_RUN_CODE`, e.g. `"de"`. Required.
    pub code: String,
    /// Sent as `MAGE_RUN_TYPE`: `"store"` or `"website"`. Default `"store"`.
    #[serde(rename = "type")]
    pub run_type: String,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            code: String::new(),
            run_type: DEFAULT_RUN_TYPE.to_owned(),
        }
    }
}

/// `[upstream]`: the PHP side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Where PHP runs: `"fcgi://host:port"`, `"fcgi+unix:///path/to.sock"` or
    /// `"http://host:port"`. Default `"fcgi://127.0.0.1:9000"`.
    pub url: String,
    /// Seconds to establish a connection. A refused connection gives 502, a
    /// timeout 504. Default 5.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the response (between reads), like nginx
    /// `fastcgi_read_timeout`; then 504. Default 600.
    pub read_timeout_secs: u64,
    /// Idle keep-alive connections kept per endpoint; 0 closes each
    /// connection after its request. Default 32.
    pub keepalive_connections: u32,
    /// Most FastCGI connections open at once per endpoint; requests beyond it
    /// wait for a free connection. Set it to PHP-FPM's `pm.max_children`: each
    /// FPM child serves one keep-alive connection at a time, so connections
    /// beyond the children only queue inside FPM. 0 = no cap (the client then
    /// closes returned connections while fresh ones wait in FPM's backlog, so
    /// nothing deadlocks, at the cost of reconnects under overload). Default 0.
    pub max_connections: u32,
    /// Largest response head from PHP in bytes, like nginx
    /// `fastcgi_buffer_size`; larger heads give 502. Default 32768.
    pub max_response_header_bytes: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_UPSTREAM_URL.to_owned(),
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            read_timeout_secs: DEFAULT_READ_TIMEOUT_SECS,
            keepalive_connections: DEFAULT_KEEPALIVE_CONNECTIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_response_header_bytes: DEFAULT_MAX_RESPONSE_HEADER_BYTES,
        }
    }
}
