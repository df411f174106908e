//! The location tree of Magento's `nginx.conf.sample` and nginx's request
//! phases (rewrite → access → try_files → content) for each location.

use std::path::{Path, PathBuf};

use crate::fs::{FileKind, Fs};
use crate::matchers::{self, App};
use crate::uri::{escape, Escape, NormalizedPath};

/// nginx's `NGX_HTTP_MAX_URI_CHANGES`: internal redirects and `rewrite … last`
/// allowed per request; the 11th answers 500.
pub const MAX_URI_CHANGES: u8 = 10;

/// The internal redirect target of `error_page 404 403 = /errors/404.php`.
pub const ERROR_PAGE_URI: &str = "/errors/404.php";

/// Value of every `X-Frame-Options` header the sample adds.
pub const X_FRAME_OPTIONS: &str = "SAMEORIGIN";

/// `PHP_FLAG` sent by the main and setup PHP blocks (newline-separated ini
/// lines, spaces included, exactly as nginx sends them).
pub const PHP_FLAG: &str = "session.auto_start=off \n suhosin.session.cryptua=off";

/// `PHP_VALUE` sent by the main PHP block (G2/G3).
pub const PHP_VALUE_MAIN: &str = "memory_limit=756M \n max_execution_time=18000";

/// `PHP_VALUE` sent by the `/setup` PHP block.
pub const PHP_VALUE_SETUP: &str = "memory_limit=756M \n max_execution_time=600";

/// Which generation of `nginx.conf.sample` to emulate (design doc 1.0).
///
/// They differ only in the cache headers of list-A static and media files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Generation {
    /// Magento 2.4.x as most installs ship it: `Cache-Control: public` plus
    /// `expires +1y`.
    G2,
    /// Current Mage-OS / 2.4-develop: one
    /// `Cache-Control: public, max-age=31536000, immutable`, no `Expires`.
    #[default]
    G3,
}

impl Generation {
    /// A short label for logs and config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Generation::G2 => "g2",
            Generation::G3 => "g3",
        }
    }
}

/// Which cache headers the edge adds to a static file it serves.
///
/// nginx emits them (`add_header`, `expires`) only for the statuses in
/// [`add_header_applies`] (no `always` flag in the sample), so a 304 gets
/// them and a 416 does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaticHeaders {
    /// G3 list A: `Cache-Control: public, max-age=31536000, immutable`.
    Immutable,
    /// G2 list A: `Cache-Control: public` **and** `expires +1y`, i.e.
    /// `Expires: <now + 1 year>` plus a second `Cache-Control: max-age=31536000`
    /// line (nginx writes the `expires` pair first, then `public`).
    PublicExpires,
    /// List B (zip, gz, gzip, bz2, csv, xml): `Cache-Control: no-store`.
    NoStore,
    /// No cache header from the location.
    None,
}

impl StaticHeaders {
    /// The `Cache-Control` header lines, in nginx's order.
    pub const fn cache_control(self) -> &'static [&'static str] {
        match self {
            StaticHeaders::Immutable => &["public, max-age=31536000, immutable"],
            StaticHeaders::PublicExpires => &["max-age=31536000", "public"],
            StaticHeaders::NoStore => &["no-store"],
            StaticHeaders::None => &[],
        }
    }

    /// Seconds to add to "now" for an `Expires` header, if one is sent.
    pub const fn expires_secs(self) -> Option<u64> {
        match self {
            StaticHeaders::PublicExpires => Some(31_536_000),
            _ => None,
        }
    }

    /// A short label for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            StaticHeaders::Immutable => "immutable",
            StaticHeaders::PublicExpires => "public-expires",
            StaticHeaders::NoStore => "no-store",
            StaticHeaders::None => "none",
        }
    }
}

/// Whether nginx's `add_header`/`expires` (without `always`) apply to a
/// response with this status: 200, 201, 204, 206, 301, 302, 303, 304, 307, 308.
pub const fn add_header_applies(status: u16) -> bool {
    matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// Which PHP block of the sample handles the script, i.e. which extra
/// FastCGI parameters and timeouts go with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhpProfile {
    /// The main whitelist block: [`PHP_FLAG`], [`PHP_VALUE_MAIN`], read and
    /// connect timeouts 600 s, `fastcgi_buffer_size 32k`.
    Main,
    /// `/setup/index.php`: [`PHP_FLAG`], [`PHP_VALUE_SETUP`], timeouts 600 s.
    Setup,
    /// `/update/index.php`: no `PHP_FLAG`/`PHP_VALUE`, nginx's default 60 s
    /// timeouts, and `PATH_INFO` is sent.
    Update,
}

impl PhpProfile {
    /// The `PHP_FLAG` parameter, if the block sends one.
    pub const fn php_flag(self) -> Option<&'static str> {
        match self {
            PhpProfile::Main | PhpProfile::Setup => Some(PHP_FLAG),
            PhpProfile::Update => None,
        }
    }

    /// The `PHP_VALUE` parameter, if the block sends one.
    pub const fn php_value(self) -> Option<&'static str> {
        match self {
            PhpProfile::Main => Some(PHP_VALUE_MAIN),
            PhpProfile::Setup => Some(PHP_VALUE_SETUP),
            PhpProfile::Update => None,
        }
    }

    /// `fastcgi_read_timeout` (and `fastcgi_connect_timeout`) in seconds.
    pub const fn timeout_secs(self) -> u64 {
        match self {
            PhpProfile::Main | PhpProfile::Setup => 600,
            PhpProfile::Update => 60,
        }
    }

    /// A short label for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            PhpProfile::Main => "main",
            PhpProfile::Setup => "setup",
            PhpProfile::Update => "update",
        }
    }
}

/// A request for PHP-FPM, with the CGI values nginx would compute.
///
/// The edge adds what only it knows: `REQUEST_URI` (the **raw** client
/// target, untouched by rewrites, try_files and error_page), `REQUEST_METHOD`
/// (see [`FastCgiRoute::request_method`]), headers, addresses, `HTTPS`, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastCgiRoute {
    /// `SCRIPT_NAME` (`$fastcgi_script_name`), e.g. `/index.php`.
    pub script_name: String,
    /// `SCRIPT_FILENAME` = `$document_root$fastcgi_script_name`.
    pub script_filename: PathBuf,
    /// `DOCUMENT_ROOT`: the docroot (`pub/`), or the Magento root for
    /// `/setup` and `/update`.
    pub document_root: PathBuf,
    /// `DOCUMENT_URI` (`$uri` after rewrites), e.g. `/static.php`.
    pub document_uri: String,
    /// `QUERY_STRING` (`$args` after rewrites), `""` when none, e.g.
    /// `resource=frontend/x.css&orig=1`.
    pub query_string: String,
    /// `PATH_INFO`, sent only when `Some` (the `/update` block; may be empty).
    pub path_info: Option<String>,
    /// Which PHP block: extra parameters and timeouts.
    pub profile: PhpProfile,
    /// The request reached PHP through `error_page 404 403 = /errors/404.php`:
    /// nginx denied or did not find the original URI. The status is whatever
    /// PHP answers (Magento's 404 page answers 404); the edge passes it
    /// through, must use [`FastCgiRoute::request_method`], and should log the
    /// request as denied/not found.
    pub error_page: bool,
}

impl FastCgiRoute {
    /// `REQUEST_METHOD` to send: nginx turns every method but `HEAD` into
    /// `GET` when it redirects to an error page.
    pub fn request_method<'a>(&self, original: &'a str) -> &'a str {
        if self.error_page && original != "HEAD" {
            "GET"
        } else {
            original
        }
    }
}

/// The routing decision for one request.
///
/// Deliberately not `#[non_exhaustive]`: the edge must handle every outcome,
/// and the compiler should tell it when one is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Serve this existing regular file (status 200/206/304 as usual).
    Static {
        /// Absolute path of the file.
        file: PathBuf,
        /// Cache headers of the location.
        headers: StaticHeaders,
        /// Add `X-Frame-Options: SAMEORIGIN` ([`X_FRAME_OPTIONS`]).
        x_frame_options: bool,
    },
    /// Pass the request to PHP-FPM.
    FastCgi(FastCgiRoute),
    /// 301: a directory was requested without its trailing slash.
    Redirect {
        /// The escaped path (plus `?args`), e.g. `/media/catalog/`. nginx
        /// makes it absolute (`absolute_redirect on`) with the request's
        /// scheme and `Host`, adding the port when it is not the default.
        location: String,
    },
    /// Plain 404 from the edge. With error pages on, this means nginx's own
    /// 404 after `/errors/404.php` itself was missing.
    NotFound,
    /// Plain 403 (only when error pages are off, see
    /// [`Router::with_error_pages`]): `deny all`, or a directory without an
    /// index file (`autoindex off`).
    Forbidden,
    /// 405: a method other than GET/HEAD/POST for a static file or
    /// directory, or POST to a static file (nginx's static handler).
    MethodNotAllowed,
    /// 500: more than [`MAX_URI_CHANGES`] internal redirects or rewrites.
    LoopError,
}

impl Route {
    /// A short label for logs and metrics.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Route::Static { .. } => "static",
            Route::FastCgi(_) => "fastcgi",
            Route::Redirect { .. } => "redirect",
            Route::NotFound => "not_found",
            Route::Forbidden => "forbidden",
            Route::MethodNotAllowed => "method_not_allowed",
            Route::LoopError => "loop_error",
        }
    }
}

/// The sample's server block for one Magento install.
///
/// Immutable and cheap to share; [`Router::route`] does the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    docroot: PathBuf,
    mage_root: PathBuf,
    generation: Generation,
    error_pages: bool,
}

/// Status codes nginx turns into `error_page` redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrStatus {
    Forbidden,
    NotFound,
}

/// What one pass through a location produced.
#[derive(Debug)]
enum Step {
    Done(Route),
    /// Internal redirect or `rewrite … last`: restart the location search.
    Restart {
        uri: Vec<u8>,
        args: String,
    },
    Error(ErrStatus),
}

/// How a location maps `$uri` to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    /// `root $MAGE_ROOT/pub` (server level).
    Doc,
    /// `root $MAGE_ROOT` (`/setup`, `/update`).
    Mage,
    /// `location /pub/ { alias $MAGE_ROOT/pub/; }`.
    PubAlias,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// The long-lived list (A).
    LongLived,
    /// The no-store list (B).
    NoStore,
}

/// Every location of the sample (nested ones named after their parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// `location /.user.ini { deny all; }`
    UserIni,
    /// `location / { try_files $uri $uri/ /index.php$is_args$args; }`
    Root,
    /// `location /pub/ { alias …; add_header X-Frame-Options …; }`
    Pub,
    /// `/pub/` nested `~ ^/pub/media/(downloadable|…)` deny.
    PubDeny,
    /// `location /static/` itself.
    Static,
    /// `/static/` nested `~ ^/static/version\d*/`.
    StaticVersion,
    /// `/static/` nested extension lists.
    StaticExt(Ext),
    /// `location /media/` itself.
    Media,
    /// `/media/` nested `~ ^/media/theme_customization/.*\.xml` deny.
    MediaThemeXml,
    /// `/media/` nested extension lists.
    MediaExt(Ext),
    /// `/media/customer/`, `/media/downloadable/`, `/media/import/`,
    /// `/media/custom_options/`: deny.
    MediaDeny,
    /// `location /errors/` itself.
    Errors,
    /// `/errors/` nested `~* \.xml$` deny.
    ErrorsXml,
    /// `~* ^/setup($|/)` / `~* ^/update($|/)` itself (`root $MAGE_ROOT`).
    App(App),
    /// Nested `~ ^/<app>/index.php`: FastCGI.
    AppIndex(App),
    /// Nested `~ ^/<app>/(?!pub/).`: deny.
    AppDeny(App),
    /// Nested `~ ^/<app>/pub/`: static + XFO.
    AppPub(App),
    /// The PHP whitelist regex.
    Php,
    /// The banned-files regex.
    Banned,
}

impl Loc {
    /// A `deny all` location (answered 403, then the error page); `run`
    /// answers the same set (its match must name every location).
    fn is_deny(self) -> bool {
        matches!(
            self,
            Loc::UserIni
                | Loc::PubDeny
                | Loc::MediaThemeXml
                | Loc::MediaDeny
                | Loc::ErrorsXml
                | Loc::AppDeny(_)
                | Loc::Banned
        )
    }
}

/// Top-level prefix locations (the longest match wins).
const PREFIXES: &[(&[u8], Loc)] = &[
    (b"/.user.ini", Loc::UserIni),
    (b"/", Loc::Root),
    (b"/pub/", Loc::Pub),
    (b"/static/", Loc::Static),
    (b"/media/", Loc::Media),
    (b"/media/customer/", Loc::MediaDeny),
    (b"/media/downloadable/", Loc::MediaDeny),
    (b"/media/import/", Loc::MediaDeny),
    (b"/media/custom_options/", Loc::MediaDeny),
    (b"/errors/", Loc::Errors),
];

/// Whether the sample denies `path` by its location alone, before any file
/// is looked at: `/.user.ini`, the banned files (`*.php` outside the
/// whitelist, `.git`, `.htaccess` …), `/media/customer/` and the other media
/// denies, XML under `/errors/` and theme media, `/setup/` and `/update/`
/// outside `pub/`. For an edge without a docroot (an HTTP upstream), which
/// has no filesystem to route by but should not forward these either.
#[must_use]
pub fn is_denied(path: &NormalizedPath) -> bool {
    find_location(path.as_bytes()).is_deny()
}

/// nginx's location search (design doc 1.2) over the sample's tree.
fn find_location(uri: &[u8]) -> Loc {
    // 1. Longest top-level prefix. "/" matches every normalized URI.
    let prefix = PREFIXES
        .iter()
        .filter(|(p, _)| uri.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map_or(Loc::Root, |&(_, loc)| loc);

    // 2. Nested locations of that prefix, in file order; a match wins.
    let nested = match prefix {
        Loc::Pub => {
            // What the docroot denies by exact name or nested location, its
            // `/pub/` alias denies too. Magento's sample does not (it serves
            // `/pub/.user.ini` and `/pub/errors/local.xml`): a departure.
            let aliased = uri.get(4..).unwrap_or(b"/");
            if matchers::pub_media_deny(uri) {
                Some(Loc::PubDeny)
            } else if aliased.starts_with(b"/.user.ini") {
                Some(Loc::UserIni)
            } else if aliased.starts_with(b"/errors/") && matchers::xml_dollar_ci(aliased) {
                Some(Loc::ErrorsXml)
            } else {
                None
            }
        }
        Loc::Static => {
            if matchers::static_version(uri) {
                Some(Loc::StaticVersion)
            } else if matchers::static_ext_a(uri) {
                Some(Loc::StaticExt(Ext::LongLived))
            } else if matchers::ext_b(uri) {
                Some(Loc::StaticExt(Ext::NoStore))
            } else {
                None
            }
        }
        Loc::Media => {
            if matchers::media_theme_xml(uri) {
                Some(Loc::MediaThemeXml)
            } else if matchers::media_ext_a(uri) {
                Some(Loc::MediaExt(Ext::LongLived))
            } else if matchers::ext_b(uri) {
                Some(Loc::MediaExt(Ext::NoStore))
            } else {
                None
            }
        }
        Loc::Errors => matchers::xml_dollar_ci(uri).then_some(Loc::ErrorsXml),
        _ => None,
    };
    if let Some(loc) = nested {
        return loc;
    }

    // 3. Top-level regexes in file order; the first match, then its nested
    //    regexes, wins over the remembered prefix.
    for app in [App::Setup, App::Update] {
        if matchers::app_outer(uri, app) {
            return if matchers::app_index(uri, app) {
                Loc::AppIndex(app)
            } else if matchers::app_deny(uri, app) {
                Loc::AppDeny(app)
            } else if matchers::app_pub(uri, app) {
                Loc::AppPub(app)
            } else {
                Loc::App(app)
            };
        }
    }
    if matchers::php_whitelist(uri) {
        return Loc::Php;
    }
    if matchers::banned(uri) {
        return Loc::Banned;
    }
    prefix
}

/// Per-request variables that survive internal redirects.
#[derive(Debug)]
struct Request {
    uri: Vec<u8>,
    args: String,
    method: Method,
    escape_captures: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Post,
    Other,
}

impl Method {
    fn parse(m: &str) -> Self {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            _ => Method::Other,
        }
    }

    /// Methods nginx's index and static handlers accept at all.
    fn static_ok(self) -> bool {
        !matches!(self, Method::Other)
    }
}

impl Router {
    /// A router for the docroot `pub/` (the `root $MAGE_ROOT/pub;` of the
    /// sample), emulating `generation`, with error pages on and
    /// `$MAGE_ROOT` = the docroot's parent.
    ///
    /// Paths are used as given (no canonicalization, no I/O); pass an
    /// absolute path. Trailing slashes are dropped; a relative `pub` gets
    /// `.` as `$MAGE_ROOT`.
    #[must_use]
    pub fn new(docroot: impl Into<PathBuf>, generation: Generation) -> Self {
        let docroot = clean_root(docroot.into());
        let mage_root = match docroot.parent() {
            // "pub" → "."; never "", which would join to "/…".
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_path_buf(),
            None => docroot.clone(),
        };
        Self {
            docroot,
            mage_root,
            generation,
            error_pages: true,
        }
    }

    /// Sets `$MAGE_ROOT` (root of `/setup` and `/update`), when it is not
    /// the docroot's parent.
    #[must_use]
    pub fn with_mage_root(mut self, mage_root: impl Into<PathBuf>) -> Self {
        self.mage_root = clean_root(mage_root.into());
        self
    }

    /// Turns `error_page 404 403 = /errors/404.php` on (default, G2/G3) or
    /// off (as in G1: denied paths then answer [`Route::Forbidden`]).
    #[must_use]
    pub fn with_error_pages(mut self, on: bool) -> Self {
        self.error_pages = on;
        self
    }

    /// The document root (`$MAGE_ROOT/pub`).
    pub fn docroot(&self) -> &Path {
        &self.docroot
    }

    /// `$MAGE_ROOT`.
    pub fn mage_root(&self) -> &Path {
        &self.mage_root
    }

    /// The emulated generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Whether the 404/403 error page redirect is on.
    pub fn error_pages(&self) -> bool {
        self.error_pages
    }

    /// Routes one request as nginx with the sample would.
    ///
    /// `method` is the request method (`&http::Method` works), `path` the
    /// output of [`crate::normalize`], `query` the raw query string without
    /// `?` (`$args`). Filesystem facts come from `fs`; nothing else is read.
    /// Internal redirects (rewrite `last`, try_files fallbacks, the index
    /// file, `error_page`) are followed here, at most [`MAX_URI_CHANGES`].
    #[must_use]
    pub fn route<F: Fs + ?Sized>(
        &self,
        fs: &F,
        method: impl AsRef<str>,
        path: &NormalizedPath,
        query: Option<&str>,
    ) -> Route {
        let mut req = Request {
            uri: path.as_bytes().to_vec(),
            args: query.unwrap_or("").to_owned(),
            method: Method::parse(method.as_ref()),
            escape_captures: path.had_escapes(),
        };
        // nginx starts at MAX + 1 and fails when a change brings it to 0.
        let mut uri_changes = MAX_URI_CHANGES + 1;
        let mut error_page_used = false;
        loop {
            let loc = find_location(&req.uri);
            match self.run(fs, loc, &req) {
                Step::Done(Route::FastCgi(mut php)) => {
                    php.error_page = error_page_used;
                    return Route::FastCgi(php);
                }
                Step::Done(route) => return route,
                Step::Restart { uri, args } => {
                    uri_changes -= 1;
                    if uri_changes == 0 {
                        return Route::LoopError;
                    }
                    req.uri = uri;
                    req.args = args;
                }
                Step::Error(status) => {
                    if !self.error_pages || error_page_used {
                        return match status {
                            ErrStatus::Forbidden => Route::Forbidden,
                            ErrStatus::NotFound => Route::NotFound,
                        };
                    }
                    // `error_page … = /errors/404.php`: once per request
                    // (recursive_error_pages off), GET unless HEAD, no args.
                    error_page_used = true;
                    if req.method != Method::Head {
                        req.method = Method::Get;
                    }
                    uri_changes -= 1;
                    if uri_changes == 0 {
                        return Route::LoopError;
                    }
                    req.uri = ERROR_PAGE_URI.as_bytes().to_vec();
                    req.args.clear();
                }
            }
        }
    }

    /// Runs the phases of one location.
    fn run<F: Fs + ?Sized>(&self, fs: &F, loc: Loc, req: &Request) -> Step {
        match loc {
            Loc::UserIni
            | Loc::PubDeny
            | Loc::MediaThemeXml
            | Loc::MediaDeny
            | Loc::ErrorsXml
            | Loc::AppDeny(_)
            | Loc::Banned => Step::Error(ErrStatus::Forbidden),
            Loc::Root => self
                .try_files(fs, req, "/index.php")
                .unwrap_or_else(|| self.content(fs, req, Root::Doc, StaticHeaders::None, false)),
            Loc::Pub => self.content(fs, req, Root::PubAlias, StaticHeaders::None, true),
            Loc::Static => self
                .static_php_fallback(fs, req)
                .unwrap_or_else(|| self.content(fs, req, Root::Doc, StaticHeaders::None, true)),
            Loc::StaticVersion => match matchers::static_version_rewrite(&req.uri) {
                Some(rest) => Step::Restart {
                    uri: [&b"/static/"[..], rest].concat(),
                    args: req.args.clone(),
                },
                // The rewrite regex did not match (a "\n" inside): the
                // location serves the URI as is, with the parent's XFO.
                None => self.content(fs, req, Root::Doc, StaticHeaders::None, true),
            },
            Loc::StaticExt(ext) => self
                .static_php_fallback(fs, req)
                .unwrap_or_else(|| self.content(fs, req, Root::Doc, self.ext_headers(ext), true)),
            Loc::Media => self
                .try_files(fs, req, "/get.php")
                .unwrap_or_else(|| self.content(fs, req, Root::Doc, StaticHeaders::None, true)),
            Loc::MediaExt(ext) => self
                .try_files(fs, req, "/get.php")
                .unwrap_or_else(|| self.content(fs, req, Root::Doc, self.ext_headers(ext), true)),
            Loc::Errors => self.content(fs, req, Root::Doc, StaticHeaders::None, false),
            Loc::App(_) => self.content(fs, req, Root::Mage, StaticHeaders::None, false),
            Loc::AppPub(_) => self.content(fs, req, Root::Mage, StaticHeaders::None, true),
            Loc::AppIndex(App::Setup) => {
                let script_name = fastcgi_script_name(&req.uri);
                Step::Done(Route::FastCgi(FastCgiRoute {
                    script_filename: join(&self.mage_root, script_name.as_bytes()),
                    script_name,
                    document_root: self.mage_root.clone(),
                    document_uri: lossy(&req.uri),
                    query_string: req.args.clone(),
                    path_info: None,
                    profile: PhpProfile::Setup,
                    error_page: false,
                }))
            }
            Loc::AppIndex(App::Update) => {
                let (script_name, path_info) = match matchers::update_split_path_info(&req.uri) {
                    Some((script, info)) => (lossy(script), lossy(info)),
                    None => (fastcgi_script_name(&req.uri), String::new()),
                };
                Step::Done(Route::FastCgi(FastCgiRoute {
                    script_filename: join(&self.mage_root, script_name.as_bytes()),
                    script_name,
                    document_root: self.mage_root.clone(),
                    document_uri: lossy(&req.uri),
                    query_string: req.args.clone(),
                    path_info: Some(path_info),
                    profile: PhpProfile::Update,
                    error_page: false,
                }))
            }
            Loc::Php => {
                // try_files $uri =404: the script must be a non-directory.
                match self.stat(fs, Root::Doc, &req.uri) {
                    FileKind::File | FileKind::Other => {}
                    FileKind::Dir | FileKind::Missing => return Step::Error(ErrStatus::NotFound),
                }
                let script_name = fastcgi_script_name(&req.uri);
                Step::Done(Route::FastCgi(FastCgiRoute {
                    script_filename: join(&self.docroot, script_name.as_bytes()),
                    script_name,
                    document_root: self.docroot.clone(),
                    document_uri: lossy(&req.uri),
                    query_string: req.args.clone(),
                    path_info: None,
                    profile: PhpProfile::Main,
                    error_page: false,
                }))
            }
        }
    }

    fn ext_headers(&self, ext: Ext) -> StaticHeaders {
        match (ext, self.generation) {
            (Ext::LongLived, Generation::G3) => StaticHeaders::Immutable,
            (Ext::LongLived, Generation::G2) => StaticHeaders::PublicExpires,
            (Ext::NoStore, _) => StaticHeaders::NoStore,
        }
    }

    /// `try_files $uri $uri/ <fallback>$is_args$args;` — `None` to go on with
    /// the content phase (something exists there), else the redirect.
    fn try_files<F: Fs + ?Sized>(&self, fs: &F, req: &Request, fallback: &str) -> Option<Step> {
        // `$uri` accepts any non-directory, `$uri/` a directory: together,
        // anything that exists. Neither changes $uri without an alias.
        if self.stat(fs, Root::Doc, &req.uri) != FileKind::Missing {
            return None;
        }
        Some(Step::Restart {
            uri: fallback.as_bytes().to_vec(),
            args: req.args.clone(),
        })
    }

    /// `if (!-f $request_filename) { rewrite ^/static/(version\d*/)?(.*)$
    /// /static.php?resource=$2 last; }`
    fn static_php_fallback<F: Fs + ?Sized>(&self, fs: &F, req: &Request) -> Option<Step> {
        if self.stat(fs, Root::Doc, &req.uri) == FileKind::File {
            return None;
        }
        let resource = matchers::static_php_resource(&req.uri)?;
        let mut args = String::from("resource=");
        if req.escape_captures {
            args.push_str(&escape(resource, Escape::Args));
        } else {
            args.push_str(&String::from_utf8_lossy(resource));
        }
        // A replacement with "?" puts its args first and appends the old ones.
        if !req.args.is_empty() {
            args.push('&');
            args.push_str(&req.args);
        }
        Some(Step::Restart {
            uri: b"/static.php".to_vec(),
            args,
        })
    }

    /// nginx's content phase for a location without `fastcgi_pass`: the
    /// index module, then the static module (autoindex is off).
    fn content<F: Fs + ?Sized>(
        &self,
        fs: &F,
        req: &Request,
        root: Root,
        headers: StaticHeaders,
        x_frame_options: bool,
    ) -> Step {
        let uri = &req.uri;
        if uri.ends_with(b"/") {
            if req.method.static_ok() {
                // index index.php;
                let index_uri = [uri.as_slice(), b"index.php"].concat();
                if self.stat(fs, root, &index_uri) != FileKind::Missing {
                    return Step::Restart {
                        uri: index_uri,
                        args: req.args.clone(),
                    };
                }
                if self.stat(fs, root, uri) != FileKind::Dir {
                    return Step::Error(ErrStatus::NotFound);
                }
                // Directory without index: static declines, autoindex off → 403.
                return Step::Error(ErrStatus::Forbidden);
            }
            return Step::Done(Route::MethodNotAllowed);
        }
        if !req.method.static_ok() {
            return Step::Done(Route::MethodNotAllowed);
        }
        match self.stat(fs, root, uri) {
            FileKind::Missing | FileKind::Other => Step::Error(ErrStatus::NotFound),
            FileKind::Dir => {
                let mut location = escape(uri, Escape::Uri);
                location.push('/');
                if !req.args.is_empty() {
                    location.push('?');
                    location.push_str(&req.args);
                }
                Step::Done(Route::Redirect { location })
            }
            FileKind::File if req.method == Method::Post => Step::Done(Route::MethodNotAllowed),
            FileKind::File => Step::Done(Route::Static {
                file: self.map(root, uri),
                headers,
                x_frame_options,
            }),
        }
    }

    /// The file a URI names under a location's root or alias.
    fn map(&self, root: Root, uri: &[u8]) -> PathBuf {
        match root {
            Root::Doc => join(&self.docroot, uri),
            Root::Mage => join(&self.mage_root, uri),
            // alias $MAGE_ROOT/pub/ for /pub/: "/pub/x" → docroot + "/x".
            Root::PubAlias => join(&self.docroot, uri.get(4..).unwrap_or(b"/")),
        }
    }

    /// `stat()` with the `ENOTDIR` rule: a name with a trailing slash is
    /// missing unless it is a directory.
    fn stat<F: Fs + ?Sized>(&self, fs: &F, root: Root, uri: &[u8]) -> FileKind {
        let kind = fs.kind(&self.map(root, uri));
        if uri.ends_with(b"/") && kind != FileKind::Dir {
            FileKind::Missing
        } else {
            kind
        }
    }
}

/// `$fastcgi_script_name`: the URI, plus `fastcgi_index index.php` when it
/// ends with a slash.
fn fastcgi_script_name(uri: &[u8]) -> String {
    let mut s = lossy(uri);
    if s.ends_with('/') {
        s.push_str("index.php");
    }
    s
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Drops trailing slashes ("/" stays "/") and turns "" into ".", so that
/// `root + uri` never lands at the filesystem root by accident.
fn clean_root(p: PathBuf) -> PathBuf {
    let bytes = path_bytes(&p);
    if bytes.is_empty() {
        return PathBuf::from(".");
    }
    let trimmed = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'/').count();
    if trimmed == bytes.len() || trimmed == 0 {
        // Nothing to trim, or the path is "/" itself.
        return p;
    }
    path_from_bytes(bytes[..trimmed].to_vec())
}

/// `root` + `uri` as nginx concatenates them (`uri` starts with `/`).
fn join(root: &Path, uri: &[u8]) -> PathBuf {
    let mut bytes = path_bytes(root);
    if bytes == b"/" {
        bytes.clear();
    }
    bytes.extend_from_slice(uri);
    path_from_bytes(bytes)
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(unix)]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod deny_tests {
    #[test]
    fn path_only_denies() {
        let denied = |p: &str| super::is_denied(&crate::normalize(p).unwrap());
        for p in [
            "/app/etc/env.php",
            "/.git/config",
            "/cron.php",
            "/media/customer/x",
            "/.user.ini",
            "/errors/local.xml",
            "/pub/.user.ini",
            "/pub/errors/local.xml",
            "/pub/errors/design.xml",
            "/pub/errors/DESIGN.XML",
        ] {
            assert!(denied(p), "{p}");
        }
        for p in [
            "/",
            "/women/tops.html",
            "/index.php/checkout",
            "/static/version1/a.css",
        ] {
            assert!(!denied(p), "{p}");
        }
    }
}
