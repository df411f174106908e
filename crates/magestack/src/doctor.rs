//! `magestack doctor`: reads what it is given (files, `php -r` for env.php,
//! `kubectl kustomize`, a live edge's admin listener) into
//! `magestack_doctor::Inputs`, runs the pure checks and prints the findings.
//! Exit 0 clean, 1 with an error-level finding, 2 when an input cannot be
//! read (a usage error: the operator named something that is not there).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use magestack_doctor::ini::Ini;
use magestack_doctor::{CodeStats, Finding, Inputs, LiveEdge, Severity, Unit};

use crate::cli::{DoctorArgs, DoctorFormat};

/// A usage error: the caller turns it into exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    Usage(msg.into()).into()
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))
}

pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    if args.magento_root.is_none()
        && args.fpm_conf.is_empty()
        && args.php_ini.is_none()
        && args.edge_config.is_none()
        && args.k8s.is_none()
        && args.edge.is_none()
    {
        return Err(usage(
            "give at least one input: --magento-root, --fpm-conf, --php-ini, --edge-config, --k8s or --edge",
        ));
    }
    let mut inputs = Inputs {
        db_max_connections: args.db_max_connections,
        ..Default::default()
    };
    let mut notes = Vec::new();
    if let Some(dir) = &args.k8s {
        let text = render_k8s(dir)?;
        let facts = magestack_doctor::k8s::parse(&text)
            .map_err(|e| usage(format!("{}: {e}", dir.display())))?;
        inputs.units = facts.units;
        inputs.cluster = Some(facts.cluster);
        inputs.magento = facts.magento;
        notes.extend(facts.notes);
    }
    // Files given directly form one more place PHP-FPM runs.
    if !args.fpm_conf.is_empty() || args.php_ini.is_some() || args.edge_config.is_some() {
        let mut unit = Unit {
            name: "given files".into(),
            ..Default::default()
        };
        for f in &args.fpm_conf {
            let ini = Ini::parse(&f.display().to_string(), &read(f)?);
            let pools = ini.pools();
            if pools.is_empty() {
                return Err(usage(format!("{}: no pool section ([name])", f.display())));
            }
            unit.pools.extend(pools);
        }
        if let Some(f) = &args.php_ini {
            unit.php = Ini::parse(&f.display().to_string(), &read(f)?).php_settings();
            unit.php_origin = f.display().to_string();
        }
        if let Some(f) = &args.edge_config {
            let origin = f.display().to_string();
            unit.edge = Some(
                magestack_doctor::edge_facts(&origin, &read(f)?)
                    .map_err(|e| usage(format!("{origin}: {e}")))?,
            );
        }
        inputs.units.push(unit);
    }
    if let Some(root) = &args.magento_root {
        let env = root.join("app/etc/env.php");
        if !env.is_file() {
            return Err(usage(format!("{}: no app/etc/env.php", root.display())));
        }
        match env_php(&env) {
            Ok(v) => {
                inputs.magento = Some(magestack_doctor::magento::from_env_php(
                    &env.display().to_string(),
                    &v,
                ))
            }
            Err(e) => notes.push(format!(
                "{}: not read ({e:#}); the Magento checks (mode, sessions, cache, http_cache_hosts) were skipped",
                env.display()
            )),
        }
        inputs.code = Some(code_stats(root));
    }
    if let Some(edge) = &args.edge {
        inputs.live = Some(live(edge));
    }
    let mut findings = magestack_doctor::audit(&inputs);
    findings.extend(notes.into_iter().map(|n| {
        Finding::new(
            Severity::Info,
            "doctor.input",
            n,
            "what is not read is not checked",
            "install what is missing (php-cli) or fix the input",
        )
    }));
    print(&findings, args.format)?;
    Ok(if findings.iter().any(|f| f.severity == Severity::Error) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print(findings: &[Finding], format: DoctorFormat) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        DoctorFormat::Json => {
            serde_json::to_writer_pretty(&mut out, findings).context("writing JSON")?;
            writeln!(out)?;
        }
        DoctorFormat::Text => {
            for f in findings {
                writeln!(
                    out,
                    "{:<7} {}: {}",
                    f.severity.as_str().to_uppercase(),
                    f.check,
                    f.message
                )?;
                writeln!(out, "        why: {}", f.why)?;
                writeln!(out, "        fix: {}", f.fix)?;
            }
            let count = |s| findings.iter().filter(|f| f.severity == s).count();
            writeln!(
                out,
                "doctor: {} errors, {} warnings, {} notes",
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Info)
            )?;
        }
    }
    Ok(())
}

/// A kustomize directory rendered by `kubectl kustomize`; otherwise the
/// YAML files of the directory (or the file) as they are.
fn render_k8s(dir: &Path) -> Result<String> {
    if dir.is_file() {
        return read(dir);
    }
    if !dir.is_dir() {
        return Err(usage(format!("{}: no such directory", dir.display())));
    }
    if dir.join("kustomization.yaml").is_file() || dir.join("kustomization.yml").is_file() {
        let kubectl = std::env::var_os("MAGESTACK_KUBECTL").unwrap_or_else(|| "kubectl".into());
        let out = std::process::Command::new(kubectl)
            .arg("kustomize")
            .arg(dir)
            .output()
            .map_err(|e| {
                usage(format!(
                    "{} is a kustomize directory and kubectl could not run ({e}): install kubectl or give rendered manifests (kubectl kustomize DIR > all.yaml; --k8s all.yaml)",
                    dir.display()
                ))
            })?;
        if !out.status.success() {
            return Err(usage(format!(
                "kubectl kustomize {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut text = String::new();
    for f in files {
        text.push_str("\n---\n");
        text.push_str(&read(&f)?);
    }
    Ok(text)
}

/// env.php is PHP: only PHP can evaluate it (constants, `getenv()`).
fn env_php(path: &Path) -> Result<serde_json::Value> {
    let out = std::process::Command::new("php")
        .args(["-r", "echo json_encode(include $argv[1]);"])
        .arg(path)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("PHP is not installed here (php-cli is needed to evaluate env.php)")
        }
        Err(e) => return Err(e).context("running php"),
    };
    if !out.status.success() {
        bail!(
            "php failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("env.php did not return an array")
}

/// PHP files and bytes OPcache will hold: the code directories, not
/// `pub/static`, `var` or media.
fn code_stats(root: &Path) -> CodeStats {
    let mut stats = CodeStats::default();
    let mut stack: Vec<PathBuf> = ["app", "vendor", "generated", "lib", "setup"]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir())
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && p.extension().is_some_and(|x| x == "php") {
                stats.php_files += 1;
                stats.php_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    stats
}

/// A live edge's readiness, pools and cache, from its admin listener.
fn live(edge: &str) -> LiveEdge {
    let mut l = LiveEdge {
        address: crate::admin_client::authority(edge),
        ..Default::default()
    };
    let token = match crate::admin_client::token() {
        Ok(t) => t,
        Err(e) => {
            l.unreachable = Some(format!("{e:#}"));
            return l;
        }
    };
    let get = |path: &str| crate::admin_client::get(edge, path, token.as_deref());
    match get("/readyz") {
        Ok((status, body)) => {
            l.ready = status == 200;
            l.readyz = body;
        }
        Err(e) => {
            l.unreachable = Some(format!("{e:#}"));
            return l;
        }
    }
    match get("/pools") {
        Ok((200, body)) => {
            let pools: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
            l.pools = pools
                .iter()
                .map(|p| {
                    let name = p["name"].as_str().unwrap_or("?").to_owned();
                    let eps = p["endpoints"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|e| {
                                    (
                                        e["endpoint"].as_str().unwrap_or("?").to_owned(),
                                        e["health"].as_str().unwrap_or("unknown").to_owned(),
                                        e["warm"].as_bool().unwrap_or(true),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (name, eps)
                })
                .collect();
        }
        Ok((status, body)) => {
            l.unreachable = Some(format!("/pools answered {status}: {}", body.trim()));
            return l;
        }
        Err(e) => {
            l.unreachable = Some(format!("{e:#}"));
            return l;
        }
    }
    if let Ok((200, body)) = get("/cache/stats") {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v["enabled"].as_bool() == Some(true) {
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            l.cache = Some((n("objects"), n("hits"), n("misses")));
        }
    }
    l
}
