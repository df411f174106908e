//! `Cache-Control` parsing and the freshness headers (`Expires`, `Date`,
//! `Age`), as Varnish's core reads them (contract §5, `RFC2616_Ttl`).
//!
//! The parser is total: any byte sequence yields a (possibly empty) list of
//! directives, never an error or a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, AGE, CACHE_CONTROL};

/// At most this many directives are kept per response; the rest are ignored
/// (a bound on memory for hostile input).
pub const MAX_DIRECTIVES: usize = 64;

/// One `Cache-Control` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Directive name, lower-cased (`max-age`).
    pub name: String,
    /// Argument, unquoted when it was a quoted string; `None` without `=`.
    pub value: Option<String>,
}

/// A parsed `Cache-Control` (all header lines, in order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheControl {
    directives: Vec<Directive>,
}

impl CacheControl {
    /// Parses every `Cache-Control` line of `headers`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::parse(headers.get_all(CACHE_CONTROL).iter().map(|v| v.as_bytes()))
    }

    /// Parses header values. Directives are separated by commas (outside
    /// quoted strings); names are case-insensitive; an argument is a token
    /// or a quoted string (with `\` escapes). Malformed pieces are skipped.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut directives = Vec::new();
        for value in values {
            parse_into(value, &mut directives);
            if directives.len() >= MAX_DIRECTIVES {
                directives.truncate(MAX_DIRECTIVES);
                break;
            }
        }
        Self { directives }
    }

    /// Parses a single string.
    pub fn parse_str(value: &str) -> Self {
        Self::parse([value.as_bytes()])
    }

    /// All directives, in order.
    pub fn directives(&self) -> &[Directive] {
        &self.directives
    }

    /// The first directive called `name` (case-insensitive): `None` if
    /// absent, `Some(None)` if present without argument.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.directives
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
            .map(|d| d.value.as_deref())
    }

    /// Whether a directive called `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The first `name` directive's argument read as delta-seconds the way
    /// Varnish does (see [`parse_delta_seconds`]). `None` if the directive is
    /// absent or has no argument.
    pub fn seconds(&self, name: &str) -> Option<u32> {
        self.get(name).flatten().map(parse_delta_seconds)
    }

    /// Varnish's freshness lifetime from `Cache-Control`: `s-maxage` if
    /// present, else `max-age`. Mirrors `http_GetHdrField(s-maxage) ||
    /// http_GetHdrField(max-age)) && p != NULL`: an `s-maxage` **without**
    /// argument hides `max-age` and yields `None` (fall back to `Expires`).
    pub fn shared_max_age(&self) -> Option<u32> {
        let field = self.get("s-maxage").or_else(|| self.get("max-age"))?;
        field.map(parse_delta_seconds)
    }
}

fn parse_into(value: &[u8], out: &mut Vec<Directive>) {
    let mut i = 0;
    let n = value.len();
    while i < n && out.len() < MAX_DIRECTIVES {
        // Skip separators and whitespace.
        while i < n && (value[i] == b',' || value[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= n {
            break;
        }
        // Name: up to '=' or ','.
        let start = i;
        while i < n && value[i] != b'=' && value[i] != b',' {
            i += 1;
        }
        let name = value[start..i].trim_ascii();
        let mut arg: Option<String> = None;
        if i < n && value[i] == b'=' {
            i += 1;
            while i < n && (value[i] == b' ' || value[i] == b'\t') {
                i += 1;
            }
            if i < n && value[i] == b'"' {
                // Quoted string; an unterminated one runs to the end.
                i += 1;
                let mut s = Vec::new();
                while i < n && value[i] != b'"' {
                    if value[i] == b'\\' && i + 1 < n {
                        i += 1;
                    }
                    s.push(value[i]);
                    i += 1;
                }
                i = (i + 1).min(n); // closing quote
                arg = Some(String::from_utf8_lossy(&s).into_owned());
                // Anything between the closing quote and the next comma is garbage.
                while i < n && value[i] != b',' {
                    i += 1;
                }
            } else {
                let vstart = i;
                while i < n && value[i] != b',' {
                    i += 1;
                }
                arg = Some(String::from_utf8_lossy(value[vstart..i].trim_ascii()).into_owned());
            }
        }
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            continue; // garbage piece
        }
        out.push(Directive {
            name: String::from_utf8_lossy(name).to_ascii_lowercase(),
            value: arg,
        });
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Varnish `rfc2616_time`: a leading `-` gives 0; otherwise leading
/// whitespace and decimal digits (saturating at `u32::MAX`), optional
/// trailing whitespace, and then the value must end (or continue with `.`,
/// for future fractional seconds). Anything else, including an empty value
/// or no digits, gives 0. (Varnish also accepts a `+` sign, as `strtoul`
/// does; so does this.)
pub fn parse_delta_seconds(v: &str) -> u32 {
    let b = v.as_bytes();
    if b.first() == Some(&b'-') {
        return 0;
    }
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if i < b.len() && b[i] == b'+' {
        i += 1;
    }
    let mut val: u64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        val = (val * 10 + u64::from(b[i] - b'0')).min(u64::from(u32::MAX) + 1);
        i += 1;
    }
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if i == b.len() || b[i] == b',' || b[i] == b'.' {
        u32::try_from(val).unwrap_or(u32::MAX)
    } else {
        0
    }
}

/// The `Age` header in seconds (first line; Varnish `rfc2616_time`), 0 when
/// absent or malformed.
pub fn age_secs(headers: &HeaderMap) -> u32 {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .map_or(0, parse_delta_seconds)
}

/// Parses an HTTP date (IMF-fixdate, RFC 850 or asctime). `None` when the
/// value is not a valid date (e.g. `Expires: -1` or `0`), which Varnish
/// treats like an absent header.
pub fn parse_http_date(v: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(v).ok()?;
    httpdate::parse_http_date(s.trim()).ok()
}

/// The first value of a date header, parsed.
pub fn header_date(headers: &HeaderMap, name: &http::header::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| parse_http_date(v.as_bytes()))
}

/// Seconds since the Unix epoch as a signed number (times before the epoch
/// are negative), for TTL arithmetic.
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `Duration` from non-negative seconds.
pub(crate) fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    fn cc(s: &str) -> CacheControl {
        CacheControl::parse_str(s)
    }

    #[test]
    fn magento_public_headers() {
        let c = cc("public, max-age=86400, s-maxage=86400");
        assert!(c.has("public"));
        assert_eq!(c.get("public"), Some(None));
        assert_eq!(c.seconds("max-age"), Some(86400));
        assert_eq!(c.shared_max_age(), Some(86400));
    }

    #[test]
    fn s_maxage_wins_over_max_age() {
        // Magento may force max-age=0 while keeping s-maxage (contract §12).
        assert_eq!(cc("max-age=0, s-maxage=600").shared_max_age(), Some(600));
        assert_eq!(cc("max-age=60").shared_max_age(), Some(60));
        assert_eq!(cc("public").shared_max_age(), None);
    }

    #[test]
    fn s_maxage_without_value_hides_max_age() {
        assert_eq!(cc("s-maxage, max-age=60").shared_max_age(), None);
    }

    #[test]
    fn names_are_case_insensitive_and_values_kept() {
        let c = cc("Max-Age=5, NO-CACHE=\"Set-Cookie, X-Foo\", private");
        assert_eq!(c.seconds("max-age"), Some(5));
        assert_eq!(c.get("no-cache"), Some(Some("Set-Cookie, X-Foo")));
        assert!(c.has("private"));
        assert_eq!(c.directives().len(), 3);
    }

    #[test]
    fn multiple_header_lines() {
        let mut h = HeaderMap::new();
        h.append(CACHE_CONTROL, HeaderValue::from_static("public"));
        h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=30"));
        let c = CacheControl::from_headers(&h);
        assert!(c.has("public"));
        assert_eq!(c.shared_max_age(), Some(30));
    }

    #[test]
    fn garbage_is_tolerated() {
        let c = cc(",,, =5, max-age = 10 ,\"x\", bad name=1, ok");
        assert_eq!(c.seconds("max-age"), Some(10));
        assert!(c.has("ok"));
        assert!(!c.has("bad name"));
        let c = cc("a=\"unterminated, b=2");
        assert_eq!(c.get("a"), Some(Some("unterminated, b=2")));
        assert_eq!(cc("").directives().len(), 0);
        let c = cc("a=\"x\\\"y\"junk, b");
        assert_eq!(c.get("a"), Some(Some("x\"y")));
        assert!(c.has("b"));
    }

    #[test]
    fn quoted_max_age_is_unquoted() {
        assert_eq!(cc("max-age=\"60\"").shared_max_age(), Some(60));
    }

    #[test]
    fn delta_seconds_like_varnish() {
        assert_eq!(parse_delta_seconds("60"), 60);
        assert_eq!(parse_delta_seconds(" 60 "), 60);
        assert_eq!(parse_delta_seconds("60.5"), 60);
        assert_eq!(parse_delta_seconds("-5"), 0);
        assert_eq!(parse_delta_seconds("abc"), 0);
        assert_eq!(parse_delta_seconds("60abc"), 0);
        assert_eq!(parse_delta_seconds(""), 0);
        assert_eq!(parse_delta_seconds("+7"), 7);
        assert_eq!(parse_delta_seconds("99999999999999999999"), u32::MAX);
    }

    #[test]
    fn directive_count_is_bounded() {
        let many = "a,".repeat(10_000);
        assert_eq!(cc(&many).directives().len(), MAX_DIRECTIVES);
    }

    #[test]
    fn age_header() {
        let mut h = HeaderMap::new();
        assert_eq!(age_secs(&h), 0);
        h.insert(AGE, HeaderValue::from_static("42"));
        assert_eq!(age_secs(&h), 42);
        h.insert(AGE, HeaderValue::from_static("-3"));
        assert_eq!(age_secs(&h), 0);
    }

    #[test]
    fn http_dates() {
        let t = parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT").expect("imf");
        assert_eq!(unix_secs(t), 784_111_777);
        assert!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT").is_some());
        assert!(parse_http_date(b"Sun Nov  6 08:49:37 1994").is_some());
        assert!(parse_http_date(b"-1").is_none());
        assert!(parse_http_date(b"0").is_none());
        assert!(parse_http_date(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn unix_secs_before_epoch() {
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), -5);
        assert_eq!(secs(-1), Duration::ZERO);
    }
}
