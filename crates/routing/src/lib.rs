//! Magento's `nginx.conf.sample` routing rules as a pure function: a
//! normalized request path, the method, the query string and a few
//! filesystem facts go in; a [`Route`] comes out.
//!
//! # What is emulated
//!
//! The server block of the sample as of **generation G3** (Mage-OS /
//! Magento 2.4-develop), with **G2** (what most 2.4.x installs ship) as a
//! switch ([`Generation`]); the two differ only in the cache headers of
//! long-lived static and media files. See the design doc
//! `magento-nginx-and-deploy.md`, part 1, for the rules; in short:
//!
//! - `$uri` is built like nginx: `%XX` decoded (`%2F` and `%2E` too, before
//!   matching), `//` merged, `.`/`..` resolved, `%00` and escapes above root
//!   rejected ([`normalize`], [`UriError`] → 400).
//! - Locations are chosen with nginx's algorithm: longest prefix, then that
//!   prefix's nested regexes, then top-level regexes in file order (`/setup`,
//!   `/update`, the PHP whitelist, the banned-files rule), else the prefix.
//! - Each location runs nginx's phases: `rewrite … last` (version stripping,
//!   static.php fallback), `deny all`, `try_files`, and the index/static
//!   content handlers (301 for a directory without slash, 403 for a
//!   directory without index, 405 for methods the static handler refuses).
//! - Internal redirects (rewrites, try_files fallbacks, the index file and
//!   `error_page 404 403 = /errors/404.php`) restart the search here, at most
//!   [`MAX_URI_CHANGES`] times ([`Route::LoopError`] → 500).
//!
//! # Using it from the edge
//!
//! ```
//! use magestack_routing::{normalize, MemFs, Route, Router, Generation};
//!
//! let fs = MemFs::new().with_file("/app/pub/index.php").with_file("/app/pub/robots.txt");
//! let router = Router::new("/app/pub", Generation::G3);
//!
//! let path = normalize("/women/tops.html").expect("400 otherwise");
//! match router.route(&fs, "GET", &path, Some("p=2")) {
//!     Route::FastCgi(php) => {
//!         assert_eq!(php.script_name, "/index.php");
//!         assert_eq!(php.query_string, "p=2");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! - [`Route::Static`]: serve the file; add the headers of [`StaticHeaders`]
//!   and `X-Frame-Options: SAMEORIGIN` when asked, but only for the statuses
//!   of [`add_header_applies`].
//! - [`Route::FastCgi`]: send to PHP-FPM with the given CGI values, plus
//!   `REQUEST_URI` = the raw client target. When
//!   [`FastCgiRoute::error_page`] is set the request was denied or not found
//!   and reached `/errors/404.php` through `error_page`: pass PHP's status
//!   through (Magento answers 404), send `REQUEST_METHOD` from
//!   [`FastCgiRoute::request_method`], log it as denied. Never add
//!   `X-Frame-Options` to PHP responses (Magento sends its own).
//! - [`Route::NotFound`] / [`Route::Forbidden`] / [`Route::MethodNotAllowed`]
//!   / [`Route::LoopError`]: the edge's own 404 / 403 / 405 / 500 page.
//! - [`Route::Redirect`]: 301 with that `Location`.
//!
//! [`is_gzip_type`] and [`charset_applies`] answer the content-type parts of
//! the sample's `gzip_types` and nginx's `charset_types`.
//!
//! # Non-goals
//!
//! No I/O of its own (filesystem facts come through [`Fs`]), no tokio, no
//! sockets, no clock, no HTTP types. It does not build responses, FastCGI
//! parameters beyond the routing-dependent ones, or headers. G1 (2.0-era
//! sample) is not emulated beyond [`Router::with_error_pages`]`(false)`.
//! The commented-out parts of the sample (image_filter, S3, production
//! `add_header` in `/static/`) are not active and not emulated.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod content_type;
mod fs;
mod matchers;
mod router;
mod uri;

pub use content_type::{
    charset_applies, is_gzip_type, mime_type, CHARSET, CHARSET_TYPES, GZIP_TYPES,
};
pub use fs::{FileKind, Fs, MemFs, RealFs};
pub use router::{
    add_header_applies, is_denied, FastCgiRoute, Generation, PhpProfile, Route, Router,
    StaticHeaders, ERROR_PAGE_URI, MAX_URI_CHANGES, PHP_FLAG, PHP_VALUE_MAIN, PHP_VALUE_SETUP,
    X_FRAME_OPTIONS,
};
pub use uri::{normalize, NormalizedPath, UriError};
