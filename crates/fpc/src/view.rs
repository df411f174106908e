//! What the cache policy reads of a client request: a borrowed view, and
//! the two predicates both the classifier and the key need (a leaf module:
//! `request` and `key` both build on it).

use http::header::{HeaderMap, AUTHORIZATION};
use http::Method;

/// What the policy needs to know about a client request. Borrowed; building
/// one costs nothing.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The request method, compared case-sensitively (`purge` is not `PURGE`).
    pub method: &'a Method,
    /// The request target as received on HTTP/1.1: origin-form
    /// `/path?query`, or absolute-form `http://host/path?query` (Varnish
    /// keys the latter as `host/path?query`). For HTTP/2, whose URI always
    /// carries scheme and authority, pass the path and query only and give
    /// the `:authority` as [`RequestView::host_fallback`].
    pub target: &'a str,
    /// The client's request headers (several `Cookie` lines allowed).
    pub headers: &'a HeaderMap,
    /// `true` when the request is re-run after a hit whose grace expired
    /// (Varnish `req.restarts > 0`): the lookup must skip the cache.
    pub is_restart: bool,
    /// The host to key on when the request has no `Host` header: the
    /// HTTP/2 `:authority`, else the server's IP (Varnish `server.ip`).
    pub host_fallback: Option<&'a str>,
    /// The release (code version) of the upstream track the request is
    /// routed to: part of the key, so a page rendered by one release is
    /// never served to a request routed to another (`None`: no release
    /// known; the key is what it was before releases existed).
    pub release: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// A first-pass request without host fallback.
    pub fn new(method: &'a Method, target: &'a str, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            target,
            headers,
            is_restart: false,
            host_fallback: None,
            release: None,
        }
    }

    /// Marks the request as a restart (forces a miss).
    pub fn restarted(mut self) -> Self {
        self.is_restart = true;
        self
    }

    /// Sets the release of the track the request goes to (see
    /// [`RequestView::release`]); an empty id counts as none.
    pub fn with_release(mut self, release: Option<&'a str>) -> Self {
        self.release = release.filter(|r| !r.is_empty());
        self
    }

    /// Sets the host used for the key when there is no `Host` header.
    pub fn with_host_fallback(mut self, host: &'a str) -> Self {
        self.host_fallback = Some(host);
        self
    }
}

/// `url ~ "/graphql"`.
pub fn is_graphql(url: &str) -> bool {
    url.contains("/graphql")
}

/// `req.http.Authorization ~ "^Bearer"` (first header, case-sensitive).
pub(crate) fn is_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"Bearer"))
}
