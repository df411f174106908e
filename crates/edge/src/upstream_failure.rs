//! Why an upstream (PHP-FPM over FastCGI, or an HTTP app) did not answer,
//! and the one place where that becomes the client's response.

use http::{Response, StatusCode};

use crate::answer::{error_page, PoolSlot};
use crate::body::{BoxError, EdgeBody};
use crate::http_upstream::HttpUpstreamError;

/// What went wrong, as far as the client and a retry are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The connection was refused or not made in time: the app saw nothing,
    /// so another endpoint may take the request.
    Refused,
    /// No answer within the read timeout (504).
    Timeout,
    /// Anything else: protocol, broken connection, no endpoint (502).
    Failed,
}

/// An upstream failure: its kind, which protocol, and the underlying error.
#[derive(Debug)]
pub(crate) struct UpstreamFailure {
    pub(crate) kind: FailureKind,
    /// `PHP-FPM` or `HTTP upstream`, for the log.
    pub(crate) side: &'static str,
    pub(crate) source: BoxError,
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", crate::ErrorChain(&*self.source))
    }
}

impl From<magestack_fastcgi::Error> for UpstreamFailure {
    fn from(e: magestack_fastcgi::Error) -> Self {
        let kind = if e.is_connect() || matches!(e, magestack_fastcgi::Error::ConnectTimeout { .. })
        {
            FailureKind::Refused
        } else if e.is_timeout() {
            FailureKind::Timeout
        } else {
            FailureKind::Failed
        };
        UpstreamFailure {
            kind,
            side: "PHP-FPM",
            source: Box::new(e),
        }
    }
}

impl From<HttpUpstreamError> for UpstreamFailure {
    fn from(e: HttpUpstreamError) -> Self {
        let kind = match e {
            HttpUpstreamError::Connect { .. } => FailureKind::Refused,
            HttpUpstreamError::Timeout { .. } => FailureKind::Timeout,
            _ => FailureKind::Failed,
        };
        UpstreamFailure {
            kind,
            side: "HTTP upstream",
            source: Box::new(e),
        }
    }
}

impl UpstreamFailure {
    /// The pool has no endpoint to send to.
    pub(crate) fn no_endpoint(side: &'static str) -> Self {
        UpstreamFailure {
            kind: FailureKind::Failed,
            side,
            source: "no endpoint in the pool".into(),
        }
    }

    /// Another endpoint may take the request.
    pub(crate) fn retryable(&self) -> bool {
        self.kind == FailureKind::Refused
    }

    /// A timeout (504), as the pool's error counters count it.
    pub(crate) fn is_timeout(&self) -> bool {
        self.kind == FailureKind::Timeout
    }

    /// The client's answer: 504 for a timeout, 502 otherwise, with
    /// `Retry-After`, labelled with the pool for the metrics.
    pub(crate) fn response(&self, slot: PoolSlot) -> Response<EdgeBody> {
        let status = if self.is_timeout() {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        let mut r = error_page(status, Some(5));
        r.extensions_mut().insert(slot);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_one_kind_and_status() {
        let refused: UpstreamFailure = HttpUpstreamError::Connect {
            authority: "a:1".into(),
            message: "refused".into(),
        }
        .into();
        assert!(refused.retryable());
        assert_eq!(refused.response(PoolSlot(1)).status(), 502);
        let timeout: UpstreamFailure = HttpUpstreamError::Timeout {
            authority: "a:1".into(),
        }
        .into();
        assert!(!timeout.retryable());
        assert_eq!(timeout.response(PoolSlot(1)).status(), 504);
        let none = UpstreamFailure::no_endpoint("PHP-FPM");
        assert_eq!(none.response(PoolSlot(1)).status(), 502);
    }
}
