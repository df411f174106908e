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

/// One PHP-FPM pool: endpoints sharing a bulkhead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// `frontend`, `admin` or a configured name.
    pub name: String,
    /// FastCGI endpoints (never `Http`).
    pub endpoints: Vec<UpstreamTarget>,
    /// Requests in PHP at once over all endpoints; 0 = no cap.
    pub max_inflight: usize,
    /// Requests that may wait for a slot; one more gets 503 at once.
    pub queue_size: usize,
    /// Longest wait for a slot, then 503.
    pub queue_timeout: Duration,
    /// Read timeout between upstream reads (504).
    pub request_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// FPM's `pm.status_path`, read at every check; `None`: connect only.
    pub status_path: Option<String>,
    /// Where to read each endpoint's status (`pm.status_listen`), in the
    /// order of `endpoints`; empty: the endpoints themselves.
    pub status_endpoints: Vec<UpstreamTarget>,
    /// Time between health checks of each endpoint.
    pub check_interval: Duration,
    /// Failed checks in a row before an endpoint gets no requests.
    pub unhealthy_after: u32,
    /// Time between DNS lookups of endpoints given by host name (each
    /// address found is an endpoint); zero: no discovery.
    pub resolve_interval: Duration,
}

/// What `/readyz` waits for beyond healthy pools.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadinessSpec {
    /// The health script, relative to the docroot (`magestack-health.php`).
    pub health_script: Option<PathBuf>,
    /// Share of expected scripts OPcache must hold (0–1).
    pub opcache_min_ratio: f64,
    /// Paths requested at start until every pool is ready.
    pub warmup_urls: Vec<String>,
}

/// Client network rules (see `[waf]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpRulesSpec {
    /// Never blocked or limited.
    pub allow: Vec<IpNet>,
    /// 403.
    pub deny: Vec<IpNet>,
    /// Files of networks to deny, re-read on change.
    pub deny_files: Vec<PathBuf>,
    /// Only these reach the admin front name (empty: all).
    pub admin_allow: Vec<IpNet>,
    /// With a custom admin front name, `/admin` answers 404 at the edge.
    pub close_default_admin: bool,
}

/// SQL injection / XSS inspection (see `[waf]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionSpec {
    /// 403 on a finding (`false`: log and count only).
    pub block: bool,
    /// Largest body read for inspection.
    pub inspect_body_bytes: usize,
    /// Operator exclusions on top of the Magento profile.
    pub exclusions: Vec<InjectionExclusionSpec>,
}

impl Default for InjectionSpec {
    fn default() -> Self {
        InjectionSpec {
            block: true,
            inspect_body_bytes: 1 << 20,
            exclusions: Vec::new(),
        }
    }
}

/// One `[[waf.injection_exclusions]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionExclusionSpec {
    /// Path prefix; empty = everywhere.
    pub prefix: String,
    /// Field patterns (`name`, `prefix*`, `*`).
    pub fields: Vec<String>,
    /// Location names; empty = all.
    pub locations: Vec<String>,
    /// `sqli` / `xss`.
    pub attacks: Vec<String>,
}

/// Per-client rate limits on Magento's credential endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec {
    /// Most (rule, client IP) pairs remembered; memory is bounded by it.
    pub max_keys: usize,
    /// IPv6 clients are counted per network of this prefix length.
    pub ipv6_prefix_len: u8,
    /// Configured limits, checked before the built-in ones.
    pub rules: Vec<RateRuleSpec>,
}

/// One configured rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRuleSpec {
    /// Name for logs and metrics.
    pub name: String,
    /// Path prefix or regex.
    pub matcher: RuleMatch,
    /// Methods; empty = all.
    pub methods: Vec<String>,
    /// Requests per period per client IP.
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl Default for RateLimitSpec {
    fn default() -> Self {
        RateLimitSpec {
            max_keys: 100_000,
            ipv6_prefix_len: 64,
            rules: Vec::new(),
        }
    }
}

/// How requests are spread over pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRouting {
    /// Magento's admin front name.
    pub admin_front_name: String,
    /// Rules checked before the built-in admin ones.
    pub rules: Vec<PoolRule>,
}

impl Default for PoolRouting {
    fn default() -> Self {
        PoolRouting {
            admin_front_name: "admin".into(),
            rules: Vec::new(),
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRule {
    /// What the path must match.
    pub matcher: RuleMatch,
    /// The pool's name.
    pub pool: String,
}

/// How a rule matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleMatch {
    /// Path prefix.
    Prefix(String),
    /// Regex on the path.
    Regex(String),
}

/// Where the bus lives and who this replica is.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `redis://host:port[/db]` or `rediss://` (no credentials).
    pub redis_url: String,
    /// Password (from the environment or a file), if any.
    pub password: Option<String>,
    /// For `rediss://`: the CA bundle's path (for messages) and its PEM
    /// text, read at start; `None` = the system's trust store.
    pub ca: Option<(std::path::PathBuf, Vec<u8>)>,
    /// Pub/sub channel; the counter is `<channel>:seq`.
    pub channel: String,
    /// This replica's name in messages (pod name / host name + pid).
    pub node: String,
    /// The shared L2 object store is on.
    pub l2: bool,
}

impl std::fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: settings are logged with `{:?}`.
        f.debug_struct("ClusterSpec")
            .field("redis_url", &self.redis_url)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("ca_file", &self.ca.as_ref().map(|(p, _)| p))
            .field("channel", &self.channel)
            .field("node", &self.node)
            .field("l2", &self.l2)
            .finish()
    }
}

/// `PURGE` behind a load balancer (`server.behind_load_balancer`): the
/// socket peer of every client request is then the balancer, an address
/// inside the VPC that `cache.purge_acl` would let through, so the ACL says
/// nothing about who sent a purge. On the traffic port, a `PURGE` from a
/// non-loopback peer then also needs `Authorization: Bearer
/// <MAGESTACK_PURGE_TOKEN>`; Magento purges through the cluster-internal
/// purge listener (or loopback) and the purge bus does the rest.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PurgeGuard {
    /// The edge is behind a load balancer.
    pub behind_load_balancer: bool,
    /// The purge token; `None` = only loopback peers may purge then.
    pub token: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for PurgeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeGuard")
            .field("behind_load_balancer", &self.behind_load_balancer)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl PurgeGuard {
    /// Whether a `PURGE` from `peer` with these headers passes the guard
    /// (the ACL is checked as well, separately); `internal`: it came in on
    /// the cluster-internal purge listener, which the balancer never uses.
    pub fn admits(
        &self,
        peer: std::net::IpAddr,
        headers: &http::HeaderMap,
        internal: bool,
    ) -> bool {
        let peer = crate::client_ip::canonical(peer);
        if !self.behind_load_balancer || internal || peer.is_loopback() {
            return true;
        }
        let Some(token) = &self.token else {
            return false;
        };
        crate::token::bearer(headers)
            .is_some_and(|p| crate::token::constant_time_eq(p.as_bytes(), token.as_bytes()))
    }
}

/// Where request bodies wait (`[server]` `body_*`): see
/// [`crate::request_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySettings {
    /// Bodies up to this stay in memory (nginx's `client_body_buffer_size`).
    pub buffer_bytes: u64,
    /// Memory all buffered bodies may hold together.
    pub memory_bytes: u64,
    /// Directory of the temporary files; `None` = the system's.
    pub spool_dir: Option<PathBuf>,
    /// Longest wait for the next piece of a body (408 beyond).
    pub read_timeout: Duration,
}

impl Default for BodySettings {
    fn default() -> Self {
        BodySettings {
            buffer_bytes: 1024 * 1024,
            memory_bytes: 64 * 1024 * 1024,
            spool_dir: None,
            read_timeout: Duration::from_secs(60),
        }
    }
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
    /// Where request bodies wait while they are read (memory or file).
    pub body: BodySettings,
    /// gzip on/off and its minimum length.
    pub gzip: bool,
    /// `gzip_min_length`.
    pub gzip_min_length: u64,
    /// What the open-file cache keeps (`magento.open_file_cache_*`).
    pub open_file_cache: crate::open_file_cache::OpenFileCacheLimits,
    /// `PHP_VALUE` (None = not sent).
    pub php_value: Option<String>,
    /// `PHP_FLAG` (None = not sent).
    pub php_flag: Option<String>,
    /// `MAGE_MODE` (None = not sent).
    pub mage_mode: Option<String>,
    /// host → (`MAGE_RUN_CODE`, `MAGE_RUN_TYPE`).
    pub mage_run: Vec<(String, String, String)>,
    /// `magento.release`: the release when the docroot has no
    /// `static/deployed_version.txt` ([`crate::release`]); `None` = none.
    pub release: Option<String>,
    /// The upstream.
    pub upstream: UpstreamTarget,
    /// Connect timeout (504 when exceeded, 502 when refused).
    pub connect_timeout: Duration,
    /// Read timeout between upstream reads (504).
    pub read_timeout: Duration,
    /// Idle keep-alive connections per upstream endpoint.
    pub keepalive_connections: usize,
    /// Most requests in PHP-FPM at once (its `pm.max_children`); 0 = no cap.
    /// Requests beyond wait, up to the connect timeout, then get 503. Used
    /// only when `pools` is empty (one `frontend` pool from `upstream`).
    pub max_connections: usize,
    /// PHP-FPM pools, `frontend` first; empty = one pool from `upstream`
    /// and `max_connections`.
    pub pools: Vec<PoolSpec>,
    /// Which pool a request goes to.
    pub pool_routing: PoolRouting,
    /// Readiness beyond healthy pools: warm PHP.
    pub readiness: ReadinessSpec,
    /// Rate limits on credential endpoints; `None` = off.
    pub rate_limit: Option<RateLimitSpec>,
    /// Delay before a 429.
    pub tarpit: Duration,
    /// Injection inspection; `None` = off.
    pub injection: Option<InjectionSpec>,
    /// The purge bus over Redis; `None` = a single edge.
    pub cluster: Option<ClusterSpec>,
    /// `[rollout]`: the edge's own canary of one pool; `None` = none.
    pub rollout: Option<RolloutSpec>,
    /// Without a docroot (an HTTP upstream), still answer 404 for what
    /// Magento's nginx sample denies by path alone
    /// ([`magestack_routing::is_denied`]) instead of proxying it. On for
    /// `magestack demo`, whose app stands in for Magento; off by default, as
    /// an arbitrary HTTP app may serve such paths on purpose.
    pub deny_without_docroot: bool,
    /// Client network rules.
    pub ip_rules: IpRulesSpec,
    /// Response head ceiling for FastCGI (502 beyond).
    pub max_response_header_bytes: usize,
    /// Nameservers for endpoint discovery; empty: `/etc/resolv.conf`.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Emit one access-log line per request.
    pub access_log: bool,
    /// Where access lines go; `None` = through `tracing` (target `access`).
    pub access_sink: Option<crate::access_log::AccessLog>,
    /// The full-page cache; `None` = off.
    pub cache: Option<CacheSettings>,
    /// `/media/` and `/static/` from an object store; `None` = both from
    /// the docroot.
    pub media: Option<magestack_media_store::Spec>,
}

/// The full-page cache (Magento's Varnish integration, in process).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Memory ceiling of the object store, bytes.
    pub size_bytes: u64,
    /// Who may send `PURGE` (checked against the socket peer, as Varnish does).
    pub purge_acl: Vec<IpNet>,
    /// What a `PURGE` needs beyond the ACL when the peer is a load balancer.
    pub purge_guard: PurgeGuard,
    /// Magento's VCL behaviour, as data.
    pub policy: magestack_fpc::FpcPolicy,
    /// `PURGE` marks objects stale (served within grace while refreshed) instead of evicting.
    pub soft_purge: bool,
    /// Larger responses are streamed through uncached.
    pub max_object_bytes: usize,
    /// Process `<esi:include>` in text responses.
    pub esi: bool,
    /// Also store a brotli encoding of compressible objects, for clients that accept `br`.
    pub brotli: bool,
    /// The backend health probe (`/health_check.php` as Magento's VCL).
    pub health_check: HealthCheckSettings,
}

/// Magento's VCL probe: every `interval`, healthy with `threshold` of the last `window` good.
#[derive(Debug, Clone)]
pub struct HealthCheckSettings {
    /// Probe path.
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// Probes remembered.
    pub window: u8,
    /// Good probes needed among them.
    pub threshold: u8,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            path: "/health_check.php".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            window: 10,
            threshold: 5,
        }
    }
}

impl CacheSettings {
    /// Defaults that match a Varnish configured by Magento.
    pub fn magento_defaults() -> Self {
        Self {
            purge_guard: PurgeGuard::default(),
            size_bytes: 256 << 20,
            purge_acl: vec![
                IpNet::from(std::net::IpAddr::from([127, 0, 0, 1])),
                IpNet::from(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
            ],
            policy: magestack_fpc::FpcPolicy::default(),
            soft_purge: false,
            max_object_bytes: 16 << 20,
            esi: true,
            brotli: true,
            health_check: HealthCheckSettings::default(),
        }
    }
}

/// `[rollout]` as the edge runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    /// The split pool's name.
    pub pool: String,
    /// Default canary endpoints (`fcgi://…`, `fcgi+unix://…`, `http://…`).
    pub canary_endpoints: Vec<String>,
    /// The canary's `pub/`.
    pub canary_docroot: Option<PathBuf>,
    /// The canary's release when its docroot names none.
    pub canary_release: Option<String>,
    /// Default plan.
    pub plan: magestack_rollout::Plan,
    /// Time between judgements.
    pub analysis_interval: Duration,
    /// Judgement thresholds.
    pub thresholds: magestack_rollout::Thresholds,
    /// Checkout stickiness.
    pub checkout_sticky: Duration,
    /// The local state file.
    pub state_file: Option<PathBuf>,
}
