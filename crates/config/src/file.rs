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

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ErrorKind;

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
/// Default `server.body_read_timeout_secs` (nginx's `client_body_timeout 60s`).
pub const DEFAULT_BODY_READ_TIMEOUT_SECS: u64 = 60;
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
/// Default `magento.open_file_cache_entries`.
pub const DEFAULT_OPEN_FILE_CACHE_ENTRIES: u64 = 10_000;
/// Default `magento.open_file_cache_size`.
pub const DEFAULT_OPEN_FILE_CACHE_SIZE: &str = "64MiB";
/// Default `magento.open_file_cache_valid_secs`.
pub const DEFAULT_OPEN_FILE_CACHE_VALID_SECS: u64 = 5;
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
/// Default `cache.size`.
pub const DEFAULT_CACHE_SIZE: &str = "256MiB";
/// Smallest accepted `cache.size` (1 MiB).
pub const MIN_CACHE_SIZE_BYTES: u64 = 1024 * 1024;
/// Default `cache.purge_acl` (loopback only, like Magento's `access_list` default `localhost`).
pub const DEFAULT_PURGE_ACL: &[&str] = &["127.0.0.1/32", "::1/128"];
/// Default `cache.grace_period_secs` (Magento's `system/full_page_cache/varnish/grace_period`).
pub const DEFAULT_GRACE_PERIOD_SECS: u64 = 300;
/// Default `cache.default_ttl_secs` (Varnish `default_ttl`).
pub const DEFAULT_CACHE_DEFAULT_TTL_SECS: u64 = 120;
/// Default `cache.ssl_offloaded_header` (Magento's `web/secure/offloader_header`).
pub const DEFAULT_SSL_OFFLOADED_HEADER: &str = "X-Forwarded-Proto";
/// Default `cache.error_statuses` (Magento's shipped VCL: 200 and 404 cacheable).
pub const DEFAULT_ERROR_STATUSES: &str = "cache-404";
/// Default `cache.max_object_bytes` (16 MiB).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 16 * 1024 * 1024;
/// Default `cache.health_check.path` (the probe of Magento's VCL).
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/health_check.php";
/// Default `cache.health_check.interval_secs` (Magento's VCL probe `.interval = 5s`).
pub const DEFAULT_HEALTH_CHECK_INTERVAL_SECS: u64 = 5;
/// Default `cache.health_check.timeout_secs` (Magento's VCL probe `.timeout = 2s`).
pub const DEFAULT_HEALTH_CHECK_TIMEOUT_SECS: u64 = 2;
/// Default `cache.health_check.window` (Magento's VCL probe `.window = 10`).
pub const DEFAULT_HEALTH_CHECK_WINDOW: u32 = 10;
/// Default `cache.health_check.threshold` (Magento's VCL probe `.threshold = 5`).
pub const DEFAULT_HEALTH_CHECK_THRESHOLD: u32 = 5;
/// Largest `cache.health_check.window` (Varnish: "Window must be 64 or less").
pub const MAX_HEALTH_CHECK_WINDOW: u32 = 64;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// `[cache]`: the full-page cache (Magento's Varnish integration, in process).
    pub cache: CacheConfig,
    /// `[pools.<name>]`: PHP-FPM pools with their own limits (workload
    /// isolation: admin and imports never take the shoppers' workers).
    pub pools: std::collections::BTreeMap<String, PoolConfig>,
    /// `[routing]`: which pool a request goes to.
    pub routing: RoutingConfig,
    /// `[readiness]`: what `/readyz` waits for beyond healthy pools.
    pub readiness: ReadinessConfig,
    /// `[waf]`: the security layer in front of the cache and the pools.
    pub waf: WafConfig,
    /// `[cluster]`: many edges as one cache (purge bus over Redis).
    pub cluster: ClusterConfig,
    /// `[dbproxy]`: `magestack dbproxy`, the MySQL proxy in front of
    /// Magento's database (ignored by the edge).
    pub dbproxy: DbproxyConfig,
    /// `[rollout]`: a canary release of one pool, decided in the edge.
    /// Absent: no rollout API and nothing split.
    pub rollout: Option<RolloutConfig>,
    /// `[media]`: where `pub/media` comes from, its disk cache and image resizing.
    pub media: MediaConfig,
    /// `[static]`: where `pub/static` comes from.
    #[serde(rename = "static")]
    pub static_files: StaticConfig,
    /// `[object_store]`: the S3-compatible store behind `s3://` sources.
    pub object_store: ObjectStoreConfig,
}

/// Default `rollout.pool`.
pub const DEFAULT_ROLLOUT_POOL: &str = "frontend";
/// Default `rollout.analysis_interval_secs`.
pub const DEFAULT_ROLLOUT_ANALYSIS_INTERVAL_SECS: u64 = 10;
/// Default `rollout.min_requests`.
pub const DEFAULT_ROLLOUT_MIN_REQUESTS: u64 = 200;
/// Default `rollout.max_error_ratio`.
pub const DEFAULT_ROLLOUT_MAX_ERROR_RATIO: f64 = 0.01;
/// Default `rollout.max_p95_ratio`.
pub const DEFAULT_ROLLOUT_MAX_P95_RATIO: f64 = 1.5;
/// Default `rollout.checkout_sticky_secs` (30 minutes).
pub const DEFAULT_ROLLOUT_CHECKOUT_STICKY_SECS: u64 = 30 * 60;

/// `[rollout]`: the edge's own canary. A pool's traffic is split between
/// its endpoints (stable) and `canary_endpoints` by sticky visitor buckets,
/// step by step, judged from the edge's own figures; a failing canary is
/// aborted within one analysis interval, a healthy one promoted after the
/// last step. Started, paused, resumed, promoted and aborted through the
/// admin API (`POST /admin/rollout/…`) or `magestack rollout …`; nothing
/// happens until started. See `docs/rollouts.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// The pool whose traffic is split. Default `"frontend"`.
    pub pool: String,
    /// The canary release's endpoints, same protocol as `upstream.url`
    /// (`fcgi://host:port`, `fcgi+unix:///path` or `http://host:port`).
    /// A start request may give others. Default: none.
    pub canary_endpoints: Vec<String>,
    /// The canary release's `pub/` (static files, and PHP's
    /// `SCRIPT_FILENAME`); its `static/deployed_version.txt` names the
    /// canary's release. Default: none (the stable docroot).
    pub canary_docroot: Option<PathBuf>,
    /// The canary's release id when `canary_docroot` names none. Default
    /// `""`: `"canary"` (still a namespace of its own).
    pub canary_release: String,
    /// The plan: `"WEIGHT%/PAUSE"` steps, weights never decreasing, the
    /// last `"100%"`. Default `["10%/5m", "50%/5m", "100%"]`.
    pub steps: Vec<String>,
    /// Seconds between judgements. Default 10.
    pub analysis_interval_secs: u64,
    /// Canary requests (that reached PHP) in a step before any judgement.
    /// Default 200.
    pub min_requests: u64,
    /// Largest canary 5xx ratio, 0–1 (the edge's own 503 shedding does not
    /// count). Default 0.01.
    pub max_error_ratio: f64,
    /// Largest canary p95 / stable p95 over the same window, ≥ 1. Default 1.5.
    pub max_p95_ratio: f64,
    /// Seconds a cart or checkout request keeps a stable visitor on stable.
    /// Default 1800.
    pub checkout_sticky_secs: u64,
    /// Where the state is kept without `[cluster]` Redis (with Redis, there).
    /// Default: none (`magestack-rollout.json` in the temporary directory).
    pub state_file: Option<PathBuf>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            pool: DEFAULT_ROLLOUT_POOL.to_owned(),
            canary_endpoints: Vec::new(),
            canary_docroot: None,
            canary_release: String::new(),
            steps: magestack_rollout::DEFAULT_STEPS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            analysis_interval_secs: DEFAULT_ROLLOUT_ANALYSIS_INTERVAL_SECS,
            min_requests: DEFAULT_ROLLOUT_MIN_REQUESTS,
            max_error_ratio: DEFAULT_ROLLOUT_MAX_ERROR_RATIO,
            max_p95_ratio: DEFAULT_ROLLOUT_MAX_P95_RATIO,
            checkout_sticky_secs: DEFAULT_ROLLOUT_CHECKOUT_STICKY_SECS,
            state_file: None,
        }
    }
}

/// Default `media.source` and `static.source`: the local docroot.
pub const DEFAULT_FILE_SOURCE: &str = "docroot";
/// Default `media.cache_dir`.
pub const DEFAULT_MEDIA_CACHE_DIR: &str = "/var/cache/magestack/media";
/// Default `media.cache_size`.
pub const DEFAULT_MEDIA_CACHE_SIZE: &str = "10GiB";
/// Default `media.resize_max_width` and `media.resize_max_height`.
pub const DEFAULT_RESIZE_MAX_SIDE: u32 = 4096;
/// Default `media.resize_max_source_bytes` (32 MiB).
pub const DEFAULT_RESIZE_MAX_SOURCE_BYTES: &str = "32MiB";
/// Default `media.resize_max_source_pixels` (50 megapixels: 200 MB decoded as RGBA).
pub const DEFAULT_RESIZE_MAX_SOURCE_PIXELS: u64 = 50_000_000;
/// Default `media.resize_queue`.
pub const DEFAULT_RESIZE_QUEUE: u32 = 64;
/// Default `media.retry_after_secs`.
pub const DEFAULT_MEDIA_RETRY_AFTER_SECS: u64 = 5;
/// Default `media.store_timeout_secs`.
pub const DEFAULT_MEDIA_STORE_TIMEOUT_SECS: u64 = 10;

/// `[media]`: `pub/media` from the docroot or an object store, the local
/// disk cache of objects and resized variants, and resizing of Magento's
/// `image_optimization_parameters` URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `"docroot"` (files under `magento.docroot`/media, as nginx) or
    /// `"s3://bucket/prefix"`: objects `prefix/<path under /media/>` in that
    /// bucket, through `[object_store]`. Default `"docroot"`.
    pub source: String,
    /// Directory of the disk cache (objects from the store and resized
    /// variants); created when missing, kept across restarts.
    /// Default `"/var/cache/magestack/media"`.
    pub cache_dir: PathBuf,
    /// Byte ceiling of the disk cache (units as `cache.size`); the least
    /// recently used files are removed past it. At least 1 MiB. Default `"10GiB"`.
    pub cache_size: ByteSize,
    /// Resize product images for `image_optimization_parameters` URLs
    /// (`?width=…&height=…`). `false` serves the original. Default false.
    pub resize: bool,
    /// Largest `width` a resize URL may ask for; more is refused with 400. Default 4096.
    pub resize_max_width: u32,
    /// Largest `height` a resize URL may ask for; more is refused with 400. Default 4096.
    pub resize_max_height: u32,
    /// The only sizes allowed, as `"WIDTHxHEIGHT"` (Magento's `view.xml`
    /// sizes); others get 400. Default `[]`: any size within the bounds.
    pub resize_sizes: Vec<String>,
    /// Largest original that is resized (units as `cache.size`); larger
    /// ones get 413. Default `"32MiB"`.
    pub resize_max_source_bytes: ByteSize,
    /// Largest original, in pixels (width × height read from its header
    /// before decoding: the decompression-bomb limit); more gets 413.
    /// Default 50000000.
    pub resize_max_source_pixels: u64,
    /// Resizes running at once, on their own threads off the request
    /// workers. 0: one per CPU. Default 0.
    pub resize_workers: u32,
    /// Resizes waiting for a worker; past it a request gets 503 with
    /// `Retry-After`. Default 64.
    pub resize_queue: u32,
    /// Answer `Accept: image/webp` with WebP variants (`Vary: Accept`). Default true.
    pub webp: bool,
    /// `Retry-After` seconds of a 503 when the store or the resize pool
    /// cannot answer. Default 5.
    pub retry_after_secs: u64,
    /// Seconds a request to the object store may take before the store
    /// counts as down (503 for what is not cached). Default 10.
    pub store_timeout_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            source: DEFAULT_FILE_SOURCE.to_owned(),
            cache_dir: PathBuf::from(DEFAULT_MEDIA_CACHE_DIR),
            cache_size: ByteSize::Text(DEFAULT_MEDIA_CACHE_SIZE.to_owned()),
            resize: false,
            resize_max_width: DEFAULT_RESIZE_MAX_SIDE,
            resize_max_height: DEFAULT_RESIZE_MAX_SIDE,
            resize_sizes: Vec::new(),
            resize_max_source_bytes: ByteSize::Text(DEFAULT_RESIZE_MAX_SOURCE_BYTES.to_owned()),
            resize_max_source_pixels: DEFAULT_RESIZE_MAX_SOURCE_PIXELS,
            resize_workers: 0,
            resize_queue: DEFAULT_RESIZE_QUEUE,
            webp: true,
            retry_after_secs: DEFAULT_MEDIA_RETRY_AFTER_SECS,
            store_timeout_secs: DEFAULT_MEDIA_STORE_TIMEOUT_SECS,
        }
    }
}

/// `[static]`: `pub/static` from the docroot or an object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    /// `"docroot"` or `"s3://bucket/prefix"`: objects
    /// `prefix/<deployed_version>/<path under /static/, version stripped>`,
    /// so two releases can be served side by side. Default `"docroot"`.
    pub source: String,
    /// The release served when a URL carries no `versionNNN` segment
    /// (Magento's `pub/static/deployed_version.txt`). Default `""`: such
    /// URLs are looked up without a release directory.
    pub deployed_version: String,
}

impl Default for StaticConfig {
    fn default() -> Self {
        Self {
            source: DEFAULT_FILE_SOURCE.to_owned(),
            deployed_version: String::new(),
        }
    }
}

/// `[object_store]`: the store behind `s3://` sources. Credentials come
/// from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity for
/// Kubernetes IRSA, the instance role), never from this file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// `http(s)://host:port` of an S3-compatible server, addressed
    /// path-style (`endpoint/bucket/key`). Default `""`: AWS S3 itself.
    pub endpoint: String,
    /// The bucket's region, e.g. `"eu-west-1"`. Default `""`: from
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
}

/// Default `dbproxy.listen` (ProxySQL's port).
pub const DEFAULT_DBPROXY_LISTEN: &str = "127.0.0.1:6033";

/// Default `dbproxy.writer_only_tables`: tables where a read that lags the
/// writer by a second hurts a shopper (carts, orders and their sequences,
/// stock and MSI reservations, sessions, the customer row read at login),
/// after `magento-db-contract.md`. `*` at the end matches a prefix.
pub const DEFAULT_WRITER_ONLY_TABLES: &[&str] = &[
    "quote",
    "quote_*",
    "sales_*",
    "sequence_*",
    "inventory_reservation",
    "inventory_source_item",
    "cataloginventory_stock_item",
    "session",
    "persistent_session",
    "admin_user_session",
    "customer_entity",
    "oauth_token",
    "cron_schedule",
];

/// `[dbproxy]`: the MySQL proxy. Its command-line flags (`--listen`,
/// `--writer`, `--reader`, `--user`, `--max-backend-connections`,
/// `--admin-listen`) override these keys; the password is never here
/// (`MAGESTACK_DB_PASSWORD` or `MAGESTACK_DB_PASSWORD_FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbproxyConfig {
    /// Client listener, `IP:PORT`. Default `"127.0.0.1:6033"`.
    pub listen: String,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`, `/backends`,
    /// `/digests`), `IP:PORT`. Default: none.
    pub admin_listen: Option<String>,
    /// The user clients log in as and the proxy logs in to the backends
    /// with. `""` = from `--user`, `MAGESTACK_DB_USER` or the file named by
    /// `MAGESTACK_DB_USER_FILE`. Default `""`.
    pub user: String,
    /// The writer, `host:port` (host names allowed: Aurora's cluster
    /// endpoint). Required to run. Default `""`.
    pub writer: String,
    /// Readers, `host:port`. Empty = no read/write split. Default `[]`.
    pub readers: Vec<String>,
    /// Find the writer by `read_only = 0` among `writer` and `readers`
    /// (checked every `check_interval_ms`), so a promoted replica takes the
    /// writes. Default true.
    pub writer_detection: bool,
    /// Hard cap on connections to each server. Default 20.
    pub max_backend_connections: u32,
    /// Most client connections at once; more wait in the listen backlog.
    /// Bounds the proxy's memory (see `docs/dbproxy.md`). Default 10000.
    pub max_client_connections: u64,
    /// Connect and login timeout for a backend connection, ms. Default 2000.
    pub connect_timeout_ms: u64,
    /// Longest wait for a free backend connection, ms; then error 1040.
    /// Default 5000.
    pub queue_timeout_ms: u64,
    /// After a statement that is not a plain read, the session's reads go
    /// to the writer for this long, ms (read-your-writes). Default 5000.
    pub read_your_writes_ms: u64,
    /// A reader whose replication lag is above this many seconds (or
    /// unknown: replication stopped) gets no reads. Default 5.
    pub max_replica_lag_secs: u64,
    /// How often each server's `read_only` and replication lag are read,
    /// ms. Default 1000.
    pub check_interval_ms: u64,
    /// Tables never read from a reader: a `SELECT` naming one goes to the
    /// writer. `*` at the end matches a prefix. Default: carts, orders,
    /// sequences, stock, reservations, sessions (see `docs/dbproxy.md`).
    pub writer_only_tables: Vec<String>,
    /// Magento's `db.table_prefix`: prepended to `writer_only_tables`.
    /// Default `""`.
    pub table_prefix: String,
    /// Statement fingerprints kept for `/digests` (space-saving top-K: the
    /// memory is fixed whatever the traffic). Default 1000.
    pub digests_max: u32,
    /// TLS to the servers: `"disabled"` or `"required"` (Aurora with
    /// `require_secure_transport`: every connection, the monitor's too,
    /// starts TLS and verifies the server's certificate against
    /// `backend_tls_ca_file`; a server without TLS is an error). Default
    /// `"disabled"`.
    pub backend_tls: String,
    /// PEM bundle of the CAs that sign the servers' certificates (e.g.
    /// RDS's `global-bundle.pem`). Required when `backend_tls` is
    /// `"required"`. Default `""`.
    pub backend_tls_ca_file: String,
    /// The name checked against the servers' certificates. `""`: each
    /// server's own host (Aurora's endpoints are in its certificates).
    /// Default `""`.
    pub backend_tls_server_name: String,
    /// PEM certificate chain the proxy shows clients that ask for TLS
    /// (`CLIENT_SSL`). With `tls_key_file`; both `""`: no TLS from
    /// clients. Default `""`.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`. Default `""`.
    pub tls_key_file: String,
    /// Refuse clients that do not start TLS (needs `tls_cert_file`).
    /// Default false.
    pub require_client_tls: bool,
    /// Ask `caching_sha2_password` clients for full authentication (the
    /// password in clear inside TLS, else RSA-encrypted under the proxy's
    /// key), as MySQL 8 with a cold cache does. Default false.
    pub client_full_auth: bool,
}

impl Default for DbproxyConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_DBPROXY_LISTEN.to_owned(),
            admin_listen: None,
            user: String::new(),
            writer: String::new(),
            readers: Vec::new(),
            writer_detection: true,
            max_backend_connections: 20,
            max_client_connections: 10_000,
            connect_timeout_ms: 2000,
            queue_timeout_ms: 5000,
            read_your_writes_ms: 5000,
            max_replica_lag_secs: 5,
            check_interval_ms: 1000,
            writer_only_tables: DEFAULT_WRITER_ONLY_TABLES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            table_prefix: String::new(),
            digests_max: 1000,
            backend_tls: "disabled".to_owned(),
            backend_tls_ca_file: String::new(),
            backend_tls_server_name: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            require_client_tls: false,
            client_full_auth: false,
        }
    }
}

/// `[cluster]`: replicas share purges through Redis pub/sub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]` (or `rediss://` for TLS, e.g. ElastiCache
    /// with in-transit encryption) of the Redis that carries the purge bus;
    /// `""` = a single edge, no bus. The password (ElastiCache's AUTH token)
    /// comes from `MAGESTACK_REDIS_PASSWORD` or
    /// `MAGESTACK_REDIS_PASSWORD_FILE`, never from this file. Default `""`.
    pub redis_url: String,
    /// PEM bundle of the CAs that may sign the Redis server's certificate
    /// (`rediss://` only); `""` = the system's trust store. The server's
    /// name in the URL is checked against its certificate either way.
    /// Default `""`.
    pub redis_ca_file: String,
    /// Pub/sub channel (and prefix of the sequence key) shared by the
    /// replicas of one store. Default `"magestack:purge"`.
    pub channel: String,
    /// Shared L2 object store in the same Redis: a local miss looks there
    /// before PHP, cacheable pages are copied there, tag purges delete them
    /// there too; a new replica is warm from its first request. Default false.
    pub l2: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            redis_ca_file: String::new(),
            channel: "magestack:purge".to_owned(),
            l2: false,
        }
    }
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
    /// A plaintext listener for Magento's `PURGE` from inside the cluster
    /// (`http_cache_hosts` through a ClusterIP Service), apart from the port
    /// the load balancer sends traffic to: with `behind_load_balancer`, a
    /// `PURGE` there needs only `cache.purge_acl`. Must not clash with
    /// `listen` or `admin_listen`. Default: none.
    pub purge_listen: Option<String>,
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
    /// Seconds a client may go without sending a byte of a request body it
    /// started (slow-body attacks); then 408. Default 60.
    pub body_read_timeout_secs: u64,
    /// Seconds an idle keep-alive connection is kept open. Default 75.
    pub idle_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM before the
    /// process exits; 0 exits at once. Default 30.
    pub drain_timeout_secs: u64,
    /// Accept HTTP/2 with prior knowledge (h2c) on plaintext listeners.
    /// Default true.
    pub h2c: bool,
    /// Bind the traffic listeners with `SO_REUSEPORT`, so a new edge can
    /// start on the same port while this one drains (zero-downtime restarts
    /// outside Kubernetes). Default true.
    pub reuse_port: bool,
    /// Most open connections from one client address (connection floods,
    /// slowloris); peers in `trusted_proxies` are not counted (a CDN or load
    /// balancer carries many clients). 0 = no cap. Default 256.
    pub max_connections_per_ip: u32,
    /// Most open client connections in all; further connections wait in the
    /// listen backlog until one closes, so the edge never runs out of file
    /// descriptors. 0 = half of the descriptor limit (raised to its hard
    /// limit at start), less a reserve for upstreams and files. Default 0.
    pub max_client_connections: u64,
    /// Request bodies up to this many bytes are held in memory; larger ones
    /// are written to a temporary file as they arrive (nginx's
    /// `client_body_buffer_size`). Default 1048576 (1 MiB).
    pub body_buffer_bytes: u64,
    /// Memory all request bodies held at once may use together; past it,
    /// bodies go to temporary files whatever their size. Default 67108864
    /// (64 MiB).
    pub body_memory_bytes: u64,
    /// Directory for request bodies written to temporary files (unlinked at
    /// once). Default: the system's temporary directory (`$TMPDIR`, `/tmp`).
    pub body_spool_dir: Option<PathBuf>,
    /// The socket peer of client traffic is a load balancer (an ALB, an
    /// ingress): its address says nothing about who sent a request, so a
    /// `PURGE` on `listen` from a non-loopback peer also needs
    /// `Authorization: Bearer` with `MAGESTACK_PURGE_TOKEN`, even from inside
    /// `cache.purge_acl` (Magento purges through `purge_listen`). Default false.
    pub behind_load_balancer: bool,
    /// `[server.tls]`: when present, every `listen` address speaks TLS
    /// (h2 and http/1.1 via ALPN). Default: absent (plaintext).
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![DEFAULT_LISTEN.to_owned()],
            admin_listen: None,
            purge_listen: None,
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            trusted_proxies: Vec::new(),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            body_read_timeout_secs: DEFAULT_BODY_READ_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            drain_timeout_secs: DEFAULT_DRAIN_TIMEOUT_SECS,
            h2c: true,
            reuse_port: true,
            max_connections_per_ip: 256,
            max_client_connections: 0,
            body_buffer_bytes: 1024 * 1024,
            body_memory_bytes: 64 * 1024 * 1024,
            body_spool_dir: None,
            behind_load_balancer: false,
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
    /// Paths under the docroot whose kind, size, validators and (for files up
    /// to 256 KiB) bytes the edge keeps, as nginx's `open_file_cache max=`;
    /// 0 turns it off (a `stat` and a read per request). Default 10000.
    pub open_file_cache_entries: u64,
    /// Memory for the kept file bytes and their gzip variants: a size with a
    /// unit (`"64MiB"`) or bytes. Default `"64MiB"`.
    pub open_file_cache_size: ByteSize,
    /// Seconds an entry is trusted before one `stat` checks it again
    /// (nginx's `open_file_cache_valid`): a changed or deleted file is seen
    /// at most this long after the change. Default 5.
    pub open_file_cache_valid_secs: u64,
    /// The release (code version) this edge's PHP runs, used when the
    /// docroot has no `static/deployed_version.txt` (what Magento's static
    /// content deploy writes, which wins when present): part of the cache
    /// namespace, so pages of two releases (a canary, a rolling deploy
    /// sharing one L2) are never served for each other. Letters, digits,
    /// `.`, `_` and `-`, at most 64. Default `""` (none).
    pub release: String,
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
            open_file_cache_entries: DEFAULT_OPEN_FILE_CACHE_ENTRIES,
            open_file_cache_size: ByteSize::Text(DEFAULT_OPEN_FILE_CACHE_SIZE.to_owned()),
            open_file_cache_valid_secs: DEFAULT_OPEN_FILE_CACHE_VALID_SECS,
            release: String::new(),
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
    /// Nameservers (`"IP"` or `"IP:PORT"`) that resolve endpoints given by
    /// host name (see `pools.<name>.resolve_interval_secs`). `[]`: the
    /// system's, from `/etc/resolv.conf` with its search domains and `ndots`
    /// (what a Kubernetes pod gets). Default `[]`.
    pub dns_servers: Vec<String>,
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
            dns_servers: Vec::new(),
        }
    }
}

/// Default `pools.<name>.queue_size`.
pub const DEFAULT_POOL_QUEUE_SIZE: u32 = 256;
/// Default `pools.<name>.queue_timeout_secs`.
pub const DEFAULT_POOL_QUEUE_TIMEOUT_SECS: u64 = 5;
/// Default `pools.<name>.check_interval_secs`.
pub const DEFAULT_POOL_CHECK_INTERVAL_SECS: u64 = 5;
/// Default `pools.<name>.resolve_interval_secs`.
pub const DEFAULT_POOL_RESOLVE_INTERVAL_SECS: u64 = 5;
/// Default `pools.<name>.unhealthy_after`.
pub const DEFAULT_POOL_UNHEALTHY_AFTER: u32 = 3;
/// Default `routing.admin_front_name` (Magento's `backend/frontName` default).
pub const DEFAULT_ADMIN_FRONT_NAME: &str = "admin";

/// `[pools.<name>]`: one PHP-FPM pool (one or more FPM endpoints sharing a
/// bulkhead). `frontend` takes everything the routing does not send
/// elsewhere; the built-in admin rules send to `admin`. A pool not written
/// here: `frontend` is `upstream.url` with `upstream.max_connections`;
/// `admin` falls back to `frontend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// PHP-FPM endpoints, `"fcgi://host:port"` or `"fcgi+unix:///path"`;
    /// each request goes to the healthy endpoint with the fewest requests in
    /// flight. Default: `[upstream.url]`.
    pub endpoints: Vec<String>,
    /// Most requests of this pool in PHP at once, over all its endpoints: the
    /// sum of their `pm.max_children`. 0 = no cap. Default 0.
    pub max_inflight: u32,
    /// Requests that may wait for a slot; one more gets 503 + `Retry-After`
    /// at once. Default 256.
    pub queue_size: u32,
    /// Seconds a request waits for a slot before 503 + `Retry-After`.
    /// Default 5.
    pub queue_timeout_secs: u64,
    /// Seconds to wait for PHP's response (between reads), then 504.
    /// 0 = `upstream.read_timeout_secs`. Default 0.
    pub request_timeout_secs: u64,
    /// Seconds to connect to an endpoint. 0 = `upstream.connect_timeout_secs`.
    /// Default 0.
    pub connect_timeout_secs: u64,
    /// PHP-FPM's `pm.status_path` (e.g. `"/status"`): each endpoint's status
    /// is read every check and exported as metrics. Empty: the check only
    /// connects. Default `""`.
    pub status_path: String,
    /// Where to read the status of each endpoint, in the order of
    /// `endpoints`: FPM's `pm.status_listen` addresses (answered by the FPM
    /// master, also while every worker is busy). Empty: the endpoints
    /// themselves. Default `[]`.
    pub status_endpoints: Vec<String>,
    /// Seconds between two health checks of each endpoint. Default 5.
    pub check_interval_secs: u64,
    /// Failed checks in a row after which an endpoint gets no more requests
    /// (until a check succeeds again). Default 3.
    pub unhealthy_after: u32,
    /// Seconds between two DNS lookups of the endpoints given by host name
    /// (e.g. a Kubernetes headless Service, `fcgi://php-fpm.shop.svc:9000`):
    /// every address found is an endpoint of the pool; a new one joins once
    /// its first health check passes, one gone from DNS gets no new requests
    /// and is dropped when its last request ends. A failed lookup keeps the
    /// known endpoints. 0: no discovery; the name is resolved by the system at
    /// each connect, as one endpoint. Endpoints given as IP addresses or
    /// sockets are never looked up. Default 5.
    pub resolve_interval_secs: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            max_inflight: 0,
            queue_size: DEFAULT_POOL_QUEUE_SIZE,
            queue_timeout_secs: DEFAULT_POOL_QUEUE_TIMEOUT_SECS,
            request_timeout_secs: 0,
            connect_timeout_secs: 0,
            status_path: String::new(),
            status_endpoints: Vec::new(),
            check_interval_secs: DEFAULT_POOL_CHECK_INTERVAL_SECS,
            unhealthy_after: DEFAULT_POOL_UNHEALTHY_AFTER,
            resolve_interval_secs: DEFAULT_POOL_RESOLVE_INTERVAL_SECS,
        }
    }
}

/// `[routing]`: the choice of pool. Built in, after the configured rules:
/// the admin front name (`/<front>/…`, `/index.php/<front>/…`), asynchronous
/// and bulk REST (`/rest/<store>/async/…`) and REST imports
/// (`/rest/<store>/V1/import/…`) go to `admin`; everything else to `frontend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Magento's admin URL segment (`backend/frontName` in `app/etc/env.php`).
    /// Default `"admin"`.
    pub admin_front_name: String,
    /// `[[routing.rules]]`, checked in order before the built-in ones.
    pub rules: Vec<RouteRuleConfig>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            admin_front_name: DEFAULT_ADMIN_FRONT_NAME.to_owned(),
            rules: Vec::new(),
        }
    }
}

/// `[[routing.rules]]`: requests whose path matches go to `pool`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteRuleConfig {
    /// Path prefix, e.g. `"/feeds/"`. Exactly one of `prefix` and `regex`.
    pub prefix: String,
    /// Regex on the path (no query), e.g. `"^/[a-z]{2}/export"`.
    pub regex: String,
    /// The pool's name (a `[pools.<name>]`, or `frontend` / `admin`).
    pub pool: String,
}

/// Default `waf.rate_limit_max_keys`.
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: u64 = 100_000;

/// Default `waf.ipv6_prefix_len`: one subscriber's network.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;

/// `[waf]`: defences built into the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WafConfig {
    /// Per-client-IP rate limits on Magento's credential endpoints (customer
    /// login, account creation, password reset, admin login, REST tokens):
    /// 5 POSTs a minute each, then 429 with `Retry-After`; limited paths are
    /// never cached. Default true.
    pub rate_limits: bool,
    /// Most (rule, client IP) pairs the limiter remembers: its memory bound
    /// (~100 bytes a pair) under a flood of addresses. Default 100000.
    pub rate_limit_max_keys: u64,
    /// IPv6 clients are counted per network of this prefix length (0–128):
    /// a subscriber holds a whole /64 and would get a fresh quota from each
    /// of its addresses if they counted apart. 128 counts each address.
    /// IPv4 clients always count per address. Default 64.
    pub ipv6_prefix_len: u8,
    /// `[[waf.rate_limit_rules]]`: more limits, checked before the built-in
    /// ones (a rule for the same path replaces the default). Default `[]`.
    pub rate_limit_rules: Vec<RateLimitRuleConfig>,
    /// Client networks (CIDRs or addresses) never blocked or rate limited
    /// (monitoring, the office). Default `[]`.
    pub allow: Vec<String>,
    /// Client networks answered 403 before anything else runs. Default `[]`.
    pub deny: Vec<String>,
    /// Files of networks to deny (one CIDR or address a line, `#`
    /// comments; an IP reputation feed), re-read when they change. Default `[]`.
    pub deny_files: Vec<PathBuf>,
    /// When not empty, only these networks reach the admin front name
    /// (`/<routing.admin_front_name>`, also behind `/index.php/`); others get
    /// 404, as if there were no admin. Default `[]`.
    pub admin_allow: Vec<String>,
    /// When `routing.admin_front_name` is not `admin`, answer `/admin` (and
    /// `/index.php/admin`) with 404 at the edge: scanners probing the
    /// default path never reach PHP. Default true.
    pub close_default_admin: bool,
    /// SQL injection and XSS inspection of path, query, cookies and bodies:
    /// `"block"` (403 with the request id), `"detect"` (log and count only)
    /// or `"off"`. Default `"block"`.
    pub injection: InjectionMode,
    /// Bodies up to this size (urlencoded, JSON, multipart fields) are read
    /// and inspected; larger ones pass uninspected and are counted. Default
    /// 1048576.
    pub inspect_body_bytes: u64,
    /// `[[waf.injection_exclusions]]`: fields where the operator knows
    /// SQL- or HTML-looking text is legitimate, on top of the built-in
    /// Magento profile. Default `[]`.
    pub injection_exclusions: Vec<InjectionExclusionConfig>,
    /// Delay before a 429 is sent, in milliseconds: slows credential
    /// stuffing down further while costing the edge only a timer. Default 0.
    pub tarpit_ms: u64,
}

/// `waf.injection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectionMode {
    /// No inspection.
    Off,
    /// Log and count.
    Detect,
    /// 403 with the request id.
    #[default]
    Block,
}

/// `[[waf.injection_exclusions]]`: skip checks for some fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectionExclusionConfig {
    /// Path prefix (case-insensitive); `""` = every path. Default `""`.
    pub prefix: String,
    /// Field, argument or cookie names; `name*` matches a prefix, `*` all.
    /// Default `["*"]`.
    pub fields: Vec<String>,
    /// Where: `path`, `query`, `cookie`, `body`, `header`; `[]` = all. Default `[]`.
    pub locations: Vec<String>,
    /// Which checks are skipped: `sqli`, `xss`. Default `["sqli", "xss"]`.
    pub attacks: Vec<String>,
}

impl Default for InjectionExclusionConfig {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            fields: vec!["*".to_owned()],
            locations: Vec::new(),
            attacks: vec!["sqli".to_owned(), "xss".to_owned()],
        }
    }
}

impl Default for WafConfig {
    fn default() -> Self {
        Self {
            rate_limits: true,
            rate_limit_max_keys: DEFAULT_RATE_LIMIT_MAX_KEYS,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX_LEN,
            rate_limit_rules: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            deny_files: Vec::new(),
            admin_allow: Vec::new(),
            close_default_admin: true,
            injection: InjectionMode::Block,
            inspect_body_bytes: 1 << 20,
            injection_exclusions: Vec::new(),
            tarpit_ms: 0,
        }
    }
}

/// `[[waf.rate_limit_rules]]`: one more rate limit per client IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitRuleConfig {
    /// Name for logs and metrics (`[a-z0-9_]`).
    pub name: String,
    /// Path prefix (case-insensitive). Exactly one of `prefix` and `regex`.
    pub prefix: String,
    /// Regex on the path.
    pub regex: String,
    /// Methods it applies to; empty = all. Default `["POST"]`.
    pub methods: Vec<String>,
    /// Requests allowed per `period_secs`. Default 5.
    pub limit: u32,
    /// The period. Default 60.
    pub period_secs: u64,
}

impl Default for RateLimitRuleConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            prefix: String::new(),
            regex: String::new(),
            methods: vec!["POST".to_owned()],
            limit: 5,
            period_secs: 60,
        }
    }
}

/// Default `readiness.opcache_min_ratio`.
pub const DEFAULT_OPCACHE_MIN_RATIO: f64 = 0.8;

/// `[readiness]`: a pod is ready for traffic only when PHP is warm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadinessConfig {
    /// Magestack's health script, relative to `magento.docroot` (ship
    /// `deploy/php/magestack-health.php` into `pub/`). Each pool check runs
    /// it over FastCGI on every endpoint; an endpoint is warm when it says
    /// ready (Redis and database up) and its OPcache holds at least
    /// `opcache_min_ratio` of the expected scripts. Empty: not used.
    /// Default `""`.
    pub health_script: String,
    /// Share (0–1) of the expected scripts OPcache must hold. Default 0.8.
    pub opcache_min_ratio: f64,
    /// Paths requested through the edge at start, round after round, until
    /// every pool is ready (warms OPcache and the pages' code paths), e.g.
    /// `["/", "/women/tops.html"]`. Default `[]`.
    pub warmup_urls: Vec<String>,
    /// A sitemap (Magento's `sitemap.xml`, gzipped or not) or a list of
    /// URLs, one a line, whose first pages (up to 50, in the sitemap's
    /// order) are warmed after `warmup_urls`: the pages shoppers land on,
    /// without listing them twice. Relative to `magento.docroot`, or
    /// absolute; read at start and at each reload. A file that cannot be read
    /// is logged and skipped (a pod still starts). Default `""` (none).
    pub warmup_sitemap: String,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            health_script: String::new(),
            opcache_min_ratio: DEFAULT_OPCACHE_MIN_RATIO,
            warmup_urls: Vec::new(),
            warmup_sitemap: String::new(),
        }
    }
}

/// `[cache]`: the full-page cache, a drop-in for Magento's Varnish
/// integration (Magento configured for Varnish with `http_cache_hosts`
/// pointing at the edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache pages in front of PHP, as Varnish would in Magento's place.
    /// `false` sends every request to PHP. Default true.
    pub enabled: bool,
    /// Memory ceiling of the object store: bytes as an integer, or a string
    /// with a unit, case-insensitive: `B`; binary `KiB`, `MiB`, `GiB`, `TiB`
    /// and their short forms `K`, `M`, `G`, `T` (as in Varnish
    /// `-s malloc,256m`); decimal `KB`, `MB`, `GB`, `TB`. At least 1 MiB.
    /// Default `"256MiB"`.
    pub size: ByteSize,
    /// Client addresses (CIDR blocks or single IPs) allowed to send `PURGE`
    /// (and to use the cache admin API); Magento's `access_list`. Everyone
    /// else gets 405. `[]` refuses every `PURGE`.
    /// Default `["127.0.0.1/32", "::1/128"]`.
    pub purge_acl: Vec<String>,
    /// Seconds past its TTL a stale page is still served (and refreshed in
    /// the background) while PHP is healthy; Magento's
    /// `system/full_page_cache/varnish/grace_period`. Default 300.
    pub grace_period_secs: u64,
    /// Seconds a cacheable response without `max-age`, `s-maxage` or
    /// `Expires` is kept (Varnish `default_ttl`). Default 120.
    pub default_ttl_secs: u64,
    /// Request header whose value (e.g. `https`) is part of the cache key, so
    /// http and https pages are stored apart; Magento's
    /// `web/secure/offloader_header`. `""`: none. Default `"X-Forwarded-Proto"`.
    pub ssl_offloaded_header: String,
    /// Which error responses may be cached: `"cache-404"` (Magento's shipped
    /// VCL: 200 and 404 are cacheable, other statuses are not) or `"never"`
    /// (Magento's newest VCL: 403, 404 and 5xx are never cached).
    /// Default `"cache-404"`.
    pub error_statuses: String,
    /// `PURGE` marks matching pages stale (served within the grace period
    /// while refreshed) instead of evicting them. Default false.
    pub soft_purge: bool,
    /// Largest response body in bytes that is cached; larger responses are
    /// streamed through uncached. At most `size`. Default 16777216 (16 MiB).
    pub max_object_bytes: u64,
    /// Process `<esi:include>` in cached text responses, as Magento's VCL
    /// does (blocks with their own TTL). Default true.
    pub esi: bool,
    /// Also serve brotli to clients that accept `br` (Varnish only has gzip).
    /// Default true.
    pub brotli: bool,
    /// Query parameters stripped from cacheable URLs before the lookup, each
    /// a regex fragment as in the alternation of Magento's VCL (e.g.
    /// `"utm_[a-z]+"`, `"gclid"`). A non-empty list replaces the built-in
    /// one. Default `[]`: the built-in list, Magento's marketing-parameter
    /// list (its newest VCL's, plus `ie` and `origin` from older ones).
    pub tracking_params: Vec<String>,
    /// `[cache.health_check]`: the backend probe that decides between the
    /// grace period and serving stale pages without limit.
    pub health_check: HealthCheckConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            size: ByteSize::Text(DEFAULT_CACHE_SIZE.to_owned()),
            purge_acl: DEFAULT_PURGE_ACL.iter().map(|&s| s.to_owned()).collect(),
            grace_period_secs: DEFAULT_GRACE_PERIOD_SECS,
            default_ttl_secs: DEFAULT_CACHE_DEFAULT_TTL_SECS,
            ssl_offloaded_header: DEFAULT_SSL_OFFLOADED_HEADER.to_owned(),
            error_statuses: DEFAULT_ERROR_STATUSES.to_owned(),
            soft_purge: false,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            esi: true,
            brotli: true,
            tracking_params: Vec::new(),
            health_check: HealthCheckConfig::default(),
        }
    }
}

/// `[cache.health_check]`: the probe of Magento's VCL. PHP is healthy when at
/// least `threshold` of the last `window` probes answered 200 in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Path requested from PHP (`GET`), starting with `/`.
    /// Default `"/health_check.php"` (Magento's `pub/health_check.php`).
    pub path: String,
    /// Seconds between probes. Default 5.
    pub interval_secs: u64,
    /// Seconds a probe may take before it counts as failed. Default 2.
    pub timeout_secs: u64,
    /// How many recent probes are remembered; 1 to 64. Default 10.
    pub window: u32,
    /// How many of them must have succeeded; 1 to `window`. Default 5.
    pub threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: DEFAULT_HEALTH_CHECK_PATH.to_owned(),
            interval_secs: DEFAULT_HEALTH_CHECK_INTERVAL_SECS,
            timeout_secs: DEFAULT_HEALTH_CHECK_TIMEOUT_SECS,
            window: DEFAULT_HEALTH_CHECK_WINDOW,
            threshold: DEFAULT_HEALTH_CHECK_THRESHOLD,
        }
    }
}

/// A byte count as written: a TOML integer (bytes) or a string with a unit
/// (`"512MiB"`). [`ByteSize::bytes`] reads either.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// An integer: bytes.
    Bytes(u64),
    /// A string: a whole number followed by an optional unit, e.g.
    /// `"512MiB"`, `"2G"`, `"100 KB"`.
    Text(String),
}

/// The units [`ByteSize::Text`] accepts (lower-cased) and what they multiply by.
const BYTE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1_000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("tb", 1_000_000_000_000),
];

impl ByteSize {
    /// The number of bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] when the text is not a whole number with an
    /// optional known unit, or the result does not fit in a `u64`.
    pub fn bytes(&self) -> Result<u64, ErrorKind> {
        let text = match self {
            Self::Bytes(n) => return Ok(*n),
            Self::Text(text) => text,
        };
        let invalid = || {
            ErrorKind::Invalid(format!(
                "invalid size {text:?}: expected a whole number of bytes, optionally with a unit: \
                 B, KiB, MiB, GiB, TiB (or K, M, G, T: also binary) or KB, MB, GB, TB (decimal), \
                 e.g. \"512MiB\""
            ))
        };
        let trimmed = text.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(digits_end);
        if digits.is_empty() {
            return Err(invalid());
        }
        let unit = unit.trim_start().to_ascii_lowercase();
        let Some(&(_, factor)) = BYTE_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .ok_or_else(|| {
                ErrorKind::Invalid(format!(
                    "size {text:?} is too large (more than {} bytes)",
                    u64::MAX
                ))
            })
    }
}

impl Default for ByteSize {
    fn default() -> Self {
        Self::Text(DEFAULT_CACHE_SIZE.to_owned())
    }
}

impl From<u64> for ByteSize {
    fn from(bytes: u64) -> Self {
        Self::Bytes(bytes)
    }
}

impl From<&str> for ByteSize {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{n}"),
            Self::Text(text) => f.write_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of bytes or a size string like \"512MiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize::Bytes(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize::Bytes)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                Ok(ByteSize::Text(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ByteSize, E> {
                Ok(ByteSize::Text(v))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        let ok = |s: ByteSize| match s.bytes() {
            Ok(n) => n,
            Err(e) => panic!("{s}: {e}"),
        };
        assert_eq!(ok(1_048_576.into()), 1 << 20);
        assert_eq!(ok("512MiB".into()), 512 << 20);
        assert_eq!(ok("1GiB".into()), 1 << 30);
        assert_eq!(ok("256M".into()), 256 << 20);
        assert_eq!(ok("256m".into()), 256 << 20);
        assert_eq!(ok("2G".into()), 2 << 30);
        assert_eq!(ok("1g".into()), 1 << 30);
        assert_eq!(ok("100KiB".into()), 100 << 10);
        assert_eq!(ok("100kib".into()), 100 << 10);
        assert_eq!(ok("2MB".into()), 2_000_000);
        assert_eq!(ok("1 tb".into()), 1_000_000_000_000);
        assert_eq!(ok("1T".into()), 1 << 40);
        assert_eq!(ok("4096".into()), 4096);
        assert_eq!(ok("4096B".into()), 4096);
        assert_eq!(ok(ByteSize::default()), 256 << 20);
        for bad in [
            "12XB",
            "",
            "MiB",
            "1.5GiB",
            "-1M",
            "1 Mi B",
            "0x10",
            "16777216T",
        ] {
            assert!(ByteSize::from(bad).bytes().is_err(), "{bad:?}");
        }
        assert_eq!(
            ByteSize::from("16777216T")
                .bytes()
                .map_err(|e| e.to_string()),
            Err(format!(
                "size \"16777216T\" is too large (more than {} bytes)",
                u64::MAX
            ))
        );
    }
}
