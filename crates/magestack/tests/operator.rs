//! The operator's tools as an operator runs them: `doctor`, `warm`, `top`
//! and the admin listener's status page (issue 20).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "operator/cdp.rs"]
mod cdp;
mod common;
#[path = "operator/fpm.rs"]
mod fpm;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_addr, http_raw, Killed};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_magestack"))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// `kubectl` from PATH, else the deploy kit's venv (scripts/check-deploy).
fn kubectl() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("kubectl"))
            .find(|k| k.is_file())
    });
    on_path.or_else(|| {
        let venv = PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/magestack/deploy-venv/bin/kubectl");
        venv.is_file().then_some(venv)
    })
}

fn doctor(args: &[&str]) -> (i32, String, String) {
    let mut cmd = bin();
    cmd.arg("doctor").args(args);
    if let Some(k) = kubectl() {
        cmd.env("MAGESTACK_KUBECTL", k);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn findings(json: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a JSON list ({e}): {json}"))
}

// === doctor ===

#[test]
fn doctor_finds_the_deploy_kit_as_shipped_clean() {
    assert!(
        kubectl().is_some(),
        "no kubectl: ./scripts/test installs it (scripts/check-deploy --tools-only) before the tests"
    );
    for overlay in [
        "base",
        "overlays/staging",
        "overlays/production",
        "overlays/production-rollouts",
        "overlays/production-edge-rollout",
    ] {
        let dir = repo(&format!("deploy/k8s/{overlay}"));
        let (code, out, err) = doctor(&["--k8s", dir.to_str().unwrap(), "--format", "json"]);
        assert_eq!(code, 0, "{overlay}: {out}{err}");
        let f = findings(&out);
        assert!(
            f.iter().all(|f| f["severity"] != "error"),
            "{overlay}: {f:#?}"
        );
    }
}

#[test]
fn doctor_on_a_kit_with_fpm_over_its_memory_names_it_and_exits_1() {
    let k = kubectl().expect(
        "no kubectl: ./scripts/test installs it (scripts/check-deploy --tools-only) before the tests",
    );
    let out = Command::new(k)
        .arg("kustomize")
        .arg(repo("deploy/k8s/overlays/production"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).replace("memory: 4608Mi", "memory: 3Gi");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.yaml");
    std::fs::write(&file, text).unwrap();
    let (code, out, _) = doctor(&["--k8s", file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let f = findings(&out);
    assert_eq!(f[0]["check"], "fpm.memory", "{f:#?}");
    assert!(f[0]["message"]
        .as_str()
        .unwrap()
        .contains("deployment/frontend"));
}

/// Files as an operator passes them, each misconfigured in one way.
struct Fixture {
    dir: tempfile::TempDir,
}

const POOL: &str = "[frontend]\nlisten = 127.0.0.1:9000\npm = static\npm.max_children = 8\nphp_admin_value[memory_limit] = 512M\n";
const INI: &str = "opcache.enable = 1\nopcache.memory_consumption = 512\nopcache.max_accelerated_files = 130987\nopcache.validate_timestamps = 0\nrealpath_cache_size = 10M\nrealpath_cache_ttl = 7200\n";
const EDGE: &str = "[upstream]\nurl = \"fcgi://127.0.0.1:9000\"\n[magento]\ndocroot = \"/var/www/magento/pub\"\n[pools.frontend]\nendpoints = [\"fcgi://127.0.0.1:9000\"]\nmax_inflight = 8\n";
const ENV_PHP: &str = r"<?php
return [
    'MAGE_MODE' => 'production',
    'db' => ['connection' => ['default' => ['host' => 'dbproxy:6033']]],
    'session' => ['save' => 'redis', 'redis' => ['host' => 'redis', 'disable_locking' => '0',
        'max_concurrency' => '6', 'break_after_frontend' => '5', 'break_after_adminhtml' => '30']],
    'cache' => ['frontend' => ['default' => ['backend' => 'Magento\\Framework\\Cache\\Backend\\Redis']]],
    'system' => ['default' => ['system' => ['full_page_cache' => ['caching_application' => '2']]]],
    'http_cache_hosts' => [['host' => 'edge', 'port' => '8080']],
];
";

impl Fixture {
    fn new(pool: &str, ini: &str, edge: &str, env: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("pool.conf"), pool).unwrap();
        std::fs::write(p.join("php.ini"), ini).unwrap();
        std::fs::write(p.join("edge.toml"), edge).unwrap();
        std::fs::create_dir_all(p.join("magento/app/etc")).unwrap();
        std::fs::write(p.join("magento/app/etc/env.php"), env).unwrap();
        std::fs::create_dir_all(p.join("magento/vendor/x")).unwrap();
        // A code base of 300 files (a real one has ~60,000: the ratio is what matters).
        for i in 0..300 {
            std::fs::write(
                p.join(format!("magento/vendor/x/f{i}.php")),
                "<?php echo 1;\n",
            )
            .unwrap();
        }
        Fixture { dir }
    }

    fn run(&self) -> (i32, Vec<serde_json::Value>) {
        let p = |f: &str| self.dir.path().join(f).to_str().unwrap().to_owned();
        let (code, out, err) = doctor(&[
            "--magento-root",
            &p("magento"),
            "--fpm-conf",
            &p("pool.conf"),
            "--php-ini",
            &p("php.ini"),
            "--edge-config",
            &p("edge.toml"),
            "--format",
            "json",
        ]);
        assert!(err.is_empty() || code != 2, "{err}");
        (code, findings(&out))
    }
}

fn errors(f: &[serde_json::Value]) -> Vec<String> {
    f.iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["check"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn doctor_on_files_passes_clean_ones_and_names_each_misconfiguration() {
    let (code, f) = Fixture::new(POOL, INI, EDGE, ENV_PHP).run();
    assert_eq!((code, errors(&f)), (0, vec![]), "{f:#?}");
    let cases: [(&str, Fixture); 8] = [
        (
            "fpm.pm",
            Fixture::new(&POOL.replace("static", "dynamic"), INI, EDGE, ENV_PHP),
        ),
        (
            "opcache.validate_timestamps",
            Fixture::new(
                POOL,
                &INI.replace("timestamps = 0", "timestamps = 1"),
                EDGE,
                ENV_PHP,
            ),
        ),
        (
            "opcache.max_accelerated_files",
            Fixture::new(POOL, &INI.replace("130987", "200"), EDGE, ENV_PHP),
        ),
        (
            "php.realpath_cache",
            Fixture::new(POOL, &INI.replace("= 10M", "= 256K"), EDGE, ENV_PHP),
        ),
        (
            "edge.max_inflight",
            Fixture::new(
                POOL,
                INI,
                &EDGE.replace("max_inflight = 8", "max_inflight = 32"),
                ENV_PHP,
            ),
        ),
        (
            "session.backend",
            Fixture::new(
                POOL,
                INI,
                EDGE,
                &ENV_PHP.replace("'save' => 'redis'", "'save' => 'db'"),
            ),
        ),
        (
            "fpc.application",
            Fixture::new(POOL, INI, EDGE, &ENV_PHP.replace("=> '2'", "=> '1'")),
        ),
        (
            "magento.mode",
            Fixture::new(
                POOL,
                INI,
                EDGE,
                &ENV_PHP.replace("'production'", "'developer'"),
            ),
        ),
    ];
    for (check, fixture) in cases {
        let (code, f) = fixture.run();
        assert_eq!(
            (code, errors(&f)),
            (1, vec![check.to_owned()]),
            "{check}: {f:#?}"
        );
        assert!(!f[0]["fix"].as_str().unwrap().is_empty());
    }
}

#[test]
fn doctor_text_output_and_usage_errors() {
    let fx = Fixture::new(&POOL.replace("static", "ondemand"), INI, EDGE, ENV_PHP);
    let pool = fx.dir.path().join("pool.conf");
    let (code, out, _) = doctor(&["--fpm-conf", pool.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("ERROR") && out.contains("fpm.pm") && out.contains("fix: pm = static"),
        "{out}"
    );
    assert!(out.contains("doctor: 1 errors"), "{out}");
    // Bad usage: 2 (nothing to audit, a file that is not there, an unknown format).
    assert_eq!(doctor(&[]).0, 2);
    assert_eq!(doctor(&["--fpm-conf", "/nonexistent/pool.conf"]).0, 2);
    assert_eq!(
        doctor(&["--edge-config", pool.to_str().unwrap(), "--format", "yaml"]).0,
        2
    );
}

#[test]
fn doctor_says_so_when_php_is_missing_for_env_php() {
    let fx = Fixture::new(POOL, INI, EDGE, ENV_PHP);
    let out = bin()
        .args(["doctor", "--magento-root"])
        .arg(fx.dir.path().join("magento"))
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("PHP is not installed here") && text.contains("skipped"),
        "{text}"
    );
}

/// An edge in front of an FPM of the test's own, with its admin listener.
fn edge_with_own_fpm(
    fpm_port: u16,
    extra_toml: &str,
) -> (Killed, SocketAddr, SocketAddr, tempfile::TempDir) {
    let (addr, admin) = (free_addr(), free_addr());
    let dir = tempfile::tempdir().unwrap();
    let docroot = repo("examples/storefront/pub");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{addr}\"]\nadmin_listen = \"{admin}\"\n[upstream]\nurl = \"fcgi://127.0.0.1:{fpm_port}\"\n\
             [magento]\ndocroot = \"{}\"\n[pools.frontend]\nendpoints = [\"fcgi://127.0.0.1:{fpm_port}\"]\nmax_inflight = 4\n\
             check_interval_secs = 1\nunhealthy_after = 1\n{extra_toml}",
            docroot.display()
        ),
    )
    .unwrap();
    let mut cmd = bin();
    cmd.arg("edge").arg("--config").arg(&cfg);
    let mut edge = Killed::spawn(cmd);
    edge.wait_up(addr);
    edge.wait_up(admin);
    (edge, addr, admin, dir)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn admin_get(admin: SocketAddr, path: &str) -> String {
    http_raw(
        admin,
        &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn doctor_on_a_live_edge_names_the_pool_whose_fpm_stopped() {
    let port = common::free_addr().port();
    let mut php = fpm::Fpm::start(port, 2);
    let (_edge, _addr, admin, _dir) = edge_with_own_fpm(port, "");
    wait_for("readiness", 20, || {
        admin_get(admin, "/readyz").starts_with("HTTP/1.1 200")
    });
    let (code, out, err) = doctor(&["--edge", &admin.to_string(), "--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    php.stop();
    wait_for("the pool to turn unhealthy", 20, || {
        admin_get(admin, "/pools").contains("\"unhealthy\"")
    });
    let (code, out, _) = doctor(&["--edge", &admin.to_string(), "--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let f = findings(&out);
    let pool = f
        .iter()
        .find(|f| f["check"] == "edge.pool_health")
        .expect("a pool finding");
    assert!(
        pool["message"].as_str().unwrap().contains("pool frontend")
            && pool["message"]
                .as_str()
                .unwrap()
                .contains(&port.to_string()),
        "{pool}"
    );
    // Nothing listens: an error finding, not a crash.
    let (code, out, _) = doctor(&["--edge", "127.0.0.1:1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("edge.live"), "{out}");
}

// === warm ===

/// `magestack edge` with flags only in front of the shared storefront FPM.
fn storefront_edge() -> (Killed, SocketAddr, SocketAddr) {
    let (addr, admin) = (free_addr(), free_addr());
    let fpm = std::env::var("MAGESTACK_FPM_ADDR")
        .expect("MAGESTACK_FPM_ADDR is not set: run ./scripts/test (it starts PHP-FPM)");
    let mut cmd = bin();
    cmd.args([
        "edge",
        "--listen",
        &addr.to_string(),
        "--admin-listen",
        &admin.to_string(),
        "--upstream",
        &format!("fcgi://{fpm}"),
        "--docroot",
        repo("examples/storefront/pub").to_str().unwrap(),
    ]);
    let mut edge = Killed::spawn(cmd);
    edge.wait_up(addr);
    edge.wait_up(admin);
    (edge, addr, admin)
}

fn warm(args: &[&str]) -> (i32, String) {
    let out = bin().arg("warm").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Pages of the storefront's sitemap: home, 5 categories, 24 products, 3 CMS pages.
const SITEMAP_PAGES: usize = 33;

#[test]
fn warm_the_storefront_sitemap_first_pass_misses_second_all_hits() {
    let (_edge, addr, admin) = storefront_edge();
    let edge = addr.to_string();
    // Through the sitemap index, as a shop that splits its sitemap publishes it.
    let (code, out) = warm(&[
        "--sitemap",
        "http://shop.test/sitemap_index.xml",
        "--edge",
        &edge,
        "--concurrency",
        "4",
        "--rate",
        "100/s",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("warm: {SITEMAP_PAGES} requests in"))
            && out.contains(&format!(
                ": 0 hits, {SITEMAP_PAGES} misses, 0 uncacheable, 0 errors"
            )),
        "{out}"
    );
    assert!(out.contains("slowest:") && out.contains("MISS"), "{out}");
    // The pages, plus the two sitemaps' hit-for-miss markers (they are no-store).
    let stats = admin_get(admin, "/cache/stats");
    let objects: usize = stats
        .split("\"objects\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(objects >= SITEMAP_PAGES, "{stats}");
    let (code, out) = warm(&[
        "--sitemap",
        "http://shop.test/sitemap.xml",
        "--edge",
        &edge,
        "--rate",
        "100",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            ": {SITEMAP_PAGES} hits, 0 misses, 0 uncacheable, 0 errors"
        )),
        "{out}"
    );
    // A currency variant: the session's cookies, as a browser sends them
    // after switching; the default variant is warmed too (already cached).
    let switch = http_raw(
        addr,
        "GET /directory/currency/switch?currency=EUR HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    );
    let cookies: Vec<String> = switch
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .filter_map(|c| c.split(';').next())
        .map(str::to_owned)
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("X-Magento-Vary=")),
        "{switch}"
    );
    let (code, out) = warm(&[
        "--sitemap",
        "http://shop.test/sitemap.xml",
        "--edge",
        &edge,
        "--rate",
        "100",
        "--cookie",
        &cookies.join("; "),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("warm: {} requests in", 2 * SITEMAP_PAGES))
            && out.contains(&format!(
                ": {SITEMAP_PAGES} hits, {SITEMAP_PAGES} misses, 0 uncacheable, 0 errors"
            )),
        "{out}"
    );
    assert!(
        !out.contains("PHPSESSID"),
        "the cookies are not printed: {out}"
    );
    // Another store view (Host) is another set of pages.
    let (code, out) = warm(&[
        "--sitemap",
        "http://shop.test/sitemap.xml",
        "--edge",
        &edge,
        "--rate",
        "100",
        "--host",
        "de.shop.test",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(": 0 hits, {SITEMAP_PAGES} misses")),
        "{out}"
    );
}

#[test]
fn warm_reports_a_broken_url_and_a_500_and_exits_1() {
    let (_edge, addr, _admin) = storefront_edge();
    let dir = tempfile::tempdir().unwrap();
    // A gzipped sitemap file, as Magento can write it.
    let xml = "<?xml version=\"1.0\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n\
        <url><loc>http://shop.test/</loc></url>\n<url><loc>http://shop.test/no-such-page.html</loc></url>\n\
        <url><loc>http://shop.test/_test/status?code=500&amp;x=1</loc></url>\n<url><loc>http://shop.test/customer-service</loc></url>\n</urlset>\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, xml.as_bytes()).unwrap();
    let file = dir.path().join("sitemap.xml.gz");
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let (code, out) = warm(&[
        "--sitemap",
        file.to_str().unwrap(),
        "--edge",
        &addr.to_string(),
        "--rate",
        "50",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("warm: 4 requests in"), "{out}");
    assert!(out.contains("1 uncacheable, 2 errors"), "{out}");
    let errors = out.split("errors:\n").nth(1).unwrap_or("");
    assert!(
        errors.contains("404") && errors.contains("/no-such-page.html"),
        "{out}"
    );
    assert!(
        errors.contains("500") && errors.contains("/_test/status?code=500&x=1"),
        "{out}"
    );
    assert!(!errors.contains("http://shop.test/\n"), "{out}");
    // A sitemap that is not there: an error, not a panic.
    let (code, out) = warm(&[
        "--sitemap",
        "/nonexistent/sitemap.xml",
        "--edge",
        &addr.to_string(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/nonexistent/sitemap.xml"), "{out}");
}

/// Runs `cmd` under `script`, which gives it a pseudo-terminal: what an
/// operator sees, escape sequences included.
fn in_pty(cmd: &str, secs: u64) -> String {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .args(["script", "-qfec", cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "120")
        .output()
        .expect("script(1) from util-linux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The cache's debug header of `GET path` on shop.test (`HIT`, `MISS`).
fn cache_debug(addr: SocketAddr, path: &str) -> String {
    let r = http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
    r.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-magento-cache-debug")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

fn purged_list(admin: SocketAddr, query: &str) -> Vec<serde_json::Value> {
    let r = admin_get(admin, &format!("/cache/purged{query}"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = r.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn warm_after_purge_rewarms_the_popular_pages_a_tag_purge_removed() {
    let (_edge, addr, admin) = storefront_edge();
    // Popular: requested at least twice (a miss, then hits); /about-us most.
    let popular = ["/about-us", "/gear.html", "/product/ws01.html"];
    for p in popular {
        assert_eq!(cache_debug(addr, p), "MISS", "{p}");
        assert_eq!(cache_debug(addr, p), "HIT", "{p}");
    }
    cache_debug(addr, "/about-us");
    cache_debug(addr, "/about-us");
    // Unpopular: requested once, carrying the same tags.
    let unpopular = ["/about-us?from=mail", "/gear.html?p=2"];
    for p in unpopular {
        assert_eq!(cache_debug(addr, p), "MISS", "{p}");
    }
    assert!(purged_list(admin, "").is_empty());
    // Magento's tag purge: CMS page 5 (about-us), category 6 (gear), product 1.
    let purge = http_raw(
        addr,
        "PURGE / HTTP/1.1\r\nHost: shop.test\r\nX-Magento-Tags-Pattern: ((^|,)cms_p_5(,|$))|((^|,)cat_c_6(,|$))|((^|,)cat_p_1(,|$))\r\nConnection: close\r\n\r\n",
    );
    assert!(purge.starts_with("HTTP/1.1 200"), "{purge}");
    let list = purged_list(admin, "");
    let mut urls: Vec<&str> = list.iter().map(|e| e["url"].as_str().unwrap()).collect();
    assert_eq!(list[0]["url"], "/about-us", "most hit first: {list:?}");
    assert_eq!(list[0]["hits"], 3, "{list:?}");
    assert!(
        list.iter().all(|e| e["host"] == "shop.test"
            && e["https"] == false
            && e["purged_at"].as_u64().unwrap() > 1_700_000_000),
        "{list:?}"
    );
    urls.sort_unstable();
    assert_eq!(
        urls,
        ["/about-us", "/gear.html", "/product/ws01.html"],
        "{list:?}"
    );
    assert_eq!(purged_list(admin, "?limit=2").len(), 2);
    let edge = addr.to_string();
    let admin_s = admin.to_string();
    let (code, out) = warm(&[
        "--after-purge",
        "--edge",
        &edge,
        "--admin",
        &admin_s,
        "--rate",
        "100",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warm: 3 requests in")
            && out.contains(": 0 hits, 3 misses, 0 uncacheable, 0 errors"),
        "{out}"
    );
    assert!(out.contains("http://shop.test/about-us"), "{out}");
    for p in popular {
        assert_eq!(cache_debug(addr, p), "HIT", "{p} after warm --after-purge");
    }
    for p in unpopular {
        assert_eq!(
            cache_debug(addr, p),
            "MISS",
            "{p} was not listed, so not warmed"
        );
    }
    // The list is kept: a second run finds the pages cached.
    let (code, out) = warm(&[
        "--after-purge",
        "--edge",
        &edge,
        "--admin",
        &admin_s,
        "--rate",
        "100",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": 3 hits, 0 misses"), "{out}");
    // The list is bounded: ?limit is capped at its capacity (1,000 URLs).
    assert_eq!(purged_list(admin, "?limit=100000").len(), 3);
    // Without --edge, clap refuses; without --sitemap or --after-purge too.
    let (code, _) = warm(&["--after-purge"]);
    assert_eq!(code, 2);
    let (code, _) = warm(&["--edge", &edge]);
    assert_eq!(code, 2);
}

#[test]
fn warm_draws_a_progress_bar_on_a_terminal() {
    let (_edge, addr, _admin) = storefront_edge();
    let cmd = format!(
        "{} warm --sitemap http://shop.test/sitemap.xml --edge {addr} --rate 15 --concurrency 2",
        shell_quote(env!("CARGO_BIN_EXE_magestack"))
    );
    let screen = in_pty(&cmd, 60);
    // The bar redraws in place (carriage returns / cursor moves) with its counts.
    assert!(screen.contains(&format!("/{SITEMAP_PAGES}")), "{screen}");
    assert!(
        screen.contains("hits ") && screen.contains("misses "),
        "{screen}"
    );
    assert!(
        screen.contains('\r') || screen.contains("\x1b["),
        "{screen:?}"
    );
    assert!(
        screen.contains(&format!("warm: {SITEMAP_PAGES} requests")),
        "{screen}"
    );
    // Without a terminal there is no bar: only the summary.
    let (_, out) = warm(&[
        "--sitemap",
        "http://shop.test/sitemap.xml",
        "--edge",
        &addr.to_string(),
        "--rate",
        "100",
    ]);
    assert!(!out.contains(&format!("/{SITEMAP_PAGES}")), "{out}");
}

// === status page and top ===

fn body_of(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `name{labels} value` of the Prometheus text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

#[test]
fn status_page_shows_every_section_with_the_metrics_figures_and_a_stopped_fpm() {
    let port = common::free_addr().port();
    let mut php = fpm::Fpm::start(port, 2);
    let (_edge, addr, admin, _dir) = edge_with_own_fpm(port, "");
    wait_for("readiness", 20, || {
        admin_get(admin, "/readyz").starts_with("HTTP/1.1 200")
    });
    for path in ["/", "/women.html", "/", "/gear.html", "/no-such-page.html"] {
        http_raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"),
        );
    }
    let page = admin_get(admin, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{page}"
    );
    let html = body_of(&page);
    for id in [
        "cache", "requests", "pools", "waf", "bus", "rollout", "errors",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id} missing"
        );
    }
    // Self-contained and readable on a phone.
    assert!(html.contains("name=\"viewport\""));
    for external in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!html.contains(external), "{external} in the page");
    }
    assert!(html.len() < 64 * 1024, "{} bytes", html.len());
    // Its figures are /metrics' at the same moment (no traffic in between).
    let json: serde_json::Value =
        serde_json::from_str(body_of(&admin_get(admin, "/status.json"))).unwrap();
    let metrics = admin_get(admin, "/metrics");
    let m = body_of(&metrics);
    assert_eq!(
        json["cache"]["hits"].as_f64().unwrap(),
        metric(m, "magestack_cache_hits_total")
    );
    assert_eq!(
        json["cache"]["misses"].as_f64().unwrap(),
        metric(m, "magestack_cache_misses_total")
    );
    assert_eq!(
        json["cache"]["objects"].as_f64().unwrap(),
        metric(m, "magestack_cache_objects")
    );
    assert_eq!(
        json["cache"]["bytes"].as_f64().unwrap(),
        metric(m, "magestack_cache_bytes")
    );
    assert_eq!(
        json["requests"]["2xx"].as_f64().unwrap(),
        metric(m, "magestack_requests_total{status_class=\"2xx\"}")
    );
    assert_eq!(
        json["pools"][0]["requests"].as_f64().unwrap(),
        metric(m, "magestack_pool_requests_total{pool=\"frontend\"}")
    );
    assert_eq!(json["cache"]["hits"], 1, "{json}");
    // The HTML shows the same numbers.
    let html = body_of(&page);
    assert!(html.contains("<span data-k=\"hits\">1</span>"), "{html}");
    // PHP-FPM stopped: the pool turns unhealthy on the page, and it is a last error.
    php.stop();
    wait_for("the pool to show unhealthy", 20, || {
        let p = admin_get(admin, "/");
        p.contains("class=\"pool unhealthy\"") && p.contains("is unhealthy")
    });
    let html = admin_get(admin, "/status.html");
    assert!(
        html.contains("UNHEALTHY") && html.contains(&format!("127.0.0.1:{port}")),
        "{html}"
    );
}

#[test]
fn status_page_needs_the_acl_or_the_token() {
    let port = common::free_addr().port();
    let _php = fpm::Fpm::start(port, 1);
    let (_edge, _addr, admin, _dir) =
        edge_with_own_fpm(port, "[cache]\npurge_acl = [\"192.0.2.1/32\"]\n");
    for path in ["/", "/status.html", "/status.json", "/cache/purged"] {
        let r = admin_get(admin, path);
        assert!(r.starts_with("HTTP/1.1 401"), "{path}: {r}");
        assert!(
            r.to_ascii_lowercase().contains("www-authenticate: bearer"),
            "{path}: {r}"
        );
    }
    assert!(admin_get(admin, "/healthz").starts_with("HTTP/1.1 200"));
    let out = bin()
        .args(["top", "--once", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    // warm --after-purge reads the list the same way, and says why it cannot.
    let (code, out) = warm(&[
        "--after-purge",
        "--edge",
        "127.0.0.1:9",
        "--admin",
        &admin.to_string(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refused (401)") && out.contains("MAGESTACK_ADMIN_TOKEN"),
        "{out}"
    );
}

#[test]
fn top_redraws_the_figures_in_a_terminal() {
    let (_edge, addr, admin) = storefront_edge();
    for _ in 0..3 {
        http_raw(
            addr,
            "GET /sale.html HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        );
    }
    let cmd = format!(
        "{} top --admin {admin} --interval 0.5",
        shell_quote(env!("CARGO_BIN_EXE_magestack"))
    );
    // top runs until stopped: timeout ends it after a few screens.
    let screen = in_pty(&cmd, 3);
    assert!(screen.matches("\x1b[H\x1b[2J").count() >= 3, "{screen:?}");
    for want in [
        "CACHE", "hits 2", "misses 1", "POOL", "frontend", "healthy", "WAF", "BUS", "ERRORS",
    ] {
        assert!(screen.contains(want), "{want}: {screen}");
    }
    // Without a terminal, --once prints one screen.
    let out = bin()
        .args(["top", "--once", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("objects 1") && !text.contains("\x1b["),
        "{text}"
    );
}

// === the status page in a real browser ===

#[test]
fn status_page_in_headless_chromium_renders_updates_live_and_shows_a_stopped_fpm() {
    let mut browser = cdp::Browser::launch().expect(
        "no chromium: ./scripts/test installs it (scripts/deps start installs Debian's chromium)",
    );
    let port = common::free_addr().port();
    let mut php = fpm::Fpm::start(port, 2);
    let (_edge, addr, admin, _dir) = edge_with_own_fpm(port, "");
    wait_for("readiness", 20, || {
        admin_get(admin, "/readyz").starts_with("HTTP/1.1 200")
    });
    let url = format!("http://{admin}/");
    let shop_get = move || {
        http_raw(
            addr,
            "GET /women.html HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        )
    };
    shop_get();
    browser.call("Page.enable", serde_json::json!({}));
    browser.call("Page.navigate", serde_json::json!({ "url": url }));
    wait_for("the page to load", 20, || {
        browser.eval("document.readyState") == "complete"
    });
    // Set once: a reload would lose it.
    browser.eval("window.loadedOnce = 'yes'");
    let figure = |b: &mut cdp::Browser, key: &str| -> u64 {
        b.eval(&format!(
            "document.querySelector('[data-k=\"{key}\"]').textContent"
        ))
        .as_str()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not on the page"))
    };
    let updates = |b: &mut cdp::Browser| -> u64 {
        b.eval("Number(document.body.dataset.updates || 0)")
            .as_u64()
            .unwrap_or(0)
    };
    for id in [
        "cache", "requests", "pools", "waf", "bus", "rollout", "errors",
    ] {
        assert_eq!(
            browser.eval(&format!("!!document.getElementById('{id}')")),
            true,
            "{id}"
        );
    }
    let first = figure(&mut browser, "hits");
    // Load runs; the open page follows it without a reload.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                shop_get();
            }
        })
    };
    wait_for("the hits on the page to grow", 20, || {
        figure(&mut browser, "hits") > first + 10
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().unwrap();
    assert!(updates(&mut browser) >= 1);
    // At rest, after the page's next update, its figures are /metrics' figures.
    std::thread::sleep(Duration::from_millis(200));
    let metrics = admin_get(admin, "/metrics");
    let m = body_of(&metrics).to_owned();
    let seen = updates(&mut browser);
    wait_for("the next update", 10, || updates(&mut browser) > seen);
    assert_eq!(
        figure(&mut browser, "hits") as f64,
        metric(&m, "magestack_cache_hits_total")
    );
    assert_eq!(
        figure(&mut browser, "misses") as f64,
        metric(&m, "magestack_cache_misses_total")
    );
    assert_eq!(
        figure(&mut browser, "objects") as f64,
        metric(&m, "magestack_cache_objects")
    );
    assert_eq!(
        figure(&mut browser, "requests_2xx") as f64,
        metric(&m, "magestack_requests_total{status_class=\"2xx\"}")
    );
    let pool_requests = browser.eval(
        "document.querySelector('[data-pool=\"frontend\"] [data-k=\"requests\"]').textContent",
    );
    assert_eq!(
        pool_requests.as_str().and_then(|t| t.parse::<f64>().ok()),
        Some(metric(
            &m,
            "magestack_pool_requests_total{pool=\"frontend\"}"
        ))
    );
    // A screenshot at a phone's width, kept as a test artifact.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();
    let phone = shots.join("phone-390.png");
    let _ = std::fs::remove_file(&phone);
    chromium_cli(
        &[
            "--window-size=390,1600",
            &format!("--screenshot={}", phone.display()),
        ],
        &url,
    );
    assert!(
        std::fs::metadata(&phone).map(|m| m.len()).unwrap_or(0) > 10_000,
        "{}",
        phone.display()
    );
    // PHP-FPM stopped: the open page marks the pool unhealthy and lists it
    // as a last error, still without a reload.
    php.stop();
    // (The pool's state is read live; the event comes with the sampler's
    // next reading, up to 2 s later.)
    let unhealthy_event = format!("127.0.0.1:{port} is unhealthy");
    wait_for("the page to show the pool unhealthy", 30, || {
        browser.eval("!!document.querySelector('.pool.unhealthy[data-pool=\"frontend\"]')") == true
            && browser
                .eval("document.getElementById('errors').textContent")
                .as_str()
                .is_some_and(|t| t.contains(&unhealthy_event))
    });
    let errors = browser.eval("document.getElementById('errors').textContent");
    assert!(
        errors
            .as_str()
            .unwrap_or("")
            .contains(&format!("127.0.0.1:{port} is unhealthy")),
        "{errors}"
    );
    assert_eq!(
        browser.eval("window.loadedOnce"),
        "yes",
        "the page was reloaded"
    );
    let unhealthy = shots.join("fpm-stopped.png");
    chromium_cli(
        &[
            "--window-size=1280,1400",
            &format!("--screenshot={}", unhealthy.display()),
        ],
        &url,
    );
    eprintln!(
        "screenshots: {} and {}",
        phone.display(),
        unhealthy.display()
    );
}

#[test]
fn status_page_shows_a_running_rollout_with_its_tracks_in_headless_chromium() {
    let mut browser = cdp::Browser::launch().expect(
        "no chromium: ./scripts/test installs it (scripts/deps start installs Debian's chromium)",
    );
    let port = common::free_addr().port();
    let _php = fpm::Fpm::start(port, 2);
    let state = tempfile::tempdir().unwrap();
    let rollout = format!(
        "[rollout]\ncanary_endpoints = [\"fcgi://127.0.0.1:{port}\"]\ncanary_release = \"r2\"\nstate_file = \"{}\"\nsteps = [\"50%/1h\", \"100%\"]\nanalysis_interval_secs = 1\n",
        state.path().join("rollout.json").display()
    );
    let (_edge, addr, admin, _dir) = edge_with_own_fpm(port, &rollout);
    wait_for("readiness", 20, || {
        admin_get(admin, "/readyz").starts_with("HTTP/1.1 200")
    });
    // No rollout running yet: the section says idle.
    let html = body_of(&admin_get(admin, "/")).to_owned();
    assert!(html.contains("id=\"rollout-tracks\""), "{html}");
    let started = http_raw(
        admin,
        "POST /admin/rollout/start HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(started.starts_with("HTTP/1.1 200"), "{started}");
    // Visitors on both tracks (each new visitor is bucketed at 50%).
    for i in 0..40 {
        http_raw(
            addr,
            &format!(
                "GET /women.html?v={i} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
            ),
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(body_of(&admin_get(admin, "/status.json"))).unwrap();
    let r = &json["rollout_state"];
    assert_eq!(r["state"], "running", "{json:#}");
    assert_eq!(r["weight"], 50, "{r:#}");
    assert!(
        json["rollout"]
            .as_str()
            .unwrap()
            .starts_with("running, step 1 (weight 50%), pool frontend"),
        "{json:#}"
    );
    browser.call("Page.enable", serde_json::json!({}));
    browser.call(
        "Page.navigate",
        serde_json::json!({ "url": format!("http://{admin}/") }),
    );
    wait_for("the page to load", 20, || {
        browser.eval("document.readyState") == "complete"
    });
    let text = |b: &mut cdp::Browser, sel: &str| -> String {
        b.eval(&format!(
            "(document.querySelector('{sel}') || {{}}).textContent || ''"
        ))
        .as_str()
        .unwrap_or("")
        .to_owned()
    };
    assert!(text(&mut browser, "#rollout-line").starts_with("running, step 1 (weight 50%)"));
    // At rest, the page's track figures are GET /rollout's.
    let seen = browser
        .eval("Number(document.body.dataset.updates || 0)")
        .as_u64()
        .unwrap_or(0);
    wait_for("the next update", 10, || {
        browser
            .eval("Number(document.body.dataset.updates || 0)")
            .as_u64()
            .unwrap_or(0)
            > seen
    });
    let live: serde_json::Value =
        serde_json::from_str(body_of(&admin_get(admin, "/rollout"))).unwrap();
    let mut total = 0;
    for track in ["stable", "canary"] {
        let shown: u64 = text(
            &mut browser,
            &format!("#rollout-tracks [data-track=\\\"{track}\\\"] .requests"),
        )
        .parse()
        .unwrap_or_else(|_| panic!("{track} requests not on the page"));
        let want = live["tracks"][track]["requests"].as_u64().unwrap();
        assert_eq!(shown, want, "{track}: {live:#}");
        total += shown;
        let errors = text(
            &mut browser,
            &format!("#rollout-tracks [data-track=\\\"{track}\\\"] .errors"),
        );
        assert_eq!(errors, "0", "{track}");
    }
    assert!(total >= 40, "{live:#}");
    let p95 = text(
        &mut browser,
        "#rollout-tracks [data-track=\\\"canary\\\"] .p95",
    );
    assert!(p95.ends_with(" ms"), "canary p95: {p95}");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("rollout.png");
    chromium_cli(
        &[
            "--window-size=1280,1400",
            &format!("--screenshot={}", shot.display()),
        ],
        &format!("http://{admin}/"),
    );
    eprintln!("screenshot: {}", shot.display());
}

/// Chromium's command line, headless with a fresh profile (screenshots).
fn chromium_cli(args: &[&str], url: &str) {
    let profile = tempfile::tempdir().unwrap();
    let _ = Command::new("timeout")
        .args(["120", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
}

// === readiness warm-up from a sitemap ===

#[test]
fn readiness_warms_the_pages_of_a_sitemap() {
    let port = common::free_addr().port();
    let _php = fpm::Fpm::start(port, 2);
    let dir = tempfile::tempdir().unwrap();
    let sitemap = dir.path().join("sitemap.xml");
    std::fs::write(
        &sitemap,
        "<urlset><url><loc>https://shop.test/women.html</loc></url><url><loc>https://shop.test/gear.html</loc></url>\
         <url><loc>https://shop.test/product/ws01.html</loc></url></urlset>",
    )
    .unwrap();
    let extra = format!(
        "[readiness]\nwarmup_urls = [\"/\"]\nwarmup_sitemap = \"{}\"\n",
        sitemap.display()
    );
    let (edge, _addr, admin, _cfg) = edge_with_own_fpm(port, &extra);
    // The warm-up goes to PHP (it warms OPcache and the code paths, not the
    // page cache): "/" and the sitemap's three pages reach the pool.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pools = admin_get(admin, "/pools");
        let requests: u64 = body_of(&pools)
            .split("\"requests\":")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if requests >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{pools}\n{}", edge.stderr_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = edge.stderr_text();
    assert!(log.contains("Warm-up pages from the sitemap"), "{log}");
    // A sitemap that is not there does not keep the edge from starting.
    let extra =
        "[readiness]\nwarmup_urls = [\"/\"]\nwarmup_sitemap = \"/nonexistent/sitemap.xml\"\n";
    let (edge, _addr, admin, _cfg) = edge_with_own_fpm(port, extra);
    wait_for("readiness", 20, || {
        admin_get(admin, "/readyz").starts_with("HTTP/1.1 200")
    });
    assert!(
        edge.stderr_text().contains("not read; skipped"),
        "{}",
        edge.stderr_text()
    );
}
