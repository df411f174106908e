//! Request-smuggling guard: follows HTTP/1 message framing on the raw bytes
//! of a connection, before hyper parses them, and refuses heads whose
//! framing two HTTP implementations could read differently.
//!
//! hyper already answers 400 (and closes) to most ambiguous framing:
//! HTTP/1.0 with `Transfer-Encoding`, `chunked` not last, two *different*
//! `Content-Length`s, a non-numeric length, a space before the colon,
//! obsolete line folding. It accepts a request that carries **both**
//! `Content-Length` and `Transfer-Encoding` (RFC 9112 lets a server ignore
//! the length) and removes the length before the edge sees the headers; it
//! accepts a repeated or multi-coded `Transfer-Encoding` (`gzip, chunked`)
//! and a repeated identical `Content-Length`. A load balancer in front that
//! reads the other header is exactly the CL.TE / TE.CL desync of request
//! smuggling, so the edge refuses those heads: 400 and the connection
//! closed, as nginx does. A length that is not plain digits is refused here
//! too (hyper would refuse it as well): the guard needs the length to find
//! the next head, and never guesses.
//!
//! To see every head (pipelined requests arrive in the same reads as the
//! previous body) the guard tracks where each message ends: `Content-Length`
//! bodies by count, chunked bodies with a byte-for-byte copy of hyper's
//! chunked decoder (`hyper::proto::h1::decode::ChunkedState`, 1.x), so both
//! agree on where the next head starts. Where hyper would fail the body the
//! guard refuses too: a tracker that merely *stopped* following would let
//! the next head through unseen (fail-open), so any body it cannot follow
//! ends the connection. Only heads that hyper itself rejects (httparse errors
//! with the same parser and default `ParserConfig`, too many headers, too
//! long) are left to hyper, which answers them 400 or 431 and closes.
//!
//! The edge never grants an upgrade (`serve_connection` without
//! `with_upgrades`): a `101` or a `2xx` to `CONNECT` ends the connection in
//! hyper, and otherwise hyper goes on reading heads. So `Upgrade` and
//! `CONNECT` do not stop the guard either.
//!
//! Pure: bytes in, verdicts out; no I/O, no clock. A head that arrives whole
//! in one read (the usual case) is parsed in place; only a head split over
//! reads is copied, into a buffer reused for the connection's life.

/// Headers parsed on the stack; heads with more (up to the configured
/// ceiling) take a heap array for that one parse.
const STACK_HEADERS: usize = 128;

/// The ceilings hyper enforces on this connection; the guard follows any
/// head hyper could accept, and leaves larger ones to hyper's 431.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardLimits {
    /// hyper's read-buffer ceiling (`max_buf_size`): a head still
    /// incomplete beyond it is refused by hyper.
    pub(crate) max_head_bytes: usize,
    /// hyper's `max_headers`.
    pub(crate) max_headers: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `Content-Length` and `Transfer-Encoding` in one request.
    LengthAndChunked,
    /// `Transfer-Encoding` given more than once.
    RepeatedTransferEncoding,
    /// A transfer coding other than exactly `chunked`.
    UnsupportedTransferEncoding,
    /// `Content-Length` given more than once (even with one value).
    RepeatedContentLength,
    /// `Content-Length` that is not plain decimal digits.
    InvalidContentLength,
    /// A chunked body hyper would not accept either.
    MalformedChunk,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::LengthAndChunked => "Content-Length with Transfer-Encoding",
            Refusal::RepeatedTransferEncoding => "repeated Transfer-Encoding",
            Refusal::UnsupportedTransferEncoding => "Transfer-Encoding other than chunked",
            Refusal::RepeatedContentLength => "repeated Content-Length",
            Refusal::InvalidContentLength => "invalid Content-Length",
            Refusal::MalformedChunk => "malformed chunked body",
        }
    }
}

/// Where the connection is in a chunked body; the states and transitions
/// of hyper's `ChunkedState`, with the chunk size carried along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// First hex digit of a chunk size.
    Start,
    /// More hex digits (size so far).
    Size(u64),
    /// Blanks after the size.
    SizeLws(u64),
    /// A chunk extension, up to CR.
    Extension(u64),
    /// The LF ending the size line.
    SizeLf(u64),
    /// Chunk data: bytes left.
    Data(u64),
    /// CR after chunk data.
    DataCr,
    /// LF after chunk data.
    DataLf,
    /// Inside a trailer line, up to CR.
    Trailer,
    /// LF ending a trailer line.
    TrailerLf,
    /// After the last-chunk line or a trailer line: CR of the end, or a trailer.
    EndCr,
    /// LF ending the message.
    EndLf,
}

impl Chunk {
    /// One byte of framing (never chunk data); `None` means the message
    /// ended, `Err` that hyper would fail the body.
    fn step(self, b: u8) -> Result<Option<Chunk>, Refusal> {
        use Chunk::*;
        let next = match (self, b) {
            (Start, _) => Size(u64::from(hex(b).ok_or(Refusal::MalformedChunk)?)),
            (Size(n), b'\t' | b' ') => SizeLws(n),
            (Size(n), b';') => Extension(n),
            (Size(n), b'\r') => SizeLf(n),
            (Size(n), _) => {
                let d = hex(b).ok_or(Refusal::MalformedChunk)?;
                // Any number of digits, leading zeros included, as long as
                // the value fits: exactly hyper's rule.
                Size(
                    n.checked_mul(16)
                        .and_then(|n| n.checked_add(u64::from(d)))
                        .ok_or(Refusal::MalformedChunk)?,
                )
            }
            (SizeLws(n), b'\t' | b' ') => SizeLws(n),
            (SizeLws(n), b';') => Extension(n),
            (SizeLws(n), b'\r') => SizeLf(n),
            (SizeLws(_), _) => return Err(Refusal::MalformedChunk),
            (Extension(n), b'\r') => SizeLf(n),
            (Extension(_), b'\n') => return Err(Refusal::MalformedChunk),
            (Extension(n), _) => Extension(n),
            (SizeLf(0), b'\n') => EndCr,
            (SizeLf(n), b'\n') => Data(n),
            (SizeLf(_), _) => return Err(Refusal::MalformedChunk),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (DataCr | DataLf, _) => return Err(Refusal::MalformedChunk),
            // A bare LF does not end a trailer line for hyper: only CR LF.
            (Trailer, b'\r') => TrailerLf,
            (Trailer, _) => Trailer,
            (TrailerLf, b'\n') => EndCr,
            (TrailerLf, _) => return Err(Refusal::MalformedChunk),
            (EndCr, b'\r') => EndLf,
            (EndCr, _) => Trailer,
            (EndLf, b'\n') => return Ok(None),
            (EndLf, _) => return Err(Refusal::MalformedChunk),
            // Data is skipped in bulk by the caller, never stepped.
            (Data(n), _) => Data(n),
        };
        Ok(Some(next))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages, or inside a head (bytes kept in `head`).
    Head,
    /// Inside a body of known length: bytes left.
    Fixed(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// No longer followed: the current head is one hyper refuses and
    /// closes the connection on.
    Off,
}

/// The framing tracker of one HTTP/1 connection.
#[derive(Debug)]
pub(crate) struct FramingGuard {
    state: State,
    limits: GuardLimits,
    /// Bytes of a head split over several reads (reused between requests).
    head: Vec<u8>,
}

impl Default for FramingGuard {
    fn default() -> Self {
        Self::new(GuardLimits::default())
    }
}

impl FramingGuard {
    pub(crate) fn new(limits: GuardLimits) -> FramingGuard {
        FramingGuard {
            state: State::Head,
            limits,
            head: Vec::new(),
        }
    }

    /// True while the connection is inside a request body (for the body
    /// read timeout).
    pub(crate) fn in_body(&self) -> bool {
        matches!(self.state, State::Fixed(_) | State::Chunked(_))
    }

    /// Feeds bytes as read from the client; `Err` when the connection must
    /// be refused. After an `Err` the guard is not fed again (the
    /// connection closes).
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Refusal> {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return Ok(()),
                State::Head => {
                    let used = self.feed_head(bytes)?;
                    bytes = &bytes[used..];
                }
                State::Fixed(left) => {
                    let n = skip(left, bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Fixed(left)
                    };
                }
                State::Chunked(Chunk::Data(left)) => {
                    let n = skip(left, bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                }
                State::Chunked(c) => {
                    self.state = match c.step(bytes[0])? {
                        Some(next) => State::Chunked(next),
                        None => State::Head,
                    };
                    bytes = &bytes[1..];
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
            if bytes.len() > self.limits.max_head_bytes {
                // hyper's buffer is full without a head: it answers 431.
                self.state = State::Off;
                return Ok(bytes.len());
            }
            self.head.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        let old = self.head.len();
        self.head.extend_from_slice(bytes);
        // A head only completes with a line end: a slow client sending a
        // byte at a time does not get a re-parse per byte.
        let result = if bytes.contains(&b'\n') {
            let head = std::mem::take(&mut self.head);
            let result = self.parse(&head);
            self.head = head;
            result
        } else {
            Ok(None)
        };
        match result {
            Ok(Some(done)) => {
                self.head.clear();
                Ok(done.saturating_sub(old))
            }
            Ok(None) => {
                if self.head.len() > self.limits.max_head_bytes {
                    // hyper's buffer is full without a head: it answers 431.
                    self.head = Vec::new();
                    self.state = State::Off;
                }
                Ok(bytes.len())
            }
            Err(e) => {
                self.head.clear();
                Err(e)
            }
        }
    }

    /// Parses a head; `Some(len)` when complete (and the state moved on).
    fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, Refusal> {
        let mut headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => self.framing(&req, len).map(Some),
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) if self.limits.max_headers > STACK_HEADERS => {
                // Rare: more headers than the stack array, within hyper's
                // ceiling. One heap array for this head.
                let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(buf) {
                    Ok(httparse::Status::Complete(len)) => self.framing(&req, len).map(Some),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(_) => self.give_up(buf.len()),
                }
            }
            // Malformed, or more headers than hyper takes: hyper runs the
            // same parser on the same bytes and answers it (400/431).
            Err(_) => self.give_up(buf.len()),
        }
    }

    fn give_up(&mut self, len: usize) -> Result<Option<usize>, Refusal> {
        self.state = State::Off;
        Ok(Some(len))
    }

    /// Decides the framing of a complete head, as hyper would, refusing
    /// the ambiguous cases; returns the head length.
    fn framing(&mut self, req: &httparse::Request<'_, '_>, len: usize) -> Result<usize, Refusal> {
        let mut te = 0usize;
        let mut te_chunked = false;
        let mut cl: Option<u64> = None;
        let mut cl_count = 0usize;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te += 1;
                te_chunked = trim(h.value).eq_ignore_ascii_case(b"chunked");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                cl_count += 1;
                cl = digits(trim(h.value));
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
        if cl_count > 1 {
            return Err(Refusal::RepeatedContentLength);
        }
        self.state = if te_chunked {
            State::Chunked(Chunk::Start)
        } else if cl_count == 1 {
            match cl {
                Some(0) => State::Head,
                Some(n) => State::Fixed(n),
                None => return Err(Refusal::InvalidContentLength),
            }
        } else {
            State::Head
        };
        Ok(len)
    }
}

/// How many of `available` bytes a body with `left` bytes to go takes.
fn skip(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |l| l.min(available))
}

/// hyper's `Content-Length` rule: decimal digits only (no sign, no list),
/// no overflow.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
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
        let mut g = FramingGuard::default();
        for p in parts {
            g.feed(p)?;
        }
        Ok(())
    }

    const SMUGGLE: &[u8] = b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG";

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
        let mut g = FramingGuard::default();
        assert!(!g.in_body());
        g.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert!(g.in_body());
        g.feed(b"defghij").unwrap();
        assert!(!g.in_body());
    }

    /// Feeds `parts` to a fresh guard; the verdict and the final state.
    fn run(parts: &[&[u8]], limits: GuardLimits) -> (Result<(), Refusal>, State) {
        let mut g = FramingGuard::new(limits);
        for p in parts {
            if let Err(e) = g.feed(p) {
                return (Err(e), g.state);
            }
        }
        (Ok(()), g.state)
    }

    fn chunked(body: &str) -> Vec<u8> {
        let mut v = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        v.extend_from_slice(body.as_bytes());
        v
    }

    fn then_smuggle(mut v: Vec<u8>) -> Vec<u8> {
        v.extend_from_slice(SMUGGLE);
        v
    }

    /// The edge never grants an upgrade, so hyper reads the next head
    /// after an `Upgrade` or `CONNECT` request: so must the guard.
    #[test]
    fn upgrade_and_connect_do_not_stop_the_guard() {
        for first in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"[..],
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        ] {
            assert_eq!(feed_all(&[first, SMUGGLE]), Err(Refusal::LengthAndChunked));
        }
    }

    /// hyper takes chunk sizes with any number of leading zeros.
    #[test]
    fn leading_zeros_in_chunk_sizes_are_followed() {
        let v = then_smuggle(chunked("000000000000000000000000001\r\na\r\n0\r\n\r\n"));
        assert_eq!(feed_all(&[&v]), Err(Refusal::LengthAndChunked));
        // ...but not a size that overflows u64 (hyper fails the body).
        let v = chunked("10000000000000000\r\n");
        assert_eq!(feed_all(&[&v]), Err(Refusal::MalformedChunk));
    }

    /// hyper ends a trailer section at CR LF CR LF only; a bare LF LF
    /// inside it must not look like the end of the message.
    #[test]
    fn trailers_end_where_hyper_ends_them() {
        let tail = String::from_utf8(SMUGGLE.to_vec()).unwrap();
        let v = chunked(&format!(
            "0\r\nX-A: 1\n\nGET / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{tail}",
            tail.len()
        ));
        assert_eq!(feed_all(&[&v]), Err(Refusal::LengthAndChunked));
        let v = then_smuggle(chunked("3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"));
        assert_eq!(feed_all(&[&v]), Err(Refusal::LengthAndChunked));
    }

    /// Chunk syntax hyper refuses ends the connection here too: a tracker
    /// that merely stopped following would let the next head through.
    #[test]
    fn malformed_chunks_are_refused() {
        for body in [
            "x\r\n",                // no size digit
            "3 x\r\n",              // junk after blanks
            "3;ext\nabc\r\n",       // LF inside an extension
            "3\nabc\r\n",           // size line without CR
            "3\r\nabcX",            // data not followed by CR LF
            "3\r\nabc\r\r",         // CR not followed by LF
            "0\r\nX: 1\rY\r\n\r\n", // trailer CR without LF
            "0\r\n\rX",             // end CR without LF
        ] {
            assert_eq!(
                feed_all(&[&chunked(body)]),
                Err(Refusal::MalformedChunk),
                "{body:?}"
            );
        }
        // What hyper accepts: blanks, extensions, upper-case hex.
        let ok = chunked("A \t;name=\"v;x\"\r\n0123456789\r\n0;last\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(run(&[&ok], GuardLimits::default()), (Ok(()), State::Head));
    }

    #[test]
    fn content_length_must_come_once_as_plain_digits() {
        let cl = |v: &str| format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(
            feed_all(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"]),
            Err(Refusal::RepeatedContentLength)
        );
        for bad in ["+3", "3, 3", "-1", "0x10", "", "99999999999999999999"] {
            assert_eq!(
                feed_all(&[cl(bad).as_bytes()]),
                Err(Refusal::InvalidContentLength),
                "{bad:?}"
            );
        }
        let (r, st) = run(&[cl(" 12 ").as_bytes()], GuardLimits::default());
        assert_eq!((r, st), (Ok(()), State::Fixed(12)));
    }

    /// Heads beyond the stack array (but within hyper's `max_headers`) and
    /// beyond the old fixed size (but within hyper's buffer) are followed.
    #[test]
    fn heads_within_hypers_limits_are_followed() {
        let limits = GuardLimits {
            max_head_bytes: 200 * 1024,
            max_headers: 300,
        };
        let many: String = (0..250).map(|i| format!("X-H{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        let v = then_smuggle(head.into_bytes());
        assert_eq!(run(&[&v], limits).0, Err(Refusal::LengthAndChunked));
        let (a, b) = v.split_at(1000);
        assert_eq!(run(&[a, b], limits).0, Err(Refusal::LengthAndChunked));
        let big = "a".repeat(100 * 1024);
        let v = then_smuggle(format!("GET / HTTP/1.1\r\nX-Big: {big}\r\n\r\n").into_bytes());
        for cut in [10, 70_000, v.len() - 5] {
            let (a, b) = v.split_at(cut);
            assert_eq!(
                run(&[a, b], limits).0,
                Err(Refusal::LengthAndChunked),
                "{cut}"
            );
        }
        // Beyond hyper's ceilings hyper answers 431 itself.
        let too_many: String = (0..301).map(|i| format!("X-H{i}: v\r\n")).collect();
        let v = format!("GET / HTTP/1.1\r\n{too_many}\r\n");
        assert_eq!(run(&[v.as_bytes()], limits), (Ok(()), State::Off));
    }

    /// A slow client sending its head a byte at a time is followed (and
    /// not re-parsed per byte: see `feed_head`).
    #[test]
    fn a_head_sent_byte_by_byte_is_followed() {
        let v = then_smuggle(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        let parts: Vec<&[u8]> = v.chunks(1).collect();
        assert_eq!(
            run(&parts, GuardLimits::default()).0,
            Err(Refusal::LengthAndChunked)
        );
    }

    /// Pieces that make interesting streams: heads, framing headers and
    /// their obfuscations, chunk lines, line ends, junk.
    const VOCAB: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"POST /x HTTP/1.1\r\n",
        b"POST /x HTTP/1.0\r\n",
        b"CONNECT x:1 HTTP/1.1\r\n",
        b"Host: x\r\n",
        b"Content-Length: 3\r\n",
        b"Content-Length: 0\r\n",
        b"Content-Length: 3, 3\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked, identity\r\n",
        b"Transfer-Encoding : chunked\r\n",
        b"Upgrade: websocket\r\n",
        b"X: a\r\n b\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"0\r\n",
        b"3\r\nabc\r\n",
        b"00000000000000000003;e=1\r\nabc\r\n",
        b"X-T: 1\r\n",
        b"abc",
        b"\x00\xff",
    ];

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0..VOCAB.len(), 0..40).prop_map(|ix| {
            ix.into_iter()
                .flat_map(|i| VOCAB[i].iter().copied())
                .collect()
        })
    }

    /// A clean message of each framing, with random bodies, random chunk
    /// splits, extensions, leading zeros, blanks and trailers.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        let body = proptest::collection::vec(any::<u8>(), 0..80);
        prop_oneof![
            Just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            body.clone().prop_map(|b| {
                let mut v = format!(
                    "POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                )
                .into_bytes();
                v.extend_from_slice(&b);
                v
            }),
            (
                proptest::collection::vec((body, 0usize..3, any::<bool>(), any::<bool>()), 0..4),
                any::<bool>(),
            )
                .prop_map(|(chunks, trailers)| {
                    let mut v =
                        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            .to_vec();
                    for (data, zeros, upper, ext) in chunks.into_iter().filter(|c| !c.0.is_empty())
                    {
                        let size = if upper {
                            format!("{:X}", data.len())
                        } else {
                            format!("{:x}", data.len())
                        };
                        v.extend_from_slice("0".repeat(zeros * 9).as_bytes());
                        v.extend_from_slice(size.as_bytes());
                        if ext {
                            v.extend_from_slice(b" \t;a=\"b\\n\";c");
                        }
                        v.extend_from_slice(b"\r\n");
                        v.extend_from_slice(&data);
                        v.extend_from_slice(b"\r\n");
                    }
                    v.extend_from_slice(b"0\r\n");
                    if trailers {
                        v.extend_from_slice(b"X-A: 1\r\nX-B: 2\r\n");
                    }
                    v.extend_from_slice(b"\r\n");
                    v
                }),
        ]
    }

    /// Cuts `data` at the given points (clamped, sorted).
    fn cut<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut at = 0;
        for c in cuts {
            parts.push(&data[at..c]);
            at = c;
        }
        parts.push(&data[at..]);
        parts
    }

    proptest! {
        /// Arbitrary bytes, cut anywhere: never a panic.
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(0usize..600, 0..4)) {
            let _ = run(&cut(&data, &cuts), GuardLimits::default());
        }

        /// Arbitrary bytes inside a chunked body (where the state machine
        /// is), and with tiny limits (where the give-up paths are): never
        /// a panic.
        #[test]
        fn never_panics_in_bodies_or_at_limits(data in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(0usize..700, 0..4)) {
            let mut v = chunked("");
            v.extend_from_slice(&data);
            let _ = run(&cut(&v, &cuts), GuardLimits::default());
            let tiny = GuardLimits { max_head_bytes: 16, max_headers: 1 };
            let _ = run(&cut(&v, &cuts), tiny);
        }

        /// How reads are cut never changes the verdict or where the guard
        /// ends up: the split-head and in-place paths agree.
        #[test]
        fn verdicts_do_not_depend_on_read_boundaries(s in stream(), cuts in proptest::collection::vec(0usize..800, 1..5)) {
            let whole = run(&[&s], GuardLimits::default());
            prop_assert_eq!(run(&cut(&s, &cuts), GuardLimits::default()), whole);
        }

        /// Any clean pipeline is accepted and ends between messages; the
        /// same pipeline followed by a CL.TE head is refused, however the
        /// reads are cut: the guard never loses its place.
        #[test]
        fn clean_pipelines_are_followed_to_the_end(msgs in proptest::collection::vec(message(), 1..5), cuts in proptest::collection::vec(0usize..2000, 0..4)) {
            let s: Vec<u8> = msgs.concat();
            prop_assert_eq!(run(&cut(&s, &cuts), GuardLimits::default()), (Ok(()), State::Head));
            let s = then_smuggle(s);
            prop_assert_eq!(run(&cut(&s, &cuts), GuardLimits::default()).0, Err(Refusal::LengthAndChunked));
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

        /// Differential, against hyper itself: whenever hyper's own parser
        /// reaches the smuggled head after a pipeline of (edgy but mostly
        /// valid) messages, the guard must have refused the connection.
        #[test]
        fn whatever_hyper_reaches_the_guard_sees(msgs in proptest::collection::vec(edgy_message(), 1..4)) {
            let s = then_smuggle(msgs.concat());
            let hyper_reached = hyper_reaches_smuggled(&s);
            let guard = run(&[&s], GuardLimits::default()).0;
            prop_assert!(!hyper_reached || guard.is_err(), "hyper parsed the smuggled head, guard said {:?}", guard);
        }
    }

    /// Messages that probe the corners of hyper's chunked decoder and head
    /// handling, beside clean ones.
    fn edgy_message() -> impl Strategy<Value = Vec<u8>> {
        let size_line = prop_oneof![
            Just("3"),
            Just("003"),
            Just("0000000000000000000003"),
            Just("3 "),
            Just("3\t;x"),
            Just("3;a=\"b;c\""),
            Just("3;\n"),
            Just("3\n"),
        ];
        let trailer = prop_oneof![
            Just(""),
            Just("X-A: 1\r\n"),
            Just("X-A: 1\n\nGET / HTTP/1.1\r\nContent-Length: 5\r\n"),
            Just("X-A: 1\n\r\n"),
            Just("X\r\n"),
        ];
        let first = prop_oneof![
            Just("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Just("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            Just("CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n"),
            Just("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab\r\n\r"),
            Just("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde"),
            Just("\r\n"),
        ];
        prop_oneof![
            first.prop_map(|m| m.as_bytes().to_vec()),
            (size_line, trailer).prop_map(|(size, trailer)| {
                format!("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n{trailer}\r\n").into_bytes()
            }),
        ]
    }

    /// Runs hyper's HTTP/1 server on `input` (bodies read whole, every
    /// answer a 404 so nothing upgrades) and tells whether it parsed the
    /// smuggled request.
    fn hyper_reaches_smuggled(input: &[u8]) -> bool {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reached = Arc::new(AtomicBool::new(false));
        let seen = reached.clone();
        let input = input.to_vec();
        rt.block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        if req.uri().path() == "/smuggled" {
                            seen.store(true, Ordering::SeqCst);
                        }
                        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                        let mut r =
                            hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                        *r.status_mut() = http::StatusCode::NOT_FOUND;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
            let task = tokio::spawn(conn);
            client.write_all(&input).await.unwrap();
            client.shutdown().await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                client.read_to_end(&mut out),
            )
            .await;
            task.abort();
        });
        reached.load(Ordering::SeqCst)
    }
}
