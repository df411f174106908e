//! Request coalescing, sans-IO: which request fetches a missing key, and
//! which ones wait for it.
//!
//! The registry maps a primary key to the fetch in flight for it. The first
//! request to [`Flights::join`] a key becomes its [`Leader`]; later ones get
//! the flight's signal as [`Join::Follower`] and wait on it. The waiting
//! itself is the runtime's business: the signal type `S` is chosen by the
//! caller (in the edge, a level-triggered tokio primitive such as a
//! `watch::Sender` or `Notify` plus a "done" flag, so a follower that starts
//! waiting after the wake-up still sees it).
//!
//! Protocol:
//! 1. `lookup` missed (not `HitForMiss`: hit-for-miss skips coalescing).
//! 2. `join(key, make_signal)`:
//!    - `Leader`: fetch, insert into the store (object or hit-for-miss
//!      marker), then drop the guard (or call [`Leader::finish`]). The
//!      entry is removed **before** `S::wake`, so woken followers that miss
//!      again start a new flight instead of waiting on a finished one.
//!    - `Follower(signal)`: wait for it (with a timeout), then look up again.
//!      Fresh hit: serve it. `HitForMiss`: go to the backend. Miss (the
//!      leader failed or the response was not stored): `join` again.
//! 3. A leader that is cancelled or panics drops its guard, which wakes the
//!    followers the same way, so nobody waits for a fetch that will never
//!    end.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::object::PrimaryKey;

/// How a leader wakes its followers.
pub trait FlightSignal: Clone {
    /// Wakes every follower of the flight, present and future (level
    /// triggered). Called once, when the flight ends.
    fn wake(&self);
}

struct Flight<S> {
    id: u64,
    signal: S,
    followers: u32,
}

type FlightMap<S> = Mutex<HashMap<PrimaryKey, Flight<S>>>;

/// The registry of fetches in flight, sharded by key.
pub struct Flights<S> {
    shards: Box<[FlightMap<S>]>,
    next_id: AtomicU64,
}

impl<S: FlightSignal> fmt::Debug for Flights<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flights")
            .field("shards", &self.shards.len())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Result of [`Flights::join`].
#[derive(Debug)]
pub enum Join<S: FlightSignal> {
    /// This request fetches; followers are woken when the guard is dropped.
    Leader(Leader<S>),
    /// Another request is fetching; wait on the signal, then look up again.
    Follower(S),
}

/// Guard of the leading request of a flight.
#[must_use = "dropping the guard ends the flight and wakes the followers"]
pub struct Leader<S: FlightSignal> {
    flights: Arc<Flights<S>>,
    key: PrimaryKey,
    id: u64,
}

impl<S: FlightSignal> fmt::Debug for Leader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leader").field("id", &self.id).finish()
    }
}

fn shard_of(key: &PrimaryKey, n: usize) -> usize {
    (u64::from_le_bytes([
        key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
    ]) % n as u64) as usize
}

impl<S: FlightSignal> Flights<S> {
    /// A registry with `shards` locks (at least 1).
    pub fn new(shards: usize) -> Arc<Flights<S>> {
        Arc::new(Flights {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Joins the flight for `key`, starting it (and calling `make_signal`)
    /// if there is none.
    pub fn join(self: &Arc<Self>, key: PrimaryKey, make_signal: impl FnOnce() -> S) -> Join<S> {
        let mut map = self.shards[shard_of(&key, self.shards.len())].lock();
        if let Some(f) = map.get_mut(&key) {
            f.followers += 1;
            return Join::Follower(f.signal.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        map.insert(
            key,
            Flight {
                id,
                signal: make_signal(),
                followers: 0,
            },
        );
        Join::Leader(Leader {
            flights: Arc::clone(self),
            key,
            id,
        })
    }

    /// Flights in progress.
    pub fn in_flight(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Followers waiting on the flight for `key`, if one is in progress.
    pub fn followers(&self, key: &PrimaryKey) -> Option<u32> {
        self.shards[shard_of(key, self.shards.len())]
            .lock()
            .get(key)
            .map(|f| f.followers)
    }
}

impl<S: FlightSignal> Leader<S> {
    /// The key being fetched.
    pub fn key(&self) -> &PrimaryKey {
        &self.key
    }

    /// A process-unique id of the flight (for logs).
    pub fn flight_id(&self) -> u64 {
        self.id
    }

    /// Ends the flight: same as dropping the guard, spelled out.
    pub fn finish(self) {}
}

impl<S: FlightSignal> Drop for Leader<S> {
    fn drop(&mut self) {
        let removed = {
            let mut map =
                self.flights.shards[shard_of(&self.key, self.flights.shards.len())].lock();
            match map.get(&self.key) {
                Some(f) if f.id == self.id => map.remove(&self.key),
                _ => None,
            }
        };
        if let Some(f) = removed {
            f.signal.wake();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use parking_lot::Condvar;
    use std::sync::atomic::AtomicUsize;

    #[derive(Clone, Default)]
    struct Latch(Arc<(Mutex<bool>, Condvar, AtomicUsize)>);

    impl FlightSignal for Latch {
        fn wake(&self) {
            *self.0 .0.lock() = true;
            self.0 .2.fetch_add(1, Ordering::Relaxed);
            self.0 .1.notify_all();
        }
    }

    impl Latch {
        fn wait(&self) {
            let mut done = self.0 .0.lock();
            while !*done {
                self.0 .1.wait(&mut done);
            }
        }
        fn wakes(&self) -> usize {
            self.0 .2.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn first_leads_others_follow_then_a_new_flight() {
        let f = Flights::<Latch>::new(4);
        let Join::Leader(leader) = f.join([1; 16], Latch::default) else {
            panic!("first must lead")
        };
        assert_eq!(leader.key(), &[1; 16]);
        let Join::Follower(sig) = f.join([1; 16], || panic!("no new signal")) else {
            panic!("second must follow")
        };
        assert!(matches!(f.join([1; 16], Latch::default), Join::Follower(_)));
        assert_eq!(f.followers(&[1; 16]), Some(2));
        // Another key is independent.
        assert!(matches!(f.join([2; 16], Latch::default), Join::Leader(_)));
        assert_eq!(f.in_flight(), 1, "the [2;16] leader was dropped at once");
        assert_eq!(sig.wakes(), 0);
        leader.finish();
        assert_eq!(sig.wakes(), 1);
        assert_eq!(f.in_flight(), 0);
        assert_eq!(f.followers(&[1; 16]), None);
        assert!(matches!(f.join([1; 16], Latch::default), Join::Leader(_)));
        assert!(format!("{f:?}").contains("Flights"));
    }

    #[test]
    fn abandoned_leader_wakes_followers() {
        let f = Flights::<Latch>::new(1);
        let leader = f.join([3; 16], Latch::default);
        let Join::Follower(sig) = f.join([3; 16], Latch::default) else {
            panic!()
        };
        drop(leader);
        assert_eq!(sig.wakes(), 1);
        sig.wait();
    }

    #[test]
    fn threads_one_leader_per_round() {
        let f = Flights::<Latch>::new(8);
        let leaders = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        match f.join([9; 16], Latch::default) {
                            Join::Leader(l) => {
                                leaders.fetch_add(1, Ordering::Relaxed);
                                std::thread::yield_now();
                                drop(l);
                            }
                            Join::Follower(sig) => sig.wait(),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::Relaxed), 800);
        let l = leaders.load(Ordering::Relaxed);
        assert!((1..=800).contains(&l));
        assert_eq!(f.in_flight(), 0);
    }
}
