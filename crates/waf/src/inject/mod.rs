//! SQL injection and XSS detection on the parts of a request PHP reads.
//!
//! Each value the request carries (path, query arguments, cookies, body
//! fields; see [`extract`]) goes through libinjection's tokenizers
//! (`libinjectionrs`, a pure-Rust port: no C, no build-time download) and a
//! short list of our own signatures for what libinjection does not model
//! ([`signatures`]). Which combination to run was chosen by measured recall
//! and false positives (`scripts/waf-score`, figures in `docs/waf.md`).
//!
//! Values that cannot carry an injection (identifiers, hashes, numbers: the
//! bulk of Magento's cookies and arguments) are skipped by a byte-class scan,
//! so the common request costs a few nanoseconds per value.
//!
//! The [`profile`] holds the Magento exclusions: fields where HTML or
//! SQL-looking text is legitimate (Page Builder and CMS content in the admin,
//! GraphQL documents), so a shop can run in block mode.

pub mod clean_cache;
pub mod extract;
pub mod profile;
pub mod signatures;

use std::ops::ControlFlow;

use http::{HeaderMap, Method, Uri};

pub use extract::{BodyKind, Location};
pub use profile::Profile;

/// What the edge does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No inspection.
    Off,
    /// Log and count, let the request through.
    Detect,
    /// Answer 403 with the request id; PHP never sees the request.
    #[default]
    Block,
}

/// The class of attack found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attack {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
}

impl Attack {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Attack::Sqli => "sqli",
            Attack::Xss => "xss",
        }
    }
}

/// What matched: libinjection or one of our signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detector {
    /// libinjection, with its token fingerprint for SQLi (`s&sos`).
    Libinjection(Option<String>),
    /// A named signature of [`signatures`].
    Signature(&'static str),
}

impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detector::Libinjection(Some(fp)) => write!(f, "libinjection:{fp}"),
            Detector::Libinjection(None) => f.write_str("libinjection"),
            Detector::Signature(name) => f.write_str(name),
        }
    }
}

/// One finding; the first one ends the inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// SQLi or XSS.
    pub attack: Attack,
    /// Where the value was.
    pub location: Location,
    /// The argument, cookie or field name (at most 64 bytes, lossy UTF-8):
    /// enough for an operator to write an exclusion; never the value, which
    /// may hold a customer's data.
    pub field: String,
    /// What matched.
    pub detector: Detector,
}

/// Longest field name kept in a finding.
const FIELD_MAX: usize = 64;

/// Which detectors run; all by default, the others exist for the scoring
/// script's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detectors {
    /// libinjection's SQLi tokenizer.
    pub libinjection_sqli: bool,
    /// libinjection's HTML5 XSS tokenizer.
    pub libinjection_xss: bool,
    /// Our signatures.
    pub signatures: bool,
}

impl Default for Detectors {
    fn default() -> Self {
        Detectors {
            libinjection_sqli: true,
            libinjection_xss: true,
            signatures: true,
        }
    }
}

/// A request as the inspector sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path and query, as received.
    pub uri: &'a Uri,
    /// Headers (cookies, content type, user agent, referer).
    pub headers: &'a HeaderMap,
    /// The body, when the edge read it.
    pub body: Option<&'a [u8]>,
}

/// The injection inspector: detectors plus the exclusion profile.
#[derive(Debug)]
pub struct Inspector {
    detectors: Detectors,
    profile: Profile,
    signatures: signatures::Signatures,
    clean: clean_cache::CleanCache,
}

/// Slots of the clean-value cache (8 bytes each: 512 KiB).
const CLEAN_SLOTS: usize = 1 << 16;
/// Longest `Cookie` header remembered clean as a whole (browsers' stay far
/// below; a longer one is checked value by value, each value still cached).
const COOKIE_HEADER_CACHE_MAX: usize = 16 * 1024;

impl Inspector {
    /// An inspector with the given exclusions and detectors.
    pub fn new(profile: Profile, detectors: Detectors) -> Inspector {
        Inspector {
            detectors,
            profile,
            signatures: signatures::Signatures::new(),
            clean: clean_cache::CleanCache::new(CLEAN_SLOTS),
        }
    }

    /// The exclusion profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The first injection found in the request, if any.
    pub fn inspect(&self, req: &RequestView<'_>) -> Option<Finding> {
        let path = req.uri.path();
        let scope = self.profile.scope(path);
        let mut visit = |loc: Location, name: &[u8], value: &[u8]| -> ControlFlow<Finding> {
            match self.check(scope, loc, name, value) {
                Some((attack, detector)) => ControlFlow::Break(Finding {
                    attack,
                    location: loc,
                    field: field_name(name),
                    detector,
                }),
                None => ControlFlow::Continue(()),
            }
        };
        match self.walk(req, scope, &mut visit) {
            ControlFlow::Break(f) => Some(f),
            ControlFlow::Continue(()) => None,
        }
    }

    fn walk(
        &self,
        req: &RequestView<'_>,
        scope: profile::Scope,
        visit: &mut extract::Visit<'_, Finding>,
    ) -> ControlFlow<Finding> {
        let path = req.uri.path();
        if !inert_path(path.as_bytes()) {
            visit(
                Location::Path,
                b"",
                &extract::url_decode(path.as_bytes(), false),
            )?;
        }
        if let Some(q) = req.uri.query() {
            if scope.graphql {
                // GET /graphql?query=...: the document's literals only.
                let mut gq = |loc: Location, name: &[u8], value: &[u8]| {
                    if name == b"query" {
                        extract::graphql_literals(value, visit)
                    } else {
                        visit(loc, name, value)
                    }
                };
                extract::form(q.as_bytes(), Location::Query, &mut gq)?;
            } else {
                extract::form(q.as_bytes(), Location::Query, visit)?;
            }
        }
        // A browser sends the same Cookie header on every request of a
        // visit: once all its values were found clean in this scope, the
        // header is not split and decoded again (one keyed hash instead).
        let (flags, exclusions) = scope.cache_tag();
        for cookie in req.headers.get_all(http::header::COOKIE) {
            let v = cookie.as_bytes();
            let key = (v.len() <= COOKIE_HEADER_CACHE_MAX)
                .then(|| self.clean.header_key(v, flags, exclusions));
            if key.is_some_and(|k| self.clean.is_clean(k)) {
                continue;
            }
            extract::cookies(v, visit)?;
            if let Some(k) = key {
                self.clean.remember(k);
            }
        }
        for h in [http::header::USER_AGENT, http::header::REFERER] {
            if let Some(v) = req.headers.get(&h) {
                visit(Location::Header, h.as_str().as_bytes(), v.as_bytes())?;
            }
        }
        if let Some(body) = req.body.filter(|b| !b.is_empty()) {
            let ct = req
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes());
            match BodyKind::of(ct) {
                BodyKind::Form => extract::form(body, Location::Body, visit)?,
                BodyKind::Json => extract::json(body, scope.graphql, visit)?,
                BodyKind::Multipart(b) => extract::multipart(body, b, visit)?,
                BodyKind::Text if scope.graphql => extract::graphql_literals(body, visit)?,
                BodyKind::Text => visit(Location::Body, b"", body)?,
            }
        }
        ControlFlow::Continue(())
    }

    /// Checks one value (and its decoded variants).
    fn check(
        &self,
        scope: profile::Scope,
        loc: Location,
        name: &[u8],
        value: &[u8],
    ) -> Option<(Attack, Detector)> {
        if inert(value) {
            return inert_probe(value);
        }
        let skip = self.profile.skips(scope, loc, name);
        let sqli = !skip.sqli;
        let xss = !skip.xss;
        if !sqli && !xss {
            return None;
        }
        let phrase = self.profile.is_phrase(scope, loc, name);
        let key = (value.len() <= clean_cache::MAX_VALUE).then(|| {
            let checks = u8::from(sqli)
                | u8::from(xss) << 1
                | u8::from(loc == Location::Header) << 2
                | u8::from(phrase) << 3;
            self.clean.key(value, checks)
        });
        if key.is_some_and(|k| self.clean.is_clean(k)) {
            return None;
        }
        let hit = self.check_variants(loc, value, sqli, xss, phrase);
        if let (None, Some(k)) = (&hit, key) {
            self.clean.remember(k);
        }
        hit
    }

    /// The value as sent, then decoded further (URL, fullwidth, entities).
    fn check_variants(
        &self,
        loc: Location,
        value: &[u8],
        sqli: bool,
        xss: bool,
        phrase: bool,
    ) -> Option<(Attack, Detector)> {
        if let Some(hit) = self.check_once(value, loc, sqli, xss, phrase) {
            return Some(hit);
        }
        // Double encoding (`%2527`): decode once more, as CRS's urlDecodeUni.
        if value.contains(&b'%') {
            let again = extract::url_decode(value, false);
            if let Some(hit) = self.check_once(&again, loc, sqli, xss, phrase) {
                return Some(hit);
            }
        }
        // Fullwidth forms (`＜script＞`) that PHP and browsers may fold.
        if value
            .windows(2)
            .any(|w| w == [0xEF, 0xBC] || w == [0xEF, 0xBD])
        {
            let folded = fold_fullwidth(value);
            if let Some(hit) = self.check_once(&folded, loc, sqli, xss, phrase) {
                return Some(hit);
            }
        }
        // HTML entities hide markup from the tokenizer (`&lt;script&gt;`).
        if xss && value.contains(&b'&') {
            let decoded = signatures::html_entity_decode(value);
            if decoded.as_slice() != value {
                if let Some(hit) = self.check_once(&decoded, loc, false, true, phrase) {
                    return Some(hit);
                }
            }
        }
        None
    }

    /// One reading of a value. A search `phrase` is a string literal
    /// wherever Magento uses it (quoted, bound, or a JSON string to the
    /// search engine), so SQL in it counts only when it can leave the
    /// literal: without a single quote or a backslash (MySQL's only ways
    /// out of `'…'`), SQL keywords in a phrase are words (`drop table
    /// lamp`, `char(10) shirt`), and with one, what follows the quote is
    /// read as MySQL would (see [`phrase_sqli`]).
    fn check_once(
        &self,
        value: &[u8],
        loc: Location,
        sqli: bool,
        xss: bool,
        phrase: bool,
    ) -> Option<(Attack, Detector)> {
        if inert(value) {
            return None;
        }
        let sqli = sqli && !(phrase && !value.contains(&b'\'') && !value.contains(&b'\\'));
        if sqli && self.detectors.libinjection_sqli {
            if let Some(fp) = libinjection_sqli(value) {
                if !phrase || phrase_sqli(&fp, value) {
                    return Some((Attack::Sqli, Detector::Libinjection(Some(fp))));
                }
            }
        }
        if xss
            && self.detectors.libinjection_xss
            && loc != Location::Header
            && libinjectionrs::detect_xss(value).is_injection()
        {
            return Some((Attack::Xss, Detector::Libinjection(None)));
        }
        if self.detectors.signatures {
            if let Some(hit) = self.signatures.check(value, sqli, xss) {
                return Some(hit);
            }
        }
        None
    }
}

/// libinjection's SQLi verdict, read the way Magento talks to MySQL:
///
/// - `--` starts a comment only before whitespace or the end, so `1--2` (a
///   search term) is arithmetic, not `1` and a comment;
/// - `80% acrylic and 20% wool` is a percentage, not modulo: `%` right
///   after digits is dropped;
/// - Magento quotes every string with single quotes (PDO `quote()` or bound
///   parameters), so a value whose only quotes are double quotes cannot close
///   one: libinjection's double-quote reading (`"like" new`) is re-checked
///   with those quotes as spaces.
fn libinjection_sqli(value: &[u8]) -> Option<String> {
    let fp = detect_sqli(value)?;
    let dash = fp.contains('c') && has_non_mysql_dash_comment(value);
    let percent = value
        .windows(2)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'%');
    let double_only = value.contains(&b'"') && !value.contains(&b'\'');
    if !(dash || percent || double_only) {
        return Some(fp);
    }
    let mut v = value.to_vec();
    if dash {
        v = space_dash_pairs(&v);
    }
    if percent {
        v = drop_percent_after_digits(&v);
    }
    if double_only {
        for b in v.iter_mut().filter(|b| **b == b'"') {
            *b = b' ';
        }
    }
    detect_sqli(&v)
}

/// libinjection's finding on a search phrase that contains a quote, read
/// the way MySQL evaluates it. `s&s` (`a' or 'b` → `'a' or 'b'`) is two
/// strings joined by a logic operator: MySQL casts each string to a number,
/// so the condition is true only when an operand starts with a non-zero
/// number (`a' or '1`, the classic tautology, stays an attack). Any other
/// fingerprint (comparisons, unions, functions, comments) is kept.
fn phrase_sqli(fp: &str, value: &[u8]) -> bool {
    if fp != "s&s" {
        return true;
    }
    value
        .split(|&b| b == b'\'' || b == b'"')
        .filter(|part| {
            let t = String::from_utf8_lossy(part);
            let t = t.trim();
            // The operator between the strings is no operand.
            !t.is_empty()
                && !["or", "and", "xor", "||", "&&", "not"]
                    .iter()
                    .any(|op| t.eq_ignore_ascii_case(op))
        })
        .any(|operand| mysql_number_prefix(operand) != 0.0)
}

/// The number MySQL reads from the start of a string (`'12abc'` → 12,
/// `'abc'` → 0), as it does when a string meets a logic operator.
fn mysql_number_prefix(s: &[u8]) -> f64 {
    let s = String::from_utf8_lossy(s);
    let s = s.trim_start();
    let end = s
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))
        })
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    s[..end].parse::<f64>().unwrap_or(0.0)
}

fn detect_sqli(value: &[u8]) -> Option<String> {
    let r = libinjectionrs::detect_sqli(value);
    r.is_injection()
        .then(|| r.fingerprint.map(|f| f.to_string()).unwrap_or_default())
}

fn drop_percent_after_digits(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for (i, &b) in v.iter().enumerate() {
        if b == b'%' && i > 0 && v[i - 1].is_ascii_digit() {
            continue;
        }
        out.push(b);
    }
    out
}

/// A `--` followed by something other than whitespace or the end.
fn has_non_mysql_dash_comment(v: &[u8]) -> bool {
    v.windows(3)
        .any(|w| w[0] == b'-' && w[1] == b'-' && !w[2].is_ascii_whitespace() && w[2] != b'-')
}

/// `a--b` → `a- -b` (same meaning in MySQL) where `--` is not a comment.
fn space_dash_pairs(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 4);
    let mut i = 0;
    while i < v.len() {
        out.push(v[i]);
        if v[i] == b'-' && v.get(i + 1) == Some(&b'-') {
            match v.get(i + 2) {
                Some(c) if !c.is_ascii_whitespace() && *c != b'-' => out.push(b' '),
                _ => {}
            }
        }
        i += 1;
    }
    out
}

/// Fullwidth ASCII variants (U+FF01..U+FF5E) folded to ASCII.
fn fold_fullwidth(v: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(v);
    text.chars()
        .map(|c| match u32::from(c) {
            cp @ 0xFF01..=0xFF5E => char::from_u32(cp - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect::<String>()
        .into_bytes()
}

/// Names of database catalogues that are an attack even as a bare word
/// (made only of inert bytes, so the full check never sees them).
const CATALOGUE_WORDS: &[&[u8]] = &[
    b"information_schema",
    b"schema_name",
    b"pg_catalog",
    b"pg_shadow",
    b"sqlite_master",
    b"msysaccessobjects",
    b"xp_cmdshell",
];

fn inert_probe(value: &[u8]) -> Option<(Attack, Detector)> {
    if value.len() < 10 || !value.contains(&b'_') && !value[..1].eq_ignore_ascii_case(b"m") {
        return None;
    }
    let lower = value.to_ascii_lowercase();
    CATALOGUE_WORDS
        .iter()
        .any(|w| lower.windows(w.len()).any(|x| x == *w))
        .then_some((Attack::Sqli, Detector::Signature("sql-metadata")))
}

/// True for values made only of bytes no SQL or HTML injection can be
/// written with: letters, digits and `_ , @ -` (without `--`). Session
/// ids, form keys, hashes, numbers, SKUs, store codes, currencies.
pub fn inert(value: &[u8]) -> bool {
    let mut prev_dash = false;
    for &b in value {
        let ok = b.is_ascii_alphanumeric() || matches!(b, b'_' | b',' | b'@' | b'-');
        if !ok || (b == b'-' && prev_dash) {
            return false;
        }
        prev_dash = b == b'-';
    }
    true
}

/// A path made of inert bytes plus `/`, `.` and `~` (URL keys, static
/// and media files): nothing to inspect.
fn inert_path(path: &[u8]) -> bool {
    let mut prev_dash = false;
    path.iter().all(|&b| {
        let ok = b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b',' | b'@' | b'/' | b'.' | b'~')
            || (b == b'-' && !prev_dash);
        prev_dash = b == b'-';
        ok
    })
}

fn field_name(name: &[u8]) -> String {
    let cut = &name[..name.len().min(FIELD_MAX)];
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests;
