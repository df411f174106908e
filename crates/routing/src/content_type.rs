//! Content types: nginx's `mime.types` for files, and the tests for
//! `gzip_types` and `charset_types`.

/// The sample's `gzip_types` (G2/G3), in its order.
pub const GZIP_TYPES: &[&str] = &[
    "text/plain",
    "text/css",
    "text/js",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/json",
    "application/xml",
    "application/xml+rss",
    "image/svg+xml",
];

/// nginx's default `charset_types`.
pub const CHARSET_TYPES: &[&str] = &[
    "text/html",
    "text/xml",
    "text/plain",
    "text/vnd.wap.wml",
    "application/javascript",
    "application/rss+xml",
];

/// The charset the sample configures (`charset UTF-8;`). nginx appends it
/// spelled as configured: `; charset=UTF-8`.
pub const CHARSET: &str = "UTF-8";

/// The media type without parameters, trimmed and lower-cased.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a response of this `Content-Type` is compressible under the
/// sample's `gzip_types`, plus `text/html` which nginx always includes.
///
/// Parameters are ignored (`text/html; charset=UTF-8` is `text/html`), case
/// does not matter. The other gzip conditions (client `Accept-Encoding`,
/// `gzip_min_length 1100`, status, existing `Content-Encoding`, MSIE 4–6)
/// are the edge's.
pub fn is_gzip_type(content_type: &str) -> bool {
    let t = essence(content_type);
    t == "text/html" || GZIP_TYPES.contains(&t.as_str())
}

/// Whether nginx's `charset UTF-8` applies to this `Content-Type`: its media
/// type is one of the default `charset_types`.
///
/// The edge appends `; charset=UTF-8` ([`CHARSET`]) only when the header
/// carries no `charset` parameter yet.
pub fn charset_applies(content_type: &str) -> bool {
    CHARSET_TYPES.contains(&essence(content_type).as_str())
}

/// nginx `mime.types` for what a Magento pub/ holds; default `application/octet-stream`.
pub fn mime_type(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" | "shtml" => "text/html",
        "css" => "text/css",
        "xml" => "text/xml",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "js" => "application/javascript",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "svg" | "svgz" => "image/svg+xml",
        "webp" => "image/webp",
        "avif" | "avifs" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "gzip" => "application/gzip",
        "bz2" => "application/x-bzip2",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_types() {
        assert!(is_gzip_type("text/html"));
        assert!(is_gzip_type("text/html; charset=UTF-8"));
        assert!(is_gzip_type("Application/JSON"));
        assert!(is_gzip_type("image/svg+xml"));
        assert!(is_gzip_type(" text/css ;x=y"));
        assert!(!is_gzip_type("image/png"));
        assert!(!is_gzip_type("application/octet-stream"));
        assert!(!is_gzip_type("font/woff2"));
        assert!(!is_gzip_type(""));
    }

    #[test]
    fn charset_types() {
        assert!(charset_applies("text/html"));
        assert!(charset_applies("application/javascript"));
        assert!(charset_applies("TEXT/PLAIN"));
        assert!(!charset_applies("text/css"));
        assert!(!charset_applies("application/json"));
        assert!(!charset_applies("image/svg+xml"));
    }
}
