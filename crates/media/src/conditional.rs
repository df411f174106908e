//! Conditional requests and single byte ranges, as nginx answers them for
//! local files (the edge's `static_files` has the same rules), on header
//! values as strings, for objects whose `ETag` and `Last-Modified` come from
//! the store.

/// True when `If-None-Match` (or, without it, `If-Modified-Since`) says the
/// client's copy is current: answer 304.
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: &str,
    mtime_secs: u64,
) -> bool {
    if let Some(inm) = if_none_match {
        return inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        });
    }
    if let Some(ims) = if_modified_since.and_then(|v| httpdate::parse_http_date(v).ok()) {
        let ims = ims
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return mtime_secs <= ims;
    }
    false
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeResult {
    /// The whole body (no range, several ranges, a stale `If-Range`, or a
    /// header nginx ignores).
    Full,
    /// Inclusive byte positions.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// One `bytes=` range, as nginx serves it; several ranges get the whole body.
pub fn range(
    range: Option<&str>,
    if_range: Option<&str>,
    etag: &str,
    mtime_secs: u64,
    size: u64,
) -> RangeResult {
    let Some(spec) = range else {
        return RangeResult::Full;
    };
    if let Some(ir) = if_range {
        let fresh = if ir.starts_with('"') {
            ir == etag
        } else {
            httpdate::parse_http_date(ir)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|d| d.as_secs() == mtime_secs)
        };
        if !fresh {
            return RangeResult::Full;
        }
    }
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return RangeResult::Full;
    };
    if spec.contains(',') {
        return RangeResult::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeResult::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let last = size.saturating_sub(1);
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, true) => return RangeResult::Full,
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return RangeResult::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), last)),
            Err(_) => None,
        },
        (false, _) => match a.parse::<u64>() {
            Ok(start) => {
                let end = if b.is_empty() {
                    Some(last)
                } else {
                    b.parse::<u64>().ok().map(|e| e.min(last))
                };
                end.map(|e| (start, e))
            }
            Err(_) => None,
        },
    };
    match parsed {
        None => RangeResult::Full,
        Some((start, end)) if start >= size || start > end => RangeResult::Unsatisfiable,
        Some((start, end)) => RangeResult::Partial(start, end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_as_nginx() {
        let e = "\"1-a\"";
        let r = |h: &str| range(Some(h), None, e, 1, 10);
        assert_eq!(range(None, None, e, 1, 10), RangeResult::Full);
        assert_eq!(r("bytes=0-3"), RangeResult::Partial(0, 3));
        assert_eq!(r("bytes=5-"), RangeResult::Partial(5, 9));
        assert_eq!(r("bytes=-4"), RangeResult::Partial(6, 9));
        assert_eq!(r("bytes=2-100"), RangeResult::Partial(2, 9));
        assert_eq!(r("bytes=10-"), RangeResult::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeResult::Unsatisfiable);
        assert_eq!(r("bytes=0-1,4-5"), RangeResult::Full);
        assert_eq!(r("items=0-1"), RangeResult::Full);
        assert_eq!(
            range(Some("bytes=0-1"), Some("\"other\""), e, 1, 10),
            RangeResult::Full
        );
        assert_eq!(
            range(Some("bytes=0-1"), Some(e), e, 1, 10),
            RangeResult::Partial(0, 1)
        );
    }

    #[test]
    fn conditionals() {
        assert!(not_modified(Some("\"5-a\""), None, "\"5-a\"", 5));
        assert!(not_modified(Some("W/\"5-a\", \"x\""), None, "\"5-a\"", 5));
        assert!(!not_modified(Some("\"6-a\""), None, "\"5-a\"", 5));
        let date =
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(100));
        assert!(not_modified(None, Some(&date), "\"x\"", 100));
        assert!(!not_modified(None, Some(&date), "\"x\"", 101));
    }

    proptest! {
        #[test]
        fn partial_ranges_are_inside_the_body(h in "bytes=[0-9]{0,3}-[0-9]{0,3}", size in 0u64..500) {
            if let RangeResult::Partial(a, b) = range(Some(&h), None, "\"e\"", 0, size) {
                prop_assert!(a <= b && b < size);
            }
        }
    }
}
