//! Sets of networks (IPv4 and IPv6 CIDRs) with O(log n) membership, for
//! allow and deny lists and IP reputation feeds (hundreds of thousands of
//! entries): the networks are merged into sorted, disjoint ranges.

use std::net::IpAddr;

use ipnet::IpNet;

/// An immutable set of networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// A line of a list file that is not an address or network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {text:?} is not an IP address or CIDR network")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The offending text.
    pub text: String,
}

fn merge<T: Copy + Ord + num_like::Succ>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1.succ_or_max() => {
                if b > last.1 {
                    last.1 = b;
                }
            }
            _ => out.push((a, b)),
        }
    }
    out
}

mod num_like {
    pub trait Succ {
        fn succ_or_max(self) -> Self;
    }
    impl Succ for u32 {
        fn succ_or_max(self) -> u32 {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ_or_max(self) -> u128 {
            self.saturating_add(1)
        }
    }
}

fn contains<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(a, _)| a <= x);
    i > 0 && x <= ranges[i - 1].1
}

impl IpSet {
    /// The set of `nets`.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> IpSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for n in nets {
            match n {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Parses a list: one address or CIDR a line; blank lines and `#`
    /// comments (also at the end of a line) are ignored.
    ///
    /// # Errors
    ///
    /// The first line that is neither.
    pub fn parse(text: &str) -> Result<IpSet, ParseError> {
        let mut nets = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let net = line
                .parse::<IpNet>()
                .or_else(|_| line.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ParseError {
                    line: i + 1,
                    text: line.to_owned(),
                })?;
            nets.push(net);
        }
        Ok(IpSet::new(nets))
    }

    /// The union of two sets.
    pub fn union(&self, other: &IpSet) -> IpSet {
        IpSet {
            v4: merge(self.v4.iter().chain(&other.v4).copied().collect()),
            v6: merge(self.v6.iter().chain(&other.v6).copied().collect()),
        }
    }

    /// True if `ip` is in one of the networks (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => contains(&self.v4, u32::from(v4)),
                None => contains(&self.v6, u128::from(a)),
            },
        }
    }

    /// True when the set holds no network.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Disjoint ranges held (for logs).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_addresses_comments_and_mapped_v4() {
        let s = IpSet::parse(
            "# reputation feed\n203.0.113.0/24\n198.51.100.7 # one host\n\n2001:db8::/32\n10.0.0.0/8\n10.1.0.0/16\n",
        )
        .unwrap();
        assert!(s.contains(ip("203.0.113.200")));
        assert!(!s.contains(ip("203.0.114.1")));
        assert!(s.contains(ip("198.51.100.7")) && !s.contains(ip("198.51.100.8")));
        assert!(s.contains(ip("2001:db8:ffff::1")) && !s.contains(ip("2001:db9::1")));
        assert!(s.contains(ip("::ffff:10.9.8.7")));
        assert_eq!(s.ranges(), 4, "10.1/16 merged into 10/8");
        assert_eq!(
            IpSet::parse("10.0.0.0/8\nnot-an-ip\n").unwrap_err(),
            ParseError {
                line: 2,
                text: "not-an-ip".into()
            }
        );
        assert!(IpSet::default().is_empty());
    }

    proptest::proptest! {
        /// Membership equals "some network contains it".
        #[test]
        fn matches_a_linear_scan(nets in proptest::collection::vec((proptest::num::u32::ANY, 8u8..=32), 0..40), probes in proptest::collection::vec(proptest::num::u32::ANY, 1..100)) {
            let nets: Vec<IpNet> = nets.iter().map(|&(a, p)| IpNet::new(std::net::Ipv4Addr::from(a).into(), p).unwrap().trunc()).collect();
            let set = IpSet::new(nets.clone());
            for p in probes {
                let a = IpAddr::from(std::net::Ipv4Addr::from(p));
                proptest::prop_assert_eq!(set.contains(a), nets.iter().any(|n| n.contains(&a)));
            }
        }
    }
}
