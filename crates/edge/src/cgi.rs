//! The FastCGI parameters PHP sees: nginx's `fastcgi_params` plus Magento's extras
//! (design doc §1.8). Built into a caller-provided sink so the hot path can encode
//! straight into a reused buffer.

use std::net::SocketAddr;

use http::{HeaderMap, Method, Version};

/// Everything a request contributes to its CGI environment.
#[derive(Debug)]
pub struct CgiRequest<'a> {
    /// Request method.
    pub method: &'a Method,
    /// The raw request target as the client sent it (path + `?query`), for `REQUEST_URI`.
    pub request_uri: &'a str,
    /// Protocol version of the client hop.
    pub version: Version,
    /// Client request headers.
    pub headers: &'a HeaderMap,
    /// Host of the request (lowercased, port stripped), for `HTTP_HOST`.
    pub host: &'a str,
    /// `SCRIPT_NAME`, e.g. `/index.php`.
    pub script_name: &'a str,
    /// `SCRIPT_FILENAME`: absolute path of the script.
    pub script_filename: &'a str,
    /// `DOCUMENT_ROOT`.
    pub document_root: &'a str,
    /// `DOCUMENT_URI`: the normalised URI after rewrites.
    pub document_uri: &'a str,
    /// `QUERY_STRING` after rewrites.
    pub query_string: &'a str,
    /// `PATH_INFO` where the location splits it.
    pub path_info: Option<&'a str>,
    /// Body length, when known (`CONTENT_LENGTH`).
    pub content_length: Option<u64>,
    /// The client→edge hop (or the trusted proxy in front) was HTTPS.
    pub https: bool,
    /// Client address (after trusted-proxy resolution) and socket port.
    pub remote: SocketAddr,
    /// Our local address.
    pub local: SocketAddr,
    /// Configured `server_name`.
    pub server_name: &'a str,
    /// `PHP_VALUE`, if any.
    pub php_value: Option<&'a str>,
    /// `PHP_FLAG`, if any.
    pub php_flag: Option<&'a str>,
    /// `MAGE_MODE`, if configured.
    pub mage_mode: Option<&'a str>,
    /// `MAGE_RUN_CODE` and `MAGE_RUN_TYPE` for this host, if mapped.
    pub mage_run: Option<(&'a str, &'a str)>,
}

/// `SERVER_SOFTWARE`, fixed at build time.
pub const SERVER_SOFTWARE: &str = concat!("magestack/", env!("CARGO_PKG_VERSION"));

/// Emits every parameter into `sink(name, value)` in nginx's order.
pub fn build_params(r: &CgiRequest<'_>, mut sink: impl FnMut(&[u8], &[u8])) {
    let mut num = itoa_buf();
    sink(b"SCRIPT_FILENAME", r.script_filename.as_bytes());
    sink(b"QUERY_STRING", r.query_string.as_bytes());
    sink(b"REQUEST_METHOD", r.method.as_str().as_bytes());
    let ctype = r
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    sink(b"CONTENT_TYPE", ctype);
    match r.content_length {
        Some(n) => sink(b"CONTENT_LENGTH", fmt_u64(&mut num, n)),
        None => sink(b"CONTENT_LENGTH", b""),
    }
    sink(b"SCRIPT_NAME", r.script_name.as_bytes());
    sink(b"REQUEST_URI", r.request_uri.as_bytes());
    sink(b"DOCUMENT_URI", r.document_uri.as_bytes());
    sink(b"DOCUMENT_ROOT", r.document_root.as_bytes());
    sink(
        b"SERVER_PROTOCOL",
        match r.version {
            Version::HTTP_09 => b"HTTP/0.9",
            Version::HTTP_10 => b"HTTP/1.0",
            Version::HTTP_2 => b"HTTP/2.0",
            Version::HTTP_3 => b"HTTP/3.0",
            _ => b"HTTP/1.1",
        },
    );
    sink(
        b"REQUEST_SCHEME",
        if r.https { b"https" as &[u8] } else { b"http" },
    );
    if r.https {
        sink(b"HTTPS", b"on");
    }
    sink(b"GATEWAY_INTERFACE", b"CGI/1.1");
    sink(b"SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes());
    let remote_ip = r.remote.ip().to_string();
    sink(b"REMOTE_ADDR", remote_ip.as_bytes());
    sink(
        b"REMOTE_PORT",
        fmt_u64(&mut num, u64::from(r.remote.port())),
    );
    let local_ip = r.local.ip().to_string();
    sink(b"SERVER_ADDR", local_ip.as_bytes());
    sink(b"SERVER_PORT", fmt_u64(&mut num, u64::from(r.local.port())));
    sink(b"SERVER_NAME", r.server_name.as_bytes());
    sink(b"REDIRECT_STATUS", b"200");
    if let Some(pi) = r.path_info {
        sink(b"PATH_INFO", pi.as_bytes());
    }
    if let Some(v) = r.php_flag {
        sink(b"PHP_FLAG", v.as_bytes());
    }
    if let Some(v) = r.php_value {
        sink(b"PHP_VALUE", v.as_bytes());
    }
    if let Some(v) = r.mage_mode {
        sink(b"MAGE_MODE", v.as_bytes());
    }
    if let Some((code, kind)) = r.mage_run {
        sink(b"MAGE_RUN_CODE", code.as_bytes());
        sink(b"MAGE_RUN_TYPE", kind.as_bytes());
    }
    // HTTP_HOST exactly once: $host, not the raw header.
    sink(b"HTTP_HOST", r.host.as_bytes());

    let mut name = Vec::with_capacity(64);
    let mut value = Vec::with_capacity(256);
    for key in r.headers.keys() {
        let k = key.as_str();
        if k == "host" || k == "content-type" || k == "content-length" || k == "proxy" {
            // Host is sent above; CONTENT_* are not HTTP_*; `Proxy:` would become
            // HTTP_PROXY (httpoxy), which PHP HTTP clients trust.
            continue;
        }
        if k.contains('_') {
            // nginx `underscores_in_headers off`: such headers could shadow real ones.
            continue;
        }
        name.clear();
        name.extend_from_slice(b"HTTP_");
        name.extend(k.bytes().map(|b| {
            if b == b'-' {
                b'_'
            } else {
                b.to_ascii_uppercase()
            }
        }));
        value.clear();
        let sep: &[u8] = if k == "cookie" { b"; " } else { b", " };
        for (i, v) in r.headers.get_all(key).iter().enumerate() {
            if i > 0 {
                value.extend_from_slice(sep);
            }
            value.extend_from_slice(v.as_bytes());
        }
        sink(&name, &value);
    }
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// `$host`: the Host header (or h2 `:authority`) lowercased with the port removed;
/// `server_name` when the client sent none.
pub fn host_of<'a>(
    headers: &'a HeaderMap,
    authority: Option<&'a str>,
    fallback: &'a str,
) -> String {
    let raw = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(authority)
        .unwrap_or(fallback);
    let without_port = if raw.starts_with('[') {
        // [v6]:port
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn collect(r: &CgiRequest<'_>) -> Vec<(String, String)> {
        let mut v = Vec::new();
        build_params(r, |k, val| {
            v.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(val).into_owned(),
            ))
        });
        v
    }

    fn base<'a>(headers: &'a HeaderMap, method: &'a Method) -> CgiRequest<'a> {
        CgiRequest {
            method,
            request_uri: "/women/tops.html?p=2",
            version: Version::HTTP_11,
            headers,
            host: "shop.example",
            script_name: "/index.php",
            script_filename: "/app/pub/index.php",
            document_root: "/app/pub",
            document_uri: "/index.php",
            query_string: "p=2",
            path_info: None,
            content_length: None,
            https: false,
            remote: "1.2.3.4:5555".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            server_name: "localhost",
            php_value: Some("memory_limit=756M\nmax_execution_time=18000"),
            php_flag: None,
            mage_mode: None,
            mage_run: Some(("de", "store")),
        }
    }

    #[test]
    fn magento_params() {
        let mut h = HeaderMap::new();
        h.insert("host", "Shop.Example:8080".parse().unwrap());
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("proxy", "http://evil".parse().unwrap());
        h.insert("x_evil", "1".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        let m = Method::GET;
        let p = collect(&base(&h, &m));
        let get = |k: &str| {
            p.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("HTTP_HOST"), vec!["shop.example"]);
        assert_eq!(get("HTTP_COOKIE"), vec!["a=1; b=2"]);
        assert_eq!(get("HTTP_X_FORWARDED_PROTO"), vec!["https"]);
        assert!(get("HTTP_PROXY").is_empty());
        assert!(get("HTTP_X_EVIL").is_empty());
        assert!(get("HTTP_CONTENT_TYPE").is_empty());
        assert_eq!(get("CONTENT_TYPE"), vec!["text/plain"]);
        assert_eq!(get("CONTENT_LENGTH"), vec![""]);
        assert_eq!(get("REQUEST_URI"), vec!["/women/tops.html?p=2"]);
        assert_eq!(get("QUERY_STRING"), vec!["p=2"]);
        assert_eq!(get("REMOTE_ADDR"), vec!["1.2.3.4"]);
        assert_eq!(get("REMOTE_PORT"), vec!["5555"]);
        assert_eq!(get("SERVER_PORT"), vec!["8080"]);
        assert_eq!(get("MAGE_RUN_CODE"), vec!["de"]);
        assert!(get("HTTPS").is_empty());
        assert_eq!(get("REQUEST_SCHEME"), vec!["http"]);
    }

    #[test]
    fn https_on_only_when_https() {
        let h = HeaderMap::new();
        let m = Method::POST;
        let mut r = base(&h, &m);
        r.https = true;
        r.content_length = Some(12345);
        let p = collect(&r);
        assert!(p.contains(&("HTTPS".into(), "on".into())));
        assert!(p.contains(&("CONTENT_LENGTH".into(), "12345".into())));
    }

    #[test]
    fn host_normalisation() {
        let mut h = HeaderMap::new();
        assert_eq!(host_of(&h, Some("A.example:443"), "x"), "a.example");
        assert_eq!(host_of(&h, None, "fallback"), "fallback");
        h.insert("host", "[::1]:8080".parse().unwrap());
        assert_eq!(host_of(&h, None, "x"), "[::1]");
        h.insert("host", "shop.example.".parse().unwrap());
        assert_eq!(host_of(&h, None, "x"), "shop.example");
    }
}
