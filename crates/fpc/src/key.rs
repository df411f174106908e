//! Cache keys: Magento's `vcl_hash` plus Varnish's builtin `vcl_hash`
//! (contract §3), hashed to a fixed 16-byte array.
//!
//! # Hash choice
//!
//! The key is SHA-256 over a length-prefixed, tagged encoding of the
//! components, truncated to 128 bits. Why SHA-256 rather than a fast
//! non-cryptographic hash such as xxh3-128:
//!
//! * The inputs are attacker-controlled (URL, headers). With a
//!   non-cryptographic hash, a client who can find two requests with the same
//!   key can make the edge serve one page's content for another URL: cache
//!   poisoning. Truncated SHA-256 keeps 2^64 collision resistance; xxh3 gives
//!   no such bound, and a keyed variant would need a secret shared by every
//!   pod (keys must agree across pods for a shared L2).
//! * It is what Varnish itself uses for its hash (`VSHA256`).
//! * It is cheap here: a key is a few hundred bytes; with SHA-NI (detected at
//!   run time by `sha2`) that is well under a microsecond, noise next to an
//!   HTTP request. `sha2` is RustCrypto's maintained crate and shares its
//!   `digest` stack with the `md-5` the workspace already uses.
//!
//! # Encoding
//!
//! Every present component is written as `tag (1 byte) ‖ length (u32 BE) ‖
//! bytes`, after a version prefix. Absent components are skipped (as in the
//! VCL, where they are simply not hashed), but because every component is
//! tagged and length-prefixed, distinct component tuples never produce the
//! same byte stream: `Store: eur` alone and `Content-Currency: eur` alone are
//! different keys (they collide in Varnish, whose `hash_data` only appends a
//! `#` separator).

use std::borrow::Cow;
use std::fmt;

use http::header::{HeaderMap, COOKIE, HOST, USER_AGENT};
use sha2::{Digest, Sha256};

use crate::config::FpcPolicy;
use crate::headers::{
    self, CONTENT_CURRENCY, STORE, X_MAGENTO_CACHE_ID, X_MAGENTO_VARY_COOKIE, X_REQUESTED_WITH,
};
use crate::view::{is_bearer, is_graphql, RequestView};

/// Size of a hashed key in bytes.
pub const KEY_SIZE: usize = 16;

/// Version prefix of the hashed encoding: change it when the encoding
/// changes, so that old keys (e.g. in a shared L2) can never be confused
/// with new ones.
const KEY_DOMAIN: &[u8] = b"magestack-fpc/key/v1\0";

/// The primary cache key of an object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    /// Truncated SHA-256 of the encoded key components.
    pub primary: [u8; KEY_SIZE],
}

impl CacheKey {
    /// Lower-case hex, for logs and admin APIs.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(KEY_SIZE * 2);
        for b in self.primary {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.to_hex())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Component tags of the hashed encoding. Never reuse or renumber.
mod tag {
    pub const VARY: u8 = 1;
    pub const SSL_OFFLOAD: u8 = 2;
    pub const DESIGN: u8 = 3;
    pub const GRAPHQL_CACHE_ID: u8 = 4;
    pub const GRAPHQL_AUTHORIZED: u8 = 5;
    pub const GRAPHQL_STORE: u8 = 6;
    pub const GRAPHQL_CURRENCY: u8 = 7;
    pub const URL: u8 = 8;
    pub const HOST: u8 = 9;
    pub const HOST_FALLBACK: u8 = 10;
    pub const REQUESTED_WITH: u8 = 11;
    pub const RELEASE: u8 = 12;
}

/// GraphQL components of a key (§3.4), present only for `/graphql` URLs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphqlParts<'a> {
    /// `X-Magento-Cache-Id` request header.
    pub cache_id: Option<&'a [u8]>,
    /// Literal `Authorized` marker: cache id present and `Authorization ~ "^Bearer"`.
    pub authorized: bool,
    /// `Store` request header.
    pub store: Option<&'a [u8]>,
    /// `Content-Currency` request header.
    pub currency: Option<&'a [u8]>,
}

/// Where the key's host component came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPart<'a> {
    /// The `Host` header.
    Header(&'a [u8]),
    /// No `Host` header: the `:authority` or server IP given by the edge.
    Fallback(&'a str),
    /// Neither.
    None,
}

/// The ordered components of a cache key (contract §3), before hashing.
/// Build with [`KeyParts::from_request`]; hash with [`KeyParts::key`]; log
/// with [`KeyParts::debug`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts<'a> {
    /// §3.1: the `X-Magento-Vary` cookie value (see [`vary_cookie`]).
    pub vary: Option<Cow<'a, [u8]>>,
    /// §3.2: the SSL-offload header value.
    pub ssl_offload: Option<&'a [u8]>,
    /// §3.3: the design exception (theme) matched by the User-Agent.
    pub design: Option<&'a str>,
    /// §3.4: GraphQL components, for `/graphql` URLs.
    pub graphql: Option<GraphqlParts<'a>>,
    /// §3.5: the normalised URL.
    pub url: &'a str,
    /// §3.5: the host.
    pub host: HostPart<'a>,
    /// `X-Requested-With` (magestack, not the VCL): Magento answers some
    /// URLs differently to AJAX calls (`/page_cache/block/render/` renders
    /// blocks for `XMLHttpRequest` and 404s otherwise), so a plain GET must
    /// not store the answer AJAX calls will get.
    pub requested_with: Option<&'a [u8]>,
    /// The release of the upstream track (magestack, not the VCL): the
    /// cache namespace. Pages of two releases (stable and canary, or two
    /// pods of a rolling deploy sharing one L2) never share a key, so one
    /// is never served for the other; purges work on tags, across every
    /// namespace. Absent when no release is known, which keeps the keys
    /// of an edge without releases as they were.
    pub release: Option<&'a str>,
}

impl<'a> KeyParts<'a> {
    /// Collects the components from a request and its normalised URL.
    pub fn from_request(req: &RequestView<'a>, url: &'a str, policy: &'a FpcPolicy) -> Self {
        let h = req.headers;
        let graphql_url = is_graphql(url);
        let cache_id = headers::first(h, &X_MAGENTO_CACHE_ID);

        // §3.1: (url !~ "/graphql" || !X-Magento-Cache-Id) && cookie ~ "X-Magento-Vary="
        let vary = if !graphql_url || cache_id.is_none() {
            vary_cookie(h)
        } else {
            None
        };
        let ssl_offload = headers::first(h, &policy.ssl_offloaded_header);
        let design = policy
            .design_exceptions
            .lookup(headers::first(h, &USER_AGENT));
        let graphql = graphql_url.then(|| GraphqlParts {
            cache_id,
            authorized: cache_id.is_some() && is_bearer(h),
            store: headers::first(h, &STORE),
            currency: headers::first(h, &CONTENT_CURRENCY),
        });
        let host = match (headers::first(h, &HOST), req.host_fallback) {
            (Some(v), _) => HostPart::Header(v),
            (None, Some(f)) => HostPart::Fallback(f),
            (None, None) => HostPart::None,
        };
        Self {
            vary,
            ssl_offload,
            design,
            graphql,
            url,
            host,
            requested_with: headers::first(h, &X_REQUESTED_WITH),
            release: req.release,
        }
    }

    /// Hashes the components into a [`CacheKey`].
    pub fn key(&self) -> CacheKey {
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        self.visit(|tag, bytes| {
            h.update([tag]);
            // Header values and URLs are far below 4 GiB; saturate anyway so
            // the function is total.
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            h.update(len.to_be_bytes());
            h.update(bytes);
        });
        let digest = h.finalize();
        let mut primary = [0u8; KEY_SIZE];
        primary.copy_from_slice(&digest[..KEY_SIZE]);
        CacheKey { primary }
    }

    /// A human-readable rendering of the components, for logs.
    pub fn debug(&self) -> KeyDebug {
        let mut out = String::new();
        self.visit(|tag, bytes| {
            if !out.is_empty() {
                out.push(' ');
            }
            let name = match tag {
                tag::VARY => "vary",
                tag::SSL_OFFLOAD => "ssl",
                tag::DESIGN => "design",
                tag::GRAPHQL_CACHE_ID => "gql.cache_id",
                tag::GRAPHQL_AUTHORIZED => "gql.authorized",
                tag::GRAPHQL_STORE => "gql.store",
                tag::GRAPHQL_CURRENCY => "gql.currency",
                tag::URL => "url",
                tag::HOST => "host",
                tag::HOST_FALLBACK => "host.fallback",
                tag::REQUESTED_WITH => "requested_with",
                tag::RELEASE => "release",
                _ => "?",
            };
            out.push_str(name);
            out.push('=');
            out.push_str(&headers::escape(bytes));
        });
        KeyDebug(out)
    }

    /// Feeds the present components, in hash order, to `f(tag, bytes)`.
    fn visit(&self, mut f: impl FnMut(u8, &[u8])) {
        if let Some(v) = &self.vary {
            f(tag::VARY, v);
        }
        if let Some(v) = self.ssl_offload {
            f(tag::SSL_OFFLOAD, v);
        }
        if let Some(v) = self.design {
            f(tag::DESIGN, v.as_bytes());
        }
        if let Some(g) = &self.graphql {
            if let Some(id) = g.cache_id {
                f(tag::GRAPHQL_CACHE_ID, id);
                if g.authorized {
                    f(tag::GRAPHQL_AUTHORIZED, b"Authorized");
                }
            }
            if let Some(s) = g.store {
                f(tag::GRAPHQL_STORE, s);
            }
            if let Some(c) = g.currency {
                f(tag::GRAPHQL_CURRENCY, c);
            }
        }
        f(tag::URL, self.url.as_bytes());
        match self.host {
            HostPart::Header(h) => f(tag::HOST, h),
            HostPart::Fallback(h) => f(tag::HOST_FALLBACK, h.as_bytes()),
            HostPart::None => {}
        }
        if let Some(v) = self.requested_with {
            f(tag::REQUESTED_WITH, v);
        }
        if let Some(v) = self.release {
            f(tag::RELEASE, v.as_bytes());
        }
    }
}

/// A log rendering of key components: `vary=… ssl=https url=/p host=shop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDebug(String);

impl KeyDebug {
    /// The rendered string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key debug string of a request that classified as a lookup with
/// normalised URL `url`.
pub fn key_debug(req: &RequestView<'_>, url: &str, policy: &FpcPolicy) -> KeyDebug {
    KeyParts::from_request(req, url, policy).debug()
}

/// Whether the request carries an `X-Magento-Vary` cookie as PHP reads
/// cookies (the VCL's `req.http.cookie ~ "X-Magento-Vary="` is a substring
/// match, which a cookie *value* containing that text also satisfies).
pub fn has_vary_cookie(h: &HeaderMap) -> bool {
    php_cookie(h, X_MAGENTO_VARY_COOKIE.as_bytes()).is_some()
}

/// The `X-Magento-Vary` component of the key (contract §3.1).
///
/// The VCL collects all `Cookie` headers and runs
/// `regsub(cookie, "^.*?X-Magento-Vary=([^;]+);*.*$", "\1")`, a substring
/// match: in `x=X-Magento-Vary=<EUR>; X-Magento-Vary=<other>` it takes the
/// text inside the cookie `x`, while PHP (and so Magento, which marks a page
/// uncacheable when the cookie it sees differs from the visitor's context)
/// reads the cookie named `X-Magento-Vary`. The key and PHP must agree, so
/// magestack parses cookies as PHP does ([`php_cookie`]): the **first**
/// cookie of that exact name, across every `Cookie` header in order.
///
/// A cookie of that name with an empty value keeps the VCL's fallback: the
/// whole cookie string (all headers joined with `"; "`) becomes the
/// component, so such requests share nothing with anyone.
pub fn vary_cookie(h: &HeaderMap) -> Option<Cow<'_, [u8]>> {
    match php_cookie(h, X_MAGENTO_VARY_COOKIE.as_bytes())? {
        v if !v.is_empty() => Some(Cow::Borrowed(v)),
        _ => headers::collect(h, &COOKIE, b"; "),
    }
}

/// The raw value of cookie `name` as PHP's `$_COOKIE` reads it: pairs split
/// on `;`, leading whitespace of a name skipped, the name ends at the first
/// `=`, and the **first** pair with a name wins (PHP ignores later cookies of
/// the same name). The value is returned undecoded (PHP url-decodes it; two
/// spellings of one value only make two keys, never a shared one).
pub fn php_cookie<'h>(h: &'h HeaderMap, name: &[u8]) -> Option<&'h [u8]> {
    for value in h.get_all(COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii_start();
            let (n, v) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            if n == name {
                return Some(v);
            }
        }
    }
    None
}

/// Secondary key: the request headers a stored response varies on.
///
/// Computed from the response's `Vary` names (case-insensitive, order and
/// duplicates ignored) and the request's values of those headers. `None`
/// when the response varies on nothing that counts. A `Vary: *` response is
/// never stored (§5.7), so `*` is treated as an ordinary name here.
///
/// `Accept-Encoding` does not count when the response is plain or gzip:
/// the edge stores one copy and gunzips it for clients that do not take
/// gzip, as Varnish does with `http_gzip_support` (one fetch serves both
/// kinds of client). A response in another coding (an origin that sends
/// brotli itself) varies on the request's `Accept-Encoding` as sent.
pub fn variance(response: &HeaderMap, request: &HeaderMap) -> Option<[u8; KEY_SIZE]> {
    let gzip_or_plain = response
        .get(http::header::CONTENT_ENCODING)
        .is_none_or(|v| {
            let v = v.as_bytes().trim_ascii();
            v.is_empty() || v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"identity")
        });
    let mut names: Vec<String> = response
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|n| String::from_utf8_lossy(n.trim_ascii()).to_ascii_lowercase())
        .filter(|n| !(n.is_empty() || (gzip_or_plain && n == "accept-encoding")))
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    let mut h = Sha256::new();
    h.update(b"magestack-fpc/variance/v2\0");
    for name in &names {
        let value: Option<Cow<'_, [u8]>> = http::header::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .and_then(|n| headers::collect(request, &n, b", "));
        h.update(u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(name.as_bytes());
        match value {
            Some(v) => {
                h.update([1]);
                h.update(u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
                h.update(&v);
            }
            None => h.update([0]),
        }
    }
    let digest = h.finalize();
    let mut out = [0u8; KEY_SIZE];
    out.copy_from_slice(&digest[..KEY_SIZE]);
    Some(out)
}

#[cfg(test)]
mod tests;
