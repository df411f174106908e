//! The sample's regular expressions, written as plain byte-string code.
//!
//! nginx compiles them with PCRE, without UTF mode and without
//! `DOLLAR_ENDONLY`, so two PCRE rules matter for a decoded `$uri` that may
//! hold a `\n` (`%0A`):
//!
//! - `.` matches any byte except `\n`;
//! - `$` matches at the very end **or** just before a final `\n`.
//!
//! `~*` is ASCII case-insensitive (PCRE's default C-locale tables).
//! Each function names the regex it stands for.

/// Positions where PCRE's `$` can match in `s`: the end, and before a final `\n`.
fn dollar_heads(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    let before_nl = match s.split_last() {
        Some((b'\n', head)) => Some(head),
        _ => None,
    };
    std::iter::once(s).chain(before_nl)
}

fn ends_with_ci(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn contains(s: &[u8], needle: &[u8]) -> bool {
    s.windows(needle.len()).any(|w| w == needle)
}

fn contains_ci(s: &[u8], needle: &[u8]) -> bool {
    s.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// `\.(e1|e2|…)$` under `~*`: the subject ends in `.ext` (or `.ext\n`).
fn ext_dollar_ci(s: &[u8], exts: &[&str]) -> bool {
    dollar_heads(s).any(|head| {
        exts.iter().any(|ext| {
            let ext = ext.as_bytes();
            ends_with_ci(head, ext)
                && head.len() > ext.len()
                && head[head.len() - ext.len() - 1] == b'.'
        })
    })
}

/// `(.*)$` applied to `rest`: the capture, if `rest` has no `\n` other than
/// a final one (which the capture leaves out).
fn dot_star_dollar(rest: &[u8]) -> Option<&[u8]> {
    dollar_heads(rest).find(|head| !head.contains(&b'\n'))
}

/// Skips `version\d*/` at the start of `s`, returning what follows it.
fn strip_version_segment(s: &[u8]) -> Option<&[u8]> {
    let rest = s.strip_prefix(b"version")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest[digits..].strip_prefix(b"/")
}

/// Extensions of the "long-lived" static rule (list A) under `/static/`.
pub(crate) const STATIC_EXT_A: &[&str] = &[
    "ico",
    "jpg",
    "jpeg",
    "png",
    "gif",
    "svg",
    "svgz",
    "webp",
    "avif",
    "avifs",
    "js",
    "css",
    "eot",
    "ttf",
    "otf",
    "woff",
    "woff2",
    "html",
    "json",
    "webmanifest",
];

/// Extensions of list A under `/media/` (no html, json, webmanifest).
pub(crate) const MEDIA_EXT_A: &[&str] = &[
    "ico", "jpg", "jpeg", "png", "gif", "svg", "svgz", "webp", "avif", "avifs", "js", "css", "eot",
    "ttf", "otf", "woff", "woff2",
];

/// Extensions of the "no-store" rule (list B), same under both prefixes.
pub(crate) const EXT_B: &[&str] = &["zip", "gz", "gzip", "bz2", "csv", "xml"];

/// `~* \.(ico|…|webmanifest)$` (inside `/static/`).
pub(crate) fn static_ext_a(uri: &[u8]) -> bool {
    ext_dollar_ci(uri, STATIC_EXT_A)
}

/// `~* \.(ico|…|woff2)$` (inside `/media/`).
pub(crate) fn media_ext_a(uri: &[u8]) -> bool {
    ext_dollar_ci(uri, MEDIA_EXT_A)
}

/// `~* \.(zip|gz|gzip|bz2|csv|xml)$`.
pub(crate) fn ext_b(uri: &[u8]) -> bool {
    ext_dollar_ci(uri, EXT_B)
}

/// `~* \.xml$` (inside `/errors/`).
pub(crate) fn xml_dollar_ci(uri: &[u8]) -> bool {
    ext_dollar_ci(uri, &["xml"])
}

/// `~ ^/static/version\d*/` (location).
pub(crate) fn static_version(uri: &[u8]) -> bool {
    uri.strip_prefix(b"/static/")
        .and_then(strip_version_segment)
        .is_some()
}

/// `rewrite ^/static/version\d*/(.*)$ /static/$1`: the `$1` capture.
pub(crate) fn static_version_rewrite(uri: &[u8]) -> Option<&[u8]> {
    let rest = uri
        .strip_prefix(b"/static/")
        .and_then(strip_version_segment)?;
    dot_star_dollar(rest)
}

/// `rewrite ^/static/(version\d*/)?(.*)$ /static.php?resource=$2`: `$2`.
pub(crate) fn static_php_resource(uri: &[u8]) -> Option<&[u8]> {
    let rest = uri.strip_prefix(b"/static/")?;
    // The optional group is greedy; if (.*)$ then fails, so does the
    // backtracked attempt (it sees the same inner "\n").
    let after_group = strip_version_segment(rest).unwrap_or(rest);
    dot_star_dollar(after_group)
}

/// `~ ^/media/theme_customization/.*\.xml` (no `$`: `a.xml.bak` matches too).
pub(crate) fn media_theme_xml(uri: &[u8]) -> bool {
    uri.strip_prefix(b"/media/theme_customization/")
        .is_some_and(theme_xml_tail)
}

fn theme_xml_tail(rest: &[u8]) -> bool {
    let line = rest.split(|&b| b == b'\n').next().unwrap_or(rest);
    contains(line, b".xml")
}

/// `~ ^/pub/media/(downloadable|customer|import|custom_options|theme_customization/.*\.xml)`.
pub(crate) fn pub_media_deny(uri: &[u8]) -> bool {
    let Some(rest) = uri.strip_prefix(b"/pub/media/") else {
        return false;
    };
    [
        &b"downloadable"[..],
        b"customer",
        b"import",
        b"custom_options",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
        || rest
            .strip_prefix(b"theme_customization/")
            .is_some_and(theme_xml_tail)
}

/// The legacy applications with their own `~* ^/<name>($|/)` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum App {
    /// `/setup` (web setup wizard; removed from 2.4 releases, block kept).
    Setup,
    /// `/update` (component manager; gone since 2.4, block kept).
    Update,
}

impl App {
    fn slash_name(self) -> &'static [u8] {
        match self {
            App::Setup => b"/setup",
            App::Update => b"/update",
        }
    }
}

/// `~* ^/setup($|/)` and `~* ^/update($|/)`.
pub(crate) fn app_outer(uri: &[u8], app: App) -> bool {
    let name = app.slash_name();
    if !starts_with_ci(uri, name) {
        return false;
    }
    let rest = &uri[name.len()..];
    rest.is_empty() || rest == b"\n" || rest.starts_with(b"/")
}

/// `~ ^/setup/index.php` and `~ ^/update/index.php`, with the unescaped `.`
/// (any byte but `\n`); unanchored at the end.
pub(crate) fn app_index(uri: &[u8], app: App) -> bool {
    app_index_len(uri, app).is_some()
}

/// Length of the `^/<app>/index.php` match, if any.
fn app_index_len(uri: &[u8], app: App) -> Option<usize> {
    let name = app.slash_name();
    let rest = uri.strip_prefix(name)?.strip_prefix(b"/index")?;
    match rest {
        [c, b'p', b'h', b'p', ..] if *c != b'\n' => Some(name.len() + "/index".len() + 4),
        _ => None,
    }
}

/// `~ ^/setup/(?!pub/).` (and `/update/`): deny everything but `pub/`.
pub(crate) fn app_deny(uri: &[u8], app: App) -> bool {
    let Some(rest) = uri
        .strip_prefix(app.slash_name())
        .and_then(|r| r.strip_prefix(b"/"))
    else {
        return false;
    };
    !rest.starts_with(b"pub/") && rest.first().is_some_and(|&b| b != b'\n')
}

/// `~ ^/setup/pub/` (and `/update/pub/`).
pub(crate) fn app_pub(uri: &[u8], app: App) -> bool {
    uri.strip_prefix(app.slash_name())
        .is_some_and(|r| r.starts_with(b"/pub/"))
}

/// `fastcgi_split_path_info ^(/update/index.php)(/.+)$`: `($1, $2)`.
pub(crate) fn update_split_path_info(uri: &[u8]) -> Option<(&[u8], &[u8])> {
    let script_len = app_index_len(uri, App::Update)?;
    let (script, rest) = uri.split_at(script_len);
    let tail = rest.strip_prefix(b"/")?;
    let info = dot_star_dollar(tail).filter(|t| !t.is_empty())?;
    Some((script, &rest[..=info.len()]))
}

/// `~ ^/(index|get|static|errors/report|errors/404|errors/503|health_check)\.php$`.
pub(crate) fn php_whitelist(uri: &[u8]) -> bool {
    const SCRIPTS: &[&[u8]] = &[
        b"/index.php",
        b"/get.php",
        b"/static.php",
        b"/errors/report.php",
        b"/errors/404.php",
        b"/errors/503.php",
        b"/health_check.php",
    ];
    dollar_heads(uri).any(|head| SCRIPTS.contains(&head))
}

/// `~* (\.php$|\.phtml$|\.htaccess$|\.htpasswd$|\.git)` — the banned rule.
pub(crate) fn banned(uri: &[u8]) -> bool {
    dollar_heads(uri).any(|head| {
        [&b".php"[..], b".phtml", b".htaccess", b".htpasswd"]
            .iter()
            .any(|suffix| ends_with_ci(head, suffix))
    }) || contains_ci(uri, b".git")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_matches_before_final_newline() {
        assert!(php_whitelist(b"/index.php"));
        assert!(php_whitelist(b"/index.php\n"));
        assert!(!php_whitelist(b"/index.php\n\n"));
        assert!(!php_whitelist(b"/index.phpx"));
        assert!(!php_whitelist(b"/INDEX.php"));
        assert!(banned(b"/x.PHP\n"));
        assert!(static_ext_a(b"/static/a.CSS\n"));
    }

    #[test]
    fn ext_lists() {
        assert!(static_ext_a(b"/static/a.webmanifest"));
        assert!(!media_ext_a(b"/media/a.webmanifest"));
        assert!(media_ext_a(b"/media/a.Woff2"));
        assert!(ext_b(b"/static/a.tar.gz"));
        assert!(ext_b(b"/static/a.GZIP"));
        assert!(!ext_b(b"/static/agz"));
        assert!(!static_ext_a(b"/static/css"));
        assert!(!static_ext_a(b"/static/a.map"));
    }

    #[test]
    fn version_rewrites() {
        assert!(static_version(b"/static/version123/a.css"));
        assert!(static_version(b"/static/version/a.css"));
        assert!(!static_version(b"/static/versionx/a.css"));
        assert!(!static_version(b"/static/version123"));
        assert_eq!(
            static_version_rewrite(b"/static/version1/a/b.css"),
            Some(&b"a/b.css"[..])
        );
        assert_eq!(static_version_rewrite(b"/static/version/"), Some(&b""[..]));
        assert_eq!(static_version_rewrite(b"/static/version1/a\nb.css"), None);
        assert_eq!(
            static_version_rewrite(b"/static/version1/ab.css\n"),
            Some(&b"ab.css"[..])
        );
        assert_eq!(
            static_php_resource(b"/static/a/b.css"),
            Some(&b"a/b.css"[..])
        );
        assert_eq!(
            static_php_resource(b"/static/version9/a.css"),
            Some(&b"a.css"[..])
        );
        assert_eq!(static_php_resource(b"/static/"), Some(&b""[..]));
        assert_eq!(static_php_resource(b"/static/a\nb"), None);
    }

    #[test]
    fn app_blocks() {
        assert!(app_outer(b"/setup", App::Setup));
        assert!(app_outer(b"/SeTuP/", App::Setup));
        assert!(app_outer(b"/setup\n", App::Setup));
        assert!(!app_outer(b"/setupx", App::Setup));
        assert!(app_index(b"/setup/index.php", App::Setup));
        assert!(app_index(b"/setup/indexXphp/more", App::Setup));
        assert!(!app_index(b"/setup/index\nphp", App::Setup));
        assert!(!app_index(b"/SETUP/index.php", App::Setup));
        assert!(app_deny(b"/setup/x", App::Setup));
        assert!(app_deny(b"/setup/pubx", App::Setup));
        assert!(!app_deny(b"/setup/pub/x", App::Setup));
        assert!(!app_deny(b"/setup/", App::Setup));
        assert!(app_pub(b"/update/pub/a.css", App::Update));
    }

    #[test]
    fn update_split() {
        assert_eq!(
            update_split_path_info(b"/update/index.php/a/b"),
            Some((&b"/update/index.php"[..], &b"/a/b"[..]))
        );
        assert_eq!(
            update_split_path_info(b"/update/index.php/a\n"),
            Some((&b"/update/index.php"[..], &b"/a"[..]))
        );
        assert_eq!(update_split_path_info(b"/update/index.php/"), None);
        assert_eq!(update_split_path_info(b"/update/index.php"), None);
        assert_eq!(update_split_path_info(b"/update/index.php/a\nb"), None);
    }

    #[test]
    fn deny_regexes() {
        assert!(media_theme_xml(b"/media/theme_customization/a.xml"));
        assert!(media_theme_xml(b"/media/theme_customization/d/a.xml.bak"));
        assert!(!media_theme_xml(b"/media/theme_customization/a.XML"));
        assert!(!media_theme_xml(b"/media/theme_customization/a\n.xml"));
        assert!(pub_media_deny(b"/pub/media/customer/x"));
        assert!(pub_media_deny(b"/pub/media/customerfoo"));
        assert!(pub_media_deny(b"/pub/media/custom_options/x"));
        assert!(pub_media_deny(b"/pub/media/theme_customization/x.xml"));
        assert!(!pub_media_deny(b"/pub/media/theme_customization/x.png"));
        assert!(!pub_media_deny(b"/pub/media/catalog/x.jpg"));
        assert!(banned(b"/x/.github/y.png"));
        assert!(banned(b"/foo.GITter.js"));
        assert!(banned(b"/a/.htaccess"));
        assert!(!banned(b"/a/htaccess"));
        assert!(xml_dollar_ci(b"/errors/local.XML"));
    }
}
