//! Loading from TOML text: every error with key path and line, the example
//! file as a golden test, command-line overrides, and schema guards.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use magestack_config::{
    file, is_dbproxy_file, load, load_dbproxy, load_file, load_str, CacheSettings, ConfigErrors,
    DbproxyOverrides, DbproxySettings, ErrorStatuses, FileSource, HealthCheckSettings, LogFormat,
    LogSettings, MageMode, MagentoSettings, NginxGeneration, Overrides, PathMatch, PoolSettings,
    RateLimitRule, ReadinessSettings, RouteRule, RoutingSettings, RunMapping, RunType,
    ServerSettings, TlsSettings, UpstreamSettings, UpstreamUrl, Validated, WafSettings,
    COMMAND_LINE,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines `magestack check` would print.
fn errors(src: &str) -> Vec<String> {
    match load_str(src, "edge.toml") {
        Ok(v) => panic!("expected errors, got {v:#?}"),
        Err(e) => lines(&e),
    }
}

fn lines(e: &ConfigErrors) -> Vec<String> {
    e.to_string().lines().map(str::to_owned).collect()
}

fn ok(src: &str) -> Validated {
    match load_str(src, "edge.toml") {
        Ok(v) => v,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

const DOCROOT: &str = "[magento]\ndocroot = \"/srv/pub\"\n";

#[test]
fn default_config_round_trips() {
    let default = file::Config::default();
    let text = toml::to_string(&default).unwrap();
    let back: file::Config = toml::from_str(&text).unwrap();
    assert_eq!(back, default);

    // The defaults are complete except for the docroot a FastCGI upstream needs.
    let mut with_docroot = file::Config::default();
    with_docroot.magento.docroot = Some("/srv/pub".into());
    let text = toml::to_string(&with_docroot).unwrap();
    assert_eq!(ok(&text), magestack_config::compile(with_docroot).unwrap());

    // An empty file is the defaults.
    assert_eq!(ok(DOCROOT), ok(&text));
}

#[test]
fn example_round_trips_through_the_file_types() {
    let src = std::fs::read_to_string(repo_root().join("examples/edge.toml")).unwrap();
    let parsed: file::Config = toml::from_str(&src).unwrap();
    let text = toml::to_string(&parsed).unwrap();
    let back: file::Config = toml::from_str(&text).unwrap();
    assert_eq!(back, parsed);
}

#[test]
fn typo_is_rejected_with_path_and_line() {
    let src = "[upstream]\nurl = \"http://127.0.0.1:9000\"\nconect_timeout_secs = 5\n";
    assert_eq!(
        errors(src),
        ["edge.toml:3: upstream.conect_timeout_secs: unknown field, expected one of `url`, `connect_timeout_secs`, `read_timeout_secs`, `keepalive_connections`, `max_connections`, `max_response_header_bytes`, `dns_servers`"]
    );
}

#[test]
fn unknown_key_and_wrong_type_are_both_reported() {
    let src = r#"# edge.toml
[server]
listen = ["127.0.0.1:8080"]

max_headers = "many"

[log]
level = "info"

[upstream]
url = "http://127.0.0.1:9000"
conect_timeout_secs = 5
"#;
    assert_eq!(
        errors(src),
        [
            "edge.toml:5: server.max_headers: invalid type: string \"many\", expected u32",
            "edge.toml:12: upstream.conect_timeout_secs: unknown field, expected one of `url`, `connect_timeout_secs`, `read_timeout_secs`, `keepalive_connections`, `max_connections`, `max_response_header_bytes`, `dns_servers`",
        ]
    );
    // Same errors in the other order of appearance.
    let src = "[upstream]\nconect_timeout_secs = 5\n[server]\nmax_headers = \"many\"\n";
    let got = errors(src);
    assert!(
        got[0].starts_with("edge.toml:2: upstream.conect_timeout_secs: unknown field"),
        "{got:#?}"
    );
    assert_eq!(
        got[1],
        "edge.toml:4: server.max_headers: invalid type: string \"many\", expected u32"
    );
    assert_eq!(got.len(), 3, "{got:#?}"); // plus the missing docroot
    assert_eq!(got[2], "edge.toml: magento.docroot: required when upstream.url is FastCGI: set it to Magento's pub/ directory (or pass --docroot)");
}

#[test]
fn nested_table_errors_have_full_paths() {
    let src =
        format!("{DOCROOT}[server.tls]\ncert_file = \"/etc/tls.crt\"\nkey = \"/etc/tls.key\"\n");
    assert_eq!(
        errors(&src),
        [
            "edge.toml:3: server.tls.key_file: required when [server.tls] is present",
            "edge.toml:5: server.tls.key: unknown field, expected `cert_file` or `key_file`",
        ]
    );
}

#[test]
fn many_kinds_of_schema_error_in_one_file() {
    let src = r#"
log = 5
[server]
listen = ["127.0.0.1:8080", 8081]
max_body_bytes = -1
h2c = "yes"
tls = { cert_file = "/c", key_fil = "/k" }

[server.extra]
a = 1

[[magento.run]]
host = "de.example.com"
code = "de"

[[magento.run]]
host = "fr.example.com"
cod = "fr"

[upstream]
url = 9000
read_timeout_secs = 1.5
keepalive_connections = 32
"#;
    assert_eq!(
        errors(src),
        [
            "edge.toml:2: log: invalid type: integer `5`, expected struct LogConfig",
            "edge.toml:4: server.listen[1]: invalid type: integer `8081`, expected a string",
            "edge.toml:5: server.max_body_bytes: invalid value: integer `-1`, expected u64",
            "edge.toml:6: server.h2c: invalid type: string \"yes\", expected a boolean",
            "edge.toml:7: server.tls.key_fil: unknown field, expected `cert_file` or `key_file`",
            "edge.toml:9: server.extra: unknown field, expected one of `listen`, `admin_listen`, `purge_listen`, `server_name`, `trusted_proxies`, `max_header_bytes`, `max_headers`, `max_body_bytes`, `header_read_timeout_secs`, `body_read_timeout_secs`, `idle_timeout_secs`, `drain_timeout_secs`, `h2c`, `reuse_port`, `max_connections_per_ip`, `max_client_connections`, `body_buffer_bytes`, `body_memory_bytes`, `body_spool_dir`, `behind_load_balancer`, `tls`",
            // The missing docroot is located at the first line of [magento];
            // the entry with the typo'd key lacks its code.
            "edge.toml:12: magento.docroot: required when upstream.url is FastCGI: set it to Magento's pub/ directory (or pass --docroot)",
            "edge.toml:16: magento.run[1].code: must not be empty",
            "edge.toml:18: magento.run[1].cod: unknown field, expected one of `host`, `code`, `type`",
            "edge.toml:21: upstream.url: invalid type: integer `9000`, expected a string",
            "edge.toml:22: upstream.read_timeout_secs: invalid type: floating point `1.5`, expected u64",
        ]
    );
}

#[test]
fn table_of_wrong_type_is_reported_once() {
    let src = format!("{DOCROOT}[log.format]\nx = 1\ny = 2\n");
    assert_eq!(
        errors(&src),
        ["edge.toml:3: log.format: invalid type: map, expected a string"]
    );
}

#[test]
fn syntax_error_is_reported_once_with_its_line() {
    let src = "[server]\nlisten = [\"127.0.0.1:8080\"]\nmax_headers = = 3\n[log\nlevel = 1\n";
    let got = errors(src);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("edge.toml:3: invalid TOML: "),
        "{got:#?}"
    );

    let got = errors("a = 1\na = 2\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("edge.toml:2: invalid TOML: duplicate key"),
        "{got:#?}"
    );
}

#[test]
fn semantic_errors_have_paths_and_lines() {
    let src = r#"[server]
listen = []
admin_listen = "127.0.0.1:9180"
max_headers = 0

[magento]
docroot = "relative/pub"
nginx_generation = "g1"

[[magento.run]]
host = "de.example.com"
code = "de"
type = "shop"

[upstream]
url = "https://php:443"
"#;
    assert_eq!(
        errors(src),
        [
            "edge.toml:2: server.listen: must not be empty",
            "edge.toml:4: server.max_headers: must be greater than 0",
            "edge.toml:7: magento.docroot: must be an absolute path (Magento's pub/ directory), got \"relative/pub\"",
            "edge.toml:8: magento.nginx_generation: unknown value \"g1\", expected one of \"g3\", \"g2\"",
            "edge.toml:13: magento.run[0].type: unknown value \"shop\", expected one of \"store\", \"website\"",
            "edge.toml:16: upstream.url: https upstreams are not supported yet; use http:// (e.g. on a private network or loopback) or fcgi://",
        ]
    );
    // Conflicting listeners; the missing key is located at its table.
    let src = "[server]\nlisten = [\"0.0.0.0:8080\"]\nadmin_listen = \"127.0.0.1:8080\"\n[[magento.run]]\ncode = \"de\"\n[upstream]\nurl = \"http://php:9000\"\n";
    assert_eq!(
        errors(src),
        [
            "edge.toml:3: server.admin_listen: conflicts with server.listen[0] (0.0.0.0:8080)",
            "edge.toml:4: magento.run[0].host: must not be empty",
        ]
    );
}

#[test]
fn bad_upstream_urls() {
    let cases = [
        ("fcgi://127.0.0.1", "missing port; FastCGI has no default port, e.g. fcgi://127.0.0.1:9000"),
        ("127.0.0.1:9000", "missing scheme in \"127.0.0.1:9000\"; expected fcgi://host:port, fcgi+unix:///path/to.sock or http://host:port"),
        ("unix:///run/php.sock", "unsupported scheme \"unix\"; expected fcgi://host:port, fcgi+unix:///path/to.sock or http://host:port"),
        ("fcgi+unix://run/php.sock", "invalid Unix socket path \"run/php.sock\": expected an absolute path, e.g. fcgi+unix:///run/php-fpm.sock"),
        ("http://php:9000/index.php", "unexpected \"/index.php\" after host:port; upstream URLs have no path, query or fragment"),
        ("fcgi://php:70000", "invalid port \"70000\": expected a number from 1 to 65535"),
    ];
    for (url, message) in cases {
        let src = format!("{DOCROOT}\n[upstream]\nurl = \"{url}\"\n");
        assert_eq!(
            errors(&src),
            [format!("edge.toml:5: upstream.url: {message}")],
            "{url}"
        );
    }
}

#[test]
fn golden_example_file() {
    let path = repo_root().join("examples/edge.toml");
    let got = match load_file(&path) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let want = Validated {
        server: ServerSettings {
            listen: vec![addr("0.0.0.0:8080"), addr("[::]:8081")],
            admin_listen: Some(addr("127.0.0.1:9180")),
            purge_listen: Some(addr("0.0.0.0:8088")),
            server_name: "shop.example.com".into(),
            trusted_proxies: vec![
                "10.0.0.0/8".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
                "192.168.1.10/32".parse().unwrap(),
            ],
            max_header_bytes: 65536,
            max_headers: 100,
            max_body_bytes: 67_108_864,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            drain_timeout: Duration::from_secs(30),
            h2c: true,
            reuse_port: true,
            max_connections_per_ip: 512,
            max_client_connections: 0,
            body_buffer_bytes: 1024 * 1024,
            body_memory_bytes: 64 * 1024 * 1024,
            body_spool_dir: Some("/var/tmp/magestack".into()),
            behind_load_balancer: true,
            tls: Some(TlsSettings {
                cert_file: "/etc/magestack/tls.crt".into(),
                key_file: "/etc/magestack/tls.key".into(),
            }),
        },
        log: LogSettings {
            format: LogFormat::Json,
            level: "info,magestack_edge=debug".into(),
            access_log: true,
        },
        magento: MagentoSettings {
            docroot: Some("/var/www/magento/pub".into()),
            nginx_generation: NginxGeneration::G3,
            gzip: true,
            gzip_min_length: 1100,
            php_value: Some("memory_limit=756M\nmax_execution_time=18000".into()),
            php_flag: Some("session.auto_start=off\nsuhosin.session.cryptua=off".into()),
            mage_mode: Some(MageMode::Production),
            run: vec![
                RunMapping {
                    host: "de.example.com".into(),
                    code: "de".into(),
                    run_type: RunType::Store,
                },
                RunMapping {
                    host: "b2b.example.com".into(),
                    code: "b2b".into(),
                    run_type: RunType::Website,
                },
            ],
            open_file_cache_entries: 10_000,
            open_file_cache_bytes: 64 * 1024 * 1024,
            open_file_cache_valid: Duration::from_secs(5),
            release: None,
        },
        upstream: UpstreamSettings {
            url: UpstreamUrl::FastCgiTcp {
                host: "127.0.0.1".into(),
                port: 9000,
            },
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(600),
            keepalive_connections: 32,
            max_connections: 16,
            max_response_header_bytes: 32768,
            dns_servers: vec![],
        },
        cache: CacheSettings {
            enabled: true,
            size_bytes: 1 << 30,
            purge_acl: vec![
                "127.0.0.1/32".parse().unwrap(),
                "::1/128".parse().unwrap(),
                "172.16.5.0/24".parse().unwrap(),
                "fd12:3456::7/128".parse().unwrap(),
            ],
            grace_period: Duration::from_secs(300),
            default_ttl: Duration::from_secs(120),
            ssl_offloaded_header: Some("X-Forwarded-Proto".into()),
            error_statuses: ErrorStatuses::Cache404,
            soft_purge: false,
            max_object_bytes: 16 << 20,
            esi: true,
            brotli: true,
            tracking_params: vec![],
            health_check: HealthCheckSettings {
                path: "/health_check.php".into(),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                window: 10,
                threshold: 5,
            },
        },
        pools: vec![
            PoolSettings {
                name: "frontend".into(),
                endpoints: vec![
                    UpstreamUrl::FastCgiTcp {
                        host: "127.0.0.1".into(),
                        port: 9000,
                    },
                    UpstreamUrl::FastCgiUnix("/run/php/frontend-2.sock".into()),
                ],
                max_inflight: 16,
                queue_size: 256,
                queue_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(600),
                connect_timeout: Duration::from_secs(5),
                status_path: Some("/status".into()),
                status_endpoints: vec![
                    UpstreamUrl::FastCgiTcp {
                        host: "127.0.0.1".into(),
                        port: 9100,
                    },
                    UpstreamUrl::FastCgiTcp {
                        host: "127.0.0.1".into(),
                        port: 9101,
                    },
                ],
                check_interval: Duration::from_secs(5),
                unhealthy_after: 3,
                resolve_interval: Duration::from_secs(5),
            },
            PoolSettings {
                name: "admin".into(),
                endpoints: vec![UpstreamUrl::FastCgiTcp {
                    host: "127.0.0.1".into(),
                    port: 9001,
                }],
                max_inflight: 4,
                queue_size: 16,
                queue_timeout: Duration::from_secs(30),
                request_timeout: Duration::from_secs(3600),
                connect_timeout: Duration::from_secs(5),
                status_path: None,
                status_endpoints: vec![],
                check_interval: Duration::from_secs(5),
                unhealthy_after: 3,
                resolve_interval: Duration::from_secs(5),
            },
        ],
        routing: RoutingSettings {
            admin_front_name: "admin".into(),
            rules: vec![
                RouteRule {
                    matcher: PathMatch::Prefix("/feeds/".into()),
                    pool: "admin".into(),
                },
                RouteRule {
                    matcher: PathMatch::Regex("^/[a-z]{2}/export/".into()),
                    pool: "admin".into(),
                },
            ],
        },
        readiness: ReadinessSettings {
            health_script: Some("magestack-health.php".into()),
            opcache_min_ppm: 800_000,
            warmup_urls: vec!["/".into(), "/women/tops.html".into()],
            warmup_sitemap: Some("sitemap.xml".into()),
        },
        waf: WafSettings {
            rate_limits: true,
            rate_limit_max_keys: 200_000,
            ipv6_prefix_len: 56,
            rate_limit_rules: vec![RateLimitRule {
                name: "newsletter".into(),
                matcher: PathMatch::Prefix("/newsletter/subscriber/new".into()),
                methods: vec!["POST".into()],
                limit: 3,
                period: Duration::from_secs(60),
            }],
            allow: vec!["10.20.0.0/16".parse().unwrap()],
            deny: vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8:bad::/48".parse().unwrap(),
            ],
            deny_files: vec!["/etc/magestack/deny.txt".into()],
            admin_allow: vec!["10.20.30.0/24".parse().unwrap()],
            close_default_admin: true,
            injection: magestack_config::InjectionMode::Block,
            inspect_body_bytes: 1_048_576,
            injection_exclusions: vec![magestack_config::InjectionExclusion {
                prefix: "/rest/V1/my-vendor/snippets".into(),
                fields: vec!["snippet*".into()],
                locations: vec!["body".into()],
                attacks: vec!["xss".into()],
            }],
            tarpit: Duration::ZERO,
        },
        cluster: magestack_config::ClusterSettings {
            redis_url: Some("redis://redis-cache.magento.svc:6379".into()),
            redis_ca_file: None,
            channel: "magestack:purge".into(),
            l2: true,
        },
        dbproxy: default_dbproxy(),
        rollout: Some(magestack_config::RolloutSettings {
            pool: "frontend".into(),
            canary_endpoints: vec![UpstreamUrl::FastCgiTcp {
                host: "127.0.0.1".into(),
                port: 9001,
            }],
            canary_docroot: Some("/srv/release-b/pub".into()),
            canary_release: None,
            plan: magestack_rollout::Plan::parse(&["10%/5m", "50%/5m", "100%"]).unwrap(),
            analysis_interval: Duration::from_secs(10),
            min_requests: 200,
            max_error_ppm: 10_000,
            max_p95_milli: 1500,
            checkout_sticky: Duration::from_secs(1800),
            state_file: Some("/var/lib/magestack/rollout.json".into()),
        }),
        media: magestack_config::MediaSettings {
            source: FileSource::S3 {
                bucket: "magento-media".into(),
                prefix: "media".into(),
            },
            cache_dir: "/var/cache/magestack/media".into(),
            cache_size_bytes: 10 << 30,
            resize: true,
            resize_max_width: 4096,
            resize_max_height: 4096,
            resize_sizes: vec![(265, 265), (700, 700)],
            resize_max_source_bytes: 32 << 20,
            resize_max_source_pixels: 50_000_000,
            resize_workers: 0,
            resize_queue: 64,
            webp: true,
            retry_after: Duration::from_secs(5),
            store_timeout: Duration::from_secs(10),
        },
        static_files: magestack_config::StaticSettings {
            source: FileSource::S3 {
                bucket: "magento-static".into(),
                prefix: "static".into(),
            },
            deployed_version: None,
        },
        object_store: magestack_config::ObjectStoreSettings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-1".into()),
        },
    };
    assert_eq!(got, want);
}

/// Issue 18: `[rollout]` errors name their key and line.
#[test]
fn r18_rollout_errors_name_key_and_line() {
    let src = format!(
        "{DOCROOT}[rollout]\ncanary_endpoints = [\n  \"fcgi://127.0.0.1:9001\",\n  \"gopher://x\",\n]\nsteps = [\"10%/5m\", \"50%/1m\", \"120%\"]\nmax_p95_ratio = 0.5\npool = \"nope\"\n"
    );
    assert_eq!(
        errors(&src),
        [
            "edge.toml:6: rollout.canary_endpoints[1]: unsupported scheme \"gopher\"; expected fcgi://host:port, fcgi+unix:///path/to.sock or http://host:port",
            "edge.toml:8: rollout.steps[2]: \"120%\": weight 120% is outside 0-100",
            "edge.toml:9: rollout.max_p95_ratio: 0.5 must be between 1 and 1000 (canary p95 / stable p95)",
            "edge.toml:10: rollout.pool: \"nope\" is not a configured pool (pools: frontend)",
        ]
    );
    let src = format!("{DOCROOT}[rollout]\nsteps = [\"10%/5m\", \"50%/1m\"]\n");
    assert_eq!(
        errors(&src),
        ["edge.toml:4: rollout.steps[1]: the last step must be 100% (promotion follows it), got 50%"]
    );
}

#[test]
fn flags_alone_make_a_valid_config() {
    let overrides = Overrides {
        listen: vec!["127.0.0.1:8080".parse().unwrap()],
        upstream: Some("http://127.0.0.1:9000".into()),
        ..Overrides::default()
    };
    let v = load(None, &overrides).unwrap();
    assert_eq!(
        v.upstream.url,
        UpstreamUrl::Http {
            authority: "127.0.0.1:9000".into()
        }
    );
    assert_eq!(v.magento.docroot, None);

    // FastCGI without --docroot: the error names the flag, attributed to the command line.
    let overrides = Overrides {
        upstream: Some("fcgi://127.0.0.1:9000".into()),
        ..Overrides::default()
    };
    let e = load(None, &overrides).unwrap_err();
    assert_eq!(
        lines(&e),
        [format!("{COMMAND_LINE}: magento.docroot: required when upstream.url is FastCGI: set it to Magento's pub/ directory (or pass --docroot)")]
    );

    // A relative --docroot is made absolute against the working directory.
    let overrides = Overrides {
        upstream: Some("fcgi+unix:///run/php-fpm.sock".into()),
        docroot: Some("pub".into()),
        ..Overrides::default()
    };
    let v = load(None, &overrides).unwrap();
    assert_eq!(
        v.magento.docroot,
        Some(std::env::current_dir().unwrap().join("pub"))
    );
}

#[test]
fn command_line_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:1111\"]\nadmin_listen = \"127.0.0.1:2222\"\nmax_headers = 50\n\
         [log]\nformat = \"json\"\n[magento]\ndocroot = \"/file/pub\"\n[upstream]\nurl = \"fcgi://file:9000\"\n",
    )
    .unwrap();

    // File only: file values, defaults elsewhere.
    let v = load(Some(&path), &Overrides::default()).unwrap();
    assert_eq!(
        v.server.listen,
        vec!["127.0.0.1:1111".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(v.server.max_headers, 50);
    assert_eq!(v.server.max_header_bytes, 65536);
    assert_eq!(v.log.format, LogFormat::Json);
    assert_eq!(v, load_file(&path).unwrap());

    // Flags win key by key; keys without a flag keep the file's value.
    let overrides = Overrides {
        listen: vec![
            "127.0.0.1:3333".parse().unwrap(),
            "127.0.0.1:4444".parse().unwrap(),
        ],
        upstream: Some("http://flag:8000".into()),
        docroot: Some("/flag/pub".into()),
        admin_listen: Some("127.0.0.1:5555".parse().unwrap()),
        log_format: Some(LogFormat::Text),
        cache: Some(false),
        max_connections: None,
        redis: Some("redis://10.0.0.9:6380".into()),
    };
    let v = load(Some(&path), &overrides).unwrap();
    assert!(!v.cache.enabled);
    assert_eq!(
        v.cluster.redis_url.as_deref(),
        Some("redis://10.0.0.9:6380")
    );
    assert_eq!(v.server.listen, overrides.listen);
    assert_eq!(v.server.admin_listen, overrides.admin_listen);
    assert_eq!(v.server.max_headers, 50);
    assert_eq!(v.log.format, LogFormat::Text);
    assert_eq!(v.magento.docroot, Some(PathBuf::from("/flag/pub")));
    assert_eq!(
        v.upstream.url,
        UpstreamUrl::Http {
            authority: "flag:8000".into()
        }
    );

    // An error caused by a flag is attributed to the command line, one caused
    // by the file to its line.
    let overrides = Overrides {
        listen: vec!["127.0.0.1:2222".parse().unwrap()],
        upstream: Some("https://flag".into()),
        ..Overrides::default()
    };
    let e = load(Some(&path), &overrides).unwrap_err();
    let origin = path.display().to_string();
    assert_eq!(
        lines(&e),
        [
            format!("{origin}:3: server.admin_listen: conflicts with server.listen[0] (127.0.0.1:2222)"),
            format!("{COMMAND_LINE}: upstream.url: https upstreams are not supported yet; use http:// (e.g. on a private network or loopback) or fcgi://"),
        ]
    );
}

#[test]
fn unreadable_file_is_one_error() {
    let e = load_file("/nonexistent/edge.toml").unwrap_err();
    let got = lines(&e);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("/nonexistent/edge.toml: cannot read configuration: "),
        "{got:#?}"
    );
}

/// Every key path of the schema, from a default config with the optional
/// parts filled in.
fn schema_keys() -> Vec<String> {
    let mut c = file::Config::default();
    c.server.admin_listen = Some(String::new());
    c.server.purge_listen = Some(String::new());
    c.server.tls = Some(file::TlsConfig::default());
    c.magento.docroot = Some(PathBuf::new());
    c.magento.run = vec![file::RunConfig::default()];
    c.pools.insert("<name>".into(), file::PoolConfig::default());
    c.routing.rules = vec![file::RouteRuleConfig::default()];
    c.waf.rate_limit_rules = vec![file::RateLimitRuleConfig::default()];
    c.waf.injection_exclusions = vec![file::InjectionExclusionConfig::default()];
    c.dbproxy.admin_listen = Some(String::new());
    c.rollout = Some(file::RolloutConfig {
        canary_docroot: Some(PathBuf::new()),
        state_file: Some(PathBuf::new()),
        ..file::RolloutConfig::default()
    });
    let text = toml::to_string(&c).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let mut out = Vec::new();
    fn walk(prefix: &str, table: &dyn toml_edit::TableLike, out: &mut Vec<String>) {
        for (k, item) in table.iter() {
            let path = if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            };
            if let Some(t) = item.as_table_like() {
                walk(&path, t, out);
            } else if let Some(a) = item.as_array_of_tables() {
                for t in a.iter() {
                    walk(&format!("{path}[]"), t, out);
                }
            } else {
                out.push(path);
            }
        }
    }
    walk("", doc.as_table(), &mut out);
    out
}

#[test]
fn reference_and_example_mention_every_key() {
    let keys = schema_keys();
    assert_eq!(keys.len(), 158, "{keys:#?}");
    let reference = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let edge_example = std::fs::read_to_string(repo_root().join("examples/edge.toml")).unwrap();
    let dbproxy_example =
        std::fs::read_to_string(repo_root().join("examples/dbproxy.toml")).unwrap();
    for key in keys {
        // The dbproxy's keys are shown in its own example.
        let example = if key.starts_with("dbproxy.") {
            &dbproxy_example
        } else {
            &edge_example
        };
        assert!(
            reference.contains(&format!("`{key}`")),
            "docs/configuration.md lacks `{key}`"
        );
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            example
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{leaf} ="))),
            "the example lacks {key}"
        );
    }
}

#[test]
fn errors_inside_inline_tables_dotted_keys_and_multiline_arrays() {
    let src = "[server]\r\nlisten = [\r\n  \"127.0.0.1:8080\",\r\n  \"ünïcödé\",\r\n  8081,\r\n]\r\nserver_name = \"shop\" # ✓\r\ntls.cert_file = 1\r\n\
               [magento]\r\ndocroot = \"/srv/pub\"\r\nrun = [{ host = \"a.example\", code = \"a\" }, { host = \"b.example\", cod = \"b\" }]\r\n";
    assert_eq!(
        errors(src),
        [
            "edge.toml:5: server.listen[2]: invalid type: integer `8081`, expected a string",
            "edge.toml:8: server.tls.cert_file: invalid type: integer `1`, expected path string",
            "edge.toml:11: magento.run[1].cod: unknown field, expected one of `host`, `code`, `type`",
        ]
    );
    // Once the types are right, the semantic error in the array is located
    // at its element.
    let src = "[server]\nlisten = [\n  \"127.0.0.1:8080\",\n  \"ünïcödé\",\n]\n[magento]\ndocroot = \"/srv/pub\"\n";
    assert_eq!(
        errors(src),
        ["edge.toml:4: server.listen[1]: invalid socket address \"ünïcödé\": expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (host names are not accepted)"]
    );
}

#[test]
fn every_error_of_a_long_file_is_reported() {
    // 120 unknown keys: more than the 100 rounds the loader allows.
    let mut src = String::from("[server]\n");
    for i in 0..120 {
        src.push_str(&format!("unknown_{i} = {i}\n"));
    }
    let got = errors(&src);
    assert_eq!(got.len(), 101, "{got:#?}");
    for line in &got[..100] {
        let (_, rest) = line.split_once(':').unwrap();
        let (n, rest) = rest.split_once(':').unwrap();
        let n: usize = n.parse().unwrap();
        assert_eq!(rest, format!(" server.unknown_{}: unknown field, expected one of `listen`, `admin_listen`, `purge_listen`, `server_name`, `trusted_proxies`, `max_header_bytes`, `max_headers`, `max_body_bytes`, `header_read_timeout_secs`, `body_read_timeout_secs`, `idle_timeout_secs`, `drain_timeout_secs`, `h2c`, `reuse_port`, `max_connections_per_ip`, `max_client_connections`, `body_buffer_bytes`, `body_memory_bytes`, `body_spool_dir`, `behind_load_balancer`, `tls`", n - 2));
    }
    assert_eq!(got[100], "edge.toml: too many errors; stopped after 100");
}

/// `[cache]` with `body` appended, after a valid docroot (line 1-2) and the
/// header (line 3): the first key of `body` is on line 4.
fn cache(body: &str) -> String {
    format!("{DOCROOT}[cache]\n{body}")
}

#[test]
fn cache_defaults_are_magentos_varnish() {
    let v = ok(DOCROOT);
    assert_eq!(
        v.cache,
        CacheSettings {
            enabled: true,
            size_bytes: 256 << 20,
            purge_acl: vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()],
            grace_period: Duration::from_secs(300),
            default_ttl: Duration::from_secs(120),
            ssl_offloaded_header: Some("X-Forwarded-Proto".into()),
            error_statuses: ErrorStatuses::Cache404,
            soft_purge: false,
            max_object_bytes: 16 << 20,
            esi: true,
            brotli: true,
            tracking_params: vec![],
            health_check: HealthCheckSettings {
                path: "/health_check.php".into(),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                window: 10,
                threshold: 5,
            },
        }
    );
    // --no-cache turns it off without a file.
    let overrides = Overrides {
        upstream: Some("http://127.0.0.1:9000".into()),
        cache: Some(false),
        ..Overrides::default()
    };
    assert!(!load(None, &overrides).unwrap().cache.enabled);
}

#[test]
fn cache_sizes_with_units() {
    for (size, bytes) in [
        ("\"512MiB\"", 512u64 << 20),
        ("1048576", 1 << 20),
        ("\"1g\"", 1 << 30),
        ("\"256M\"", 256 << 20),
        ("\"2G\"", 2 << 30),
        ("\"2048KiB\"", 2 << 20),
        ("\"2mb\"", 2_000_000),
        ("\"1 TiB\"", 1 << 40),
    ] {
        let v = ok(&cache(&format!(
            "size = {size}\nmax_object_bytes = 1048576\n"
        )));
        assert_eq!(v.cache.size_bytes, bytes, "{size}");
    }
    assert_eq!(
        errors(&cache("size = \"12XB\"\n")),
        ["edge.toml:4: cache.size: invalid size \"12XB\": expected a whole number of bytes, optionally with a unit: B, KiB, MiB, GiB, TiB (or K, M, G, T: also binary) or KB, MB, GB, TB (decimal), e.g. \"512MiB\""]
    );
    assert_eq!(
        errors(&cache(
            "esi = true\nsize = \"100KiB\"\nmax_object_bytes = 1024\n"
        )),
        ["edge.toml:5: cache.size: must be at least 1MiB (1048576 bytes), got 102400"]
    );
    // Wrong types are schema errors, also at the line.
    assert_eq!(
        errors(&cache("size = -5\n")),
        ["edge.toml:4: cache.size: invalid value: integer `-5`, expected a number of bytes or a size string like \"512MiB\""]
    );
    assert_eq!(
        errors(&cache("size = true\n")),
        ["edge.toml:4: cache.size: invalid type: boolean `true`, expected a number of bytes or a size string like \"512MiB\""]
    );
    // The default max_object_bytes (16 MiB) does not fit a smaller store.
    assert_eq!(
        errors(&cache("size = \"8MiB\"\n")),
        ["edge.toml:3: cache.max_object_bytes: must not exceed cache.size (8388608 bytes), got 16777216: no object can be larger than the whole store"]
    );
}

#[test]
fn cache_purge_acl_errors_name_the_index_and_line() {
    let src = cache(
        "purge_acl = [\n  \"127.0.0.1\",\n  \"::1\",\n  \"10.0.0.0/33\",\n  \"not-an-ip\",\n]\n",
    );
    assert_eq!(
        errors(&src),
        [
            "edge.toml:7: cache.purge_acl[2]: invalid CIDR \"10.0.0.0/33\": expected an address block like 10.0.0.0/8 or fd00::/8, or a single IP address",
            "edge.toml:8: cache.purge_acl[3]: invalid CIDR \"not-an-ip\": expected an address block like 10.0.0.0/8 or fd00::/8, or a single IP address",
        ]
    );
    // Plain IPs are single hosts; host bits of a block are cleared; [] is nobody.
    let v = ok(&cache(
        "purge_acl = [\"192.168.1.20\", \"fd00::1\", \"10.1.2.3/8\"]\n",
    ));
    assert_eq!(
        v.cache.purge_acl,
        vec![
            "192.168.1.20/32".parse::<ipnet::IpNet>().unwrap(),
            "fd00::1/128".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]
    );
    assert!(ok(&cache("purge_acl = []\n")).cache.purge_acl.is_empty());
}

#[test]
fn cache_health_check_threshold_must_fit_the_window() {
    let src = format!("{DOCROOT}[cache.health_check]\nwindow = 10\nthreshold = 11\n");
    assert_eq!(
        errors(&src),
        ["edge.toml:5: cache.health_check.threshold: must not exceed cache.health_check.window (10), got 11"]
    );
    let src = format!(
        "{DOCROOT}[cache.health_check]\npath = \"health_check.php\"\ninterval_secs = 0\nwindow = 65\nthreshold = 0\n"
    );
    assert_eq!(
        errors(&src),
        [
            "edge.toml:4: cache.health_check.path: \"health_check.php\" is not a request path: it must start with / and contain no whitespace, e.g. \"/health_check.php\"",
            "edge.toml:5: cache.health_check.interval_secs: must be greater than 0",
            "edge.toml:6: cache.health_check.window: must be at most 64 (as in Varnish), got 65",
            "edge.toml:7: cache.health_check.threshold: must be greater than 0",
        ]
    );
    let src = format!("{DOCROOT}[cache.health_check]\nwindow = 1\nthreshold = 1\n");
    assert_eq!(ok(&src).cache.health_check.window, 1);
}

#[test]
fn cache_words_headers_and_tracking_params() {
    let v = ok(&cache(
        "error_statuses = \"never\"\nssl_offloaded_header = \"\"\ntracking_params = [\"utm_[a-z]+\", \"gclid\"]\n",
    ));
    assert_eq!(v.cache.error_statuses, ErrorStatuses::Never);
    assert_eq!(v.cache.ssl_offloaded_header, None);
    assert_eq!(v.cache.tracking_params, ["utm_[a-z]+", "gclid"]);

    let src = cache(
        "error_statuses = \"404\"\nssl_offloaded_header = \"X Forwarded Proto\"\ntracking_params = [\n  \"gclid\",\n  \"utm_(\",\n  \"\",\n]\nmax_object_bytes = 0\n",
    );
    assert_eq!(
        errors(&src),
        [
            "edge.toml:4: cache.error_statuses: unknown value \"404\", expected one of \"cache-404\", \"never\"",
            "edge.toml:5: cache.ssl_offloaded_header: \"X Forwarded Proto\" is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only), e.g. \"X-Forwarded-Proto\"; \"\" for none",
            "edge.toml:8: cache.tracking_params[1]: \"utm_(\" is not a valid regex fragment: unclosed group",
            "edge.toml:9: cache.tracking_params[2]: must not be empty",
            "edge.toml:11: cache.max_object_bytes: must be greater than 0",
        ]
    );
    // A typo'd key in [cache] lists the keys.
    assert_eq!(
        errors(&cache("grace_secs = 300\n")),
        ["edge.toml:4: cache.grace_secs: unknown field, expected one of `enabled`, `size`, `purge_acl`, `grace_period_secs`, `default_ttl_secs`, `ssl_offloaded_header`, `error_statuses`, `soft_purge`, `max_object_bytes`, `esi`, `brotli`, `tracking_params`, `health_check`"]
    );
}

#[test]
fn pools_default_from_upstream_and_admin_is_optional() {
    let v = ok(&format!(
        "{DOCROOT}[upstream]\nurl = \"fcgi://127.0.0.1:9000\"\nmax_connections = 8\n"
    ));
    assert_eq!(v.pools.len(), 1);
    let f = &v.pools[0];
    assert_eq!(
        (f.name.as_str(), f.max_inflight, f.queue_timeout),
        ("frontend", 8, Duration::from_secs(5))
    );
    assert_eq!(v.routing.admin_front_name, "admin");
    // An admin pool alone: frontend still comes from [upstream], first.
    let v = ok(&format!(
        "{DOCROOT}[upstream]\nurl = \"fcgi://127.0.0.1:9000\"\n[pools.admin]\nmax_inflight = 2\n"
    ));
    let names: Vec<_> = v.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["frontend", "admin"]);
    assert_eq!(v.pools[1].endpoints, v.pools[0].endpoints);
    // An HTTP upstream's pools are HTTP.
    let v = ok(&format!(
        "{DOCROOT}[upstream]\nurl = \"http://127.0.0.1:9000\"\n[pools.admin]\nendpoints = [\"http://127.0.0.1:9001\"]\n"
    ));
    assert_eq!(v.pools.len(), 2);
    assert!(v
        .pools
        .iter()
        .all(|p| p.endpoints.iter().all(|e| !e.is_fastcgi())));
}

#[test]
fn pool_and_routing_errors_name_key_and_line() {
    let src = "[upstream]
url = \"fcgi://127.0.0.1:9000\"

[pools.Admin]
max_inflight = 2

[pools.admin]
endpoints = [\"http://127.0.0.1:80\"]
queue_timeout_secs = 0
status_path = \"status\"
status_endpoints = [\"fcgi://127.0.0.1:1\", \"fcgi://127.0.0.1:2\"]
unhealthy_after = 0

[routing]
admin_front_name = \"a/b\"

[[waf.rate_limit_rules]]
name = \"Bad Name\"
prefix = \"/x\"
methods = [\"P0ST\"]
limit = 0

[readiness]
health_script = \"../x.php\"
opcache_min_ratio = 1.5
warmup_urls = [\"nope\"]

[[routing.rules]]
prefix = \"/x\"
regex = \"^/y\"
pool = \"admin\"

[[routing.rules]]
regex = \"(\"
pool = \"admin\"

[[routing.rules]]
prefix = \"/z\"
pool = \"cron\"
";
    let e = errors(&format!("{DOCROOT}{src}"));
    let want = [
        "pools.Admin",
        "pools.admin.endpoints[0]",
        "pools.admin.queue_timeout_secs",
        "pools.admin.status_path",
        "pools.admin.status_endpoints",
        "pools.admin.unhealthy_after",
        "routing.admin_front_name",
        "waf.rate_limit_rules[0].name",
        "waf.rate_limit_rules[0].methods[0]",
        "waf.rate_limit_rules[0].limit",
        "readiness.health_script",
        "readiness.opcache_min_ratio",
        "readiness.warmup_urls[0]",
        "routing.rules[0]",
        "routing.rules[1].regex",
        "routing.rules[2].pool",
    ];
    for w in want {
        assert!(
            e.iter().any(|l| l.contains(&format!("{w}:"))),
            "no error for {w} in {e:#?}"
        );
    }
    assert_eq!(e.len(), want.len(), "{e:#?}");
    // An HTTP upstream's pools cannot have FastCGI endpoints or FPM status.
    let e = errors(&format!(
        "{DOCROOT}[upstream]\nurl = \"http://127.0.0.1:80\"\n[pools.frontend]\nendpoints = [\"fcgi://127.0.0.1:9000\"]\nstatus_path = \"/status\"\n"
    ));
    assert!(
        e.iter().any(
            |l| l.contains("pools.frontend.endpoints[0]") && l.contains("not an HTTP endpoint")
        ),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|l| l.contains("pools.frontend.status_path")),
        "{e:#?}"
    );
}

#[test]
fn waf_injection_errors_name_their_keys_and_lines() {
    let src = r#"[upstream]
url = "http://127.0.0.1:9000"

[waf]
injection = "blok"
tarpit_ms = 20000

[[waf.injection_exclusions]]
fields = []
locations = ["bodyy"]
attacks = ["sqli", "rce"]
"#;
    assert_eq!(
        errors(src),
        [
            "edge.toml:5: waf.injection: unknown variant `blok`, expected one of `off`, `detect`, `block`",
            "edge.toml:6: waf.tarpit_ms: at most 10000 (each tarpitted request holds a connection)",
            "edge.toml:9: waf.injection_exclusions[0].fields: list field names, `prefix*` or `*`",
            "edge.toml:10: waf.injection_exclusions[0].locations[0]: \"bodyy\" is not one of path, query, cookie, body, header",
            "edge.toml:11: waf.injection_exclusions[0].attacks[1]: \"rce\" is not one of sqli, xss",
        ]
    );
    let v = ok("[upstream]\nurl = \"http://127.0.0.1:9000\"\n[waf]\ninjection = \"detect\"\n");
    assert_eq!(v.waf.injection, magestack_config::InjectionMode::Detect);
}

#[test]
fn cluster_redis_url_is_checked_and_never_holds_a_password() {
    let base = "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[cluster]\n";
    assert_eq!(
        errors(&format!("{base}redis_url = \"10.0.0.9:6379\"\n")),
        ["edge.toml:4: cluster.redis_url: \"10.0.0.9:6379\" is not a redis:// or rediss:// URL (e.g. redis://127.0.0.1:6379, rediss://master.cache.example.com:6379)"]
    );
    assert_eq!(
        errors(&format!("{base}redis_url = \"redis://:hunter2@10.0.0.9:6379\"\n")),
        ["edge.toml:4: cluster.redis_url: no credentials in the URL: set MAGESTACK_REDIS_PASSWORD or MAGESTACK_REDIS_PASSWORD_FILE"]
    );
    let v = ok(&format!("{base}redis_url = \"redis://10.0.0.9:6379/2\"\n"));
    assert_eq!(
        v.cluster.redis_url.as_deref(),
        Some("redis://10.0.0.9:6379/2")
    );
    assert!(ok(base).cluster.redis_url.is_none());
}

#[test]
fn a_bad_nameserver_is_named_with_its_line() {
    let src = "[upstream]\nurl = \"http://php-fpm.shop.svc:9000\"\ndns_servers = [\"10.100.0.10\", \"[::1]:5353\", \"coredns\"]\n";
    assert_eq!(
        errors(src),
        ["edge.toml:3: upstream.dns_servers[2]: \"coredns\" is not a nameserver address: expected an IP (\"10.100.0.10\") or IP:PORT (\"127.0.0.1:5353\", \"[::1]:53\")"]
    );
}

#[test]
fn redis_tls_errors_name_key_and_line() {
    let src = "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[cluster]\nchannel = \"c\"\nredis_url = \"redis://cache:6379\"\nredis_ca_file = \"/etc/ca.pem\"\n";
    assert_eq!(
        errors(src),
        ["edge.toml:6: cluster.redis_ca_file: is only for TLS to Redis: cluster.redis_url \"redis://cache:6379\" is not a rediss:// URL"]
    );
    let src = "[upstream]\nurl = \"http://127.0.0.1:9000\"\n[cluster]\nredis_url = \"rediss:/cache:6379\"\n";
    let e = errors(src);
    assert!(
        e.len() == 1 && e[0].starts_with("edge.toml:4: cluster.redis_url: "),
        "{e:?}"
    );
    let v = ok(&format!(
        "{DOCROOT}[cluster]\nredis_url = \"rediss://master.cache.example:6379\"\nredis_ca_file = \"/etc/ssl/certs/ca-certificates.crt\"\nl2 = true\n"
    ));
    assert_eq!(
        v.cluster.redis_url.as_deref(),
        Some("rediss://master.cache.example:6379")
    );
}

/// `[dbproxy]` as compiled from the defaults (no writer: only the dbproxy
/// loader requires one).
fn default_dbproxy() -> DbproxySettings {
    DbproxySettings {
        listen: "127.0.0.1:6033".parse().unwrap(),
        admin_listen: None,
        user: String::new(),
        writer: String::new(),
        readers: vec![],
        writer_detection: true,
        max_backend_connections: 20,
        max_client_connections: 10_000,
        connect_timeout: Duration::from_secs(2),
        queue_timeout: Duration::from_secs(5),
        read_your_writes: Duration::from_secs(5),
        max_replica_lag: Duration::from_secs(5),
        check_interval: Duration::from_secs(1),
        writer_only_tables: file::DEFAULT_WRITER_ONLY_TABLES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        digests_max: 1000,
        backend_tls: None,
        client_tls: None,
        client_full_auth: false,
    }
}

#[test]
fn dbproxy_golden_example_file() {
    let path = repo_root().join("examples/dbproxy.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    assert!(is_dbproxy_file(&src));
    let v = load_dbproxy(Some(&path), &DbproxyOverrides::default()).unwrap();
    let mut tables = default_dbproxy().writer_only_tables;
    tables.push("vendor_payment_lock".into());
    let want = DbproxySettings {
        admin_listen: Some("127.0.0.1:6080".parse().unwrap()),
        user: "magento".into(),
        writer: "127.0.0.1:3306".into(),
        readers: vec!["127.0.0.1:3307".into()],
        writer_only_tables: tables,
        ..default_dbproxy()
    };
    assert_eq!(v.dbproxy, want);
    assert_eq!(v.log.format, LogFormat::Json);
    // The deploy kit's file is a valid dbproxy file too.
    for env in ["production", "staging"] {
        let kit = repo_root().join(format!("deploy/k8s/overlays/{env}/dbproxy/dbproxy.toml"));
        assert!(is_dbproxy_file(&std::fs::read_to_string(&kit).unwrap()));
        let v = load_dbproxy(Some(&kit), &DbproxyOverrides::default()).unwrap();
        assert!(v.dbproxy.backend_tls.is_some(), "{env}: TLS to Aurora");
    }
    // An edge file is not a dbproxy file.
    let edge = std::fs::read_to_string(repo_root().join("examples/edge.toml")).unwrap();
    assert!(!is_dbproxy_file(&edge));
}

#[test]
fn dbproxy_errors_name_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dbproxy.toml");
    std::fs::write(
        &path,
        "[dbproxy]\nlisten = \"0.0.0.0:6033\"\nwriter = \"db\"\nreaders = [\"r1:3306\", \"r1:3306\"]\n\
         max_backend_connections = 0\nqueue_timeout_ms = \"5s\"\nwriter_only_tables = [\"quote\", \"a b\"]\n\
         max_replica_lagsecs = 3\nadmin_listen = \"0.0.0.0:6033\"\n",
    )
    .unwrap();
    let e = load_dbproxy(Some(&path), &DbproxyOverrides::default()).unwrap_err();
    let o = path.display().to_string();
    let mut got = lines(&e);
    got.sort();
    let mut want = vec![
        format!("{o}:3: dbproxy.writer: \"db\" is not host:port (e.g. 127.0.0.1:3306 or db.example.com:3306)"),
        format!("{o}:4: dbproxy.readers[1]: \"r1:3306\" is listed twice"),
        format!("{o}:5: dbproxy.max_backend_connections: must be greater than 0"),
        format!("{o}:6: dbproxy.queue_timeout_ms: invalid type: string \"5s\", expected u64"),
        format!("{o}:7: dbproxy.writer_only_tables[1]: \"a b\": a table name (letters, digits, `_`, `$`), optionally ending in `*`"),
        format!("{o}:9: dbproxy.admin_listen: conflicts with dbproxy.listen = 0.0.0.0:6033"),
    ];
    want.sort();
    // The typo'd key is reported too, with its line.
    assert!(
        got.iter().any(|l| l.starts_with(&format!(
            "{o}:8: dbproxy.max_replica_lagsecs: unknown field"
        ))),
        "{got:#?}"
    );
    got.retain(|l| !l.contains("max_replica_lagsecs"));
    assert_eq!(got, want);

    // The writer is required to run, and a flag may give it.
    let e = load_dbproxy(None, &DbproxyOverrides::default()).unwrap_err();
    assert_eq!(
        lines(&e),
        [format!(
            "{COMMAND_LINE}: dbproxy.writer: required to run the proxy (or --writer)"
        )]
    );
}

#[test]
fn dbproxy_flags_beat_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dbproxy.toml");
    std::fs::write(
        &path,
        "[dbproxy]\nwriter = \"file:3306\"\nreaders = [\"fr:3306\"]\nmax_backend_connections = 7\nuser = \"fileuser\"\n",
    )
    .unwrap();
    let v = load_dbproxy(Some(&path), &DbproxyOverrides::default()).unwrap();
    assert_eq!(
        (
            v.dbproxy.writer.as_str(),
            v.dbproxy.readers.clone(),
            v.dbproxy.max_backend_connections
        ),
        ("file:3306", vec!["fr:3306".to_owned()], 7)
    );
    let o = DbproxyOverrides {
        listen: Some("127.0.0.1:7000".parse().unwrap()),
        writer: Some("flag:3306".into()),
        readers: vec!["a:1".into(), "b:2".into()],
        user: Some("flaguser".into()),
        max_backend_connections: Some(3),
        queue_timeout_ms: Some(250),
        admin_listen: Some("127.0.0.1:7001".parse().unwrap()),
    };
    let v = load_dbproxy(Some(&path), &o).unwrap().dbproxy;
    assert_eq!(v.listen, o.listen.unwrap());
    assert_eq!(v.admin_listen, o.admin_listen);
    assert_eq!(v.writer, "flag:3306");
    assert_eq!(v.readers, o.readers);
    assert_eq!(v.user, "flaguser");
    assert_eq!(v.max_backend_connections, 3);
    assert_eq!(v.queue_timeout, Duration::from_millis(250));
    // A bad flag is attributed to the command line.
    let o = DbproxyOverrides {
        max_backend_connections: Some(0),
        ..DbproxyOverrides::default()
    };
    let e = load_dbproxy(Some(&path), &o).unwrap_err();
    assert_eq!(
        lines(&e),
        [format!(
            "{COMMAND_LINE}: dbproxy.max_backend_connections: must be greater than 0"
        )]
    );
}

#[test]
fn dbproxy_tls_keys_are_checked_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dbproxy.toml");
    std::fs::write(
        &path,
        "[dbproxy]\nwriter = \"db:3306\"\nbackend_tls = \"required\"\n\
         tls_key_file = \"/etc/k.pem\"\n",
    )
    .unwrap();
    let e = load_dbproxy(Some(&path), &DbproxyOverrides::default()).unwrap_err();
    let o = path.display().to_string();
    let mut got = lines(&e);
    got.sort();
    assert_eq!(
        got,
        [
            // A missing key is located at its table.
            format!("{o}:1: dbproxy.backend_tls_ca_file: required when backend_tls = \"required\" (the servers' certificates are verified)"),
            format!("{o}:1: dbproxy.tls_cert_file: required when tls_key_file is set"),
        ]
    );
    std::fs::write(
        &path,
        "[dbproxy]\nwriter = \"db:3306\"\nbackend_tls = \"yes\"\n",
    )
    .unwrap();
    let e = load_dbproxy(Some(&path), &DbproxyOverrides::default()).unwrap_err();
    assert_eq!(
        lines(&e),
        [format!(
            "{o}:3: dbproxy.backend_tls: \"yes\": \"disabled\" or \"required\""
        )]
    );
    std::fs::write(
        &path,
        "[dbproxy]\nwriter = \"db:3306\"\nbackend_tls = \"required\"\n\
         backend_tls_ca_file = \"/etc/rds/global-bundle.pem\"\n\
         tls_cert_file = \"/tls/c.pem\"\ntls_key_file = \"/tls/k.pem\"\nrequire_client_tls = true\n",
    )
    .unwrap();
    let v = load_dbproxy(Some(&path), &DbproxyOverrides::default()).unwrap();
    assert_eq!(
        v.dbproxy.backend_tls,
        Some(magestack_config::BackendTlsSettings {
            ca_file: "/etc/rds/global-bundle.pem".into(),
            server_name: None,
        })
    );
    assert_eq!(
        v.dbproxy.client_tls,
        Some(magestack_config::ClientTlsSettings {
            cert_file: "/tls/c.pem".into(),
            key_file: "/tls/k.pem".into(),
            required: true,
        })
    );
}

#[test]
fn media_contract_keys_and_errors_with_lines() {
    let v = ok("[upstream]\nurl = \"http://127.0.0.1:9000\"\n[media]\nsource = \"s3://magento-media/media\"\ncache_dir = \"/tmp/m\"\ncache_size = \"10GiB\"\nresize = true\n[static]\nsource = \"s3://magento-static/static\"\n[object_store]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\n");
    assert!(v.media.resize);
    assert_eq!(v.media.cache_size_bytes, 10 << 30);
    assert!(v.static_files.source.is_remote());
    let defaults = ok("[upstream]\nurl = \"http://127.0.0.1:9000\"\n");
    assert_eq!(defaults.media.source, FileSource::Docroot);
    assert_eq!(defaults.static_files.source, FileSource::Docroot);
    assert!(!defaults.media.resize);
    let got = errors("[upstream]\nurl = \"http://127.0.0.1:9000\"\n[media]\nsource = \"s3://x/../y\"\ncache_size = \"1K\"\nresize_sizes = [\"10x\"]\nsizee = 1\n[object_store]\nendpoint = \"127.0.0.1:9000\"\n");
    let joined = got.join("\n");
    assert!(
        joined.contains("edge.toml:4: media.source: invalid bucket name"),
        "{joined}"
    );
    assert!(
        joined.contains("edge.toml:5: media.cache_size: must be at least"),
        "{joined}"
    );
    assert!(
        joined.contains("edge.toml:6: media.resize_sizes[0]:"),
        "{joined}"
    );
    assert!(
        joined.contains("edge.toml:7: media.sizee: unknown field"),
        "{joined}"
    );
    assert!(
        joined.contains("edge.toml:9: object_store.endpoint:"),
        "{joined}"
    );
}
