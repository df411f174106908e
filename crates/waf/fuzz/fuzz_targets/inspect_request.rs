//! Whole-request inspection with the Magento profile: any query, cookie,
//! content type and body; must never panic.
#![no_main]

use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use magestack_waf::inject::{Detectors, Inspector, Profile, RequestView};

fn inspector() -> &'static Inspector {
    static I: std::sync::OnceLock<Inspector> = std::sync::OnceLock::new();
    I.get_or_init(|| Inspector::new(Profile::magento("admin", Vec::new()), Detectors::default()))
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xff: query, cookie, content type, body.
    let mut parts = data.splitn(4, |&b| b == 0xff);
    let query = parts.next().unwrap_or_default();
    let cookie = parts.next().unwrap_or_default();
    let ct = parts.next().unwrap_or_default();
    let body = parts.next();
    let q: String = query.iter().filter(|b| b.is_ascii_graphic() && **b != b'#').map(|&b| char::from(b)).collect();
    let uri: Uri = format!("/graphql?{q}").parse().unwrap_or_else(|_| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        headers.insert(http::header::COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(ct) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    let _ = inspector().inspect(&RequestView { method: &Method::POST, uri: &uri, headers: &headers, body });
});
