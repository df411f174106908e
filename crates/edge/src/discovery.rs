//! DNS discovery of pool endpoints.
//!
//! In Kubernetes the PHP-FPM pods of a pool sit behind a headless Service:
//! its name resolves to one address per ready pod, and the set changes as
//! the autoscaler and rollouts add and remove pods. A static endpoint list
//! cannot follow that, and the system resolver (`getaddrinfo` at each
//! connect) would hand every connection the first address only. So an
//! endpoint given by host name is looked up here at an interval, and every
//! address becomes an endpoint of the pool (see `Pool::run_discovery`).
//!
//! The lookup goes through hickory's stub resolver rather than
//! `getaddrinfo`: it reads `/etc/resolv.conf` the same way (search domains,
//! `ndots`, `/etc/hosts`), can be pointed at given nameservers
//! (`upstream.dns_servers`), and runs on the runtime instead of blocking a
//! thread per lookup. Its answer cache is off: the interval is the cache,
//! and a pod removed from the Service must leave at the next lookup, not
//! when a TTL chosen elsewhere runs out.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

/// A lookup that failed, as logged and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LookupError {
    /// The name exists nowhere, or has no address (a headless Service with
    /// no ready pod answers this way).
    #[error("no address for the name")]
    NoAddress,
    /// The nameservers did not answer usefully (timeout, refused, malformed).
    #[error("{0}")]
    Failed(String),
}

/// The resolver shared by every pool of an edge.
/// Why no resolver could be built.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// `/etc/resolv.conf` (or the system's equivalent) could not be read.
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConfig(#[source] hickory_resolver::net::NetError),
    /// The resolver rejected its configuration.
    #[error("cannot build the DNS resolver: {0}")]
    Build(#[source] hickory_resolver::net::NetError),
}

pub(crate) struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// `servers` empty: the system's configuration; else exactly those
    /// nameservers (UDP, then TCP for truncated answers), with the system's
    /// search rules not applied (names are taken as written).
    pub(crate) fn new(servers: &[SocketAddr]) -> Result<Resolver, ResolverError> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(ResolverError::SystemConfig)?
        } else {
            let name_servers = servers
                .iter()
                .map(|a| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = a.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = a.port();
                    NameServerConfig::new(a.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), name_servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let inner = builder.build().map_err(ResolverError::Build)?;
        Ok(Resolver { inner })
    }

    /// Every address of `host`, sorted and without duplicates.
    pub(crate) async fn lookup(&self, host: &str) -> Result<BTreeSet<IpAddr>, LookupError> {
        match self.inner.lookup_ip(host).await {
            Ok(found) => {
                let ips: BTreeSet<IpAddr> = found.iter().collect();
                if ips.is_empty() {
                    Err(LookupError::NoAddress)
                } else {
                    Ok(ips)
                }
            }
            Err(e) if e.is_no_records_found() => Err(LookupError::NoAddress),
            Err(e) => Err(LookupError::Failed(e.to_string())),
        }
    }
}

/// The host and port of `host:port` when the host is a name to look up:
/// `None` for IP literals (`10.0.0.5:9000`, `[::1]:9000`), which are
/// endpoints as they are.
pub(crate) fn dns_name(authority: &str) -> Option<(&str, u16)> {
    if authority.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    Some((host, port))
}

/// How a pool's endpoints from one name change after a lookup: which known
/// addresses stay, which are new, which are gone. Pure, for the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) keep: Vec<IpAddr>,
    pub(crate) add: Vec<IpAddr>,
    pub(crate) remove: Vec<IpAddr>,
}

/// Compares the addresses in use with the addresses found.
pub(crate) fn diff(current: &BTreeSet<IpAddr>, found: &BTreeSet<IpAddr>) -> Change {
    Change {
        keep: current.intersection(found).copied().collect(),
        add: found.difference(current).copied().collect(),
        remove: current.difference(found).copied().collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn names_are_looked_up_ip_literals_are_not() {
        assert_eq!(
            dns_name("php-fpm.shop.svc.cluster.local:9000"),
            Some(("php-fpm.shop.svc.cluster.local", 9000))
        );
        assert_eq!(dns_name("localhost:9000"), Some(("localhost", 9000)));
        assert_eq!(dns_name("10.0.0.5:9000"), None);
        assert_eq!(dns_name("[::1]:9000"), None);
        assert_eq!(dns_name("[fd00::5]:9000"), None);
        assert_eq!(dns_name("php:notaport"), None);
        assert_eq!(dns_name("php"), None);
    }

    #[test]
    fn diff_keeps_adds_and_removes() {
        let c = diff(
            &set(&["10.0.0.1", "10.0.0.2"]),
            &set(&["10.0.0.2", "10.0.0.3"]),
        );
        assert_eq!(c.keep, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.add, vec!["10.0.0.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.remove, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(diff(&set(&["10.0.0.1"]), &set(&["10.0.0.1"])).add.len(), 0);
        let first = diff(&BTreeSet::new(), &set(&["10.0.0.1", "10.0.0.2"]));
        assert_eq!((first.add.len(), first.remove.len()), (2, 0));
    }
}
