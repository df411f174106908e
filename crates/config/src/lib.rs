//! The configuration of `magestack edge`: one TOML file, typed, validated,
//! with every error reported by key path and line.
//!
//! Three layers, as in vector and River:
//!
//! 1. [`file`](mod@crate::file): serde types that mirror the TOML exactly. Unknown keys are
//!    errors, every key has a default, and the `///` docs on the fields are
//!    the reference (repeated for operators in `docs/configuration.md`).
//! 2. [`Validated`]: what the runtime uses. Addresses are parsed, durations
//!    are [`Duration`](std::time::Duration)s, the upstream is an
//!    [`UpstreamUrl`], choices are enums. Built by [`compile`], which checks
//!    everything types cannot (empty listener list, clashing ports, TLS
//!    without a key, zero limits, unknown words) and collects every error with
//!    its key path instead of stopping at the first.
//! 3. Runtime objects (listeners, pools, TLS acceptors) are built from
//!    [`Validated`] by the edge, not here.
//!
//! Loading ([`load_str`], [`load_file`], [`load`]) reports *every* error in a
//! file, each as `<origin>:<line>: <key.path>: <message>`, e.g.
//!
//! ```text
//! edge.toml:7: server.max_headers: invalid type: string "many", expected u32
//! edge.toml:12: upstream.conect_timeout_secs: unknown field, expected one of `url`, `connect_timeout_secs`, ...
//! ```
//!
//! serde itself stops at the first error; how the others are found is
//! described in the `locate` module: each error's span is mapped to a key
//! path, its lines are blanked out, and parsing runs again.
//!
//! [`load`] also applies command-line [`Overrides`], with the precedence
//! *command line > file > defaults*, so `magestack edge --upstream http://...`
//! runs with no file at all.
//!
//! Not here: opening the TLS files, checking that the docroot exists,
//! resolving host names, reloading on SIGHUP. [`compile`] is pure; only the
//! loaders read files (the configuration file itself) and the working
//! directory (to make `--docroot` absolute).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod compile;
mod dbproxy;
pub mod error;
pub mod file;
mod locate;
mod media;
mod upstream;
mod validated;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::dbproxy::{
    is_dbproxy_file, BackendTlsSettings, ClientTlsSettings, DbproxyOverrides, DbproxySettings,
};
pub use crate::error::{
    ConfigError, ConfigErrors, Diagnostic, ErrorKind, KeyPath, Problem, Segment,
};
pub use crate::file::InjectionMode;
pub use crate::media::{FileSource, MediaSettings, ObjectStoreSettings, StaticSettings};
pub use crate::upstream::{UpstreamUrl, UpstreamUrlError};
pub use crate::validated::{
    compile, is_release_id, CacheSettings, ClusterSettings, ErrorStatuses, HealthCheckSettings,
    InjectionExclusion, LogFormat, LogSettings, MageMode, MagentoSettings, NginxGeneration,
    PathMatch, PoolSettings, RateLimitRule, ReadinessSettings, RolloutSettings, RouteRule,
    RoutingSettings, RunMapping, RunType, ServerSettings, TlsSettings, UpstreamSettings, Validated,
    WafSettings,
};
pub use crate::validated::{load_dbproxy, DbproxyValidated};

/// The origin named in diagnostics for values given as command-line flags,
/// and for defaults when no file is loaded.
pub const COMMAND_LINE: &str = "command line";

/// Settings given as command-line flags. They win over the file, which wins
/// over the defaults.
///
/// Each field replaces exactly one key; empty/`None` leaves the key alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen` (repeatable): replaces `server.listen`.
    pub listen: Vec<SocketAddr>,
    /// `--upstream URL`: replaces `upstream.url` (parsed and checked like the key).
    pub upstream: Option<String>,
    /// `--docroot DIR`: replaces `magento.docroot`. A relative path is made
    /// absolute against the current working directory.
    pub docroot: Option<PathBuf>,
    /// `--admin-listen ADDR`: replaces `server.admin_listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `--log-format text|json`: replaces `log.format`.
    pub log_format: Option<LogFormat>,
    /// `--no-cache` (`Some(false)`): replaces `cache.enabled`.
    pub cache: Option<bool>,
    /// `--max-connections N`: replaces `upstream.max_connections` (PHP-FPM's `pm.max_children`).
    pub max_connections: Option<u32>,
    /// `--redis URL`: replaces `cluster.redis_url` (turns the purge bus on).
    pub redis: Option<String>,
}

impl Overrides {
    /// Writes the overrides into `config` and returns the key paths replaced.
    fn apply(&self, config: &mut file::Config) -> Vec<KeyPath> {
        let mut replaced = Vec::new();
        if !self.listen.is_empty() {
            config.server.listen = self.listen.iter().map(ToString::to_string).collect();
            replaced.push(KeyPath::from_dotted("server.listen"));
        }
        if let Some(url) = &self.upstream {
            config.upstream.url.clone_from(url);
            replaced.push(KeyPath::from_dotted("upstream.url"));
        }
        if let Some(docroot) = &self.docroot {
            // On failure keep the relative path; compile() then says it must be absolute.
            let absolute = std::path::absolute(docroot).unwrap_or_else(|_| docroot.clone());
            config.magento.docroot = Some(absolute);
            replaced.push(KeyPath::from_dotted("magento.docroot"));
        }
        if let Some(addr) = self.admin_listen {
            config.server.admin_listen = Some(addr.to_string());
            replaced.push(KeyPath::from_dotted("server.admin_listen"));
        }
        if let Some(format) = self.log_format {
            config.log.format = format.as_str().to_owned();
            replaced.push(KeyPath::from_dotted("log.format"));
        }
        if let Some(n) = self.max_connections {
            config.upstream.max_connections = n;
            replaced.push(KeyPath::from_dotted("upstream.max_connections"));
        }
        if let Some(enabled) = self.cache {
            config.cache.enabled = enabled;
            replaced.push(KeyPath::from_dotted("cache.enabled"));
        }
        if let Some(url) = &self.redis {
            config.cluster.redis_url.clone_from(url);
            replaced.push(KeyPath::from_dotted("cluster.redis_url"));
        }
        replaced
    }
}

/// Loads a configuration from TOML text.
///
/// `origin` names the source in diagnostics (usually the file name).
///
/// # Errors
///
/// Every error in the text, each with its line and key path: the syntax
/// error if the text is not TOML (only that one), otherwise every unknown key
/// and wrongly typed value, then every validation error from [`compile`]
/// that does not concern a key already reported.
pub fn load_str(src: &str, origin: &str) -> Result<Validated, ConfigErrors> {
    build(Some((src, origin)), |_| Vec::new(), compile)
}

/// Loads a configuration file; diagnostics name it as given.
///
/// # Errors
///
/// As [`load_str`], plus an error if the file cannot be read.
pub fn load_file(path: impl AsRef<Path>) -> Result<Validated, ConfigErrors> {
    load(Some(path.as_ref()), &Overrides::default())
}

/// Loads the configuration for `magestack edge`: the file if given (else the
/// defaults), with `overrides` applied on top, then validated.
///
/// Precedence is *command line > file > defaults*. Errors about overridden
/// keys, and all errors when no file is given, are attributed to
/// [`COMMAND_LINE`] without a line.
///
/// # Errors
///
/// As [`load_file`].
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Validated, ConfigErrors> {
    load_with(file, |c| overrides.apply(c), compile)
}

/// [`load`] with another set of overrides and another compile step (the
/// dbproxy's): read the file, parse, override, compile, locate errors.
pub(crate) fn load_with<T>(
    file: Option<&Path>,
    apply: impl FnOnce(&mut file::Config) -> Vec<KeyPath>,
    compile: impl FnOnce(file::Config) -> Result<T, Vec<ConfigError>>,
) -> Result<T, ConfigErrors> {
    let Some(path) = file else {
        return build(None, apply, compile);
    };
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => build(Some((&src, &origin)), apply, compile),
        Err(e) => Err(ConfigErrors::new(vec![Diagnostic {
            origin,
            line: None,
            path: KeyPath::root(),
            problem: Problem::Io(e.to_string()),
        }])),
    }
}

/// Parse (if there is a source), override, compile, and locate every error.
fn build<T>(
    source: Option<(&str, &str)>,
    apply: impl FnOnce(&mut file::Config) -> Vec<KeyPath>,
    compile: impl FnOnce(file::Config) -> Result<T, Vec<ConfigError>>,
) -> Result<T, ConfigErrors> {
    let (mut config, located, mut diagnostics) = match source {
        None => (file::Config::default(), None, Vec::new()),
        Some((src, origin)) => {
            let parsed = locate::parse(src, origin).map_err(|d| ConfigErrors::new(vec![d]))?;
            let Some(config) = parsed.config else {
                return Err(ConfigErrors::new(parsed.diagnostics));
            };
            (config, Some((src, origin, parsed.doc)), parsed.diagnostics)
        }
    };
    let replaced = apply(&mut config);
    let semantic = match compile(config) {
        Ok(validated) if diagnostics.is_empty() => return Ok(validated),
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    };
    let schema_paths: Vec<KeyPath> = diagnostics
        .iter()
        .map(|d| d.path.clone())
        .filter(|p| !p.is_root())
        .collect();
    for error in semantic {
        // A key reported as unknown or mistyped was replaced by its default;
        // complaints about that default would only be noise.
        if schema_paths
            .iter()
            .any(|p| error.path.starts_with(p) || p.starts_with(&error.path))
        {
            continue;
        }
        let from_flags = replaced.iter().any(|p| error.path.starts_with(p));
        let (origin, line) = match &located {
            Some((src, origin, doc)) if !from_flags => (
                (*origin).to_owned(),
                locate::span_of_path(doc.as_table(), &error.path)
                    .map(|s| locate::line_of(src, s.start)),
            ),
            _ => (COMMAND_LINE.to_owned(), None),
        };
        diagnostics.push(Diagnostic {
            origin,
            line,
            path: error.path,
            problem: Problem::Invalid(error.kind),
        });
    }
    Err(ConfigErrors::new(diagnostics))
}
