//! Subcommand implementations: config → runtime objects → tokio.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use magestack_config::{LogFormat, NginxGeneration, UpstreamUrl, Validated};
use magestack_edge::{admin, EdgeSettings, Server, ServerLimits, UpstreamTarget};
use tokio::net::TcpListener;

use crate::cli::{self, Cli, Command, EdgeArgs};
use crate::secrets::secret;

pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Cdn {
            action:
                crate::cli::CdnCommand::Export {
                    config,
                    format,
                    output,
                },
        } => cdn_export(config.as_deref(), format, output.as_deref()),
        Command::Purge { tags, all, edge } => purge(&tags, all, &edge),
        Command::Dbproxy(args) => dbproxy(args),
        Command::Doctor(args) => crate::doctor::run(args),
        Command::Warm(args) => crate::warm::run(args),
        Command::Media {
            action: crate::cli::MediaCommand::Sync(args),
        } => crate::media_sync::run(&args),
        Command::Top(args) => crate::top::run(args),
        Command::Rollout(args) => crate::rollout_cmd::run(args),
        Command::Edge(args) => {
            anyhow::ensure!(
                args.config.is_some() || args.upstream.is_some() || args.docroot.is_some(),
                "magestack edge needs to know what it serves: \
                 --upstream fcgi://127.0.0.1:9000 --docroot /var/www/magento/pub (PHP-FPM), \
                 --upstream http://host:port (an app that speaks HTTP), or --config edge.toml \
                 (see `magestack edge --help`; `magestack demo` runs without PHP)"
            );
            let cfg = load(&args)?;
            let (_log, writer) = init_logging(&cfg)?;
            let takeover = args.takeover;
            let source = args.config.is_some().then(|| args.clone());
            runtime()?.block_on(edge(
                cfg,
                writer,
                source,
                Start {
                    takeover,
                    demo: false,
                },
            ))
        }
        Command::Demo { listen } => {
            // The real upstream address is known only once the built-in storefront is bound.
            let overrides = magestack_config::Overrides {
                listen: vec![listen],
                upstream: Some("http://127.0.0.1:1".into()),
                ..Default::default()
            };
            let cfg =
                magestack_config::load(None, &overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
            let (_log, writer) = init_logging(&cfg)?;
            runtime()?.block_on(demo(cfg, writer))
        }
    }
}

/// `magestack cdn export`: the CDN's rules from the edge's config.
fn cdn_export(
    config: Option<&std::path::Path>,
    format: crate::cli::CdnFormat,
    output: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let (cfg, source) = match config {
        Some(path) => (
            magestack_config::load_file(path).map_err(|e| anyhow::anyhow!("{e}"))?,
            path.display().to_string(),
        ),
        // The defaults, with an HTTP upstream so that no docroot is needed:
        // the cache and routing rules do not depend on either.
        None => (
            magestack_config::load(
                None,
                &magestack_config::Overrides {
                    upstream: Some("http://127.0.0.1:9000".into()),
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
            "the edge's built-in defaults".to_owned(),
        ),
    };
    let rules = crate::cdn::rules(&cfg);
    let text = match format {
        crate::cli::CdnFormat::Terraform => crate::cdn::terraform(&rules, &source),
        crate::cli::CdnFormat::Json => {
            let mut t = serde_json::to_string_pretty(&rules).context("encoding the rules")?;
            t.push('\n');
            t
        }
    };
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("writing to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends Magento's PURGE to each edge: the same bytes `PurgeCache::sendPurgeRequest` writes.
fn purge(tags: &[String], all: bool, edges: &[String]) -> Result<ExitCode> {
    use std::io::{Read, Write};
    let pattern = if all {
        ".*".to_string()
    } else {
        tags.iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(|t| format!("((^|,){t}(,|$))"))
            .collect::<Vec<_>>()
            .join("|")
    };
    anyhow::ensure!(!pattern.is_empty(), "no tags given");
    // An edge behind a load balancer wants the purge token from anyone but
    // loopback (`server.behind_load_balancer`).
    let auth = match secret("MAGESTACK_PURGE_TOKEN")? {
        Some(t) if !t.is_empty() => format!("Authorization: Bearer {t}\r\n"),
        _ => String::new(),
    };
    let mut failed = 0;
    for given in edges {
        let edge = match edge_authority(given) {
            Ok(a) => a,
            Err(why) => {
                failed += 1;
                eprintln!("{given}: {why}");
                continue;
            }
        };
        let edge = edge.as_str();
        let host = edge.rsplit_once(':').map(|(h, _)| h).unwrap_or(edge);
        let result = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(edge)?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            write!(
                s,
                "PURGE / HTTP/1.1\r\nX-Magento-Tags-Pattern: {pattern}\r\nHost: {host}\r\n{auth}\r\n"
            )?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out.lines().next().unwrap_or("").to_string())
        })();
        match result {
            Ok(line) if line.starts_with("HTTP/1.1 200") => println!("{edge}: {line}"),
            Ok(line) => {
                failed += 1;
                eprintln!("{edge}: {line}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("{edge}: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `host:port` from what an operator may paste: `host:port`, `host`
/// (port 80), or the URL `http://host:port/` (Magento's
/// `--http-cache-hosts` takes the bare form, a browser shows the URL).
/// `https://` is refused with the reason: Magento's PURGE, and this
/// command, speak plain HTTP to the edge's traffic listener.
fn edge_authority(given: &str) -> std::result::Result<String, String> {
    let rest = if let Some(r) = given.strip_prefix("http://") {
        r
    } else if given.starts_with("https://") {
        return Err(
            "https:// is not supported: PURGE goes over plain HTTP, as Magento sends it \
             (give host:port of a plain listener, e.g. 127.0.0.1:8080)"
                .to_owned(),
        );
    } else if given.contains("://") {
        return Err("give host:port or http://host:port".to_owned());
    } else {
        given
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("no host: give host:port or http://host:port".to_owned());
    }
    // A port after the last colon, outside an IPv6 literal's brackets.
    let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !p.contains(']') && (!h.contains(':') || h.ends_with(']'))
    });
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

/// The DB user's password: `MAGESTACK_DB_PASSWORD`, or the file named by
/// `MAGESTACK_DB_PASSWORD_FILE` (one trailing newline dropped). Never a flag:
/// flags show in `ps`.
fn db_password() -> Result<String> {
    if let Ok(p) = std::env::var("MAGESTACK_DB_PASSWORD") {
        return Ok(p);
    }
    let path = std::env::var("MAGESTACK_DB_PASSWORD_FILE").map_err(|_| {
        anyhow::anyhow!("magestack dbproxy needs the database password in MAGESTACK_DB_PASSWORD or MAGESTACK_DB_PASSWORD_FILE")
    })?;
    let mut p = std::fs::read_to_string(&path)
        .with_context(|| format!("reading MAGESTACK_DB_PASSWORD_FILE {path}"))?;
    if p.ends_with('\n') {
        p.pop();
        if p.ends_with('\r') {
            p.pop();
        }
    }
    Ok(p)
}

/// `magestack dbproxy`: flags over the file's `[dbproxy]`, the password
/// from the environment, then the proxy, its admin listener and `SIGHUP`.
fn dbproxy(args: cli::DbproxyArgs) -> Result<ExitCode> {
    let overrides = magestack_config::DbproxyOverrides {
        listen: args.listen,
        writer: args.writer.clone(),
        readers: args.readers.clone(),
        user: args.user.clone(),
        max_backend_connections: args.max_backend_connections,
        queue_timeout_ms: args.queue_timeout_ms,
        admin_listen: args.admin_listen,
    };
    let cfg = match magestack_config::load_dbproxy(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(errors) => {
            for line in errors.to_string().lines() {
                eprintln!("{line}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let password = db_password()?;
    let user = db_user(&cfg.dbproxy.user)?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAGESTACK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let d = &cfg.dbproxy;
    // The PEM files are read once here: a bad one stops the start with its name.
    let backend_tls = match &d.backend_tls {
        Some(t) => Some(std::sync::Arc::new(
            magestack_dbproxy::BackendTls::from_pem(&t.ca_file, t.server_name.as_deref())
                .context("dbproxy.backend_tls_ca_file")?,
        )),
        None => None,
    };
    let client_tls = match &d.client_tls {
        Some(t) => Some(
            magestack_dbproxy::ClientTls::from_pem(&t.cert_file, &t.key_file, t.required)
                .context("dbproxy.tls_cert_file / tls_key_file")?,
        ),
        None => None,
    };
    let proxy_cfg = magestack_dbproxy::ProxyConfig {
        client_tls,
        client_full_auth: d.client_full_auth,
        readers: d.readers.clone(),
        writer_detection: d.writer_detection,
        max_backend_connections: d.max_backend_connections,
        max_client_connections: d.max_client_connections,
        queue_timeout: d.queue_timeout,
        read_your_writes: d.read_your_writes,
        max_replica_lag: d.max_replica_lag,
        check_interval: d.check_interval,
        writer_only_tables: d.writer_only_tables.clone(),
        digests_max: d.digests_max,
        ..magestack_dbproxy::ProxyConfig::new(magestack_dbproxy::BackendConfig {
            addr: d.writer.clone(),
            user,
            password,
            connect_timeout: d.connect_timeout,
            limits: Default::default(),
            tls: backend_tls,
        })
    };
    let (listen, admin_listen) = (d.listen, d.admin_listen);
    // A descriptor per client and per backend connection: the default soft
    // limit (1024) would refuse clients long before max_client_connections.
    let descriptors = crate::fd_limit::raise();
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let admin = match admin_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding the admin listener {a}"))?,
            ),
            None => None,
        };
        let proxy = magestack_dbproxy::Proxy::new(proxy_cfg).await;
        if let Some(l) = admin {
            let p = proxy.clone();
            tokio::spawn(async move {
                if let Err(e) = p.serve_admin(l).await {
                    tracing::error!(error = %e, "Admin listener failed.");
                }
            });
        }
        tokio::spawn(dbproxy_reload_on_hup(
            proxy.clone(),
            args.config.clone(),
            overrides,
        ));
        tracing::info!(%listen, writer = %cfg.dbproxy.writer, readers = ?cfg.dbproxy.readers, max = cfg.dbproxy.max_backend_connections, file_descriptors = descriptors, "Dbproxy started.");
        tokio::select! {
            r = proxy.serve(listener) => r.context("accepting clients")?,
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM (never where it cannot be listened for).
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// `SIGHUP` re-reads the file: the routing settings take effect at once
/// (`read_your_writes_ms`, `max_replica_lag_secs`, `writer_only_tables`,
/// `table_prefix`); a bad file is refused and the running settings stay.
/// Listeners, servers and caps need a restart (they own sockets and
/// connections), which the log says.
async fn dbproxy_reload_on_hup(
    proxy: magestack_dbproxy::Proxy,
    file: Option<std::path::PathBuf>,
    overrides: magestack_config::DbproxyOverrides,
) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("Cannot listen for SIGHUP.");
        return;
    };
    while hup.recv().await.is_some() {
        match magestack_config::load_dbproxy(file.as_deref(), &overrides) {
            Ok(c) => {
                let d = c.dbproxy;
                proxy.reload(magestack_dbproxy::Tunables {
                    read_your_writes: d.read_your_writes,
                    max_replica_lag: d.max_replica_lag,
                    writer_only_tables: d.writer_only_tables,
                });
                tracing::info!("SIGHUP: routing settings reloaded (listeners, servers and caps change on restart).");
            }
            Err(errors) => {
                tracing::error!(errors = %errors, "SIGHUP: configuration refused; the running one stays.");
            }
        }
    }
}

/// The DB user: `--user`/`dbproxy.user`, else `MAGESTACK_DB_USER`, else the
/// file named by `MAGESTACK_DB_USER_FILE` (the deploy kit mounts the secret).
fn db_user(configured: &str) -> Result<String> {
    if !configured.is_empty() {
        return Ok(configured.to_owned());
    }
    if let Ok(u) = std::env::var("MAGESTACK_DB_USER") {
        return Ok(u);
    }
    let path = std::env::var("MAGESTACK_DB_USER_FILE").map_err(|_| {
        anyhow::anyhow!("magestack dbproxy needs a user: --user, dbproxy.user, MAGESTACK_DB_USER or MAGESTACK_DB_USER_FILE")
    })?;
    let u = std::fs::read_to_string(&path)
        .with_context(|| format!("reading MAGESTACK_DB_USER_FILE {path}"))?;
    Ok(u.trim_end_matches(['\n', '\r']).to_owned())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn check(path: &std::path::Path) -> Result<ExitCode> {
    // A file with only [dbproxy] (and [log]) is checked as the proxy loads it.
    let dbproxy = std::fs::read_to_string(path)
        .map(|s| magestack_config::is_dbproxy_file(&s))
        .unwrap_or(false);
    let result = if dbproxy {
        magestack_config::load_dbproxy(Some(path), &Default::default()).map(|_| ())
    } else {
        magestack_config::load(Some(path), &magestack_config::Overrides::default()).map(|_| ())
    };
    match result {
        Ok(()) => {
            println!("{}: ok", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for line in errors.to_string().lines() {
                eprintln!("{line}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn load(args: &EdgeArgs) -> Result<Validated> {
    let overrides = magestack_config::Overrides {
        listen: args.listen.clone(),
        upstream: args.upstream.clone(),
        docroot: args.docroot.clone(),
        admin_listen: args.admin_listen,
        log_format: args.log_format.map(|f| match f {
            cli::LogFormat::Text => LogFormat::Text,
            cli::LogFormat::Json => LogFormat::Json,
        }),
        cache: args.no_cache.then_some(false),
        max_connections: args.max_connections,
        redis: args.redis.clone(),
    };
    magestack_config::load(args.config.as_deref(), &overrides)
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

/// Logs and access lines go to stderr through [`crate::log_writer`]:
/// batched, one write per burst instead of one per request, nothing dropped.
/// The returned guard writes what is left when dropped at exit; the writer
/// is the access log's sink.
fn init_logging(
    cfg: &Validated,
) -> Result<(
    crate::log_writer::FlushGuard,
    crate::log_writer::BatchWriter,
)> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAGESTACK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let (writer, guard) =
        crate::log_writer::batched(std::io::stderr()).context("starting the log writer")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer.clone());
    let _ = match cfg.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok((guard, writer))
}

/// `[media]`, `[static]` and `[object_store]` as the edge's media spec;
/// `None` when both sources are the docroot.
fn media_spec(cfg: &Validated) -> Option<magestack_edge::media_source::MediaSpec> {
    let remote = |src: &magestack_config::FileSource| match src {
        magestack_config::FileSource::Docroot => None,
        magestack_config::FileSource::S3 { bucket, prefix } => {
            Some(magestack_edge::media_source::RemoteSpec {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: cfg.object_store.endpoint.clone(),
                region: cfg.object_store.region.clone(),
                timeout: cfg.media.store_timeout,
            })
        }
    };
    let media = remote(&cfg.media.source);
    let statics = remote(&cfg.static_files.source);
    if media.is_none() && statics.is_none() && !cfg.media.resize {
        return None;
    }
    let m = &cfg.media;
    let resize = m.resize.then(|| magestack_edge::media_source::ResizeSpec {
        limits: magestack_media::ResizeLimits {
            max_width: m.resize_max_width,
            max_height: m.resize_max_height,
            sizes: m.resize_sizes.clone(),
            max_source_bytes: m.resize_max_source_bytes,
            max_source_pixels: m.resize_max_source_pixels,
        },
        workers: m.resize_workers,
        queue: m.resize_queue,
        webp: m.webp,
    });
    Some(magestack_edge::media_source::MediaSpec {
        media,
        statics,
        static_deployed_version: cfg.static_files.deployed_version.clone(),
        cache_dir: cfg.media.cache_dir.clone(),
        cache_size: cfg.media.cache_size_bytes,
        retry_after: cfg.media.retry_after,
        resize,
    })
}

/// The pipeline settings from the validated config.
fn edge_settings(cfg: &Validated) -> EdgeSettings {
    let m = &cfg.magento;
    EdgeSettings {
        docroot: m.docroot.clone(),
        generation: match m.nginx_generation {
            NginxGeneration::G3 => magestack_edge::settings::Generation::G3,
            NginxGeneration::G2 => magestack_edge::settings::Generation::G2,
        },
        server_name: cfg.server.server_name.clone(),
        trusted_proxies: cfg.server.trusted_proxies.clone(),
        max_body_bytes: cfg.server.max_body_bytes,
        body: magestack_edge::settings::BodySettings {
            buffer_bytes: cfg.server.body_buffer_bytes,
            memory_bytes: cfg.server.body_memory_bytes,
            spool_dir: cfg.server.body_spool_dir.clone(),
            read_timeout: cfg.server.body_read_timeout,
        },
        gzip: m.gzip,
        gzip_min_length: m.gzip_min_length as u64,
        open_file_cache: magestack_edge::open_file_cache::OpenFileCacheLimits {
            max_entries: m.open_file_cache_entries,
            max_bytes: m.open_file_cache_bytes,
            valid: m.open_file_cache_valid,
        },
        php_value: m.php_value.clone(),
        php_flag: m.php_flag.clone(),
        mage_mode: m.mage_mode.map(|x| x.as_str().to_string()),
        mage_run: m
            .run
            .iter()
            .map(|r| {
                (
                    r.host.clone(),
                    r.code.clone(),
                    r.run_type.as_str().to_string(),
                )
            })
            .collect(),
        release: m.release.clone(),
        upstream: upstream_target(&cfg.upstream.url),
        connect_timeout: cfg.upstream.connect_timeout,
        read_timeout: cfg.upstream.read_timeout,
        keepalive_connections: cfg.upstream.keepalive_connections,
        max_connections: cfg.upstream.max_connections,
        max_response_header_bytes: cfg.upstream.max_response_header_bytes,
        dns_servers: cfg.upstream.dns_servers.clone(),
        access_log: cfg.log.access_log,
        access_sink: None,
        pools: cfg.pools.iter().map(pool_spec).collect(),
        pool_routing: pool_routing(&cfg.routing),
        rate_limit: cfg
            .waf
            .rate_limits
            .then(|| magestack_edge::settings::RateLimitSpec {
                max_keys: cfg.waf.rate_limit_max_keys,
                ipv6_prefix_len: cfg.waf.ipv6_prefix_len,
                rules: cfg
                    .waf
                    .rate_limit_rules
                    .iter()
                    .map(|r| magestack_edge::settings::RateRuleSpec {
                        name: r.name.clone(),
                        matcher: match &r.matcher {
                            magestack_config::PathMatch::Prefix(p) => {
                                magestack_edge::settings::RuleMatch::Prefix(p.clone())
                            }
                            magestack_config::PathMatch::Regex(x) => {
                                magestack_edge::settings::RuleMatch::Regex(x.clone())
                            }
                        },
                        methods: r.methods.clone(),
                        limit: r.limit,
                        period: r.period,
                    })
                    .collect(),
            }),
        tarpit: cfg.waf.tarpit,
        injection: (cfg.waf.injection != magestack_config::InjectionMode::Off).then(|| {
            magestack_edge::settings::InjectionSpec {
                block: cfg.waf.injection == magestack_config::InjectionMode::Block,
                inspect_body_bytes: cfg.waf.inspect_body_bytes,
                exclusions: cfg
                    .waf
                    .injection_exclusions
                    .iter()
                    .map(|e| magestack_edge::settings::InjectionExclusionSpec {
                        prefix: e.prefix.clone(),
                        fields: e.fields.clone(),
                        locations: e.locations.clone(),
                        attacks: e.attacks.clone(),
                    })
                    .collect(),
            }
        }),
        ip_rules: magestack_edge::settings::IpRulesSpec {
            allow: cfg.waf.allow.clone(),
            deny: cfg.waf.deny.clone(),
            deny_files: cfg.waf.deny_files.clone(),
            admin_allow: cfg.waf.admin_allow.clone(),
            close_default_admin: cfg.waf.close_default_admin,
        },
        readiness: magestack_edge::settings::ReadinessSpec {
            health_script: cfg.readiness.health_script.clone(),
            opcache_min_ratio: f64::from(cfg.readiness.opcache_min_ppm) / 1_000_000.0,
            warmup_urls: warmup_urls(cfg),
        },
        cache: cache_settings(cfg),
        media: media_spec(cfg),
        cluster: None,
        rollout: cfg.rollout.as_ref().map(rollout_spec),
        deny_without_docroot: false,
    }
}

/// `[rollout]` as the edge runs it (idle until started).
fn rollout_spec(r: &magestack_config::RolloutSettings) -> magestack_edge::rollout::RolloutSpec {
    magestack_edge::rollout::RolloutSpec {
        pool: r.pool.clone(),
        canary_endpoints: r.canary_endpoints.iter().map(endpoint_url).collect(),
        canary_docroot: r.canary_docroot.clone(),
        canary_release: r.canary_release.clone(),
        plan: r.plan.clone(),
        analysis_interval: r.analysis_interval,
        thresholds: magestack_rollout::Thresholds {
            min_requests: r.min_requests,
            max_error_ratio: f64::from(r.max_error_ppm) / 1_000_000.0,
            max_p95_ratio: f64::from(r.max_p95_milli) / 1000.0,
        },
        checkout_sticky: r.checkout_sticky,
        state_file: r.state_file.clone(),
    }
}

/// An endpoint as the config writes it (the rollout state keeps this form).
fn endpoint_url(url: &UpstreamUrl) -> String {
    match url {
        UpstreamUrl::FastCgiTcp { host, port } if host.contains(':') => {
            format!("fcgi://[{host}]:{port}")
        }
        UpstreamUrl::FastCgiTcp { host, port } => format!("fcgi://{host}:{port}"),
        UpstreamUrl::FastCgiUnix(p) => format!("fcgi+unix://{}", p.display()),
        UpstreamUrl::Http { authority } => format!("http://{authority}"),
    }
}

/// `readiness.warmup_urls`, then the first pages of
/// `readiness.warmup_sitemap` (relative to the docroot unless absolute). A
/// sitemap that cannot be read is logged and skipped: warming is an
/// optimisation, a pod must still start.
fn warmup_urls(cfg: &Validated) -> Vec<String> {
    let mut urls = cfg.readiness.warmup_urls.clone();
    let Some(file) = &cfg.readiness.warmup_sitemap else {
        return urls;
    };
    let path = match &cfg.magento.docroot {
        Some(root) if file.is_relative() => root.join(file),
        _ => file.clone(),
    };
    let pages = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|raw| crate::sitemap::parse(&raw).map_err(|e| e.to_string()));
    match pages {
        Ok(crate::sitemap::Sitemap::Urls(list)) => {
            let found = crate::sitemap::paths(&list, crate::sitemap::MAX_WARMUP_PAGES);
            tracing::info!(sitemap = %path.display(), pages = found.len(), "Warm-up pages from the sitemap.");
            for p in found {
                if !urls.contains(&p) {
                    urls.push(p);
                }
            }
        }
        Ok(crate::sitemap::Sitemap::Index(_)) => tracing::warn!(
            sitemap = %path.display(),
            "readiness.warmup_sitemap is a sitemap index: name one of its sitemaps; skipped."
        ),
        Err(e) => {
            tracing::warn!(sitemap = %path.display(), error = %e, "readiness.warmup_sitemap not read; skipped.")
        }
    }
    urls
}

fn upstream_target(url: &UpstreamUrl) -> UpstreamTarget {
    match url {
        UpstreamUrl::FastCgiTcp { host, port } => {
            UpstreamTarget::FastCgiTcp(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            })
        }
        UpstreamUrl::FastCgiUnix(p) => UpstreamTarget::FastCgiUnix(p.clone()),
        UpstreamUrl::Http { authority } => UpstreamTarget::Http(authority.clone()),
    }
}

/// A pool as the edge runs it.
fn pool_spec(p: &magestack_config::PoolSettings) -> magestack_edge::settings::PoolSpec {
    magestack_edge::settings::PoolSpec {
        name: p.name.clone(),
        endpoints: p.endpoints.iter().map(upstream_target).collect(),
        max_inflight: p.max_inflight,
        queue_size: p.queue_size,
        queue_timeout: p.queue_timeout,
        request_timeout: p.request_timeout,
        connect_timeout: p.connect_timeout,
        status_path: p.status_path.clone(),
        status_endpoints: p.status_endpoints.iter().map(upstream_target).collect(),
        check_interval: p.check_interval,
        unhealthy_after: p.unhealthy_after,
        resolve_interval: p.resolve_interval,
    }
}

fn pool_routing(r: &magestack_config::RoutingSettings) -> magestack_edge::settings::PoolRouting {
    use magestack_edge::settings::{PoolRule, RuleMatch};
    magestack_edge::settings::PoolRouting {
        admin_front_name: r.admin_front_name.clone(),
        rules: r
            .rules
            .iter()
            .map(|rule| PoolRule {
                matcher: match &rule.matcher {
                    magestack_config::PathMatch::Prefix(p) => RuleMatch::Prefix(p.clone()),
                    magestack_config::PathMatch::Regex(x) => RuleMatch::Regex(x.clone()),
                },
                pool: rule.pool.clone(),
            })
            .collect(),
    }
}

/// The full-page cache settings, or `None` when `cache.enabled = false`.
fn cache_settings(cfg: &Validated) -> Option<magestack_edge::CacheSettings> {
    let c = &cfg.cache;
    if !c.enabled {
        return None;
    }
    // Behind a load balancer, PURGE from a non-loopback peer needs this
    // token (`server.behind_load_balancer`); unreadable = none (loopback only).
    let purge_token = match secret("MAGESTACK_PURGE_TOKEN") {
        Ok(t) => t.filter(|t| !t.is_empty()),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "MAGESTACK_PURGE_TOKEN not read; PURGE is accepted from loopback only.");
            None
        }
    };
    if cfg.server.behind_load_balancer && purge_token.is_none() {
        tracing::warn!("server.behind_load_balancer without MAGESTACK_PURGE_TOKEN: PURGE is accepted from loopback peers only.");
    }
    let mut policy = magestack_fpc::FpcPolicy {
        grace_period_secs: c.grace_period.as_secs(),
        default_ttl_secs: c.default_ttl.as_secs(),
        error_statuses: match c.error_statuses {
            magestack_config::ErrorStatuses::Cache404 => {
                magestack_fpc::ErrorStatusPolicy::CacheOkAnd404
            }
            magestack_config::ErrorStatuses::Never => magestack_fpc::ErrorStatusPolicy::NoErrors,
        },
        ..magestack_fpc::FpcPolicy::default()
    };
    if let Some(h) = &c.ssl_offloaded_header {
        if let Ok(name) = http::HeaderName::from_bytes(h.as_bytes()) {
            policy.ssl_offloaded_header = name;
        }
    }
    if !c.tracking_params.is_empty() {
        match magestack_fpc::TrackingParams::new(c.tracking_params.iter().map(String::as_str)) {
            Ok(t) => policy.tracking_params = t,
            Err(e) => {
                tracing::warn!(error = %e, "cache.tracking_params refused; using the built-in list.")
            }
        }
    }
    Some(magestack_edge::CacheSettings {
        size_bytes: c.size_bytes,
        purge_acl: c.purge_acl.clone(),
        purge_guard: magestack_edge::settings::PurgeGuard {
            behind_load_balancer: cfg.server.behind_load_balancer,
            token: purge_token.map(std::sync::Arc::from),
        },
        policy,
        soft_purge: c.soft_purge,
        max_object_bytes: c.max_object_bytes,
        esi: c.esi,
        brotli: c.brotli,
        health_check: magestack_edge::HealthCheckSettings {
            path: c.health_check.path.clone(),
            interval: c.health_check.interval,
            timeout: c.health_check.timeout,
            window: u8::try_from(c.health_check.window).unwrap_or(64),
            threshold: u8::try_from(c.health_check.threshold).unwrap_or(64),
        },
    })
}

fn server_limits(cfg: &Validated) -> ServerLimits {
    let s = &cfg.server;
    ServerLimits {
        max_header_bytes: s.max_header_bytes,
        max_headers: s.max_headers,
        header_read_timeout: s.header_read_timeout,
        body_read_timeout: s.body_read_timeout,
        idle_timeout: s.idle_timeout,
        drain_timeout: s.drain_timeout,
        h2c: s.h2c,
        max_connections_per_ip: s.max_connections_per_ip,
        per_ip_exempt: s.trusted_proxies.clone(),
        max_connections: crate::fd_limit::client_connections(s.max_client_connections),
    }
}

/// Binds the traffic listeners, with `SO_REUSEPORT` when configured so a
/// successor edge can bind the same port while this one drains.
///
/// `SO_REUSEPORT` alone would let a second edge start silently beside a
/// running one: both serve, and a `PURGE` reaches only one of them. So each
/// port is first probed with a plain bind (`SO_REUSEADDR` only, which a
/// live listener refuses and a closed one in `TIME_WAIT` does not); a port
/// held by a live listener is refused as nginx refuses it, unless `takeover`
/// says this edge is the successor in a restart.
fn bind_all(addrs: &[SocketAddr], reuse_port: bool, takeover: bool) -> Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        if reuse_port && !takeover {
            if let Err(e) = probe_free(*a) {
                return Err(bind_error(*a, &e)).with_context(|| {
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        format!(
                            "server.listen {a}: another listener holds the port; to take it \
                             over from a running edge (a zero-downtime restart) start with \
                             --takeover"
                        )
                    } else {
                        format!("server.listen {a}")
                    }
                });
            }
        }
        let l = bind_one(*a, reuse_port)
            .map_err(|e| bind_error(*a, &e))
            .with_context(|| format!("server.listen {a}"))?;
        out.push(l);
    }
    Ok(out)
}

/// nginx's wording: `bind() to 127.0.0.1:8080 failed (98: Address already in use)`.
fn bind_error(addr: SocketAddr, e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("bind() to {addr} failed ({})", magestack_edge::os_error(e))
}

/// Binds `addr` without `SO_REUSEPORT` and lets it go: fails with
/// `AddrInUse` when a live listener holds the port.
fn probe_free(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // `[::]:8081` beside `0.0.0.0:8080`: each family its own socket.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The pipeline settings, with the access log wired to `log`.
fn full_settings(cfg: &Validated, log: &crate::log_writer::BatchWriter) -> Result<EdgeSettings> {
    let mut settings = edge_settings(cfg);
    settings.cluster = cluster_spec(cfg)?;
    // Access lines bypass tracing's formatter (see `access_log`) but obey
    // its filter: `MAGESTACK_LOG=warn` still silences them.
    if settings.access_log && tracing::enabled!(target: "access", tracing::Level::INFO) {
        let format = match cfg.log.format {
            LogFormat::Json => magestack_edge::access_log::AccessFormat::Json,
            LogFormat::Text => magestack_edge::access_log::AccessFormat::Text,
        };
        settings.access_sink = Some(magestack_edge::access_log::AccessLog::new(
            Arc::new(log.clone()),
            format,
        ));
    }
    Ok(settings)
}

/// The admin token: `MAGESTACK_ADMIN_TOKEN`, or the first line of the file
/// named by `MAGESTACK_ADMIN_TOKEN_FILE` (a Kubernetes secret volume).
fn admin_token() -> Result<Option<String>> {
    secret("MAGESTACK_ADMIN_TOKEN")
}

/// Refuses a token that cannot hold 32 bytes (256 bits) of randomness: a
/// public admin listener can reload and purge, and a short token falls to
/// guessing even at the throttled rate. Estimated from its shape, as a token
/// generator writes it: hex digits carry 4 bits each (64 needed, `openssl
/// rand -hex 32`), anything else at most 6 (base64: 43 needed, `openssl rand
/// -base64 32`). At least 12 distinct characters rule out `aaaa…` and
/// `abab…` of the right length (a random 64-digit hex token has fewer with a
/// probability below 1e-6).
pub(crate) fn token_strength(token: &str) -> std::result::Result<(), String> {
    let len = token.chars().count();
    let hex = token.chars().all(|c| c.is_ascii_hexdigit());
    let need = if hex { 64 } else { 43 };
    if len < need {
        return Err(format!(
            "it has {len} {}, fewer than {need}",
            if hex { "hex digits" } else { "characters" }
        ));
    }
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 12 {
        return Err(format!(
            "it has only {} distinct characters",
            distinct.len()
        ));
    }
    Ok(())
}

/// `[cluster]` with its password and this replica's name (the pod name in
/// Kubernetes: `HOSTNAME`), plus the pid so two edges on one host differ.
fn cluster_spec(cfg: &Validated) -> Result<Option<magestack_edge::purge_bus::ClusterSpec>> {
    let Some(url) = &cfg.cluster.redis_url else {
        return Ok(None);
    };
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "edge".to_owned());
    let ca = match &cfg.cluster.redis_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cluster.redis_ca_file: reading {}", path.display()))?;
            anyhow::ensure!(
                pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----"),
                "cluster.redis_ca_file: {} holds no PEM certificate",
                path.display()
            );
            Some((path.clone(), pem))
        }
        None => None,
    };
    Ok(Some(magestack_edge::purge_bus::ClusterSpec {
        redis_url: url.clone(),
        password: secret("MAGESTACK_REDIS_PASSWORD")?,
        ca,
        channel: cfg.cluster.channel.clone(),
        node: format!("{host}-{}", std::process::id()),
        l2: cfg.cluster.l2,
    }))
}

/// Re-reads the configuration file and swaps the serving edge. Settings the
/// running process cannot change (listeners, TLS, the admin listener) are
/// kept and reported.
fn reload(
    args: &EdgeArgs,
    running: &Validated,
    live: &magestack_edge::LiveEdge,
    log: &crate::log_writer::BatchWriter,
) -> std::result::Result<(String, Validated), String> {
    let next = match load(args) {
        Ok(c) => c,
        Err(e) => {
            let text = e.to_string();
            for line in text.lines() {
                tracing::error!(error = %line, "Reload refused; the running configuration stays.");
            }
            return Err(text);
        }
    };
    let mut kept = Vec::new();
    if next.server.listen != running.server.listen {
        kept.push("server.listen");
    }
    if next.server.tls != running.server.tls {
        kept.push("server.tls");
    }
    if next.server.purge_listen != running.server.purge_listen {
        kept.push("server.purge_listen");
    }
    if next.server.behind_load_balancer != running.server.behind_load_balancer {
        // The running cache keeps its purge rules with its objects.
        kept.push("server.behind_load_balancer");
    }
    if next.server.admin_listen != running.server.admin_listen {
        kept.push("server.admin_listen");
    }
    if next.cache.enabled && running.cache.enabled && next.cache != running.cache {
        kept.push("cache (the store keeps its objects and settings)");
    }
    let previous = live.current();
    let edge = magestack_edge::Edge::reloaded(
        full_settings(&next, log).map_err(|e| format!("{e:#}"))?,
        &previous,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "Reload refused; the running configuration stays.");
        e.to_string()
    })?;
    live.replace(Arc::new(edge));
    let pools: Vec<String> = next
        .pools
        .iter()
        .map(|p| format!("{}: max_inflight {}", p.name, p.max_inflight))
        .collect();
    let summary = if kept.is_empty() {
        format!("reloaded; pools: {}", pools.join(", "))
    } else {
        format!(
            "reloaded; pools: {}; needs a restart to change: {}",
            pools.join(", "),
            kept.join(", ")
        )
    };
    tracing::info!(%summary, "Configuration reloaded.");
    Ok((summary, next))
}

/// How [`edge`] starts, beyond the configuration.
#[derive(Debug, Clone, Copy, Default)]
struct Start {
    /// `--takeover`: bind a port a live listener holds (a restart's successor).
    takeover: bool,
    /// `magestack demo`: Magento's path denies without a docroot.
    demo: bool,
}

async fn edge(
    cfg: Validated,
    log: crate::log_writer::BatchWriter,
    source: Option<EdgeArgs>,
    start: Start,
) -> Result<ExitCode> {
    let Start { takeover, demo } = start;
    let mut settings = full_settings(&cfg, &log)?;
    settings.deny_without_docroot = demo;
    let upstream = cfg.upstream.url.to_string();
    let edge = Arc::new(magestack_edge::Edge::new(settings).context("building the edge")?);
    let live = magestack_edge::LiveEdge::new(edge);
    let token = admin_token()?;
    // The running configuration, replaced by each successful reload.
    let running = Arc::new(std::sync::Mutex::new(cfg.clone()));
    let reload_hook: Option<admin::ReloadHook> = source.map(|args| {
        let live = live.clone();
        let running = running.clone();
        let log = log.clone();
        let hook: admin::ReloadHook = Arc::new(move || {
            let mut cur = running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (summary, next) = reload(&args, &cur, &live, &log)?;
            *cur = next;
            Ok(summary)
        });
        hook
    });
    let tls = match &cfg.server.tls {
        Some(t) => Some(
            magestack_edge::tls::acceptor(&t.cert_file, &t.key_file, true).context("server.tls")?,
        ),
        None => None,
    };
    let mut listeners: Vec<(TcpListener, magestack_edge::ListenerKind)> =
        bind_all(&cfg.server.listen, cfg.server.reuse_port, takeover)?
            .into_iter()
            .map(|l| (l, magestack_edge::ListenerKind::Traffic))
            .collect();
    if let Some(addr) = cfg.server.purge_listen {
        let purge = bind_all(&[addr], cfg.server.reuse_port, takeover)
            .with_context(|| format!("server.purge_listen {addr}"))?;
        listeners.extend(
            purge
                .into_iter()
                .map(|l| (l, magestack_edge::ListenerKind::Purge)),
        );
    }
    let ready = Arc::new(admin::Readiness::default());
    if let Some(addr) = cfg.server.admin_listen {
        if !addr.ip().is_loopback() {
            let Some(token) = &token else {
                anyhow::bail!(
                    "server.admin_listen {addr} is not a loopback address: set MAGESTACK_ADMIN_TOKEN \
                     or MAGESTACK_ADMIN_TOKEN_FILE (the admin API can reload and purge)"
                );
            };
            if let Err(why) = token_strength(token) {
                anyhow::bail!(
                    "MAGESTACK_ADMIN_TOKEN (or MAGESTACK_ADMIN_TOKEN_FILE) is too weak for the \
                     non-loopback admin listener {addr}: {why}; it needs 32 bytes of randomness: \
                     at least 64 hex digits or 43 other characters, at least 12 of them distinct \
                     (e.g. `openssl rand -hex 32`)"
                );
            }
        }
        // As the traffic listeners: refused when a live edge holds the port,
        // shared with it during a `--takeover` hand-over.
        let l = bind_all(&[addr], cfg.server.reuse_port, takeover)
            .with_context(|| format!("server.admin_listen {addr}"))?
            .pop()
            .context("binding server.admin_listen")?;
        let access = admin::AdminAccess {
            acl: cache_settings(&cfg)
                .map(|c| c.purge_acl)
                .unwrap_or_else(|| magestack_edge::CacheSettings::magento_defaults().purge_acl),
            token: token.clone(),
        };
        tokio::spawn(admin::serve(
            l,
            ready.clone(),
            live.clone(),
            access,
            reload_hook.clone(),
        ));
    }
    if let Some(hook) = reload_hook.clone() {
        tokio::spawn(async move { reload_on_sighup(hook).await });
    }
    for (l, kind) in &listeners {
        if let Ok(a) = l.local_addr() {
            match kind {
                magestack_edge::ListenerKind::Traffic => {
                    tracing::info!(listen = %a, %upstream, tls = cfg.server.tls.is_some(), "Edge listening.");
                }
                magestack_edge::ListenerKind::Purge => {
                    tracing::info!(purge_listen = %a, "Purge listener (cluster-internal) listening.");
                }
            }
        }
    }
    ready.set(true);
    let descriptors = crate::fd_limit::raise();
    let limits = server_limits(&cfg);
    tracing::info!(
        file_descriptors = descriptors,
        max_client_connections = limits.max_connections,
        "Connection limits."
    );
    let server = Server::with_live(live, limits, tls);
    let ready_on_stop = ready.clone();
    let open = server
        .run_tagged(listeners, async move {
            shutdown_signal().await;
            ready_on_stop.set(false);
        })
        .await;
    Ok(if open == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn demo(mut cfg: Validated, log: crate::log_writer::BatchWriter) -> Result<ExitCode> {
    let app = magestack_edge::demo::spawn_storefront()
        .await
        .context("starting the demo storefront")?;
    cfg.upstream.url = UpstreamUrl::Http {
        authority: app.to_string(),
    };
    cfg.magento.docroot = None;
    // The demo app is HTTP: its one pool comes from upstream.url.
    cfg.pools.clear();
    let listen = cfg.server.listen.first().copied();
    if let Some(a) = listen {
        // This binary, as the shell would run it: after `cargo run` it is
        // not on PATH, so `magestack purge` would not be found.
        let me = std::env::current_exe()
            .map(|p| shell_word(&p.to_string_lossy()))
            .unwrap_or_else(|_| "magestack".to_owned());
        println!("magestack demo: edge on http://{a}/ in front of the built-in storefront (app on {app}).");
        println!("Try:");
        println!("  curl -i http://{a}/women/tops.html         # a category page: X-Magento-Cache-Debug MISS, then HIT");
        println!("  curl -si http://{app}/women/tops.html | grep -i x-magento-tags   # the page's tags, from the app itself:");
        println!("                                               #   the edge keeps them for PURGE and strips them from answers, as Magento's VCL does");
        println!("  curl -i --compressed http://{a}/           # gzip like nginx's Magento sample");
        println!("  curl -i -c jar -b jar http://{a}/customer/account/login   # log in: X-Magento-Vary cookie");
        println!("  curl -i -b jar http://{a}/checkout/cart/   # personalised, never cached");
        println!("  curl -i http://{a}/app/etc/env.php         # denied by Magento's nginx rules: 404 from the edge, never reaches the app");
        println!("  curl -i --http2-prior-knowledge http://{a}/ # h2c");
        println!("  curl -X PURGE -H 'X-Magento-Tags-Pattern: ((^|,)cat_c_3(,|$))' http://{a}/   # what Magento sends on a save");
        println!("  {me} purge --all --edge {a}   # \"Flush Magento Cache\"");
        println!("Stop with Ctrl-C.");
    }
    edge(
        cfg,
        log,
        None,
        Start {
            takeover: false,
            demo: true,
        },
    )
    .await
}

/// `word` quoted for a POSIX shell when it holds anything but path characters.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `SIGHUP` re-reads the configuration file (as `POST /admin/reload`).
async fn reload_on_sighup(hook: admin::ReloadHook) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("Cannot listen for SIGHUP; reload with POST /admin/reload.");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration.");
            // Blocking file I/O and validation: off the async workers.
            let hook = hook.clone();
            let _ = tokio::task::spawn_blocking(move || hook()).await;
        }
    }
    #[cfg(not(unix))]
    let _ = hook;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{edge_authority, token_strength};

    #[test]
    fn purge_accepts_the_edge_as_host_port_or_http_url() {
        for (given, want) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "127.0.0.1:8080"),
            ("http://edge.internal", "edge.internal:80"),
            ("edge.internal", "edge.internal:80"),
            ("http://[::1]:8080/", "[::1]:8080"),
        ] {
            assert_eq!(edge_authority(given).as_deref(), Ok(want), "{given}");
        }
        let https = edge_authority("https://shop.test")
            .err()
            .unwrap_or_default();
        assert!(https.contains("plain HTTP"), "{https}");
    }

    #[test]
    fn admin_token_strength() {
        assert!(token_strength("x").is_err());
        assert!(token_strength(&"a".repeat(80)).is_err());
        assert!(token_strength(&"ab".repeat(40)).is_err());
        // `openssl rand -hex 32` and `openssl rand -base64 32`.
        assert!(
            token_strength("3f9c1a7e5b2d8c4f0a6e1b9d7c3f5a2e8b4d0c6f1a9e7b3d5c2f8a4e0b6d1c9f")
                .is_ok()
        );
        assert!(token_strength("q8Zb1xk3T0mPz7Vn+Yw2Lr5Hc9Jd4Fs6Ge1Ua8Ki0Oo=").is_ok());
        // 63 hex digits: 252 bits.
        assert!(
            token_strength("3f9c1a7e5b2d8c4f0a6e1b9d7c3f5a2e8b4d0c6f1a9e7b3d5c2f8a4e0b6d1c9")
                .is_err()
        );
    }
}
