//! Tests of contract §9.

use super::*;

fn parse(s: &'static str) -> Option<Vec<EsiSegment>> {
    parse_esi(&Bytes::from_static(s.as_bytes()), &EsiLimits::default()).expect("within limits")
}

fn lit(s: &'static str) -> EsiSegment {
    EsiSegment::Literal(Bytes::from_static(s.as_bytes()))
}

fn inc(src: &str) -> EsiSegment {
    EsiSegment::Include(EsiInclude {
        src: src.to_owned(),
        alt: None,
        onerror_continue: false,
    })
}

#[test]
fn s9_magento_include() {
    let body = "<html><body><esi:include src=\"http://shop/page_cache/block/esi/blocks/%5B%22header%22%5D/handles/WyJkZWZhdWx0Il0%3D/\" /></body></html>";
    assert_eq!(
        parse(body),
        Some(vec![
            lit("<html><body>"),
            inc("http://shop/page_cache/block/esi/blocks/%5B%22header%22%5D/handles/WyJkZWZhdWx0Il0%3D/"),
            lit("</body></html>"),
        ])
    );
}

#[test]
fn s9_include_variants() {
    let cases: &[(&'static str, &str)] = &[
        ("<p><esi:include src=\"/a\"/></p>", "/a"),
        ("<p><esi:include src='/a'/></p>", "/a"),
        ("<p><esi:include   src = \"/a\"   /></p>", "/a"),
        ("<p><esi:include\n\tsrc=\"/a\"\n/></p>", "/a"),
        ("<p><esi:include src=\"/a\"></esi:include></p>", "/a"),
        ("<p><esi:include src=\"/a\">  </esi:include></p>", "/a"),
        ("<p><esi:include src=/a /></p>", "/a"),
        ("<p><esi:include src=\"/a?x=1&amp;y=2\"/></p>", "/a?x=1&y=2"),
    ];
    for (body, src) in cases {
        let segs = parse(body).unwrap_or_else(|| panic!("{body}"));
        assert_eq!(segs, vec![lit("<p>"), inc(src), lit("</p>")], "{body}");
    }
}

#[test]
fn s9_include_attributes() {
    let segs = parse("<x><esi:include src=\"/a\" alt=\"/b\" onerror=\"continue\"/>").expect("esi");
    assert_eq!(
        segs,
        vec![
            lit("<x>"),
            EsiSegment::Include(EsiInclude {
                src: "/a".into(),
                alt: Some("/b".into()),
                onerror_continue: true,
            })
        ]
    );
    let segs = parse("<x><esi:include onerror=\"abort\" src=\"/a\"/>").expect("esi");
    assert_eq!(segs, vec![lit("<x>"), inc("/a")]);
}

#[test]
fn s9_include_without_src_is_dropped() {
    assert_eq!(
        parse("<a><esi:include alt=\"/b\"/>z"),
        Some(vec![lit("<a>"), lit("z")])
    );
}

#[test]
fn s9_malformed_include_stays_text() {
    let body = "<a><esi:include src=\"/a";
    assert_eq!(parse(body), None);
    let body = "<a><esi:include src=\"/a\" / x>";
    assert_eq!(parse(body), None);
    // Not a tag boundary.
    assert_eq!(parse("<a><esi:includes src=\"/a\"/>"), None);
}

#[test]
fn s9_remove_blocks() {
    assert_eq!(
        parse("<a>1<esi:remove><esi:include src=\"/x\"/>fallback</esi:remove>2"),
        Some(vec![lit("<a>1"), lit("2")])
    );
    // Unclosed: removed to the end.
    assert_eq!(parse("<a>1<esi:remove>rest"), Some(vec![lit("<a>1")]));
}

#[test]
fn s9_esi_comments_are_unwrapped() {
    assert_eq!(
        parse("<a><!--esi <esi:include src=\"/x\"/> tail-->b"),
        Some(vec![
            lit("<a>"),
            lit(" "),
            inc("/x"),
            lit(" tail"),
            lit("b")
        ])
    );
    // A '-' that is not "-->" is content.
    assert_eq!(
        parse("<a><!--esi a-b -->c"),
        Some(vec![lit("<a>"), lit(" a-b "), lit("c")])
    );
}

#[test]
fn s9_esi_comment_element_is_dropped() {
    assert_eq!(
        parse("<a><esi:comment text=\"hi\"/>b"),
        Some(vec![lit("<a>"), lit("b")])
    );
}

#[test]
fn s9_plain_comments_and_cdata_are_opaque() {
    assert_eq!(parse("<a><!-- <esi:include src=\"/x\"/> -->b"), None);
    assert_eq!(parse("<a><![CDATA[<esi:include src=\"/x\"/>]]>b"), None);
    assert_eq!(
        parse("<a><!-- c --><esi:include src=\"/x\"/>"),
        Some(vec![lit("<a><!-- c -->"), inc("/x")])
    );
}

#[test]
fn s9_only_bodies_starting_with_lt() {
    assert!(is_esi_candidate(b"  \n<html>"));
    assert!(!is_esi_candidate(b"{\"a\": \"<esi:include src='/x'/>\"}"));
    assert!(!is_esi_candidate(b""));
    assert!(!is_esi_candidate(b"\xef\xbb\xbf<html>")); // BOM: not skipped
    assert_eq!(parse("{\"x\":\"<esi:include src='/x'/>\"}"), None);
    assert_eq!(parse("<html>no esi here</html>"), None);
}

#[test]
fn s9_literals_are_zero_copy_slices() {
    let body = Bytes::from_static(b"<a>xx<esi:include src=\"/i\"/>yy");
    let segs = parse_esi(&body, &EsiLimits::default())
        .expect("ok")
        .expect("esi");
    for s in &segs {
        if let EsiSegment::Literal(b) = s {
            let start = b.as_ptr() as usize;
            let base = body.as_ptr() as usize;
            assert!(start >= base && start + b.len() <= base + body.len());
        }
    }
}

#[test]
fn s9_limits() {
    let many: String = std::iter::once("<x>".to_owned())
        .chain((0..3).map(|i| format!("<esi:include src=\"/{i}\"/>")))
        .collect();
    let body = Bytes::from(many);
    let tight = EsiLimits {
        max_includes: 2,
        ..EsiLimits::default()
    };
    assert_eq!(
        parse_esi(&body, &tight),
        Err(EsiError::TooManyIncludes { max: 2 })
    );
    let ok = EsiLimits {
        max_includes: 3,
        ..EsiLimits::default()
    };
    assert_eq!(parse_esi(&body, &ok).expect("ok").expect("esi").len(), 4);
    let long = Bytes::from(format!("<x><esi:include src=\"/{}\"/>", "a".repeat(100)));
    let short = EsiLimits {
        max_src_len: 50,
        ..EsiLimits::default()
    };
    assert_eq!(
        parse_esi(&long, &short),
        Err(EsiError::SrcTooLong { len: 101, max: 50 })
    );
}

#[test]
fn s9_default_limit_is_256() {
    let mut s = String::from("<x>");
    for i in 0..257 {
        s.push_str(&format!("<esi:include src=\"/{i}\"/>"));
    }
    assert_eq!(
        parse_esi(&Bytes::from(s), &EsiLimits::default()),
        Err(EsiError::TooManyIncludes { max: 256 })
    );
}

#[test]
fn s9_resolve_include() {
    assert_eq!(
        resolve_include("http://shop.test/page_cache/block/esi/x/", "/p.html"),
        Some(IncludeTarget {
            host: Some("shop.test".into()),
            url: "/page_cache/block/esi/x/".into()
        })
    );
    assert_eq!(
        resolve_include("http://shop.test", "/"),
        Some(IncludeTarget {
            host: Some("shop.test".into()),
            url: "/".into()
        })
    );
    assert_eq!(resolve_include("https://shop.test/x", "/"), None);
    assert_eq!(resolve_include("", "/"), None);
    assert_eq!(resolve_include("http:///x", "/"), None);
    assert_eq!(
        resolve_include("/abs?x=1", "/a/b"),
        Some(IncludeTarget {
            host: None,
            url: "/abs?x=1".into()
        })
    );
    assert_eq!(
        resolve_include("frag", "/a/b.html?x=/y/z"),
        Some(IncludeTarget {
            host: None,
            url: "/a/frag".into()
        })
    );
    assert_eq!(
        resolve_include("frag", "noslash"),
        Some(IncludeTarget {
            host: None,
            url: "/frag".into()
        })
    );
    let mut h = HeaderMap::new();
    h.insert(HOST, HeaderValue::from_static("old"));
    resolve_include("http://new:8080/x", "/")
        .expect("target")
        .apply_host(&mut h);
    assert_eq!(h[HOST], "new:8080");
}

#[test]
fn s9_subrequest_headers() {
    let mut parent = HeaderMap::new();
    for (k, v) in [
        ("cookie", "X-Magento-Vary=abc"),
        ("cookie", "PHPSESSID=1"),
        ("if-none-match", "\"x\""),
        ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("if-match", "\"y\""),
        ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("if-range", "\"z\""),
        ("range", "bytes=0-1"),
        ("content-length", "5"),
        ("transfer-encoding", "chunked"),
        ("accept-encoding", "br, gzip"),
        ("user-agent", "ua"),
        ("host", "shop"),
    ] {
        parent.append(k, HeaderValue::from_static(v));
    }
    let h = subrequest_headers(&parent, true);
    assert_eq!(h.get_all("cookie").iter().count(), 2);
    assert_eq!(h["accept-encoding"], "gzip");
    assert_eq!(h["user-agent"], "ua");
    assert_eq!(h["host"], "shop");
    for gone in [
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
        "content-length",
        "transfer-encoding",
    ] {
        assert!(!h.contains_key(gone), "{gone}");
    }
    let h = subrequest_headers(&parent, false);
    assert!(!h.contains_key("accept-encoding"));
}

#[test]
fn entity_decoding() {
    assert_eq!(
        decode_entities(b"a&amp;b&lt;&gt;&quot;&apos;&x;&"),
        "a&b<>\"'&x;&"
    );
    assert_eq!(decode_entities(b"plain"), "plain");
}
