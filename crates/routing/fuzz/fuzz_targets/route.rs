//! Arbitrary request targets through `normalize` and `route`.
//!
//! Run with `cargo fuzz run route` from `crates/routing/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use magestack_routing::{normalize, Generation, MemFs, Route, Router};

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    // First byte picks the method and generation; the rest is the target.
    let (selector, target) = match target.char_indices().nth(1) {
        Some((i, _)) => (target.as_bytes()[0], &target[i..]),
        None => (0, target),
    };
    let method = ["GET", "HEAD", "POST", "PUT", "OPTIONS"][usize::from(selector % 5)];
    let generation = if selector & 0x80 == 0 { Generation::G3 } else { Generation::G2 };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let Ok(path) = normalize(path) else {
        return;
    };
    let fs = MemFs::new()
        .with_file("/app/pub/index.php")
        .with_file("/app/pub/get.php")
        .with_file("/app/pub/static.php")
        .with_file("/app/pub/errors/404.php")
        .with_file("/app/pub/static/frontend/a.css")
        .with_dir("/app/pub/media/catalog")
        .with_file("/app/setup/index.php");
    let router = Router::new("/app/pub", generation).with_error_pages(selector & 0x40 == 0);
    match router.route(&fs, method, &path, query) {
        Route::Static { file, .. } => assert!(file.starts_with("/app")),
        Route::FastCgi(php) => assert!(php.script_filename.starts_with("/app")),
        _ => {}
    }
});
