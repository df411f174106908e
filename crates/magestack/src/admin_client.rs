//! A blocking GET against an edge's admin listener, for `doctor --edge` and
//! `top`: HTTP/1.0, so the answer is never chunked and ends at close; the
//! bearer token from `MAGESTACK_ADMIN_TOKEN[_FILE]` when set.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result};

/// Nobody waits longer than this for one admin answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// An admin answer larger than this is not an edge's (`/metrics` is ~30 KB).
const MAX_ANSWER: u64 = 8 << 20;

/// `host:port` of an admin listener, from `host:port` or `http://host:port/`.
pub fn authority(given: &str) -> String {
    let rest = given.strip_prefix("http://").unwrap_or(given);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The status and body of `GET path`.
pub fn get(admin: &str, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    request(admin, "GET", path, token, None)
}

/// The status and body of `POST path` with a JSON body (or none).
pub fn post(
    admin: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Result<(u16, String)> {
    request(admin, "POST", path, token, Some(json.unwrap_or("")))
}

fn request(
    admin: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String)> {
    use std::net::ToSocketAddrs;
    let addr = authority(admin);
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr}: no address"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    match body {
        None => write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?,
        Some(b) => write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )?,
    }
    let mut raw = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading {path} from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{addr}{path}: not an HTTP answer"))?;
    Ok((status, body.to_owned()))
}

/// The admin token, if the operator set one.
pub fn token() -> Result<Option<String>> {
    crate::secrets::secret("MAGESTACK_ADMIN_TOKEN")
}
