//! Plain HTTP upstreams (`upstream.url = "http://host:port"`): an app server that
//! speaks HTTP itself, or the built-in demo storefront.

use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::body::{BoxError, EdgeBody};

/// Why the upstream did not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpUpstreamError {
    /// Could not connect (→ 502).
    #[error("connect to {authority}: {message}")]
    Connect {
        /// Upstream host:port.
        authority: String,
        /// Cause.
        message: String,
    },
    /// No response head within the read timeout (→ 504).
    #[error("upstream {authority} timed out")]
    Timeout {
        /// Upstream host:port.
        authority: String,
    },
    /// Anything else on the wire (→ 502).
    #[error("upstream {authority}: {message}")]
    Protocol {
        /// Upstream host:port.
        authority: String,
        /// Cause.
        message: String,
    },
}

/// Pooled HTTP/1.1 client for one upstream.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    authority: String,
    client: Client<HttpConnector, EdgeBody>,
    read_timeout: Duration,
}

/// Hop-by-hop headers never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

impl HttpUpstream {
    /// A client for `authority` (`host:port`).
    pub fn new(
        authority: &str,
        connect_timeout: Duration,
        read_timeout: Duration,
        keepalive: usize,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(keepalive)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self {
            authority: authority.to_string(),
            client,
            read_timeout,
        }
    }

    /// Forwards a request; `path_and_query` is the client's original target.
    pub async fn forward(
        &self,
        mut req: Request<EdgeBody>,
        path_and_query: &str,
        forwarded_for: &str,
        https: bool,
    ) -> Result<Response<EdgeBody>, HttpUpstreamError> {
        let uri: Uri = format!("http://{}{}", self.authority, path_and_query)
            .parse()
            .map_err(|e: http::uri::InvalidUri| HttpUpstreamError::Protocol {
                authority: self.authority.clone(),
                message: e.to_string(),
            })?;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_11;
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        join_cookies(h);
        if let Ok(v) = HeaderValue::from_str(forwarded_for) {
            h.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
        let fut = self.client.request(req);
        let resp = match tokio::time::timeout(self.read_timeout, fut).await {
            Err(_) => {
                return Err(HttpUpstreamError::Timeout {
                    authority: self.authority.clone(),
                })
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(HttpUpstreamError::Connect {
                    authority: self.authority.clone(),
                    message: source_chain(&e),
                })
            }
            Ok(Err(e)) => {
                return Err(HttpUpstreamError::Protocol {
                    authority: self.authority.clone(),
                    message: source_chain(&e),
                })
            }
            Ok(Ok(r)) => r,
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = body.map_err(|e| -> BoxError { e.into() }).boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }
}

fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    // Headers named in `Connection:` are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        h.remove(n);
    }
}

/// Several `Cookie` headers (h2 sends each cookie as its own field) become
/// one, joined with `"; "` as RFC 9113 §8.2.3 asks before an HTTP/1.1 hop:
/// apps read the first `Cookie` header only.
fn join_cookies(h: &mut http::HeaderMap) {
    let mut all = h.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (all.next(), all.next()) else {
        return;
    };
    let mut joined = Vec::with_capacity(first.len() * 2);
    for (i, v) in h.get_all(header::COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
