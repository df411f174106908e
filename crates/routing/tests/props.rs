//! Property tests: `normalize` and `route` never panic, and their outputs
//! keep the invariants the edge relies on.

use std::path::Path;

use magestack_routing::{normalize, Generation, MemFs, Route, Router};
use proptest::prelude::*;

fn tree() -> MemFs {
    MemFs::new()
        .with_file("/app/pub/index.php")
        .with_file("/app/pub/get.php")
        .with_file("/app/pub/static.php")
        .with_file("/app/pub/errors/404.php")
        .with_file("/app/pub/robots.txt")
        .with_file("/app/pub/static/frontend/a.css")
        .with_file("/app/pub/media/catalog/a.jpg")
        .with_dir("/app/pub/media/wysiwyg")
        .with_file("/app/setup/index.php")
        .with_file("/app/setup/pub/a.css")
}

/// Paths built from the pieces that matter to the router.
fn magento_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("static".to_owned()),
        Just("media".to_owned()),
        Just("pub".to_owned()),
        Just("errors".to_owned()),
        Just("setup".to_owned()),
        Just("SETUP".to_owned()),
        Just("update".to_owned()),
        Just("version123".to_owned()),
        Just("version".to_owned()),
        Just("customer".to_owned()),
        Just("theme_customization".to_owned()),
        Just("index.php".to_owned()),
        Just("404.php".to_owned()),
        Just(".git".to_owned()),
        Just(".user.ini".to_owned()),
        Just("a.css".to_owned()),
        Just("a.xml".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("".to_owned()),
        Just("%2F".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("%0A".to_owned()),
        Just("a+b".to_owned()),
        "[a-zA-Z0-9._%-]{0,8}",
    ];
    (prop::collection::vec(piece, 0..8), any::<bool>())
        .prop_map(|(parts, slash)| format!("/{}{}", parts.join("/"), if slash { "/" } else { "" }))
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("HEAD"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE")
    ]
}

fn check_route(router: &Router, route: &Route) {
    let inside = |p: &Path| p.starts_with(router.docroot()) || p.starts_with(router.mage_root());
    match route {
        Route::Static { file, .. } => assert!(inside(file), "{file:?} escapes the roots"),
        Route::FastCgi(php) => {
            assert!(inside(&php.script_filename), "{php:?} escapes the roots");
            assert!(php.script_name.starts_with('/'));
            if php.error_page {
                assert_eq!(php.script_name, "/errors/404.php");
                assert!(php.query_string.is_empty());
            }
        }
        Route::Redirect { location } => {
            assert!(location.starts_with('/') && location.contains("/"));
            assert!(location.is_ascii());
        }
        Route::NotFound | Route::Forbidden | Route::MethodNotAllowed | Route::LoopError => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalize_never_panics_and_output_is_clean(raw in any::<String>()) {
        if let Ok(p) = normalize(&raw) {
            let b = p.as_bytes();
            prop_assert!(b.starts_with(b"/"));
            prop_assert!(!b.windows(2).any(|w| w == b"//"), "{p:?}");
            for seg in b.split(|&c| c == b'/') {
                prop_assert!(seg != b".." && seg != b".", "{p:?}");
            }
            prop_assert!(!b.contains(&0));
        }
    }

    #[test]
    fn normalize_is_idempotent_on_plain_output(raw in magento_path()) {
        if let Ok(p) = normalize(&raw) {
            if let Some(s) = p.to_str() {
                if !s.contains('%') && !s.contains('?') && !s.contains('#') && !s.chars().any(char::is_control) {
                    let again = normalize(s);
                    prop_assert_eq!(again.as_ref().map(|q| q.as_bytes()), Ok(p.as_bytes()));
                }
            }
        }
    }

    #[test]
    fn normalize_never_panics_on_magento_like_paths(raw in magento_path()) {
        let _ = normalize(&raw);
    }

    #[test]
    fn route_never_panics_on_arbitrary_paths(
        raw in any::<String>(),
        m in method(),
        q in proptest::option::of("[a-z0-9=&%+]{0,12}"),
        g2 in any::<bool>(),
        pages in any::<bool>(),
    ) {
        let gen = if g2 { Generation::G2 } else { Generation::G3 };
        let router = Router::new("/app/pub", gen).with_error_pages(pages);
        let fs = tree();
        if let Ok(p) = normalize(&format!("/{raw}")) {
            let r = router.route(&fs, m, &p, q.as_deref());
            check_route(&router, &r);
        }
    }

    #[test]
    fn route_invariants_on_magento_like_paths(
        raw in magento_path(),
        m in method(),
        q in proptest::option::of("[a-z0-9=&]{0,12}"),
    ) {
        let router = Router::new("/app/pub", Generation::G3);
        let fs = tree();
        if let Ok(p) = normalize(&raw) {
            let r = router.route(&fs, m, &p, q.as_deref());
            check_route(&router, &r);
            // With error pages on and /errors/404.php present, nginx never
            // answers a plain 403 or 404.
            prop_assert!(!matches!(r, Route::Forbidden | Route::NotFound), "{raw} → {r:?}");
        }
    }
}
