//! Where injection payloads hide in a request, as (location, name, value)
//! triples: the path, query arguments, cookies, and body fields
//! (urlencoded, JSON, multipart, GraphQL string literals).
//!
//! Parsers are bounded and never fail: a malformed body yields the fields it
//! could read and the raw remainder is inspected as text, so an attacker gains
//! nothing by breaking the syntax (PHP would still parse what it can).

use std::borrow::Cow;
use std::ops::ControlFlow;

/// Where in the request a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// The decoded URL path.
    Path,
    /// A query-string argument (name or value).
    Query,
    /// A cookie value.
    Cookie,
    /// A body field: urlencoded, JSON, multipart or GraphQL.
    Body,
    /// `User-Agent` or `Referer`.
    Header,
}

impl Location {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Cookie => "cookie",
            Location::Body => "body",
            Location::Header => "header",
        }
    }
}

/// The body's syntax, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind<'a> {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json` (and `+json` types).
    Json,
    /// `multipart/form-data` with its boundary.
    Multipart(&'a [u8]),
    /// Anything else: inspected as one text value.
    Text,
}

impl<'a> BodyKind<'a> {
    /// Classifies a `Content-Type` value (`None`: no header → text).
    pub fn of(content_type: Option<&'a [u8]>) -> BodyKind<'a> {
        let Some(ct) = content_type else {
            return BodyKind::Text;
        };
        let mut parts = ct.split(|&b| b == b';');
        let essence = trim(parts.next().unwrap_or_default());
        if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
            return BodyKind::Form;
        }
        if essence.eq_ignore_ascii_case(b"application/json")
            || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json"))
        {
            return BodyKind::Json;
        }
        if essence.eq_ignore_ascii_case(b"multipart/form-data") {
            for p in parts {
                let p = trim(p);
                if p.len() > 9 && p[..9].eq_ignore_ascii_case(b"boundary=") {
                    let b = &p[9..];
                    let b = b
                        .strip_prefix(b"\"")
                        .and_then(|b| b.strip_suffix(b"\""))
                        .unwrap_or(b);
                    if !b.is_empty() {
                        return BodyKind::Multipart(b);
                    }
                }
            }
            return BodyKind::Text;
        }
        BodyKind::Text
    }
}

/// Visitor for (location, name, value); `Break` stops the walk.
pub type Visit<'v, B> = dyn FnMut(Location, &[u8], &[u8]) -> ControlFlow<B> + 'v;

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// Percent-decodes (and `+` → space for forms), borrowing when nothing changes.
pub fn url_decode(s: &[u8], plus_is_space: bool) -> Cow<'_, [u8]> {
    if !s.iter().any(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = s.get(i + 1).and_then(|&c| hex(c));
                let lo = s.get(i + 2).and_then(|&c| hex(c));
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                    }
                    _ if s.get(i + 1).is_some_and(|&c| c == b'u' || c == b'U') => {
                        // IIS-style %uXXXX, which CRS decodes too
                        // (urlDecodeUni): keep the low byte of ASCII code points.
                        let digits = s
                            .get(i + 2..i + 6)
                            .filter(|d| d.iter().all(|&c| hex(c).is_some()));
                        match digits {
                            Some(d) => {
                                let v = d
                                    .iter()
                                    .fold(0u32, |a, &c| a << 4 | u32::from(hex(c).unwrap_or(0)));
                                match char::from_u32(v) {
                                    Some(c) => {
                                        let mut buf = [0u8; 4];
                                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                                    }
                                    None => out.push(b'?'),
                                }
                                i += 6;
                            }
                            None => {
                                out.push(b'%');
                                i += 1;
                            }
                        }
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `a=1&b=2` (query strings and urlencoded bodies): names and values decoded.
pub fn form<B>(s: &[u8], loc: Location, visit: &mut Visit<'_, B>) -> ControlFlow<B> {
    for pair in s.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = url_decode(name, true);
        let value = url_decode(value, true);
        // The name is attacker-chosen too (PHP parses `a[<x>]` keys).
        visit(loc, b"", &name)?;
        visit(loc, &name, &value)?;
    }
    ControlFlow::Continue(())
}

/// `Cookie: a=1; b=2`: values decoded (PHP url-decodes cookies).
pub fn cookies<B>(header: &[u8], visit: &mut Visit<'_, B>) -> ControlFlow<B> {
    for pair in header.split(|&b| b == b';') {
        let pair = trim(pair);
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (&b""[..], pair),
        };
        let value = url_decode(value, false);
        visit(Location::Cookie, b"", &url_decode(name, false))?;
        visit(Location::Cookie, name, &value)?;
    }
    ControlFlow::Continue(())
}

/// Deepest JSON nesting walked; deeper documents are inspected as text.
const MAX_JSON_DEPTH: usize = 64;

/// A JSON body: every string (keys too) and number, by key. GraphQL
/// documents (`{"query": "..."}` on `/graphql`) are split into their string
/// literals first: the query language itself is not an injection.
pub fn json<B>(body: &[u8], graphql: bool, visit: &mut Visit<'_, B>) -> ControlFlow<B> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => walk_json(&v, b"", graphql, 0, visit),
        // Broken JSON: PHP would reject it, but inspect it whole anyway.
        Err(_) => visit(Location::Body, b"", body),
    }
}

fn walk_json<B>(
    v: &serde_json::Value,
    key: &[u8],
    graphql: bool,
    depth: usize,
    visit: &mut Visit<'_, B>,
) -> ControlFlow<B> {
    use serde_json::Value;
    if depth > MAX_JSON_DEPTH {
        return visit(Location::Body, key, v.to_string().as_bytes());
    }
    match v {
        Value::String(s) if graphql && depth == 1 && key == b"query" => {
            graphql_literals(s.as_bytes(), visit)
        }
        Value::String(s) => visit(Location::Body, key, s.as_bytes()),
        Value::Number(n) => visit(Location::Body, key, n.to_string().as_bytes()),
        Value::Array(items) => {
            for item in items {
                walk_json(item, key, graphql, depth + 1, visit)?;
            }
            ControlFlow::Continue(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                visit(Location::Body, b"", k.as_bytes())?;
                walk_json(item, k.as_bytes(), graphql, depth + 1, visit)?;
            }
            ControlFlow::Continue(())
        }
        Value::Bool(_) | Value::Null => ControlFlow::Continue(()),
    }
}

/// The string literals of a GraphQL document (`"..."` with escapes and
/// `"""block strings"""`), which is where user input sits when a client
/// inlines arguments instead of using variables.
pub fn graphql_literals<B>(doc: &[u8], visit: &mut Visit<'_, B>) -> ControlFlow<B> {
    let mut i = 0;
    while i < doc.len() {
        match doc[i] {
            b'#' => {
                // Comment to end of line.
                while i < doc.len() && doc[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if doc[i..].starts_with(b"\"\"\"") => {
                let start = i + 3;
                let end = find(&doc[start..], b"\"\"\"").map_or(doc.len(), |e| start + e);
                visit(Location::Body, b"graphql", &doc[start..end])?;
                i = end + 3;
            }
            b'"' => {
                let mut lit = Vec::new();
                i += 1;
                while i < doc.len() && doc[i] != b'"' {
                    if doc[i] == b'\\' && i + 1 < doc.len() {
                        i += 1;
                        lit.push(match doc[i] {
                            b'n' => b'\n',
                            b't' => b'\t',
                            b'r' => b'\r',
                            c => c,
                        });
                    } else {
                        lit.push(doc[i]);
                    }
                    i += 1;
                }
                visit(Location::Body, b"graphql", &lit)?;
                i += 1;
            }
            _ => i += 1,
        }
    }
    ControlFlow::Continue(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `multipart/form-data`: each part's field value, or its file name for
/// uploads (file contents are not text to inspect).
pub fn multipart<B>(body: &[u8], boundary: &[u8], visit: &mut Visit<'_, B>) -> ControlFlow<B> {
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let mut rest = match find(body, &delim) {
        Some(i) => &body[i + delim.len()..],
        None => return visit(Location::Body, b"", body),
    };
    loop {
        if rest.starts_with(b"--") {
            return ControlFlow::Continue(());
        }
        let end = find(rest, &delim).unwrap_or(rest.len());
        let part = &rest[..end];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let (head, value) = match find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => (&b""[..], part),
        };
        let value = value.strip_suffix(b"\r\n").unwrap_or(value);
        let mut name: &[u8] = b"";
        let mut filename: Option<&[u8]> = None;
        for line in head.split(|&b| b == b'\n') {
            let line = trim(line);
            if line.len() > 20 && line[..20].eq_ignore_ascii_case(b"content-disposition:") {
                for param in line[20..].split(|&b| b == b';') {
                    let param = trim(param);
                    if let Some(v) = param_value(param, b"name=") {
                        name = v;
                    } else if let Some(v) = param_value(param, b"filename=") {
                        filename = Some(v);
                    }
                }
            }
        }
        visit(Location::Body, b"", name)?;
        match filename {
            Some(f) => visit(Location::Body, name, f)?,
            None => visit(Location::Body, name, value)?,
        }
        if end >= rest.len() {
            return ControlFlow::Continue(());
        }
        rest = &rest[end + delim.len()..];
    }
}

fn param_value<'a>(param: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    if param.len() < key.len() || !param[..key.len()].eq_ignore_ascii_case(key) {
        return None;
    }
    let v = &param[key.len()..];
    Some(
        v.strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: impl FnOnce(&mut Visit<'_, ()>) -> ControlFlow<()>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut v = |_: Location, n: &[u8], val: &[u8]| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(val).into_owned(),
            ));
            ControlFlow::Continue(())
        };
        let _ = f(&mut v);
        out
    }

    #[test]
    fn forms_decode_names_and_values() {
        let got = collect(|v| form(b"q=O%27Reilly+books&a%5Bb%5D=1&flag", Location::Query, v));
        assert!(got.contains(&("q".into(), "O'Reilly books".into())));
        assert!(got.contains(&("".into(), "a[b]".into())));
        assert!(got.contains(&("flag".into(), "".into())));
    }

    #[test]
    fn iis_unicode_escapes_are_decoded() {
        assert_eq!(&*url_decode(b"%u0027or%u00201", false), b"'or 1");
        assert_eq!(&*url_decode(b"100%", false), b"100%");
        assert_eq!(&*url_decode(b"%zz", false), b"%zz");
    }

    #[test]
    fn cookies_are_split_and_decoded() {
        let got = collect(|v| cookies(b"PHPSESSID=abc; mage-messages=%5B%7B%22a%22%7D%5D", v));
        assert!(got.contains(&("mage-messages".into(), "[{\"a\"}]".into())));
        assert!(
            got.contains(&("".into(), "PHPSESSID".into())),
            "names are values too"
        );
    }

    #[test]
    fn json_walks_strings_keys_and_numbers() {
        let got = collect(|v| {
            json(
                br#"{"address":{"street":["1 O'Neil St"],"zip":7}}"#,
                false,
                v,
            )
        });
        assert!(got.contains(&("street".into(), "1 O'Neil St".into())));
        assert!(got.contains(&("zip".into(), "7".into())));
        assert!(got.contains(&("".into(), "address".into())));
    }

    #[test]
    fn graphql_queries_yield_their_literals_only() {
        let body = br#"{"query":"{ products(search: \"' or 1=1 -- \") { items { name } } }","variables":{"s":"x"}}"#;
        let got = collect(|v| json(body, true, v));
        assert!(got.contains(&("graphql".into(), "' or 1=1 -- ".into())));
        assert!(got.contains(&("s".into(), "x".into())));
        assert!(!got.iter().any(|(_, v)| v.contains("items")));
    }

    #[test]
    fn multipart_fields_and_file_names() {
        let body = b"--XY\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n--XY\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG...\r\n--XY--\r\n";
        let got = collect(|v| multipart(body, b"XY", v));
        assert!(got.contains(&("title".into(), "Hello".into())));
        assert!(got.contains(&("image".into(), "a.png".into())));
        assert!(!got.iter().any(|(_, v)| v.contains("PNG")));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            BodyKind::of(Some(b"application/x-www-form-urlencoded; charset=UTF-8")),
            BodyKind::Form
        );
        assert_eq!(
            BodyKind::of(Some(b"application/vnd.api+json")),
            BodyKind::Json
        );
        assert_eq!(
            BodyKind::of(Some(b"multipart/form-data; boundary=\"----abc\"")),
            BodyKind::Multipart(b"----abc")
        );
        assert_eq!(BodyKind::of(None), BodyKind::Text);
    }
}
