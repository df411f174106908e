//! `upstream.url`: where PHP runs, parsed into [`UpstreamUrl`].

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;

/// The accepted forms, for error messages.
const FORMS: &str = "fcgi://host:port, fcgi+unix:///path/to.sock or http://host:port";

/// Where requests that are not served by the edge itself go.
///
/// Parsed from `upstream.url` (or `--upstream`); `Display` prints the
/// canonical URL, which parses back to the same value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamUrl {
    /// `fcgi://host:port`: PHP-FPM listening on TCP. `host` is a host name or
    /// an IP address (IPv6 without brackets); it is resolved at connect time.
    FastCgiTcp {
        /// Host name or IP address, lower-cased, without brackets.
        host: String,
        /// TCP port (never 0).
        port: u16,
    },
    /// `fcgi+unix:///path/to.sock`: PHP-FPM listening on a Unix socket.
    /// The path is absolute.
    FastCgiUnix(PathBuf),
    /// `http://host:port`: an HTTP/1.1 server (PHP's built-in server, another
    /// proxy, or a non-PHP app). The port defaults to 80.
    Http {
        /// `host:port`, IPv6 hosts in brackets, host lower-cased.
        authority: String,
    },
}

impl UpstreamUrl {
    /// True for the FastCGI forms, which need `magento.docroot`.
    pub fn is_fastcgi(&self) -> bool {
        matches!(self, Self::FastCgiTcp { .. } | Self::FastCgiUnix(_))
    }
}

/// Why an upstream URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamUrlError {
    /// The URL is empty.
    #[error("empty upstream URL; expected {FORMS}")]
    Empty,
    /// No `scheme://`.
    #[error("missing scheme in {0:?}; expected {FORMS}")]
    MissingScheme(String),
    /// `https://` upstreams are planned but not implemented.
    #[error("https upstreams are not supported yet; use http:// (e.g. on a private network or loopback) or fcgi://")]
    HttpsUnsupported,
    /// Any other scheme.
    #[error("unsupported scheme {0:?}; expected {FORMS}")]
    UnsupportedScheme(String),
    /// `scheme://` with no host.
    #[error("missing host; expected {FORMS}")]
    MissingHost,
    /// A FastCGI TCP URL without a port (FastCGI has no default port).
    #[error("missing port; FastCGI has no default port, e.g. fcgi://127.0.0.1:9000")]
    MissingPort,
    /// The port is not a number in 1..=65535.
    #[error("invalid port {0:?}: expected a number from 1 to 65535")]
    InvalidPort(String),
    /// An IPv6 address without brackets.
    #[error("IPv6 addresses must be in brackets, e.g. fcgi://[::1]:9000")]
    UnbracketedIpv6,
    /// The host is neither a host name nor an IP address.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// A path, query or fragment after the authority.
    #[error("unexpected {0:?} after host:port; upstream URLs have no path, query or fragment")]
    PathNotSupported(String),
    /// `user:password@` in the URL.
    #[error("credentials in upstream URLs are not supported")]
    UserInfoNotSupported,
    /// `fcgi+unix://` followed by something that is not an absolute path.
    #[error("invalid Unix socket path {0:?}: expected an absolute path, e.g. fcgi+unix:///run/php-fpm.sock")]
    RelativeSocketPath(String),
}

impl FromStr for UpstreamUrl {
    type Err = UpstreamUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UpstreamUrlError::Empty);
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UpstreamUrlError::MissingScheme(s.to_owned()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "fcgi" => {
                let (host, port) = parse_authority(rest)?;
                let port = port.ok_or(UpstreamUrlError::MissingPort)?;
                Ok(Self::FastCgiTcp { host, port })
            }
            "fcgi+unix" => {
                if rest.len() < 2 || !rest.starts_with('/') {
                    return Err(UpstreamUrlError::RelativeSocketPath(rest.to_owned()));
                }
                Ok(Self::FastCgiUnix(PathBuf::from(rest)))
            }
            "http" => {
                let (host, port) = parse_authority(rest)?;
                let port = port.unwrap_or(80);
                Ok(Self::Http {
                    authority: format!("{}:{port}", bracket(&host)),
                })
            }
            "https" => Err(UpstreamUrlError::HttpsUnsupported),
            other => Err(UpstreamUrlError::UnsupportedScheme(other.to_owned())),
        }
    }
}

/// Splits `host[:port][/]` into a lower-cased host (IPv6 unbracketed) and an
/// optional port.
fn parse_authority(rest: &str) -> Result<(String, Option<u16>), UpstreamUrlError> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(pos) = rest.find(['/', '?', '#']) {
        return Err(UpstreamUrlError::PathNotSupported(rest[pos..].to_owned()));
    }
    if rest.contains('@') {
        return Err(UpstreamUrlError::UserInfoNotSupported);
    }
    if rest.is_empty() {
        return Err(UpstreamUrlError::MissingHost);
    }
    let (host, port) = if let Some(after_open) = rest.strip_prefix('[') {
        let Some((inside, after)) = after_open.split_once(']') else {
            return Err(UpstreamUrlError::InvalidHost(rest.to_owned()));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(UpstreamUrlError::InvalidHost(inside.to_owned()));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(UpstreamUrlError::InvalidHost(rest.to_owned())),
            },
        };
        (inside.to_owned(), port)
    } else {
        match rest.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err(UpstreamUrlError::UnbracketedIpv6),
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(UpstreamUrlError::MissingHost);
    }
    if !host.contains(':') && !is_host_name(&host) {
        return Err(UpstreamUrlError::InvalidHost(host));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(UpstreamUrlError::InvalidPort(p.to_owned())),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Host names and IPv4 literals: letters, digits, `-`, `.`, `_`.
fn is_host_name(host: &str) -> bool {
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.starts_with(['.', '-'])
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FastCgiTcp { host, port } => write!(f, "fcgi://{}:{port}", bracket(host)),
            Self::FastCgiUnix(path) => write!(f, "fcgi+unix://{}", path.display()),
            Self::Http { authority } => write!(f, "http://{authority}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(s: &str) -> UpstreamUrl {
        match s.parse() {
            Ok(u) => u,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err(s: &str) -> UpstreamUrlError {
        match s.parse::<UpstreamUrl>() {
            Ok(u) => panic!("{s} parsed as {u:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn good_urls_and_canonical_display() {
        let cases = [
            ("fcgi://127.0.0.1:9000", "fcgi://127.0.0.1:9000"),
            ("FCGI://PHP-FPM:9000/", "fcgi://php-fpm:9000"),
            ("fcgi://[::1]:9000", "fcgi://[::1]:9000"),
            (
                "fcgi+unix:///run/php/php-fpm.sock",
                "fcgi+unix:///run/php/php-fpm.sock",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://app", "http://app:80"),
            ("http://[::1]:8081/", "http://[::1]:8081"),
        ];
        for (input, canonical) in cases {
            let u = ok(input);
            assert_eq!(u.to_string(), canonical, "{input}");
            assert_eq!(ok(canonical), u, "round trip of {canonical}");
        }
        assert_eq!(
            ok("fcgi://[::1]:9000"),
            UpstreamUrl::FastCgiTcp {
                host: "::1".into(),
                port: 9000
            }
        );
        assert_eq!(
            ok("fcgi+unix:///run/php.sock"),
            UpstreamUrl::FastCgiUnix(PathBuf::from("/run/php.sock"))
        );
        assert!(ok("fcgi://a:1").is_fastcgi());
        assert!(!ok("http://a:1").is_fastcgi());
    }

    #[test]
    fn bad_urls() {
        assert_eq!(err(""), UpstreamUrlError::Empty);
        assert_eq!(
            err("127.0.0.1:9000"),
            UpstreamUrlError::MissingScheme("127.0.0.1:9000".into())
        );
        assert_eq!(err("https://shop:443"), UpstreamUrlError::HttpsUnsupported);
        assert_eq!(
            err("ftp://x:1"),
            UpstreamUrlError::UnsupportedScheme("ftp".into())
        );
        assert_eq!(err("fcgi://127.0.0.1"), UpstreamUrlError::MissingPort);
        assert_eq!(err("fcgi://:9000"), UpstreamUrlError::MissingHost);
        assert_eq!(err("fcgi://"), UpstreamUrlError::MissingHost);
        assert_eq!(err("fcgi://h:0"), UpstreamUrlError::InvalidPort("0".into()));
        assert_eq!(
            err("fcgi://h:99999"),
            UpstreamUrlError::InvalidPort("99999".into())
        );
        assert_eq!(err("fcgi://h:x"), UpstreamUrlError::InvalidPort("x".into()));
        assert_eq!(err("fcgi://::1:9000"), UpstreamUrlError::UnbracketedIpv6);
        assert_eq!(
            err("fcgi://[zz]:9000"),
            UpstreamUrlError::InvalidHost("zz".into())
        );
        assert_eq!(
            err("http://h:80/index.php"),
            UpstreamUrlError::PathNotSupported("/index.php".into())
        );
        assert_eq!(
            err("http://u:p@h:80"),
            UpstreamUrlError::UserInfoNotSupported
        );
        assert_eq!(
            err("http://sp ace:80"),
            UpstreamUrlError::InvalidHost("sp ace".into())
        );
        assert_eq!(
            err("fcgi+unix://run/php.sock"),
            UpstreamUrlError::RelativeSocketPath("run/php.sock".into())
        );
        assert!(err("fcgi://127.0.0.1")
            .to_string()
            .contains("fcgi://127.0.0.1:9000"));
    }
}
