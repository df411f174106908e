//! The built-in sample storefront behind `magestack demo`: a tiny app that answers
//! like Magento over HTTP (cache headers, `X-Magento-Tags`, the `X-Magento-Vary`
//! cookie, personalised customer and checkout pages), so the edge can be tried
//! without PHP. The PHP version for real tests lives in `examples/storefront/`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::body::{self, EdgeBody};

const STYLES: &str = "body{font-family:sans-serif;margin:0}header{background:#1979c3;color:#fff;padding:1em}main{padding:1em}.price{color:#c00;font-weight:bold}footer{border-top:1px solid #ccc;padding:1em;color:#666}";

/// Starts the storefront on `listener`; runs until the task is dropped.
pub async fn run_storefront(listener: TcpListener) {
    let renders = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let renders = renders.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let renders = renders.clone();
                async move { Ok::<_, Infallible>(page(&req, &renders)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds the storefront on an ephemeral loopback port.
pub async fn spawn_storefront() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(run_storefront(listener));
    Ok(addr)
}

fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn layout(title: &str, customer: Option<&str>, currency: &str, main: &str, n: u64) -> String {
    let greeting = match customer {
        Some(c) => format!("Welcome, {c}! <a href=\"/customer/account/logout\">Sign out</a>"),
        None => "Default welcome msg! <a href=\"/customer/account/login\">Sign in</a>".to_string(),
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
<link rel=\"stylesheet\" href=\"/static/version1/frontend/Magento/luma/en_US/css/styles-m.css\"></head>\
<body><header><strong>magestack demo store</strong> · {greeting} · currency {currency}\
<nav><a href=\"/\">Home</a> · <a href=\"/women/tops.html\">Women / Tops</a> · \
<a href=\"/product/MH01.html\">Chaz Hoodie</a> · <a href=\"/checkout/cart/\">Cart</a></nav></header>\
<main>{main}</main><footer>Rendered by the demo app, render #{n}.</footer></body></html>"
    )
}

fn page(req: &Request<Incoming>, renders: &AtomicU64) -> Response<EdgeBody> {
    let n = renders.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path();
    let customer = cookie(req, "demo_customer");
    let currency = cookie(req, "demo_currency").unwrap_or("USD");
    let public = |title: &str, tags: &str, main: String| {
        let mut r = html(StatusCode::OK, layout(title, customer, currency, &main, n));
        let h = r.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=86400, public, s-maxage=86400"),
        );
        h.insert(header::PRAGMA, HeaderValue::from_static("cache"));
        if let Ok(v) = HeaderValue::from_str(tags) {
            h.insert("x-magento-tags", v);
        }
        r
    };
    match (req.method(), path) {
        (_, "/") => public(
            "Home",
            "cms_p_2,cat_c_3,cat_p_1,cat_p_2",
            "<h1>Home page</h1><p>Try <code>/women/tops.html</code>, a product page, the cart.</p>"
                .into(),
        ),
        (_, "/women/tops.html") => {
            let items: String = (1..=12)
                .map(|i| format!("<li><a href=\"/product/MH{i:02}.html\">Product MH{i:02}</a> <span class=\"price\">{currency} {}.00</span></li>", 40 + i))
                .collect();
            let tags: Vec<String> = std::iter::once("cat_c_3".to_string())
                .chain((1..=12).map(|i| format!("cat_p_{i}")))
                .collect();
            public(
                "Tops",
                &tags.join(","),
                format!("<h1>Women / Tops</h1><ul>{items}</ul>"),
            )
        }
        (_, p) if p.starts_with("/product/") && p.ends_with(".html") => {
            let sku = &p["/product/".len()..p.len() - ".html".len()];
            if sku.is_empty() || !sku.chars().all(|c| c.is_ascii_alphanumeric()) {
                return not_found(customer, currency, n);
            }
            let id: u64 = sku.bytes().map(u64::from).sum::<u64>() % 1000;
            public(sku, &format!("cat_p_{id}"), format!("<h1>{sku}</h1><p class=\"price\">{currency} 52.00</p><form method=\"post\" action=\"/checkout/cart/add?sku={sku}\"><button>Add to cart</button></form>"))
        }
        (_, "/customer/account/login") => {
            let mut r = redirect("/customer/account/");
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_static("demo_customer=Veronica; Path=/; HttpOnly"),
            );
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "X-Magento-Vary=8f1a0c3c2b1e6a1a07a3d2b0f29f5bba2e8cdd11; Path=/; HttpOnly",
                ),
            );
            r
        }
        (_, "/customer/account/logout") => {
            let mut r = redirect("/");
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_static("demo_customer=; Path=/; Max-Age=0"),
            );
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_static("X-Magento-Vary=; Path=/; Max-Age=0"),
            );
            r
        }
        (_, "/customer/account/") | (_, "/checkout/cart/") => {
            let who = customer.unwrap_or("guest");
            let title = if path == "/checkout/cart/" {
                "Shopping Cart"
            } else {
                "My Account"
            };
            let mut r = html(
                StatusCode::OK,
                layout(
                    title,
                    customer,
                    currency,
                    &format!("<h1>Private page of {who}</h1><p>Never cached, never shared.</p>"),
                    n,
                ),
            );
            let h = r.headers_mut();
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
            );
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        (&Method::POST, "/checkout/cart/add") => redirect("/checkout/cart/"),
        (_, "/health_check.php") => {
            let mut r = Response::new(body::empty());
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            r
        }
        (_, p) if p.starts_with("/static/") && p.ends_with(".css") => {
            let mut r = Response::new(body::full(Bytes::from_static(STYLES.as_bytes())));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css"));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            r
        }
        _ => not_found(customer, currency, n),
    }
}

fn html(status: StatusCode, s: String) -> Response<EdgeBody> {
    let len = s.len();
    let mut r = Response::new(body::full(s));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    r
}

fn redirect(to: &'static str) -> Response<EdgeBody> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static(to));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    r
}

fn not_found(customer: Option<&str>, currency: &str, n: u64) -> Response<EdgeBody> {
    let mut r = html(
        StatusCode::NOT_FOUND,
        layout(
            "404 Not Found",
            customer,
            currency,
            "<h1>Whoops, our bad...</h1>",
            n,
        ),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, must-revalidate, no-cache, no-store"),
    );
    r
}
