//! `[media]`, `[static]` and `[object_store]`: file sources, the media disk
//! cache and image resizing, checked.

use std::path::PathBuf;
use std::time::Duration;

use crate::compile::{p, Errors};
use crate::error::ErrorKind;
use crate::file;

/// Where `pub/media` or `pub/static` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// The local docroot, as nginx serves it.
    Docroot,
    /// An S3 bucket (or an S3-compatible store): objects under `prefix`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing `/`; `""` for the bucket root.
        prefix: String,
    },
}

impl FileSource {
    /// Parses `"docroot"` or `"s3://bucket/prefix"`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] for other schemes, an empty or malformed bucket
    /// name, or a prefix with empty, `.` or `..` segments.
    pub fn parse(s: &str) -> Result<Self, ErrorKind> {
        if s == "docroot" {
            return Ok(Self::Docroot);
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Err(ErrorKind::Invalid(format!(
                "unknown source {s:?}: expected \"docroot\" or \"s3://bucket/prefix\""
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(ErrorKind::Invalid(format!(
                "invalid bucket name {bucket:?} in {s:?}: 3 to 63 lower-case letters, digits, '-' or '.'"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty()
            && prefix.split('/').any(|seg| {
                seg.is_empty() || seg == "." || seg == ".." || seg.contains(['\\', '\0'])
            })
        {
            return Err(ErrorKind::Invalid(format!(
                "invalid prefix {prefix:?} in {s:?}: no empty, '.' or '..' segments"
            )));
        }
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// True for an object-store source.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::S3 { .. })
    }
}

/// Checked `[media]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Where `/media/` comes from.
    pub source: FileSource,
    /// Disk cache directory (absolute).
    pub cache_dir: PathBuf,
    /// Disk cache ceiling in bytes, at least 1 MiB.
    pub cache_size_bytes: u64,
    /// Resize `image_optimization_parameters` URLs.
    pub resize: bool,
    /// Largest width asked for.
    pub resize_max_width: u32,
    /// Largest height asked for.
    pub resize_max_height: u32,
    /// Allowed `(width, height)` pairs; empty = any within the bounds.
    pub resize_sizes: Vec<(u32, u32)>,
    /// Largest original resized, in bytes.
    pub resize_max_source_bytes: u64,
    /// Largest original resized, in pixels.
    pub resize_max_source_pixels: u64,
    /// Resize threads; at least 1 (0 in the file = one per CPU, resolved by the edge).
    pub resize_workers: usize,
    /// Resizes waiting for a thread before 503.
    pub resize_queue: usize,
    /// WebP for `Accept: image/webp`.
    pub webp: bool,
    /// `Retry-After` of a 503.
    pub retry_after: Duration,
    /// Timeout of one request to the store.
    pub store_timeout: Duration,
}

/// Checked `[static]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSettings {
    /// Where `/static/` comes from.
    pub source: FileSource,
    /// Release directory for URLs without `versionNNN`; `None` = none.
    pub deployed_version: Option<String>,
}

/// Checked `[object_store]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectStoreSettings {
    /// `http(s)://host[:port]` of an S3-compatible server; `None` = AWS.
    pub endpoint: Option<String>,
    /// Region; `None` = from the environment.
    pub region: Option<String>,
}

fn source(key: &str, s: &str, errs: &mut Errors) -> FileSource {
    match FileSource::parse(s.trim()) {
        Ok(src) => src,
        Err(kind) => {
            errs.push(p(key), kind);
            FileSource::Docroot
        }
    }
}

fn size(key: &str, s: &file::ByteSize, min: u64, errs: &mut Errors) -> u64 {
    match s.bytes() {
        Ok(n) if n < min => {
            errs.push(
                p(key),
                ErrorKind::Invalid(format!("must be at least {min} bytes, got {n}")),
            );
            min
        }
        Ok(n) => n,
        Err(kind) => {
            errs.push(p(key), kind);
            min
        }
    }
}

fn side(key: &str, n: u32, errs: &mut Errors) -> u32 {
    if n == 0 || n > 16_384 {
        errs.push(
            p(key),
            ErrorKind::Invalid(format!("must be 1 to 16384, got {n}")),
        );
    }
    n.clamp(1, 16_384)
}

/// `[media]`.
pub(crate) fn compile_media(m: file::MediaConfig, errs: &mut Errors) -> MediaSettings {
    let source = source("media.source", &m.source, errs);
    if !m.cache_dir.is_absolute() {
        errs.push(
            p("media.cache_dir"),
            ErrorKind::Invalid(format!(
                "must be an absolute path, got {:?}",
                m.cache_dir.display().to_string()
            )),
        );
    }
    let max_w = side("media.resize_max_width", m.resize_max_width, errs);
    let max_h = side("media.resize_max_height", m.resize_max_height, errs);
    let mut sizes = Vec::new();
    for (i, s) in m.resize_sizes.iter().enumerate() {
        let parsed = s.split_once(['x', 'X']).and_then(|(w, h)| {
            Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?))
        });
        match parsed {
            Some((w, h)) if w >= 1 && h >= 1 && w <= max_w && h <= max_h => sizes.push((w, h)),
            _ => errs.push(
                p("media.resize_sizes").index(i),
                ErrorKind::Invalid(format!(
                    "expected \"WIDTHxHEIGHT\" within resize_max_width x resize_max_height ({max_w}x{max_h}), got {s:?}"
                )),
            ),
        }
    }
    if m.resize_max_source_pixels == 0 {
        errs.push(p("media.resize_max_source_pixels"), ErrorKind::Zero);
    }
    let workers = if m.resize_workers == 0 {
        0
    } else {
        m.resize_workers as usize
    };
    MediaSettings {
        source,
        cache_dir: m.cache_dir,
        cache_size_bytes: size("media.cache_size", &m.cache_size, 1 << 20, errs),
        resize: m.resize,
        resize_max_width: max_w,
        resize_max_height: max_h,
        resize_sizes: sizes,
        resize_max_source_bytes: size(
            "media.resize_max_source_bytes",
            &m.resize_max_source_bytes,
            1,
            errs,
        ),
        resize_max_source_pixels: m.resize_max_source_pixels.max(1),
        resize_workers: workers,
        resize_queue: m.resize_queue as usize,
        webp: m.webp,
        retry_after: errs.positive_secs(p("media.retry_after_secs"), m.retry_after_secs),
        store_timeout: errs.positive_secs(p("media.store_timeout_secs"), m.store_timeout_secs),
    }
}

/// `[static]`.
pub(crate) fn compile_static(s: file::StaticConfig, errs: &mut Errors) -> StaticSettings {
    let source = source("static.source", &s.source, errs);
    let v = s.deployed_version.trim();
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || v == "."
        || v == ".."
    {
        errs.push(
            p("static.deployed_version"),
            ErrorKind::Invalid(format!("letters, digits, '-', '_' and '.' only, got {v:?}")),
        );
    }
    StaticSettings {
        source,
        deployed_version: (!v.is_empty()).then(|| v.to_owned()),
    }
}

/// `[object_store]`, and that a store is configured consistently with the sources.
pub(crate) fn compile_object_store(
    o: file::ObjectStoreConfig,
    errs: &mut Errors,
) -> ObjectStoreSettings {
    let endpoint = o.endpoint.trim().trim_end_matches('/');
    let endpoint = if endpoint.is_empty() {
        None
    } else {
        let ok = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']));
        if !ok {
            errs.push(
                p("object_store.endpoint"),
                ErrorKind::Invalid(format!(
                    "expected http://host[:port] or https://host[:port] without a path, got {endpoint:?}"
                )),
            );
        }
        Some(endpoint.to_owned())
    };
    let region = o.region.trim();
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(
            p("object_store.region"),
            ErrorKind::Invalid(format!(
                "expected a region name like \"eu-west-1\", got {region:?}"
            )),
        );
    }
    ObjectStoreSettings {
        endpoint,
        region: (!region.is_empty()).then(|| region.to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(FileSource::parse("docroot").unwrap(), FileSource::Docroot);
        assert_eq!(
            FileSource::parse("s3://magento-media/media").unwrap(),
            FileSource::S3 {
                bucket: "magento-media".into(),
                prefix: "media".into()
            }
        );
        assert_eq!(
            FileSource::parse("s3://magento-media/a/b/").unwrap(),
            FileSource::S3 {
                bucket: "magento-media".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            FileSource::parse("s3://bkt").unwrap(),
            FileSource::S3 {
                bucket: "bkt".into(),
                prefix: String::new()
            }
        );
        for bad in [
            "s3://",
            "s3://Bucket/x",
            "s3://b/x",
            "s3://bkt/a/../b",
            "s3://bkt/a//b",
            "gs://bkt/x",
            "/var/www",
            "",
        ] {
            assert!(FileSource::parse(bad).is_err(), "{bad}");
        }
    }
}
