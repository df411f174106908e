//! CGI response-head parsing (pure: no I/O).
//!
//! A FastCGI responder writes a CGI response to STDOUT: header lines, an
//! empty line, then the body. [`HeadParser`] accumulates STDOUT bytes until
//! the empty line (`\r\n\r\n`, `\n\n` or a mix), refuses heads larger than a
//! ceiling (nginx's `fastcgi_buffer_size`, 32 KiB in Magento's sample config),
//! and turns the lines into an HTTP status and headers:
//!
//! * `Status: 404 Not Found` gives the status and is not forwarded;
//! * otherwise `Location:` gives 302 (the CGI rule nginx applies);
//! * otherwise 200.
#![deny(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Default ceiling for a response head, like nginx's `fastcgi_buffer_size 32k`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// Why a response head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// No end of the header block within the ceiling.
    #[error("cgi response head too large: more than {max} bytes")]
    TooLarge {
        /// The ceiling in force.
        max: usize,
    },
    /// A header line is not `Name: value` with a valid name and value.
    #[error("invalid cgi response header on line {line}")]
    InvalidHeader {
        /// 1-based line number within the head.
        line: usize,
    },
    /// The `Status` header does not start with a 3-digit code in 100..=999.
    #[error("invalid cgi status header on line {line}")]
    InvalidStatus {
        /// 1-based line number within the head.
        line: usize,
    },
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// From `Status:`, else 302 if `Location:` is present, else 200.
    pub status: StatusCode,
    /// Header lines in order, without `Status`. Names are lowercased.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// STDOUT bytes after the header block: the start of the body.
    pub body: Bytes,
}

impl ResponseHead {
    /// The headers as a [`HeaderMap`] (repeated names kept, in order).
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.headers.len());
        for (n, v) in &self.headers {
            map.append(n.clone(), v.clone());
        }
        map
    }

    /// Splits into status, header map and leftover body bytes.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        let mut map = HeaderMap::with_capacity(self.headers.len());
        for (n, v) in self.headers {
            map.append(n, v);
        }
        (self.status, map, self.body)
    }
}

/// Incremental CGI response-head parser.
///
/// Feed STDOUT contents with [`push`](Self::push) until it returns a head.
/// Each byte is scanned once. After a head is returned the parser is empty
/// again and may be reused for another response.
#[derive(Debug)]
pub struct HeadParser {
    buf: BytesMut,
    max: usize,
    /// Where the next search for `\n` starts.
    scanned: usize,
    /// Start of the current (incomplete) line.
    line_start: usize,
}

impl HeadParser {
    /// A parser that refuses heads longer than `max_header_bytes` (terminator included).
    pub fn new(max_header_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max: max_header_bytes,
            scanned: 0,
            line_start: 0,
        }
    }

    /// Bytes buffered so far (0 after a head was returned).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Adds STDOUT bytes. Returns the head once the empty line has arrived.
    ///
    /// # Errors
    ///
    /// [`HeadError::TooLarge`] once more than the ceiling is buffered without
    /// an end of head, or if the head ends beyond it; [`HeadError::InvalidHeader`]
    /// and [`HeadError::InvalidStatus`] for malformed lines.
    pub fn push(&mut self, data: Bytes) -> Result<Option<ResponseHead>, HeadError> {
        let (end, line_start) = if self.buf.is_empty() {
            // Fast path: the whole head is in the first chunk; no copy.
            let (end, line_start) = find_end(&data, 0, 0);
            if let Some(end) = end {
                self.check_len(end)?;
                let (status, headers) = parse_head(&data[..end])?;
                return Ok(Some(ResponseHead {
                    status,
                    headers,
                    body: data.slice(end..),
                }));
            }
            self.buf.extend_from_slice(&data);
            (None, line_start)
        } else {
            self.buf.extend_from_slice(&data);
            find_end(&self.buf, self.scanned, self.line_start)
        };
        match end {
            Some(end) => {
                self.check_len(end)?;
                let head = self.buf.split_to(end);
                let body = std::mem::take(&mut self.buf).freeze();
                self.scanned = 0;
                self.line_start = 0;
                let (status, headers) = parse_head(&head)?;
                Ok(Some(ResponseHead {
                    status,
                    headers,
                    body,
                }))
            }
            None => {
                // The terminator needs at least one more byte.
                self.check_len(self.buf.len() + 1)?;
                self.scanned = self.buf.len();
                self.line_start = line_start;
                Ok(None)
            }
        }
    }

    fn check_len(&self, head_len: usize) -> Result<(), HeadError> {
        if head_len > self.max {
            Err(HeadError::TooLarge { max: self.max })
        } else {
            Ok(())
        }
    }
}

/// Finds the end of the header block (the index just past the empty line)
/// scanning from `pos` with the current line starting at `line_start`.
/// Returns the end, or `None` and the start of the incomplete last line.
fn find_end(buf: &[u8], mut pos: usize, mut line_start: usize) -> (Option<usize>, usize) {
    while let Some(off) = buf
        .get(pos..)
        .and_then(|s| s.iter().position(|&b| b == b'\n'))
    {
        let nl = pos + off;
        let line = buf.get(line_start..nl).unwrap_or_default();
        if strip_cr(line).is_empty() {
            return (Some(nl + 1), line_start);
        }
        line_start = nl + 1;
        pos = nl + 1;
    }
    (None, line_start)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Parses a complete head (header lines and the terminating empty line).
pub fn parse_head(head: &[u8]) -> Result<(StatusCode, Vec<(HeaderName, HeaderValue)>), HeadError> {
    let mut status = None;
    let mut headers = Vec::new();
    for (i, raw) in head.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = strip_cr(raw);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(HeadError::InvalidHeader { line: line_no });
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"status") {
            status = Some(parse_status(value).ok_or(HeadError::InvalidStatus { line: line_no })?);
            continue;
        }
        let name =
            HeaderName::from_bytes(name).map_err(|_| HeadError::InvalidHeader { line: line_no })?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| HeadError::InvalidHeader { line: line_no })?;
        headers.push((name, value));
    }
    let status = status.unwrap_or_else(|| {
        if headers.iter().any(|(n, _)| n == header::LOCATION) {
            StatusCode::FOUND
        } else {
            StatusCode::OK
        }
    });
    Ok((status, headers))
}

/// `404`, `404 Not Found`: three digits, then the end or whitespace.
fn parse_status(v: &[u8]) -> Option<StatusCode> {
    let code = v.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match v.get(3) {
        None | Some(b' ' | b'\t') => StatusCode::from_bytes(code).ok(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
        HeadParser::new(DEFAULT_MAX_HEADER_BYTES).push(Bytes::copy_from_slice(input))
    }

    fn head(input: &[u8]) -> ResponseHead {
        match parse_all(input) {
            Ok(Some(h)) => h,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    #[test]
    fn simple_head_crlf() {
        let h = head(b"Content-type: text/html; charset=UTF-8\r\nX-Powered-By: PHP\r\n\r\nhello");
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.headers[0].0, header::CONTENT_TYPE);
        assert_eq!(h.headers[0].1, "text/html; charset=UTF-8");
        assert_eq!(h.headers[1].0.as_str(), "x-powered-by");
        assert_eq!(&h.body[..], b"hello");
    }

    #[test]
    fn lf_only_and_mixed_terminators() {
        let h = head(b"A: 1\nB: 2\n\nbody");
        assert_eq!(h.headers.len(), 2);
        assert_eq!(&h.body[..], b"body");
        let h = head(b"A: 1\r\n\nbody");
        assert_eq!(h.headers.len(), 1);
        assert_eq!(&h.body[..], b"body");
        let h = head(b"A: 1\n\r\nbody\r\n\r\n");
        assert_eq!(&h.body[..], b"body\r\n\r\n");
    }

    #[test]
    fn empty_head() {
        let h = head(b"\r\nbody");
        assert_eq!(h.status, StatusCode::OK);
        assert!(h.headers.is_empty());
        assert_eq!(&h.body[..], b"body");
    }

    #[test]
    fn status_header() {
        let h = head(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n");
        assert_eq!(h.status, StatusCode::NOT_FOUND);
        assert_eq!(h.headers.len(), 1, "Status is not forwarded");
        assert!(h.body.is_empty());
        assert_eq!(
            head(b"status:503\r\n\r\n").status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            head(b"STATUS: 201\tCreated\n\n").status,
            StatusCode::CREATED
        );
    }

    #[test]
    fn location_without_status_is_302() {
        let h = head(b"Location: /checkout\r\n\r\n");
        assert_eq!(h.status, StatusCode::FOUND);
        assert_eq!(h.headers[0].1, "/checkout");
        let h = head(b"Location: /x\r\nStatus: 301 Moved Permanently\r\n\r\n");
        assert_eq!(h.status, StatusCode::MOVED_PERMANENTLY);
    }

    #[test]
    fn invalid_status() {
        for bad in [
            &b"Status: abc\n\n"[..],
            b"Status: 99\n\n",
            b"Status: 4040\n\n",
            b"Status: 099\n\n",
            b"Status:\n\n",
        ] {
            assert!(
                matches!(parse_all(bad), Err(HeadError::InvalidStatus { line: 1 })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn invalid_header_lines() {
        assert_eq!(
            parse_all(b"A: 1\r\nno colon here\r\n\r\n"),
            Err(HeadError::InvalidHeader { line: 2 })
        );
        assert_eq!(
            parse_all(b"Bad Name: 1\r\n\r\n"),
            Err(HeadError::InvalidHeader { line: 1 })
        );
        assert_eq!(
            parse_all(b": empty\r\n\r\n"),
            Err(HeadError::InvalidHeader { line: 1 })
        );
        assert_eq!(
            parse_all(b"A: 1\r\n folded\r\n\r\n"),
            Err(HeadError::InvalidHeader { line: 2 })
        );
        assert_eq!(
            parse_all(b"A: bad\x01value\r\n\r\n"),
            Err(HeadError::InvalidHeader { line: 1 })
        );
    }

    #[test]
    fn value_whitespace_trimmed_and_repeated_headers_kept() {
        let h = head(b"Set-Cookie:  a=1 \r\nSet-Cookie:\tb=2\r\n\r\n");
        let map = h.header_map();
        let all: Vec<_> = map.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(all, ["a=1", "b=2"]);
    }

    #[test]
    fn incremental_byte_by_byte() {
        let input = b"Status: 201 Created\r\nX-A: 1\r\n\r\nrest of body";
        let mut p = HeadParser::new(DEFAULT_MAX_HEADER_BYTES);
        let mut got = None;
        for (i, b) in input.iter().enumerate() {
            if let Some(h) = p.push(Bytes::copy_from_slice(&[*b])).expect("valid") {
                got = Some((i, h));
                break;
            }
        }
        let (i, h) = got.expect("head found");
        assert_eq!(i, input.len() - b"rest of body".len() - 1);
        assert_eq!(h.status, StatusCode::CREATED);
        assert!(h.body.is_empty());
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn incremental_split_terminator() {
        let mut p = HeadParser::new(DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(p.push(Bytes::from_static(b"A: 1\r\n\r")), Ok(None));
        let h = p
            .push(Bytes::from_static(b"\nbody"))
            .expect("valid")
            .expect("complete");
        assert_eq!(&h.body[..], b"body");
        assert_eq!(h.headers.len(), 1);
    }

    #[test]
    fn too_large() {
        let mut p = HeadParser::new(16);
        assert_eq!(p.push(Bytes::from_static(b"A: 0123456789")), Ok(None));
        assert_eq!(
            p.push(Bytes::from_static(b"ab")),
            Ok(None),
            "15 bytes: the terminator may still fit"
        );
        assert_eq!(
            p.push(Bytes::from_static(b"c")),
            Err(HeadError::TooLarge { max: 16 })
        );
        // Exactly at the limit is fine (terminator included).
        let mut p = HeadParser::new(8);
        let h = p
            .push(Bytes::from_static(b"A: 123\n\nbody"))
            .expect("fits")
            .expect("complete");
        assert_eq!(&h.body[..], b"body");
        let mut p = HeadParser::new(7);
        assert_eq!(
            p.push(Bytes::from_static(b"A: 123\n\nbody")),
            Err(HeadError::TooLarge { max: 7 })
        );
        // A big body after a small head is fine.
        let mut input = b"A: 1\r\n\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        assert!(HeadParser::new(16)
            .push(Bytes::from(input))
            .expect("fits")
            .is_some());
    }

    #[test]
    fn too_large_without_any_newline() {
        let mut p = HeadParser::new(DEFAULT_MAX_HEADER_BYTES);
        let chunk = Bytes::from(vec![b'a'; 8192]);
        for _ in 0..3 {
            assert_eq!(p.push(chunk.clone()), Ok(None));
        }
        assert_eq!(
            p.push(chunk),
            Err(HeadError::TooLarge {
                max: DEFAULT_MAX_HEADER_BYTES
            })
        );
    }

    #[test]
    fn parser_is_reusable_after_a_head() {
        let mut p = HeadParser::new(64);
        assert_eq!(p.push(Bytes::from_static(b"A: 1\r\n")), Ok(None));
        assert!(p.push(Bytes::from_static(b"\r\n")).expect("ok").is_some());
        let h = p
            .push(Bytes::from_static(b"B: 2\n\n"))
            .expect("ok")
            .expect("head");
        assert_eq!(h.headers[0].0.as_str(), "b");
    }

    #[test]
    fn php_fpm_file_not_found() {
        let h = head(b"Status: 404 Not Found\r\nX-Powered-By: PHP/8.2.7\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n");
        assert_eq!(h.status, 404);
        assert_eq!(&h.body[..], b"File not found.\n");
        let (status, map, body) = h.into_parts();
        assert_eq!(status, 404);
        assert_eq!(map.len(), 2);
        assert_eq!(&body[..], b"File not found.\n");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16), max in 0usize..512) {
                let mut p = HeadParser::new(max);
                for c in chunks {
                    match p.push(Bytes::from(c)) {
                        Ok(Some(h)) => prop_assert!(h.status.as_u16() >= 100),
                        Ok(None) => prop_assert!(p.buffered() < max.max(1)),
                        Err(_) => break,
                    }
                }
            }

            #[test]
            fn chunking_does_not_change_result(
                lines in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,20}"), 0..8),
                body in proptest::collection::vec(any::<u8>(), 0..64),
                split in any::<proptest::sample::Index>(),
            ) {
                let mut input = Vec::new();
                for (n, v) in &lines {
                    input.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                }
                input.extend_from_slice(b"\r\n");
                input.extend_from_slice(&body);
                let whole = HeadParser::new(4096).push(Bytes::from(input.clone()));
                let at = split.index(input.len() + 1);
                let mut p = HeadParser::new(4096);
                let first = p.push(Bytes::copy_from_slice(&input[..at]));
                let parts = match first {
                    Ok(None) => p.push(Bytes::copy_from_slice(&input[at..])),
                    Ok(Some(mut h)) => {
                        let mut b = h.body.to_vec();
                        b.extend_from_slice(&input[at..]);
                        h.body = Bytes::from(b);
                        Ok(Some(h))
                    }
                    Err(e) => Err(e),
                };
                prop_assert_eq!(whole, parts);
            }
        }
    }
}
