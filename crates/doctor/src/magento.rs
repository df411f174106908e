//! Magento's settings from `app/etc/env.php` (as JSON: the binary has PHP
//! print it) or from the deploy kit's `magento-env` variables, which
//! `deploy/php/magestack-env.php` turns into env.php.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::inputs::MagentoSettings;

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

/// From env.php's array, printed with `json_encode`.
pub fn from_env_php(origin: &str, env: &Value) -> MagentoSettings {
    let session_redis = at(env, &["session", "redis"])
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| text(v).map(|t| (k.clone(), t)))
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    let hosts = at(env, &["http_cache_hosts"])
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    let host = h.get("host").and_then(text)?;
                    let port = h.get("port").and_then(text).unwrap_or_else(|| "80".into());
                    Some(format!("{host}:{port}"))
                })
                .collect()
        })
        .unwrap_or_default();
    MagentoSettings {
        origin: origin.to_owned(),
        mode: at(env, &["MAGE_MODE"]).and_then(text),
        session_save: Some(
            at(env, &["session", "save"])
                .and_then(text)
                .unwrap_or_else(|| "files".into()),
        ),
        session_redis,
        cache_backend: at(env, &["cache", "frontend", "default", "backend"]).and_then(text),
        knows_backends: true,
        fpc_application: at(
            env,
            &[
                "system",
                "default",
                "system",
                "full_page_cache",
                "caching_application",
            ],
        )
        .and_then(text),
        http_cache_hosts: hosts,
        db_host: at(env, &["db", "connection", "default", "host"]).and_then(text),
    }
}

/// From the kit's `MAGENTO_*` variables: mode, purge hosts and database
/// host are there; the session and cache backends are written by the kit's
/// env.php generator and not known from the variables.
pub fn from_kit_env(origin: &str, vars: &BTreeMap<String, String>) -> Option<MagentoSettings> {
    if !vars.keys().any(|k| k.starts_with("MAGENTO_")) {
        return None;
    }
    Some(MagentoSettings {
        origin: origin.to_owned(),
        mode: vars.get("MAGENTO_MODE").cloned(),
        http_cache_hosts: vars
            .get("MAGENTO_HTTP_CACHE_HOSTS")
            .map(|h| {
                h.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        db_host: vars.get("MAGENTO_DB_HOST").cloned(),
        ..Default::default()
    })
}
