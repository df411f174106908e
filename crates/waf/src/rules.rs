//! Which requests a rate limit applies to.
//!
//! The defaults cover Magento's credential endpoints, the targets of
//! credential stuffing and brute force (AWS case study, "Security"): customer
//! login, account creation and password reset, the admin login form, and the
//! REST token endpoints. Each allows 5 POSTs a minute per client IP, with no
//! configuration at all.

use std::borrow::Cow;
use std::time::Duration;

use http::Method;
use regex::Regex;

use crate::graphql::{self, Mutations};
use crate::limiter::Quota;

/// How a rule matches the path (no query), as Magento routes it (see
/// [`magento_path`]).
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Case-insensitive prefix (Magento's router ignores case).
    Prefix(String),
    /// Regex on the path.
    Regex(Regex),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => path
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// One rate-limit rule.
#[derive(Debug, Clone)]
pub struct RateRule {
    /// Name for logs and metrics (`customer_login`).
    pub name: String,
    /// Methods it applies to; empty = all.
    pub methods: Vec<Method>,
    /// Paths it applies to.
    pub path: PathMatch,
    /// The limit per client.
    pub quota: Quota,
    /// Only GraphQL requests running this top-level mutation field
    /// (GraphQL mutations share one URL); each time the request selects it
    /// (aliases) counts as one request. The caller passes the body of
    /// requests [`RateRules::needs_body`] names.
    pub graphql_mutation: Option<String>,
}

/// Why a rule could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The regex does not compile.
    #[error("rate limit {name}: invalid regex: {reason}")]
    Regex {
        /// Rule name.
        name: String,
        /// The regex crate's message.
        reason: String,
    },
}

/// The rules, checked in order; the first match decides, except that a
/// GraphQL request counts against every mutation rule it runs (one request
/// can run several mutations).
#[derive(Debug, Clone, Default)]
pub struct RateRules {
    rules: Vec<RateRule>,
}

/// A rule a request counts against.
#[derive(Debug, Clone, Copy)]
pub struct RuleHit<'r> {
    /// The rule's index (the limiter's key).
    pub index: u16,
    /// The rule.
    pub rule: &'r RateRule,
    /// How many requests this one counts as (a GraphQL mutation selected
    /// under several aliases runs several times).
    pub cost: u32,
}

const PER_MINUTE_5: fn() -> Quota = || Quota::per(5, Duration::from_secs(60));

/// An optional store code before Magento's own path (`/en/customer/...`
/// when `web/url/use_store` is on): Magento's store code syntax. A segment
/// that is not a store code makes Magento answer 404, so counting it too
/// costs a shopper nothing.
const STORE: &str = "(?:[a-z][a-z0-9_]*/)?";

/// Magento's credential endpoints, 5 POSTs a minute per client each.
/// `admin_front_name` is `backend/frontName` (`admin` by default).
///
/// Paths are matched after [`magento_path`], case-insensitively.
pub fn default_rules(admin_front_name: &str) -> Vec<RateRule> {
    let post = vec![Method::POST];
    let mut rules = Vec::new();
    let mut push = |name: &str, re: &str, mutation: Option<&str>| {
        // The patterns are ours (the front name is escaped); one that did
        // not compile would be a bug caught by the tests below.
        if let Ok(r) = Regex::new(&format!("(?i){re}")) {
            rules.push(RateRule {
                name: name.to_owned(),
                methods: post.clone(),
                path: PathMatch::Regex(r),
                quota: PER_MINUTE_5(),
                graphql_mutation: mutation.map(str::to_owned),
            });
        }
    };
    // Magento's action names ignore case (`loginpost`, `LoginPost`), and
    // what follows the action are parameters (`/referer/abc/`).
    for (name, action) in [
        ("customer_login", "loginPost"),
        ("customer_create", "createpost"),
        ("customer_forgot_password", "forgotpasswordpost"),
    ] {
        push(
            name,
            &format!("^/{STORE}customer/account/{action}(?:/|$)"),
            None,
        );
    }
    let front = regex::escape(admin_front_name.trim_matches('/'));
    // The admin login form posts to the front name's root or its index action.
    push(
        "admin_login",
        &format!("^/{front}(?:/admin(?:/index(?:/index)?)?)?/?$"),
        None,
    );
    push(
        "rest_token",
        &format!("^/{STORE}rest/(?:[^/]+/)?V1/integration/(?:customer|admin)/token"),
        None,
    );
    // Card testing: bots post stolen card numbers through the checkout's
    // payment step, guest or logged in, REST or GraphQL, and ask payment
    // gateways for client tokens; a shopper needs one or two tries.
    push(
        "payment_information",
        &format!("^/{STORE}rest/(?:[^/]+/)?V1/(?:guest-carts/[^/]+|carts/mine)/(?:payment-information|set-payment-information)"),
        None,
    );
    // GraphQL's customer login and payment mutations: POSTs to /graphql
    // (Magento refuses mutations over GET), told apart by the mutation in
    // the body. Magento's GraphQL area answers every path under its front
    // name, so `/graphql/x` counts too.
    for (name, mutation) in [
        ("graphql_customer_token", "generateCustomerToken"),
        ("graphql_place_order", "placeOrder"),
        ("graphql_braintree_token", "createBraintreeClientToken"),
        ("graphql_paypal_token", "createPaypalExpressToken"),
    ] {
        push(name, &format!("^/{STORE}graphql(?:/|$)"), Some(mutation));
    }
    rules
}

/// The path as Magento's router sees it, for rate limits: nginx's `$uri`
/// normalisation (percent-decoding, `//` merged, `.`/`..` resolved; what
/// `magestack_routing::normalize` does), then the front controller's
/// `/index.php` prefix removed (`/index.php/customer/account/loginPost`
/// runs the same action as `/customer/account/loginPost`).
///
/// Why: every spelling PHP routes to a limited action must count against
/// its limit, or a client gets a fresh quota per spelling. A path nginx
/// would refuse (a bad escape, `..` above the root) is matched with its
/// slashes merged only; the router answers it 400 anyway.
pub fn magento_path(raw: &str) -> Cow<'_, str> {
    let simple = raw.starts_with('/')
        && !raw.contains("//")
        && !raw.contains('%')
        && !raw.contains("/.")
        && !starts_with_front_controller(raw);
    if simple {
        return Cow::Borrowed(raw);
    }
    let mut path = match magestack_routing::normalize(raw) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => merge_slashes(raw),
    };
    if starts_with_front_controller(&path) {
        path.replace_range(..INDEX_PHP.len(), "");
        if path.is_empty() {
            path.push('/');
        }
    }
    Cow::Owned(path)
}

const INDEX_PHP: &str = "/index.php";

fn starts_with_front_controller(path: &str) -> bool {
    path.get(..INDEX_PHP.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(INDEX_PHP))
        && matches!(path.as_bytes().get(INDEX_PHP.len()), None | Some(b'/'))
}

fn merge_slashes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

impl RateRules {
    /// Rules checked in order.
    pub fn new(rules: Vec<RateRule>) -> RateRules {
        RateRules { rules }
    }

    /// The rules a request counts against: the first rule matching it,
    /// and every GraphQL mutation rule before that whose mutation the
    /// request runs. `path` is the raw request path (normalised here with
    /// [`magento_path`]); `body` the request body when the caller read it
    /// (see [`RateRules::needs_body`]): GraphQL rules never match without
    /// it.
    pub fn matching(&self, method: &Method, path: &str, body: Option<&[u8]>) -> Vec<RuleHit<'_>> {
        let mut hits = Vec::new();
        if !self.rules.iter().any(|r| method_ok(r, method)) {
            return hits;
        }
        let path = magento_path(path);
        let mut mutations: Option<Mutations> = None;
        for (i, r) in self.rules.iter().enumerate() {
            if !method_ok(r, method) || !r.path.matches(&path) {
                continue;
            }
            let index = u16::try_from(i).unwrap_or(u16::MAX);
            match (&r.graphql_mutation, body) {
                (None, _) => {
                    hits.push(RuleHit {
                        index,
                        rule: r,
                        cost: 1,
                    });
                    break;
                }
                (Some(field), Some(b)) => {
                    let m = mutations.get_or_insert_with(|| graphql::mutations_in_json_body(b));
                    if let Some(cost) = m.count(field) {
                        hits.push(RuleHit {
                            index,
                            rule: r,
                            cost,
                        });
                    }
                }
                (Some(_), None) => {}
            }
        }
        hits
    }

    /// True when a rule looks into the body of this request: the caller
    /// reads it (bounded) before asking [`RateRules::matching`].
    pub fn needs_body(&self, method: &Method, path: &str) -> bool {
        if !self
            .rules
            .iter()
            .any(|r| r.graphql_mutation.is_some() && method_ok(r, method))
        {
            return false;
        }
        let path = magento_path(path);
        self.rules
            .iter()
            .any(|r| r.graphql_mutation.is_some() && method_ok(r, method) && r.path.matches(&path))
    }

    /// All rules, in order.
    pub fn rules(&self) -> &[RateRule] {
        &self.rules
    }
}

fn method_ok(r: &RateRule, method: &Method) -> bool {
    r.methods.is_empty() || r.methods.contains(method)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn first(r: &RateRules, m: &Method, p: &str, body: Option<&[u8]>) -> Option<String> {
        r.matching(m, p, body).first().map(|h| h.rule.name.clone())
    }

    #[test]
    fn defaults_cover_magentos_credential_endpoints() {
        let r = RateRules::new(default_rules("admin"));
        let name = |m: Method, p: &str| first(&r, &m, p, None);
        assert_eq!(
            name(Method::POST, "/customer/account/loginPost/").as_deref(),
            Some("customer_login")
        );
        assert_eq!(
            name(Method::POST, "/customer/account/loginpost/referer/abc/").as_deref(),
            Some("customer_login")
        );
        assert_eq!(
            name(Method::POST, "/customer/account/createpost/").as_deref(),
            Some("customer_create")
        );
        assert_eq!(
            name(Method::POST, "/customer/account/forgotpasswordpost/").as_deref(),
            Some("customer_forgot_password")
        );
        assert_eq!(name(Method::POST, "/admin").as_deref(), Some("admin_login"));
        assert_eq!(
            name(Method::POST, "/admin/admin/index/index/").as_deref(),
            Some("admin_login")
        );
        assert_eq!(
            name(Method::POST, "/index.php/admin/").as_deref(),
            Some("admin_login")
        );
        assert_eq!(
            name(Method::POST, "/rest/V1/integration/customer/token").as_deref(),
            Some("rest_token")
        );
        assert_eq!(
            name(Method::POST, "/rest/default/V1/integration/admin/token").as_deref(),
            Some("rest_token")
        );
        // Not credential endpoints, or not POSTs.
        assert_eq!(name(Method::GET, "/customer/account/login/"), None);
        assert_eq!(name(Method::GET, "/customer/account/loginPost/"), None);
        assert_eq!(name(Method::POST, "/admin/catalog/product/save/"), None);
        assert_eq!(name(Method::POST, "/checkout/cart/add/"), None);
        // A custom admin path moves the admin rule with it.
        let r = RateRules::new(default_rules("backoffice_7x"));
        assert!(first(&r, &Method::POST, "/backoffice_7x/", None).is_some());
        assert!(first(&r, &Method::POST, "/admin/", None).is_none());
        // GraphQL: only the token mutation, seen in the body.
        let body = br#"{"query":"mutation { generateCustomerToken(email: \"a@b.c\", password: \"x\") { token } }"}"#;
        assert!(r.needs_body(&Method::POST, "/graphql"));
        assert!(!r.needs_body(&Method::GET, "/graphql"));
        assert_eq!(
            first(&r, &Method::POST, "/graphql", Some(body)).as_deref(),
            Some("graphql_customer_token")
        );
        assert!(first(
            &r,
            &Method::POST,
            "/graphql",
            Some(br#"{"query":"{ products { total_count } }"}"#)
        )
        .is_none());
        assert!(first(&r, &Method::POST, "/graphql", None).is_none());
    }

    #[test]
    fn defaults_cover_payment_endpoints_against_card_testing() {
        let r = RateRules::new(default_rules("admin"));
        let name = |p: &str, body: Option<&[u8]>| first(&r, &Method::POST, p, body);
        for p in [
            "/rest/default/V1/guest-carts/mK9xQzLw2v8TjR4nB6cY1pF0/payment-information",
            "/rest/V1/carts/mine/payment-information",
            "/index.php/rest/en/V1/guest-carts/abc/set-payment-information",
        ] {
            assert_eq!(name(p, None).as_deref(), Some("payment_information"), "{p}");
        }
        assert_eq!(
            name(
                "/rest/default/V1/guest-carts/abc/shipping-information",
                None
            ),
            None
        );
        for (mutation, rule) in [
            (
                "placeOrder(input: {cart_id: \\\"x\\\"})",
                "graphql_place_order",
            ),
            ("createBraintreeClientToken", "graphql_braintree_token"),
            (
                "createPaypalExpressToken(input: {})",
                "graphql_paypal_token",
            ),
        ] {
            let body = format!(r#"{{"query":"mutation {{ {mutation} }}"}}"#);
            assert_eq!(
                name("/graphql", Some(body.as_bytes())).as_deref(),
                Some(rule)
            );
        }
    }

    /// See: issue 13, item 4. Every spelling Magento routes to a limited
    /// action counts against its limit.
    #[test]
    fn r13_path_spellings_count_against_the_same_rule() {
        let r = RateRules::new(default_rules("admin"));
        for (p, rule) in [
            ("/index.php/customer/account/loginPost", "customer_login"),
            ("/index.php/customer/account/loginPost/", "customer_login"),
            ("//customer/account/loginPost", "customer_login"),
            ("/customer//account///loginPost", "customer_login"),
            ("/index.php//customer/account/loginPost", "customer_login"),
            ("/INDEX.PHP/customer/account/loginPost", "customer_login"),
            ("/customer/account/login%50ost", "customer_login"),
            ("/customer/./account/x/../loginPost", "customer_login"),
            ("/Customer/Account/LOGINPOST", "customer_login"),
            ("/en/customer/account/loginPost", "customer_login"),
            ("/index.php/customer/account/createpost", "customer_create"),
            ("//customer/account/createPost/", "customer_create"),
            (
                "/index.php/customer/account/forgotpasswordpost",
                "customer_forgot_password",
            ),
            (
                "//customer/account/forgotPasswordPost",
                "customer_forgot_password",
            ),
            ("//admin/", "admin_login"),
            (
                "/index.php/rest/V1/integration/customer/token",
                "rest_token",
            ),
            ("//rest//V1/integration/admin/token", "rest_token"),
        ] {
            assert_eq!(
                first(&r, &Method::POST, p, None).as_deref(),
                Some(rule),
                "{p}"
            );
        }
        // Other actions of the same controllers are not limited.
        for p in [
            "/customer/account/loginPostfix",
            "/customer/account/login/",
            "/index.php/customer/account/create",
            "/catalog/product/view/id/1",
        ] {
            assert_eq!(first(&r, &Method::POST, p, None), None, "{p}");
        }
        let body = br#"{"query":"mutation { generateCustomer\u0054oken(email: \"a\", password: \"b\") { token } }"}"#;
        for p in [
            "/graphql",
            "/graphql/",
            "/index.php/graphql",
            "//graphql",
            "/GraphQL",
            "/graphql/anything",
            "/default/graphql",
        ] {
            assert!(r.needs_body(&Method::POST, p), "{p}");
            assert_eq!(
                first(&r, &Method::POST, p, Some(body)).as_deref(),
                Some("graphql_customer_token"),
                "{p}"
            );
        }
        assert!(!r.needs_body(&Method::POST, "/graphqlx"));
    }

    #[test]
    fn r13_a_graphql_request_counts_every_mutation_it_runs() {
        let r = RateRules::new(default_rules("admin"));
        let body = br#"{"query":"mutation { a: generateCustomerToken(email: \"a\", password: \"1\") { token } b: generateCustomerToken(email: \"a\", password: \"2\") { token } placeOrder(input: {cart_id: \"x\"}) { order { order_number } } }"}"#;
        let hits: Vec<(String, u32)> = r
            .matching(&Method::POST, "/graphql", Some(body))
            .iter()
            .map(|h| (h.rule.name.clone(), h.cost))
            .collect();
        assert_eq!(
            hits,
            vec![
                ("graphql_customer_token".to_owned(), 2),
                ("graphql_place_order".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn magento_path_is_the_routed_path() {
        assert_eq!(
            magento_path("/customer/account/login"),
            "/customer/account/login"
        );
        assert_eq!(magento_path("/index.php"), "/");
        assert_eq!(magento_path("/index.phpx/a"), "/index.phpx/a");
        assert_eq!(magento_path("//a//b"), "/a/b");
        assert_eq!(magento_path("/a/%2"), "/a/%2");
    }
}
