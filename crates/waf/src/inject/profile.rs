//! The Magento exclusion profile: where legitimate Magento traffic carries
//! what looks like an attack, and which check is skipped there.
//!
//! - **Admin area** (the admin front name, `/admin` by default): bodies are
//!   not checked for XSS. Page Builder rows, CMS pages and blocks, product
//!   descriptions, email templates and the "Scripts and Style Sheets" design
//!   setting are HTML (and JavaScript) by design, and only an authenticated
//!   admin can post them. SQL injection is still checked there.
//! - **`mage-messages` cookie**: written by Magento itself, JSON with HTML
//!   links ("You added <a href=...>"): not checked for XSS.
//! - **GraphQL** (`/graphql`): the query document is not inspected as text,
//!   only its string literals and the variables (see `extract`).
//!
//! - **Search phrases** (`q` on the storefront's search pages and
//!   suggestions): Magento never writes a search phrase into SQL as is; it
//!   goes to OpenSearch as a JSON string and into `search_query` as a bound
//!   (quoted) parameter. SQL in a phrase matters only when it can leave the
//!   string literal, so it is scored as a string literal (see
//!   [`super::Inspector`]): `drop table lamp` is a product, `x' union select`
//!   is still an attack.
//!
//! Operators add their own with `[[waf.injection_exclusions]]`.

use super::extract::Location;
use super::Attack;

/// How an exclusion matches a field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldMatch {
    /// Every field.
    Any,
    /// This exact name.
    Exact(String),
    /// Names starting with this (`product[` for all product attributes).
    Prefix(String),
}

impl FieldMatch {
    /// Parses `name`, `prefix*` or `*`.
    pub fn parse(s: &str) -> FieldMatch {
        match s.strip_suffix('*') {
            Some("") => FieldMatch::Any,
            Some(p) => FieldMatch::Prefix(p.to_owned()),
            None => FieldMatch::Exact(s.to_owned()),
        }
    }

    fn matches(&self, name: &[u8]) -> bool {
        match self {
            FieldMatch::Any => true,
            FieldMatch::Exact(n) => n.as_bytes() == name,
            FieldMatch::Prefix(p) => name.starts_with(p.as_bytes()),
        }
    }
}

/// Which part of the site an exclusion covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Area {
    /// Every path.
    Everywhere,
    /// The admin area (follows the admin front name).
    Admin,
    /// Paths starting with this (case-insensitive, as Magento's router).
    Prefix(String),
}

/// One exclusion: skip `attacks` for matching fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    /// Where.
    pub area: Area,
    /// In which part of the request; `None` = all.
    pub location: Option<Location>,
    /// Which fields.
    pub field: FieldMatch,
    /// Which checks are skipped.
    pub attacks: Vec<Attack>,
}

/// What the request's path says about it, computed once per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    /// Under the admin front name.
    pub admin: bool,
    /// Magento's GraphQL endpoint.
    pub graphql: bool,
    /// A storefront search page (`/catalogsearch/…`, `/search/…`), whose
    /// `q` is a search phrase.
    pub search: bool,
    /// Bitmask of the operator exclusions whose area matches (first 64).
    prefix_hits: u64,
}

impl Scope {
    /// What tells scopes apart for the clean cache: the flags, and the
    /// operator exclusions that apply.
    pub fn cache_tag(&self) -> (u8, u64) {
        (
            u8::from(self.admin) | u8::from(self.graphql) << 1 | u8::from(self.search) << 2,
            self.prefix_hits,
        )
    }
}

/// Checks skipped for one value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skip {
    /// No SQLi check.
    pub sqli: bool,
    /// No XSS check.
    pub xss: bool,
}

/// The exclusions in force.
#[derive(Debug, Clone)]
pub struct Profile {
    admin_prefix: String,
    exclusions: Vec<Exclusion>,
}

impl Profile {
    /// The built-in Magento profile for a store whose admin front name is
    /// `admin_front_name`, plus the operator's exclusions.
    pub fn magento(admin_front_name: &str, extra: Vec<Exclusion>) -> Profile {
        let mut exclusions = vec![
            Exclusion {
                area: Area::Admin,
                location: Some(Location::Body),
                field: FieldMatch::Any,
                attacks: vec![Attack::Xss],
            },
            Exclusion {
                area: Area::Everywhere,
                location: Some(Location::Cookie),
                field: FieldMatch::Exact("mage-messages".into()),
                attacks: vec![Attack::Xss],
            },
        ];
        exclusions.extend(extra);
        Profile {
            admin_prefix: format!("/{}", admin_front_name.trim_matches('/')),
            exclusions,
        }
    }

    /// No exclusions at all (the scoring script's baseline).
    pub fn none() -> Profile {
        Profile {
            admin_prefix: "/admin".into(),
            exclusions: Vec::new(),
        }
    }

    /// Classifies a request path.
    pub fn scope(&self, path: &str) -> Scope {
        let mut prefix_hits = 0u64;
        for (i, e) in self.exclusions.iter().enumerate().take(64) {
            if let Area::Prefix(p) = &e.area {
                if starts_with_ci(path, p) {
                    prefix_hits |= 1 << i;
                }
            }
        }
        let routed = crate::magento_path(path);
        Scope {
            search: starts_with_ci(&routed, "/catalogsearch/")
                || starts_with_ci(&routed, "/search/"),
            admin: crate::is_admin_front(path, &self.admin_prefix[1..]),
            graphql: path.eq_ignore_ascii_case("/graphql")
                || path.eq_ignore_ascii_case("/graphql/"),
            prefix_hits,
        }
    }

    /// True for a search phrase: the `q` argument of a search page. Such a
    /// value is a string literal wherever Magento uses it.
    pub fn is_phrase(&self, scope: Scope, loc: Location, name: &[u8]) -> bool {
        scope.search && loc == Location::Query && name == b"q"
    }

    /// Which checks to skip for a value at `loc` named `name`.
    pub fn skips(&self, scope: Scope, loc: Location, name: &[u8]) -> Skip {
        let mut skip = Skip::default();
        for (i, e) in self.exclusions.iter().enumerate() {
            let area = match &e.area {
                Area::Everywhere => true,
                Area::Admin => scope.admin,
                Area::Prefix(_) => i < 64 && scope.prefix_hits & (1 << i) != 0,
            };
            if !area || e.location.is_some_and(|l| l != loc) || !e.field.matches(name) {
                continue;
            }
            for a in &e.attacks {
                match a {
                    Attack::Sqli => skip.sqli = true,
                    Attack::Xss => skip.xss = true,
                }
            }
        }
        skip
    }
}

fn starts_with_ci(path: &str, prefix: &str) -> bool {
    path.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_bodies_skip_xss_only() {
        let p = Profile::magento("backoffice", vec![]);
        let s = p.scope("/backoffice/cms/page/save/");
        assert!(s.admin);
        let k = p.skips(s, Location::Body, b"content");
        assert!(k.xss && !k.sqli);
        let k = p.skips(s, Location::Query, b"content");
        assert!(!k.xss);
        let s = p.scope("/admin/cms/page/save/");
        assert!(!s.admin, "only the configured front name is the admin");
    }

    #[test]
    fn operator_exclusions_by_prefix_and_field() {
        let p = Profile::magento(
            "admin",
            vec![Exclusion {
                area: Area::Prefix("/review/".into()),
                location: None,
                field: FieldMatch::parse("detail*"),
                attacks: vec![Attack::Sqli],
            }],
        );
        let s = p.scope("/Review/product/post/id/1/");
        assert!(p.skips(s, Location::Body, b"detail").sqli);
        assert!(!p.skips(s, Location::Body, b"title").sqli);
        assert!(
            !p.skips(p.scope("/customer/"), Location::Body, b"detail")
                .sqli
        );
    }
}
