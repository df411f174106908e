//! Kubernetes manifests (`kubectl kustomize` output, or a directory of
//! rendered files) reduced to the facts the checks need: per workload with
//! PHP-FPM, its pools, php.ini and edge config from the ConfigMaps it mounts
//! and its memory limit; Services and replica counts for `http_cache_hosts`
//! and the database's connection budget.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ini::{k8s_bytes, Ini};
use crate::inputs::{ClusterFacts, MagentoSettings, ServiceFacts, Unit, WorkloadFacts};

/// Manifests that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// Not YAML.
    #[error("not YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// What the manifests say.
#[derive(Debug, Clone, Default)]
pub struct K8sFacts {
    /// One per workload with a `php-fpm` container.
    pub units: Vec<Unit>,
    /// Services and workloads.
    pub cluster: ClusterFacts,
    /// Magento's settings from the `MAGENTO_*` variables the pods get.
    pub magento: Option<MagentoSettings>,
    /// What could not be used (an edge.toml that does not load …).
    pub notes: Vec<String>,
}

/// Parses every YAML document of `text`.
pub fn parse(text: &str) -> Result<K8sFacts, K8sError> {
    let mut docs = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(d)?;
        if v.is_object() {
            docs.push(v);
        }
    }
    Ok(facts(&docs))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn strmap(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let t = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), t)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn facts(docs: &[Value]) -> K8sFacts {
    let kind = |d: &Value| s(d, &["kind"]).unwrap_or("").to_owned();
    let name = |d: &Value| s(d, &["metadata", "name"]).unwrap_or("").to_owned();
    let configmaps: BTreeMap<String, BTreeMap<String, String>> = docs
        .iter()
        .filter(|d| kind(d) == "ConfigMap")
        .map(|d| (name(d), strmap(d.get("data"))))
        .collect();
    let hpa_max: BTreeMap<String, u64> = docs
        .iter()
        .filter(|d| kind(d) == "HorizontalPodAutoscaler")
        .filter_map(|d| {
            let target = s(d, &["spec", "scaleTargetRef", "name"])?.to_owned();
            let max = d.get("spec")?.get("maxReplicas")?.as_u64()?;
            Some((target, max))
        })
        .collect();
    let mut out = K8sFacts::default();
    let mut env_vars = BTreeMap::new();
    for d in docs {
        let k = kind(d);
        if k == "Service" {
            out.cluster.services.push(ServiceFacts {
                name: name(d),
                selector: strmap(d.get("spec").and_then(|s| s.get("selector"))),
                ports: arr(d, &["spec", "ports"])
                    .iter()
                    .filter_map(|p| p.get("port")?.as_u64())
                    .filter_map(|p| u16::try_from(p).ok())
                    .collect(),
            });
            continue;
        }
        if !matches!(k.as_str(), "Deployment" | "StatefulSet" | "Rollout") {
            continue;
        }
        let n = name(d);
        let Some(pod) = d.get("spec").and_then(|s| s.get("template")) else {
            continue;
        };
        let max_replicas = hpa_max.get(&n).copied().unwrap_or_else(|| {
            d.get("spec")
                .and_then(|s| s.get("replicas"))
                .and_then(Value::as_u64)
                .unwrap_or(1)
        });
        let volumes: BTreeMap<&str, &str> = arr(pod, &["spec", "volumes"])
            .iter()
            .filter_map(|v| Some((s(v, &["name"])?, s(v, &["configMap", "name"])?)))
            .collect();
        let containers = arr(pod, &["spec", "containers"]);
        // The files a container mounts from ConfigMaps: (mount path, text).
        let mounted = |c: &Value| -> Vec<(String, String)> {
            let mut files = Vec::new();
            for m in arr(c, &["volumeMounts"]) {
                let (Some(vol), Some(path)) = (s(m, &["name"]), s(m, &["mountPath"])) else {
                    continue;
                };
                let Some(cm) = volumes.get(vol).and_then(|cm| configmaps.get(*cm)) else {
                    continue;
                };
                match s(m, &["subPath"]) {
                    Some(key) => {
                        if let Some(t) = cm.get(key) {
                            files.push((format!("{path} ({key})"), t.clone()));
                        }
                    }
                    None => files.extend(
                        cm.iter()
                            .map(|(key, t)| (format!("{path}/{key}"), t.clone())),
                    ),
                }
            }
            files
        };
        let mut workload = WorkloadFacts {
            name: format!("{}/{}", k.to_ascii_lowercase(), n),
            labels: strmap(pod.get("metadata").and_then(|m| m.get("labels"))),
            max_replicas,
            ..Default::default()
        };
        let mut unit = Unit {
            name: workload.name.clone(),
            max_replicas: Some(max_replicas),
            ..Default::default()
        };
        let mut has_fpm = false;
        for c in containers
            .iter()
            .chain(arr(pod, &["spec", "initContainers"]))
        {
            let cname = s(c, &["name"]).unwrap_or("");
            for e in arr(c, &["envFrom"]) {
                if let Some(cm) = s(e, &["configMapRef", "name"]).and_then(|n| configmaps.get(n)) {
                    env_vars.extend(cm.clone());
                }
            }
            let files = mounted(c);
            if cname == "php-fpm" {
                has_fpm = true;
                unit.memory_limit = s(c, &["resources", "limits", "memory"]).and_then(k8s_bytes);
                for (path, text) in &files {
                    if path.contains(".conf") {
                        unit.pools.extend(Ini::parse(path, text).pools());
                    } else if path.contains(".ini") {
                        unit.php.extend(Ini::parse(path, text).php_settings());
                        unit.php_origin = if unit.php_origin.is_empty() {
                            format!("{} {path}", workload.name)
                        } else {
                            format!("{}, {path}", unit.php_origin)
                        };
                    }
                }
            } else if cname == "edge" {
                workload.has_edge = true;
                if let Some((path, text)) = files.iter().find(|(p, _)| p.contains(".toml")) {
                    let origin = format!("{} {path}", workload.name);
                    match crate::edge_file::edge_facts(&origin, text) {
                        Ok(e) => unit.edge = Some(e),
                        Err(e) => out.notes.push(format!("{origin}: {e}")),
                    }
                }
            } else if cname == "dbproxy" {
                let cap = files
                    .iter()
                    .flat_map(|(_, t)| t.lines())
                    .find_map(|l| {
                        let (k, v) = l.split_once('=')?;
                        (k.trim() == "max_backend_connections")
                            .then(|| v.trim().parse::<u64>().ok())
                            .flatten()
                    })
                    .unwrap_or(20);
                workload.dbproxy_backend_connections = Some(cap);
            }
        }
        workload.php_workers = unit.pools.iter().filter_map(|p| p.max_children).sum();
        out.cluster.workloads.push(workload);
        // An edge without PHP in its pod (the edges as their own Deployment,
        // PHP-FPM found by DNS) is a unit too: its purge bus and pools matter.
        if has_fpm || unit.edge.is_some() {
            out.units.push(unit);
        }
    }
    out.magento = crate::magento::from_kit_env("the pods' MAGENTO_* variables", &env_vars);
    out
}
