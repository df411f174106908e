//! Property tests: purge guarantees, the byte ceiling, and a model check
//! against a plain `HashMap`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use magestack_fpc_store::{
    Lookup, ObjectBuilder, PrimaryKey, Store, StoreConfig, Variance, OBJECT_OVERHEAD,
};
use proptest::prelude::*;

fn key(n: u8) -> PrimaryKey {
    let x = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let y = u64::from(n)
        .wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        .rotate_left(7);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_le_bytes());
    k[8..].copy_from_slice(&y.to_le_bytes());
    k
}

const TAGS: [&str; 6] = [
    "cat_p_1", "cat_p_2", "cat_c_1", "cat_c_2", "cms_b_1", "store",
];

fn tags_of(mask: u8) -> Vec<&'static str> {
    TAGS.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, t)| *t)
        .collect()
}

fn obj(id: u32, ttl: u64, grace: u64, mask: u8, hfm: bool) -> ObjectBuilder {
    if hfm {
        return ObjectBuilder::hit_for_miss(ttl);
    }
    ObjectBuilder::new(200, Bytes::from(id.to_le_bytes().to_vec()))
        .header(b"x-id", id.to_string().as_bytes())
        .ttl_ms(ttl)
        .grace_ms(grace)
        .tags(tags_of(mask))
}

fn body_id(o: &magestack_fpc_store::CachedObject) -> u32 {
    let b = o.body();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

proptest! {
    /// After a hard purge of T no object tagged T is returned at all; after
    /// a soft purge it is returned as Stale only.
    #[test]
    fn purge_never_leaves_fresh_tagged_objects(
        objects in prop::collection::vec((0u8..40, 0u8..3, 1u8..64), 1..80),
        purged in 0usize..TAGS.len(),
        soft in any::<bool>(),
    ) {
        let store = Store::new(StoreConfig { max_bytes: 64 << 20, shards: 4, ..StoreConfig::default() });
        let mut expect_tagged: HashMap<(u8, u8), bool> = HashMap::new();
        for (i, &(k, v, mask)) in objects.iter().enumerate() {
            store.insert(key(k), Variance(u64::from(v)), obj(i as u32, 1_000_000, 60_000, mask, false), 0).unwrap();
            expect_tagged.insert((k, v), mask & (1 << purged) != 0);
        }
        let tag = TAGS[purged];
        let now = 10;
        if soft {
            store.soft_purge_tags(&[tag], now);
        } else {
            store.purge_tags(&[tag]);
        }
        for (&(k, v), &tagged) in &expect_tagged {
            let r = store.lookup(&key(k), |o| o.variance() == Variance(u64::from(v)), now);
            match (tagged, soft, &r) {
                (true, false, Lookup::Miss) => {}
                (true, true, Lookup::Stale(o)) => prop_assert!(o.in_grace(now)),
                (false, _, Lookup::Fresh(_)) => {}
                _ => prop_assert!(false, "key {k} v {v} tagged {tagged} soft {soft}: {}", r.as_str()),
            }
            if let Some(o) = r.object() {
                let names = store.tag_names(o);
                prop_assert_eq!(names.iter().any(|n| n == tag), tagged);
            }
        }
    }

    /// The accounted bytes never exceed `max_bytes`, whatever is inserted.
    #[test]
    fn bytes_never_exceed_the_ceiling(
        max_kb in 1u64..64,
        shards in 1usize..5,
        inserts in prop::collection::vec((any::<u16>(), 0usize..6000, 0u8..64, any::<bool>()), 1..200),
    ) {
        let max = max_kb * 1024;
        let store = Store::new(StoreConfig { max_bytes: max, shards, ..StoreConfig::default() });
        for (i, &(k, size, mask, hit)) in inserts.iter().enumerate() {
            let mut k16 = [0u8; 16];
            k16[..2].copy_from_slice(&k.to_le_bytes());
            k16[8..10].copy_from_slice(&k.to_le_bytes());
            let b = ObjectBuilder::new(200, Bytes::from(vec![0u8; size]))
                .ttl_ms(1_000)
                .tags(tags_of(mask).iter().map(|t| format!("{t}_{}", k % 7)));
            let _ = store.insert(k16, Variance::NONE, b, i as u64);
            if hit {
                let _ = store.lookup(&k16, |_| true, i as u64);
            }
            let s = store.stats();
            prop_assert!(s.bytes_accounted <= max, "{} > {max}", s.bytes_accounted);
            prop_assert!(s.bytes_accounted >= s.payload_bytes + s.objects as u64 * OBJECT_OVERHEAD);
        }
    }

    /// Without eviction pressure the store behaves like a map of
    /// (key, variance) → object with TTL/grace, tags and purges.
    #[test]
    fn matches_a_reference_model(ops in prop::collection::vec(op(), 1..150)) {
        let store = Store::new(StoreConfig { max_bytes: 64 << 20, shards: 3, ..StoreConfig::default() });
        let mut model: HashMap<(u8, u8), Model> = HashMap::new();
        let mut now = 0u64;
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Insert { k, v, ttl, grace, mask, hfm } => {
                    next_id += 1;
                    store.insert(key(k), Variance(u64::from(v)), obj(next_id, ttl, grace, mask, hfm), now).unwrap();
                    // A marker ends every variant of its key; an object ends the key's marker.
                    model.retain(|&(mk, _), m| mk != k || (!hfm && !m.hfm));
                    model.insert((k, v), Model {
                        id: next_id,
                        expires: now + ttl,
                        grace_until: if hfm { now + ttl } else { now + ttl + grace },
                        tags: if hfm { 0 } else { mask },
                        hfm,
                    });
                }
                Op::Lookup { k, v } => {
                    let r = store.lookup(&key(k), |o| o.variance() == Variance(u64::from(v)), now);
                    let want = model.get(&(k, v)).map_or("miss", |m| m.state(now));
                    prop_assert_eq!(r.as_str(), want, "k {} v {} now {}", k, v, now);
                    if let Some(o) = r.object() {
                        prop_assert_eq!(Some(body_id(o)), model.get(&(k, v)).map(|m| m.id));
                    }
                }
                Op::Purge { tag, soft } => {
                    let name = TAGS[tag];
                    let st = if soft {
                        store.soft_purge_tags(&[name], now)
                    } else {
                        store.purge_tags(&[name])
                    };
                    let mut affected = 0;
                    model.retain(|_, m| {
                        if m.tags & (1 << tag) == 0 {
                            return true;
                        }
                        affected += 1;
                        if !soft {
                            return false;
                        }
                        if now < m.expires {
                            let grace = m.grace_until - m.expires;
                            m.expires = now;
                            m.grace_until = now + grace;
                        }
                        true
                    });
                    prop_assert_eq!(st.objects, affected);
                }
                Op::Remove { k } => {
                    let n = store.remove(&key(k));
                    let before = model.len();
                    model.retain(|&(mk, _), _| mk != k);
                    prop_assert_eq!(n, before - model.len());
                }
                Op::FlushTagged => {
                    let st = store.purge_all_tagged();
                    let before = model.len();
                    model.retain(|_, m| m.tags == 0);
                    prop_assert_eq!(st.objects, before - model.len());
                }
                Op::Advance { ms } => now += ms,
            }
        }
        let stats = store.stats();
        prop_assert_eq!(stats.evictions, 0);
        prop_assert_eq!(stats.objects, model.len());
        let distinct: BTreeSet<usize> = model
            .values()
            .flat_map(|m| (0..TAGS.len()).filter(move |i| m.tags & (1 << i) != 0))
            .collect();
        prop_assert_eq!(stats.distinct_tags, distinct.len());
    }
}

#[derive(Debug, Clone)]
struct Model {
    id: u32,
    expires: u64,
    grace_until: u64,
    tags: u8,
    hfm: bool,
}

impl Model {
    fn state(&self, now: u64) -> &'static str {
        if self.hfm {
            return if now < self.expires {
                "hit_for_miss"
            } else {
                "miss"
            };
        }
        if now < self.expires {
            "fresh"
        } else if now < self.grace_until {
            "stale"
        } else {
            "miss"
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        k: u8,
        v: u8,
        ttl: u64,
        grace: u64,
        mask: u8,
        hfm: bool,
    },
    Lookup {
        k: u8,
        v: u8,
    },
    Purge {
        tag: usize,
        soft: bool,
    },
    Remove {
        k: u8,
    },
    FlushTagged,
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12, 0u8..3, 0u64..200, 0u64..200, 0u8..64, prop::bool::weighted(0.1))
            .prop_map(|(k, v, ttl, grace, mask, hfm)| Op::Insert { k, v, ttl, grace, mask, hfm }),
        5 => (0u8..12, 0u8..3).prop_map(|(k, v)| Op::Lookup { k, v }),
        2 => (0usize..TAGS.len(), any::<bool>()).prop_map(|(tag, soft)| Op::Purge { tag, soft }),
        1 => (0u8..12).prop_map(|k| Op::Remove { k }),
        1 => Just(Op::FlushTagged),
        2 => (0u64..150).prop_map(|ms| Op::Advance { ms }),
    ]
}
