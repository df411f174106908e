//! The edge's side of SQL injection / XSS inspection: which bodies to read,
//! what to do with a finding (block with a request id, or only log), and the
//! counters behind `magestack_waf_injection_total`.
//!
//! The decisions themselves are `magestack_waf::inject`'s (pure); this
//! module only wires them to requests, logs and metrics.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use magestack_waf::inject::{
    profile, Attack, Detectors, Finding, Inspector, Location, Profile, RequestView,
};

use crate::body::EdgeBody;
use crate::settings::InjectionSpec;

/// Locations in metric order.
const LOCATIONS: [Location; 5] = [
    Location::Path,
    Location::Query,
    Location::Cookie,
    Location::Body,
    Location::Header,
];
const ATTACKS: [Attack; 2] = [Attack::Sqli, Attack::Xss];

/// Inspection, its mode and its counters.
#[derive(Debug)]
pub(crate) struct Injection {
    inspector: Inspector,
    block: bool,
    body_limit: usize,
    /// [attack][location][blocked?]
    found: [[[AtomicU64; 2]; 5]; 2],
    uninspected: AtomicU64,
}

/// One counter of `magestack_waf_injection_total`.
#[derive(Debug, Clone, Copy)]
pub struct InjectionCount {
    /// `sqli` / `xss`.
    pub attack: &'static str,
    /// `path`, `query`, `cookie`, `body`, `header`.
    pub location: &'static str,
    /// `blocked` / `detected`.
    pub action: &'static str,
    /// Requests.
    pub count: u64,
}

impl Injection {
    pub(crate) fn new(spec: &InjectionSpec, admin_front_name: &str) -> Injection {
        // One profile exclusion per (location, field) of each config entry.
        let mut extra = Vec::new();
        for e in &spec.exclusions {
            let area = if e.prefix.is_empty() {
                profile::Area::Everywhere
            } else {
                profile::Area::Prefix(e.prefix.clone())
            };
            let attacks: Vec<Attack> = e
                .attacks
                .iter()
                .filter_map(|a| match a.as_str() {
                    "sqli" => Some(Attack::Sqli),
                    "xss" => Some(Attack::Xss),
                    _ => None,
                })
                .collect();
            let locations: Vec<Option<Location>> = if e.locations.is_empty() {
                vec![None]
            } else {
                e.locations.iter().map(|l| location(l)).collect()
            };
            for loc in locations {
                for f in &e.fields {
                    extra.push(profile::Exclusion {
                        area: area.clone(),
                        location: loc,
                        field: profile::FieldMatch::parse(f),
                        attacks: attacks.clone(),
                    });
                }
            }
        }
        Injection {
            inspector: Inspector::new(
                Profile::magento(admin_front_name, extra),
                Detectors::default(),
            ),
            block: spec.block,
            body_limit: spec.inspect_body_bytes,
            found: Default::default(),
            uninspected: AtomicU64::new(0),
        }
    }

    /// Should the edge read this request's body to inspect it? Bodies of
    /// text-like types (forms, JSON, multipart, GraphQL) up to the limit;
    /// larger ones are counted as uninspected.
    pub(crate) fn wants_body(&self, method: &Method, headers: &HeaderMap) -> bool {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return false;
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        if declared == Some(0) || (declared.is_none() && !chunked) {
            return false;
        }
        let ct = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !inspectable(ct) {
            return false;
        }
        match declared {
            Some(n) if n > self.body_limit as u64 => {
                self.uninspected.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }

    /// Largest body read for inspection.
    pub(crate) fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// A chunked body turned out larger than the limit: not inspected.
    pub(crate) fn count_uninspected(&self) {
        self.uninspected.fetch_add(1, Ordering::Relaxed);
    }

    /// Inspects a request; `Some` is the answer when it is blocked.
    pub(crate) fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<&[u8]>,
        client: IpAddr,
    ) -> Option<Response<EdgeBody>> {
        let finding = self.inspector.inspect(&RequestView {
            method,
            uri,
            headers,
            body,
        })?;
        let id = request_id(headers);
        self.count(&finding);
        let Finding {
            attack,
            location,
            field,
            detector,
        } = &finding;
        if self.block {
            tracing::warn!(
                %client, request_id = %id, attack = attack.as_str(), location = location.as_str(),
                field = %field, detector = %detector, path = uri.path(),
                "Injection blocked (waf.injection = \"block\")."
            );
            Some(blocked_page(&id))
        } else {
            tracing::warn!(
                %client, request_id = %id, attack = attack.as_str(), location = location.as_str(),
                field = %field, detector = %detector, path = uri.path(),
                "Injection detected (waf.injection = \"detect\": passed on)."
            );
            None
        }
    }

    fn count(&self, f: &Finding) {
        let a = ATTACKS.iter().position(|x| *x == f.attack).unwrap_or(0);
        let l = LOCATIONS.iter().position(|x| *x == f.location).unwrap_or(0);
        self.found[a][l][usize::from(self.block)].fetch_add(1, Ordering::Relaxed);
    }

    /// Non-zero counters, for `/metrics`.
    pub(crate) fn counts(&self) -> (Vec<InjectionCount>, u64) {
        let mut out = Vec::new();
        for (a, attack) in ATTACKS.iter().enumerate() {
            for (l, loc) in LOCATIONS.iter().enumerate() {
                for (b, action) in ["detected", "blocked"].iter().enumerate() {
                    let n = self.found[a][l][b].load(Ordering::Relaxed);
                    if n > 0 {
                        out.push(InjectionCount {
                            attack: attack.as_str(),
                            location: loc.as_str(),
                            action,
                            count: n,
                        });
                    }
                }
            }
        }
        (out, self.uninspected.load(Ordering::Relaxed))
    }
}

fn location(name: &str) -> Option<Location> {
    LOCATIONS.iter().copied().find(|l| l.as_str() == name)
}

/// Body types worth reading: what PHP parses into `$_POST`, JSON (REST and
/// GraphQL), GraphQL documents and plain text.
fn inspectable(ct: &[u8]) -> bool {
    let ct = ct.to_ascii_lowercase();
    ct.is_empty()
        || ct.starts_with(b"application/x-www-form-urlencoded")
        || ct.starts_with(b"multipart/form-data")
        || ct.starts_with(b"application/json")
        || ct.starts_with(b"application/graphql")
        || ct.starts_with(b"text/")
        || ct
            .split(|&b| b == b';')
            .next()
            .is_some_and(|e| e.ends_with(b"+json"))
}

/// The request id: the client's (a load balancer's) `X-Request-Id` when it
/// is a sane token, otherwise a fresh random one.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        if !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return v.to_owned();
        }
    }
    use std::hash::{BuildHasher, Hasher};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// 403 naming the request id, so a shopper wrongly blocked can quote it
/// and the operator can find the log line.
fn blocked_page(id: &str) -> Response<EdgeBody> {
    let mut r = crate::answer::text_page(
        StatusCode::FORBIDDEN,
        format!(
            "403 Forbidden\nThis request was blocked by the store's firewall.\nRequest id: {id}\n"
        ),
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_taken_when_sane_and_fresh_otherwise() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("<script>"));
        let a = request_id(&h);
        assert_eq!(a.len(), 16);
        assert_ne!(a, request_id(&HeaderMap::new()));
    }

    #[test]
    fn only_text_bodies_are_read() {
        assert!(inspectable(
            b"application/x-www-form-urlencoded; charset=UTF-8"
        ));
        assert!(inspectable(b"application/vnd.api+json"));
        assert!(!inspectable(b"image/png"));
        assert!(!inspectable(b"application/octet-stream"));
    }
}
