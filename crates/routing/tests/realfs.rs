//! The router against a real directory tree through `RealFs`.

use std::fs;
use std::path::Path;

use magestack_routing::{
    normalize, FileKind, Fs, Generation, RealFs, Route, Router, StaticHeaders,
};

fn touch(root: &Path, rel: &str) {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
    }
    fs::write(&p, b"x").unwrap_or_else(|e| panic!("write {p:?}: {e}"));
}

fn route(router: &Router, target: &str) -> Route {
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let path = normalize(path).unwrap_or_else(|e| panic!("{target}: {e}"));
    router.route(&RealFs, "GET", &path, query)
}

#[test]
fn real_tree() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mage = tmp.path();
    let pub_dir = mage.join("pub");
    touch(mage, "pub/index.php");
    touch(mage, "pub/static.php");
    touch(mage, "pub/errors/404.php");
    touch(mage, "pub/static/frontend/a.css");
    touch(mage, "pub/robots.txt");
    fs::create_dir_all(pub_dir.join("media/wysiwyg")).unwrap_or_else(|e| panic!("{e}"));

    let router = Router::new(&pub_dir, Generation::G3);
    assert_eq!(router.mage_root(), mage);
    assert_eq!(
        route(&router, "/static/version9/frontend/a.css"),
        Route::Static {
            file: pub_dir.join("static/frontend/a.css"),
            headers: StaticHeaders::Immutable,
            x_frame_options: true,
        }
    );
    match route(&router, "/static/frontend/b.css?x=1") {
        Route::FastCgi(php) => {
            assert_eq!(php.script_filename, pub_dir.join("static.php"));
            assert_eq!(php.query_string, "resource=frontend/b.css&x=1");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        route(&router, "/media/wysiwyg"),
        Route::Redirect {
            location: "/media/wysiwyg/".into()
        }
    );
    // A file named with a trailing slash is ENOTDIR for the real filesystem too.
    assert_eq!(
        RealFs.kind(Path::new(&format!("{}/robots.txt/", pub_dir.display()))),
        FileKind::Missing
    );
    match route(&router, "/robots.txt/") {
        Route::FastCgi(php) => assert_eq!(php.script_name, "/index.php"),
        other => panic!("{other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn symlinks_are_followed() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let pub_dir = tmp.path().join("pub");
    touch(tmp.path(), "shared/logo.png");
    fs::create_dir_all(pub_dir.join("media")).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(
        tmp.path().join("shared/logo.png"),
        pub_dir.join("media/logo.png"),
    )
    .unwrap_or_else(|e| panic!("symlink: {e}"));
    std::os::unix::fs::symlink(
        tmp.path().join("nowhere"),
        pub_dir.join("media/dangling.png"),
    )
    .unwrap_or_else(|e| panic!("symlink: {e}"));
    let router = Router::new(&pub_dir, Generation::G3);
    assert!(matches!(
        route(&router, "/media/logo.png"),
        Route::Static { .. }
    ));
    // Dangling: missing → get.php (which does not exist here) → 404 page missing → plain 404.
    assert_eq!(route(&router, "/media/dangling.png"), Route::NotFound);
}
