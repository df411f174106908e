//! Release ids: what names the code version an upstream track runs.

/// Most bytes of a release id.
pub const MAX_RELEASE_ID_LEN: usize = 64;

/// Whether `id` may name a release: 1 to [`MAX_RELEASE_ID_LEN`] letters,
/// digits, `.`, `_` or `-` (what Magento's `deployed_version.txt` holds is a
/// Unix time; git hashes and tags fit too). The id goes into cache keys,
/// metric labels, logs, cookies and Redis, so nothing else is let through.
pub fn is_release_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_RELEASE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn release_ids() {
        assert!(is_release_id("1712345678"));
        assert!(is_release_id("v2.4.8-p1_a"));
        assert!(!is_release_id(""));
        assert!(!is_release_id(&"a".repeat(65)));
        assert!(!is_release_id("a/b"));
        assert!(!is_release_id("v1 beta"));
    }
}
