//! What the checks look at, already parsed: the binary reads files, runs
//! `php -r` and `kubectl kustomize`, asks a live edge, and fills these in.
//! Every field is optional, and each check runs on what it is given.

use std::collections::BTreeMap;

use crate::ini::FpmPool;

/// Everything given to one audit.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Magento's settings (`app/etc/env.php`, or the deploy kit's env).
    pub magento: Option<MagentoSettings>,
    /// The places PHP-FPM runs: one per pod kind with `--k8s`, one for the
    /// files given with `--fpm-conf` / `--php-ini` / `--edge-config`.
    pub units: Vec<Unit>,
    /// The code base's PHP files (with `--magento-root`).
    pub code: Option<CodeStats>,
    /// The database's `max_connections` (Aurora: at the smallest ACU).
    pub db_max_connections: Option<u64>,
    /// Services and workloads (with `--k8s`), for `http_cache_hosts` and the
    /// database's connection budget.
    pub cluster: Option<ClusterFacts>,
    /// A running edge's admin listener (with `--edge`).
    pub live: Option<LiveEdge>,
}

/// Where PHP-FPM runs with its edge: a pod kind, or the files given.
#[derive(Debug, Clone, Default)]
pub struct Unit {
    /// `deployment/frontend`, or `given files`.
    pub name: String,
    /// The pools of its FPM.
    pub pools: Vec<FpmPool>,
    /// PHP settings from php.ini files (the pools' overrides are in each pool).
    pub php: BTreeMap<String, String>,
    /// Where `php` came from, for messages.
    pub php_origin: String,
    /// The PHP-FPM container's memory limit, bytes.
    pub memory_limit: Option<u64>,
    /// The edge in front of it.
    pub edge: Option<EdgeFacts>,
    /// Most pods of this kind at once (HPA max, else replicas).
    pub max_replicas: Option<u64>,
}

/// What the doctor needs of an edge's configuration.
#[derive(Debug, Clone, Default)]
pub struct EdgeFacts {
    /// Where it came from.
    pub origin: String,
    /// Its pools: name, `max_inflight` (0 = no cap), endpoints as written.
    pub pools: Vec<(String, u64, Vec<String>)>,
    /// A purge bus (`[cluster] redis_url`) is configured: a purge reaching
    /// one edge reaches all.
    pub purge_bus: bool,
    /// Port of the traffic listeners and of `purge_listen`.
    pub ports: Vec<u16>,
}

/// Magento's settings that the checks read.
#[derive(Debug, Clone, Default)]
pub struct MagentoSettings {
    /// Where they came from.
    pub origin: String,
    /// `MAGE_MODE`.
    pub mode: Option<String>,
    /// `session.save` (`files`, `db`, `redis`); `None` = not known.
    pub session_save: Option<String>,
    /// `session.redis.*`.
    pub session_redis: BTreeMap<String, String>,
    /// `cache.frontend.default.backend`; `None` = not known.
    pub cache_backend: Option<String>,
    /// Whether the cache settings were known at all (a kit's env file does
    /// not say).
    pub knows_backends: bool,
    /// `system.default.system.full_page_cache.caching_application`.
    pub fpc_application: Option<String>,
    /// `http_cache_hosts` as `host:port`.
    pub http_cache_hosts: Vec<String>,
    /// `db.connection.default.host`.
    pub db_host: Option<String>,
}

/// The code base: PHP files under the Magento root (vendor, generated, app).
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeStats {
    /// `.php` files.
    pub php_files: u64,
    /// Their bytes.
    pub php_bytes: u64,
}

/// Kubernetes facts beyond the pods.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// Services: name, selector, ports.
    pub services: Vec<ServiceFacts>,
    /// Workloads: name, pod labels, max replicas, whether an edge runs in
    /// them, PHP workers per pod (sum of the pools' max children).
    pub workloads: Vec<WorkloadFacts>,
}

/// One Service.
#[derive(Debug, Clone, Default)]
pub struct ServiceFacts {
    /// `metadata.name`.
    pub name: String,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
    /// `spec.ports[].port`.
    pub ports: Vec<u16>,
}

/// One workload (Deployment, StatefulSet, Rollout).
#[derive(Debug, Clone, Default)]
pub struct WorkloadFacts {
    /// `deployment/frontend`.
    pub name: String,
    /// Pod template labels.
    pub labels: BTreeMap<String, String>,
    /// HPA max, else `spec.replicas`, else 1.
    pub max_replicas: u64,
    /// A container named `edge`.
    pub has_edge: bool,
    /// Sum of the pools' `pm.max_children` of its FPM (database clients).
    pub php_workers: u64,
    /// It runs the DB proxy; its `max_backend_connections` per replica.
    pub dbproxy_backend_connections: Option<u64>,
}

/// A running edge, as its admin listener reports it.
#[derive(Debug, Clone, Default)]
pub struct LiveEdge {
    /// `host:port`.
    pub address: String,
    /// `/readyz` answered 200.
    pub ready: bool,
    /// `/readyz`'s text.
    pub readyz: String,
    /// `/pools`: name → endpoints.
    pub pools: Vec<(String, Vec<LiveEndpoint>)>,
    /// `/cache/stats`: objects, hits, misses; `None` = cache off.
    pub cache: Option<(u64, u64, u64)>,
    /// What failed to be read (the admin listener down, 403 …).
    pub unreachable: Option<String>,
}

/// One endpoint of a live edge's pool: address, health
/// (`healthy`/`unhealthy`/`unknown`), warm.
pub type LiveEndpoint = (String, String, bool);
