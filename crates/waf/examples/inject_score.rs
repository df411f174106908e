//! Runs the injection inspector over requests given as JSON lines on stdin
//! and prints one verdict per line; `scripts/waf-score` feeds it the public
//! corpora and the Magento legitimate corpus and computes recall and false
//! positives from the verdicts.
//!
//! Input line: `{"id": "...", "method": "GET", "uri": "/?q=..", "headers":
//! [["cookie", "a=b"]], "body": "..."}` (`body` may be absent or null).
//! Output line: `{"id": "...", "attack": "sqli"|"xss"|null, "location": ..,
//! "field": .., "detector": ..}`.
//!
//! Usage: `inject_score [--detectors libinjection,signatures] [--profile magento|none]`

use std::io::{BufRead, Write};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use magestack_waf::inject::{Detectors, Inspector, Profile, RequestView};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut detectors = Detectors {
        libinjection_sqli: false,
        libinjection_xss: false,
        signatures: false,
    };
    let mut profile = Profile::magento("admin", Vec::new());
    let mut args = std::env::args().skip(1);
    let mut chosen = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--detectors" => {
                chosen = true;
                for d in args.next().unwrap_or_default().split(',') {
                    match d {
                        "libinjection" => {
                            detectors.libinjection_sqli = true;
                            detectors.libinjection_xss = true;
                        }
                        "signatures" => detectors.signatures = true,
                        other => return Err(format!("unknown detector {other}").into()),
                    }
                }
            }
            "--profile" => match args.next().as_deref() {
                Some("magento") => {}
                Some("none") => profile = Profile::none(),
                other => return Err(format!("unknown profile {other:?}").into()),
            },
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !chosen {
        detectors = Detectors::default();
    }
    let inspector = Inspector::new(profile, detectors);
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let case: Value = serde_json::from_str(&line)?;
        let id = case["id"].clone();
        let method = Method::from_bytes(case["method"].as_str().unwrap_or("GET").as_bytes())
            .unwrap_or(Method::GET);
        let raw_uri = case["uri"].as_str().unwrap_or("/");
        let uri = match raw_uri.parse::<Uri>() {
            Ok(u) => u,
            // Raw spaces and quotes: encoded as a browser would send them.
            Err(_) => match encode_uri(raw_uri).parse::<Uri>() {
                Ok(u) => u,
                Err(e) => {
                    writeln!(out, "{}", json!({"id": id, "error": format!("uri: {e}")}))?;
                    continue;
                }
            },
        };
        let mut headers = HeaderMap::new();
        if let Some(hs) = case["headers"].as_array() {
            for h in hs {
                let (Some(k), Some(v)) = (h[0].as_str(), h[1].as_str()) else {
                    continue;
                };
                if let (Ok(k), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_bytes(v.as_bytes()),
                ) {
                    headers.append(k, v);
                }
            }
        }
        let body = case["body"].as_str().map(str::as_bytes);
        let finding = inspector.inspect(&RequestView {
            method: &method,
            uri: &uri,
            headers: &headers,
            body,
        });
        let v = match finding {
            Some(f) => json!({
                "id": id,
                "attack": f.attack.as_str(),
                "location": f.location.as_str(),
                "field": f.field,
                "detector": f.detector.to_string(),
            }),
            None => json!({"id": id, "attack": null}),
        };
        writeln!(out, "{v}")?;
    }
    out.flush()?;
    Ok(())
}

fn encode_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
