//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// magestack: one binary for Magento 2 at scale.
///
/// The `about` line is written here rather than taken from the package
/// description, so `--help` names only commands this binary has.
#[derive(Debug, Parser)]
#[command(
    name = "magestack",
    version,
    about = "One binary for Magento 2 at scale: the edge in front of PHP-FPM (nginx's Magento rules, \
             Varnish's full-page cache), the MySQL proxy (dbproxy), purge, config check, CDN export, demo.",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the edge: HTTP in front of PHP-FPM (FastCGI) or an HTTP app, with Magento's nginx rules.
    Edge(EdgeArgs),
    /// Run the MySQL proxy in front of Magento's database (multiplexing with Magento-safe pinning).
    Dbproxy(DbproxyArgs),
    /// Validate a configuration file; prints every error with its key and line, exit 1 on errors.
    Check {
        /// The TOML file to check.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Purge the full-page cache by tag (or everything) the way Magento does: a raw PURGE with X-Magento-Tags-Pattern.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["tags", "all"])))]
    Purge {
        /// Tags to purge, comma-separated (e.g. cat_p_42,cat_c_7).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Purge every tagged object (Magento's "Flush Magento Cache": pattern `.*`).
        #[arg(long)]
        all: bool,
        /// The edge's traffic listener, host:port or http://host:port (repeat for several replicas).
        #[arg(long, default_value = "127.0.0.1:8080")]
        edge: Vec<String>,
    },
    /// CDN settings derived from the edge's config, so the CDN and the edge cannot drift.
    Cdn {
        #[command(subcommand)]
        action: CdnCommand,
    },
    /// Audit a Magento setup for the pitfalls behind most outages (FPM memory, OPcache, sessions,
    /// http_cache_hosts, database connections, a live edge's health); exit 1 on an error-level finding.
    Doctor(DoctorArgs),
    /// The edge's figures in the terminal, refreshed (cache, pools, WAF, bus, last errors), from a
    /// running edge's admin listener: varnishstat's place.
    Top(TopArgs),
    /// Warm the full-page cache: request every page of a sitemap (or URL list) through the edge,
    /// politely; a summary, exit 1 when a page did not answer 2xx/3xx.
    Warm(WarmArgs),
    /// Drive the edge's own canary of a release (`[rollout]`) through its admin API: status, start,
    /// pause, resume, promote, abort. `status` exits 0 once promoted, 2 when aborted, 3 while running
    /// or paused, 4 when idle (`--wait` polls until promoted or aborted).
    Rollout(RolloutArgs),
    /// Object-store sources of `/media/` and `/static/`: upload a release's `pub/static` (and
    /// optionally `pub/media`) to the buckets of `[static]`/`[media] source`.
    Media {
        #[command(subcommand)]
        action: MediaCommand,
    },
    /// Run the edge in front of a built-in sample storefront on 127.0.0.1:8080 (no PHP needed).
    Demo {
        /// Address of the demo edge.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum CdnCommand {
    /// Write CloudFront's cache rules (cookie and header whitelist, static and bypass paths) for the
    /// deploy kit's `cdn` Terraform stack, from the edge's config (built-in defaults without --config).
    Export {
        /// The edge's TOML configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// `terraform`: a .tfvars file setting `magestack_cdn`; `json`: the same rules as JSON.
        #[arg(long, value_enum, default_value = "terraform")]
        format: CdnFormat,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CdnFormat {
    Terraform,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// TOML configuration file (see docs/configuration.md). Flags override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Traffic listener (repeatable), e.g. 0.0.0.0:8080.
    #[arg(long)]
    pub listen: Vec<SocketAddr>,
    /// Upstream: fcgi://host:port, fcgi+unix:///path/to.sock or http://host:port.
    #[arg(long)]
    pub upstream: Option<String>,
    /// Magento's pub/ directory (static files, PHP scripts).
    #[arg(long)]
    pub docroot: Option<PathBuf>,
    /// Admin listener: / (status page; /status.json), /healthz, /readyz, /metrics, /pools, /cache/stats,
    /// POST /admin/reload, POST /admin/purge, GET /rollout and POST /admin/rollout/* (all but the health checks need a peer in cache.purge_acl or
    /// MAGESTACK_ADMIN_TOKEN; off loopback the token is required: 64 hex digits or 43 other characters).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Turn the full-page cache off (the edge is then nginx only).
    #[arg(long)]
    pub no_cache: bool,
    /// Most requests in PHP-FPM at once: set it to the pool's pm.max_children.
    #[arg(long)]
    pub max_connections: Option<u32>,

    /// Start even though a live listener holds the port: the successor in a zero-downtime
    /// restart (SO_REUSEPORT; then SIGTERM the old edge). Without it, a port in use is refused.
    #[arg(long)]
    pub takeover: bool,

    /// Redis carrying the purge bus (`redis://host:port`): a purge sent to
    /// any edge reaches every edge using the same Redis. Sets `cluster.redis_url`.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DbproxyArgs {
    /// TOML configuration file with a [dbproxy] table (see docs/configuration.md). Flags override it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Client listener, e.g. 127.0.0.1:6033 (dbproxy.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The writer, host:port (dbproxy.writer).
    #[arg(long)]
    pub writer: Option<String>,
    /// A reader (replica), host:port; repeatable. Turns the read/write split on (dbproxy.readers).
    #[arg(long = "reader")]
    pub readers: Vec<String>,
    /// The user clients log in as; the proxy logs in to the backends with it (dbproxy.user, else
    /// MAGESTACK_DB_USER or MAGESTACK_DB_USER_FILE). The password comes from
    /// MAGESTACK_DB_PASSWORD or the file named by MAGESTACK_DB_PASSWORD_FILE.
    #[arg(long)]
    pub user: Option<String>,
    /// Hard cap on connections to each backend (dbproxy.max_backend_connections, default 20).
    #[arg(long)]
    pub max_backend_connections: Option<u32>,
    /// How long a client waits for a free backend connection before error 1040, in milliseconds
    /// (dbproxy.queue_timeout_ms, default 5000).
    #[arg(long)]
    pub queue_timeout_ms: Option<u64>,
    /// Admin listener: /healthz, /readyz, /metrics, /backends, /digests (dbproxy.admin_listen).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Magento's root: app/etc/env.php (read through `php -r`) and the code base's size.
    #[arg(long)]
    pub magento_root: Option<PathBuf>,
    /// A PHP-FPM pool file (repeatable).
    #[arg(long)]
    pub fpm_conf: Vec<PathBuf>,
    /// The php.ini (or conf.d file) with the OPcache and realpath settings.
    #[arg(long)]
    pub php_ini: Option<PathBuf>,
    /// The edge's TOML configuration.
    #[arg(long)]
    pub edge_config: Option<PathBuf>,
    /// Kubernetes manifests: a kustomize directory (rendered with kubectl), a directory of YAML
    /// files or one rendered file.
    #[arg(long)]
    pub k8s: Option<PathBuf>,
    /// A running edge's admin listener, host:port (MAGESTACK_ADMIN_TOKEN when not on its ACL).
    #[arg(long)]
    pub edge: Option<String>,
    /// The database's max_connections (Aurora: at the minimum ACU), checked against
    /// pods × PHP workers or the DB proxy's cap.
    #[arg(long)]
    pub db_max_connections: Option<u64>,
    /// `text` for people, `json` (a list of findings: severity, check, message, why, fix) for CI.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DoctorFormat,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
    /// The edge's admin listener, host:port (MAGESTACK_ADMIN_TOKEN when not on its ACL).
    #[arg(long, global = true, default_value = "127.0.0.1:9180")]
    pub admin: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutAction {
    /// Print the rollout (GET /rollout); the exit code tells its state.
    Status {
        /// Poll until the rollout is promoted (exit 0) or aborted (exit 2).
        #[arg(long)]
        wait: bool,
        /// Seconds between polls with --wait.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// Start the configured plan (409 while one runs).
    Start {
        /// Steps instead of the configured ones, comma-separated: 10%/5m,50%/5m,100%.
        #[arg(long, value_delimiter = ',')]
        steps: Vec<String>,
        /// A canary endpoint instead of the configured ones (repeatable): fcgi://host:port.
        #[arg(long = "canary-endpoint")]
        canary_endpoints: Vec<String>,
    },
    /// Stop the step's clock (the automatic abort still runs).
    Pause,
    /// Restart the step's clock.
    Resume,
    /// Make the canary stable now (remaining steps skipped).
    Promote,
    /// Move everyone back to stable now.
    Abort,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    /// The edge's admin listener, host:port (MAGESTACK_ADMIN_TOKEN when not on its ACL).
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub admin: String,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// Print one screen and exit (for scripts).
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Upload `pub/static` as release RELEASE (objects `<static prefix>/<RELEASE>/<path>`, what
    /// `/static/versionRELEASE/<path>` serves), and `pub/media` as `<media prefix>/<path>` (as
    /// `bin/magento remote-storage:sync`). Credentials from the standard AWS chain. Exit 1 when a
    /// file could not be uploaded.
    Sync(MediaSyncArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct MediaSyncArgs {
    /// The edge's TOML configuration (`[static]`, `[media]`, `[object_store]`).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Magento's `pub/static` of the release (after `setup:static-content:deploy`).
    #[arg(long)]
    pub static_dir: Option<PathBuf>,
    /// The release: the number in `/static/versionNNN/`. Default: `deployed_version.txt` in
    /// --static-dir.
    #[arg(long)]
    pub release: Option<String>,
    /// Magento's `pub/media`, uploaded to `[media] source`.
    #[arg(long)]
    pub media_dir: Option<PathBuf>,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WarmArgs {
    /// sitemap.xml (a sitemap index and .gz included) or a list of URLs, one a line: a file or an
    /// http(s) URL (fetched through --edge when given). Required unless --after-purge.
    #[arg(long, required_unless_present = "after_purge")]
    pub sitemap: Option<String>,
    /// Warm what purges removed: the edge's list of recently purged popular pages
    /// (GET /cache/purged on --admin, MAGESTACK_ADMIN_TOKEN when not on its ACL), requested
    /// through --edge with the host and scheme each was cached under. With --sitemap, both.
    #[arg(long, requires = "edge")]
    pub after_purge: bool,
    /// The edge's admin listener, host:port, for --after-purge (default: --edge's host, port 9180).
    #[arg(long, requires = "after_purge")]
    pub admin: Option<String>,
    /// Most purged pages warmed by --after-purge (most hit first).
    #[arg(long, default_value_t = 1000, requires = "after_purge")]
    pub limit: usize,
    /// The edge's traffic listener, host:port: every request goes there, with the URL's host as
    /// Host (or --host). Without it, each URL's own host is asked (plain http only).
    #[arg(long)]
    pub edge: Option<String>,
    /// Requests in flight at once: keep it below the frontend pool's pm.max_children.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Requests started per second at most, e.g. 10 or 10/s.
    #[arg(long, default_value = "10", value_parser = parse_rate)]
    pub rate: f64,
    /// The Host to send (a store view's domain) instead of each URL's own.
    #[arg(long)]
    pub host: Option<String>,
    /// Warm a variant too: the Cookie header of a session in that currency, store or customer group
    /// (e.g. "PHPSESSID=…; X-Magento-Vary=…", copied from a browser after switching). Repeatable;
    /// each URL is requested once without cookies and once per value.
    #[arg(long = "cookie", value_name = "COOKIES")]
    pub cookies: Vec<String>,
}

/// `--rate 10`, `10/s`, `0.5/s`.
fn parse_rate(text: &str) -> std::result::Result<f64, String> {
    let n = text.trim().trim_end_matches("/s");
    match n.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("{text}: give requests per second, e.g. 10 or 10/s")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates() {
        assert_eq!(super::parse_rate("10/s"), Ok(10.0));
        assert_eq!(super::parse_rate("0.5"), Ok(0.5));
        assert!(super::parse_rate("0").is_err());
        assert!(super::parse_rate("fast").is_err());
    }
}
