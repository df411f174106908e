//! The checks: each a function from parsed inputs to findings. None does
//! I/O, so each is tested on a fixture that trips it and one that passes.

use crate::finding::{Finding, Severity};
use crate::ini::{php_bool, php_bytes, FpmPool};
use crate::inputs::{Inputs, Unit};

const MIB: u64 = 1024 * 1024;
/// PHP-FPM's master, the shared libraries and the opcache segment's
/// bookkeeping: what a pod needs beyond the children (measured in the
/// deploy kit's budget, `scripts/lib/fpm_budget.py`).
const FPM_OVERHEAD: u64 = 64 * MIB;
/// Compiled opcodes take about as much memory as the source they come from
/// (Magento 2.4 with its vendor tree: ~0.9–1.2 ×); below that OPcache
/// fills up and restarts or stops caching.
const OPCACHE_PER_SOURCE_BYTE: f64 = 1.0;
/// Magento's recommendation for `realpath_cache_size`; the PHP default
/// (4 MiB) is far below a code base of 60,000 files.
const REALPATH_MIN: u64 = 10 * MIB;
/// Below this, the realpath cache expires every few minutes anyway.
const REALPATH_TTL_MIN: u64 = 600;

/// Runs every check on what `inputs` holds.
pub fn audit(inputs: &Inputs) -> Vec<Finding> {
    let mut out = Vec::new();
    for unit in &inputs.units {
        fpm_memory(unit, &mut out);
        fpm_pm(unit, &mut out);
        opcache(unit, inputs, &mut out);
        realpath(unit, &mut out);
        edge_inflight(unit, &mut out);
    }
    magento(inputs, &mut out);
    http_cache_hosts(inputs, &mut out);
    database(inputs, &mut out);
    live(inputs, &mut out);
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// A PHP setting as the pool sees it: the pool's override, else php.ini.
fn setting<'a>(unit: &'a Unit, pool: &'a FpmPool, key: &str) -> Option<&'a str> {
    pool.php
        .get(key)
        .or_else(|| unit.php.get(key))
        .map(String::as_str)
}

/// The pool that serves shoppers: `frontend`, `www`, else the first.
fn frontend(unit: &Unit) -> Option<&FpmPool> {
    unit.pools
        .iter()
        .find(|p| p.name == "frontend")
        .or_else(|| unit.pools.iter().find(|p| p.name == "www"))
        .or_else(|| unit.pools.first())
}

fn fpm_memory(unit: &Unit, out: &mut Vec<Finding>) {
    let Some(limit) = unit.memory_limit else {
        return;
    };
    let mut need = FPM_OVERHEAD;
    let mut parts = Vec::new();
    for pool in &unit.pools {
        let children = pool.max_children.unwrap_or(5);
        let Some(per_child) = setting(unit, pool, "memory_limit").and_then(php_bytes) else {
            out.push(Finding::new(
                Severity::Error,
                "fpm.memory",
                format!("{}: pool {} has no bounded memory_limit ({}), so no worst case can be sized against the container's {} MiB", unit.name, pool.name, pool.origin, limit / MIB),
                "a child may grow until the kernel kills the whole container, with every request in it",
                "set php_admin_value[memory_limit] in the pool (e.g. 384M) and size pm.max_children from it",
            ));
            return;
        };
        need += children * per_child;
        parts.push(format!(
            "{} × {} MiB ({})",
            children,
            per_child / MIB,
            pool.name
        ));
    }
    let opcache = unit
        .php
        .get("opcache.memory_consumption")
        .or_else(|| {
            unit.pools
                .iter()
                .find_map(|p| p.php.get("opcache.memory_consumption"))
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(128);
    need += opcache * MIB;
    if need > limit {
        out.push(Finding::new(
            Severity::Error,
            "fpm.memory",
            format!(
                "{}: pm.max_children × memory_limit = {} + OPcache {} MiB + 64 MiB = {} MiB, above the container limit of {} MiB",
                unit.name,
                parts.join(" + "),
                opcache,
                need / MIB,
                limit / MIB
            ),
            "under load every child reaches its memory_limit and the kernel OOM-kills the container: every request in it fails at once",
            format!(
                "lower pm.max_children to {} or raise the container's memory limit to {}Mi (max_children = (limit - OPcache - 64 MiB) / memory_limit)",
                max_children_fitting(unit, limit, opcache),
                need.div_ceil(MIB)
            ),
        ));
    }
}

fn max_children_fitting(unit: &Unit, limit: u64, opcache_mib: u64) -> u64 {
    let per = frontend(unit)
        .and_then(|p| setting(unit, p, "memory_limit"))
        .and_then(php_bytes)
        .unwrap_or(128 * MIB)
        .max(1);
    limit.saturating_sub(opcache_mib * MIB + FPM_OVERHEAD) / per
}

fn fpm_pm(unit: &Unit, out: &mut Vec<Finding>) {
    let Some(pool) = frontend(unit) else { return };
    if pool.pm != "static" {
        out.push(Finding::new(
            Severity::Error,
            "fpm.pm",
            format!("{}: the shoppers' pool {} runs pm = {} ({})", unit.name, pool.name, pool.pm, pool.origin),
            "a traffic spike then waits for FPM to fork children (one per second per idle check, pm.max_spawn_rate), each with a cold realpath cache, exactly when capacity is needed; the edge's bulkhead assumes the children exist",
            "pm = static with pm.max_children sized to the container's memory (the edge's max_inflight equal to it)",
        ));
    }
    if pool.max_children.is_none() {
        out.push(Finding::new(
            Severity::Error,
            "fpm.max_children",
            format!(
                "{}: pool {} sets no pm.max_children ({}): FPM's default is 5",
                unit.name, pool.name, pool.origin
            ),
            "the pool serves 5 requests at once whatever the container could hold",
            "set pm.max_children = (memory limit - OPcache - 64 MiB) / memory_limit",
        ));
    }
}

fn opcache(unit: &Unit, inputs: &Inputs, out: &mut Vec<Finding>) {
    let Some(pool) = frontend(unit) else { return };
    let get = |k: &str| setting(unit, pool, k);
    if unit.php.is_empty() && !pool.php.keys().any(|k| k.starts_with("opcache.")) {
        return; // no php.ini given: nothing to say about OPcache
    }
    if get("opcache.enable").is_some_and(|v| !php_bool(v)) {
        out.push(Finding::new(
            Severity::Error,
            "opcache.enable",
            format!("{}: opcache.enable = 0 ({})", unit.name, unit.php_origin),
            "every request compiles Magento's ~60,000 files again: pages take seconds",
            "opcache.enable = 1",
        ));
        return;
    }
    let production = inputs
        .magento
        .as_ref()
        .and_then(|m| m.mode.as_deref())
        .is_none_or(|m| m == "production");
    let validate = get("opcache.validate_timestamps").is_none_or(php_bool);
    if production && validate {
        out.push(Finding::new(
            Severity::Error,
            "opcache.validate_timestamps",
            format!(
                "{}: opcache.validate_timestamps is {} in production ({})",
                unit.name,
                get("opcache.validate_timestamps").unwrap_or("on (PHP's default)"),
                unit.php_origin
            ),
            "every request stats its files again (thousands of syscalls), and a file changed under a running pod mixes old and new code",
            "opcache.validate_timestamps = 0 in production: a deploy is a new image or an FPM reload",
        ));
    }
    let memory_mib = get("opcache.memory_consumption")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(128);
    let files = get("opcache.max_accelerated_files")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10_000);
    if let Some(code) = inputs.code {
        let need = (code.php_bytes as f64 * OPCACHE_PER_SOURCE_BYTE) as u64;
        if memory_mib * MIB < need {
            out.push(Finding::new(
                Severity::Error,
                "opcache.memory_consumption",
                format!("{}: opcache.memory_consumption = {} MiB, the code base has {} MiB of PHP in {} files", unit.name, memory_mib, code.php_bytes / MIB, code.php_files),
                "OPcache fills up, then restarts (every child compiles again) or stops caching: pages slow down until the pod is replaced",
                format!("opcache.memory_consumption = {} (and the container's limit with it)", (need / MIB).div_ceil(64) * 64 + 64),
            ));
        }
        if files < code.php_files {
            out.push(Finding::new(
                Severity::Error,
                "opcache.max_accelerated_files",
                format!("{}: opcache.max_accelerated_files = {files}, the code base has {} PHP files", unit.name, code.php_files),
                "files past the limit are compiled on every request",
                "opcache.max_accelerated_files = 130987 (the next prime OPcache uses above Magento's file count)",
            ));
        }
    } else if files < 60_000 {
        out.push(Finding::new(
            Severity::Error,
            "opcache.max_accelerated_files",
            format!("{}: opcache.max_accelerated_files = {files} ({}), below the ~60,000 files of a Magento 2.4 code base", unit.name, unit.php_origin),
            "files past the limit are compiled on every request",
            "opcache.max_accelerated_files = 130987",
        ));
    }
}

fn realpath(unit: &Unit, out: &mut Vec<Finding>) {
    let Some(pool) = frontend(unit) else { return };
    if unit.php.is_empty() {
        return;
    }
    let size = setting(unit, pool, "realpath_cache_size")
        .and_then(php_bytes)
        .unwrap_or(4 * MIB);
    let ttl = setting(unit, pool, "realpath_cache_ttl")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(120);
    if size < REALPATH_MIN || ttl < REALPATH_TTL_MIN {
        out.push(Finding::new(
            Severity::Error,
            "php.realpath_cache",
            format!("{}: realpath_cache_size = {} KiB, realpath_cache_ttl = {ttl} s ({})", unit.name, size / 1024, unit.php_origin),
            "Magento's autoloader resolves thousands of paths per request; a small or short-lived realpath cache turns them into stat calls",
            "realpath_cache_size = 10M, realpath_cache_ttl = 7200",
        ));
    }
}

fn edge_inflight(unit: &Unit, out: &mut Vec<Finding>) {
    let Some(edge) = &unit.edge else { return };
    for (name, max_inflight, _) in &edge.pools {
        let Some(pool) = unit
            .pools
            .iter()
            .find(|p| &p.name == name)
            .or_else(|| (name == "frontend").then(|| frontend(unit)).flatten())
        else {
            continue; // a pool served elsewhere (the admin pods' FPM)
        };
        let Some(children) = pool.max_children else {
            continue;
        };
        if *max_inflight == 0 {
            out.push(Finding::new(
                Severity::Error,
                "edge.max_inflight",
                format!("{}: the edge's pools.{name}.max_inflight is 0 (no cap) in front of PHP-FPM's pm.max_children = {children} ({})", unit.name, edge.origin),
                "requests beyond the children wait in FPM's listen backlog, invisible and unbounded: no 503 + Retry-After, just timeouts",
                format!("pools.{name}.max_inflight = {children}"),
            ));
        } else if *max_inflight > children {
            out.push(Finding::new(
                Severity::Error,
                "edge.max_inflight",
                format!("{}: the edge's pools.{name}.max_inflight = {max_inflight} is above PHP-FPM's pm.max_children = {children} ({})", unit.name, edge.origin),
                "the bulkhead admits requests FPM cannot run: they queue in the socket backlog where no timeout or 503 applies",
                format!("pools.{name}.max_inflight = {children}"),
            ));
        }
    }
}

fn magento(inputs: &Inputs, out: &mut Vec<Finding>) {
    let Some(m) = &inputs.magento else { return };
    match m.mode.as_deref() {
        Some("production") => {}
        other => out.push(Finding::new(
            Severity::Error,
            "magento.mode",
            format!("MAGE_MODE is {} ({})", other.unwrap_or("not set (default)"), m.origin),
            "default and developer modes generate code and static files on request and show errors to shoppers",
            "bin/magento deploy:mode:set production (MAGE_MODE = production in env.php)",
        )),
    }
    if m.knows_backends {
        match m.session_save.as_deref() {
            Some("redis") => {
                let r = &m.session_redis;
                if r.get("disable_locking").is_some_and(|v| php_bool(v)) {
                    out.push(Finding::new(
                        Severity::Error,
                        "session.locking",
                        format!("session.redis.disable_locking = {} ({})", r.get("disable_locking").map_or("", String::as_str), m.origin),
                        "parallel requests of one shopper (AJAX sections, checkout steps) overwrite each other's session: carts and logins get lost",
                        "session.redis.disable_locking = 0",
                    ));
                }
                let missing: Vec<&str> = ["max_concurrency", "break_after_frontend", "break_after_adminhtml"]
                    .into_iter()
                    .filter(|k| !r.contains_key(*k))
                    .collect();
                if !missing.is_empty() {
                    out.push(Finding::new(
                        Severity::Warning,
                        "session.locking",
                        format!("session.redis lacks {} ({})", missing.join(", "), m.origin),
                        "with Magento's defaults implicit, a slow request holds a shopper's session lock and the shopper's other requests wait in PHP workers",
                        "set max_concurrency = 6, break_after_frontend = 5, break_after_adminhtml = 30 (Magento's documented values)",
                    ));
                }
            }
            Some(other) => out.push(Finding::new(
                Severity::Error,
                "session.backend",
                format!("sessions are saved in {other} ({})", m.origin),
                if other == "db" {
                    "the database holds a row lock per session: under load checkout requests queue behind each other in MySQL"
                } else {
                    "files live on one pod: with more than one frontend pod, shoppers lose carts and logins when the load balancer moves them"
                },
                "bin/magento setup:config:set --session-save=redis --session-save-redis-host=<redis> (with Magento's locking settings)",
            )),
            None => {}
        }
        let backend = m.cache_backend.as_deref().unwrap_or("");
        if !backend.to_ascii_lowercase().contains("redis") {
            out.push(Finding::new(
                Severity::Error,
                "cache.backend",
                format!("the default cache backend is {} ({})", if backend.is_empty() { "files (Magento's default)" } else { backend }, m.origin),
                "each pod has its own configuration and layout cache: a cache flush reaches one pod, and var/cache on a network volume serialises every request",
                "bin/magento setup:config:set --cache-backend=redis --cache-backend-redis-server=<redis>",
            ));
        }
        match m.fpc_application.as_deref() {
            Some("2") => {}
            Some(app) => out.push(Finding::new(
                Severity::Error,
                "fpc.application",
                format!("full_page_cache/caching_application = {app} ({}): Magento's built-in cache, not Varnish", m.origin),
                "Magento sends no X-Magento-Tags and no PURGE, so the edge cannot cache pages; the built-in cache runs in PHP",
                "bin/magento config:set --lock-env system/full_page_cache/caching_application 2",
            )),
            None => out.push(Finding::new(
                Severity::Warning,
                "fpc.application",
                format!("full_page_cache/caching_application is not in {} (it may be in the database)", m.origin),
                "unless it is 2 (Varnish), Magento sends no X-Magento-Tags or PURGE and the edge caches no page",
                "bin/magento config:set --lock-env system/full_page_cache/caching_application 2 (then it is checked here)",
            )),
        }
    }
    if m.http_cache_hosts.is_empty() {
        out.push(Finding::new(
            Severity::Error,
            "http_cache_hosts",
            format!("http_cache_hosts is empty ({})", m.origin),
            "Magento sends no PURGE: changed prices and stock stay in the cache until the TTL runs out",
            "bin/magento setup:config:set --http-cache-hosts=<edge purge service>:<port>",
        ));
    }
}

fn http_cache_hosts(inputs: &Inputs, out: &mut Vec<Finding>) {
    let (Some(m), Some(c)) = (&inputs.magento, &inputs.cluster) else {
        return;
    };
    let edges: Vec<_> = c.workloads.iter().filter(|w| w.has_edge).collect();
    for hp in &m.http_cache_hosts {
        let (host, port) = match hp.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().unwrap_or(80)),
            None => (hp.as_str(), 80),
        };
        let short = host.split('.').next().unwrap_or(host);
        let Some(svc) = c.services.iter().find(|s| s.name == short) else {
            out.push(Finding::new(
                Severity::Error,
                "http_cache_hosts",
                format!("http_cache_hosts names {hp}, which is no Service of the manifests"),
                "a pod address or name changes with every rollout, and reaches one edge: the others keep serving purged pages",
                "point http_cache_hosts at a Service that selects the edge pods (the kit's frontend-purge:8080) and give the edges a purge bus ([cluster] redis_url)",
            ));
            continue;
        };
        let targets: Vec<_> = edges
            .iter()
            .filter(|w| {
                !svc.selector.is_empty()
                    && svc.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
            })
            .collect();
        if targets.is_empty() {
            out.push(Finding::new(
                Severity::Error,
                "http_cache_hosts",
                format!(
                    "http_cache_hosts names Service {} which selects no pod running the edge",
                    svc.name
                ),
                "Magento's PURGE reaches no edge: purged pages stay cached",
                "select the edge pods (the frontend Deployment's labels) in that Service",
            ));
            continue;
        }
        if !svc.ports.contains(&port) {
            out.push(Finding::new(
                Severity::Error,
                "http_cache_hosts",
                format!(
                    "http_cache_hosts names {hp}, but Service {} listens on {:?}",
                    svc.name, svc.ports
                ),
                "Magento's PURGE is refused by the network",
                format!(
                    "use {}:{}",
                    svc.name,
                    svc.ports.first().copied().unwrap_or(80)
                ),
            ));
        }
        let many = targets.iter().any(|w| w.max_replicas > 1);
        let bus = inputs
            .units
            .iter()
            .filter_map(|u| u.edge.as_ref())
            .any(|e| e.purge_bus);
        if many && !bus {
            out.push(Finding::new(
                Severity::Error,
                "http_cache_hosts",
                format!("http_cache_hosts names Service {}, which load-balances to one of up to {} edge pods, and the edges have no purge bus", svc.name, targets.iter().map(|w| w.max_replicas).max().unwrap_or(1)),
                "each PURGE reaches one pod: the others keep serving the old price or stock until the TTL",
                "set [cluster] redis_url in the edge's config (one purge reaches every replica), or list every edge in http_cache_hosts",
            ));
        }
    }
}

fn database(inputs: &Inputs, out: &mut Vec<Finding>) {
    let Some(c) = &inputs.cluster else { return };
    let proxies: Vec<_> = c
        .workloads
        .iter()
        .filter(|w| w.dbproxy_backend_connections.is_some())
        .collect();
    if let (false, Some(m)) = (proxies.is_empty(), &inputs.magento) {
        if let Some(host) = m.db_host.as_deref() {
            let h = host.split(':').next().unwrap_or(host);
            let through = c.services.iter().any(|s| {
                s.name == h.split('.').next().unwrap_or(h)
                    && proxies
                        .iter()
                        .any(|w| s.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            });
            if !through {
                out.push(Finding::new(
                    Severity::Warning,
                    "db.host",
                    format!("Magento's database host is {host}, not the DB proxy's Service"),
                    "every PHP worker holds its own database connection: the connection budget is workers × pods, not the proxy's cap",
                    "set MAGENTO_DB_HOST (env.php db.connection.default.host) to the dbproxy Service",
                ));
            }
        }
    }
    let Some(max) = inputs.db_max_connections else {
        return;
    };
    let (demand, how) = if proxies.is_empty() {
        let d: u64 = c
            .workloads
            .iter()
            .map(|w| w.max_replicas * w.php_workers)
            .sum();
        (d, "pods × PHP workers (no DB proxy)".to_owned())
    } else {
        let d: u64 = proxies
            .iter()
            .map(|w| w.max_replicas * w.dbproxy_backend_connections.unwrap_or(0))
            .sum();
        (d, "proxy replicas × max_backend_connections".to_owned())
    };
    if demand > max {
        out.push(Finding::new(
            Severity::Error,
            "db.max_connections",
            format!("up to {demand} database connections ({how}) against max_connections = {max}"),
            "at peak, connections past the limit fail with 'Too many connections' and the pages behind them with 500s",
            "put the DB proxy between PHP and the database with max_backend_connections × replicas below max_connections, or raise the minimum ACU",
        ));
    }
}

fn live(inputs: &Inputs, out: &mut Vec<Finding>) {
    let Some(l) = &inputs.live else { return };
    if let Some(why) = &l.unreachable {
        out.push(Finding::new(
            Severity::Error,
            "edge.live",
            format!(
                "the edge's admin listener at {} could not be read: {why}",
                l.address
            ),
            "nothing can be said about a running edge that cannot be asked",
            "check --edge (the admin listener, e.g. 127.0.0.1:9180) and MAGESTACK_ADMIN_TOKEN",
        ));
        return;
    }
    for (pool, endpoints) in &l.pools {
        for (addr, health, warm) in endpoints {
            if health == "unhealthy" {
                out.push(Finding::new(
                    Severity::Error,
                    "edge.pool_health",
                    format!("pool {pool}: PHP-FPM at {addr} is unhealthy (edge {})", l.address),
                    "requests for this pool fail over to other endpoints or get 502/503",
                    "check that PHP-FPM runs and listens there (systemctl status php-fpm, the pod's php-fpm container logs)",
                ));
            } else if !warm {
                out.push(Finding::new(
                    Severity::Warning,
                    "edge.warmth",
                    format!("pool {pool}: PHP-FPM at {addr} is not warm yet (OPcache below readiness.opcache_min_ratio)"),
                    "first requests compile Magento's code: seconds each",
                    "wait for readiness, or warm it: magestack warm --sitemap https://<shop>/sitemap.xml",
                ));
            }
        }
    }
    if !l.ready {
        out.push(Finding::new(
            Severity::Error,
            "edge.ready",
            format!(
                "the edge at {} is not ready: {}",
                l.address,
                l.readyz.trim()
            ),
            "Kubernetes sends it no traffic; if every pod is so, the shop is down",
            "see the pool findings above; /pools on the admin listener has the details",
        ));
    }
    if let Some((objects, hits, misses)) = l.cache {
        if objects == 0 || (hits + misses >= 100 && hits * 2 < misses) {
            out.push(Finding::new(
                Severity::Warning,
                "edge.cache_warmth",
                format!("the edge's cache holds {objects} objects, {hits} hits / {misses} misses since start"),
                "a cold cache sends every shopper to PHP",
                "magestack warm --sitemap https://<shop>/sitemap.xml --edge <edge>",
            ));
        }
    }
}
