//! Request bodies on their way to PHP: size limit (413), and a known length.
//!
//! PHP needs `CONTENT_LENGTH` to fill `$_POST`. Every body is read whole,
//! up to `server.max_body_bytes`, before the upstream is asked for anything
//! (nginx's `fastcgi_request_buffering on` does the same): a chunked body
//! to learn its length, and a `Content-Length` body too, so that a client
//! trickling its body (slow POST, R.U.D.Y.) holds an edge connection, never
//! a PHP-FPM child. Memory per request is bounded by the limit, as for
//! chunked bodies; a body that arrives in one read is kept as that read's
//! bytes, with no copy.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::body::EdgeBody;

/// Why a request body was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Larger than `server.max_body_bytes` (→ 413).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// `Content-Length` unparsable (→ 400).
    #[error("invalid content-length")]
    BadLength,
    /// The client went away or sent a broken body (→ 400).
    #[error("reading request body: {0}")]
    Read(String),
}

/// A request body ready for the upstream, with its length.
#[derive(Debug)]
pub struct PreparedBody {
    /// Exact length PHP will see as `CONTENT_LENGTH`; `None` when there is no body.
    pub length: Option<u64>,
    /// The bytes, read whole before the upstream is asked for anything
    /// (so a request can be sent again to another endpoint when the first
    /// refused the connection).
    pub body: Bytes,
}

impl PreparedBody {
    /// No body at all (not even an empty one).
    pub fn none() -> PreparedBody {
        PreparedBody {
            length: None,
            body: Bytes::new(),
        }
    }

    /// The body as the HTTP upstream sends it.
    pub fn to_edge_body(&self) -> EdgeBody {
        match self.length {
            Some(n) if n > 0 => crate::body::full(self.body.clone()),
            _ => crate::body::empty(),
        }
    }

    /// The body as a FastCGI request sends it (a cheap clone: one refcount).
    pub fn to_fastcgi(&self) -> magestack_fastcgi::RequestBody {
        match self.length {
            Some(n) if n > 0 => magestack_fastcgi::RequestBody::Full(self.body.clone()),
            _ => magestack_fastcgi::RequestBody::Empty,
        }
    }
}

/// A request body as the pipeline receives it: the client's, or none for
/// requests the edge makes itself (cache fetches, ESI fragments, probes).
#[derive(Debug)]
pub enum ClientBody {
    /// The client's body stream.
    Incoming(Incoming),
    /// No body.
    Empty,
    /// A body the edge already read (to look into it).
    Full(bytes::Bytes),
}

/// Checks the declared length and either streams or buffers the body.
pub async fn prepare(
    headers: &HeaderMap,
    body: ClientBody,
    limit: u64,
) -> Result<PreparedBody, BodyError> {
    let body = match body {
        ClientBody::Incoming(b) => b,
        ClientBody::Empty => return Ok(PreparedBody::none()),
        ClientBody::Full(b) => {
            if b.len() as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            return Ok(PreparedBody {
                length: Some(b.len() as u64),
                body: b,
            });
        }
    };
    let declared = match headers.get(http::header::CONTENT_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(BodyError::BadLength)?,
        ),
        None => None,
    };
    if let Some(len) = declared {
        if len > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if len == 0 {
            return Ok(PreparedBody {
                length: Some(0),
                body: Bytes::new(),
            });
        }
        let bytes = read_exact(body, len).await?;
        return Ok(PreparedBody {
            length: Some(len),
            body: bytes,
        });
    }
    if body.is_end_stream() {
        return Ok(PreparedBody::none());
    }
    // Chunked (or h2 without content-length): buffer to learn the length.
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok(PreparedBody {
                length: Some(bytes.len() as u64),
                body: bytes,
            })
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// Reads a body of declared length `len` (already checked against the
/// limit) whole. One frame (the usual case for form posts) is returned as
/// is; more are gathered into one buffer.
async fn read_exact(mut body: Incoming, len: u64) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: PHP has no use for them
        };
        got += data.len() as u64;
        if got > len {
            return Err(BodyError::Read("body longer than content-length".into()));
        }
        if let Some(buf) = joined.as_mut() {
            buf.extend_from_slice(&data);
        } else if let Some(head) = first.take() {
            // Grown as bytes arrive, never sized from the declared length
            // up front: a client declaring 64 MiB and sending two bytes
            // must not cost 64 MiB.
            let want = (head.len() + data.len()).saturating_mul(2);
            let mut buf = BytesMut::with_capacity(want.min(usize::try_from(len).unwrap_or(want)));
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&data);
            joined = Some(buf);
        } else {
            first = Some(data);
        }
    }
    if got < len {
        return Err(BodyError::Read("body shorter than content-length".into()));
    }
    Ok(match (joined, first) {
        (Some(buf), _) => buf.freeze(),
        (None, Some(b)) => b,
        (None, None) => Bytes::new(),
    })
}
