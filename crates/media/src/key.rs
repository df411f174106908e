//! Request paths to object keys.
//!
//! The edge hands in the normalized path (`%XX` decoded, `//` merged, `.`
//! and `..` resolved by `magestack_routing::normalize`); the checks here are
//! a second wall that does not rely on that: a key is built only from
//! segments that are plain names, so no request can name an object outside
//! the source's prefix, whatever encoding it used.

/// Why a path has no object key. Every variant is answered 404 and the
/// store is never asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The path is not under the location (`/media/`, `/static/`).
    #[error("path is not under {location}")]
    NotUnder {
        /// The location prefix.
        location: &'static str,
    },
    /// The path names the location itself or a directory.
    #[error("path names no file")]
    NoFile,
    /// A segment could leave the prefix or is not a plain name.
    #[error("segment {segment:?} is refused")]
    Refused {
        /// The offending segment (for logs).
        segment: String,
    },
}

/// Longest key accepted (S3's limit is 1024 bytes).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks one segment: a plain name, not `.` or `..`, without `\`, `%`,
/// NUL or other control characters.
fn plain_segment(seg: &str) -> Result<(), KeyError> {
    let bad = seg.is_empty()
        || seg == "."
        || seg == ".."
        || seg.chars().any(|c| c == '\\' || c == '%' || c.is_control());
    if bad {
        return Err(KeyError::Refused {
            segment: seg.to_owned(),
        });
    }
    Ok(())
}

/// Joins `prefix` and the checked `rest` (segments separated by `/`).
fn join(prefix: &str, parts: &[&str], rest: &str) -> Result<String, KeyError> {
    if rest.is_empty() || rest.ends_with('/') {
        return Err(KeyError::NoFile);
    }
    for seg in rest.split('/') {
        plain_segment(seg)?;
    }
    let mut key = String::with_capacity(prefix.len() + rest.len() + 16);
    for p in std::iter::once(prefix).chain(parts.iter().copied()) {
        if !p.is_empty() {
            key.push_str(p);
            key.push('/');
        }
    }
    key.push_str(rest);
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::Refused {
            segment: "(key longer than 1024 bytes)".to_owned(),
        });
    }
    Ok(key)
}

/// The key of `/media/<rest>` under `prefix` (no leading or trailing `/`).
///
/// # Errors
///
/// [`KeyError`] when the path is not under `/media/`, names no file, or has
/// a segment that is not a plain name.
pub fn media_key(prefix: &str, path: &str) -> Result<String, KeyError> {
    let rest = path.strip_prefix("/media/").ok_or(KeyError::NotUnder {
        location: "/media/",
    })?;
    join(prefix, &[], rest)
}

/// An object key of a static file and the release it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticKey {
    /// The release: the `NNN` of `/static/versionNNN/`, else the configured
    /// deployed version; `None` when neither.
    pub release: Option<String>,
    /// `prefix/<release>/<path without the version segment>`.
    pub key: String,
}

/// Splits Magento's version segment off a path under `/static/`, as the
/// sample's `rewrite ^/static/(version\d*/)?(.*)$ /static/$2 last`:
/// `/static/version1712/frontend/x.css` → `(Some("1712"), "frontend/x.css")`.
/// `version/` without digits is stripped too (release `""`).
pub fn strip_version(path_under_static: &str) -> (Option<&str>, &str) {
    if let Some(after) = path_under_static.strip_prefix("version") {
        if let Some((digits, rest)) = after.split_once('/') {
            if digits.bytes().all(|b| b.is_ascii_digit()) {
                return (Some(digits), rest);
            }
        }
    }
    (None, path_under_static)
}

/// The key of `/static/[versionNNN/]<rest>` under `prefix`, per release.
///
/// # Errors
///
/// As [`media_key`], for `/static/`.
pub fn static_key(
    prefix: &str,
    path: &str,
    deployed_version: Option<&str>,
) -> Result<StaticKey, KeyError> {
    let rest = path.strip_prefix("/static/").ok_or(KeyError::NotUnder {
        location: "/static/",
    })?;
    let (version, rest) = strip_version(rest);
    let release = match version {
        Some(v) if !v.is_empty() => Some(v),
        _ => deployed_version.filter(|v| !v.is_empty()),
    };
    if let Some(r) = release {
        plain_segment(r)?;
    }
    let key = join(prefix, &[release.unwrap_or("")], rest)?;
    Ok(StaticKey {
        release: release.map(str::to_owned),
        key,
    })
}

/// The disk-cache file name of an object or a variant: the SHA-256 of its
/// parts (bucket, key, and for a variant the original's `ETag`, the
/// canonical parameters and the output format), in hex. Fixed length, no
/// path characters, so no request can steer where the cache writes.
pub fn cache_name(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_fixed_hex_and_unambiguous() {
        let a = cache_name(&["b", "k/x.jpg"]);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(cache_name(&["ab", "c"]), cache_name(&["a", "bc"]));
        assert_eq!(a, cache_name(&["b", "k/x.jpg"]));
    }
    use proptest::prelude::*;

    #[test]
    fn media_keys() {
        assert_eq!(
            media_key("media", "/media/catalog/product/a/b/ab.jpg").unwrap(),
            "media/catalog/product/a/b/ab.jpg"
        );
        assert_eq!(media_key("", "/media/x.png").unwrap(), "x.png");
        assert_eq!(media_key("a/b", "/media/x.png").unwrap(), "a/b/x.png");
        for bad in [
            "/media/",
            "/media/dir/",
            "/media/../env.php",
            "/media/a/../../x",
            "/media/./x",
            "/media/a//x",
            "/media/%2e%2e/x",
            "/media/..%2fx",
            "/media/a\\..\\x",
            "/media/a\0b",
            "/media/a\nb",
            "/static/x",
            "/mediax/y",
        ] {
            assert!(media_key("media", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn static_keys_per_release() {
        assert_eq!(
            static_key(
                "static",
                "/static/version1712/frontend/Magento/luma/en_US/x.css",
                None
            )
            .unwrap(),
            StaticKey {
                release: Some("1712".into()),
                key: "static/1712/frontend/Magento/luma/en_US/x.css".into()
            }
        );
        assert_eq!(
            static_key("static", "/static/frontend/x.css", Some("99")).unwrap(),
            StaticKey {
                release: Some("99".into()),
                key: "static/99/frontend/x.css".into()
            }
        );
        assert_eq!(
            static_key("static", "/static/version/frontend/x.css", None).unwrap(),
            StaticKey {
                release: None,
                key: "static/frontend/x.css".into()
            }
        );
        assert_eq!(
            static_key("s", "/static/versionabc/x.css", None)
                .unwrap()
                .key,
            "s/versionabc/x.css"
        );
        assert!(static_key("s", "/static/version1/../x", None).is_err());
        assert!(static_key("s", "/static/x", Some("..")).is_err());
    }

    proptest! {
        /// Whatever the path, a key that is built stays under the prefix and
        /// has no segment that moves up or sideways.
        #[test]
        fn keys_never_escape_the_prefix(path in "/media/[a-z./%\\\\\\x00]{0,24}") {
            if let Ok(key) = media_key("pfx", &path) {
                prop_assert!(key.starts_with("pfx/"));
                for seg in key.split('/') {
                    prop_assert!(seg != ".." && seg != "." && !seg.is_empty());
                    prop_assert!(!seg.contains(['%', '\\', '\0']));
                }
            }
        }

        #[test]
        fn plain_paths_map_one_to_one(segs in proptest::collection::vec("[a-z0-9_-][a-z0-9_.-]{0,8}", 1..5)) {
            let segs: Vec<_> = segs.into_iter().filter(|s| s != "." && s != "..").collect();
            prop_assume!(!segs.is_empty());
            let rest = segs.join("/");
            prop_assert_eq!(media_key("p", &format!("/media/{rest}")).unwrap(), format!("p/{rest}"));
        }
    }
}
