//! Which requests a rate limit applies to.
//!
//! The defaults cover Magento's credential endpoints, the targets of
//! credential stuffing and brute force (AWS case study, "Security"): customer
//! login, account creation and password reset, the admin login form, and the
//! REST token endpoints. Each allows 5 POSTs a minute per client IP, with no
//! configuration at all.

use std::time::Duration;

use http::Method;
use regex::Regex;

use crate::limiter::Quota;

/// How a rule matches the path (no query).
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
    /// The limit per client IP.
    pub quota: Quota,
    /// Only requests whose body contains this (GraphQL mutations share one
    /// URL); the caller passes the body of requests [`RateRules::needs_body`]
    /// names.
    pub body_contains: Option<String>,
}

/// Why a rule could not be built.
#[derive(Debug, thiserror::Error)]
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

/// The rules, checked in order; the first match decides.
#[derive(Debug, Clone, Default)]
pub struct RateRules {
    rules: Vec<RateRule>,
}

const PER_MINUTE_5: fn() -> Quota = || Quota::per(5, Duration::from_secs(60));

/// Magento's credential endpoints, 5 POSTs a minute per IP each.
/// `admin_front_name` is `backend/frontName` (`admin` by default).
pub fn default_rules(admin_front_name: &str) -> Vec<RateRule> {
    let post = vec![Method::POST];
    let prefix = |name: &str, p: &str| RateRule {
        name: name.to_owned(),
        methods: post.clone(),
        path: PathMatch::Prefix(p.to_owned()),
        quota: PER_MINUTE_5(),
        body_contains: None,
    };
    let mut rules = vec![
        prefix("customer_login", "/customer/account/loginPost"),
        prefix("customer_create", "/customer/account/createpost"),
        prefix(
            "customer_forgot_password",
            "/customer/account/forgotpasswordpost",
        ),
    ];
    let front = regex::escape(admin_front_name.trim_matches('/'));
    // The admin login form posts to the front name's root or its index action.
    if let Ok(r) = Regex::new(&format!(
        "^/(?:index\\.php/)?{front}(?:/admin(?:/index(?:/index)?)?)?/?$"
    )) {
        rules.push(RateRule {
            name: "admin_login".into(),
            methods: post.clone(),
            path: PathMatch::Regex(r),
            quota: PER_MINUTE_5(),
            body_contains: None,
        });
    }
    if let Ok(r) =
        Regex::new("^/(?:index\\.php/)?rest/(?:[^/]+/)?V1/integration/(?:customer|admin)/token")
    {
        rules.push(RateRule {
            name: "rest_token".into(),
            methods: post.clone(),
            path: PathMatch::Regex(r),
            quota: PER_MINUTE_5(),
            body_contains: None,
        });
    }
    // Card testing: bots post stolen card numbers through the checkout's
    // payment step, guest or logged in, REST or GraphQL, and ask payment
    // gateways for client tokens; a shopper needs one or two tries.
    if let Ok(r) = Regex::new(
        "^/(?:index\\.php/)?rest/(?:[^/]+/)?V1/(?:guest-carts/[^/]+|carts/mine)/(?:payment-information|set-payment-information)",
    ) {
        rules.push(RateRule {
            name: "payment_information".into(),
            methods: post.clone(),
            path: PathMatch::Regex(r),
            quota: PER_MINUTE_5(),
            body_contains: None,
        });
    }
    // GraphQL's customer login and payment mutations: POSTs to /graphql,
    // told apart by the mutation name in the body.
    if let Ok(graphql) = Regex::new("^/graphql/?$") {
        for (name, mutation) in [
            ("graphql_customer_token", "generateCustomerToken"),
            ("graphql_place_order", "placeOrder"),
            ("graphql_braintree_token", "createBraintreeClientToken"),
            ("graphql_paypal_token", "createPaypalExpressToken"),
        ] {
            rules.push(RateRule {
                name: name.into(),
                methods: post.clone(),
                path: PathMatch::Regex(graphql.clone()),
                quota: PER_MINUTE_5(),
                body_contains: Some(mutation.into()),
            });
        }
    }
    rules
}

impl RateRules {
    /// Rules checked in order.
    pub fn new(rules: Vec<RateRule>) -> RateRules {
        RateRules { rules }
    }

    /// The index and rule that applies to a request, if any. `body` is the
    /// request body when the caller read it (see [`RateRules::needs_body`]);
    /// rules on bodies never match without it.
    pub fn matching(
        &self,
        method: &Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Option<(u16, &RateRule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| {
                (r.methods.is_empty() || r.methods.contains(method))
                    && r.path.matches(path)
                    && match (&r.body_contains, body) {
                        (None, _) => true,
                        (Some(needle), Some(b)) => contains(b, needle.as_bytes()),
                        (Some(_), None) => false,
                    }
            })
            .map(|(i, r)| (u16::try_from(i).unwrap_or(u16::MAX), r))
    }

    /// True when a rule looks into the body of this request: the caller
    /// reads it (bounded) before asking [`RateRules::matching`].
    pub fn needs_body(&self, method: &Method, path: &str) -> bool {
        self.rules.iter().any(|r| {
            r.body_contains.is_some()
                && (r.methods.is_empty() || r.methods.contains(method))
                && r.path.matches(path)
        })
    }

    /// All rules, in order.
    pub fn rules(&self) -> &[RateRule] {
        &self.rules
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_magentos_credential_endpoints() {
        let r = RateRules::new(default_rules("admin"));
        let name = |m: Method, p: &str| r.matching(&m, p, None).map(|(_, r)| r.name.clone());
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
        assert!(r.matching(&Method::POST, "/backoffice_7x/", None).is_some());
        assert!(r.matching(&Method::POST, "/admin/", None).is_none());
        // GraphQL: only the token mutation, seen in the body.
        let body = br#"{"query":"mutation { generateCustomerToken(email: \"a@b.c\", password: \"x\") { token } }"}"#;
        assert!(r.needs_body(&Method::POST, "/graphql"));
        assert!(!r.needs_body(&Method::GET, "/graphql"));
        assert_eq!(
            r.matching(&Method::POST, "/graphql", Some(body))
                .map(|(_, r)| r.name.as_str()),
            Some("graphql_customer_token")
        );
        assert!(r
            .matching(
                &Method::POST,
                "/graphql",
                Some(br#"{"query":"{ products { total_count } }"}"#)
            )
            .is_none());
        assert!(r.matching(&Method::POST, "/graphql", None).is_none());
    }

    #[test]
    fn defaults_cover_payment_endpoints_against_card_testing() {
        let r = RateRules::new(default_rules("admin"));
        let name = |p: &str, body: Option<&[u8]>| {
            r.matching(&Method::POST, p, body)
                .map(|(_, r)| r.name.clone())
        };
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
            ("placeOrder(input: {cart_id: \"x\"})", "graphql_place_order"),
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
}
