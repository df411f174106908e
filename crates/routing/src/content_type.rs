//! Content-type tests for nginx's `gzip_types` and `charset_types`.

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
