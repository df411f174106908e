//! Unit tests of the store (they can see the internal invariants).

use bytes::Bytes;

use crate::*;

fn key(n: u64) -> PrimaryKey {
    // Spread like a real hash: both halves vary.
    let a = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234;
    let b = n.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(17);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    k
}

fn page(body: &'static [u8], ttl: u64) -> ObjectBuilder {
    ObjectBuilder::new(200, Bytes::from_static(body))
        .header(b"content-type", b"text/html")
        .ttl_ms(ttl)
}

fn any(_: &CachedObject) -> bool {
    true
}

fn big_store() -> Store {
    Store::new(StoreConfig {
        max_bytes: 64 << 20,
        shards: 4,
        ..StoreConfig::default()
    })
}

#[test]
fn insert_then_fresh_hit_shares_the_body() {
    let s = big_store();
    let body = Bytes::from(vec![7u8; 1000]);
    let obj = s
        .insert(
            key(1),
            Variance::NONE,
            ObjectBuilder::new(200, body.clone()).ttl_ms(1000),
            0,
        )
        .unwrap();
    assert!(!obj.was_hit(), "the writer's copy says MISS");
    let Lookup::Fresh(hit) = s.lookup(&key(1), any, 10) else {
        panic!("expected fresh")
    };
    assert!(obj.same_object(&hit));
    // The body is copied once at insert; hits share the stored copy.
    assert_eq!(hit.body(), body);
    assert_eq!(hit.body().as_ptr(), obj.body().as_ptr(), "no copy on a hit");
    assert!(hit.was_hit(), "HIT for the debug header");
    assert!(matches!(s.lookup(&key(2), any, 10), Lookup::Miss));
    let st = s.stats();
    assert_eq!((st.hits, st.misses, st.inserts, st.objects), (1, 1, 1, 1));
    assert_eq!(st.payload_bytes, 1000);
    assert_eq!(st.bytes_accounted, 1000 + OBJECT_OVERHEAD);
    s.check_invariants();
}

#[test]
fn stale_within_grace_and_keep_then_miss() {
    let s = big_store();
    s.insert(
        key(1),
        Variance::NONE,
        page(b"x", 100).grace_ms(50).keep_ms(30),
        1000,
    )
    .unwrap();
    assert_eq!(s.lookup(&key(1), any, 1099).as_str(), "fresh");
    let Lookup::Stale(o) = s.lookup(&key(1), any, 1100) else {
        panic!()
    };
    assert!(o.in_grace(1100));
    let Lookup::Stale(o) = s.lookup(&key(1), any, 1160) else {
        panic!()
    };
    assert!(!o.in_grace(1160) && o.is_retained(1160));
    assert!(matches!(s.lookup(&key(1), any, 1180), Lookup::Miss));
    let st = s.stats();
    assert_eq!((st.hits, st.stale_hits, st.misses), (1, 2, 1));
    // The janitor removes it.
    assert_eq!(s.remove_expired(1179), 0);
    assert_eq!(s.remove_expired(1180), 1);
    assert_eq!(s.stats().objects, 0);
    assert_eq!(s.stats().expired, 1);
    s.check_invariants();
}

#[test]
fn hit_for_miss_marker_and_its_replacement() {
    let s = big_store();
    s.insert(
        key(1),
        Variance::NONE,
        ObjectBuilder::hit_for_miss(120_000),
        0,
    )
    .unwrap();
    assert!(matches!(s.lookup(&key(1), any, 1), Lookup::HitForMiss));
    assert!(matches!(s.lookup(&key(1), any, 120_000), Lookup::Miss));
    assert_eq!(s.stats().hit_for_miss, 1);
    // A later cacheable response replaces the marker.
    s.insert(key(1), Variance::NONE, page(b"ok", 1000), 10)
        .unwrap();
    let Lookup::Fresh(o) = s.lookup(&key(1), any, 11) else {
        panic!()
    };
    assert_eq!(o.body().as_ref(), b"ok");
    assert_eq!(s.stats().objects, 1);
    assert_eq!(s.stats().replaced, 1);
    s.check_invariants();
}

#[test]
fn variants_are_selected_replaced_and_capped() {
    let s = Store::new(StoreConfig {
        max_variants: 3,
        ..StoreConfig::default()
    });
    let k = key(5);
    s.insert(k, Variance(1), page(b"gzip", 1000), 0).unwrap();
    s.insert(k, Variance(2), page(b"plain", 1000), 1).unwrap();
    let pick = |v| move |o: &CachedObject| o.variance() == Variance(v);
    assert_eq!(
        s.lookup(&k, pick(1), 2).object().unwrap().body().as_ref(),
        b"gzip"
    );
    assert_eq!(
        s.lookup(&k, pick(2), 2).object().unwrap().body().as_ref(),
        b"plain"
    );
    assert!(matches!(s.lookup(&k, pick(3), 2), Lookup::Miss));
    // Several match: the newest wins.
    assert_eq!(
        s.lookup(&k, any, 2).object().unwrap().body().as_ref(),
        b"plain"
    );
    // Same variance replaces.
    s.insert(k, Variance(1), page(b"gzip2", 1000), 3).unwrap();
    assert_eq!(
        s.lookup(&k, pick(1), 4).object().unwrap().body().as_ref(),
        b"gzip2"
    );
    assert_eq!(s.stats().objects, 2);
    // Cap: a 4th variance drops the oldest (variance 2, created at 1).
    s.insert(k, Variance(3), page(b"c", 1000), 5).unwrap();
    s.insert(k, Variance(4), page(b"d", 1000), 6).unwrap();
    assert_eq!(s.stats().objects, 3);
    assert!(matches!(s.lookup(&k, pick(2), 7), Lookup::Miss));
    assert_eq!(s.remove(&k), 3);
    assert_eq!(s.remove(&k), 0);
    assert_eq!(s.stats().objects, 0);
    s.check_invariants();
}

fn tagged(s: &Store, n: u64, tags: &[&str], now: u64) {
    s.insert(
        key(n),
        Variance::NONE,
        page(b"body", 10_000).grace_ms(5_000).tags(tags.iter()),
        now,
    )
    .unwrap();
}

#[test]
fn purge_tags_hits_only_tagged_objects_and_forgets_tags() {
    let s = big_store();
    tagged(&s, 1, &["cat_p_1", "cat_c_1"], 0);
    tagged(&s, 2, &["cat_p_2", "cat_c_1"], 0);
    tagged(&s, 3, &["cat_p_3", "cat_c_2"], 0);
    s.insert(key(4), Variance::NONE, page(b"untagged", 10_000), 0)
        .unwrap();
    assert_eq!(s.stats().distinct_tags, 5);
    assert_eq!(s.stats().tag_refs, 6);

    let p = s.purge_tags(&["cat_c_1", "nope"]);
    assert_eq!(
        p,
        PurgeStats {
            tags_matched: 1,
            objects: 2,
            bytes_freed: 2 * (4 + 25 + OBJECT_OVERHEAD + 2 * TAG_REF_OVERHEAD),
        }
    );
    assert!(matches!(s.lookup(&key(1), any, 1), Lookup::Miss));
    assert!(matches!(s.lookup(&key(2), any, 1), Lookup::Miss));
    assert!(matches!(s.lookup(&key(3), any, 1), Lookup::Fresh(_)));
    assert!(matches!(s.lookup(&key(4), any, 1), Lookup::Fresh(_)));
    let st = s.stats();
    assert_eq!((st.distinct_tags, st.tag_refs, st.purged), (2, 2, 2));
    // Purging again, or a tag nobody has, is a no-op.
    assert_eq!(s.purge_tags(&["cat_c_1"]).objects, 0);
    assert_eq!(s.purge_tags(&[]).objects, 0);
    // Objects inserted after a purge are not affected by it.
    tagged(&s, 1, &["cat_c_1"], 2);
    assert!(matches!(s.lookup(&key(1), any, 3), Lookup::Fresh(_)));
    s.check_invariants();
}

#[test]
fn soft_purge_serves_stale_for_grace_from_the_purge() {
    let s = big_store();
    tagged(&s, 1, &["cat_p_1"], 0);
    tagged(&s, 2, &["cat_p_2"], 0);
    let p = s.soft_purge_tags(&["cat_p_1"], 100);
    assert_eq!((p.tags_matched, p.objects), (1, 1));
    let Lookup::Stale(o) = s.lookup(&key(1), any, 100) else {
        panic!("soft-purged object must be stale")
    };
    assert!(o.is_soft_purged() && o.in_grace(100));
    assert!(matches!(s.lookup(&key(1), any, 5_099), Lookup::Stale(_)));
    assert!(matches!(s.lookup(&key(1), any, 5_100), Lookup::Miss));
    assert!(matches!(s.lookup(&key(2), any, 5_100), Lookup::Fresh(_)));
    assert_eq!(s.stats().soft_purged, 1);
    assert_eq!(s.stats().objects, 2, "soft purge keeps the object");
    s.check_invariants();
}

#[test]
fn purge_matching_runs_over_the_dictionary() {
    let s = big_store();
    tagged(&s, 1, &["cat_c_1"], 0);
    tagged(&s, 2, &["cat_c_12"], 0);
    tagged(&s, 3, &["cat_c_2"], 0);
    tagged(&s, 4, &["cms_b_1"], 0);
    let mut calls = 0;
    let p = s.purge_matching(|t| {
        calls += 1;
        t.starts_with("cat_c_1")
    });
    assert_eq!(calls, 4, "one call per distinct tag");
    assert_eq!((p.tags_matched, p.objects), (2, 2));
    assert!(matches!(s.lookup(&key(3), any, 1), Lookup::Fresh(_)));
    let p = s.soft_purge_matching(|t| t == "cms_b_1", 5);
    assert_eq!(p.objects, 1);
    assert!(matches!(s.lookup(&key(4), any, 5), Lookup::Stale(_)));
    s.check_invariants();
}

#[test]
fn full_flush_keeps_untagged_objects() {
    let s = big_store();
    for n in 0..50 {
        tagged(&s, n, &["store", &format!("cat_p_{n}")], 0);
    }
    s.insert(key(100), Variance::NONE, page(b"static", 10_000), 0)
        .unwrap();
    let soft = s.soft_purge_all_tagged(1);
    assert_eq!(soft.objects, 50);
    assert!(matches!(s.lookup(&key(3), any, 1), Lookup::Stale(_)));
    assert!(matches!(s.lookup(&key(100), any, 1), Lookup::Fresh(_)));
    let p = s.purge_all_tagged();
    assert_eq!(p.objects, 50);
    assert_eq!(s.stats().objects, 1);
    assert_eq!(s.stats().distinct_tags, 0);
    assert!(matches!(s.lookup(&key(100), any, 2), Lookup::Fresh(_)));
    s.check_invariants();
    tagged(&s, 7, &["store"], 3);
    let all = s.purge_all();
    assert_eq!(all.objects, 2);
    assert_eq!(s.stats().objects, 0);
    assert_eq!(s.stats().bytes_accounted, 0);
    assert_eq!(s.stats().distinct_tags, 0);
    s.check_invariants();
    // The store works after a full clear.
    tagged(&s, 8, &["store"], 4);
    assert!(matches!(s.lookup(&key(8), any, 5), Lookup::Fresh(_)));
    s.check_invariants();
}

#[test]
fn byte_ceiling_holds_and_eviction_runs() {
    let max = 200_000;
    let s = Store::new(StoreConfig {
        max_bytes: max,
        shards: 2,
        ..StoreConfig::default()
    });
    let body = Bytes::from(vec![1u8; 900]);
    for n in 0..2_000 {
        let tags = [format!("cat_p_{}", n % 97), format!("cat_c_{}", n % 13)];
        s.insert(
            key(n),
            Variance::NONE,
            ObjectBuilder::new(200, body.clone())
                .ttl_ms(1_000_000)
                .tags(&tags),
            n,
        )
        .unwrap();
        assert!(s.stats().bytes_accounted <= max);
        if n % 2 == 0 {
            s.lookup(&key(n / 2), any, n);
        }
    }
    let st = s.stats();
    assert!(st.evictions > 0);
    assert!(st.objects > 50, "{st:?}");
    assert_eq!(st.inserts, 2_000);
    s.check_invariants();
}

#[test]
fn refusals() {
    let s = Store::new(StoreConfig {
        max_bytes: 10_000,
        shards: 1,
        ..StoreConfig::default()
    });
    let e = s
        .insert(
            key(1),
            Variance::NONE,
            ObjectBuilder::new(200, Bytes::from(vec![0; 20_000])),
            0,
        )
        .unwrap_err();
    assert!(matches!(e, InsertError::TooLarge { .. }), "{e}");
    let long = "x".repeat(MAX_TAG_LEN + 1);
    let e = s
        .insert(key(1), Variance::NONE, page(b"", 1).tag(&long), 0)
        .unwrap_err();
    assert!(matches!(e, InsertError::TagTooLong { .. }));
    let many: Vec<String> = (0..=MAX_TAGS_PER_OBJECT).map(|i| format!("t{i}")).collect();
    let e = s
        .insert(key(1), Variance::NONE, page(b"", 1).tags(&many), 0)
        .unwrap_err();
    assert!(matches!(e, InsertError::TooManyTags { .. }));
    assert!(e.to_string().starts_with("too many tags"));
    let e = s
        .insert(
            key(1),
            Variance::NONE,
            page(b"", 1).header(b"x-big", &vec![b'a'; MAX_HEADERS_BYTES]),
            0,
        )
        .unwrap_err();
    assert!(matches!(e, InsertError::HeadersTooLarge { .. }), "{e}");
    assert_eq!(s.stats().rejected, 4);
    assert_eq!(s.stats().distinct_tags, 0);
    s.check_invariants();
}

#[test]
fn duplicate_and_empty_tags_are_folded() {
    let s = big_store();
    let o = s
        .insert(
            key(1),
            Variance::NONE,
            page(b"x", 10).tags(["b", "a", "b", ""]),
            0,
        )
        .unwrap();
    assert_eq!(o.tag_count(), 2);
    let mut names = s.tag_names(&o);
    names.sort();
    assert_eq!(names, vec!["a", "b"]);
    let first = o.tag_ids().next().unwrap();
    assert!(s.tag_name(first).is_some());
    s.check_invariants();
}

#[test]
fn dictionary_is_accounted_and_credited() {
    let s = big_store();
    tagged(&s, 1, &["abc"], 0);
    let st = s.stats();
    assert_eq!(st.dict_bytes, DICT_ENTRY_OVERHEAD + 3);
    assert_eq!(
        st.bytes_accounted,
        st.dict_bytes + 4 + 25 + OBJECT_OVERHEAD + TAG_REF_OVERHEAD
    );
    s.remove(&key(1));
    assert_eq!(s.stats().bytes_accounted, 0);
    s.check_invariants();
}

#[test]
fn s3fifo_keeps_reused_objects_over_one_hit_wonders() {
    // One shard of ~100 objects; 20 hot keys hit between scan inserts.
    let charge = 100 + OBJECT_OVERHEAD;
    let s = Store::new(StoreConfig {
        max_bytes: charge * 100,
        shards: 1,
        ..StoreConfig::default()
    });
    let body = Bytes::from(vec![0u8; 100]);
    let ins = |n: u64| {
        s.insert(
            key(n),
            Variance::NONE,
            ObjectBuilder::new(200, body.clone()).ttl_ms(u64::MAX),
            0,
        )
        .unwrap();
    };
    for h in 0..20 {
        ins(h);
    }
    for round in 0..50u64 {
        for h in 0..20 {
            if matches!(s.lookup(&key(h), any, 0), Lookup::Miss) {
                ins(h);
            }
        }
        for j in 0..20 {
            ins(1_000 + round * 20 + j);
        }
    }
    let hot_present = (0..20)
        .filter(|&h| !matches!(s.lookup(&key(h), any, 0), Lookup::Miss))
        .count();
    assert_eq!(hot_present, 20);
    s.check_invariants();
}

#[test]
fn ghost_readmits_into_main() {
    let charge = 100 + OBJECT_OVERHEAD;
    let s = Store::new(StoreConfig {
        max_bytes: charge * 50,
        shards: 1,
        ..StoreConfig::default()
    });
    let body = Bytes::from(vec![0u8; 100]);
    let ins = |n: u64| {
        s.insert(
            key(n),
            Variance::NONE,
            ObjectBuilder::new(200, body.clone()).ttl_ms(u64::MAX),
            0,
        )
        .unwrap()
    };
    ins(0);
    for n in 1..60 {
        ins(n);
    }
    assert!(matches!(s.lookup(&key(0), any, 0), Lookup::Miss));
    // Key 0 comes back: the ghost sends it to main, so a long scan with no
    // further hit on it does not evict it before the main hand gets there.
    ins(0);
    for n in 100..140 {
        ins(n);
    }
    assert!(!matches!(s.lookup(&key(0), any, 0), Lookup::Miss));
    s.check_invariants();
}

#[test]
fn tombstones_are_compacted() {
    let s = Store::new(StoreConfig {
        shards: 1,
        ..StoreConfig::default()
    });
    for round in 0..5 {
        for n in 0..1_000 {
            tagged(&s, n, &["t"], round);
        }
        s.purge_tags(&["t"]);
    }
    s.check_invariants();
    let m = s.memory_report();
    assert!(m.queues < 64 * 1024, "{m:?}");
}

#[test]
fn concurrent_use_keeps_invariants() {
    let s = Store::new(StoreConfig {
        max_bytes: 300_000,
        shards: 4,
        ..StoreConfig::default()
    });
    std::thread::scope(|scope| {
        for t in 0..3u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..3_000u64 {
                    let n = (i * 7 + t * 13) % 500;
                    match i % 5 {
                        0 | 1 => {
                            let tag = format!("cat_c_{}", n % 11);
                            let _ = s.insert(
                                key(n),
                                Variance(n % 3),
                                page(b"0123456789", 1_000).tags([tag.as_str(), "store"]),
                                i,
                            );
                        }
                        2 => {
                            let _ = s.lookup(&key(n), any, i);
                        }
                        3 if i % 50 == 3 => {
                            s.purge_tags(&[&format!("cat_c_{}", n % 11)]);
                        }
                        3 => {
                            s.soft_purge_tags(&["store"], i);
                        }
                        _ => {
                            s.remove(&key(n));
                        }
                    }
                    assert!(s.stats().bytes_accounted <= 300_000);
                }
            });
        }
    });
    s.check_invariants();
    s.purge_all_tagged();
    assert_eq!(s.stats().distinct_tags, 0);
    s.check_invariants();
}

#[test]
fn memory_report_adds_up() {
    let s = big_store();
    for n in 0..1_000 {
        tagged(&s, n, &["store", &format!("cat_p_{n}")], 0);
    }
    let m = s.memory_report();
    assert_eq!(
        (m.objects, m.tag_refs, m.distinct_tags),
        (1_000, 2_000, 1_001)
    );
    assert_eq!(m.header_bytes, 25 * 1_000);
    assert_eq!(m.body_bytes, 4 * 1_000);
    assert_eq!(m.tag_id_bytes, 8 * 1_000);
    // One allocation per object: 64 bytes of refcount, metadata and length,
    // 8 of tag ids, 25 of headers, 4 of body: a 112-byte malloc chunk.
    assert_eq!(m.object_allocs, 112 * 1_000);
    assert!(m.overhead_bytes() > 1_000 * (112 - 25 - 4));
    assert!(m.object_overhead_per_object() > 75.0);
    assert!(m.tag_overhead_per_ref() > 4.0);
    assert!(s.tag_index_entries() >= 1_000);
    assert!(format!("{s:?}").contains("Store"));
}

#[test]
fn config_is_clamped() {
    let s = Store::new(StoreConfig {
        shards: 0,
        small_queue_percent: 200,
        max_variants: 0,
        ..StoreConfig::default()
    });
    assert_eq!(s.config().shards, 1);
    assert_eq!(s.config().small_queue_percent, 90);
    assert_eq!(s.config().max_variants, 1);
    let d = Store::default();
    assert_eq!(d.config(), &StoreConfig::default());
}

#[test]
fn lookup_labels() {
    assert_eq!(Lookup::Miss.as_str(), "miss");
    assert_eq!(Lookup::HitForMiss.as_str(), "hit_for_miss");
    assert!(Lookup::Miss.object().is_none());
}

#[test]
fn store_and_objects_are_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
    send_sync::<CachedObject>();
    send_sync::<Lookup>();
}

#[test]
fn soft_purge_all_marks_tagged_and_untagged_stale() {
    let s = big_store();
    for n in 0..10 {
        tagged(&s, n, &["store", &format!("cat_p_{n}")], 0);
    }
    s.insert(key(100), Variance::NONE, page(b"static", 10_000), 0)
        .unwrap();
    let p = s.soft_purge_all(1);
    assert_eq!(p.objects, 11);
    assert!(matches!(s.lookup(&key(3), any, 1), Lookup::Stale(_)));
    // No grace on this one: stale means refetched, never served fresh.
    assert!(!matches!(s.lookup(&key(100), any, 1), Lookup::Fresh(_)));
    assert_eq!(s.stats().objects, 11, "kept for grace");
    s.check_invariants();
}

/// A marker and a cacheable object inserted in the same millisecond: the
/// later insert decides, whatever order the index walks them in.
#[test]
fn hit_for_miss_and_objects_replace_each_other_at_the_same_instant() {
    let s = big_store();
    for n in 0..64 {
        let k = key(1000 + n);
        s.insert(k, Variance::NONE, ObjectBuilder::hit_for_miss(120_000), 5)
            .unwrap();
        s.insert(k, Variance(7), page(b"public", 60_000), 5)
            .unwrap();
        assert!(
            matches!(s.lookup(&k, any, 5), Lookup::Fresh(_)),
            "a cacheable answer must end the marker ({n})"
        );
        s.insert(k, Variance::NONE, ObjectBuilder::hit_for_miss(120_000), 5)
            .unwrap();
        assert!(
            matches!(s.lookup(&k, any, 5), Lookup::HitForMiss),
            "a marker must end the variants ({n})"
        );
    }
}

#[test]
fn purge_observer_sees_each_purged_object_and_nothing_else() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<PrimaryKey>>> = Arc::default();
    let log = seen.clone();
    let s = Store::new(StoreConfig {
        max_bytes: 64 << 20,
        ..StoreConfig::default()
    })
    .with_purge_observer(Box::new(move |o| log.lock().unwrap().push(*o.key())));
    tagged(&s, 1, &["cat_p_1"], 0);
    tagged(&s, 2, &["cat_p_2"], 0);
    tagged(&s, 3, &["cat_p_3"], 0);
    tagged(&s, 4, &["cat_p_4"], 0);
    s.remove(&key(4));
    assert!(seen.lock().unwrap().is_empty());
    s.purge_tags(&["cat_p_1"]);
    assert_eq!(*seen.lock().unwrap(), vec![key(1)]);
    s.soft_purge_tags(&["cat_p_2"], 10);
    assert_eq!(seen.lock().unwrap()[1], key(2));
    s.purge_matching(|t| t == "cat_p_3");
    assert_eq!(seen.lock().unwrap()[2], key(3));
    seen.lock().unwrap().clear();
    s.purge_all_tagged();
    assert_eq!(*seen.lock().unwrap(), vec![key(2)]);
}
