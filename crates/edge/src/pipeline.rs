//! The request path, phase by phase ([`Edge::handle`]; drawn in
//! `docs/phases.md`).
//!
//! ```text
//! guard ─► client ─► waf ─► serve ─────────────────────────────► finish
//!   │                 │       ├─ cache: classify ─► purge | pass | lookup
//!   │                 │       │     lookup: hit ─► deliver
//!   │                 │       │             miss ─► coalesce ─► fetch ─► store ─► deliver
//!   │                 │       └─ origin: route ─► file | deny | admit ─► PHP-FPM / HTTP
//!   └─ 400            └─ 403 / 404 / 408 / 413 / 429 (the edge's own answers)
//! ```
//!
//! Each phase reads what the earlier ones decided and nothing later; a
//! request refused by `guard` or `waf` never reaches the cache or PHP.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::access_log::AccessRecord;
use crate::answer::{error_page, Outcome, PoolSlot};
use crate::body::EdgeBody;
use crate::client_ip;
use crate::compress;
use crate::ip_filter::IpVerdict;
use crate::rate_limit::RateVerdict;
use crate::request_body::{self, BodyError, ClientBody};
use crate::server::ConnInfo;
use crate::Edge;

/// What the phases after `client` know about the exchange.
struct Exchange {
    /// The client, trusted proxies resolved.
    client: IpAddr,
    /// Method, path and version for the access log, when it is written.
    log: Option<(Method, String, Version)>,
    /// What the gzip filter needs from the request.
    gzip: compress::ClientEncoding,
    is_head: bool,
}

/// The WAF's one answer about a request.
enum Verdict {
    /// Through. `limited`: a rate rule applies and the client is within it
    /// (credential endpoints): the cache is bypassed.
    Pass {
        req: Request<ClientBody>,
        limited: bool,
    },
    /// Answered by the edge itself.
    Refuse(Refusal),
}

/// Why the edge answers a request itself, before the cache and PHP.
enum Refusal {
    /// The headers would read differently to the cache and to PHP (400).
    Guard(crate::request_hygiene::Refusal),
    /// The network rules: `waf.deny` (403) or `waf.admin_allow` (404).
    Network {
        status: StatusCode,
        rule: &'static str,
    },
    /// Over a rate limit (429).
    RateLimited { rule: Arc<str>, retry_after: u32 },
    /// SQL injection or XSS found (the inspection's own 403 page).
    Injection(Response<EdgeBody>),
    /// The body could not be read within the limits (413, 408, 400, 503).
    Body(BodyError),
}

/// Body bytes read for the rate rules when no injection inspection sets a
/// limit (GraphQL documents are far smaller).
const INSPECT_FOR_RATE_BYTES: usize = 1024 * 1024;

impl Edge {
    /// Handles one request; never fails: errors become 4xx/5xx responses.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> Response<EdgeBody> {
        let started = Instant::now();
        // 1. guard: one view of the request for the cache key and for PHP.
        let (req, refused) = self.guard(req, conn);
        // 2. client: who is asking, and what the log will say.
        let cx = self.exchange(&req, conn);
        // 3. waf: network rules, the body when a rule must look into it,
        //    injection inspection, rate limits.
        let verdict = match refused {
            Some(why) => Verdict::Refuse(Refusal::Guard(why)),
            None => self.waf(req, &cx).await,
        };
        // 4. serve: the edge's own answer, the cache, or the origin.
        let (resp, outcome, cache) = match verdict {
            Verdict::Refuse(why) => (self.refusal(why, &cx).await, Outcome::Edge, "-"),
            Verdict::Pass { req, limited } => self.serve(req, limited, conn, cx.client).await,
        };
        // 5. finish: nginx's output filters, HSTS, metrics, the access log.
        self.finish(resp, outcome, cache, &cx, conn, started)
    }

    /// Phase 1 (`request_hygiene`): normalises the head in place, or says
    /// why the request is refused.
    fn guard(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
    ) -> (Request<Incoming>, Option<crate::request_hygiene::Refusal>) {
        let (mut head, incoming) = req.into_parts();
        let hop = crate::request_hygiene::Hop {
            tls: conn.tls,
            trusted_peer: client_ip::is_trusted(conn.peer.ip(), &self.s.trusted_proxies),
            ssl_offloaded_header: self
                .cache
                .as_ref()
                .map(|c| &c.s.policy.ssl_offloaded_header),
        };
        let refused =
            crate::request_hygiene::apply(head.version, &head.uri, &mut head.headers, hop).err();
        (Request::from_parts(head, incoming), refused)
    }

    /// Phase 2: the client's address and what the later phases need.
    fn exchange<B>(&self, req: &Request<B>, conn: &ConnInfo) -> Exchange {
        let client = client_ip::client_ip(conn.peer.ip(), req.headers(), &self.s.trusted_proxies);
        // Only pay for the log fields when the line will be written.
        let log = (self.s.access_log
            && (self.s.access_sink.is_some()
                || tracing::enabled!(target: "access", tracing::Level::INFO)))
        .then(|| {
            (
                req.method().clone(),
                req.uri().path().to_owned(),
                req.version(),
            )
        });
        Exchange {
            client,
            log,
            gzip: compress::ClientEncoding::of(req.headers()),
            is_head: req.method() == Method::HEAD,
        }
    }

    /// Phase 3: network rules first, then (reading the body when a rule
    /// looks into it) injection inspection and rate limits.
    async fn waf(&self, req: Request<Incoming>, cx: &Exchange) -> Verdict {
        match self.ip_filter.check(cx.client, req.uri().path()) {
            IpVerdict::Pass => {}
            // `waf.allow`: trusted networks skip the rest of the WAF.
            IpVerdict::Allowlisted => {
                return Verdict::Pass {
                    req: req.map(ClientBody::Incoming),
                    limited: false,
                }
            }
            IpVerdict::Deny => {
                return Verdict::Refuse(Refusal::Network {
                    status: StatusCode::FORBIDDEN,
                    rule: "waf.deny",
                })
            }
            IpVerdict::AdminHidden => {
                return Verdict::Refuse(Refusal::Network {
                    status: StatusCode::NOT_FOUND,
                    rule: "waf.admin_allow",
                })
            }
        }
        let for_rate = self
            .rate_limit
            .as_ref()
            .is_some_and(|rl| rl.needs_body(req.method(), req.uri().path()));
        let for_injection = self
            .injection
            .as_ref()
            .is_some_and(|inj| inj.wants_body(req.method(), req.headers()));
        let declared = match request_body::declared_length(req.headers()) {
            Ok(d) => d,
            Err(e) => return Verdict::Refuse(Refusal::Body(e)),
        };
        if declared.is_some_and(|n| n > self.s.max_body_bytes) {
            // Refused from its head: no waiting for a body that will not be read.
            return Verdict::Refuse(Refusal::Body(BodyError::TooLarge {
                limit: self.s.max_body_bytes,
            }));
        }
        // The body a rule looks into: read whole, in memory or spooled to a
        // file (bounded by `server.body_*`); what fits the inspection limit
        // is looked at.
        let (req, inspected) = if for_rate || for_injection {
            let (mut parts, incoming) = req.into_parts();
            let body = match request_body::read(incoming, declared, &self.body_limits).await {
                Ok(b) => b,
                Err(e) => return Verdict::Refuse(Refusal::Body(e)),
            };
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            let look = self
                .injection
                .as_ref()
                .map_or(INSPECT_FOR_RATE_BYTES, |inj| inj.body_limit());
            let inspected = body.bytes_up_to(look).await;
            (
                Request::from_parts(parts, ClientBody::Buffered(body)),
                inspected,
            )
        } else {
            (req.map(ClientBody::Incoming), None)
        };
        if let Some(inj) = &self.injection {
            let body: Option<&[u8]> = if for_injection {
                if inspected.is_none() {
                    inj.count_uninspected();
                }
                inspected.as_deref()
            } else {
                None
            };
            if let Some(block) = inj.check(req.method(), req.uri(), req.headers(), body, cx.client)
            {
                return Verdict::Refuse(Refusal::Injection(block));
            }
        }
        let limited = match &self.rate_limit {
            None => false,
            Some(rl) => match rl.check(
                req.method(),
                req.uri().path(),
                inspected.as_deref(),
                cx.client,
            ) {
                RateVerdict::NotLimited => false,
                RateVerdict::Allow => true,
                RateVerdict::Deny { rule, retry_after } => {
                    return Verdict::Refuse(Refusal::RateLimited { rule, retry_after })
                }
            },
        };
        Verdict::Pass { req, limited }
    }

    /// The edge's own answer to a refused request: the one place where a
    /// guard or WAF refusal becomes a status.
    async fn refusal(&self, why: Refusal, cx: &Exchange) -> Response<EdgeBody> {
        let client = cx.client;
        match why {
            Refusal::Guard(why) => {
                tracing::warn!(%client, reason = why.as_str(), detail = %why, "Request refused: its headers would read differently to the cache and to PHP.");
                let mut r = error_page(StatusCode::BAD_REQUEST, None);
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            Refusal::Network { status, rule } => {
                tracing::warn!(%client, rule, status = status.as_u16(), "Request blocked by the network rules.");
                error_page(status, None)
            }
            Refusal::RateLimited { rule, retry_after } => {
                tracing::warn!(%client, rule = %rule, retry_after_secs = retry_after, "Rate limit exceeded; answering 429.");
                if !self.s.tarpit.is_zero() {
                    // Tarpit: the client waits for its 429.
                    tokio::time::sleep(self.s.tarpit).await;
                }
                let mut r = error_page(StatusCode::TOO_MANY_REQUESTS, Some(retry_after));
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Refusal::Injection(resp) => resp,
            Refusal::Body(e) => e.response(),
        }
    }

    /// Phase 4: through the full-page cache (which fetches from the origin
    /// on a miss), or straight to the origin when there is no cache or a
    /// rate rule applies (credential endpoints are never cached).
    async fn serve(
        self: &Arc<Self>,
        req: Request<ClientBody>,
        limited: bool,
        conn: &ConnInfo,
        client: IpAddr,
    ) -> (Response<EdgeBody>, Outcome, &'static str) {
        // The rollout's track (and its release) rides in the extensions;
        // the assignment cookie goes on whatever answers.
        let (req, set_cookie) = self.assign_track(req, conn, client);
        let mut served = match (&self.cache, limited) {
            (Some(cache), false) => {
                let served = self.cached(cache, req, conn, client).await;
                (served.resp, served.outcome, served.cache)
            }
            (Some(_), true) => {
                let path = req.uri().path().to_owned();
                let (mut resp, outcome) = self.dispatch(req, conn, client).await;
                magestack_fpc::prelude::deliver_headers(
                    resp.headers_mut(),
                    magestack_fpc::prelude::CacheDebug::Uncacheable,
                    &path,
                    0,
                );
                (resp, outcome, "UNCACHEABLE")
            }
            (None, _) => {
                let (resp, outcome) = self.dispatch(req, conn, client).await;
                (resp, outcome, "-")
            }
        };
        if let Some(cookie) = set_cookie {
            served.0.headers_mut().append(header::SET_COOKIE, cookie);
        }
        served
    }

    /// Phase 5: nginx's output filters, HSTS, the request's metrics and
    /// its access-log line.
    fn finish(
        &self,
        mut resp: Response<EdgeBody>,
        outcome: Outcome,
        cache: &'static str,
        cx: &Exchange,
        conn: &ConnInfo,
        started: Instant,
    ) -> Response<EdgeBody> {
        self.filter_response(cx.gzip, cx.is_head, &mut resp);
        if conn.tls
            && !resp
                .headers()
                .contains_key(header::STRICT_TRANSPORT_SECURITY)
        {
            // Browsers that reached the shop over TLS stay on TLS (a year, as
            // Magento's own HSTS setting sends it); Magento's header wins.
            resp.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        let slot = resp.extensions().get::<PoolSlot>().map_or(0, |s| s.0);
        self.metrics.observe(
            slot,
            cache,
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        if let Some((method, path, version)) = &cx.log {
            let rec = AccessRecord {
                client: cx.client,
                method,
                path,
                version: *version,
                status: resp.status().as_u16(),
                outcome: outcome.as_str(),
                cache,
                duration: started.elapsed(),
            };
            match &self.s.access_sink {
                Some(sink) => sink.log(&rec),
                None => tracing::info!(
                    target: "access",
                    client = %rec.client,
                    method = %rec.method,
                    path = %rec.path,
                    version = ?rec.version,
                    status = rec.status,
                    outcome = rec.outcome,
                    cache = rec.cache,
                    duration_ms = rec.duration.as_secs_f64() * 1000.0,
                    "Request served."
                ),
            }
        }
        resp
    }
}
