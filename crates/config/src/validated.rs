//! [`Validated`]: the configuration the runtime uses, and [`compile`], which
//! builds it from [`file::Config`] while collecting every error.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use crate::compile::{p, parse_socket_addr, Errors};
use crate::error::{ConfigError, ErrorKind, KeyPath};
use crate::file;
use crate::upstream::UpstreamUrl;

/// A checked configuration. The runtime sees only this type: every address is
/// parsed, every limit is known to be usable, every choice is an enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// From `[server]`.
    pub server: ServerSettings,
    /// From `[log]`.
    pub log: LogSettings,
    /// From `[magento]`.
    pub magento: MagentoSettings,
    /// From `[upstream]`.
    pub upstream: UpstreamSettings,
    /// From `[cache]`.
    pub cache: CacheSettings,
    /// From `[pools.*]` and `[upstream]`: the PHP-FPM pools, `frontend`
    /// first. Empty when the upstream is HTTP.
    pub pools: Vec<PoolSettings>,
    /// From `[routing]`.
    pub routing: RoutingSettings,
    /// From `[readiness]`.
    pub readiness: ReadinessSettings,
    /// From `[waf]`.
    pub waf: WafSettings,
    /// From `[cluster]`.
    pub cluster: ClusterSettings,
    /// From `[dbproxy]` (checked here too, so `magestack check` reports
    /// it; the writer is required only by [`crate::load_dbproxy`]).
    pub dbproxy: crate::DbproxySettings,
    /// From `[rollout]`; `None` when the file has no such table.
    pub rollout: Option<RolloutSettings>,
    /// From `[media]`.
    pub media: crate::MediaSettings,
    /// From `[static]`.
    pub static_files: crate::StaticSettings,
    /// From `[object_store]`.
    pub object_store: crate::ObjectStoreSettings,
}

/// Checked `[rollout]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSettings {
    /// A configured pool's name.
    pub pool: String,
    /// Parsed, of the upstream's protocol; may be empty (a start request
    /// gives them).
    pub canary_endpoints: Vec<UpstreamUrl>,
    /// Absolute.
    pub canary_docroot: Option<PathBuf>,
    /// A release id, or `None`.
    pub canary_release: Option<String>,
    /// The checked plan.
    pub plan: magestack_rollout::Plan,
    /// Positive, at most an hour.
    pub analysis_interval: Duration,
    /// Positive.
    pub min_requests: u64,
    /// `max_error_ratio` in parts per million (0–1,000,000).
    pub max_error_ppm: u32,
    /// `max_p95_ratio` in thousandths (≥ 1000).
    pub max_p95_milli: u32,
    /// Checkout stickiness.
    pub checkout_sticky: Duration,
    /// Where the state is kept without Redis.
    pub state_file: Option<PathBuf>,
}

/// Checked `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` URL; `None` = no purge bus.
    pub redis_url: Option<String>,
    /// CA bundle for `rediss://` (`None` = the system's trust store).
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Pub/sub channel, non-empty.
    pub channel: String,
    /// The shared L2 store is on.
    pub l2: bool,
}

/// One checked `[[waf.rate_limit_rules]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRule {
    /// Name (`[a-z0-9_]`, non-empty).
    pub name: String,
    /// Prefix or (valid) regex.
    pub matcher: PathMatch,
    /// Upper-case method names; empty = all.
    pub methods: Vec<String>,
    /// Requests per period. Positive.
    pub limit: u32,
    /// Positive.
    pub period: Duration,
}

/// Checked `[waf]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafSettings {
    /// Rate limits on credential endpoints.
    pub rate_limits: bool,
    /// The limiter's key bound. Positive.
    pub rate_limit_max_keys: usize,
    /// IPv6 clients are counted per network of this prefix length. At most 128.
    pub ipv6_prefix_len: u8,
    /// Configured limits, before the built-in ones.
    pub rate_limit_rules: Vec<RateLimitRule>,
    /// Never blocked or limited.
    pub allow: Vec<IpNet>,
    /// Answered 403.
    pub deny: Vec<IpNet>,
    /// Deny-list files (read by the edge, re-read on change).
    pub deny_files: Vec<PathBuf>,
    /// Only these reach the admin front name (empty: everyone).
    pub admin_allow: Vec<IpNet>,
    /// 404 for `/admin` when the admin front name is custom.
    pub close_default_admin: bool,
    /// Injection inspection mode.
    pub injection: file::InjectionMode,
    /// Largest body read for inspection. Positive.
    pub inspect_body_bytes: usize,
    /// Operator exclusions, checked.
    pub injection_exclusions: Vec<InjectionExclusion>,
    /// Delay before a 429 (at most 10 s).
    pub tarpit: Duration,
}

/// One checked `[[waf.injection_exclusions]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionExclusion {
    /// Path prefix; empty = everywhere.
    pub prefix: String,
    /// Field patterns (`name`, `prefix*`, `*`), at least one.
    pub fields: Vec<String>,
    /// Lowercase location names (`path`, `query`, `cookie`, `body`, `header`); empty = all.
    pub locations: Vec<String>,
    /// `sqli` and/or `xss`, at least one.
    pub attacks: Vec<String>,
}

/// Checked `[readiness]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessSettings {
    /// The health script, relative to the docroot (no `..`, not absolute).
    pub health_script: Option<PathBuf>,
    /// Share of expected scripts OPcache must hold, in parts per million.
    pub opcache_min_ppm: u32,
    /// Warm-up paths (each starts with `/`).
    pub warmup_urls: Vec<String>,
    /// A sitemap whose first pages are warmed too; relative to the docroot
    /// unless absolute. Read by the binary at start, not here.
    pub warmup_sitemap: Option<PathBuf>,
}

/// A checked PHP-FPM pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `frontend`, `admin` or a configured name (`[a-z0-9_-]`, a metrics label).
    pub name: String,
    /// FastCGI endpoints; never empty.
    pub endpoints: Vec<UpstreamUrl>,
    /// Requests in PHP at once over all endpoints; 0 = no cap.
    pub max_inflight: usize,
    /// Requests that may wait for a slot.
    pub queue_size: usize,
    /// Longest wait for a slot. Positive.
    pub queue_timeout: Duration,
    /// Response read timeout (→ 504). Positive.
    pub request_timeout: Duration,
    /// Connect timeout. Positive.
    pub connect_timeout: Duration,
    /// FPM's `pm.status_path`, if status is read (starts with `/`).
    pub status_path: Option<String>,
    /// Status addresses, one per endpoint, or empty (the endpoints).
    pub status_endpoints: Vec<UpstreamUrl>,
    /// Time between health checks. Positive.
    pub check_interval: Duration,
    /// Failed checks before an endpoint is taken out. Positive.
    pub unhealthy_after: u32,
    /// Time between DNS lookups of endpoints given by host name; zero: no
    /// discovery (the system resolves the name at each connect).
    pub resolve_interval: Duration,
}

/// Checked `[routing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSettings {
    /// Magento's admin front name; a non-empty path segment.
    pub admin_front_name: String,
    /// Configured rules, in order; each names an existing pool.
    pub rules: Vec<RouteRule>,
}

/// One `[[routing.rules]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// What the path must match.
    pub matcher: PathMatch,
    /// The pool's name.
    pub pool: String,
}

/// How a rule matches a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this.
    Prefix(String),
    /// The path matches this regex (valid: checked here).
    Regex(String),
}

/// Checked `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Traffic listeners; never empty, no two on one port.
    pub listen: Vec<SocketAddr>,
    /// Admin listener (health, metrics, admin API), if any.
    pub admin_listen: Option<SocketAddr>,
    /// The in-cluster purge listener, if configured.
    pub purge_listen: Option<SocketAddr>,
    /// `SERVER_NAME` for PHP.
    pub server_name: String,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Request head limit in bytes (→ 431). Positive.
    pub max_header_bytes: usize,
    /// Request header count limit (→ 431). Positive.
    pub max_headers: usize,
    /// Request body limit in bytes (→ 413). Positive.
    pub max_body_bytes: u64,
    /// Time allowed to receive the request head (→ 408). Positive.
    pub header_read_timeout: Duration,
    /// Longest gap between bytes of a request body (→ 408). Positive.
    pub body_read_timeout: Duration,
    /// Keep-alive idle time before the connection is closed. Positive.
    pub idle_timeout: Duration,
    /// Drain time on SIGTERM; zero exits at once.
    pub drain_timeout: Duration,
    /// Accept h2c prior knowledge on plaintext listeners.
    pub h2c: bool,
    /// `SO_REUSEPORT` on the traffic listeners.
    pub reuse_port: bool,
    /// Open connections per client address; 0 = no cap.
    pub max_connections_per_ip: usize,
    /// Open client connections in all; 0 = from the descriptor limit.
    pub max_client_connections: u64,
    /// Bodies up to this stay in memory. Positive.
    pub body_buffer_bytes: u64,
    /// Memory all buffered bodies may use together. Positive.
    pub body_memory_bytes: u64,
    /// Directory for spooled bodies; `None` = the system's.
    pub body_spool_dir: Option<PathBuf>,
    /// Client traffic comes through a load balancer (PURGE needs the token).
    pub behind_load_balancer: bool,
    /// TLS for every listener, if configured.
    pub tls: Option<TlsSettings>,
}

/// Checked `[server.tls]`. The files are not opened here; the edge reads
/// them when it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// Checked `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// A `tracing` filter directive that parses.
    pub level: String,
    /// One log line per request.
    pub access_log: bool,
}

/// Checked `[magento]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagentoSettings {
    /// Magento's `pub/` directory, absolute. Always `Some` when the upstream
    /// is FastCGI.
    pub docroot: Option<PathBuf>,
    /// Static-file header flavour.
    pub nginx_generation: NginxGeneration,
    /// Gzip compressible responses.
    pub gzip: bool,
    /// Smallest body that is gzipped, in bytes.
    pub gzip_min_length: usize,
    /// `PHP_VALUE` to send; `None` when configured empty.
    pub php_value: Option<String>,
    /// `PHP_FLAG` to send; `None` when configured empty.
    pub php_flag: Option<String>,
    /// `MAGE_MODE` to send; `None` when configured empty.
    pub mage_mode: Option<MageMode>,
    /// Host → store/website mappings; hosts lower-case and unique.
    pub run: Vec<RunMapping>,
    /// Paths the open-file cache keeps; 0 = off.
    pub open_file_cache_entries: usize,
    /// Bytes of file contents and gzip variants it keeps.
    pub open_file_cache_bytes: u64,
    /// How long an entry is trusted before it is checked again.
    pub open_file_cache_valid: Duration,
    /// `magento.release`: the release id when the docroot names none;
    /// `None` when configured empty. A valid [`is_release_id`].
    pub release: Option<String>,
}

pub use magestack_rollout::{is_release_id, MAX_RELEASE_ID_LEN};

/// One checked `[[magento.run]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMapping {
    /// Request host (lower-case, no port).
    pub host: String,
    /// `MAGE_RUN_CODE`.
    pub code: String,
    /// `MAGE_RUN_TYPE`.
    pub run_type: RunType,
}

/// Checked `[upstream]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Where PHP runs.
    pub url: UpstreamUrl,
    /// Connect timeout (→ 504). Positive.
    pub connect_timeout: Duration,
    /// Response read timeout (→ 504). Positive.
    pub read_timeout: Duration,
    /// Idle keep-alive connections kept per endpoint; 0 disables pooling.
    pub keepalive_connections: usize,
    /// Cap on open connections per endpoint (PHP-FPM's `pm.max_children`); 0 = none.
    pub max_connections: usize,
    /// Response head limit in bytes (→ 502). Positive.
    pub max_response_header_bytes: usize,
    /// Nameservers for endpoint discovery; empty: the system's.
    pub dns_servers: Vec<SocketAddr>,
}

/// Checked `[cache]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether the full-page cache runs at all.
    pub enabled: bool,
    /// Memory ceiling of the object store, in bytes; at least 1 MiB.
    pub size_bytes: u64,
    /// Clients allowed to send `PURGE` (and to use the cache admin API).
    /// Host bits cleared; single IPs are /32 or /128. May be empty (nobody).
    pub purge_acl: Vec<IpNet>,
    /// Stale pages are served this long past their TTL while PHP is healthy.
    pub grace_period: Duration,
    /// TTL of cacheable responses that carry none; may be zero.
    pub default_ttl: Duration,
    /// Request header hashed into the key (SSL offloading); `None` when
    /// configured empty. A valid header name, as written.
    pub ssl_offloaded_header: Option<String>,
    /// Which error statuses may be cached.
    pub error_statuses: ErrorStatuses,
    /// `PURGE` marks stale instead of evicting.
    pub soft_purge: bool,
    /// Largest cached body in bytes; positive and at most `size_bytes`.
    pub max_object_bytes: usize,
    /// Process `<esi:include>`.
    pub esi: bool,
    /// Serve brotli to clients that accept `br`.
    pub brotli: bool,
    /// Tracking-parameter regex fragments, each non-empty and valid on its
    /// own. Empty means the built-in list (Magento's marketing parameters).
    pub tracking_params: Vec<String>,
    /// The backend health probe.
    pub health_check: HealthCheckSettings,
}

/// Checked `[cache.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSettings {
    /// Path probed with `GET`; starts with `/`.
    pub path: String,
    /// Time between probes. Positive.
    pub interval: Duration,
    /// Time a probe may take. Positive.
    pub timeout: Duration,
    /// Probes remembered: 1 to 64.
    pub window: u32,
    /// Good probes needed among them: 1 to `window`.
    pub threshold: u32,
}

macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $word:literal, )+ }
        expected = $expected:literal;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// The configuration word for this value.
            pub fn as_str(&self) -> &'static str {
                match self { $( Self::$variant => $word, )+ }
            }
        }

        impl FromStr for $name {
            type Err = ErrorKind;
            fn from_str(s: &str) -> Result<Self, ErrorKind> {
                match s {
                    $( $word => Ok(Self::$variant), )+
                    other => Err(ErrorKind::UnknownVariant {
                        value: other.to_owned(),
                        expected: $expected,
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum! {
    /// `log.format`.
    pub enum LogFormat {
        /// Human-readable lines.
        Text => "text",
        /// One JSON object per line.
        Json => "json",
    }
    expected = "\"text\", \"json\"";
}

word_enum! {
    /// `magento.nginx_generation`: which `nginx.conf.sample` the static-file
    /// headers copy.
    pub enum NginxGeneration {
        /// 2.4-era sample: `Cache-Control: public` plus `Expires` one year ahead.
        G2 => "g2",
        /// Current sample: `Cache-Control: public, max-age=31536000, immutable`.
        G3 => "g3",
    }
    expected = "\"g3\", \"g2\"";
}

word_enum! {
    /// `magento.mage_mode`.
    pub enum MageMode {
        /// `default`.
        Default => "default",
        /// `developer`.
        Developer => "developer",
        /// `production`.
        Production => "production",
    }
    expected = "\"\", \"default\", \"developer\", \"production\"";
}

word_enum! {
    /// `magento.run[].type`: the `MAGE_RUN_TYPE` sent with the code.
    pub enum RunType {
        /// `store`: the code names a store view.
        Store => "store",
        /// `website`: the code names a website.
        Website => "website",
    }
    expected = "\"store\", \"website\"";
}

word_enum! {
    /// `cache.error_statuses`: which of Magento's VCL variants decides whether
    /// error responses are cached.
    pub enum ErrorStatuses {
        /// Magento's shipped VCL (and its `no-caching.vtc`): 200 and 404 are
        /// cacheable, every other status is not.
        Cache404 => "cache-404",
        /// Magento's newest VCL: 403, 404 and 5xx are never cached; other
        /// statuses follow the usual TTL rules.
        Never => "never",
    }
    expected = "\"cache-404\", \"never\"";
}

/// Builds the runtime configuration from the file types.
///
/// Checks everything the types cannot: addresses and CIDRs parse, limits and
/// timeouts are positive, listeners do not clash, `[server.tls]` has both
/// files, enumerated words are known, `magento.docroot` is present for
/// FastCGI upstreams, multi-store hosts are unique, `cache.size` reads as at
/// least 1 MiB, tracking parameters are valid regexes, the health probe's
/// threshold fits its window.
///
/// Pure: no file is opened and no name is resolved.
///
/// # Errors
///
/// Every problem found, each with the key path it concerns, in schema order.
pub fn compile(config: file::Config) -> Result<Validated, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let server = compile_server(config.server, &mut errs);
    let log = compile_log(config.log, &mut errs);
    let upstream = compile_upstream(config.upstream, &mut errs);
    let fastcgi = upstream.as_ref().map(|u| u.url.is_fastcgi());
    let magento = compile_magento(config.magento, fastcgi, &mut errs);
    let cache = compile_cache(config.cache, &mut errs);
    let pools = compile_pools(config.pools, upstream.as_ref(), &mut errs);
    let routing = compile_routing(config.routing, &pools, &mut errs);
    let readiness = compile_readiness(config.readiness, &mut errs);
    let waf = WafSettings {
        rate_limits: config.waf.rate_limits,
        rate_limit_max_keys: errs
            .positive_size(p("waf.rate_limit_max_keys"), config.waf.rate_limit_max_keys),
        ipv6_prefix_len: {
            let len = config.waf.ipv6_prefix_len;
            if len > 128 {
                errs.push(
                    p("waf.ipv6_prefix_len"),
                    ErrorKind::Invalid(format!("must be at most 128, got {len}")),
                );
            }
            len.min(128)
        },
        rate_limit_rules: compile_rate_rules(&config.waf.rate_limit_rules, &mut errs),
        allow: parse_cidrs(&p("waf.allow"), &config.waf.allow, &mut errs),
        deny: parse_cidrs(&p("waf.deny"), &config.waf.deny, &mut errs),
        deny_files: config.waf.deny_files.clone(),
        admin_allow: parse_cidrs(&p("waf.admin_allow"), &config.waf.admin_allow, &mut errs),
        close_default_admin: config.waf.close_default_admin,
        injection: config.waf.injection,
        inspect_body_bytes: errs
            .positive_size(p("waf.inspect_body_bytes"), config.waf.inspect_body_bytes),
        injection_exclusions: compile_exclusions(&config.waf.injection_exclusions, &mut errs),
        tarpit: {
            if config.waf.tarpit_ms > 10_000 {
                errs.push(
                    p("waf.tarpit_ms"),
                    ErrorKind::Invalid(
                        "at most 10000 (each tarpitted request holds a connection)".into(),
                    ),
                );
            }
            Duration::from_millis(config.waf.tarpit_ms.min(10_000))
        },
    };
    let cluster = compile_cluster(config.cluster, &mut errs);
    let dbproxy = crate::dbproxy::compile_dbproxy(config.dbproxy, false, &mut errs);
    let rollout = config
        .rollout
        .map(|r| compile_rollout(r, upstream.as_ref(), &pools, &mut errs));
    let media = crate::media::compile_media(config.media, &mut errs);
    let static_files = crate::media::compile_static(config.static_files, &mut errs);
    let object_store = crate::media::compile_object_store(config.object_store, &mut errs);
    match (log, magento, upstream, cache, dbproxy, rollout) {
        (Some(log), Some(magento), Some(upstream), Some(cache), Some(dbproxy), rollout)
            if errs.0.is_empty() && rollout.as_ref().is_none_or(Option::is_some) =>
        {
            Ok(Validated {
                server,
                log,
                magento,
                upstream,
                cache,
                pools,
                routing,
                readiness,
                waf,
                cluster,
                dbproxy,
                rollout: rollout.flatten(),
                media,
                static_files,
                object_store,
            })
        }
        _ => Err(errs.0),
    }
}

/// Longest `rollout.analysis_interval_secs`.
const MAX_ANALYSIS_INTERVAL_SECS: u64 = 3600;

fn compile_rollout(
    r: file::RolloutConfig,
    upstream: Option<&UpstreamSettings>,
    pools: &[PoolSettings],
    errs: &mut Errors,
) -> Option<RolloutSettings> {
    let known = |name: &str| name == "frontend" || pools.iter().any(|p| p.name == name);
    if !known(&r.pool) {
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        errs.push(
            p("rollout.pool"),
            ErrorKind::Invalid(format!(
                "{:?} is not a configured pool (pools: {})",
                r.pool,
                if names.is_empty() {
                    "frontend".to_owned()
                } else {
                    names.join(", ")
                }
            )),
        );
    }
    let fastcgi = upstream.map(|u| u.url.is_fastcgi());
    let mut canary_endpoints = Vec::new();
    for (i, e) in r.canary_endpoints.iter().enumerate() {
        match e.parse::<UpstreamUrl>() {
            Ok(u) if fastcgi.is_none_or(|f| f == u.is_fastcgi()) => canary_endpoints.push(u),
            Ok(_) => errs.push(
                p("rollout.canary_endpoints").index(i),
                ErrorKind::Invalid(format!(
                    "{e:?} does not speak the protocol of upstream.url ({}): the canary is the same \
                     application in another release",
                    if fastcgi == Some(true) {
                        "FastCGI: fcgi://host:port or fcgi+unix:///path"
                    } else {
                        "HTTP: http://host:port"
                    }
                )),
            ),
            Err(err) => errs.push(
                p("rollout.canary_endpoints").index(i),
                ErrorKind::UpstreamUrl(err),
            ),
        }
    }
    match &r.canary_docroot {
        Some(d) if !d.is_absolute() => errs.push(
            p("rollout.canary_docroot"),
            ErrorKind::Invalid(format!(
                "must be an absolute path (the canary release's pub/ directory), got {:?}",
                d.display().to_string()
            )),
        ),
        _ => {}
    }
    let canary_release = match r.canary_release.trim() {
        "" => None,
        id if is_release_id(id) => Some(id.to_owned()),
        id => {
            errs.push(
                p("rollout.canary_release"),
                ErrorKind::Invalid(format!(
                    "{id:?}: a release id is 1 to {MAX_RELEASE_ID_LEN} letters, digits, '.', '_' or '-'"
                )),
            );
            None
        }
    };
    let plan = match magestack_rollout::Plan::parse(&r.steps) {
        Ok(plan) => Some(plan),
        Err(e) => {
            let path = match e.index() {
                Some(i) => p("rollout.steps").index(i),
                None => p("rollout.steps"),
            };
            // The index is in the path; the message without its prefix.
            let msg = e.to_string();
            let msg = msg
                .split_once("]: ")
                .filter(|_| e.index().is_some())
                .map_or(msg.clone(), |(_, m)| m.to_owned());
            errs.push(path, ErrorKind::Invalid(msg));
            None
        }
    };
    if r.analysis_interval_secs == 0 || r.analysis_interval_secs > MAX_ANALYSIS_INTERVAL_SECS {
        errs.push(
            p("rollout.analysis_interval_secs"),
            ErrorKind::Invalid(format!(
                "must be 1 to {MAX_ANALYSIS_INTERVAL_SECS}, got {}",
                r.analysis_interval_secs
            )),
        );
    }
    if r.min_requests == 0 {
        errs.push(
            p("rollout.min_requests"),
            ErrorKind::Invalid(
                "must be at least 1 (200 is the default; see docs/rollouts.md)".into(),
            ),
        );
    }
    if !(0.0..=1.0).contains(&r.max_error_ratio) {
        errs.push(
            p("rollout.max_error_ratio"),
            ErrorKind::Invalid(format!("{} must be between 0 and 1", r.max_error_ratio)),
        );
    }
    if !(1.0..=1000.0).contains(&r.max_p95_ratio) {
        errs.push(
            p("rollout.max_p95_ratio"),
            ErrorKind::Invalid(format!(
                "{} must be between 1 and 1000 (canary p95 / stable p95)",
                r.max_p95_ratio
            )),
        );
    }
    Some(RolloutSettings {
        pool: r.pool,
        canary_endpoints,
        canary_docroot: r.canary_docroot,
        canary_release,
        plan: plan?,
        analysis_interval: Duration::from_secs(
            r.analysis_interval_secs
                .clamp(1, MAX_ANALYSIS_INTERVAL_SECS),
        ),
        min_requests: r.min_requests.max(1),
        max_error_ppm: (r.max_error_ratio.clamp(0.0, 1.0) * 1_000_000.0).round() as u32,
        max_p95_milli: (r.max_p95_ratio.clamp(1.0, 1000.0) * 1000.0).round() as u32,
        checkout_sticky: Duration::from_secs(r.checkout_sticky_secs),
        state_file: r.state_file,
    })
}

fn compile_cluster(c: file::ClusterConfig, errs: &mut Errors) -> ClusterSettings {
    let url = c.redis_url.trim();
    let redis_url = if url.is_empty() {
        None
    } else if !(url.starts_with("redis://") && url.len() > "redis://".len()
        || url.starts_with("rediss://") && url.len() > "rediss://".len())
    {
        errs.push(
            p("cluster.redis_url"),
            ErrorKind::Invalid(format!(
                "{url:?} is not a redis:// or rediss:// URL (e.g. redis://127.0.0.1:6379, \
                 rediss://master.cache.example.com:6379)"
            )),
        );
        None
    } else if url.contains('#') {
        // The redis crate reads `#insecure` as "skip certificate checks".
        errs.push(
            p("cluster.redis_url"),
            ErrorKind::Invalid(format!(
                "{url:?}: no fragment (#...); the server's certificate is always verified"
            )),
        );
        None
    } else if url.contains('@') {
        errs.push(
            p("cluster.redis_url"),
            ErrorKind::Invalid(
                "no credentials in the URL: set MAGESTACK_REDIS_PASSWORD or MAGESTACK_REDIS_PASSWORD_FILE".into(),
            ),
        );
        None
    } else {
        Some(url.to_owned())
    };
    let ca = c.redis_ca_file.trim();
    let redis_ca_file = if ca.is_empty() {
        None
    } else if !url.starts_with("rediss://") {
        errs.push(
            p("cluster.redis_ca_file"),
            ErrorKind::Invalid(format!(
                "is only for TLS to Redis: cluster.redis_url {url:?} is not a rediss:// URL"
            )),
        );
        None
    } else {
        Some(std::path::PathBuf::from(ca))
    };
    if c.channel.trim().is_empty() {
        errs.push(
            p("cluster.channel"),
            ErrorKind::Invalid("must not be empty".into()),
        );
    }
    if c.l2 && redis_url.is_none() {
        errs.push(
            p("cluster.l2"),
            ErrorKind::Invalid("needs cluster.redis_url (or --redis)".into()),
        );
    }
    ClusterSettings {
        redis_url,
        redis_ca_file,
        channel: c.channel,
        l2: c.l2,
    }
}

/// Parses CIDR blocks (host bits cleared) or single IPs (as /32 or /128).
fn parse_cidrs(path: &KeyPath, texts: &[String], errs: &mut Errors) -> Vec<IpNet> {
    let mut nets = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let net = text
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match net {
            Ok(n) => nets.push(n),
            Err(_) => errs.push(
                path.index(i),
                ErrorKind::Cidr {
                    value: text.clone(),
                },
            ),
        }
    }
    nets
}

/// Two listeners clash when they share a non-zero port and either binds the
/// same address or one of them binds the unspecified address.
fn clash(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn compile_server(s: file::ServerConfig, errs: &mut Errors) -> ServerSettings {
    let mut listen: Vec<(KeyPath, SocketAddr)> = Vec::new();
    if s.listen.is_empty() {
        errs.push(p("server.listen"), ErrorKind::Empty);
    }
    for (i, text) in s.listen.iter().enumerate() {
        let path = p("server.listen").index(i);
        if let Some(addr) = parse_socket_addr(path.clone(), text, errs) {
            if let Some((other, other_addr)) = listen.iter().find(|(_, o)| clash(o, &addr)) {
                let other = format!("{other} ({other_addr})");
                errs.push(path.clone(), ErrorKind::Conflict { other });
            }
            listen.push((path, addr));
        }
    }
    let admin_listen = s.admin_listen.as_deref().and_then(|text| {
        let path = p("server.admin_listen");
        let addr = parse_socket_addr(path.clone(), text, errs)?;
        if let Some((other, other_addr)) = listen.iter().find(|(_, o)| clash(o, &addr)) {
            let other = format!("{other} ({other_addr})");
            errs.push(path, ErrorKind::Conflict { other });
        }
        Some(addr)
    });

    let purge_listen = s.purge_listen.as_deref().and_then(|text| {
        let path = p("server.purge_listen");
        let addr = parse_socket_addr(path.clone(), text, errs)?;
        let admin = admin_listen.map(|a| (p("server.admin_listen"), a));
        if let Some((other, other_addr)) = listen
            .iter()
            .cloned()
            .chain(admin)
            .find(|(_, o)| clash(o, &addr))
        {
            let other = format!("{other} ({other_addr})");
            errs.push(path, ErrorKind::Conflict { other });
        }
        Some(addr)
    });

    if s.server_name.is_empty() {
        errs.push(p("server.server_name"), ErrorKind::Empty);
    } else if s
        .server_name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        errs.push(
            p("server.server_name"),
            ErrorKind::Invalid(format!(
                "{:?} contains whitespace or control characters",
                s.server_name
            )),
        );
    }

    let trusted_proxies = parse_cidrs(&p("server.trusted_proxies"), &s.trusted_proxies, errs);

    let max_header_bytes = errs.positive_size(p("server.max_header_bytes"), s.max_header_bytes);
    let max_headers = errs.positive_size(p("server.max_headers"), u64::from(s.max_headers));
    let body_buffer_bytes = s.body_buffer_bytes;
    if body_buffer_bytes == 0 {
        errs.push(p("server.body_buffer_bytes"), ErrorKind::Zero);
    }
    let body_memory_bytes = s.body_memory_bytes;
    if body_memory_bytes == 0 {
        errs.push(p("server.body_memory_bytes"), ErrorKind::Zero);
    }
    if let Some(dir) = &s.body_spool_dir {
        if dir.as_os_str().is_empty() {
            errs.push(p("server.body_spool_dir"), ErrorKind::Empty);
        }
    }
    if s.max_body_bytes == 0 {
        errs.push(p("server.max_body_bytes"), ErrorKind::Zero);
    }
    let header_read_timeout = errs.positive_secs(
        p("server.header_read_timeout_secs"),
        s.header_read_timeout_secs,
    );
    let body_read_timeout =
        errs.positive_secs(p("server.body_read_timeout_secs"), s.body_read_timeout_secs);
    let idle_timeout = errs.positive_secs(p("server.idle_timeout_secs"), s.idle_timeout_secs);

    let tls = s.tls.map(|t| {
        for (key, file) in [("cert_file", &t.cert_file), ("key_file", &t.key_file)] {
            if file.as_os_str().is_empty() {
                errs.push(
                    p("server.tls").key(key),
                    ErrorKind::Required {
                        because: "when [server.tls] is present",
                    },
                );
            }
        }
        TlsSettings {
            cert_file: t.cert_file,
            key_file: t.key_file,
        }
    });

    ServerSettings {
        listen: listen.into_iter().map(|(_, a)| a).collect(),
        admin_listen,
        purge_listen,
        server_name: s.server_name,
        trusted_proxies,
        max_header_bytes,
        max_headers,
        max_body_bytes: s.max_body_bytes,
        header_read_timeout,
        body_read_timeout,
        idle_timeout,
        drain_timeout: Duration::from_secs(s.drain_timeout_secs),
        h2c: s.h2c,
        reuse_port: s.reuse_port,
        max_connections_per_ip: s.max_connections_per_ip as usize,
        max_client_connections: s.max_client_connections,
        body_buffer_bytes,
        body_memory_bytes,
        body_spool_dir: s.body_spool_dir,
        behind_load_balancer: s.behind_load_balancer,
        tls,
    }
}

pub(crate) fn compile_log(l: file::LogConfig, errs: &mut Errors) -> Option<LogSettings> {
    let format = errs.word::<LogFormat>(p("log.format"), &l.format);
    if l.level.trim().is_empty() {
        errs.push(p("log.level"), ErrorKind::Empty);
    } else if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&l.level) {
        errs.push(
            p("log.level"),
            ErrorKind::Invalid(format!("invalid tracing filter {:?}: {e}", l.level)),
        );
    }
    Some(LogSettings {
        format: format?,
        level: l.level,
        access_log: l.access_log,
    })
}

/// Checks newline-separated `name=value` ini lines for `PHP_VALUE`/`PHP_FLAG`.
fn php_ini(path: KeyPath, text: String, errs: &mut Errors) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    if text.contains('\0') {
        errs.push(
            path,
            ErrorKind::Invalid("contains a NUL character".to_owned()),
        );
        return Some(text);
    }
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let name_ok = line
            .split_once('=')
            .is_some_and(|(name, _)| !name.trim().is_empty());
        if !name_ok {
            errs.push(
                path.clone(),
                ErrorKind::Invalid(format!(
                    "line {} ({line:?}) is not name=value; separate settings with \\n",
                    n + 1
                )),
            );
        }
    }
    Some(text)
}

fn compile_magento(
    m: file::MagentoConfig,
    fastcgi: Option<bool>,
    errs: &mut Errors,
) -> Option<MagentoSettings> {
    match &m.docroot {
        Some(d) if d.as_os_str().is_empty() => errs.push(p("magento.docroot"), ErrorKind::Empty),
        Some(d) if !d.is_absolute() => errs.push(
            p("magento.docroot"),
            ErrorKind::Invalid(format!(
                "must be an absolute path (Magento's pub/ directory), got {:?}",
                d.display().to_string()
            )),
        ),
        Some(_) => {}
        None if fastcgi == Some(true) => errs.push(
            p("magento.docroot"),
            ErrorKind::Required {
                because: "when upstream.url is FastCGI: set it to Magento's pub/ directory (or pass --docroot)",
            },
        ),
        None => {}
    }
    let nginx_generation =
        errs.word::<NginxGeneration>(p("magento.nginx_generation"), &m.nginx_generation);
    let gzip_min_length = errs.size(p("magento.gzip_min_length"), m.gzip_min_length);
    let open_file_cache_entries = errs.size(
        p("magento.open_file_cache_entries"),
        m.open_file_cache_entries,
    );
    let open_file_cache_bytes = match m.open_file_cache_size.bytes() {
        Ok(n) => n,
        Err(kind) => {
            errs.push(p("magento.open_file_cache_size"), kind);
            0
        }
    };
    let open_file_cache_valid = Duration::from_secs(m.open_file_cache_valid_secs);
    let php_value = php_ini(p("magento.php_value"), m.php_value, errs);
    let php_flag = php_ini(p("magento.php_flag"), m.php_flag, errs);
    let mage_mode = if m.mage_mode.is_empty() {
        Some(None)
    } else {
        errs.word::<MageMode>(p("magento.mage_mode"), &m.mage_mode)
            .map(Some)
    };

    let mut run: Vec<RunMapping> = Vec::with_capacity(m.run.len());
    let mut run_ok = true;
    for (i, r) in m.run.into_iter().enumerate() {
        let base = p("magento.run").index(i);
        let host = r.host.to_ascii_lowercase();
        if host.is_empty() {
            errs.push(base.key("host"), ErrorKind::Empty);
        } else if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            errs.push(
                base.key("host"),
                ErrorKind::Invalid(format!(
                    "{:?} is not a host name (no port, scheme or path), e.g. \"de.example.com\"",
                    r.host
                )),
            );
        } else if let Some(j) = run.iter().position(|o| o.host == host) {
            errs.push(
                base.key("host"),
                ErrorKind::Conflict {
                    other: format!("magento.run[{j}].host ({host:?})"),
                },
            );
        }
        if r.code.is_empty() {
            errs.push(base.key("code"), ErrorKind::Empty);
        } else if !r
            .code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            errs.push(
                base.key("code"),
                ErrorKind::Invalid(format!(
                    "{:?}: store and website codes contain only letters, digits and _",
                    r.code
                )),
            );
        }
        match errs.word::<RunType>(base.key("type"), &r.run_type) {
            Some(run_type) => run.push(RunMapping {
                host,
                code: r.code,
                run_type,
            }),
            None => run_ok = false,
        }
    }

    let release = match m.release.trim() {
        "" => None,
        r if is_release_id(r) => Some(r.to_owned()),
        r => {
            errs.push(
                p("magento.release"),
                ErrorKind::Invalid(format!(
                    "{r:?}: a release id is 1 to {MAX_RELEASE_ID_LEN} letters, digits, '.', '_' \
                     or '-', e.g. \"1712345678\" or \"v2.4.8-p1\""
                )),
            );
            None
        }
    };

    Some(MagentoSettings {
        release,
        docroot: m.docroot,
        nginx_generation: nginx_generation?,
        gzip: m.gzip,
        gzip_min_length,
        php_value,
        php_flag,
        mage_mode: mage_mode?,
        run: if run_ok { run } else { return None },
        open_file_cache_entries,
        open_file_cache_bytes,
        open_file_cache_valid,
    })
}

fn compile_upstream(u: file::UpstreamConfig, errs: &mut Errors) -> Option<UpstreamSettings> {
    let url = match u.url.parse::<UpstreamUrl>() {
        Ok(url) => Some(url),
        Err(e) => {
            errs.push(p("upstream.url"), ErrorKind::UpstreamUrl(e));
            None
        }
    };
    let connect_timeout =
        errs.positive_secs(p("upstream.connect_timeout_secs"), u.connect_timeout_secs);
    let read_timeout = errs.positive_secs(p("upstream.read_timeout_secs"), u.read_timeout_secs);
    let keepalive_connections = errs.size(
        p("upstream.keepalive_connections"),
        u64::from(u.keepalive_connections),
    );
    let max_connections = errs.size(p("upstream.max_connections"), u64::from(u.max_connections));
    let max_response_header_bytes = errs.positive_size(
        p("upstream.max_response_header_bytes"),
        u.max_response_header_bytes,
    );
    let mut dns_servers = Vec::new();
    for (i, server) in u.dns_servers.iter().enumerate() {
        let parsed = server
            .parse::<SocketAddr>()
            .or_else(|_| server.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Ok(a) => dns_servers.push(a),
            Err(_) => errs.push(
                p("upstream.dns_servers").index(i),
                ErrorKind::Invalid(format!(
                    "{server:?} is not a nameserver address: expected an IP (\"10.100.0.10\") or IP:PORT (\"127.0.0.1:5353\", \"[::1]:53\")"
                )),
            ),
        }
    }
    Some(UpstreamSettings {
        url: url?,
        connect_timeout,
        read_timeout,
        keepalive_connections,
        max_connections,
        max_response_header_bytes,
        dns_servers,
    })
}

/// The pools: the configured ones, plus `frontend` from `[upstream]` when
/// not configured (with the upstream's URL and connection cap). `frontend`
/// comes first. No pools with an HTTP upstream.
fn compile_pools(
    pools: std::collections::BTreeMap<String, file::PoolConfig>,
    upstream: Option<&UpstreamSettings>,
    errs: &mut Errors,
) -> Vec<PoolSettings> {
    let Some(up) = upstream else {
        return Vec::new();
    };
    // Every endpoint speaks the protocol of `upstream.url`.
    let fastcgi = up.url.is_fastcgi();
    let mut out = Vec::new();
    if !pools.contains_key("frontend") {
        out.push(PoolSettings {
            name: "frontend".into(),
            endpoints: vec![up.url.clone()],
            max_inflight: up.max_connections,
            queue_size: file::DEFAULT_POOL_QUEUE_SIZE as usize,
            // As before pools existed: wait up to the connect timeout.
            queue_timeout: up.connect_timeout,
            request_timeout: up.read_timeout,
            connect_timeout: up.connect_timeout,
            status_path: None,
            status_endpoints: Vec::new(),
            check_interval: Duration::from_secs(file::DEFAULT_POOL_CHECK_INTERVAL_SECS),
            unhealthy_after: file::DEFAULT_POOL_UNHEALTHY_AFTER,
            resolve_interval: Duration::from_secs(file::DEFAULT_POOL_RESOLVE_INTERVAL_SECS),
        });
    }
    for (name, pc) in pools {
        let at = |key: &str| KeyPath::from_dotted("pools").key(&name).key(key);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            errs.push(
                KeyPath::from_dotted("pools").key(&name),
                ErrorKind::Invalid(format!(
                    "pool name {name:?} must be lowercase letters, digits, '_' or '-' (it is a metrics label)"
                )),
            );
        }
        let mut endpoints = Vec::new();
        if pc.endpoints.is_empty() {
            endpoints.push(up.url.clone());
        }
        for (i, e) in pc.endpoints.iter().enumerate() {
            match e.parse::<UpstreamUrl>() {
                Ok(u) if u.is_fastcgi() == fastcgi => endpoints.push(u),
                Ok(_) if fastcgi => errs.push(
                    at("endpoints").index(i),
                    ErrorKind::Invalid(format!(
                        "{e:?} is not a PHP-FPM endpoint (upstream.url is FastCGI): expected fcgi://host:port or fcgi+unix:///path"
                    )),
                ),
                Ok(_) => errs.push(
                    at("endpoints").index(i),
                    ErrorKind::Invalid(format!(
                        "{e:?} is not an HTTP endpoint (upstream.url is HTTP): expected http://host:port"
                    )),
                ),
                Err(err) => errs.push(at("endpoints").index(i), ErrorKind::UpstreamUrl(err)),
            }
        }
        let mut status_endpoints = Vec::new();
        for (i, e) in pc.status_endpoints.iter().enumerate() {
            match e.parse::<UpstreamUrl>() {
                Ok(u) if u.is_fastcgi() => status_endpoints.push(u),
                Ok(_) => errs.push(
                    at("status_endpoints").index(i),
                    ErrorKind::Invalid(format!(
                        "{e:?} is not a PHP-FPM status address: expected fcgi://host:port or fcgi+unix:///path"
                    )),
                ),
                Err(err) => errs.push(at("status_endpoints").index(i), ErrorKind::UpstreamUrl(err)),
            }
        }
        if !pc.status_endpoints.is_empty()
            && pc.status_endpoints.len() != endpoints.len().max(pc.endpoints.len())
        {
            errs.push(
                at("status_endpoints"),
                ErrorKind::Invalid(format!(
                    "{} status addresses for {} endpoints: give one per endpoint, in the same order, or none",
                    pc.status_endpoints.len(),
                    endpoints.len().max(pc.endpoints.len())
                )),
            );
        }
        if !fastcgi && (!pc.status_path.is_empty() || !pc.status_endpoints.is_empty()) {
            errs.push(
                at("status_path"),
                ErrorKind::Invalid(
                    "PHP-FPM status needs FastCGI endpoints (upstream.url is HTTP)".into(),
                ),
            );
        }
        if !pc.status_path.is_empty() && !pc.status_path.starts_with('/') {
            errs.push(
                at("status_path"),
                ErrorKind::Invalid(format!(
                    "{:?} must start with '/', e.g. \"/status\"",
                    pc.status_path
                )),
            );
        }
        let unhealthy_after = if pc.unhealthy_after == 0 {
            errs.push(at("unhealthy_after"), ErrorKind::Zero);
            1
        } else {
            pc.unhealthy_after
        };
        let secs_or = |secs: u64, default: Duration| {
            if secs == 0 {
                default
            } else {
                Duration::from_secs(secs)
            }
        };
        out.push(PoolSettings {
            max_inflight: errs.size(at("max_inflight"), u64::from(pc.max_inflight)),
            queue_size: errs.size(at("queue_size"), u64::from(pc.queue_size)),
            queue_timeout: errs.positive_secs(at("queue_timeout_secs"), pc.queue_timeout_secs),
            request_timeout: secs_or(pc.request_timeout_secs, up.read_timeout),
            connect_timeout: secs_or(pc.connect_timeout_secs, up.connect_timeout),
            status_path: (!pc.status_path.is_empty()).then(|| pc.status_path.clone()),
            status_endpoints,
            check_interval: errs.positive_secs(at("check_interval_secs"), pc.check_interval_secs),
            unhealthy_after,
            resolve_interval: Duration::from_secs(pc.resolve_interval_secs),
            name,
            endpoints,
        });
    }
    // `frontend` first: the fallback pool.
    out.sort_by_key(|p| p.name != "frontend");
    out
}

fn compile_exclusions(
    list: &[file::InjectionExclusionConfig],
    errs: &mut Errors,
) -> Vec<InjectionExclusion> {
    const LOCATIONS: [&str; 5] = ["path", "query", "cookie", "body", "header"];
    const ATTACKS: [&str; 2] = ["sqli", "xss"];
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let at = |key: &str| {
            KeyPath::from_dotted("waf.injection_exclusions")
                .index(i)
                .key(key)
        };
        let mut ok = true;
        if e.fields.is_empty() || e.fields.iter().any(String::is_empty) {
            errs.push(
                at("fields"),
                ErrorKind::Invalid("list field names, `prefix*` or `*`".into()),
            );
            ok = false;
        }
        let mut locations = Vec::new();
        for (j, l) in e.locations.iter().enumerate() {
            let l = l.to_ascii_lowercase();
            if LOCATIONS.contains(&l.as_str()) {
                locations.push(l);
            } else {
                errs.push(
                    at("locations").index(j),
                    ErrorKind::Invalid(format!("{l:?} is not one of {}", LOCATIONS.join(", "))),
                );
                ok = false;
            }
        }
        let mut attacks = Vec::new();
        for (j, a) in e.attacks.iter().enumerate() {
            let a = a.to_ascii_lowercase();
            if ATTACKS.contains(&a.as_str()) {
                attacks.push(a);
            } else {
                errs.push(
                    at("attacks").index(j),
                    ErrorKind::Invalid(format!("{a:?} is not one of sqli, xss")),
                );
                ok = false;
            }
        }
        if e.attacks.is_empty() {
            errs.push(
                at("attacks"),
                ErrorKind::Invalid("name sqli, xss or both".into()),
            );
            ok = false;
        }
        if ok {
            out.push(InjectionExclusion {
                prefix: e.prefix.clone(),
                fields: e.fields.clone(),
                locations,
                attacks,
            });
        }
    }
    out
}

fn compile_rate_rules(
    rules: &[file::RateLimitRuleConfig],
    errs: &mut Errors,
) -> Vec<RateLimitRule> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let at = |key: &str| {
            KeyPath::from_dotted("waf.rate_limit_rules")
                .index(i)
                .key(key)
        };
        let mut ok = true;
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            errs.push(
                at("name"),
                ErrorKind::Invalid(format!(
                    "{:?} must be lowercase letters, digits and '_' (a metrics label)",
                    r.name
                )),
            );
            ok = false;
        }
        let matcher = match (r.prefix.is_empty(), r.regex.is_empty()) {
            (false, true) => Some(PathMatch::Prefix(r.prefix.clone())),
            (true, false) => match regex::Regex::new(&r.regex) {
                Ok(_) => Some(PathMatch::Regex(r.regex.clone())),
                Err(e) => {
                    errs.push(
                        at("regex"),
                        ErrorKind::Invalid(format!("invalid regex: {}", regex_reason(&e))),
                    );
                    None
                }
            },
            _ => {
                errs.push(
                    KeyPath::from_dotted("waf.rate_limit_rules").index(i),
                    ErrorKind::Invalid("set exactly one of prefix and regex".into()),
                );
                None
            }
        };
        let mut methods = Vec::new();
        for (j, m) in r.methods.iter().enumerate() {
            if http_method_ok(m) {
                methods.push(m.to_ascii_uppercase());
            } else {
                errs.push(
                    at("methods").index(j),
                    ErrorKind::Invalid(format!("{m:?} is not an HTTP method")),
                );
                ok = false;
            }
        }
        if r.limit == 0 {
            errs.push(at("limit"), ErrorKind::Zero);
            ok = false;
        }
        let period = errs.positive_secs(at("period_secs"), r.period_secs);
        if let (true, Some(matcher)) = (ok, matcher) {
            out.push(RateLimitRule {
                name: r.name.clone(),
                matcher,
                methods,
                limit: r.limit,
                period,
            });
        }
    }
    out
}

fn http_method_ok(m: &str) -> bool {
    !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic())
}

fn compile_readiness(r: file::ReadinessConfig, errs: &mut Errors) -> ReadinessSettings {
    let script = PathBuf::from(r.health_script.trim_start_matches('/'));
    let health_script = if r.health_script.is_empty() {
        None
    } else if script
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
        || !r.health_script.ends_with(".php")
    {
        errs.push(
            p("readiness.health_script"),
            ErrorKind::Invalid(format!(
                "{:?} must be a .php file inside magento.docroot, e.g. \"magestack-health.php\"",
                r.health_script
            )),
        );
        None
    } else {
        Some(script)
    };
    if !(0.0..=1.0).contains(&r.opcache_min_ratio) {
        errs.push(
            p("readiness.opcache_min_ratio"),
            ErrorKind::Invalid(format!("{} must be between 0 and 1", r.opcache_min_ratio)),
        );
    }
    for (i, u) in r.warmup_urls.iter().enumerate() {
        if !u.starts_with('/') {
            errs.push(
                p("readiness.warmup_urls").index(i),
                ErrorKind::Invalid(format!("{u:?} must be a path starting with '/'")),
            );
        }
    }
    ReadinessSettings {
        health_script,
        opcache_min_ppm: (r.opcache_min_ratio.clamp(0.0, 1.0) * 1_000_000.0).round() as u32,
        warmup_urls: r.warmup_urls,
        warmup_sitemap: (!r.warmup_sitemap.trim().is_empty())
            .then(|| PathBuf::from(r.warmup_sitemap.trim())),
    }
}

fn compile_routing(
    r: file::RoutingConfig,
    pools: &[PoolSettings],
    errs: &mut Errors,
) -> RoutingSettings {
    let front = r.admin_front_name.trim_matches('/').to_owned();
    if front.is_empty() || front.contains('/') {
        errs.push(
            p("routing.admin_front_name"),
            ErrorKind::Invalid(format!(
                "{:?} must be one path segment, e.g. \"admin\"",
                r.admin_front_name
            )),
        );
    }
    let mut rules = Vec::new();
    for (i, rule) in r.rules.into_iter().enumerate() {
        let at = |key: &str| KeyPath::from_dotted("routing.rules").index(i).key(key);
        let matcher = match (rule.prefix.is_empty(), rule.regex.is_empty()) {
            (false, true) => Some(PathMatch::Prefix(rule.prefix)),
            (true, false) => match regex::Regex::new(&rule.regex) {
                Ok(_) => Some(PathMatch::Regex(rule.regex)),
                Err(e) => {
                    errs.push(
                        at("regex"),
                        ErrorKind::Invalid(format!("invalid regex: {}", regex_reason(&e))),
                    );
                    None
                }
            },
            _ => {
                errs.push(
                    KeyPath::from_dotted("routing.rules").index(i),
                    ErrorKind::Invalid("set exactly one of prefix and regex".into()),
                );
                None
            }
        };
        let known = pools.iter().any(|p| p.name == rule.pool) || rule.pool == "admin";
        if !known && !pools.is_empty() {
            errs.push(
                at("pool"),
                ErrorKind::Invalid(format!(
                    "no pool {:?}: define [pools.{}] or use frontend or admin",
                    rule.pool, rule.pool
                )),
            );
        }
        if let Some(matcher) = matcher {
            rules.push(RouteRule {
                matcher,
                pool: rule.pool,
            });
        }
    }
    RoutingSettings {
        admin_front_name: front,
        rules,
    }
}

/// True for an RFC 9110 field name: one or more `tchar`s.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// The one-line reason a regex did not compile (the `regex` crate's message
/// spans several lines: the pattern, a caret, then the reason).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_owned()
}

fn compile_cache(c: file::CacheConfig, errs: &mut Errors) -> Option<CacheSettings> {
    let size_bytes = match c.size.bytes() {
        Ok(n) if n < file::MIN_CACHE_SIZE_BYTES => {
            errs.push(
                p("cache.size"),
                ErrorKind::Invalid(format!(
                    "must be at least 1MiB ({} bytes), got {n}",
                    file::MIN_CACHE_SIZE_BYTES
                )),
            );
            None
        }
        Ok(n) => Some(n),
        Err(kind) => {
            errs.push(p("cache.size"), kind);
            None
        }
    };

    let purge_acl = parse_cidrs(&p("cache.purge_acl"), &c.purge_acl, errs);

    let ssl_offloaded_header = if c.ssl_offloaded_header.is_empty() {
        None
    } else {
        if !is_header_name(&c.ssl_offloaded_header) {
            errs.push(
                p("cache.ssl_offloaded_header"),
                ErrorKind::Invalid(format!(
                    "{:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only), e.g. \"X-Forwarded-Proto\"; \"\" for none",
                    c.ssl_offloaded_header
                )),
            );
        }
        Some(c.ssl_offloaded_header)
    };

    let error_statuses = errs.word::<ErrorStatuses>(p("cache.error_statuses"), &c.error_statuses);

    let max_object_bytes = errs.positive_size(p("cache.max_object_bytes"), c.max_object_bytes);
    if let Some(size) = size_bytes {
        if c.max_object_bytes > size {
            errs.push(
                p("cache.max_object_bytes"),
                ErrorKind::Invalid(format!(
                    "must not exceed cache.size ({size} bytes), got {}: no object can be larger than the whole store",
                    c.max_object_bytes
                )),
            );
        }
    }

    for (i, fragment) in c.tracking_params.iter().enumerate() {
        let path = p("cache.tracking_params").index(i);
        if fragment.is_empty() {
            // An empty alternative would make the filter match any `=`.
            errs.push(path, ErrorKind::Empty);
        } else if let Err(e) = regex::Regex::new(fragment) {
            errs.push(
                path,
                ErrorKind::Invalid(format!(
                    "{fragment:?} is not a valid regex fragment: {}",
                    regex_reason(&e)
                )),
            );
        }
    }

    let health_check = compile_health_check(c.health_check, errs);

    Some(CacheSettings {
        enabled: c.enabled,
        size_bytes: size_bytes?,
        purge_acl,
        grace_period: Duration::from_secs(c.grace_period_secs),
        default_ttl: Duration::from_secs(c.default_ttl_secs),
        ssl_offloaded_header,
        error_statuses: error_statuses?,
        soft_purge: c.soft_purge,
        max_object_bytes,
        esi: c.esi,
        brotli: c.brotli,
        tracking_params: c.tracking_params,
        health_check,
    })
}

fn compile_health_check(h: file::HealthCheckConfig, errs: &mut Errors) -> HealthCheckSettings {
    if h.path.is_empty() {
        errs.push(p("cache.health_check.path"), ErrorKind::Empty);
    } else if !h.path.starts_with('/')
        || h.path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        errs.push(
            p("cache.health_check.path"),
            ErrorKind::Invalid(format!(
                "{:?} is not a request path: it must start with / and contain no whitespace, e.g. \"/health_check.php\"",
                h.path
            )),
        );
    }
    let interval = errs.positive_secs(p("cache.health_check.interval_secs"), h.interval_secs);
    let timeout = errs.positive_secs(p("cache.health_check.timeout_secs"), h.timeout_secs);
    if h.window == 0 {
        errs.push(p("cache.health_check.window"), ErrorKind::Zero);
    } else if h.window > file::MAX_HEALTH_CHECK_WINDOW {
        errs.push(
            p("cache.health_check.window"),
            ErrorKind::Invalid(format!(
                "must be at most {} (as in Varnish), got {}",
                file::MAX_HEALTH_CHECK_WINDOW,
                h.window
            )),
        );
    }
    if h.threshold == 0 {
        errs.push(p("cache.health_check.threshold"), ErrorKind::Zero);
    } else if h.window > 0 && h.threshold > h.window {
        errs.push(
            p("cache.health_check.threshold"),
            ErrorKind::Invalid(format!(
                "must not exceed cache.health_check.window ({}), got {}",
                h.window, h.threshold
            )),
        );
    }
    HealthCheckSettings {
        path: h.path,
        interval,
        timeout,
        window: h.window,
        threshold: h.threshold,
    }
}

/// What `magestack dbproxy` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbproxyValidated {
    /// `[dbproxy]`.
    pub dbproxy: crate::dbproxy::DbproxySettings,
    /// `[log]` (format and filter; `access_log` is the edge's).
    pub log: LogSettings,
}

/// Loads a dbproxy configuration: the file if given, flags on top, then
/// `[log]` and `[dbproxy]` checked, with the writer required.
///
/// # Errors
///
/// Every error, with key and line (flags: [`crate::COMMAND_LINE`]).
pub fn load_dbproxy(
    file: Option<&std::path::Path>,
    overrides: &crate::dbproxy::DbproxyOverrides,
) -> Result<DbproxyValidated, crate::error::ConfigErrors> {
    crate::load_with(
        file,
        |c| overrides.apply(c),
        |c| {
            let mut errs = Errors::default();
            let log = compile_log(c.log, &mut errs);
            let dbproxy = crate::dbproxy::compile_dbproxy(c.dbproxy, true, &mut errs);
            match (log, dbproxy) {
                (Some(log), Some(dbproxy)) if errs.0.is_empty() => {
                    Ok(DbproxyValidated { dbproxy, log })
                }
                _ => Err(errs.0),
            }
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rediss_urls_are_accepted_with_a_ca_file() {
        let mut c = with_docroot();
        c.cluster.redis_url = "rediss://master.cache.example:6379".into();
        c.cluster.redis_ca_file = "/etc/ssl/certs/ca-certificates.crt".into();
        let v = compile(c).unwrap();
        assert_eq!(
            v.cluster.redis_url.as_deref(),
            Some("rediss://master.cache.example:6379")
        );
        assert_eq!(
            v.cluster.redis_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"))
        );
    }

    #[test]
    fn a_ca_file_without_rediss_and_insecure_fragments_are_refused() {
        let mut c = with_docroot();
        c.cluster.redis_url = "redis://cache.example:6379".into();
        c.cluster.redis_ca_file = "/ca.pem".into();
        let errs = errors(c);
        assert!(
            errs.iter()
                .any(|e| e.contains("cluster.redis_ca_file") && e.contains("not a rediss:// URL")),
            "{errs:?}"
        );
        let mut c = with_docroot();
        c.cluster.redis_url = "rediss://cache.example:6379/#insecure".into();
        let errs = errors(c);
        assert!(
            errs.iter()
                .any(|e| e.contains("cluster.redis_url") && e.contains("always verified")),
            "{errs:?}"
        );
    }

    fn with_docroot() -> file::Config {
        let mut c = file::Config::default();
        c.magento.docroot = Some(PathBuf::from("/var/www/magento/pub"));
        c
    }

    fn errors(c: file::Config) -> Vec<String> {
        match compile(c) {
            Ok(v) => panic!("expected errors, got {v:?}"),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_compile_once_docroot_is_set() {
        let v = match compile(with_docroot()) {
            Ok(v) => v,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(
            v.server.listen,
            vec![SocketAddr::from(([127, 0, 0, 1], 8080))]
        );
        assert_eq!(v.server.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(v.upstream.read_timeout, Duration::from_secs(600));
        assert_eq!(
            v.magento.php_value.as_deref(),
            Some(file::DEFAULT_PHP_VALUE)
        );
        assert_eq!(v.magento.mage_mode, None);
        assert_eq!(v.log.format, LogFormat::Text);
    }

    #[test]
    fn r18_rollout_contract_is_checked_with_key_paths() {
        assert_eq!(compile(with_docroot()).unwrap().rollout, None);
        let rollout = |f: &dyn Fn(&mut file::RolloutConfig)| {
            let mut c = with_docroot();
            let mut r = file::RolloutConfig::default();
            f(&mut r);
            c.rollout = Some(r);
            c
        };
        let v = compile(rollout(&|r| {
            r.canary_endpoints = vec!["fcgi://127.0.0.1:9001".into()]
        }))
        .unwrap()
        .rollout
        .unwrap();
        assert_eq!(v.pool, "frontend");
        assert_eq!(v.plan, magestack_rollout::Plan::default_plan());
        assert_eq!((v.max_error_ppm, v.max_p95_milli), (10_000, 1500));
        let c = rollout(&|r| {
            r.pool = "imports".into();
            r.canary_endpoints = vec![
                "fcgi://127.0.0.1:9001".into(),
                "ftp://x".into(),
                "http://127.0.0.1:1".into(),
            ];
            r.steps = vec!["10%/5m".into(), "150%".into()];
            r.max_error_ratio = 2.0;
            r.analysis_interval_secs = 0;
        });
        let errs = errors(c);
        let keys: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "rollout.pool",
                "rollout.canary_endpoints[1]",
                "rollout.canary_endpoints[2]",
                "rollout.steps[1]",
                "rollout.analysis_interval_secs",
                "rollout.max_error_ratio"
            ],
            "{errs:#?}"
        );
        assert!(errs[3].contains("outside 0-100"), "{}", errs[3]);
        let errs = errors(rollout(&|r| r.steps = vec!["10%/5m".into(), "50%".into()]));
        assert_eq!(
            errs,
            ["rollout.steps[1]: the last step must be 100% (promotion follows it), got 50%"]
        );
    }

    #[test]
    fn r18_magento_release_is_checked() {
        let mut c = with_docroot();
        c.magento.release = " 1712345678 ".into();
        assert_eq!(
            compile(c).unwrap().magento.release.as_deref(),
            Some("1712345678")
        );
        assert_eq!(compile(with_docroot()).unwrap().magento.release, None);
        let mut c = with_docroot();
        c.magento.release = "v1 beta".into();
        let errs = errors(c);
        assert!(
            errs[0].starts_with("magento.release: \"v1 beta\""),
            "{errs:?}"
        );
    }

    #[test]
    fn fastcgi_needs_docroot_http_does_not() {
        assert_eq!(
            errors(file::Config::default()),
            vec!["magento.docroot: required when upstream.url is FastCGI: set it to Magento's pub/ directory (or pass --docroot)"]
        );
        let mut c = file::Config::default();
        c.upstream.url = "http://127.0.0.1:9000".into();
        assert!(compile(c).is_ok());
    }

    #[test]
    fn collects_every_error_with_paths() {
        let mut c = with_docroot();
        c.server.listen = vec![
            "127.0.0.1:8080".into(),
            "0.0.0.0:8080".into(),
            "nope".into(),
        ];
        c.server.admin_listen = Some("127.0.0.1:8080".into());
        c.server.trusted_proxies = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()];
        c.server.max_headers = 0;
        c.server.header_read_timeout_secs = 0;
        c.server.tls = Some(file::TlsConfig {
            cert_file: "/etc/tls.crt".into(),
            key_file: PathBuf::new(),
        });
        c.log.format = "xml".into();
        c.log.level = "info,magestack=loud".into();
        c.magento.nginx_generation = "g4".into();
        c.magento.php_flag = "session.auto_start".into();
        c.magento.mage_mode = "prod".into();
        c.magento.run = vec![
            file::RunConfig {
                host: "DE.example.com".into(),
                code: "de".into(),
                run_type: "store".into(),
            },
            file::RunConfig {
                host: "de.example.com".into(),
                code: "d e".into(),
                run_type: "shop".into(),
            },
        ];
        c.upstream.url = "fcgi://127.0.0.1".into();
        c.upstream.max_response_header_bytes = 0;
        let got = errors(c);
        let want = [
            "server.listen[1]: conflicts with server.listen[0] (127.0.0.1:8080)",
            "server.listen[2]: invalid socket address \"nope\": expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (host names are not accepted)",
            "server.admin_listen: conflicts with server.listen[0] (127.0.0.1:8080)",
            "server.trusted_proxies[1]: invalid CIDR \"10.0.0.0/33\": expected an address block like 10.0.0.0/8 or fd00::/8, or a single IP address",
            "server.max_headers: must be greater than 0",
            "server.header_read_timeout_secs: must be greater than 0",
            "server.tls.key_file: required when [server.tls] is present",
            "log.format: unknown value \"xml\", expected one of \"text\", \"json\"",
            "upstream.url: missing port; FastCGI has no default port, e.g. fcgi://127.0.0.1:9000",
            "upstream.max_response_header_bytes: must be greater than 0",
            "magento.nginx_generation: unknown value \"g4\", expected one of \"g3\", \"g2\"",
            "magento.php_flag: line 1 (\"session.auto_start\") is not name=value; separate settings with \\n",
            "magento.mage_mode: unknown value \"prod\", expected one of \"\", \"default\", \"developer\", \"production\"",
            "magento.run[1].host: conflicts with magento.run[0].host (\"de.example.com\")",
            "magento.run[1].code: \"d e\": store and website codes contain only letters, digits and _",
            "magento.run[1].type: unknown value \"shop\", expected one of \"store\", \"website\"",
        ];
        let level = got
            .iter()
            .position(|e| e.starts_with("log.level: invalid tracing filter"));
        assert!(level.is_some(), "{got:#?}");
        let got: Vec<&str> = got
            .iter()
            .map(String::as_str)
            .filter(|e| !e.starts_with("log.level"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn semantic_edge_cases() {
        let mut c = with_docroot();
        c.server.listen = vec![];
        c.magento.docroot = Some("pub".into());
        c.magento.run = vec![file::RunConfig::default()];
        assert_eq!(
            errors(c),
            vec![
                "server.listen: must not be empty",
                "magento.docroot: must be an absolute path (Magento's pub/ directory), got \"pub\"",
                "magento.run[0].host: must not be empty",
                "magento.run[0].code: must not be empty",
            ]
        );
        // Port 0 (ephemeral) never clashes; different ports never clash.
        let mut c = with_docroot();
        c.server.listen = vec![
            "127.0.0.1:0".into(),
            "127.0.0.1:0".into(),
            "[::1]:8080".into(),
        ];
        c.server.admin_listen = Some("0.0.0.0:9180".into());
        c.server.trusted_proxies = vec!["10.1.2.3/8".into(), "::1".into(), "192.168.0.7".into()];
        c.server.drain_timeout_secs = 0;
        c.upstream.keepalive_connections = 0;
        c.magento.php_value = String::new();
        c.magento.mage_mode = "production".into();
        let v = match compile(c) {
            Ok(v) => v,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(
            v.server.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse::<IpNet>().unwrap(),
                "192.168.0.7/32".parse::<IpNet>().unwrap(),
            ]
        );
        assert_eq!(v.server.drain_timeout, Duration::ZERO);
        assert_eq!(v.magento.php_value, None);
        assert_eq!(v.magento.mage_mode, Some(MageMode::Production));
    }

    #[test]
    fn words_round_trip() {
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.as_str().parse::<LogFormat>(), Ok(f));
        }
        for g in [NginxGeneration::G2, NginxGeneration::G3] {
            assert_eq!(g.to_string().parse::<NginxGeneration>(), Ok(g));
        }
        for e in [ErrorStatuses::Cache404, ErrorStatuses::Never] {
            assert_eq!(e.as_str().parse::<ErrorStatuses>(), Ok(e));
        }
        assert_eq!(
            file::DEFAULT_ERROR_STATUSES.parse::<ErrorStatuses>(),
            Ok(ErrorStatuses::Cache404)
        );
    }
}
