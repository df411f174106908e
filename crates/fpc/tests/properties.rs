//! Property tests: key separation and invariance (contract §3), and
//! totality of every parser (Cache-Control, purge patterns, ESI, request and
//! response classification).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method, StatusCode};
use magestack_fpc::cache_control::{parse_delta_seconds, CacheControl};
use magestack_fpc::prelude::*;
use magestack_fpc::request::querysort;
use proptest::prelude::*;

fn policy() -> &'static FpcPolicy {
    static POLICY: std::sync::OnceLock<FpcPolicy> = std::sync::OnceLock::new();
    POLICY.get_or_init(FpcPolicy::default)
}

fn policy_c() -> &'static FpcPolicy {
    static POLICY: std::sync::OnceLock<FpcPolicy> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| FpcPolicy {
        error_statuses: ErrorStatusPolicy::NoErrors,
        ..FpcPolicy::default()
    })
}

fn key_of(target: &str, h: &HeaderMap) -> CacheKey {
    let m = Method::GET;
    match classify(&RequestView::new(&m, target, h), policy()) {
        RequestDecision::Lookup(plan) => plan.key,
        other => panic!("{target}: expected lookup, got {other:?}"),
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("generated values are valid")
}

/// A cookie value: visible ASCII without `;`, `,` or space, non-empty.
fn cookie_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.=+/-]{1,24}"
}

/// A header value: visible ASCII and spaces, possibly empty.
fn header_value() -> impl Strategy<Value = String> {
    "[ -~]{0,24}".prop_map(|s| s.trim().to_owned())
}

/// Other cookies: distinct lowercase names that cannot contain
/// `X-Magento-Vary`.
fn other_cookies() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-z]{1,8}", cookie_value(), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

fn cookie_headers(cookies: &[(String, String)], split: &[usize]) -> HeaderMap {
    // `split` tells after which cookies a new Cookie header starts.
    let mut h = HeaderMap::new();
    let mut current: Vec<String> = Vec::new();
    for (i, (k, v)) in cookies.iter().enumerate() {
        current.push(format!("{k}={v}"));
        if split.contains(&i) {
            h.append("cookie", hv(&current.join("; ")));
            current.clear();
        }
    }
    if !current.is_empty() {
        h.append("cookie", hv(&current.join("; ")));
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // --- §3 key separation ------------------------------------------------

    #[test]
    fn vary_cookie_value_separates_keys(
        a in cookie_value(), b in cookie_value(), others in other_cookies(), path in "/[a-z]{0,8}",
    ) {
        prop_assume!(a != b);
        let mut ca = others.clone();
        ca.push(("X-Magento-Vary".into(), a));
        let mut cb = others;
        cb.push(("X-Magento-Vary".into(), b));
        prop_assert_ne!(key_of(&path, &cookie_headers(&ca, &[])), key_of(&path, &cookie_headers(&cb, &[])));
    }

    #[test]
    fn ssl_offload_value_separates_keys(a in header_value(), b in header_value(), path in "/[a-z]{0,8}") {
        prop_assume!(a != b);
        let mut ha = HeaderMap::new();
        ha.insert("x-forwarded-proto", hv(&a));
        let mut hb = HeaderMap::new();
        hb.insert("x-forwarded-proto", hv(&b));
        prop_assert_ne!(key_of(&path, &ha), key_of(&path, &hb));
        // Absent differs from any present value.
        prop_assert_ne!(key_of(&path, &HeaderMap::new()), key_of(&path, &ha));
    }

    #[test]
    fn graphql_store_and_currency_separate_keys(
        a in header_value(), b in header_value(), which in 0..2usize, query in "[a-z=&]{0,12}",
    ) {
        prop_assume!(a != b);
        let name = ["store", "content-currency"][which];
        let target = format!("/graphql?{query}");
        let mut ha = HeaderMap::new();
        ha.insert(name, hv(&a));
        let mut hb = HeaderMap::new();
        hb.insert(name, hv(&b));
        prop_assert_ne!(key_of(&target, &ha), key_of(&target, &hb));
        // The same value in the other header is another key.
        let mut hc = HeaderMap::new();
        hc.insert(["content-currency", "store"][which], hv(&a));
        prop_assert_ne!(key_of(&target, &ha), key_of(&target, &hc));
    }

    #[test]
    fn graphql_cache_id_separates_keys(a in cookie_value(), b in cookie_value()) {
        prop_assume!(a != b);
        let mut ha = HeaderMap::new();
        ha.insert("x-magento-cache-id", hv(&a));
        let mut hb = HeaderMap::new();
        hb.insert("x-magento-cache-id", hv(&b));
        prop_assert_ne!(key_of("/graphql", &ha), key_of("/graphql", &hb));
    }

    // --- §3 key invariance -------------------------------------------------

    #[test]
    fn key_invariant_under_cookie_splitting_and_order(
        vary in cookie_value(),
        others in other_cookies(),
        pos in any::<prop::sample::Index>(),
        rotate in any::<prop::sample::Index>(),
        splits in proptest::collection::vec(0..8usize, 0..4),
    ) {
        let mut cookies = others.clone();
        let at = pos.index(cookies.len() + 1);
        cookies.insert(at, ("X-Magento-Vary".into(), vary.clone()));
        let one_header = key_of("/", &cookie_headers(&cookies, &[]));
        let many_headers = key_of("/", &cookie_headers(&cookies, &splits));
        prop_assert_eq!(one_header, many_headers);
        // Order of the other cookies does not matter.
        let mut reordered = others;
        let n = reordered.len();
        if n > 0 {
            reordered.rotate_left(rotate.index(n));
        }
        reordered.push(("X-Magento-Vary".into(), vary));
        prop_assert_eq!(one_header, key_of("/", &cookie_headers(&reordered, &splits)));
    }

    #[test]
    fn key_invariant_under_query_order_with_distinct_names(
        params in proptest::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{0,4}", 2..6),
        rotate in any::<prop::sample::Index>(),
    ) {
        let mut list: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let a = format!("/p?{}", list.join("&"));
        let n = list.len();
        list.rotate_left(rotate.index(n));
        let b = format!("/p?{}", list.join("&"));
        prop_assert_eq!(key_of(&a, &HeaderMap::new()), key_of(&b, &HeaderMap::new()));
    }

    #[test]
    fn querysort_is_idempotent(url in "/[a-z]{0,3}(\\?[a-z=&]{0,16})?") {
        let once = querysort(&url).into_owned();
        let twice = querysort(&once).into_owned();
        prop_assert_eq!(once, twice);
    }

    // --- parsers never panic ----------------------------------------------

    #[test]
    fn cache_control_never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4)) {
        let cc = CacheControl::parse(lines.iter().map(|l| l.as_slice()));
        let _ = cc.shared_max_age();
        let _ = cc.seconds("max-age");
        prop_assert!(cc.directives().len() <= magestack_fpc::cache_control::MAX_DIRECTIVES);
        for d in cc.directives() {
            prop_assert!(!d.name.is_empty());
            prop_assert_eq!(d.name.to_ascii_lowercase(), d.name.clone());
        }
    }

    #[test]
    fn cache_control_finds_generated_directives(
        max_age in 0u32..1_000_000, s_maxage in proptest::option::of(0u32..1_000_000),
        junk in "[a-z-]{1,10}", upper in any::<bool>(),
    ) {
        let name = if upper { "MAX-AGE" } else { "max-age" };
        let mut v = format!("{junk}, {name}={max_age}");
        if let Some(s) = s_maxage {
            v.push_str(&format!(", s-maxage=\"{s}\""));
        }
        let cc = CacheControl::parse_str(&v);
        prop_assume!(junk != "max-age" && junk != "s-maxage");
        prop_assert_eq!(cc.shared_max_age(), Some(s_maxage.unwrap_or(max_age)));
    }

    #[test]
    fn delta_seconds_never_panics(s in any::<String>()) {
        let _ = parse_delta_seconds(&s);
    }

    #[test]
    fn purge_pattern_never_panics(s in any::<String>()) {
        let p = parse_tags_pattern(&s);
        let _ = p.matches_tag("cat_p_1");
        let _ = p.as_str();
    }

    #[test]
    fn purge_pattern_regexish_never_panics(s in "[()|^$,.*a-z_0-9\\\\\\[\\]{}+?-]{0,64}") {
        let p = parse_tags_pattern(&s);
        let _ = p.matches_tag("a");
    }

    #[test]
    fn purge_fast_path_roundtrip(tags in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..50), bare in any::<bool>()) {
        let value = tags
            .iter()
            .map(|t| if bare { format!("(^|,){t}(,|$)") } else { format!("((^|,){t}(,|$))") })
            .collect::<Vec<_>>()
            .join("|");
        match parse_tags_pattern(&value) {
            PurgePattern::Tags(parsed) => prop_assert_eq!(parsed, tags.clone()),
            other => prop_assert!(false, "not the fast path: {:?}", other),
        }
        // Same answer as the regex would give on a tag list.
        let re = regex::Regex::new(&value).expect("valid regex");
        let fast = parse_tags_pattern(&value);
        for t in &tags {
            prop_assert!(fast.matches_tag(t));
            prop_assert!(re.is_match(t));
        }
        prop_assert_eq!(fast.matches_tag("zz~not-a-tag"), re.is_match("zz~not-a-tag"));
    }

    #[test]
    fn esi_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_esi(&Bytes::from(body), &EsiLimits::default());
    }

    #[test]
    fn esi_markupish_never_panics(body in "<(esi:include|esi:remove|!--esi|!--|!\\[CDATA\\[|/esi:include|esi:comment| |src=|'|\"|/|>|-->|\\]\\]>|a|&amp;)*") {
        let limits = EsiLimits { max_includes: 4, max_src_len: 16 };
        let _ = parse_esi(&Bytes::from(body), &limits);
    }

    #[test]
    fn esi_roundtrip(doc in esi_document()) {
        let (text, expected) = doc;
        let body = Bytes::from(text.clone());
        let parsed = parse_esi(&body, &EsiLimits::default()).expect("within limits");
        let has_markup = expected.iter().any(|s| matches!(s, Seg::Inc(_)));
        match parsed {
            None => prop_assert!(!has_markup, "markup not found in {}", text),
            Some(segs) => {
                prop_assert_eq!(merge(&segs), expected, "{}", text);
            }
        }
    }

    // --- classification never panics --------------------------------------

    #[test]
    fn classify_never_panics(
        method in "[A-Z]{1,8}",
        target in "[ -~]{0,48}",
        pairs in proptest::collection::vec((
            prop::sample::select(vec!["cookie", "authorization", "x-magento-cache-id", "store", "content-currency", "accept-encoding", "user-agent", "host", "x-forwarded-proto"]),
            "[ -~]{0,32}",
        ), 0..8),
    ) {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let mut h = HeaderMap::new();
        for (k, v) in &pairs {
            h.append(*k, hv(v.trim()));
        }
        let view = RequestView::new(&m, &target, &h);
        let d = classify(&view, policy());
        if let RequestDecision::Lookup(plan) = &d {
            let _ = magestack_fpc::key::key_debug(&view, &plan.url, policy());
        }
    }

    #[test]
    fn classify_response_never_panics(
        status in 100u16..1000,
        pairs in proptest::collection::vec((
            prop::sample::select(vec!["cache-control", "expires", "date", "age", "set-cookie", "surrogate-control", "vary", "content-type", "x-magento-tags", "x-magento-cache-id", "x-pool"]),
            "[ -~]{0,40}",
        ), 0..10),
        variant_c in any::<bool>(),
        graphql in any::<bool>(),
        now_secs in 0u64..4_000_000_000,
    ) {
        let p = if variant_c { policy_c() } else { policy() };
        let mut rh = HeaderMap::new();
        for (k, v) in &pairs {
            rh.append(*k, hv(v.trim()));
        }
        let mut qh = HeaderMap::new();
        qh.insert("x-magento-cache-id", hv("id"));
        let m = Method::GET;
        let target = if graphql { "/graphql" } else { "/p" };
        let view = RequestView::new(&m, target, &qh);
        let RequestDecision::Lookup(plan) = classify(&view, p) else { unreachable!() };
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let resp = ResponseView { status: StatusCode::from_u16(status).expect("status"), headers: &rh };
        let d = classify_response(&view, Fetch::Lookup(&plan), &resp, now, p);
        if let Cacheability::Cacheable { ttl, .. } = &d {
            prop_assert!(!ttl.is_zero());
            prop_assert!(d.object_times(now).is_some());
        }
        let mut out = rh.clone();
        d.apply_to_headers(&mut out);
        deliver_headers(&mut out, CacheDebug::Miss, target, 0);
        prop_assert!(out.contains_key("x-magento-cache-debug"));
        let _ = evaluate_conditional(&qh, &rh, SystemTime::UNIX_EPOCH, None);
    }
}

/// Expected segment, literals merged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Inc(String),
}

fn merge(segs: &[EsiSegment]) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::new();
    for s in segs {
        match s {
            EsiSegment::Literal(b) => {
                let t = String::from_utf8_lossy(b).into_owned();
                if let Some(Seg::Lit(prev)) = out.last_mut() {
                    prev.push_str(&t);
                } else {
                    out.push(Seg::Lit(t));
                }
            }
            EsiSegment::Include(i) => out.push(Seg::Inc(i.src.clone())),
        }
    }
    out
}

/// A document made of literal tokens (which never form ESI markup) and
/// includes written in one of several syntaxes, with the segments a parser
/// must return.
fn esi_document() -> impl Strategy<Value = (String, Vec<Seg>)> {
    let literal = prop::sample::select(vec![
        "<p>",
        "</p>",
        "text",
        " ",
        "a-b",
        "->",
        "<div class=\"x\">",
        "</div>",
        "\n",
        "&amp;",
        "<esix>",
        "<!-- c -->",
    ]);
    let piece = prop_oneof![
        literal.prop_map(|l| (l.to_owned(), None)),
        ("[a-zA-Z0-9/_?=.%-]{1,30}", 0..5usize).prop_map(|(src, style)| {
            let tag = match style {
                0 => format!("<esi:include src=\"{src}\"/>"),
                1 => format!("<esi:include src='{src}' />"),
                2 => format!("<esi:include\n  src=\"{src}\"\n  onerror=\"continue\" />"),
                3 => format!("<esi:include src=\"{src}\"></esi:include>"),
                _ => format!("<!--esi <esi:include src=\"{src}\"/>-->"),
            };
            (tag, Some((src, style == 4)))
        }),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| {
        let mut text = String::from("<x>");
        let mut expected = vec![Seg::Lit("<x>".to_owned())];
        let push_lit = |expected: &mut Vec<Seg>, t: &str| {
            if let Some(Seg::Lit(prev)) = expected.last_mut() {
                prev.push_str(t);
            } else {
                expected.push(Seg::Lit(t.to_owned()));
            }
        };
        for (t, inc) in pieces {
            text.push_str(&t);
            match inc {
                None => push_lit(&mut expected, &t),
                Some((src, in_comment)) => {
                    if in_comment {
                        push_lit(&mut expected, " ");
                    }
                    expected.push(Seg::Inc(src));
                }
            }
        }
        (text, expected)
    })
}

#[test]
fn esi_roundtrip_smoke() {
    let body = Bytes::from_static(b"<x><!--esi <esi:include src=\"/a\"/>-->tail");
    let segs = parse_esi(&body, &EsiLimits::default())
        .expect("ok")
        .expect("esi");
    assert_eq!(
        merge(&segs),
        vec![
            Seg::Lit("<x> ".into()),
            Seg::Inc("/a".into()),
            Seg::Lit("tail".into())
        ]
    );
}
