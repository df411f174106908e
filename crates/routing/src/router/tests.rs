//! Worked examples of design doc 1.10 (G3, `$MAGE_ROOT=/app`) and the edge
//! cases around them, against an in-memory Magento tree.

use super::*;
use crate::fs::MemFs;
use crate::uri::normalize;

/// A Magento 2.4 release under /app, as far as routing cares.
fn magento() -> MemFs {
    MemFs::new()
        .with_file("/app/pub/index.php")
        .with_file("/app/pub/get.php")
        .with_file("/app/pub/static.php")
        .with_file("/app/pub/health_check.php")
        .with_file("/app/pub/cron.php")
        .with_file("/app/pub/robots.txt")
        .with_file("/app/pub/.htaccess")
        .with_file("/app/pub/.user.ini")
        .with_file("/app/pub/errors/404.php")
        .with_file("/app/pub/errors/503.php")
        .with_file("/app/pub/errors/report.php")
        .with_file("/app/pub/errors/processor.php")
        .with_file("/app/pub/errors/local.xml")
        .with_file("/app/pub/errors/design.xml")
        .with_file("/app/pub/errors/default/css/styles.css")
        .with_file("/app/pub/static/deployed_version.txt")
        .with_file("/app/pub/static/frontend/Magento/luma/en_US/mage/calendar.css")
        .with_file("/app/pub/static/frontend/Magento/luma/en_US/js/foo.gitter.js")
        .with_file("/app/pub/static/frontend/Magento/luma/en_US/requirejs-config.js.map")
        .with_file("/app/pub/static/frontend/Magento/luma/en_US/i18n.csv")
        .with_file("/app/pub/media/catalog/product/c/d/cd.jpg")
        .with_file("/app/pub/media/customer/x.jpg")
        .with_file("/app/pub/media/custom_options/x")
        .with_file("/app/pub/media/theme_customization/a.xml")
        .with_file("/app/pub/media/theme_customization/logo.png")
        .with_file("/app/pub/media/export.csv")
        .with_file("/app/pub/media/readme.txt")
        .with_dir("/app/pub/media/wysiwyg")
        .with_file("/app/setup/index.php")
        .with_file("/app/setup/pub/styles.css")
        .with_file("/app/setup/src/Module.php")
        .with_file("/app/update/index.php")
        .with_file("/app/update/pub/app.js")
        .with_file("/app/app/etc/env.php")
        .with_dir("/app/pub/.git")
        .with_file("/app/pub/.git/config")
}

fn g3() -> Router {
    Router::new("/app/pub", Generation::G3)
}

fn route_with(router: &Router, fs: &MemFs, method: &str, target: &str) -> Route {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = normalize(path).unwrap_or_else(|e| panic!("normalize {target}: {e}"));
    router.route(fs, method, &path, query)
}

fn get(target: &str) -> Route {
    route_with(&g3(), &magento(), "GET", target)
}

fn php(route: Route) -> FastCgiRoute {
    match route {
        Route::FastCgi(p) => p,
        other => panic!("expected FastCGI, got {other:?}"),
    }
}

fn main_php(script: &str, query: &str) -> FastCgiRoute {
    FastCgiRoute {
        script_name: script.into(),
        script_filename: PathBuf::from(format!("/app/pub{script}")),
        document_root: "/app/pub".into(),
        document_uri: script.into(),
        query_string: query.into(),
        path_info: None,
        profile: PhpProfile::Main,
        error_page: false,
    }
}

/// What every denied or missing path becomes with error pages on.
fn error_page() -> Route {
    Route::FastCgi(FastCgiRoute {
        error_page: true,
        ..main_php("/errors/404.php", "")
    })
}

fn static_file(file: &str, headers: StaticHeaders, x_frame_options: bool) -> Route {
    Route::Static {
        file: file.into(),
        headers,
        x_frame_options,
    }
}

// === Design doc 1.10, one test per row ===

#[test]
fn ex01_root_is_a_directory_with_index_php() {
    assert_eq!(get("/"), Route::FastCgi(main_php("/index.php", "")));
    assert_eq!(get("/?a=1"), Route::FastCgi(main_php("/index.php", "a=1")));
}

#[test]
fn ex02_catalog_url_goes_to_index_php_with_args() {
    assert_eq!(
        get("/women/tops.html?p=2"),
        Route::FastCgi(main_php("/index.php", "p=2"))
    );
}

#[test]
fn ex03_versioned_static_file_exists() {
    assert_eq!(
        get("/static/version1712345678/frontend/Magento/luma/en_US/mage/calendar.css"),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/mage/calendar.css",
            StaticHeaders::Immutable,
            true
        )
    );
}

#[test]
fn ex03_versioned_static_file_missing_goes_to_static_php() {
    assert_eq!(
        get("/static/version1712345678/frontend/Magento/luma/en_US/mage/missing.css"),
        Route::FastCgi(main_php(
            "/static.php",
            "resource=frontend/Magento/luma/en_US/mage/missing.css"
        ))
    );
}

#[test]
fn ex04_php_under_static_is_banned() {
    assert_eq!(get("/static/foo.php"), error_page());
}

#[test]
fn ex05_missing_media_image_goes_to_get_php_with_args() {
    assert_eq!(
        get("/media/catalog/product/a/b/ab.jpg"),
        Route::FastCgi(main_php("/get.php", ""))
    );
    assert_eq!(
        get("/media/catalog/product/a/b/ab.jpg?width=100"),
        Route::FastCgi(main_php("/get.php", "width=100"))
    );
}

#[test]
fn ex06_media_customer_is_denied() {
    assert_eq!(get("/media/customer/x.jpg"), error_page());
}

#[test]
fn ex07_media_theme_customization_xml_is_denied() {
    assert_eq!(get("/media/theme_customization/x.xml"), error_page());
}

#[test]
fn ex08_errors_local_xml_is_denied() {
    assert_eq!(get("/errors/local.xml"), error_page());
}

#[test]
fn ex09_errors_report_php_is_whitelisted() {
    assert_eq!(
        get("/errors/report.php?id=123"),
        Route::FastCgi(main_php("/errors/report.php", "id=123"))
    );
}

#[test]
fn ex10_cron_update_and_pub_index_php_are_banned() {
    assert_eq!(get("/cron.php"), error_page());
    assert_eq!(get("/update.php"), error_page());
    assert_eq!(get("/pub/index.php"), error_page());
}

#[test]
fn ex11_health_check_is_whitelisted() {
    assert_eq!(
        get("/health_check.php"),
        Route::FastCgi(main_php("/health_check.php", ""))
    );
}

#[test]
fn ex12_dot_git_is_banned() {
    assert_eq!(get("/.git/config"), error_page());
}

#[test]
fn ex13_setup_slash_runs_setup_index_php_from_mage_root() {
    assert_eq!(
        get("/setup/"),
        Route::FastCgi(FastCgiRoute {
            script_name: "/setup/index.php".into(),
            script_filename: "/app/setup/index.php".into(),
            document_root: "/app".into(),
            document_uri: "/setup/index.php".into(),
            query_string: String::new(),
            path_info: None,
            profile: PhpProfile::Setup,
            error_page: false,
        })
    );
}

#[test]
fn ex14_uppercase_setup_falls_to_static_and_404s() {
    assert_eq!(get("/SETUP/index.php"), error_page());
}

#[test]
fn ex15_pub_alias_serves_or_404s_without_get_php() {
    let fs = magento().with_file("/app/pub/media/catalog/x.jpg");
    assert_eq!(
        route_with(&g3(), &fs, "GET", "/pub/media/catalog/x.jpg"),
        static_file("/app/pub/media/catalog/x.jpg", StaticHeaders::None, true)
    );
    assert_eq!(get("/pub/media/catalog/x.jpg"), error_page());
}

// === Edge cases listed in the brief and in design doc 1.2–1.5 ===

#[test]
fn decoded_slash_and_dot_are_matched_after_decoding() {
    // %2F joins "static" and the file name into the /static/ prefix.
    assert_eq!(
        get("/static%2Ffrontend/Magento/luma/en_US/mage/calendar.css"),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/mage/calendar.css",
            StaticHeaders::Immutable,
            true
        )
    );
    // %2e%2e climbs back out of /media/customer/ before matching.
    assert_eq!(
        get("/media/customer/%2e%2e/catalog/product/c/d/cd.jpg"),
        static_file(
            "/app/pub/media/catalog/product/c/d/cd.jpg",
            StaticHeaders::Immutable,
            true
        )
    );
    // An encoded ".php" is still banned.
    assert_eq!(get("/cron%2Ephp"), error_page());
}

#[test]
fn nul_and_escaping_root_are_uri_errors() {
    assert!(normalize("/index.php%00.jpg").is_err());
    assert!(normalize("/../app/etc/env.php").is_err());
    assert!(normalize("/static/%2e%2e/%2e%2e/app/etc/env.php").is_err());
}

#[test]
fn gitter_js_under_static_is_served_by_the_nested_ext_rule() {
    assert_eq!(
        get("/static/frontend/Magento/luma/en_US/js/foo.gitter.js"),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/js/foo.gitter.js",
            StaticHeaders::Immutable,
            true
        )
    );
    // Outside a prefix with a matching nested regex, ".git" anywhere is banned.
    assert_eq!(get("/x/.github/y.png"), error_page());
    assert_eq!(get("/foo.gitter.js"), error_page());
    // Under /static/ without a known extension the banned rule wins.
    assert_eq!(get("/static/.git/config"), error_page());
}

#[test]
fn static_version_without_digits_is_stripped() {
    assert_eq!(
        get("/static/version/frontend/Magento/luma/en_US/mage/calendar.css"),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/mage/calendar.css",
            StaticHeaders::Immutable,
            true
        )
    );
    // "versionX" is not a signature.
    assert_eq!(
        get("/static/versionX/a.css"),
        Route::FastCgi(main_php("/static.php", "resource=versionX/a.css"))
    );
}

#[test]
fn g2_sends_public_plus_expires() {
    let g2 = Router::new("/app/pub", Generation::G2);
    assert_eq!(
        route_with(
            &g2,
            &magento(),
            "GET",
            "/static/version1/frontend/Magento/luma/en_US/mage/calendar.css"
        ),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/mage/calendar.css",
            StaticHeaders::PublicExpires,
            true
        )
    );
    assert_eq!(
        route_with(&g2, &magento(), "GET", "/media/catalog/product/c/d/cd.jpg"),
        static_file(
            "/app/pub/media/catalog/product/c/d/cd.jpg",
            StaticHeaders::PublicExpires,
            true
        )
    );
    assert_eq!(
        StaticHeaders::PublicExpires.cache_control(),
        &["max-age=31536000", "public"]
    );
    assert_eq!(
        StaticHeaders::PublicExpires.expires_secs(),
        Some(31_536_000)
    );
    assert_eq!(StaticHeaders::Immutable.expires_secs(), None);
}

#[test]
fn media_deny_prefixes() {
    assert_eq!(get("/media/custom_options/x"), error_page());
    assert_eq!(get("/media/downloadable/files/a.zip"), error_page());
    assert_eq!(get("/media/import/products.csv"), error_page());
    assert_eq!(get("/media/customer/"), error_page());
}

#[test]
fn media_theme_customization() {
    assert_eq!(get("/media/theme_customization/a.xml"), error_page());
    assert_eq!(get("/media/theme_customization/a.xml.bak"), error_page());
    assert_eq!(
        get("/media/theme_customization/logo.png"),
        static_file(
            "/app/pub/media/theme_customization/logo.png",
            StaticHeaders::Immutable,
            true
        )
    );
}

#[test]
fn pub_alias_nested_deny() {
    let fs = magento().with_file("/app/pub/media/import/p.csv");
    assert_eq!(get("/pub/media/customer/x"), error_page());
    assert_eq!(get("/pub/media/customer/x.jpg"), error_page());
    assert_eq!(
        route_with(&g3(), &fs, "GET", "/pub/media/import/p.csv"),
        error_page()
    );
    assert_eq!(get("/pub/media/custom_options/x"), error_page());
    assert_eq!(get("/pub/media/theme_customization/a.xml"), error_page());
    assert_eq!(
        get("/pub/media/theme_customization/logo.png"),
        static_file(
            "/app/pub/media/theme_customization/logo.png",
            StaticHeaders::None,
            true
        )
    );
}

#[test]
fn pub_alias_has_no_fallbacks_and_no_version_stripping() {
    // Exists only with the signature stripped: /pub/ does not strip it.
    assert_eq!(
        get("/pub/static/version1/frontend/Magento/luma/en_US/mage/calendar.css"),
        error_page()
    );
    assert_eq!(
        get("/pub/static/frontend/Magento/luma/en_US/mage/calendar.css"),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/mage/calendar.css",
            StaticHeaders::None,
            true
        )
    );
    // /pub/ itself: the index is pub/index.php → "/pub/index.php" → banned.
    assert_eq!(get("/pub/"), error_page());
    // A directory without slash redirects, keeping /pub/.
    assert_eq!(
        get("/pub/static/frontend?x=1"),
        Route::Redirect {
            location: "/pub/static/frontend/?x=1".into()
        }
    );
}

#[test]
fn pub_index_php_is_banned() {
    assert_eq!(get("/pub/index.php"), error_page());
    assert_eq!(get("/pub/get.php"), error_page());
}

#[test]
fn errors_prefix() {
    assert_eq!(get("/errors/local.xml"), error_page());
    assert_eq!(get("/errors/design.XML"), error_page());
    assert_eq!(get("/errors/processor.php"), error_page());
    assert_eq!(
        get("/errors/default/css/styles.css"),
        static_file(
            "/app/pub/errors/default/css/styles.css",
            StaticHeaders::None,
            false
        )
    );
    assert_eq!(
        get("/errors/503.php"),
        Route::FastCgi(main_php("/errors/503.php", ""))
    );
    // /errors/404.php requested directly is an ordinary PHP request.
    assert_eq!(
        get("/errors/404.php"),
        Route::FastCgi(main_php("/errors/404.php", ""))
    );
    // No index in /errors/ → 403 → error page.
    assert_eq!(get("/errors/"), error_page());
    assert_eq!(
        get("/errors/default"),
        Route::Redirect {
            location: "/errors/default/".into()
        }
    );
}

#[test]
fn user_ini_prefix() {
    assert_eq!(get("/.user.ini"), error_page());
    assert_eq!(get("/.user.ini.bak"), error_page());
    assert_eq!(get("/.user.inifoo/x"), error_page());
}

/// The sample serves these through its `/pub/` alias; magestack denies them
/// as it does at the docroot.
#[test]
fn pub_alias_denies_what_the_docroot_denies() {
    for p in [
        "/pub/.user.ini",
        "/pub/.user.ini.bak",
        "/pub/errors/local.xml",
        "/pub/errors/design.xml",
        "/pub/errors/Local.XML",
    ] {
        assert_eq!(get(p), error_page(), "{p}");
    }
    assert!(matches!(
        get("/pub/errors/default/css/styles.css"),
        Route::Static { .. }
    ));
}

#[test]
fn htaccess_and_phtml_are_banned() {
    assert_eq!(get("/.htaccess"), error_page());
    assert_eq!(get("/static/.HTACCESS"), error_page());
    assert_eq!(get("/app/code/x.phtml"), error_page());
    assert_eq!(get("/media/upload/evil.php"), error_page());
}

#[test]
fn static_missing_goes_to_static_php_with_original_args_appended() {
    assert_eq!(
        get("/static/version5/frontend/a/b.js?orig=1&x=2"),
        Route::FastCgi(main_php(
            "/static.php",
            "resource=frontend/a/b.js&orig=1&x=2"
        ))
    );
    // List B and other types take the same fallback.
    assert_eq!(
        get("/static/frontend/a/b.zip"),
        Route::FastCgi(main_php("/static.php", "resource=frontend/a/b.zip"))
    );
    assert_eq!(
        get("/static/frontend/a/b.js.map"),
        Route::FastCgi(main_php("/static.php", "resource=frontend/a/b.js.map"))
    );
    // A directory is not "-f".
    assert_eq!(
        get("/static/frontend"),
        Route::FastCgi(main_php("/static.php", "resource=frontend"))
    );
    assert_eq!(
        get("/static/"),
        Route::FastCgi(main_php("/static.php", "resource="))
    );
}

#[test]
fn static_php_resource_is_reescaped_like_nginx() {
    // Raw path had "%": captures are escaped with nginx's args table.
    assert_eq!(
        get("/static/a%20b%26c.css?v=1"),
        Route::FastCgi(main_php("/static.php", "resource=a%20b%26c.css&v=1"))
    );
    // Raw "+" also triggers escaping.
    assert_eq!(
        get("/static/a+b.css"),
        Route::FastCgi(main_php("/static.php", "resource=a%2Bb.css"))
    );
    // Neither: copied as is, so a raw "&" splits the parameter (as in nginx).
    assert_eq!(
        get("/static/a&b=c.css"),
        Route::FastCgi(main_php("/static.php", "resource=a&b=c.css"))
    );
}

#[test]
fn static_other_types_and_list_b() {
    assert_eq!(
        get("/static/deployed_version.txt"),
        static_file(
            "/app/pub/static/deployed_version.txt",
            StaticHeaders::None,
            true
        )
    );
    assert_eq!(
        get("/static/frontend/Magento/luma/en_US/requirejs-config.js.map"),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/requirejs-config.js.map",
            StaticHeaders::None,
            true
        )
    );
    assert_eq!(
        get("/static/version3/frontend/Magento/luma/en_US/i18n.csv"),
        static_file(
            "/app/pub/static/frontend/Magento/luma/en_US/i18n.csv",
            StaticHeaders::NoStore,
            true
        )
    );
}

#[test]
fn media_rules() {
    assert_eq!(
        get("/media/catalog/product/c/d/cd.jpg"),
        static_file(
            "/app/pub/media/catalog/product/c/d/cd.jpg",
            StaticHeaders::Immutable,
            true
        )
    );
    assert_eq!(
        get("/media/export.csv"),
        static_file("/app/pub/media/export.csv", StaticHeaders::NoStore, true)
    );
    assert_eq!(
        get("/media/readme.txt"),
        static_file("/app/pub/media/readme.txt", StaticHeaders::None, true)
    );
    assert_eq!(
        get("/media/missing.txt?a=b"),
        Route::FastCgi(main_php("/get.php", "a=b"))
    );
    // html is not in the media list A: served with the parent's XFO only.
    let fs = magento().with_file("/app/pub/media/page.html");
    assert_eq!(
        route_with(&g3(), &fs, "GET", "/media/page.html"),
        static_file("/app/pub/media/page.html", StaticHeaders::None, true)
    );
    // Directory: 301, then 403 (no index) → error page.
    assert_eq!(
        get("/media/wysiwyg"),
        Route::Redirect {
            location: "/media/wysiwyg/".into()
        }
    );
    assert_eq!(get("/media/wysiwyg/"), error_page());
}

#[test]
fn robots_txt_existing_file_is_served_statically() {
    assert_eq!(
        get("/robots.txt"),
        static_file("/app/pub/robots.txt", StaticHeaders::None, false)
    );
    // With a trailing slash the file is ENOTDIR: try_files falls back.
    assert_eq!(
        get("/robots.txt/"),
        Route::FastCgi(main_php("/index.php", ""))
    );
}

#[test]
fn missing_whitelisted_script_is_a_404_page() {
    let fs = magento().with_file("/app/pub/errors/404.php");
    let fs_without_get = MemFs::new()
        .with_file("/app/pub/index.php")
        .with_file("/app/pub/errors/404.php");
    assert_eq!(
        route_with(&g3(), &fs, "GET", "/get.php"),
        Route::FastCgi(main_php("/get.php", ""))
    );
    assert_eq!(
        route_with(&g3(), &fs_without_get, "GET", "/get.php"),
        error_page()
    );
}

#[test]
fn missing_error_page_script_gives_plain_404() {
    let fs = MemFs::new().with_file("/app/pub/index.php");
    assert_eq!(route_with(&g3(), &fs, "GET", "/cron.php"), Route::NotFound);
    assert_eq!(
        route_with(&g3(), &fs, "GET", "/errors/404.php"),
        Route::NotFound
    );
    // A 403 (deny) also ends as 404: the error page's own status wins.
    assert_eq!(route_with(&g3(), &fs, "GET", "/.user.ini"), Route::NotFound);
}

#[test]
fn error_pages_off_gives_plain_403_and_404() {
    let g1ish = g3().with_error_pages(false);
    assert_eq!(
        route_with(&g1ish, &magento(), "GET", "/cron.php"),
        Route::Forbidden
    );
    assert_eq!(
        route_with(&g1ish, &magento(), "GET", "/errors/"),
        Route::Forbidden
    );
    assert_eq!(
        route_with(&g1ish, &magento(), "GET", "/errors/missing.css"),
        Route::NotFound
    );
}

#[test]
fn error_page_turns_post_into_get_but_keeps_head() {
    let denied = php(route_with(
        &g3(),
        &magento(),
        "POST",
        "/media/customer/x.jpg",
    ));
    assert!(denied.error_page);
    assert_eq!(denied.request_method("POST"), "GET");
    assert_eq!(denied.request_method("HEAD"), "HEAD");
    let normal = php(route_with(&g3(), &magento(), "POST", "/checkout/cart/add"));
    assert!(!normal.error_page);
    assert_eq!(normal.request_method("POST"), "POST");
}

#[test]
fn error_page_drops_the_query_string() {
    assert_eq!(get("/cron.php?secret=1"), error_page());
}

#[test]
fn static_handler_methods() {
    assert_eq!(
        route_with(&g3(), &magento(), "HEAD", "/robots.txt"),
        static_file("/app/pub/robots.txt", StaticHeaders::None, false)
    );
    assert_eq!(
        route_with(&g3(), &magento(), "POST", "/robots.txt"),
        Route::MethodNotAllowed
    );
    assert_eq!(
        route_with(&g3(), &magento(), "PUT", "/robots.txt"),
        Route::MethodNotAllowed
    );
    // The index module ignores PUT, the static module refuses it.
    assert_eq!(
        route_with(&g3(), &magento(), "PUT", "/"),
        Route::MethodNotAllowed
    );
    // REST API calls never hit a file: they reach index.php with any method.
    assert_eq!(
        route_with(&g3(), &magento(), "PUT", "/rest/V1/carts/mine"),
        Route::FastCgi(main_php("/index.php", ""))
    );
    assert_eq!(
        route_with(&g3(), &magento(), "DELETE", "/media/catalog/x.jpg"),
        Route::FastCgi(main_php("/get.php", ""))
    );
    // POST to a directory still redirects (the directory check comes first).
    assert_eq!(
        route_with(&g3(), &magento(), "POST", "/media/wysiwyg"),
        Route::Redirect {
            location: "/media/wysiwyg/".into()
        }
    );
}

#[test]
fn directory_redirect_escapes_and_keeps_args() {
    let fs = magento().with_dir("/app/pub/my dir");
    assert_eq!(
        route_with(&g3(), &fs, "GET", "/my%20dir?a=1"),
        Route::Redirect {
            location: "/my%20dir/?a=1".into()
        }
    );
}

#[test]
fn directory_with_index_php_under_root_redirects_to_banned() {
    // try_files $uri/ → index → /sub/index.php → banned → error page.
    let fs = magento().with_file("/app/pub/sub/index.php");
    assert_eq!(route_with(&g3(), &fs, "GET", "/sub/"), error_page());
    let fs = magento().with_dir("/app/pub/empty");
    assert_eq!(route_with(&g3(), &fs, "GET", "/empty/"), error_page());
    assert_eq!(
        route_with(&g3(), &fs, "GET", "/empty"),
        Route::Redirect {
            location: "/empty/".into()
        }
    );
}

#[test]
fn setup_block() {
    assert_eq!(
        get("/setup"),
        Route::Redirect {
            location: "/setup/".into()
        }
    );
    let p = php(get("/setup/index.php/navigation?x=1"));
    assert_eq!(p.script_name, "/setup/index.php/navigation");
    assert_eq!(
        p.script_filename,
        PathBuf::from("/app/setup/index.php/navigation")
    );
    assert_eq!(p.query_string, "x=1");
    assert_eq!(p.profile, PhpProfile::Setup);
    assert_eq!(
        get("/setup/pub/styles.css"),
        static_file("/app/setup/pub/styles.css", StaticHeaders::None, true)
    );
    assert_eq!(get("/setup/src/Module.php"), error_page());
    assert_eq!(get("/setup/config.json"), error_page());
    // Outer regex is case-insensitive, nested ones are not.
    assert_eq!(get("/Setup/pub/styles.css"), error_page());
}

#[test]
fn setup_missing_index_still_goes_to_fastcgi() {
    // No try_files in the setup PHP block: FPM answers for a missing script.
    let fs = MemFs::new().with_file("/app/pub/index.php");
    let p = php(route_with(&g3(), &fs, "GET", "/setup/index.php"));
    assert_eq!(p.script_filename, PathBuf::from("/app/setup/index.php"));
    // But "/setup/" needs the index file to exist to get there.
    assert_eq!(route_with(&g3(), &fs, "GET", "/setup/"), Route::NotFound);
}

#[test]
fn update_block_splits_path_info() {
    let p = php(get("/update/index.php/session/status"));
    assert_eq!(p.script_name, "/update/index.php");
    assert_eq!(p.script_filename, PathBuf::from("/app/update/index.php"));
    assert_eq!(p.document_uri, "/update/index.php/session/status");
    assert_eq!(p.path_info.as_deref(), Some("/session/status"));
    assert_eq!(p.profile, PhpProfile::Update);
    assert_eq!(p.profile.php_value(), None);
    let p = php(get("/update/"));
    assert_eq!(p.script_name, "/update/index.php");
    assert_eq!(p.path_info.as_deref(), Some(""));
    assert_eq!(
        get("/update/pub/app.js"),
        static_file("/app/update/pub/app.js", StaticHeaders::None, true)
    );
    assert_eq!(get("/update/app/etc/env.php"), error_page());
}

#[test]
fn setup_index_with_trailing_slash_gets_fastcgi_index() {
    let p = php(get("/setup/index.php/"));
    assert_eq!(p.script_name, "/setup/index.php/index.php");
}

#[test]
fn newline_in_uri_follows_pcre_dollar_rules() {
    // "$" matches before a final "\n": the whitelist matches, the file does not exist.
    assert_eq!(get("/index.php%0A"), error_page());
    // A "\n" inside the rest stops the version rewrite: served as is → missing → 404 page.
    assert_eq!(get("/static/version1/a%0Ab.css"), error_page());
}

#[test]
fn too_many_rewrites_is_a_loop_error() {
    // Each version segment is one `rewrite … last`.
    let nine = "/static/".to_owned() + &"version1/".repeat(9) + "x.css";
    assert_eq!(
        get(&nine),
        Route::FastCgi(main_php("/static.php", "resource=x.css"))
    );
    let ten = "/static/".to_owned() + &"version1/".repeat(10) + "x.css";
    assert_eq!(get(&ten), Route::LoopError);
}

#[test]
fn loop_error_also_counts_the_error_page_redirect() {
    // 10 rewrites then a deny: the error_page redirect is the 11th change.
    let fs = magento().with_file("/app/pub/static/.htaccess");
    let p = "/static/".to_owned() + &"version/".repeat(10) + ".htaccess";
    assert_eq!(route_with(&g3(), &fs, "GET", &p), Route::LoopError);
    let p = "/static/".to_owned() + &"version/".repeat(9) + ".htaccess";
    assert_eq!(route_with(&g3(), &fs, "GET", &p), error_page());
}

#[test]
fn custom_mage_root_and_root_docroot() {
    let r = Router::new("/srv/www/pub/", Generation::G3).with_mage_root("/srv/magento");
    assert_eq!(r.docroot(), Path::new("/srv/www/pub"));
    let fs = MemFs::new()
        .with_file("/srv/magento/setup/index.php")
        .with_file("/srv/www/pub/index.php");
    let p = php(route_with(&r, &fs, "GET", "/setup/"));
    assert_eq!(p.document_root, PathBuf::from("/srv/magento"));
    let p = php(route_with(&r, &fs, "GET", "/x"));
    assert_eq!(p.script_filename, PathBuf::from("/srv/www/pub/index.php"));

    let r = Router::new("/", Generation::G3);
    let fs = MemFs::new().with_file("/index.php");
    let p = php(route_with(&r, &fs, "GET", "/"));
    assert_eq!(p.script_filename, PathBuf::from("/index.php"));
    assert_eq!(r.mage_root(), Path::new("/"));
}

#[test]
fn route_labels() {
    assert_eq!(get("/").as_str(), "fastcgi");
    assert_eq!(get("/robots.txt").as_str(), "static");
    assert_eq!(Route::LoopError.as_str(), "loop_error");
    assert!(add_header_applies(304));
    assert!(!add_header_applies(404));
    assert_eq!(PhpProfile::Setup.php_value(), Some(PHP_VALUE_SETUP));
    assert_eq!(PhpProfile::Main.timeout_secs(), 600);
}

#[test]
fn relative_and_empty_roots_never_join_to_filesystem_root() {
    let r = Router::new("pub", Generation::G3);
    assert_eq!(r.mage_root(), Path::new("."));
    let fs = MemFs::new()
        .with_file("./setup/index.php")
        .with_file("pub/index.php");
    let p = php(route_with(&r, &fs, "GET", "/setup/"));
    assert_eq!(p.script_filename, PathBuf::from("./setup/index.php"));
    let p = php(route_with(&r, &fs, "GET", "/x"));
    assert_eq!(p.script_filename, PathBuf::from("pub/index.php"));
    let r = Router::new("", Generation::G3);
    assert_eq!(r.docroot(), Path::new("."));
}
