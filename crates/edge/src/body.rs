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

/// Keeps `guard` alive until the body is finished or dropped: a bulkhead permit
/// is held while PHP-FPM is still streaming the response.
pub fn with_guard<G: Send + Unpin + 'static>(inner: EdgeBody, guard: Option<G>) -> EdgeBody {
    match guard {
        None => inner,
        Some(g) => Guarded { inner, _guard: g }.boxed_unsync(),
    }
}

struct Guarded<G> {
    inner: EdgeBody,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        std::pin::Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
