//! Store benchmark: fill, memory per object, purge latency, lookup rate.
//!
//! ```text
//! cargo run --release -p magestack-fpc-store --example store_bench -- [--objects N] [--shards S] [--lookups L]
//! ```
//!
//! Prints `key=value` lines. Bodies are 1–2 KiB (8 shared `Bytes` handed in;
//! the store copies each into the object, so RSS counts them as payload);
//! each object has its own ~230-byte header block and 3–8 tags drawn like a
//! Magento catalogue: 1–2 of ~200k `cat_p_N`, 1–3 of ~2k `cat_c_N`, 1–3 of
//! ~80 CMS/store tags (some on most pages).

use std::time::Instant;

use bytes::Bytes;
use magestack_fpc_store::{
    Lookup, ObjectBuilder, PrimaryKey, Store, StoreConfig, Variance, TAG_REF_OVERHEAD,
};

const PRODUCTS: u64 = 200_000;
const CATEGORIES: u64 = 2_000;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key(i: u64) -> PrimaryKey {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_le_bytes());
    k[8..].copy_from_slice(&mix(i ^ 0xdead_beef_cafe).to_le_bytes());
    k
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn other_tag(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=3 => "cms_b_footer_links".to_owned(),
        4 | 5 => "store".to_owned(),
        6 => "cms_b_header_promo".to_owned(),
        7 => format!("cms_p_{}", rng.below(20)),
        _ => format!("cms_b_{}", rng.below(60)),
    }
}

fn tags_for(rng: &mut Rng) -> Vec<String> {
    let mut t = Vec::with_capacity(8);
    for _ in 0..1 + rng.below(2) {
        t.push(format!("cat_p_{}", rng.below(PRODUCTS)));
    }
    for _ in 0..1 + rng.below(3) {
        t.push(format!("cat_c_{}", rng.below(CATEGORIES)));
    }
    for _ in 0..1 + rng.below(3) {
        t.push(other_tag(rng));
    }
    t
}

fn headers_for(i: u64, body_len: usize) -> Vec<u8> {
    format!(
        "content-type: text/html; charset=UTF-8\r\n\
         cache-control: public, max-age=86400, s-maxage=86400\r\n\
         vary: Accept-Encoding\r\n\
         x-content-type-options: nosniff\r\n\
         x-xss-protection: 1; mode=block\r\n\
         x-frame-options: SAMEORIGIN\r\n\
         content-length: {body_len}\r\n\
         etag: \"{:016x}\"\r\n",
        mix(i)
    )
    .into_bytes()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

fn lookups(store: &Store, n: u64, objects: u64, seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let mut found = 0;
    for _ in 0..n {
        let k = key(rng.below(objects));
        if let Lookup::Fresh(o) = store.lookup(&k, |_| true, 1) {
            found += o.status() as u64 / 200;
        }
    }
    found
}

fn main() {
    let objects = arg("--objects", 1_000_000);
    let shards = arg("--shards", 16) as usize;
    let lookups_per_thread = arg("--lookups", 4_000_000);

    let bodies: Vec<Bytes> = (0..8)
        .map(|i| Bytes::from(vec![b'a' + i as u8; 1024 + i * 128]))
        .collect();
    let store = Store::new(StoreConfig {
        max_bytes: 64 << 30,
        shards,
        ..StoreConfig::default()
    });
    let rss0 = rss_bytes();

    let mut rng = Rng(1);
    let mut header_bytes = 0u64;
    let t = Instant::now();
    for i in 0..objects {
        let body = bodies[(i % 8) as usize].clone();
        let headers = headers_for(i, body.len());
        header_bytes += headers.len() as u64;
        let b = ObjectBuilder::new(200, body)
            .headers_block(headers)
            .ttl_ms(86_400_000)
            .grace_ms(3 * 86_400_000)
            .tags(tags_for(&mut rng));
        if store.insert(key(i), Variance(1), b, 0).is_err() {
            eprintln!("insert {i} refused");
        }
    }
    let fill = t.elapsed().as_secs_f64();
    let rss1 = rss_bytes();
    let st = store.stats();
    let mem = store.memory_report();

    println!("objects={}", st.objects);
    println!("shards={shards}");
    println!("tag_refs={}", st.tag_refs);
    println!(
        "tag_refs_per_object={:.2}",
        st.tag_refs as f64 / st.objects as f64
    );
    println!("distinct_tags={}", st.distinct_tags);
    println!("tag_index_entries={}", store.tag_index_entries());
    println!("fill_secs={fill:.3}");
    println!("inserts_per_sec={:.0}", objects as f64 / fill);
    println!("header_payload_bytes={header_bytes}");

    // (2) Memory beyond payload.
    let n = st.objects as f64;
    let refs = st.tag_refs as f64;
    // The store copies header blocks and bodies: both are payload.
    let rss_overhead = rss1.saturating_sub(rss0).saturating_sub(st.payload_bytes) as f64;
    let calc_overhead = mem.overhead_bytes() as f64;
    let accounted_overhead = (st.bytes_accounted - st.payload_bytes) as f64;
    for (name, total) in [
        ("rss", rss_overhead),
        ("calc", calc_overhead),
        ("accounted", accounted_overhead),
    ] {
        println!("{name}_overhead_bytes={total:.0}");
        println!("{name}_bytes_per_object={:.1}", total / n);
        println!(
            "{name}_bytes_per_object_minus_{TAG_REF_OVERHEAD}_per_tag_ref={:.1}",
            (total - TAG_REF_OVERHEAD as f64 * refs) / n
        );
    }
    println!(
        "calc_object_part_per_object={:.1}",
        mem.object_overhead_per_object()
    );
    println!(
        "calc_tag_part_per_tag_ref={:.1}",
        mem.tag_overhead_per_ref()
    );
    println!(
        "calc_object_alloc_overhead_per_object={:.1}",
        (mem.object_allocs - mem.header_bytes - mem.body_bytes - mem.tag_id_bytes) as f64 / n
    );
    println!(
        "calc_slot_arrays_per_object={:.1}",
        mem.slot_arrays as f64 / n
    );
    println!("calc_key_index_per_object={:.1}", mem.key_index as f64 / n);
    println!("calc_queues_per_object={:.1}", mem.queues as f64 / n);
    println!("calc_ghost_per_object={:.1}", mem.ghost as f64 / n);
    println!(
        "calc_tag_ids_per_tag_ref={:.1}",
        mem.tag_id_bytes as f64 / refs
    );
    println!(
        "calc_tag_index_per_tag_ref={:.1}",
        mem.tag_index as f64 / refs
    );
    println!(
        "calc_dictionary_per_tag_ref={:.1}",
        mem.dictionary as f64 / refs
    );
    println!("rss_before_fill={rss0}");
    println!("rss_after_fill={rss1}");

    // (3) Lookups (before purges so every lookup of a filled key hits).
    let t = Instant::now();
    let found = lookups(&store, lookups_per_thread, objects, 7);
    let secs = t.elapsed().as_secs_f64();
    println!("lookups_1t_per_sec={:.0}", lookups_per_thread as f64 / secs);
    println!(
        "lookups_1t_hit_ratio={:.3}",
        found as f64 / lookups_per_thread as f64
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..2u64 {
            let store = &store;
            s.spawn(move || lookups(store, lookups_per_thread, objects, 100 + th));
        }
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "lookups_2t_per_sec={:.0}",
        2.0 * lookups_per_thread as f64 / secs
    );
    // A hot set of 1,000 keys (cache resident): the lock + atomics cost.
    let t = Instant::now();
    let hot = lookups(&store, lookups_per_thread, 1_000, 9);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "lookups_hot_1t_per_sec={:.0}",
        lookups_per_thread as f64 / secs
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..2u64 {
            let store = &store;
            s.spawn(move || lookups(store, lookups_per_thread, 1_000, 200 + th));
        }
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "lookups_hot_2t_per_sec={:.0}",
        2.0 * lookups_per_thread as f64 / secs
    );
    let _ = hot;

    // (1) Purge one tag among all objects.
    let mut rng = Rng(99);
    for (label, prefix, range) in [
        ("cat_c", "cat_c_", CATEGORIES),
        ("cat_p", "cat_p_", PRODUCTS),
    ] {
        let mut times = Vec::new();
        let mut purged = 0;
        for _ in 0..50 {
            let tag = format!("{prefix}{}", rng.below(range));
            let t = Instant::now();
            let p = store.purge_tags(&[&tag]);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            purged += p.objects;
        }
        println!("purge_{label}_objects_avg={:.1}", purged as f64 / 50.0);
        println!("purge_{label}_ms_median={:.3}", percentile(&mut times, 0.5));
        println!("purge_{label}_ms_p90={:.3}", percentile(&mut times, 0.9));
        println!("purge_{label}_ms_max={:.3}", percentile(&mut times, 1.0));
    }
    let tag = format!("cat_c_{}", rng.below(CATEGORIES));
    let t = Instant::now();
    let p = store.soft_purge_tags(&[&tag], 2);
    println!("soft_purge_cat_c_objects={}", p.objects);
    println!("soft_purge_cat_c_ms={:.3}", t.elapsed().as_secs_f64() * 1e3);
    // Regex fallback: a predicate over the dictionary (~200k distinct tags).
    let wanted = format!("cat_c_{}", rng.below(CATEGORIES));
    let t = Instant::now();
    let p = store.purge_matching(|name| name == wanted);
    println!("purge_matching_dictionary_size={}", st.distinct_tags);
    println!("purge_matching_objects={}", p.objects);
    println!("purge_matching_ms={:.3}", t.elapsed().as_secs_f64() * 1e3);

    // Full flush (Magento `.*`).
    let before = store.stats().objects;
    let t = Instant::now();
    let p = store.purge_all_tagged();
    println!("purge_all_tagged_objects={}", p.objects);
    println!("purge_all_tagged_objects_before={before}");
    println!("purge_all_tagged_ms={:.1}", t.elapsed().as_secs_f64() * 1e3);
    let end = store.stats();
    println!("after_flush_objects={}", end.objects);
    println!("after_flush_distinct_tags={}", end.distinct_tags);
    println!("after_flush_bytes_accounted={}", end.bytes_accounted);
}
