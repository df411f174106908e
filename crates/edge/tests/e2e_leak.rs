//! Leak-proof caching, end to end (issue 5): many distinct visitors
//! (anonymous, logged in to two customer groups, other display currencies)
//! browse the real PHP storefront through the edge with the full-page cache
//! on, concurrently, over kept-alive connections, and no response body or
//! `Set-Cookie` of one ever reaches another.
//!
//! How a leak is seen: every personalised response the storefront renders
//! names the session it was rendered for (`visitor=<tag>`, a digest of the
//! session id) and carries a nonce of its own; logged-in pages also show the
//! customer's name, and carts the visitor's own product. Public pages carry
//! a render nonce and the context (`X-Magento-Vary`, currency) they were
//! rendered for. The checker knows every visitor's sessions, names and
//! products, so a marker, name, cart row, session id or context of anyone
//! else in a response fails the test with the request that showed it.
//!
//! The mix: cacheable home, category and product pages (shared by the
//! visitors of one context), personalised pages that the VCL passes
//! (`/customer/account/`, `/checkout/cart/`, `/customer/section/load/`),
//! Magento's private block renderer (`/page_cache/block/render/`, a looked-up
//! URL answered with `Cache-Control: private`, and with a session
//! `Set-Cookie` for a new visitor), logouts, logins and new browser sessions
//! (fresh `PHPSESSID`s mid-run), and requests whose client hangs up before
//! the answer (a connection returned to the PHP-FPM pool with part of an
//! answer still unread would hand it to the next visitor).
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Visitors, and page views each (the acceptance asks for at least 10 × 1,000).
const USERS: usize = 12;
const PAGE_VIEWS: usize = 1_000;
/// Every this many page views a visitor logs out (or, anonymous, closes the
/// browser) and starts again: new session, new login.
const RESTART_EVERY: usize = 200;
/// Every this many page views a visitor sends one request and hangs up.
const ABANDON_EVERY: usize = 61;

/// Magento's private block renderer, as its JS calls it: the same URL for
/// every visitor, answered per session with `Cache-Control: private`.
const RENDER: &str = "/page_cache/block/render/?blocks=%5B%22header.customer.welcome%22%2C%22minicart%22%5D&handles=%5B%22default%22%2C%22catalog_category_view%22%5D";
const SECTIONS: &str = "/customer/section/load/?sections=cart%2Ccustomer";

/// The pages a visitor cycles through (the renderer twice: it is the one
/// looked-up URL that must never be stored).
const PAGES: [&str; 14] = [
    "/",
    "/women.html",
    "/women/tops.html",
    "/women/bottoms.html",
    "/sale.html",
    "/gear.html",
    "/product/WS03.html",
    "/product/WS10.html",
    "/customer/account/",
    "/checkout/cart/",
    SECTIONS,
    RENDER,
    "/product/WS03.html",
    RENDER,
];

/// A visitor's HTTP context: one `X-Magento-Vary` value per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Anonymous,
    General,
    Wholesale,
    /// Anonymous, display currency switched.
    Currency(&'static str),
    /// Logged in (General) and display currency switched.
    GeneralIn(&'static str),
}

impl Kind {
    fn of(i: usize) -> Kind {
        match i % 6 {
            0 => Kind::Anonymous,
            1 => Kind::General,
            2 => Kind::Wholesale,
            3 => Kind::Currency("EUR"),
            4 => Kind::Currency("GBP"),
            _ => Kind::GeneralIn("EUR"),
        }
    }
    fn logged_in(self) -> bool {
        matches!(self, Kind::General | Kind::Wholesale | Kind::GeneralIn(_))
    }
    fn currency(self) -> &'static str {
        match self {
            Kind::Currency(c) | Kind::GeneralIn(c) => c,
            _ => "USD",
        }
    }
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

/// The storefront's session tag: `md5("sf-visitor:" . id)`, 12 hex digits.
fn visitor_tag(sid: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(format!("sf-visitor:{sid}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..12]
        .to_owned()
}

/// The value after `key` up to the first byte that is not a hex digit or `-`.
fn field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let start = body.find(key)? + key.len();
    let rest = &body[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `(visitor tag, nonce)` of a personalised response (HTML comment or JSON).
fn private_marker(body: &str) -> Option<(&str, &str)> {
    if let Some(i) = body.find("<!-- sf:private ") {
        let m = &body[i..];
        return Some((field(m, "visitor=")?, field(m, "nonce=")?));
    }
    if let Some(i) = body.find("\"sf_debug\":") {
        let m = &body[i..];
        return Some((field(m, "\"visitor\":\"")?, field(m, "\"nonce\":\"")?));
    }
    None
}

/// The `PHPSESSID` a `Set-Cookie` line sets (not deletions).
fn set_session(set_cookie: &str) -> Option<&str> {
    let v = set_cookie.strip_prefix("PHPSESSID=")?;
    let sid = v.split(';').next().unwrap_or("");
    (!sid.is_empty() && sid != "deleted").then_some(sid)
}

struct Visitor {
    id: Identity,
    addr: SocketAddr,
    ip: String,
    jar: BTreeMap<String, String>,
    conn: Option<SendRequest<Full<Bytes>>>,
    /// Set-up done: the context must not change until the next restart.
    settled: bool,
}

struct Resp {
    status: StatusCode,
    set_cookies: Vec<String>,
    cache: String,
    cache_control: String,
    body: String,
}

/// What the visitor sent with a request (to judge the answer by).
struct Sent {
    path: String,
    sid: Option<String>,
    vary: Option<String>,
}

impl Visitor {
    fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn sent(&self, path: &str) -> Sent {
        Sent {
            path: path.to_owned(),
            sid: self.jar.get("PHPSESSID").cloned(),
            vary: self.jar.get("X-Magento-Vary").cloned(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, form: Option<&str>) -> (Sent, Resp) {
        let sent = self.sent(path);
        for attempt in 0..3 {
            if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
                let stream = TcpStream::connect(self.addr).await.expect("connect");
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
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
            if path.starts_with("/page_cache/block/render/") {
                b = b.header("x-requested-with", "XMLHttpRequest");
            }
            if form.is_some() {
                b = b.header("content-type", "application/x-www-form-urlencoded");
            }
            let req = b
                .body(Full::new(Bytes::from(form.unwrap_or("").to_owned())))
                .expect("request");
            let sender = self.conn.as_mut().expect("connected");
            if sender.ready().await.is_err() {
                self.conn = None;
                continue;
            }
            match sender.send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = body.collect().await.expect("body").to_bytes();
                    let set_cookies: Vec<String> = parts
                        .headers
                        .get_all("set-cookie")
                        .iter()
                        .map(|v| v.to_str().expect("ascii Set-Cookie").to_owned())
                        .collect();
                    for c in &set_cookies {
                        self.absorb(c);
                    }
                    let h = |n: &str| {
                        parts
                            .headers
                            .get(n)
                            .map(|v| v.to_str().expect("ascii header").to_owned())
                            .unwrap_or_default()
                    };
                    let resp = Resp {
                        status: parts.status,
                        cache: h("x-magento-cache-debug"),
                        cache_control: h("cache-control"),
                        set_cookies,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    return (sent, resp);
                }
                // A kept-alive connection the edge closed meanwhile: reconnect.
                Err(_) if attempt < 2 => self.conn = None,
                Err(e) => panic!("visitor {}: {method} {path}: {e}", self.id.index),
            }
        }
        panic!("visitor {}: {method} {path}: no connection", self.id.index)
    }

    /// Sends one request on a connection of its own and hangs up before the
    /// answer is complete (right away, or after its first bytes).
    async fn abandon(&self, path: &str, read_first: bool) {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: {}\r\nAccept-Encoding: identity\r\nX-Requested-With: XMLHttpRequest\r\n",
            self.ip
        );
        if !self.jar.is_empty() {
            req.push_str(&format!("Cookie: {}\r\n", self.cookie_header()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        if read_first {
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        }
        drop(s);
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
    /// Session tag → visitor.
    tags: Mutex<HashMap<String, usize>>,
    /// Nonces of personalised responses seen (each must be new).
    private_nonces: Mutex<HashSet<String>>,
    /// Public render nonce → what is known of its deliveries.
    renders: Mutex<HashMap<String, Render>>,
    /// Context → the `X-Magento-Vary` value its visitors settled on.
    varies: Mutex<HashMap<Kind, String>>,
}

/// One public page as PHP rendered it, and who received it.
struct Render {
    /// The context (`X-Magento-Vary` value or `-`) it was rendered for.
    vary: String,
    /// Visitors it was delivered to.
    seen: HashSet<usize>,
    /// Delivered once not from the cache (to the request that fetched it).
    fetched: bool,
}

#[derive(Default)]
struct Tally {
    requests: usize,
    hits: usize,
    /// Personalised responses checked (passed pages, section data, renderer).
    personalised: usize,
    /// `Cache-Control: private` answers to a looked-up URL.
    private: usize,
    /// Responses that set a new session id.
    new_sessions: usize,
    restarts: usize,
    abandoned: usize,
}

impl World {
    /// Panics on any sign of another visitor's data in `r`.
    fn check(&self, me: &Visitor, sent: &Sent, r: &Resp, t: &mut Tally) {
        let id = &me.id;
        let ctx = format!(
            "visitor {} ({:?}) {} [{} {}]",
            id.index, id.kind, sent.path, r.status, r.cache
        );
        t.requests += 1;
        // Magento's contract: a public page is one HTML per context (the
        // X-Magento-Vary value), shared by every visitor in that context;
        // the storefront writes the name of the visitor it was rendered for
        // into the welcome line on purpose (examples/storefront/README.md).
        // That line may name someone in exactly my context, nothing else may.
        let public = r.body.contains("<!-- sf:public");
        let mut body = std::borrow::Cow::Borrowed(r.body.as_str());
        if public && sent.vary.is_some() {
            for other in self
                .ids
                .iter()
                .filter(|o| o.kind == id.kind && o.index != id.index)
            {
                if let Some(name) = &other.name {
                    body = std::borrow::Cow::Owned(
                        body.replace(&format!("Welcome, {name}!"), "Welcome, <same context>!"),
                    );
                }
            }
        }
        for other in self.ids.iter().filter(|o| o.index != id.index) {
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
        // Session ids: never handed to two visitors, never someone else's.
        let mut new_sid = None;
        for c in &r.set_cookies {
            if let Some(sid) = set_session(c) {
                let mut s = self.sessions.lock().unwrap();
                let owner = *s.entry(sid.to_owned()).or_insert(id.index);
                assert_eq!(owner, id.index, "{ctx}: session {sid} of visitor {owner}");
                self.tags.lock().unwrap().insert(visitor_tag(sid), id.index);
                t.new_sessions += 1;
                new_sid = Some(sid.to_owned());
            }
            // Once settled, my context cookie never changes.
            if let (true, Some(v)) = (me.settled, c.strip_prefix("X-Magento-Vary=")) {
                let v = v.split(';').next().unwrap_or("");
                assert_eq!(
                    Some(v),
                    sent.vary.as_deref(),
                    "{ctx}: my context cookie changed: {c}"
                );
            }
        }
        let hit = r.cache == "HIT";
        // Personalised answers: rendered by PHP for this request (a new
        // nonce) and for my session (or for none, when I had none).
        if let Some((tag, nonce)) = private_marker(&r.body) {
            t.personalised += 1;
            assert!(!hit, "{ctx}: personalised content from the cache");
            assert!(
                self.private_nonces.lock().unwrap().insert(nonce.to_owned()),
                "{ctx}: personalised response {nonce} delivered twice"
            );
            let mine: Vec<String> = [sent.sid.as_deref(), new_sid.as_deref()]
                .into_iter()
                .flatten()
                .map(visitor_tag)
                .collect();
            let sessionless = mine.is_empty() && tag == "-";
            if !sessionless && !mine.iter().any(|m| m == tag) {
                let owner = self.tags.lock().unwrap().get(tag).copied();
                panic!(
                    "{ctx}: rendered for session tag {tag} (visitor {owner:?}), mine are {mine:?}: {}",
                    &r.body[..r.body.len().min(300)]
                );
            }
        }
        if hit {
            t.hits += 1;
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
        // Carts (page rows, mini-cart, section data): only my own product, ever.
        for (i, _) in r
            .body
            .match_indices("data-sku=\\\"")
            .chain(r.body.match_indices("data-sku=\""))
        {
            let at = r.body[i..].find("WS").map(|o| i + o).expect("sku");
            let sku = &r.body[at..at + 4];
            assert_eq!(sku, id.sku, "{ctx}: cart row {sku} is not mine");
        }
        if let Some(i) = r.body.find("\"items\":[") {
            let items = &r.body[i + 9..];
            let items = &items[..items.find(']').expect("items list")];
            for sku in items.split(',').filter(|s| !s.is_empty()) {
                assert_eq!(
                    sku.trim_matches('"'),
                    id.sku,
                    "{ctx}: cart item {sku} is not mine"
                );
            }
        }
        // Public pages: the variant of my own context, shared with my context only.
        if let Some(i) = r.body.find("<!-- sf:public currency=") {
            let marker = &r.body[i..r.body[i..].find("-->").map_or(r.body.len(), |e| i + e)];
            let want_vary = sent.vary.as_deref().unwrap_or("-");
            assert!(
                marker.contains(&format!("vary={want_vary} ")),
                "{ctx}: {marker} for my vary {want_vary}"
            );
            let currency = if sent.vary.is_none() {
                Some("USD")
            } else {
                me.settled.then(|| id.kind.currency())
            };
            if let Some(currency) = currency {
                assert!(
                    marker.contains(&format!("currency={currency} ")),
                    "{ctx}: {marker}, my currency is {currency}"
                );
            }
            let render = field(marker, "render=").expect("render nonce");
            let mut renders = self.renders.lock().unwrap();
            let seen = renders.entry(render.to_owned()).or_insert_with(|| Render {
                vary: want_vary.to_owned(),
                seen: HashSet::new(),
                fetched: false,
            });
            assert_eq!(
                seen.vary, want_vary,
                "{ctx}: page rendered for context {} delivered to context {want_vary}",
                seen.vary
            );
            // Only the request that fetched it gets it as MISS (its hits may
            // be checked before it: they race with its delivery).
            if !hit {
                assert!(
                    !seen.fetched,
                    "{ctx}: {marker} delivered twice without being a cache hit (seen by {:?})",
                    seen.seen
                );
                seen.fetched = true;
            }
            seen.seen.insert(id.index);
        }
    }
}

/// Starts a browsing session: log in, switch currency, fill the cart.
async fn settle(world: &World, v: &mut Visitor, t: &mut Tally) {
    v.settled = false;
    let id = v.id.clone();
    if let Some(email) = &id.email {
        let (s, r) = v.send("GET", "/customer/account/login/", None).await;
        world.check(v, &s, &r, t);
        assert!(
            r.set_cookies.iter().any(|c| set_session(c).is_some()),
            "visitor {}: the login form starts a session",
            id.index
        );
        let form = format!(
            "email={}&password=secret",
            email.replace('+', "%2B").replace('@', "%40")
        );
        let (s, r) = v.send("POST", "/customer/account/login", Some(&form)).await;
        world.check(v, &s, &r, t);
        assert_eq!(r.status, 302, "login of visitor {}: {}", id.index, r.body);
        assert!(
            v.jar.contains_key("X-Magento-Vary"),
            "visitor {} has a vary cookie",
            id.index
        );
    } else if id.kind == Kind::Anonymous {
        // A new anonymous visitor's first private block call starts the
        // session: a looked-up URL with Cache-Control: private and Set-Cookie.
        let (s, r) = v.send("GET", RENDER, None).await;
        world.check(v, &s, &r, t);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.set_cookies.iter().any(|c| set_session(c).is_some()),
            "visitor {}: the renderer starts a session: {:?} [{}]",
            id.index,
            r.set_cookies,
            r.cache
        );
    }
    if id.kind.currency() != "USD" {
        let c = id.kind.currency();
        let (s, r) = v
            .send(
                "GET",
                &format!("/directory/currency/switch/?currency={c}"),
                None,
            )
            .await;
        world.check(v, &s, &r, t);
        assert!(r.status.is_redirection(), "{}", r.body);
    }
    let form = format!("sku={}&qty=1", id.sku);
    let (s, r) = v.send("POST", "/checkout/cart/add/", Some(&form)).await;
    world.check(v, &s, &r, t);
    assert!(
        r.status.is_redirection(),
        "cart add: {} {}",
        r.status,
        r.body
    );
    assert!(v.jar.contains_key("PHPSESSID"), "visitor {}", id.index);
    // One vary value per context, the same for all its visitors.
    let vary = v.jar.get("X-Magento-Vary").cloned();
    if id.kind == Kind::Anonymous {
        assert_eq!(vary, None, "visitor {}", id.index);
    } else {
        let vary = vary.expect("a context cookie");
        let mut varies = world.varies.lock().unwrap();
        let want = varies.entry(id.kind).or_insert_with(|| vary.clone());
        assert_eq!(*want, vary, "visitor {}: context cookie", id.index);
    }
    v.settled = true;
}

/// Ends a browsing session: log out, or close the browser (forget cookies);
/// then a cookie-less first page view, as a new visitor makes.
async fn restart(world: &World, v: &mut Visitor, t: &mut Tally) {
    v.settled = false;
    if v.id.kind.logged_in() {
        let (s, r) = v.send("GET", "/customer/account/logout", None).await;
        world.check(v, &s, &r, t);
        assert!(r.status.is_redirection(), "logout: {}", r.status);
    }
    v.jar.clear();
    v.conn = None;
    let (s, r) = v.send("GET", "/women.html", None).await;
    world.check(v, &s, &r, t);
    t.restarts += 1;
}

async fn visit(world: Arc<World>, addr: SocketAddr, id: Identity) -> Tally {
    let mut v = Visitor {
        ip: format!("198.51.100.{}", 10 + id.index),
        id: id.clone(),
        addr,
        jar: BTreeMap::new(),
        conn: None,
        settled: false,
    };
    let mut t = Tally::default();
    settle(&world, &mut v, &mut t).await;
    for n in 0..PAGE_VIEWS {
        if n > 0 && n % RESTART_EVERY == 0 {
            restart(&world, &mut v, &mut t).await;
            settle(&world, &mut v, &mut t).await;
        }
        if n % ABANDON_EVERY == ABANDON_EVERY / 2 {
            let path = [RENDER, "/checkout/cart/", SECTIONS][n % 3];
            v.abandon(path, n % 2 == 0).await;
            t.abandoned += 1;
        }
        let path = PAGES[(n * 5 + id.index) % PAGES.len()];
        let (s, r) = v.send("GET", path, None).await;
        assert!(
            r.status.is_success() || r.status.is_redirection(),
            "visitor {} {path}: {}",
            id.index,
            r.status
        );
        world.check(&v, &s, &r, &mut t);
        // The VCL passes these: PHP answers every one.
        if path.starts_with("/customer/") || path.starts_with("/checkout/") {
            assert_eq!(
                r.cache, "UNCACHEABLE",
                "visitor {} {path}: a personalised page was looked up",
                id.index
            );
            if r.status == 200 {
                assert!(
                    private_marker(&r.body).is_some(),
                    "visitor {} {path}: no marker",
                    id.index
                );
            }
            // My own private data is there.
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
        // Looked up, answered private: fetched for each request, never stored.
        if path == RENDER {
            t.private += 1;
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.cache_control.contains("private"), "{}", r.cache_control);
            assert!(
                r.cache == "MISS" || r.cache == "UNCACHEABLE",
                "visitor {} {path}: private answer was {}",
                id.index,
                r.cache
            );
            assert!(
                private_marker(&r.body).is_some(),
                "visitor {}: renderer without marker",
                id.index
            );
            assert!(
                r.body.contains(&format!("data-sku=\\\"{}\\\"", id.sku)),
                "visitor {}: my mini-cart lost my product: {}",
                id.index,
                r.body
            );
            if let Some(name) = &id.name {
                assert!(r.body.contains(name.as_str()), "visitor {}", id.index);
            }
        }
        if r.set_cookies.iter().any(|c| set_session(c).is_some()) {
            assert_ne!(
                r.cache, "HIT",
                "visitor {} {path}: session cookie from the cache",
                id.index
            );
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_of_one_visitor_ever_reaches_another() {
    let env = php_env();
    let mut s = settings(
        magestack_edge::UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    // Visitors log in again and again from one address: the login rate
    // limit is not what this test is about.
    s.rate_limit = None;
    let mut c = magestack_edge::CacheSettings::magento_defaults();
    c.health_check.interval = Duration::from_secs(3600);
    s.cache = Some(c);
    let edge = start(s, limits()).await;
    let run = std::process::id() % 10_000;
    let ids: Vec<Identity> = (0..USERS)
        .map(|i| {
            let kind = Kind::of(i);
            // Names the storefront derives from the e-mail's local part.
            let (name, email) = match kind {
                Kind::Wholesale => (
                    Some(format!("Leak{i:02}x{run} Wholesale")),
                    Some(format!("leak{i:02}x{run}+wholesale@example.com")),
                ),
                k if k.logged_in() => (
                    Some(format!("Leak{i:02}x{run}")),
                    Some(format!("leak{i:02}x{run}@example.com")),
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
        tags: Mutex::new(HashMap::new()),
        private_nonces: Mutex::new(HashSet::new()),
        renders: Mutex::new(HashMap::new()),
        varies: Mutex::new(HashMap::new()),
    });
    let started = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| tokio::spawn(visit(world.clone(), edge.addr, id)))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let t = task
            .await
            .expect("a visitor saw a leak (see the panic above)");
        total.requests += t.requests;
        total.hits += t.hits;
        total.personalised += t.personalised;
        total.private += t.private;
        total.new_sessions += t.new_sessions;
        total.restarts += t.restarts;
        total.abandoned += t.abandoned;
    }
    let elapsed = started.elapsed();
    edge.shutdown().await;

    // Every context has its own cookie value.
    let varies = world.varies.lock().unwrap();
    let distinct: HashSet<_> = varies.values().collect();
    assert_eq!(
        distinct.len(),
        varies.len(),
        "contexts share a vary: {varies:?}"
    );
    // Public pages were shared: in every context, some render reached two of
    // its visitors (and, checked above, never a visitor of another context).
    let renders = world.renders.lock().unwrap();
    let ctx_vary = |k: Kind| match k {
        Kind::Anonymous => "-".to_owned(),
        k => varies[&k].clone(),
    };
    for k in (0..USERS).map(Kind::of).collect::<HashSet<_>>() {
        let v = ctx_vary(k);
        assert!(
            renders.values().any(|r| r.vary == v && r.seen.len() >= 2),
            "{k:?}: no public page was shared between its visitors"
        );
    }
    println!(
        "leak test: {USERS} visitors ({} contexts) x {PAGE_VIEWS} page views = {} requests in {elapsed:?}: \
         {} cache hits from {} public renders, {} personalised responses (each a fresh render for its own session), \
         {} private-renderer answers, {} new sessions ({} distinct), {} restarts, {} abandoned requests, 0 leaks",
        varies.len() + 1,
        total.requests,
        total.hits,
        renders.len(),
        total.personalised,
        total.private,
        total.new_sessions,
        world.sessions.lock().unwrap().len(),
        total.restarts,
        total.abandoned,
    );
    assert!(total.requests >= USERS * PAGE_VIEWS);
    assert!(
        total.hits > USERS * PAGE_VIEWS / 4,
        "the cache was exercised: {} hits",
        total.hits
    );
}
