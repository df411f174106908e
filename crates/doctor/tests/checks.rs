//! Every check on a fixture that trips it and one that passes.

use std::collections::BTreeMap;

use magestack_doctor::ini::Ini;
use magestack_doctor::inputs::{ClusterFacts, ServiceFacts, WorkloadFacts};
use magestack_doctor::{audit, magento, CodeStats, EdgeFacts, Inputs, LiveEdge, Severity, Unit};

const GOOD_POOL: &str =
    "[frontend]\npm = static\npm.max_children = 4\nphp_admin_value[memory_limit] = 384M\n";
const GOOD_INI: &str = "opcache.enable = 1\nopcache.memory_consumption = 512\nopcache.max_accelerated_files = 130987\nopcache.validate_timestamps = 0\nrealpath_cache_size = 10M\nrealpath_cache_ttl = 7200\n";

fn unit(pool: &str, ini: &str) -> Unit {
    Unit {
        name: "pod".into(),
        pools: Ini::parse("pool.conf", pool).pools(),
        php: Ini::parse("php.ini", ini).php_settings(),
        php_origin: "php.ini".into(),
        memory_limit: Some(2304 << 20),
        edge: Some(EdgeFacts {
            origin: "edge.toml".into(),
            pools: vec![("frontend".into(), 4, vec![])],
            purge_bus: true,
            ports: vec![8080],
        }),
        max_replicas: Some(3),
    }
}

fn env_php(json: &str) -> magestack_doctor::MagentoSettings {
    let v: serde_json::Value = serde_json::from_str(json).expect("fixture JSON");
    magento::from_env_php("env.php", &v)
}

const GOOD_ENV: &str = r#"{"MAGE_MODE":"production",
 "session":{"save":"redis","redis":{"host":"r","disable_locking":"0","max_concurrency":"6","break_after_frontend":"5","break_after_adminhtml":"30"}},
 "cache":{"frontend":{"default":{"backend":"Magento\\Framework\\Cache\\Backend\\Redis"}}},
 "system":{"default":{"system":{"full_page_cache":{"caching_application":"2"}}}},
 "http_cache_hosts":[{"host":"frontend-purge","port":"8080"}],
 "db":{"connection":{"default":{"host":"dbproxy:6033"}}}}"#;

fn cluster() -> ClusterFacts {
    let labels = |n: &str| BTreeMap::from([("app".to_owned(), n.to_owned())]);
    ClusterFacts {
        services: vec![
            ServiceFacts {
                name: "frontend-purge".into(),
                selector: labels("frontend"),
                ports: vec![8080],
            },
            ServiceFacts {
                name: "dbproxy".into(),
                selector: labels("dbproxy"),
                ports: vec![6033],
            },
        ],
        workloads: vec![
            WorkloadFacts {
                name: "deployment/frontend".into(),
                labels: labels("frontend"),
                max_replicas: 10,
                has_edge: true,
                php_workers: 4,
                dbproxy_backend_connections: None,
            },
            WorkloadFacts {
                name: "deployment/dbproxy".into(),
                labels: labels("dbproxy"),
                max_replicas: 2,
                has_edge: false,
                php_workers: 0,
                dbproxy_backend_connections: Some(100),
            },
        ],
    }
}

fn good() -> Inputs {
    Inputs {
        magento: Some(env_php(GOOD_ENV)),
        units: vec![unit(GOOD_POOL, GOOD_INI)],
        code: Some(CodeStats {
            php_files: 70_000,
            php_bytes: 400 << 20,
        }),
        db_max_connections: Some(1000),
        cluster: Some(cluster()),
        live: Some(LiveEdge {
            address: "127.0.0.1:9180".into(),
            ready: true,
            readyz: "ready".into(),
            pools: vec![(
                "frontend".into(),
                vec![("127.0.0.1:9000".into(), "healthy".into(), true)],
            )],
            cache: Some((120, 900, 100)),
            unreachable: None,
        }),
    }
}

/// The checks that found something at `severity` or worse.
fn tripped(i: &Inputs, at_least: Severity) -> Vec<&'static str> {
    audit(i)
        .into_iter()
        .filter(|f| f.severity >= at_least)
        .map(|f| f.check)
        .collect()
}

#[test]
fn a_clean_setup_has_no_finding() {
    let f = audit(&good());
    assert!(f.is_empty(), "{f:#?}");
}

/// Trips exactly `check` (as an error) after `break_it`.
fn trips(check: &str, break_it: impl FnOnce(&mut Inputs)) {
    let mut i = good();
    break_it(&mut i);
    let errors = tripped(&i, Severity::Error);
    assert_eq!(errors, vec![check], "{:#?}", audit(&i));
    assert!(!audit(&i)[0].fix.is_empty());
}

#[test]
fn fpm_children_that_do_not_fit_the_container() {
    trips("fpm.memory", |i| {
        i.units[0].pools = Ini::parse("p", &GOOD_POOL.replace("= 4", "= 6")).pools()
    });
    // 6 children: the edge's max_inflight 4 is below, which is allowed.
}

#[test]
fn dynamic_pm_for_the_frontend() {
    trips("fpm.pm", |i| {
        i.units[0].pools = Ini::parse("p", &GOOD_POOL.replace("static", "dynamic")).pools()
    });
}

#[test]
fn opcache_timestamps_in_production() {
    trips("opcache.validate_timestamps", |i| {
        i.units[0].php = Ini::parse(
            "php.ini",
            &GOOD_INI.replace("validate_timestamps = 0", "validate_timestamps = 1"),
        )
        .php_settings()
    });
    // In developer mode it is right, but the mode itself is an error.
    let mut i = good();
    i.units[0]
        .php
        .insert("opcache.validate_timestamps".into(), "1".into());
    i.magento.as_mut().expect("set").mode = Some("developer".into());
    assert_eq!(tripped(&i, Severity::Error), vec!["magento.mode"]);
}

#[test]
fn opcache_smaller_than_the_code() {
    trips("opcache.memory_consumption", |i| {
        i.code = Some(CodeStats {
            php_files: 70_000,
            php_bytes: 600 << 20,
        })
    });
}

#[test]
fn opcache_file_slots_below_the_file_count() {
    trips("opcache.max_accelerated_files", |i| {
        i.code = Some(CodeStats {
            php_files: 140_000,
            php_bytes: 400 << 20,
        })
    });
    trips("opcache.max_accelerated_files", |i| {
        i.code = None;
        i.units[0]
            .php
            .insert("opcache.max_accelerated_files".into(), "10000".into());
    });
}

#[test]
fn realpath_cache_too_small() {
    trips("php.realpath_cache", |i| {
        i.units[0].php.remove("realpath_cache_size");
    });
}

#[test]
fn sessions_in_the_database_or_without_locking() {
    trips("session.backend", |i| {
        i.magento = Some(env_php(
            &GOOD_ENV.replace(r#""save":"redis""#, r#""save":"db""#),
        ))
    });
    trips("session.locking", |i| {
        i.magento = Some(env_php(
            &GOOD_ENV.replace(r#""disable_locking":"0""#, r#""disable_locking":"1""#),
        ))
    });
    let mut i = good();
    i.magento = Some(env_php(&GOOD_ENV.replace(r#""max_concurrency":"6","#, "")));
    assert_eq!(tripped(&i, Severity::Warning), vec!["session.locking"]);
}

#[test]
fn cache_backend_on_files() {
    trips("cache.backend", |i| {
        i.magento = Some(env_php(&GOOD_ENV.replace("Redis", "File")))
    });
}

#[test]
fn fpc_application_built_in() {
    trips("fpc.application", |i| {
        i.magento = Some(env_php(&GOOD_ENV.replace(
            r#""caching_application":"2""#,
            r#""caching_application":"1""#,
        )))
    });
}

#[test]
fn http_cache_hosts_at_one_pod_or_without_a_purge_bus() {
    trips("http_cache_hosts", |i| {
        i.magento = Some(env_php(
            &GOOD_ENV.replace(r#""host":"frontend-purge""#, r#""host":"10.0.3.7""#),
        ))
    });
    trips("http_cache_hosts", |i| {
        i.units[0].edge.as_mut().expect("set").purge_bus = false
    });
    trips("http_cache_hosts", |i| {
        i.magento = Some(env_php(
            &GOOD_ENV.replace(r#""port":"8080""#, r#""port":"80""#),
        ))
    });
    trips("http_cache_hosts", |i| {
        i.magento = Some(env_php(
            &GOOD_ENV.replace(r#"[{"host":"frontend-purge","port":"8080"}]"#, "[]"),
        ))
    });
}

#[test]
fn deploy_mode_not_production() {
    trips("magento.mode", |i| {
        i.magento = Some(env_php(&GOOD_ENV.replace("production", "default")))
    });
}

#[test]
fn database_connections_beyond_max_connections() {
    trips("db.max_connections", |i| i.db_max_connections = Some(150));
    // Without the proxy, 10 pods × 4 workers fit 90 connections; the host is a warning.
    let mut i = good();
    i.cluster.as_mut().expect("set").workloads.pop();
    i.db_max_connections = Some(90);
    i.magento = Some(env_php(
        &GOOD_ENV.replace("dbproxy:6033", "aurora.example:3306"),
    ));
    assert!(tripped(&i, Severity::Error).is_empty(), "{:#?}", audit(&i));
    i.db_max_connections = Some(30);
    assert_eq!(tripped(&i, Severity::Error), vec!["db.max_connections"]);
    // Proxy present but bypassed.
    let mut i = good();
    i.magento = Some(env_php(
        &GOOD_ENV.replace("dbproxy:6033", "aurora.example:3306"),
    ));
    assert_eq!(tripped(&i, Severity::Warning), vec!["db.host"]);
}

#[test]
fn edge_admits_more_than_fpm_has_children() {
    trips("edge.max_inflight", |i| {
        i.units[0].edge.as_mut().expect("set").pools[0].1 = 8
    });
    trips("edge.max_inflight", |i| {
        i.units[0].edge.as_mut().expect("set").pools[0].1 = 0
    });
}

#[test]
fn live_edge_with_a_stopped_fpm_names_the_pool() {
    let mut i = good();
    let live = i.live.as_mut().expect("set");
    live.ready = false;
    live.readyz = "not ready: PHP-FPM".into();
    live.pools[0].1[0].1 = "unhealthy".into();
    let f = audit(&i);
    assert_eq!(
        tripped(&i, Severity::Error),
        vec!["edge.pool_health", "edge.ready"]
    );
    assert!(f[0].message.contains("pool frontend"), "{}", f[0].message);
    trips("edge.live", |i| {
        i.live.as_mut().expect("set").unreachable = Some("connection refused".into())
    });
    let mut i = good();
    i.live.as_mut().expect("set").cache = Some((0, 0, 0));
    assert_eq!(tripped(&i, Severity::Warning), vec!["edge.cache_warmth"]);
}

#[test]
fn findings_serialise_with_the_contract_fields() {
    let mut i = good();
    i.magento.as_mut().expect("set").mode = None;
    let json = serde_json::to_value(audit(&i)).expect("serialises");
    let first = &json[0];
    for k in ["severity", "check", "message", "fix"] {
        assert!(first.get(k).is_some(), "{k} missing in {first}");
    }
    assert_eq!(first["severity"], "error");
}
