//! Request-smuggling guard: follows HTTP/1 message framing on the raw bytes
//! of a connection, before hyper parses them, and refuses heads whose
//! framing two HTTP implementations could read differently.
//!
//! hyper already answers 400 to most ambiguous framing (HTTP/1.0 with
//! `Transfer-Encoding`, `chunked` not last, conflicting `Content-Length`s, a
//! space before the colon, obsolete line folding). It accepts a request that
//! carries **both** `Content-Length` and `Transfer-Encoding` (RFC 9112 lets a
//! server ignore the length) and removes the length before the edge sees the
//! headers, and it accepts a repeated or multi-coded `Transfer-Encoding`. A
//! load balancer in front that reads the other header is exactly the CL.TE /
//! TE.CL desync of request smuggling, so the edge refuses those heads: 400
//! and the connection closed.
//!
//! To see every head (pipelined requests arrive in the same reads as the
//! previous body) the guard tracks where each message ends: `Content-Length`
//! bodies by count, chunked bodies by their chunk sizes. Anything it cannot
//! follow (a malformed chunk, an upgrade) it stops inspecting and leaves to
//! hyper, which refuses malformed framing itself.
//!
//! Pure: bytes in, verdicts out; no I/O, no clock.

/// Longest head followed; beyond it hyper answers 431 anyway.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per head (hyper's own limit is configured lower or equal).
const MAX_HEADERS: usize = 128;

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `Content-Length` and `Transfer-Encoding` in one request.
    LengthAndChunked,
    /// `Transfer-Encoding` given more than once.
    RepeatedTransferEncoding,
    /// A transfer coding other than exactly `chunked`.
    UnsupportedTransferEncoding,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::LengthAndChunked => "Content-Length with Transfer-Encoding",
            Refusal::RepeatedTransferEncoding => "repeated Transfer-Encoding",
            Refusal::UnsupportedTransferEncoding => "Transfer-Encoding other than chunked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages, or inside a head (bytes kept in `head`).
    Head,
    /// Inside a body of known length: bytes left.
    Fixed(u64),
    /// Reading a chunk-size line (digits so far in `size`, `ext` after `;`).
    ChunkSize { size: u64, digits: u8, ext: bool },
    /// Inside chunk data: bytes left.
    ChunkData(u64),
    /// After chunk data: the CRLF (bytes of it still expected).
    ChunkEnd(u8),
    /// Trailer section: `line_empty` while the current line has no bytes yet.
    Trailers { line_empty: bool },
    /// No longer followed (upgrade, or framing hyper will refuse).
    Off,
}

/// The framing tracker of one HTTP/1 connection.
#[derive(Debug)]
pub(crate) struct FramingGuard {
    state: State,
    /// Bytes of a head split over several reads (reused between requests).
    head: Vec<u8>,
}

impl Default for FramingGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl FramingGuard {
    pub(crate) fn new() -> FramingGuard {
        FramingGuard {
            state: State::Head,
            head: Vec::new(),
        }
    }

    /// True while the connection is inside a request body (for the body
    /// read timeout).
    pub(crate) fn in_body(&self) -> bool {
        !matches!(self.state, State::Head | State::Off)
    }

    /// Feeds bytes as read from the client; `Err` when a head must be refused.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Refusal> {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return Ok(()),
                State::Head => {
                    let used = self.feed_head(bytes)?;
                    bytes = &bytes[used..];
                }
                State::Fixed(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Fixed(left)
                    };
                }
                State::ChunkSize { size, digits, ext } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match b {
                        b'\n' if digits > 0 => {
                            if size == 0 {
                                State::Trailers { line_empty: true }
                            } else {
                                State::ChunkData(size)
                            }
                        }
                        _ if ext => State::ChunkSize { size, digits, ext },
                        b';' if digits > 0 => State::ChunkSize {
                            size,
                            digits,
                            ext: true,
                        },
                        b'\r' | b' ' | b'\t' if digits > 0 => State::ChunkSize {
                            size,
                            digits,
                            ext: true,
                        },
                        _ => match hex(b) {
                            Some(d) if digits < 16 => State::ChunkSize {
                                size: size << 4 | u64::from(d),
                                digits: digits + 1,
                                ext,
                            },
                            // Not a chunk size: hyper refuses the body.
                            _ => State::Off,
                        },
                    };
                }
                State::ChunkData(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkEnd(left) => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match (left, b) {
                        (2, b'\r') => State::ChunkEnd(1),
                        (_, b'\n') => State::ChunkSize {
                            size: 0,
                            digits: 0,
                            ext: false,
                        },
                        _ => State::Off,
                    };
                }
                State::Trailers { line_empty } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match b {
                        b'\n' if line_empty => State::Head,
                        b'\n' => State::Trailers { line_empty: true },
                        b'\r' => State::Trailers { line_empty },
                        _ => State::Trailers { line_empty: false },
                    };
                }
            }
        }
        Ok(())
    }

    /// Consumes head bytes; returns how many were used (all of them while
    /// the head is incomplete).
    fn feed_head(&mut self, bytes: &[u8]) -> Result<usize, Refusal> {
        // Empty lines before a request line are ignored (RFC 9112 §2.2).
        if self.head.is_empty() {
            let skip = bytes
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if skip > 0 {
                return Ok(skip);
            }
            // The whole head in this read (the usual case): no copy.
            if let Some(done) = self.parse(bytes)? {
                return Ok(done);
            }
            self.head.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        let old = self.head.len();
        self.head.extend_from_slice(bytes);
        let head = std::mem::take(&mut self.head);
        let result = self.parse(&head);
        self.head = head;
        match result? {
            Some(done) => {
                self.head.clear();
                Ok(done.saturating_sub(old))
            }
            None => {
                if self.head.len() > MAX_HEAD {
                    self.head = Vec::new();
                    self.state = State::Off;
                }
                Ok(bytes.len())
            }
        }
    }

    /// Parses a head; `Some(len)` when complete (and the state moved on).
    fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            // Malformed or too many headers: hyper answers it (400/431).
            Err(_) => {
                self.state = State::Off;
                return Ok(Some(buf.len()));
            }
        };
        let mut te = 0usize;
        let mut te_chunked = false;
        let mut cl: Option<u64> = None;
        let mut cl_count = 0usize;
        let mut upgrade = req
            .method
            .is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te += 1;
                te_chunked = trim(h.value).eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                cl_count += 1;
                cl = std::str::from_utf8(trim(h.value))
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if te > 0 && cl_count > 0 {
            return Err(Refusal::LengthAndChunked);
        }
        if te > 1 {
            return Err(Refusal::RepeatedTransferEncoding);
        }
        if te == 1 && !te_chunked {
            return Err(Refusal::UnsupportedTransferEncoding);
        }
        self.state = if upgrade {
            State::Off
        } else if te_chunked {
            State::ChunkSize {
                size: 0,
                digits: 0,
                ext: false,
            }
        } else if cl_count > 0 {
            match cl {
                Some(0) => State::Head,
                Some(n) => State::Fixed(n),
                // Unparsable or conflicting lengths: hyper refuses them.
                None => State::Off,
            }
        } else {
            State::Head
        };
        Ok(Some(len))
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_all(parts: &[&[u8]]) -> Result<(), Refusal> {
        let mut g = FramingGuard::new();
        for p in parts {
            g.feed(p)?;
        }
        Ok(())
    }

    const SMUGGLE: &[u8] = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG";

    #[test]
    fn length_with_chunked_is_refused_in_any_order() {
        assert_eq!(feed_all(&[SMUGGLE]), Err(Refusal::LengthAndChunked));
        let te_first =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(feed_all(&[te_first]), Err(Refusal::LengthAndChunked));
    }

    #[test]
    fn transfer_codings_other_than_chunked_and_repeats_are_refused() {
        let te = |v: &str| {
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {v}\r\n\r\n0\r\n\r\n")
        };
        assert_eq!(
            feed_all(&[te("identity, chunked").as_bytes()]),
            Err(Refusal::UnsupportedTransferEncoding)
        );
        assert_eq!(feed_all(&[te("chunked").as_bytes()]), Ok(()));
        assert_eq!(feed_all(&[te("ChUnKeD").as_bytes()]), Ok(()));
        let twice =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(feed_all(&[twice]), Err(Refusal::RepeatedTransferEncoding));
    }

    #[test]
    fn heads_split_across_reads_are_followed() {
        for cut in 1..SMUGGLE.len() {
            let (a, b) = SMUGGLE.split_at(cut);
            assert_eq!(
                feed_all(&[a, b]),
                Err(Refusal::LengthAndChunked),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_pipelined_head_after_bodies_is_seen() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\nTransfer-Encoding: chunked\n");
        stream.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n");
        stream.extend_from_slice(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
        // Body text that looks like a header is not a head; clean stream.
        assert_eq!(feed_all(&[&stream]), Ok(()));
        stream.extend_from_slice(SMUGGLE);
        assert_eq!(feed_all(&[&stream]), Err(Refusal::LengthAndChunked));
        for cut in [10, 60, 100, 150, 200] {
            let (a, b) = stream.split_at(cut.min(stream.len()));
            assert_eq!(
                feed_all(&[a, b]),
                Err(Refusal::LengthAndChunked),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn body_state_is_known_for_the_body_timeout() {
        let mut g = FramingGuard::new();
        assert!(!g.in_body());
        g.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert!(g.in_body());
        g.feed(b"defghij").unwrap();
        assert!(!g.in_body());
    }

    proptest! {
        /// Arbitrary bytes, cut anywhere: never a panic.
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let cut = cut.min(data.len());
            let _ = feed_all(&[&data[..cut], &data[cut..]]);
        }

        /// Clean pipelines of GETs and length-framed POSTs with arbitrary
        /// bodies are never refused, however the reads are cut.
        #[test]
        fn clean_pipelines_pass(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..5), cut in 0usize..2000) {
            let mut s = Vec::new();
            for b in &bodies {
                s.extend_from_slice(format!("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes());
                s.extend_from_slice(b);
                s.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            }
            let cut = cut.min(s.len());
            prop_assert_eq!(feed_all(&[&s[..cut], &s[cut..]]), Ok(()));
        }
    }
}
