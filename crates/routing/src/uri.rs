//! nginx's `$uri`: percent-decoding, slash merging and dot-segment resolution.
//!
//! This reproduces `ngx_http_parse_complex_uri()` with `merge_slashes on` (the
//! default), so the router matches locations against exactly the string nginx
//! would. Quirks kept on purpose, because location matching depends on them:
//!
//! - A decoded `%2F` is a real slash: it is merged with neighbours and takes
//!   part in `.`/`..` resolution, as does a decoded `%2E`.
//! - A decoded `%25` (`%`), `%23` (`#`) or `%3F` (`?`) is kept literally and
//!   ends any pending dot segment (`/.%3F` stays `/.?`).
//! - A decoded NUL (`%00`) is an error (400), a malformed escape is an error,
//!   and a `..` that would climb above `/` is an error.
//! - Decoded control characters other than NUL (e.g. `%0A`) are kept; the
//!   location matchers then apply PCRE's rules to them (`.` stops at `\n`,
//!   `$` also matches before a final `\n`).

use std::borrow::Cow;
use std::fmt;

/// Why a request path cannot be normalized. The HTTP layer answers **400**,
/// as nginx does, for every variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The path does not start with `/` (e.g. `*` or an empty path).
    #[error("request path does not start with '/'")]
    NotAbsolute,
    /// A raw control character (below 0x20, or 0x7F) is in the path.
    #[error("raw control byte {byte:#04x} at offset {offset}")]
    ControlByte {
        /// The byte.
        byte: u8,
        /// Its offset in the raw path.
        offset: usize,
    },
    /// A `%` is not followed by two hex digits.
    #[error("malformed percent escape at offset {offset}")]
    BadEscape {
        /// Offset of the `%` in the raw path.
        offset: usize,
    },
    /// `%00` decodes to NUL.
    #[error("percent-encoded NUL at offset {offset}")]
    Nul {
        /// Offset of the `%` in the raw path.
        offset: usize,
    },
    /// A `..` segment climbs above the document root.
    #[error("path escapes the root")]
    EscapesRoot,
}

/// A decoded, normalized request path (nginx's `$uri`), ready for routing.
///
/// Built only by [`normalize`]. Always starts with `/`, never contains `//`,
/// nor a `.` or `..` segment. The bytes may be invalid UTF-8 when the client
/// percent-encoded such bytes; use [`NormalizedPath::as_bytes`] for exact
/// work and [`NormalizedPath::to_string_lossy`] for logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath {
    bytes: Vec<u8>,
    escape_captures: bool,
}

impl NormalizedPath {
    /// The decoded path bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The decoded path, if it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    /// The decoded path, with invalid UTF-8 replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// Whether the raw path contained `%` or `+`.
    ///
    /// nginx then re-escapes regex captures that it copies into a rewritten
    /// query string (its `quoted_uri`/`plus_in_uri` flags): this decides
    /// whether `/static/a+b.css` becomes `resource=a%2Bb.css` or
    /// `resource=a+b.css` in the static.php fallback.
    pub fn had_escapes(&self) -> bool {
        self.escape_captures
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Usual,
    Slash,
    Dot,
    DotDot,
}

/// Normalizes a raw request path the way nginx builds `$uri`.
///
/// Pass the path only (what `http::Uri::path()` returns). Should a raw `?`
/// or `#` still be present, the path ends there, as in nginx.
///
/// # Errors
///
/// [`UriError`] for a path nginx answers with 400: not starting with `/`,
/// a raw control byte, a malformed `%` escape, `%00`, or a `..` above root.
pub fn normalize(raw_path: &str) -> Result<NormalizedPath, UriError> {
    let raw = raw_path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(UriError::NotAbsolute);
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut state = State::Usual;
    let mut escape_captures = false;
    let mut i = 0;
    while i < raw.len() {
        let offset = i;
        let c = raw[i];
        i += 1;
        if c == b'?' || c == b'#' {
            break;
        }
        if c < 0x20 || c == 0x7f {
            return Err(UriError::ControlByte { byte: c, offset });
        }
        let ch = if c == b'%' {
            escape_captures = true;
            let (Some(hi), Some(lo)) = (
                raw.get(i).copied().and_then(hex),
                raw.get(i + 1).copied().and_then(hex),
            ) else {
                return Err(UriError::BadEscape { offset });
            };
            i += 2;
            let decoded = (hi << 4) | lo;
            match decoded {
                0 => return Err(UriError::Nul { offset }),
                // nginx keeps these literally and leaves any dot state.
                b'%' | b'#' | b'?' => {
                    out.push(decoded);
                    state = State::Usual;
                    continue;
                }
                _ => decoded,
            }
        } else {
            if c == b'+' {
                escape_captures = true;
            }
            c
        };
        state = match (state, ch) {
            (State::Usual, b'/') => {
                out.push(ch);
                State::Slash
            }
            (State::Usual, _) => {
                out.push(ch);
                State::Usual
            }
            (State::Slash, b'/') => State::Slash,
            (State::Slash, b'.') => {
                out.push(ch);
                State::Dot
            }
            (State::Dot, b'/') => {
                out.pop();
                State::Slash
            }
            (State::Dot, b'.') => {
                out.push(ch);
                State::DotDot
            }
            (State::DotDot, b'/') => {
                pop_dot_dot(&mut out)?;
                State::Slash
            }
            (State::Slash | State::Dot | State::DotDot, _) => {
                out.push(ch);
                State::Usual
            }
        };
    }
    match state {
        State::Dot => {
            out.pop();
        }
        State::DotDot => pop_dot_dot(&mut out)?,
        State::Usual | State::Slash => {}
    }
    Ok(NormalizedPath {
        bytes: out,
        escape_captures,
    })
}

/// `out` ends with `/..`: drop it and the segment before it.
fn pop_dot_dot(out: &mut Vec<u8>) -> Result<(), UriError> {
    // Position of the byte before "/..".
    let Some(mut j) = out.len().checked_sub(4) else {
        return Err(UriError::EscapesRoot);
    };
    loop {
        if out[j] == b'/' {
            out.truncate(j + 1);
            return Ok(());
        }
        if j == 0 {
            return Err(UriError::EscapesRoot);
        }
        j -= 1;
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Which of nginx's `ngx_escape_uri` tables to apply.
#[derive(Clone, Copy)]
pub(crate) enum Escape {
    /// `NGX_ESCAPE_URI`: used for the `Location` of a directory redirect.
    Uri,
    /// `NGX_ESCAPE_ARGS`: used for regex captures copied into a query string.
    Args,
}

fn needs_escape(b: u8, table: Escape) -> bool {
    match b {
        0x00..=0x1f | 0x7f..=0xff => true,
        b' ' | b'"' | b'#' | b'%' | b'<' | b'>' | b'?' | b'\\' | b'^' | b'`' | b'{' | b'|'
        | b'}' => true,
        b'&' | b'+' | b';' => matches!(table, Escape::Args),
        _ => false,
    }
}

/// Percent-escapes `bytes` with nginx's table (upper-case hex).
pub(crate) fn escape(bytes: &[u8], table: Escape) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if needs_escape(b, table) {
            s.push('%');
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            // Every byte that is not escaped is ASCII.
            s.push(char::from(b));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|e| format!("ERR {e:?}"))
    }

    #[test]
    fn plain_paths_unchanged() {
        assert_eq!(n("/"), "/");
        assert_eq!(n("/women/tops.html"), "/women/tops.html");
        assert_eq!(n("/a/b/"), "/a/b/");
    }

    #[test]
    fn merges_slashes() {
        assert_eq!(n("//a///b//"), "/a/b/");
        assert_eq!(n("/a%2F%2Fb"), "/a/b");
    }

    #[test]
    fn decodes_slash_and_dot_before_matching() {
        assert_eq!(n("/static%2Ffoo.css"), "/static/foo.css");
        assert_eq!(n("/a/%2e%2E/b"), "/b");
        assert_eq!(n("/a/%2e/b"), "/a/b");
        assert_eq!(n("/a%2f..%2fb"), "/b");
        assert_eq!(n("/%2E%2Egit/x"), "/..git/x");
    }

    #[test]
    fn resolves_dot_segments() {
        assert_eq!(n("/a/./b"), "/a/b");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/b/../"), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/."), "/");
        assert_eq!(n("/a/..."), "/a/...");
        assert_eq!(n("/a/..b"), "/a/..b");
        assert_eq!(n("/a/.b"), "/a/.b");
    }

    #[test]
    fn dot_dot_escaping_root_is_rejected() {
        assert_eq!(normalize("/.."), Err(UriError::EscapesRoot));
        assert_eq!(normalize("/../etc/passwd"), Err(UriError::EscapesRoot));
        assert_eq!(normalize("/a/../../b"), Err(UriError::EscapesRoot));
        assert_eq!(normalize("/%2e%2e/x"), Err(UriError::EscapesRoot));
        assert_eq!(normalize("/a%2f..%2f..%2fb"), Err(UriError::EscapesRoot));
    }

    #[test]
    fn nul_and_bad_escapes_are_rejected() {
        assert_eq!(normalize("/a%00b"), Err(UriError::Nul { offset: 2 }));
        assert_eq!(normalize("/a%zz"), Err(UriError::BadEscape { offset: 2 }));
        assert_eq!(normalize("/a%4"), Err(UriError::BadEscape { offset: 2 }));
        assert_eq!(normalize("/a%"), Err(UriError::BadEscape { offset: 2 }));
        assert_eq!(
            normalize("/a\0b"),
            Err(UriError::ControlByte { byte: 0, offset: 2 })
        );
        assert_eq!(normalize(""), Err(UriError::NotAbsolute));
        assert_eq!(normalize("*"), Err(UriError::NotAbsolute));
    }

    #[test]
    fn literal_specials_after_decoding() {
        assert_eq!(n("/a%3Fb"), "/a?b");
        assert_eq!(n("/a%23b"), "/a#b");
        assert_eq!(n("/a%25b"), "/a%b");
        assert_eq!(n("/.%3F"), "/.?");
        assert_eq!(n("/..%3F"), "/..?");
    }

    #[test]
    fn raw_query_or_fragment_ends_the_path() {
        assert_eq!(n("/a/b?x=1"), "/a/b");
        assert_eq!(n("/a/..?x"), "/");
        assert_eq!(n("/a#frag"), "/a");
    }

    #[test]
    fn escape_flag() {
        assert!(!normalize("/static/a.css")
            .map(|p| p.had_escapes())
            .unwrap_or(true));
        assert!(normalize("/static/a+b.css")
            .map(|p| p.had_escapes())
            .unwrap_or(false));
        assert!(normalize("/static/a%20b.css")
            .map(|p| p.had_escapes())
            .unwrap_or(false));
    }

    #[test]
    fn non_utf8_bytes_survive() {
        let p = normalize("/caf%E9.html").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.as_bytes(), b"/caf\xe9.html");
        assert_eq!(p.to_str(), None);
    }

    #[test]
    fn escape_tables() {
        assert_eq!(
            escape(b"a b&c+d;e?f%g", Escape::Args),
            "a%20b%26c%2Bd%3Be%3Ff%25g"
        );
        assert_eq!(escape(b"a b&c+d;e?f%g", Escape::Uri), "a%20b&c+d;e%3Ff%25g");
        assert_eq!(escape(b"/x\xe9\n", Escape::Uri), "/x%E9%0A");
        assert_eq!(
            escape(b"frontend/Magento/luma/en_US/a-b_c~d.css", Escape::Args),
            "frontend/Magento/luma/en_US/a-b_c~d.css"
        );
    }
}
