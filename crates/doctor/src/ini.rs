//! php.ini and PHP-FPM pool files: `key = value` lines in `[sections]`,
//! `;` and `#` comments, and the pool's `php_value[x]` /
//! `php_admin_value[x]` / `php_flag[x]` / `php_admin_flag[x]` overrides of
//! PHP settings.

use std::collections::BTreeMap;

/// One parsed file: directives per section, in file order; later keys win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    /// Where it came from, for messages.
    pub origin: String,
    /// `(section, key, value)`; the section is `""` before the first header.
    pub entries: Vec<(String, String, String)>,
}

impl Ini {
    /// Parses `text`; lines that are not `key = value` are skipped (PHP
    /// itself warns about them; the doctor is about what is set).
    pub fn parse(origin: &str, text: &str) -> Ini {
        let mut section = String::new();
        let mut entries = Vec::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = strip_comment(v.trim());
            let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
            entries.push((section.clone(), k.trim().to_owned(), v));
        }
        Ini {
            origin: origin.to_owned(),
            entries,
        }
    }

    /// The last value of `key` in any section.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.as_str())
    }

    /// The PHP settings this file sets: plain keys, and a pool's
    /// `php_*value[x]` / `php_*flag[x]` as `x`.
    pub fn php_settings(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (_, k, v) in &self.entries {
            let key = [
                "php_admin_value[",
                "php_value[",
                "php_admin_flag[",
                "php_flag[",
            ]
            .iter()
            .find_map(|p| k.strip_prefix(p).and_then(|r| r.strip_suffix(']')))
            .unwrap_or(k);
            out.insert(key.to_owned(), v.clone());
        }
        out
    }

    /// The pool sections of an FPM file (every section but `global`), each
    /// with its own directives.
    pub fn pools(&self) -> Vec<FpmPool> {
        let mut names: Vec<&str> = Vec::new();
        for (s, _, _) in &self.entries {
            if !s.is_empty() && s != "global" && !names.contains(&s.as_str()) {
                names.push(s);
            }
        }
        names
            .into_iter()
            .map(|name| {
                let sub = Ini {
                    origin: self.origin.clone(),
                    entries: self
                        .entries
                        .iter()
                        .filter(|(s, _, _)| s == name)
                        .cloned()
                        .collect(),
                };
                FpmPool {
                    name: name.to_owned(),
                    origin: self.origin.clone(),
                    pm: sub.get("pm").unwrap_or("dynamic").to_owned(),
                    max_children: sub.get("pm.max_children").and_then(|v| v.parse().ok()),
                    php: sub.php_settings(),
                }
            })
            .collect()
    }
}

/// `value ; comment` → `value` (not inside quotes).
fn strip_comment(v: &str) -> &str {
    if v.starts_with('"') {
        return v;
    }
    match v.find(" ;") {
        Some(i) => &v[..i],
        None => v,
    }
}

/// One PHP-FPM pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FpmPool {
    /// The section name (`frontend`, `www` …).
    pub name: String,
    /// The file it came from.
    pub origin: String,
    /// `static`, `dynamic` (FPM's default) or `ondemand`.
    pub pm: String,
    /// `pm.max_children`.
    pub max_children: Option<u64>,
    /// Every directive of the pool, `php_*value[x]` as `x`.
    pub php: BTreeMap<String, String>,
}

/// A php.ini size (`384M`, `2G`, `1024K`, bytes) in bytes; `-1` (no limit)
/// and garbage are `None`.
pub fn php_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 1024),
        'm' | 'M' => (&t[..t.len() - 1], 1024 * 1024),
        'g' | 'G' => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

/// A php.ini boolean (`1`, `On`, `true`, `yes`).
pub fn php_bool(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "1" | "on" | "true" | "yes"
    )
}

/// A Kubernetes memory quantity (`2304Mi`, `4G`, `123456`) in bytes.
pub fn k8s_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "Ki" => 1024,
        "Mi" => 1024 * 1024,
        "Gi" => 1024 * 1024 * 1024,
        "Ti" => 1024_u64.pow(4),
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_directives_and_php_overrides() {
        let ini = Ini::parse(
            "f.conf",
            "[global]\nx = 1\n[www]\npm = static ; fixed\npm.max_children = 8\nphp_admin_value[memory_limit] = 384M\n",
        );
        let pools = ini.pools();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].pm, "static");
        assert_eq!(pools[0].max_children, Some(8));
        assert_eq!(
            pools[0].php.get("memory_limit").map(String::as_str),
            Some("384M")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(php_bytes("384M"), Some(384 << 20));
        assert_eq!(php_bytes("-1"), None);
        assert_eq!(k8s_bytes("2304Mi"), Some(2304 << 20));
        assert_eq!(k8s_bytes("2G"), Some(2_000_000_000));
    }
}
