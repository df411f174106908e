//! The Magento exclusion profile's promise: no finding on legitimate Magento
//! traffic (`tests/data/magento-legit.jsonl`: storefront search, checkout
//! REST and GraphQL with quotes and dashes in addresses, customer forms,
//! Page Builder / CMS / product saves in the admin, Magento's own cookies),
//! and each of those requests turns into a finding when an attack is put
//! into one of its values (so the corpus is inspected, not skipped).

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use magestack_waf::inject::{Detectors, Inspector, Profile, RequestView};
use serde_json::Value;

struct Case {
    id: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<String>,
}

fn corpus() -> Vec<Case> {
    let text = include_str!("data/magento-legit.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("corpus line is JSON");
            let mut headers = HeaderMap::new();
            for h in v["headers"].as_array().expect("headers") {
                headers.append(
                    HeaderName::from_bytes(h[0].as_str().expect("name").as_bytes())
                        .expect("header name"),
                    HeaderValue::from_str(h[1].as_str().expect("value")).expect("header value"),
                );
            }
            Case {
                id: v["id"].as_str().expect("id").to_owned(),
                method: Method::from_bytes(v["method"].as_str().expect("method").as_bytes())
                    .expect("method"),
                uri: v["uri"]
                    .as_str()
                    .expect("uri")
                    .parse()
                    .expect("corpus uri is valid"),
                headers,
                body: v["body"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

#[test]
fn no_false_positive_on_legitimate_magento_traffic() {
    let inspector = Inspector::new(Profile::magento("admin", vec![]), Detectors::default());
    let cases = corpus();
    assert!(cases.len() >= 100, "corpus has {} cases", cases.len());
    let mut fps = Vec::new();
    for c in &cases {
        let view = RequestView {
            method: &c.method,
            uri: &c.uri,
            headers: &c.headers,
            body: c.body.as_deref().map(str::as_bytes),
        };
        if let Some(f) = inspector.inspect(&view) {
            fps.push(format!("{}: {:?}", c.id, f));
        }
    }
    assert!(fps.is_empty(), "false positives:\n{}", fps.join("\n"));
}

#[test]
fn the_same_requests_with_an_attack_in_the_query_are_caught() {
    let inspector = Inspector::new(Profile::magento("admin", vec![]), Detectors::default());
    for c in corpus() {
        let sep = if c.uri.query().is_some() { '&' } else { '?' };
        let uri: Uri = format!(
            "{}{sep}x=1%27%20union%20select%20password%20from%20admin_user--%20",
            c.uri
        )
        .parse()
        .expect("uri");
        let view = RequestView {
            method: &c.method,
            uri: &uri,
            headers: &c.headers,
            body: c.body.as_deref().map(str::as_bytes),
        };
        assert!(inspector.inspect(&view).is_some(), "{}", c.id);
    }
}
