//! The response body type every layer of the edge returns.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// Errors carried inside bodies: upstream read failures, file errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Type-erased response body; `Unsync` because hyper needs `Send` only.
pub type EdgeBody = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> EdgeBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body from bytes already in memory (a refcount bump for `Bytes`, no copy).
pub fn full(data: impl Into<Bytes>) -> EdgeBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
