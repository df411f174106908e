//! Detecting missed purges.
//!
//! Publishers take numbers from one Redis counter (`INCR`) atomically with
//! the `PUBLISH`, so the purges form one sequence 1, 2, 3… for all replicas.
//! A replica remembers the last number it saw. Pub/sub delivers in order on a
//! live subscription, so:
//!
//! - the next message is `last + 1`: apply it;
//! - a number at or below `last`: a duplicate (already applied), skip it;
//! - a number above `last + 1`: messages were lost (a subscriber buffer
//!   overflow, a reconnect race); apply this one, and flush what the cache
//!   cannot prove fresh.
//!
//! After a reconnection the replica reads the counter: above `last` means
//! purges were published while it was away; below `last` means Redis lost
//! its data (a restart without persistence) and nothing can be proven. Both
//! are gaps. The first sync after start is not a gap: an empty cache holds
//! nothing stale.

/// What the tracker says about a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceVerdict {
    /// In order: apply.
    Apply,
    /// Seen already: skip.
    Duplicate,
    /// Apply, and treat everything cached before now as possibly stale.
    Gap,
}

/// The last number seen on the bus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequence {
    last: Option<u64>,
}

impl Sequence {
    /// Nothing seen yet.
    pub fn new() -> Sequence {
        Sequence { last: None }
    }

    /// The last number seen.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// A message numbered `seq` arrived on a live subscription.
    pub fn on_message(&mut self, seq: u64) -> SequenceVerdict {
        match self.last {
            Some(last) if seq <= last => SequenceVerdict::Duplicate,
            Some(last) if seq == last + 1 => {
                self.last = Some(seq);
                SequenceVerdict::Apply
            }
            Some(_) => {
                self.last = Some(seq);
                SequenceVerdict::Gap
            }
            // Subscribed before the first sync finished: nothing to compare.
            None => {
                self.last = Some(seq);
                SequenceVerdict::Apply
            }
        }
    }

    /// The subscription is (re)established and the counter reads `current`
    /// (0 when the key does not exist). `Gap` when purges may have been
    /// missed since the last number seen.
    pub fn on_sync(&mut self, current: u64) -> SequenceVerdict {
        let verdict = match self.last {
            None => SequenceVerdict::Apply,
            Some(last) if current == last => SequenceVerdict::Apply,
            // Published while away, or Redis lost the counter.
            Some(_) => SequenceVerdict::Gap,
        };
        self.last = Some(current);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_duplicates_and_holes() {
        let mut s = Sequence::new();
        assert_eq!(
            s.on_sync(10),
            SequenceVerdict::Apply,
            "first sync is no gap"
        );
        assert_eq!(s.on_message(11), SequenceVerdict::Apply);
        assert_eq!(s.on_message(11), SequenceVerdict::Duplicate);
        assert_eq!(s.on_message(9), SequenceVerdict::Duplicate);
        assert_eq!(s.on_message(14), SequenceVerdict::Gap);
        assert_eq!(s.on_message(15), SequenceVerdict::Apply);
    }

    #[test]
    fn reconnection_detects_missed_purges_and_a_lost_counter() {
        let mut s = Sequence::new();
        s.on_sync(0);
        s.on_message(1);
        assert_eq!(
            s.on_sync(1),
            SequenceVerdict::Apply,
            "nothing published while away"
        );
        assert_eq!(s.on_sync(3), SequenceVerdict::Gap, "two purges missed");
        assert_eq!(s.on_sync(0), SequenceVerdict::Gap, "Redis restarted empty");
        assert_eq!(s.on_message(1), SequenceVerdict::Apply);
    }

    proptest! {
        /// Whatever the delivery (drops, duplicates, reordering), a replica
        /// that did not apply every number from its sync point onwards has
        /// seen a Gap.
        #[test]
        fn a_missed_number_is_always_noticed(start in 0u64..100, delivered in proptest::collection::vec(0u64..40, 0..60)) {
            let mut s = Sequence::new();
            s.on_sync(start);
            let mut applied = std::collections::BTreeSet::new();
            let mut gap = false;
            for d in delivered {
                let seq = start + d;
                match s.on_message(seq) {
                    SequenceVerdict::Apply => { applied.insert(seq); }
                    SequenceVerdict::Gap => { applied.insert(seq); gap = true; }
                    SequenceVerdict::Duplicate => {}
                }
            }
            if let Some(&max) = applied.iter().next_back() {
                let complete = (start + 1..=max).all(|n| applied.contains(&n));
                prop_assert!(complete || gap);
            }
        }
    }
}
