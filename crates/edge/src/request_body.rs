//! Request bodies on their way to PHP: size limit (413), and a known length.
//!
//! PHP needs `CONTENT_LENGTH` to fill `$_POST`, so a body with `Content-Length` is
//! streamed through with its length checked, and a chunked body is buffered up to
//! `server.max_body_bytes` first (nginx's `fastcgi_request_buffering on` does the same).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::body::{BoxError, EdgeBody};

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
    /// The bytes, streamed or buffered.
    pub body: EdgeBody,
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
        ClientBody::Empty => {
            return Ok(PreparedBody {
                length: None,
                body: crate::body::empty(),
            })
        }
        ClientBody::Full(b) => {
            if b.len() as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            return Ok(PreparedBody {
                length: Some(b.len() as u64),
                body: crate::body::full(b),
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
                body: crate::body::empty(),
            });
        }
        return Ok(PreparedBody {
            length: Some(len),
            body: LengthChecked {
                inner: body,
                remaining: len,
            }
            .boxed_unsync(),
        });
    }
    if body.is_end_stream() {
        return Ok(PreparedBody {
            length: None,
            body: crate::body::empty(),
        });
    }
    // Chunked (or h2 without content-length): buffer to learn the length.
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            Ok(PreparedBody {
                length: Some(bytes.len() as u64),
                body: crate::body::full(bytes),
            })
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// Passes the client's body through and fails if it does not match its declared length.
struct LengthChecked {
    inner: Incoming,
    remaining: u64,
}

impl Body for LengthChecked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    if n > self.remaining {
                        return Poll::Ready(Some(Err(
                            "request body longer than content-length".into()
                        )));
                    }
                    self.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) if self.remaining > 0 => {
                Poll::Ready(Some(Err("request body shorter than content-length".into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
