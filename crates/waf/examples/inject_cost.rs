//! Cost of inspecting a typical browser request (path, UA, Referer, Magento
//! cookies), for the hot-path budget: `cargo run --release -p magestack-waf --example inject_cost`.

use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Uri};
use magestack_waf::inject::{Detectors, Inspector, Profile, RequestView};

fn main() {
    for v in [
        &b"/radiant-tee.html"[..],
        b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        b"{\"cart\":1732270000,\"customer\":1732270000}",
        b"O'Reilly books",
    ] {
        let n = 100_000;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(libinjectionrs::detect_sqli(std::hint::black_box(v)));
        }
        let sqli = start.elapsed().as_nanos() as f64 / f64::from(n);
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(libinjectionrs::detect_xss(std::hint::black_box(v)));
        }
        let xss = start.elapsed().as_nanos() as f64 / f64::from(n);
        println!("{:>4} bytes: sqli {sqli:.0} ns, xss {xss:.0} ns", v.len());
    }
    let d = match std::env::args().nth(1).as_deref() {
        Some("li") => Detectors {
            libinjection_sqli: true,
            libinjection_xss: true,
            signatures: false,
        },
        Some("sig") => Detectors {
            libinjection_sqli: false,
            libinjection_xss: false,
            signatures: true,
        },
        _ => Detectors::default(),
    };
    let inspector = Inspector::new(Profile::magento("admin", Vec::new()), d);
    let mut headers = HeaderMap::new();
    headers.insert(http::header::USER_AGENT, HeaderValue::from_static("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"));
    headers.insert(
        http::header::REFERER,
        HeaderValue::from_static("https://shop.example.com/women/tops-women.html?color=49&p=2"),
    );
    headers.insert(http::header::COOKIE, HeaderValue::from_static("PHPSESSID=0b5c1f2d9e8a7b6c5d4e3f2a1b0c9d8e; form_key=Xy7pQ2rT9kLm4NbV; mage-cache-storage=%7B%7D; mage-cache-sessid=true; section_data_ids=%7B%22cart%22%3A1732270000%2C%22customer%22%3A1732270000%7D; private_content_version=8f3c6d1e2b4a59786c0d1e2f3a4b5c6d; X-Magento-Vary=9a3e5f0c1b2d4e6f8a0b1c2d3e4f5a6b7c8d9e0f; store=default"));
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("gzip, deflate, br"),
    );
    let cases: [(&str, &HeaderMap); 3] = [
        (
            "/women/tops-women/jackets-women.html?color=50&size=167&p=2",
            &headers,
        ),
        ("/radiant-tee.html", &HeaderMap::new()),
        ("/catalogsearch/result/?q=O%27Reilly+books", &headers),
    ];
    for (uri, h) in cases {
        let uri: Uri = uri.parse().expect("uri");
        let n = 200_000;
        let start = Instant::now();
        let mut found = 0;
        for _ in 0..n {
            let view = RequestView {
                method: &Method::GET,
                uri: &uri,
                headers: h,
                body: None,
            };
            found += usize::from(inspector.inspect(&view).is_some());
        }
        let per = start.elapsed().as_nanos() as f64 / f64::from(n);
        println!(
            "{uri} ({} headers): {per:.0} ns per request, {found} findings",
            h.len()
        );
    }
}

#[allow(dead_code)]
fn per_value() {}
