//! Cacheability of a backend response: Varnish's core TTL rules followed by
//! Magento's `vcl_backend_response` (contract §5), in order.

use std::time::{Duration, SystemTime};

use http::header::{
    HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, DATE,
    ETAG, EXPIRES, SET_COOKIE, VARY,
};
use http::StatusCode;

use crate::cache_control::{age_secs, header_date, secs, unix_secs, CacheControl};
use crate::config::{ErrorStatusPolicy, FpcPolicy};
use crate::grace::ObjectTimes;
use crate::headers::{
    self, SURROGATE_CONTROL, X_MAGENTO_CACHE_CONTROL, X_MAGENTO_CACHE_ID, X_MAGENTO_DEBUG,
    X_MAGENTO_TAGS, X_POOL,
};
use crate::key::has_vary_cookie;
use crate::request::{is_graphql, LookupPlan, RequestView};

/// What the policy needs to know about a backend response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    /// Backend status.
    pub status: StatusCode,
    /// Backend headers (several `Set-Cookie` lines allowed).
    pub headers: &'a HeaderMap,
}

/// Which kind of fetch produced the response.
#[derive(Debug, Clone, Copy)]
pub enum Fetch<'a> {
    /// A cache miss (or restart/refresh) for this lookup: `bereq.url` is the
    /// normalised URL and `bereq.method` is `GET`.
    Lookup(&'a LookupPlan),
    /// A pass: the response is never stored. Varnish gives pass fetches a
    /// TTL of −1, so only the ESI/gzip flags matter and `Set-Cookie` is kept.
    Pass,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoCacheReason {
    /// The request was passed.
    Pass,
    /// Variant C: status 403, 404 or >= 500 (checked first; nothing else of
    /// §5 applies, not even the `X-Magento-Cache-Control` copy).
    ErrorStatus,
    /// Variant A: status other than 200 and 404.
    Status,
    /// `Cache-Control ~ "private"`.
    Private,
    /// The response sets `X-Magento-Vary` but the request had no such cookie.
    SetsVaryCookie,
    /// TTL from the headers is zero or negative (or the status has no TTL).
    ZeroTtl,
    /// `Surrogate-Control ~ "no-store"`.
    SurrogateNoStore,
    /// No `Surrogate-Control` and `Cache-Control ~ "no-cache|no-store"`.
    NoCacheNoStore,
    /// `Vary: *`.
    VaryStar,
    /// GraphQL: the response's `X-Magento-Cache-Id` differs from the request's.
    GraphqlCacheIdMismatch,
}

impl NoCacheReason {
    /// Stable label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            NoCacheReason::Pass => "pass",
            NoCacheReason::ErrorStatus => "error_status",
            NoCacheReason::Status => "status",
            NoCacheReason::Private => "private",
            NoCacheReason::SetsVaryCookie => "sets_vary_cookie",
            NoCacheReason::ZeroTtl => "zero_ttl",
            NoCacheReason::SurrogateNoStore => "surrogate_no_store",
            NoCacheReason::NoCacheNoStore => "no_cache_no_store",
            NoCacheReason::VaryStar => "vary_star",
            NoCacheReason::GraphqlCacheIdMismatch => "graphql_cache_id_mismatch",
        }
    }
}

/// The outcome of [`classify_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cacheability {
    /// Store the object under the lookup's key.
    Cacheable {
        /// Remaining freshness from the fetch time (`beresp.ttl`, i.e. after
        /// subtracting the backend's `Age`). Always > 0.
        ttl: Duration,
        /// Retention past the TTL (`grace = 3d`).
        grace: Duration,
        /// Varnish `keep` (0).
        keep: Duration,
        /// The backend's `Age` (the object's origin is `now - age`; the
        /// delivered `Age` in debug mode counts from there).
        age: Duration,
        /// Remove every `Set-Cookie` before storing (always true here).
        strip_set_cookie: bool,
        /// Store the body gzip-compressed (§5.3, §10): URL ends in `.js` or
        /// `Content-Type ~ "text|javascript|json|css"`; not if the body is
        /// already encoded.
        gzip: bool,
        /// Parse the body for ESI (§5.2, §9): `Content-Type ~ "text"`.
        esi: bool,
        /// `X-Magento-Tags` split on `,` (every header line; empty entries dropped).
        tags: Vec<String>,
        /// `X-Pool` split on `,` the same way (purged by `X-Pool` patterns).
        pools: Vec<String>,
    },
    /// Deliver without storing the object.
    Uncacheable {
        /// How long to keep a hit-for-miss marker under the key (later
        /// lookups skip coalescing and fetch). Zero: no marker (pass
        /// fetches, GraphQL cache-id mismatch).
        hit_for_miss_ttl: Duration,
        /// Remove every `Set-Cookie` before delivering (§5.6 strips even
        /// responses it has just made uncacheable).
        strip_set_cookie: bool,
        /// Why.
        reason: NoCacheReason,
        /// Gzip the body on the way (same rule as for cacheable objects).
        gzip: bool,
        /// Process ESI in the body: uncacheable pages (e.g. the first visit
        /// that sets `X-Magento-Vary`) still carry `<esi:include>` tags.
        esi: bool,
    },
}

impl Cacheability {
    /// Whether the object is stored.
    pub fn is_cacheable(&self) -> bool {
        matches!(self, Cacheability::Cacheable { .. })
    }

    /// Whether `Set-Cookie` must be removed.
    pub fn strip_set_cookie(&self) -> bool {
        match self {
            Cacheability::Cacheable {
                strip_set_cookie, ..
            }
            | Cacheability::Uncacheable {
                strip_set_cookie, ..
            } => *strip_set_cookie,
        }
    }

    /// Whether the body must be gzip-compressed (when not already encoded).
    pub fn gzip(&self) -> bool {
        match self {
            Cacheability::Cacheable { gzip, .. } | Cacheability::Uncacheable { gzip, .. } => *gzip,
        }
    }

    /// Whether the body must be ESI-processed.
    pub fn esi(&self) -> bool {
        match self {
            Cacheability::Cacheable { esi, .. } | Cacheability::Uncacheable { esi, .. } => *esi,
        }
    }

    /// The reason label: `"cacheable"` or [`NoCacheReason::as_str`].
    pub fn as_str(&self) -> &'static str {
        match self {
            Cacheability::Cacheable { .. } => "cacheable",
            Cacheability::Uncacheable { reason, .. } => reason.as_str(),
        }
    }

    /// The timing data a store keeps for a cacheable object fetched at `now`.
    pub fn object_times(&self, now: SystemTime) -> Option<ObjectTimes> {
        match self {
            Cacheability::Cacheable {
                ttl,
                grace,
                keep,
                age,
                ..
            } => Some(ObjectTimes::new(now, *ttl, *grace, *keep, *age)),
            Cacheability::Uncacheable { .. } => None,
        }
    }

    /// Applies the decision's fetch-time header edits to the backend
    /// headers before storing or delivering: removes `Set-Cookie` when
    /// required and performs the developer-mode `X-Magento-Cache-Control`
    /// copy of §5.4 (skipped when variant C's error-status rule returned
    /// before it).
    pub fn apply_to_headers(&self, headers: &mut HeaderMap) {
        let step4_ran = !matches!(
            self,
            Cacheability::Uncacheable {
                reason: NoCacheReason::ErrorStatus,
                ..
            }
        );
        if step4_ran {
            copy_debug_cache_control(headers);
        }
        if self.strip_set_cookie() {
            headers.remove(SET_COOKIE);
        }
    }
}

/// §5.4: when the response carries `X-Magento-Debug`, copy `Cache-Control`
/// (all lines, joined with `, `) into `X-Magento-Cache-Control`, before the
/// delivery rules overwrite `Cache-Control`. Nothing happens without
/// `Cache-Control`.
pub fn copy_debug_cache_control(headers: &mut HeaderMap) {
    if !headers.contains_key(X_MAGENTO_DEBUG) {
        return;
    }
    let value = headers::collect(headers, &CACHE_CONTROL, b", ")
        .and_then(|v| HeaderValue::from_bytes(&v).ok());
    if let Some(v) = value {
        headers.insert(X_MAGENTO_CACHE_CONTROL, v);
    }
}

/// Whether the backend body is already content-encoded (then `gzip` is not
/// applied: Varnish only gzips identity bodies).
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
}

/// The header edits of storing a body gzip-compressed (contract §10,
/// Varnish `do_gzip`): `Content-Encoding: gzip`, no `Content-Length`, a
/// strong `ETag` weakened to `W/…`, and `Accept-Encoding` added to `Vary`
/// (appended to an existing value unless already listed).
pub fn gzip_stored_headers(headers: &mut HeaderMap) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.remove(CONTENT_LENGTH);
    if let Some(etag) = headers.get(ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, v);
            }
        }
    }
    let has_ae = headers
        .get_all(VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"));
    if !has_ae {
        let value = match headers::collect(headers, &VARY, b", ") {
            Some(old) => {
                let mut v = old.into_owned();
                v.extend_from_slice(b", Accept-Encoding");
                HeaderValue::from_bytes(&v).ok()
            }
            None => Some(HeaderValue::from_static("Accept-Encoding")),
        };
        if let Some(v) = value {
            headers.insert(VARY, v);
        }
    }
}

/// Statuses for which Varnish computes a TTL (`RFC2616_Ttl`).
fn status_has_ttl(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 302 | 304 | 307 | 404 | 410 | 414
    )
}

/// Varnish's core TTL (`RFC2616_Ttl`) as `beresp.ttl` reads in VCL: the
/// remaining lifetime from `now`, i.e. with the backend's `Age` subtracted.
/// Negative means "no TTL / expired".
pub fn core_ttl(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    policy: &FpcPolicy,
) -> i64 {
    let age = i64::from(age_secs(headers));
    let code = status.as_u16();
    if !status_has_ttl(code) {
        return -1 - age;
    }
    // 302/307 get no default TTL.
    let mut ttl: i64 = if code == 302 || code == 307 {
        -1
    } else {
        i64::try_from(policy.default_ttl_secs).unwrap_or(i64::MAX)
    };
    let cc = CacheControl::from_headers(headers);
    if let Some(max_age) = cc.shared_max_age() {
        ttl = i64::from(max_age);
    } else if let Some(expires) = header_date(headers, &EXPIRES) {
        let expires = unix_secs(expires);
        let date = header_date(headers, &DATE).map(unix_secs);
        let now_s = unix_secs(now);
        let skew = i64::try_from(policy.clock_skew_secs).unwrap_or(i64::MAX);
        ttl = match date {
            Some(d) if expires < d => 0,
            Some(d) if (d - now_s).abs() >= skew => expires - d,
            _ if expires < now_s => 0,
            _ => expires - now_s,
        };
    }
    ttl.saturating_sub(age)
}

/// Classifies a backend response (contract §5), in the VCL's order.
///
/// `req` is the client request (its headers are `bereq`'s: `Cookie`,
/// `X-Magento-Cache-Id`); `fetch` says whether this is a lookup's miss
/// fetch (with its normalised URL) or a pass; `now` is the fetch time.
pub fn classify_response(
    req: &RequestView<'_>,
    fetch: Fetch<'_>,
    resp: &ResponseView<'_>,
    now: SystemTime,
    policy: &FpcPolicy,
) -> Cacheability {
    let (url, is_pass) = match fetch {
        Fetch::Lookup(plan) => (plan.url.as_str(), false),
        Fetch::Pass => (req.target, true),
    };
    let h = resp.headers;
    let status = resp.status.as_u16();
    let hfm = Duration::from_secs(policy.hit_for_miss_ttl_secs);
    let pass_or = |ttl: Duration| if is_pass { Duration::ZERO } else { ttl };

    // Variant C, first rule: error statuses, before anything else.
    if policy.error_statuses == ErrorStatusPolicy::NoErrors
        && (status == 403 || status == 404 || status >= 500)
    {
        return Cacheability::Uncacheable {
            hit_for_miss_ttl: pass_or(hfm),
            strip_set_cookie: false,
            reason: NoCacheReason::ErrorStatus,
            gzip: false,
            esi: false,
        };
    }

    // Core TTL; pass fetches get −1.
    let mut ttl: i64 = if is_pass {
        -1
    } else {
        core_ttl(resp.status, h, now, policy)
    };

    // §5.1 grace = 3d (retention of cacheable objects).
    let grace = Duration::from_secs(policy.object_grace_secs);
    // §5.2 ESI, §5.3 gzip (variant C's content types).
    let content_type = headers::first(h, &CONTENT_TYPE).unwrap_or(b"");
    let esi = headers::contains(content_type, b"text");
    let gzip = url.ends_with(".js")
        || [&b"text"[..], b"javascript", b"json", b"css"]
            .iter()
            .any(|needle| headers::contains(content_type, needle));
    // §5.4 (X-Magento-Cache-Control copy) is a header edit: see
    // `Cacheability::apply_to_headers`.

    // §5.5: private (and, variant A, status other than 200/404).
    let private = headers::any_contains(h, &CACHE_CONTROL, b"private");
    let bad_status =
        policy.error_statuses == ErrorStatusPolicy::CacheOkAnd404 && status != 200 && status != 404;
    if bad_status || private {
        return Cacheability::Uncacheable {
            hit_for_miss_ttl: pass_or(Duration::from_secs(policy.private_hit_for_miss_ttl_secs)),
            strip_set_cookie: false,
            reason: if is_pass {
                NoCacheReason::Pass
            } else if bad_status {
                NoCacheReason::Status
            } else {
                NoCacheReason::Private
            },
            gzip,
            esi,
        };
    }

    let mut reason: Option<NoCacheReason> = None;
    let mut strip_set_cookie = false;
    // §5.6: positive TTL on GET/HEAD (a lookup's fetch is always GET).
    if ttl > 0 && !is_pass {
        let graphql_with_id = is_graphql(url) && req.headers.contains_key(X_MAGENTO_CACHE_ID);
        if !graphql_with_id
            && !has_vary_cookie(req.headers)
            && headers::any_contains(h, &SET_COOKIE, b"X-Magento-Vary=")
        {
            ttl = 0;
            reason = Some(NoCacheReason::SetsVaryCookie);
        }
        strip_set_cookie = true;
    }

    // §5.7: hit-for-miss for zero TTL, no-store/no-cache, Vary: *.
    let mut hit_for_miss = None;
    let surrogate_present = h.contains_key(SURROGATE_CONTROL);
    let rule7 = if ttl <= 0 {
        Some(NoCacheReason::ZeroTtl)
    } else if headers::any_contains(h, &SURROGATE_CONTROL, b"no-store") {
        Some(NoCacheReason::SurrogateNoStore)
    } else if !surrogate_present
        && (headers::any_contains(h, &CACHE_CONTROL, b"no-cache")
            || headers::any_contains(h, &CACHE_CONTROL, b"no-store"))
    {
        Some(NoCacheReason::NoCacheNoStore)
    } else if headers::collect(h, &VARY, b", ").is_some_and(|v| v.as_ref() == b"*") {
        Some(NoCacheReason::VaryStar)
    } else {
        None
    };
    if let Some(r) = rule7 {
        reason.get_or_insert(r);
        hit_for_miss = Some(hfm);
    }

    // §5.8: GraphQL cache-id mismatch → ttl 0, uncacheable.
    if is_graphql(url) {
        if let Some(req_id) = req.headers.get(X_MAGENTO_CACHE_ID) {
            if h.get(X_MAGENTO_CACHE_ID) != Some(req_id) {
                reason.get_or_insert(NoCacheReason::GraphqlCacheIdMismatch);
                hit_for_miss = Some(Duration::ZERO);
            }
        }
    }

    if is_pass {
        return Cacheability::Uncacheable {
            hit_for_miss_ttl: Duration::ZERO,
            strip_set_cookie,
            reason: NoCacheReason::Pass,
            gzip,
            esi,
        };
    }
    match (reason, hit_for_miss) {
        (Some(reason), hfm) => Cacheability::Uncacheable {
            hit_for_miss_ttl: hfm.unwrap_or(Duration::ZERO),
            strip_set_cookie,
            reason,
            gzip,
            esi,
        },
        (None, _) => Cacheability::Cacheable {
            ttl: secs(ttl),
            grace,
            keep: Duration::from_secs(policy.keep_secs),
            age: Duration::from_secs(u64::from(age_secs(h))),
            strip_set_cookie,
            gzip,
            esi,
            tags: split_list(h, &X_MAGENTO_TAGS),
            pools: split_list(h, &X_POOL),
        },
    }
}

/// A comma-separated header (all lines) as a list, empty entries dropped,
/// entries not trimmed (Magento sends no spaces, and Varnish matches the
/// raw value).
pub fn split_list(headers: &HeaderMap, name: &http::header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter(|t| !t.is_empty())
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

#[cfg(test)]
mod tests;
