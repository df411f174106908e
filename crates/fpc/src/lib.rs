//! The full-page-cache **policy** of magestack: Magento 2's Varnish VCL
//! (`app/code/Magento/PageCache/etc/varnish{6,7}.vcl`) and the parts of
//! Varnish's core it relies on, written as pure functions from data to
//! decisions. The behaviour is specified in
//! `shared/design/magento-fpc-contract.md`; section numbers (§2, §5.6, …)
//! in this crate refer to it.
//!
//! # What it is
//!
//! * [`request::classify`]: `vcl_recv` — purge / pipe / pass / lookup, URL
//!   normalisation (query sorting, tracking-parameter stripping),
//!   `Accept-Encoding` washing and the [`key::CacheKey`] (`vcl_hash`).
//! * [`response::classify_response`]: Varnish's TTL rules and
//!   `vcl_backend_response` — cacheable (TTL, grace, tags, gzip, ESI) or
//!   uncacheable (hit-for-miss TTL, reason).
//! * [`deliver::deliver_headers`]: `vcl_deliver` header hygiene, and
//!   [`deliver::evaluate_conditional`] for `304`s on hits.
//! * [`grace::hit_decision`] (`vcl_hit`) and [`grace::HealthWindow`] (the
//!   backend probe window).
//! * [`purge`]: `PURGE` verdicts, Magento tag patterns parsed into exact tags,
//!   and the synthetic Varnish answer.
//! * [`esi`]: a bounded, zero-copy ESI parser and sub-request headers.
//! * [`cache_control`]: a total `Cache-Control` parser and date helpers.
//!
//! # What it is not
//!
//! No object store, tag index or eviction (that is `magestack-fpc-store`),
//! no I/O, no sockets, no threads, no clock and no global state: times are
//! parameters (`now: SystemTime`), configuration is an [`FpcPolicy`] built
//! once (regexes compiled there), and every function is deterministic.
//! Nothing here panics on input (parsers are fuzzed and property-tested).
//!
//! # Typical use by the edge
//!
//! ```
//! use http::{HeaderMap, Method, StatusCode};
//! use magestack_fpc::prelude::*;
//! use std::time::SystemTime;
//!
//! let policy = FpcPolicy::default();
//! let headers = HeaderMap::new();
//! let method = Method::GET;
//! let req = RequestView::new(&method, "/women.html?utm_source=x", &headers);
//! let RequestDecision::Lookup(plan) = classify(&req, &policy) else { unreachable!() };
//! assert_eq!(plan.url, "/women.html");
//! // … miss: fetch `plan.url` with `miss_fetch_headers(&headers)` …
//! let resp_headers = HeaderMap::new();
//! let resp = ResponseView { status: StatusCode::OK, headers: &resp_headers };
//! let now = SystemTime::UNIX_EPOCH;
//! let decision = classify_response(&req, Fetch::Lookup(&plan), &resp, now, &policy);
//! assert!(decision.is_cacheable()); // 200 without cache headers: 120 s
//! ```
//!
//! # Decisions for magestack
//!
//! Where Magento's published VCLs disagree (contract §0), magestack does:
//!
//! * **Error statuses**: variant A by default (200 and 404 cacheable, as
//!   Magento's shipped `no-caching.vtc` requires), with
//!   [`ErrorStatusPolicy::NoErrors`] for variant C (403/404/5xx never cached).
//! * **Request normalisation**: variant C's (a superset): sort the query
//!   when it has two or more parameters (`\?.+&.+`), strip C's
//!   tracking-parameter list plus A's `ie` and `origin`; the list is
//!   configurable ([`TrackingParams`]).
//! * **`PATCH`**: pass (C), never pipe.
//! * **Full flush `.*`**: evicts every *tagged* object; objects without
//!   `X-Magento-Tags` stay, as in Varnish (a ban on a missing header never
//!   matches). See [`purge::PurgePattern::All`].
//! * **Several `Cookie` headers** (HTTP/2): joined with `"; "` so that
//!   `X-Magento-Vary` is extracted correctly — a deliberate fix of Varnish's
//!   `", "` join ([`key::vary_cookie`]).
//! * **`X-Magento-Cache-Debug`** (HIT / MISS / UNCACHEABLE) is always sent,
//!   as Magento's VCL does.
//!
//! And where the contract leaves room:
//!
//! * Cache keys are truncated SHA-256 over tagged, length-prefixed
//!   components (see [`key`]): distinct component tuples never collide by
//!   concatenation (in Varnish, `Store: x` alone and `Content-Currency: x`
//!   alone do).
//! * Query-sort ties (parameters equal up to the shorter length) keep their
//!   order (stable sort), so `?a=1&a=12` and `?a=12&a=1` stay distinct.
//! * `Cache-Control` checks of the VCL (`~ "private"`, `~ "no-cache|no-store"`)
//!   stay case-sensitive substring matches, exactly as in Varnish; TTL
//!   parsing follows Varnish's `RFC2616_Ttl` (quoted `max-age="60"` is
//!   accepted, an extension).
//! * Pass responses: the edge forwards the request target as received
//!   (Varnish would forward its query-sorted form); their responses are
//!   classified with [`response::Fetch::Pass`] only for ESI/gzip flags.
//! * A sick backend never gets background refreshes of stale hits
//!   (Varnish would not connect to it either).
//! * `If-None-Match` lists and `*` are honoured on hits (Varnish compares
//!   the raw header as one tag).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod cache_control;
pub mod config;
pub mod deliver;
pub mod esi;
pub mod grace;
pub mod headers;
pub mod key;
pub mod purge;
pub mod purged;
pub mod request;
pub mod response;
pub mod view;

pub use config::{ErrorStatusPolicy, FpcPolicy, PolicyError, TrackingParams};

/// The types and functions the edge uses on every request.
pub mod prelude {
    pub use crate::cache_control::CacheControl;
    pub use crate::config::{DesignExceptions, ErrorStatusPolicy, FpcPolicy, TrackingParams};
    pub use crate::deliver::{deliver_headers, evaluate_conditional, CacheDebug};
    pub use crate::esi::{
        parse_esi, resolve_include, subrequest_headers, EsiInclude, EsiLimits, EsiSegment,
    };
    pub use crate::grace::{hit_decision, GraceState, HealthWindow, HitDecision, ObjectTimes};
    pub use crate::key::{CacheKey, KeyDebug, KeyParts};
    pub use crate::purge::{
        parse_tags_pattern, purge_decision, purge_response, PurgePattern, PurgeRequest,
        PurgeVerdict, SyntheticResponse,
    };
    pub use crate::request::{
        classify, miss_fetch_headers, LookupPlan, PassReason, RequestDecision, RequestView,
    };
    pub use crate::response::{
        classify_response, Cacheability, Fetch, NoCacheReason, ResponseView,
    };
}
