//! Who the client is, and whether it came over TLS, when proxies sit in front.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are believed only when the socket peer
//! is in `server.trusted_proxies` (an ALB, CloudFront, the ingress). The address
//! chain is walked from the right, skipping trusted hops, as nginx's
//! `real_ip_recursive on` does, so a client cannot spoof its address by sending its
//! own `X-Forwarded-For`.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// True when `ip` is inside one of the trusted networks.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a dual-stack
/// listener reports) as the IPv4 address it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client address: the peer, or the rightmost untrusted `X-Forwarded-For` hop
/// when the peer is a trusted proxy.
///
/// Hops may carry a port, as some load balancers write them (`1.2.3.4:5555`,
/// `[2001:db8::1]:80`). A hop that is no address at all makes the whole header
/// untrusted: the client is the peer (logged once per process), never an
/// address picked from a chain that cannot be read.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    // Later headers are later hops; iterate all values right to left.
    let values: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    for value in values.iter().rev() {
        for hop in value.rsplit(|&b| b == b',') {
            let Some(ip) = parse_hop(hop) else {
                static LOGGED: std::sync::Once = std::sync::Once::new();
                LOGGED.call_once(|| {
                    tracing::warn!(%peer, "X-Forwarded-For from a trusted proxy holds something that is not an address; such requests are attributed to the proxy itself (logged once).");
                });
                return peer;
            };
            let ip = canonical(ip);
            client = ip;
            if !is_trusted(ip, trusted) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` hop: an address, optionally with a port
/// (`a.b.c.d:port`, `[v6]:port`, `[v6]`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        return if port_ok {
            addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        };
    }
    let (addr, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Whether the original client connection was HTTPS: our own TLS, or a trusted
/// proxy that terminated TLS and says so in `X-Forwarded-Proto`.
pub fn is_https(tls: bool, peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    if tls {
        return true;
    }
    if !is_trusted(peer, trusted) {
        return false;
    }
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("https")
        })
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_keeps_socket_address() {
        let headers = h(&[("x-forwarded-for", "1.2.3.4")]);
        let ip = client_ip("9.9.9.9".parse().unwrap(), &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "9.9.9.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_peer_rightmost_untrusted_hop_wins() {
        let headers = h(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        let ip = client_ip(
            "10.0.0.1".parse().unwrap(),
            &headers,
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn several_headers_are_one_chain() {
        let headers = h(&[
            ("x-forwarded-for", "5.5.5.5"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        let ip = client_ip(
            "10.0.0.1".parse().unwrap(),
            &headers,
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "5.5.5.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_hop_stops_the_walk() {
        let headers = h(&[("x-forwarded-for", "1.1.1.1, nonsense")]);
        let ip = client_ip(
            "10.0.0.1".parse().unwrap(),
            &headers,
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_proto_only_from_trusted() {
        let headers = h(&[("x-forwarded-proto", "https")]);
        let t = nets(&["127.0.0.0/8"]);
        assert!(is_https(false, "127.0.0.1".parse().unwrap(), &headers, &t));
        assert!(!is_https(false, "8.8.8.8".parse().unwrap(), &headers, &t));
        assert!(is_https(
            true,
            "8.8.8.8".parse().unwrap(),
            &HeaderMap::new(),
            &t
        ));
    }

    #[test]
    fn mapped_v6_peer_matches_v4_network() {
        let headers = h(&[("x-forwarded-for", "1.2.3.4")]);
        let ip = client_ip(
            "::ffff:127.0.0.1".parse().unwrap(),
            &headers,
            &nets(&["127.0.0.0/8"]),
        );
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn hops_with_ports_are_addresses() {
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        for (xff, want) in [
            ("1.2.3.4:5555", "1.2.3.4"),
            ("[2001:db8::1]:80", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            (" 1.2.3.4:5555 , 10.0.0.9:80", "1.2.3.4"),
        ] {
            let ip = client_ip(proxy, &h(&[("x-forwarded-for", xff)]), &trusted);
            assert_eq!(ip, want.parse::<IpAddr>().unwrap(), "{xff}");
        }
    }

    #[test]
    fn garbage_makes_the_header_untrusted() {
        let trusted = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        for xff in [
            "unknown",
            "1.2.3.4:99999",
            "[::1",
            "1.2.3.4, garbage",
            "2001:db8::1:80:x",
        ] {
            let ip = client_ip(proxy, &h(&[("x-forwarded-for", xff)]), &trusted);
            assert_eq!(ip, proxy, "{xff}");
        }
    }
}
