//! Leak-proof caching, end to end: many distinct visitors (anonymous,
//! logged in to two customer groups, other display currencies) browse the
//! real PHP storefront through the edge with the full-page cache on,
//! concurrently, and no response body or `Set-Cookie` of one ever reaches
//! another; personalised pages and session-setting responses are never
//! served from the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpStream;

/// Visitors and requests each (the acceptance asks for at least 10 × 1,000).
const USERS: usize = 12;
const REQUESTS: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Anonymous,
    General,
    Wholesale,
    /// Anonymous, display currency switched to EUR or GBP.
    Currency(&'static str),
}

/// What one visitor owns: anything of it seen by another is a leak.
#[derive(Clone, Debug)]
struct Identity {
    index: usize,
    kind: Kind,
    /// Customer name and e-mail (logged-in visitors).
    name: Option<String>,
    email: Option<String>,
    /// The one product in this visitor's cart.
    sku: String,
}

struct Visitor {
    id: Identity,
    addr: SocketAddr,
    ip: String,
    jar: BTreeMap<String, String>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

struct Resp {
    status: StatusCode,
    set_cookies: Vec<String>,
    cache: String,
    cache_control: String,
    body: String,
}

impl Visitor {
    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&str>) -> Resp {
        for attempt in 0..3 {
            if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
                let stream = TcpStream::connect(self.addr).await.unwrap();
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                self.conn = Some(sender);
            }
            let mut b = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "shop.test")
                .header("x-forwarded-for", &self.ip)
                .header("accept-encoding", "identity");
            if !self.jar.is_empty() {
                b = b.header("cookie", self.cookie_header());
            }
            if form.is_some() {
                b = b.header("content-type", "application/x-www-form-urlencoded");
            }
            let req = b
                .body(Full::new(Bytes::from(form.unwrap_or("").to_owned())))
                .unwrap();
            let sender = self.conn.as_mut().unwrap();
            if sender.ready().await.is_err() {
                self.conn = None;
                continue;
            }
            match sender.send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let set_cookies: Vec<String> = parts
                        .headers
                        .get_all("set-cookie")
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect();
                    for c in &set_cookies {
                        self.absorb(c);
                    }
                    let h = |n: &str| {
                        parts
                            .headers
                            .get(n)
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default()
                    };
                    return Resp {
                        status: parts.status,
                        cache: h("x-magento-cache-debug"),
                        cache_control: h("cache-control"),
                        set_cookies,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                }
                Err(e) if attempt < 2 => {
                    let _ = e;
                    self.conn = None;
                }
                Err(e) => panic!("visitor {}: {method} {path}: {e}", self.id.index),
            }
        }
        unreachable!()
    }

    /// Updates the cookie jar from one `Set-Cookie` (deletions included).
    fn absorb(&mut self, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or("");
        let Some((k, v)) = pair.split_once('=') else {
            return;
        };
        let deleted = v.is_empty()
            || v == "deleted"
            || set_cookie.to_ascii_lowercase().contains("max-age=0")
            || set_cookie.contains("1970");
        if deleted {
            self.jar.remove(k.trim());
        } else {
            self.jar.insert(k.trim().to_owned(), v.to_owned());
        }
    }
}

/// Everything the checker needs to know about all visitors.
struct World {
    ids: Vec<Identity>,
    /// Session id → visitor it was issued to.
    sessions: Mutex<HashMap<String, usize>>,
}

#[derive(Default)]
struct Tally {
    requests: usize,
    hits: usize,
    private_pages: usize,
}

impl World {
    /// Panics on any sign of another visitor's data in `r`.
    fn check(&self, me: &Identity, my_vary: Option<&str>, path: &str, r: &Resp) {
        let ctx = format!("visitor {} ({:?}) {path} [{}]", me.index, me.kind, r.cache);
        // Magento's contract: a public page is one HTML per context (the
        // X-Magento-Vary value), shared by every visitor in that context;
        // the storefront writes the first visitor's name into its welcome
        // line on purpose (examples/storefront/README.md). That line may
        // name someone in exactly my context, nothing else may.
        let public = r.body.contains("<!-- sf:public");
        let mut body = std::borrow::Cow::Borrowed(r.body.as_str());
        if public {
            for other in self
                .ids
                .iter()
                .filter(|o| o.kind == me.kind && o.index != me.index)
            {
                if let Some(name) = &other.name {
                    body = std::borrow::Cow::Owned(
                        body.replace(&format!("Welcome, {name}!"), "Welcome, <same context>!"),
                    );
                }
            }
        }
        for other in self.ids.iter().filter(|o| o.index != me.index) {
            for token in [&other.name, &other.email].into_iter().flatten() {
                assert!(
                    !body.contains(token.as_str()),
                    "{ctx}: body shows {token} of visitor {}",
                    other.index
                );
                for c in &r.set_cookies {
                    assert!(
                        !c.contains(token.as_str()),
                        "{ctx}: Set-Cookie of visitor {}: {c}",
                        other.index
                    );
                }
            }
        }
        // Session ids are never handed to two visitors.
        for c in &r.set_cookies {
            if let Some(v) = c.strip_prefix("PHPSESSID=") {
                let sid = v.split(';').next().unwrap_or("").to_owned();
                if sid.is_empty() || sid == "deleted" {
                    continue;
                }
                let mut s = self.sessions.lock().unwrap();
                let owner = *s.entry(sid.clone()).or_insert(me.index);
                assert_eq!(
                    owner, me.index,
                    "{ctx}: session {sid} of visitor {owner} issued again"
                );
            }
        }
        let hit = r.cache == "HIT";
        if hit {
            assert!(
                r.set_cookies.is_empty(),
                "{ctx}: a cached response sets cookies: {:?}",
                r.set_cookies
            );
            assert!(
                !r.cache_control.contains("private"),
                "{ctx}: private content served from the cache"
            );
        }
        // Carts: only my own product, ever.
        for (i, _) in r.body.match_indices("data-sku=\"") {
            let sku = &r.body[i + 10..i + 14];
            assert_eq!(sku, me.sku, "{ctx}: cart row {sku} is not mine");
        }
        // Public pages: the variant of my own context.
        if let Some(i) = r.body.find("<!-- sf:public currency=") {
            let marker = &r.body[i..r.body[i..].find("-->").map_or(r.body.len(), |e| i + e)];
            let want_vary = my_vary.unwrap_or("-");
            assert!(
                marker.contains(&format!("vary={want_vary}")),
                "{ctx}: {marker} for my vary {want_vary}"
            );
            let currency = match me.kind {
                Kind::Currency(c) => c,
                _ => "USD",
            };
            assert!(
                marker.contains(&format!("currency={currency}")),
                "{ctx}: {marker}"
            );
        }
    }
}

async fn visit(world: Arc<World>, addr: SocketAddr, id: Identity) -> Tally {
    let mut v = Visitor {
        ip: format!("198.51.100.{}", 10 + id.index),
        id: id.clone(),
        addr,
        jar: BTreeMap::new(),
        conn: None,
    };
    let mut tally = Tally::default();
    // Set-up: log in or switch currency, put my product in my cart.
    match (&id.kind, &id.email) {
        (Kind::General | Kind::Wholesale, Some(email)) => {
            let r = v.send("GET", "/customer/account/login/", None).await;
            world.check(&id, None, "login form", &r);
            let form = format!(
                "email={}&password=secret",
                email.replace('+', "%2B").replace('@', "%40")
            );
            let r = v.send("POST", "/customer/account/login", Some(&form)).await;
            assert_eq!(r.status, 302, "login of visitor {}: {}", id.index, r.body);
            assert!(
                v.jar.contains_key("X-Magento-Vary"),
                "visitor {} has a vary cookie",
                id.index
            );
        }
        (Kind::Currency(c), _) => {
            let r = v
                .send(
                    "GET",
                    &format!("/directory/currency/switch/?currency={c}"),
                    None,
                )
                .await;
            assert!(r.status.is_redirection(), "{}", r.body);
        }
        _ => {}
    }
    let r = v
        .send(
            "POST",
            "/checkout/cart/add/",
            Some(&format!("sku={}&qty=1", id.sku)),
        )
        .await;
    assert!(
        r.status.is_redirection(),
        "cart add: {} {}",
        r.status,
        r.body
    );
    let pages: [&str; 9] = [
        "/",
        "/women.html",
        "/women/tops.html",
        "/women/bottoms.html",
        "/sale.html",
        "/product/WS03.html",
        "/customer/account/",
        "/checkout/cart/",
        "/customer/section/load/?sections=cart%2Ccustomer",
    ];
    for n in 0..REQUESTS {
        let path = pages[(n * 7 + id.index) % pages.len()];
        let vary = v.jar.get("X-Magento-Vary").cloned();
        let r = v.send("GET", path, None).await;
        assert!(
            r.status.is_success() || r.status.is_redirection(),
            "visitor {} {path}: {}",
            id.index,
            r.status
        );
        world.check(&id, vary.as_deref(), path, &r);
        let private = path.starts_with("/customer/") || path.starts_with("/checkout/");
        if private {
            assert_ne!(
                r.cache, "HIT",
                "visitor {} {path}: personalised page from the cache",
                id.index
            );
            tally.private_pages += 1;
            // My own private data is there when I am logged in.
            if let (Some(name), "/customer/account/") = (&id.name, path) {
                assert!(
                    r.body.contains(name.as_str()),
                    "visitor {}: account page without my name",
                    id.index
                );
            }
            if path == "/checkout/cart/" {
                assert!(
                    r.body.contains(&format!("data-sku=\"{}\"", id.sku)),
                    "visitor {}: my cart lost my product",
                    id.index
                );
            }
        }
        let sets_session = r.set_cookies.iter().any(|c| c.starts_with("PHPSESSID="));
        if sets_session {
            assert_ne!(
                r.cache, "HIT",
                "visitor {} {path}: session cookie from the cache",
                id.index
            );
        }
        tally.hits += usize::from(r.cache == "HIT");
        tally.requests += 1;
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_of_one_visitor_ever_reaches_another() {
    let env = php_env();
    let mut s = settings(
        magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    let mut c = magestack_edge::CacheSettings::magento_defaults();
    c.health_check.interval = Duration::from_secs(3600);
    s.cache = Some(c);
    let edge = start(s, limits()).await;
    let run = std::process::id() % 10_000;
    let ids: Vec<Identity> = (0..USERS)
        .map(|i| {
            let kind = match i % 4 {
                0 => Kind::Anonymous,
                1 => Kind::General,
                2 => Kind::Wholesale,
                _ => Kind::Currency(if i % 8 == 3 { "EUR" } else { "GBP" }),
            };
            // Names the storefront derives from the e-mail's local part.
            let (name, email) = match kind {
                Kind::General => (
                    Some(format!("Leak{i:02}x{run}")),
                    Some(format!("leak{i:02}x{run}@example.com")),
                ),
                Kind::Wholesale => (
                    Some(format!("Leak{i:02}x{run} Wholesale")),
                    Some(format!("leak{i:02}x{run}+wholesale@example.com")),
                ),
                _ => (None, None),
            };
            Identity {
                index: i,
                kind,
                name,
                email,
                sku: format!("WS{:02}", i + 1),
            }
        })
        .collect();
    let world = Arc::new(World {
        ids: ids.clone(),
        sessions: Mutex::new(HashMap::new()),
    });
    let started = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| tokio::spawn(visit(world.clone(), edge.addr, id)))
        .collect();
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.expect("a visitor saw a leak (see the panic above)");
        total.requests += t.requests;
        total.hits += t.hits;
        total.private_pages += t.private_pages;
    }
    let kinds: HashSet<_> = world.ids.iter().map(|i| format!("{:?}", i.kind)).collect();
    println!(
        "leak test: {USERS} visitors ({kinds:?}) x {REQUESTS} requests = {} in {:?}: {} cache hits, {} personalised pages, {} sessions, 0 leaks",
        total.requests,
        started.elapsed(),
        total.hits,
        total.private_pages,
        world.sessions.lock().unwrap().len()
    );
    assert_eq!(total.requests, USERS * REQUESTS);
    assert!(
        total.hits > USERS * REQUESTS / 4,
        "the cache was exercised: {} hits",
        total.hits
    );
    edge.shutdown().await;
}
