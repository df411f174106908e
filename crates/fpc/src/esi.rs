//! ESI for Magento's blocks (contract §9): a bounded, zero-copy parser and
//! the header rules of ESI sub-requests.
//!
//! Supported markup (ESI 1.0 subset Varnish implements):
//! * `<esi:include src="…"/>` (also `src='…'`, extra whitespace,
//!   `alt="…"`, `onerror="continue"`, and `<esi:include …></esi:include>`);
//! * `<esi:remove>…</esi:remove>`: dropped with its content;
//! * `<!--esi … -->`: the markers are dropped, the content is processed;
//! * `<esi:comment …/>`: dropped.
//!
//! Ordinary comments `<!-- … -->` and `<![CDATA[ … ]]>` are copied
//! verbatim without looking for ESI inside. A malformed `<esi:include`
//! (no closing `>`, unterminated quote) is left in the output as text, and
//! an include without `src` is dropped, as Varnish does (it logs and goes
//! on). Only bodies whose first non-blank byte is `<` are processed.

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, CONTENT_LENGTH, HOST, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE, TRANSFER_ENCODING,
};

/// Ceilings of the ESI parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsiLimits {
    /// Most includes in one document; more is [`EsiError::TooManyIncludes`].
    pub max_includes: usize,
    /// Longest `src` (after entity decoding); longer is [`EsiError::SrcTooLong`].
    pub max_src_len: usize,
}

/// Default [`EsiLimits::max_includes`].
pub const DEFAULT_MAX_INCLUDES: usize = 256;
/// Default [`EsiLimits::max_src_len`].
pub const DEFAULT_MAX_SRC_LEN: usize = 8192;

impl Default for EsiLimits {
    fn default() -> Self {
        Self {
            max_includes: DEFAULT_MAX_INCLUDES,
            max_src_len: DEFAULT_MAX_SRC_LEN,
        }
    }
}

/// Why a document was not processed. The edge then delivers the body as
/// received (and logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EsiError {
    /// More includes than [`EsiLimits::max_includes`].
    #[error("esi document has more than {max} includes")]
    TooManyIncludes {
        /// The limit.
        max: usize,
    },
    /// An include `src` longer than [`EsiLimits::max_src_len`].
    #[error("esi include src is {len} bytes, limit {max}")]
    SrcTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// An `<esi:include>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsiInclude {
    /// The `src` attribute, XML entities (`&amp;` …) decoded.
    pub src: String,
    /// The `alt` attribute (informational: Varnish ignores it).
    pub alt: Option<String>,
    /// `onerror="continue"`: on a failed fragment, deliver the rest of the page.
    pub onerror_continue: bool,
}

/// A piece of a parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsiSegment {
    /// Bytes to send as they are (a slice of the original body, no copy).
    Literal(Bytes),
    /// A fragment to fetch and splice in.
    Include(EsiInclude),
}

/// Whether the body is eligible for ESI: its first byte that is not ASCII
/// whitespace is `<`.
pub fn is_esi_candidate(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'<')
}

/// Parses a body for ESI.
///
/// Returns `Ok(None)` when there is nothing to do: the body is not a
/// candidate ([`is_esi_candidate`]) or contains no ESI markup. Otherwise the
/// segments, whose literals are zero-copy slices of `body`; adjacent
/// literals are not merged, empty ones are not emitted.
///
/// # Errors
/// [`EsiError`] when a limit is exceeded.
pub fn parse_esi(body: &Bytes, limits: &EsiLimits) -> Result<Option<Vec<EsiSegment>>, EsiError> {
    if !is_esi_candidate(body) {
        return Ok(None);
    }
    let mut p = Parser {
        body,
        segments: Vec::new(),
        literal_start: 0,
        includes: 0,
        changed: false,
        limits,
    };
    p.run()?;
    if !p.changed {
        return Ok(None);
    }
    Ok(Some(p.segments))
}

struct Parser<'b> {
    body: &'b Bytes,
    segments: Vec<EsiSegment>,
    literal_start: usize,
    includes: usize,
    changed: bool,
    limits: &'b EsiLimits,
}

impl Parser<'_> {
    /// Ends the current literal at `end` and resumes literals at `resume`.
    fn cut(&mut self, end: usize, resume: usize) {
        if end > self.literal_start {
            self.segments.push(EsiSegment::Literal(
                self.body.slice(self.literal_start..end),
            ));
        }
        self.literal_start = resume;
        self.changed = true;
    }

    fn run(&mut self) -> Result<(), EsiError> {
        let b: &[u8] = self.body;
        let n = b.len();
        let mut i = 0;
        let mut in_esi_comment = false;
        while i < n {
            let next = b[i..]
                .iter()
                .position(|&c| c == b'<' || (in_esi_comment && c == b'-'));
            let Some(off) = next else { break };
            i += off;
            let rest = &b[i..];
            if in_esi_comment && rest.starts_with(b"-->") {
                self.cut(i, i + 3);
                in_esi_comment = false;
                i += 3;
                continue;
            }
            if rest[0] != b'<' {
                i += 1;
                continue;
            }
            if rest.starts_with(b"<!--esi") {
                if !in_esi_comment {
                    self.cut(i, i + 7);
                    in_esi_comment = true;
                }
                i += 7;
            } else if !in_esi_comment && rest.starts_with(b"<!--") {
                i = skip_past(b, i + 4, b"-->");
            } else if rest.starts_with(b"<![CDATA[") {
                i = skip_past(b, i + 9, b"]]>");
            } else if tag_starts(rest, b"<esi:include") {
                i = self.include(i)?;
            } else if tag_starts(rest, b"<esi:remove") {
                let end = match find_from(b, i, b"</esi:remove>") {
                    Some(at) => at + b"</esi:remove>".len(),
                    None => n,
                };
                self.cut(i, end);
                i = end;
            } else if tag_starts(rest, b"<esi:comment") {
                match find_from(b, i, b">") {
                    Some(at) => {
                        self.cut(i, at + 1);
                        i = at + 1;
                    }
                    None => break,
                }
            } else if rest.starts_with(b"</esi:include>") {
                let end = i + b"</esi:include>".len();
                self.cut(i, end);
                i = end;
            } else {
                i += 1;
            }
        }
        // Trailing literal.
        if self.changed && self.literal_start < n {
            self.segments
                .push(EsiSegment::Literal(self.body.slice(self.literal_start..n)));
        }
        Ok(())
    }

    /// Parses `<esi:include …>` at `start`; returns where to continue.
    fn include(&mut self, start: usize) -> Result<usize, EsiError> {
        let b: &[u8] = self.body;
        let Some(tag) = parse_include_tag(b, start + b"<esi:include".len()) else {
            // Malformed: leave it as text.
            return Ok(start + 1);
        };
        let mut end = tag.end;
        if !tag.self_closing {
            // Optional `</esi:include>` right after (whitespace allowed).
            let mut j = end;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if b[j..].starts_with(b"</esi:include>") {
                end = j + b"</esi:include>".len();
            }
        }
        self.cut(start, end);
        if let Some(src) = tag.src {
            if src.len() > self.limits.max_src_len {
                return Err(EsiError::SrcTooLong {
                    len: src.len(),
                    max: self.limits.max_src_len,
                });
            }
            self.includes += 1;
            if self.includes > self.limits.max_includes {
                return Err(EsiError::TooManyIncludes {
                    max: self.limits.max_includes,
                });
            }
            self.segments.push(EsiSegment::Include(EsiInclude {
                src,
                alt: tag.alt,
                onerror_continue: tag.onerror_continue,
            }));
        }
        Ok(end)
    }
}

/// `rest` starts with `name` followed by whitespace, `/` or `>`.
fn tag_starts(rest: &[u8], name: &[u8]) -> bool {
    rest.starts_with(name)
        && rest
            .get(name.len())
            .is_some_and(|&c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
}

fn find_from(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    crate::headers::find(&b[from.min(b.len())..], needle).map(|at| from + at)
}

/// Index just past the next `needle` from `from`, or the end of `b`.
fn skip_past(b: &[u8], from: usize, needle: &[u8]) -> usize {
    find_from(b, from, needle).map_or(b.len(), |at| at + needle.len())
}

struct IncludeTag {
    src: Option<String>,
    alt: Option<String>,
    onerror_continue: bool,
    self_closing: bool,
    /// Index just past `>`.
    end: usize,
}

/// Attributes of an include tag, from just after `<esi:include` to `>`.
/// `None` when malformed.
fn parse_include_tag(b: &[u8], mut i: usize) -> Option<IncludeTag> {
    let mut tag = IncludeTag {
        src: None,
        alt: None,
        onerror_continue: false,
        self_closing: false,
        end: 0,
    };
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        match b.get(i)? {
            b'>' => {
                tag.end = i + 1;
                return Some(tag);
            }
            b'/' => {
                if b.get(i + 1) == Some(&b'>') {
                    tag.self_closing = true;
                    tag.end = i + 2;
                    return Some(tag);
                }
                return None;
            }
            _ => {}
        }
        // Attribute name.
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = &b[name_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value: Option<&[u8]> = if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            match b.get(i)? {
                q @ (b'"' | b'\'') => {
                    let q = *q;
                    let vstart = i + 1;
                    let len = b[vstart..].iter().position(|&c| c == q)?;
                    i = vstart + len + 1;
                    Some(&b[vstart..vstart + len])
                }
                _ => {
                    let vstart = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        if b[i] == b'/' && b.get(i + 1) == Some(&b'>') {
                            break;
                        }
                        i += 1;
                    }
                    Some(&b[vstart..i])
                }
            }
        } else {
            None
        };
        if name.is_empty() {
            return None;
        }
        let value = value.map(decode_entities);
        match name {
            b"src" if tag.src.is_none() => tag.src = value,
            b"alt" if tag.alt.is_none() => tag.alt = value,
            b"onerror" => tag.onerror_continue = value.as_deref() == Some("continue"),
            _ => {}
        }
    }
}

/// Decodes the five predefined XML entities; other `&…;` stay as they are.
fn decode_entities(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if !s.contains('&') {
        return s.into_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest: &str = &s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let mut matched = false;
        for (entity, ch) in [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
        ] {
            if let Some(r) = rest.strip_prefix(entity) {
                out.push(ch);
                rest = r;
                matched = true;
                break;
            }
        }
        if !matched {
            out.push('&');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Where an include points, resolved against the parent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeTarget {
    /// Host to send (`Host` header) when `src` was absolute (`http://host/…`).
    pub host: Option<String>,
    /// Origin-form target of the sub-request.
    pub url: String,
}

impl IncludeTarget {
    /// Replaces `Host` in sub-request headers when the include named a host.
    pub fn apply_host(&self, headers: &mut HeaderMap) {
        if let Some(h) = &self.host {
            if let Ok(v) = HeaderValue::from_str(h) {
                headers.insert(HOST, v);
            }
        }
    }
}

/// Resolves an include `src` against the parent URL (Varnish semantics):
/// `http://host/path` → host + path; `/path` → as is; a relative `src` →
/// appended to the parent's directory (the path up to its last `/`).
/// `https://` includes are ignored (`None`), as Varnish does by default —
/// Magento rewrites its ESI URLs to `http` for that reason. An empty `src`
/// is ignored too.
pub fn resolve_include(src: &str, parent_url: &str) -> Option<IncludeTarget> {
    if src.is_empty() || src.starts_with("https://") {
        return None;
    }
    if let Some(rest) = src.strip_prefix("http://") {
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            return None;
        }
        return Some(IncludeTarget {
            host: Some(host.to_owned()),
            url: path.to_owned(),
        });
    }
    if src.starts_with('/') {
        return Some(IncludeTarget {
            host: None,
            url: src.to_owned(),
        });
    }
    let path = parent_url.split('?').next().unwrap_or("");
    let dir = match path.rfind('/') {
        Some(at) => &path[..=at],
        None => "/",
    };
    Some(IncludeTarget {
        host: None,
        url: format!("{dir}{src}"),
    })
}

/// Headers of an ESI sub-request (contract §9): a copy of the **original
/// client request's** headers (so `Cookie` and its `X-Magento-Vary` apply),
/// without `If-*`, `Range`, `Content-Length` and `Transfer-Encoding`;
/// `Accept-Encoding: gzip` if the parent is delivered gzipped, else none.
/// The method is `GET`; set `Host` with [`IncludeTarget::apply_host`].
pub fn subrequest_headers(parent: &HeaderMap, gzip: bool) -> HeaderMap {
    let mut h = parent.clone();
    for name in [
        IF_MODIFIED_SINCE,
        IF_NONE_MATCH,
        IF_MATCH,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
        RANGE,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
    ] {
        h.remove(name);
    }
    if gzip {
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    } else {
        h.remove(ACCEPT_ENCODING);
    }
    h
}

#[cfg(test)]
mod tests;
