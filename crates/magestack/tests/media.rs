//! `/media/` and `/static/` from an object store (issue 19), end to end: a
//! real S3-compatible server (s3s-fs, started by `scripts/deps`; a private
//! one where a test stops it), objects uploaded with signed requests, real
//! PHP-FPM for Magento's fallbacks, and `magestack edge` as a process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env, free_addr, Killed};
use object_store::ObjectStoreExt;

fn storefront_pub() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/storefront/pub")
}

/// A unique key prefix per test run, so tests share the bucket safely.
fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Uploads through object_store with the server's credentials (SigV4).
fn upload(endpoint: &str, bucket: &str, key: &str, bytes: Vec<u8>) {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region(env("MAGESTACK_S3_REGION"))
        .with_bucket_name(bucket)
        .with_access_key_id(env("MAGESTACK_S3_ACCESS_KEY_ID"))
        .with_secret_access_key(env("MAGESTACK_S3_SECRET_ACCESS_KEY"))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.put(&object_store::path::Path::from(key), bytes.into()))
        .unwrap();
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection, raw bytes back.
fn get(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

struct Edge {
    addr: SocketAddr,
    proc: Killed,
}

/// `magestack edge` in front of the storefront's PHP-FPM, with `extra` TOML.
fn spawn_edge(extra: &str, aws_env: bool) -> Edge {
    spawn_edge_admin(extra, aws_env, None)
}

fn spawn_edge_admin(extra: &str, aws_env: bool, admin: Option<SocketAddr>) -> Edge {
    let addr = free_addr();
    let config = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .unwrap()
        .into_temp_path()
        .keep()
        .unwrap();
    std::fs::write(&config, extra).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_magestack"));
    cmd.args([
        "edge",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
        "--upstream",
        &format!("fcgi://{}", env("MAGESTACK_FPM_ADDR")),
        "--docroot",
        storefront_pub().to_str().unwrap(),
        "--no-cache",
    ]);
    if let Some(a) = admin {
        cmd.args(["--admin-listen", &a.to_string()]);
    }
    if aws_env {
        cmd.env("AWS_ACCESS_KEY_ID", env("MAGESTACK_S3_ACCESS_KEY_ID"))
            .env(
                "AWS_SECRET_ACCESS_KEY",
                env("MAGESTACK_S3_SECRET_ACCESS_KEY"),
            );
    }
    cmd.env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    let mut p = Killed::spawn(cmd);
    p.wait_up(addr);
    Edge { addr, proc: p }
}

fn media_config(endpoint: &str, bucket: &str, prefix: &str, cache: &Path, extra: &str) -> String {
    format!(
        "[media]\nsource = \"s3://{bucket}/{prefix}\"\ncache_dir = \"{}\"\ncache_size = \"64MiB\"\nretry_after_secs = 7\nstore_timeout_secs = 2\n{extra}\n[object_store]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n",
        cache.display()
    )
}

const PRODUCT: &str = "/media/catalog/product/a/b/ab.jpg";

fn local(path: &str) -> Vec<u8> {
    std::fs::read(storefront_pub().join(path.trim_start_matches('/'))).unwrap()
}

/// The same bytes, statuses, cache headers, 304s and ranges as the docroot.
#[test]
fn media_and_static_from_s3_answer_like_the_docroot() {
    let endpoint = env("MAGESTACK_S3_ENDPOINT");
    let bucket = env("MAGESTACK_S3_BUCKET");
    let sbucket = env("MAGESTACK_S3_STATIC_BUCKET");
    let prefix = unique("media");
    let sprefix = unique("static");
    let jpg = local(PRODUCT);
    upload(
        &endpoint,
        &bucket,
        &format!("{prefix}/catalog/product/a/b/ab.jpg"),
        jpg.clone(),
    );
    let css_path = "/static/frontend/Magento/luma/en_US/css/styles-m.css";
    let css = local(css_path);
    upload(
        &endpoint,
        &sbucket,
        &format!("{sprefix}/1712/frontend/Magento/luma/en_US/css/styles-m.css"),
        css.clone(),
    );
    let cache = tempfile::tempdir().unwrap();
    let remote = spawn_edge(
        &format!(
            "{}[static]\nsource = \"s3://{sbucket}/{sprefix}\"\n",
            media_config(&endpoint, &bucket, &prefix, cache.path(), "")
        ),
        true,
    );
    let docroot = spawn_edge("", false);

    for (path, bytes) in [
        (PRODUCT.to_owned(), &jpg),
        (
            "/static/version1712/frontend/Magento/luma/en_US/css/styles-m.css".to_owned(),
            &css,
        ),
    ] {
        let a = get(remote.addr, "GET", &path, &[]);
        let b = get(docroot.addr, "GET", &path, &[]);
        assert_eq!((a.status, b.status), (200, 200), "{path}");
        assert_eq!(&a.body, bytes, "{path}: bytes from the store");
        assert_eq!(a.body, b.body, "{path}");
        for h in [
            "content-type",
            "content-length",
            "cache-control",
            "x-frame-options",
            "accept-ranges",
            "vary",
            "content-encoding",
        ] {
            assert_eq!(a.header(h), b.header(h), "{path}: {h}");
        }
        let etag = a.header("etag").expect("etag from the store").to_owned();
        assert!(a.header("last-modified").is_some());
        // Served again: from the disk cache, same validators.
        let again = get(remote.addr, "GET", &path, &[]);
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(again.body, a.body);
        let nm = get(remote.addr, "GET", &path, &[("If-None-Match", &etag)]);
        assert_eq!(nm.status, 304, "{path}");
        assert!(nm.body.is_empty());
        let lm = a.header("last-modified").unwrap().to_owned();
        assert_eq!(
            get(remote.addr, "GET", &path, &[("If-Modified-Since", &lm)]).status,
            304
        );
        let r = get(remote.addr, "GET", &path, &[("Range", "bytes=2-11")]);
        let rl = get(docroot.addr, "GET", &path, &[("Range", "bytes=2-11")]);
        assert_eq!((r.status, rl.status), (206, 206));
        assert_eq!(r.body, bytes[2..12].to_vec());
        assert_eq!(r.header("content-range"), rl.header("content-range"));
        let r = get(remote.addr, "GET", &path, &[("Range", "bytes=999999-")]);
        assert_eq!(r.status, 416);
        let h = get(remote.addr, "HEAD", &path, &[]);
        assert_eq!(h.status, 200);
        assert!(h.body.is_empty());
        assert_eq!(h.header("content-length"), a.header("content-length"));
    }
    // The nginx sample's denies still apply before the store.
    assert_eq!(
        get(remote.addr, "GET", "/media/customer/secret.txt", &[]).status,
        404
    );
    assert_eq!(
        get(
            remote.addr,
            "GET",
            "/media/theme_customization/custom.xml",
            &[]
        )
        .status,
        get(
            docroot.addr,
            "GET",
            "/media/theme_customization/custom.xml",
            &[]
        )
        .status
    );
}

/// A media object missing from the store goes to get.php under real
/// PHP-FPM (Magento's resize-on-demand keeps working), static ones to static.php.
#[test]
fn missing_objects_fall_back_to_get_php() {
    let endpoint = env("MAGESTACK_S3_ENDPOINT");
    let bucket = env("MAGESTACK_S3_BUCKET");
    let cache = tempfile::tempdir().unwrap();
    let edge = spawn_edge(
        &media_config(&endpoint, &bucket, &unique("fallback"), cache.path(), ""),
        true,
    );
    let hash = format!("{:032x}", u128::from(std::process::id()) << 64 | 0x19);
    let r = get(
        edge.addr,
        "GET",
        &format!("/media/catalog/product/cache/{hash}/a/b/ab.jpg"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, local(PRODUCT), "get.php's copy of the original");
    let r = get(edge.addr, "GET", "/media/wysiwyg/none-such.txt", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; charset=UTF-8"),
        "PHP's 404"
    );
}

/// Accepts connections and counts them: a store that must never be asked.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            n2.fetch_add(1, Ordering::SeqCst);
            held.push(s); // never answers: the edge's timeout ends it
        }
    });
    (format!("http://{addr}"), n)
}

/// Paths that escape the prefix, however encoded, never reach the store.
#[test]
fn escaping_paths_never_reach_the_store() {
    let (endpoint, connections) = counting_listener();
    let cache = tempfile::tempdir().unwrap();
    let edge = spawn_edge(
        &media_config(&endpoint, "magestack-media", "p", cache.path(), ""),
        true,
    );
    for target in [
        "/media/../app/etc/env.php",
        "/media/..%2f..%2fapp/etc/env.php",
        "/media/%2e%2e/%2e%2e/app/etc/env.php",
        "/media/%2E%2E%2Fx.jpg",
        "/media/a/%252e%252e/x.jpg",
        "/media/a%5c..%5cx.jpg",
        "/media/a/%00.jpg",
        "/media/",
        "/media/catalog/",
    ] {
        let r = get(edge.addr, "GET", target, &[]);
        assert!(
            r.status == 400 || r.status == 404 || r.status == 403 || r.status == 301,
            "{target}: {}",
            r.status
        );
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the store was asked");
    // The control: a plain path does go to the store (which never answers: 503).
    let t = Instant::now();
    let r = get(edge.addr, "GET", "/media/catalog/x.jpg", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(connections.load(Ordering::SeqCst) >= 1);
}

/// A private s3s-fs on `port` serving `root`.
fn spawn_s3(root: &Path, port: u16) -> Killed {
    let mut cmd = Command::new(env("MAGESTACK_S3_SERVER"));
    cmd.args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--access-key",
        &env("MAGESTACK_S3_ACCESS_KEY_ID"),
        "--secret-key",
        &env("MAGESTACK_S3_SECRET_ACCESS_KEY"),
        root.to_str().unwrap(),
    ]);
    let mut p = Killed::spawn(cmd);
    p.wait_up(SocketAddr::from(([127, 0, 0, 1], port)));
    p
}

/// The store stopped: cached objects still 200, others 503 with
/// Retry-After (quickly), and the edge recovers when the store returns; the
/// disk cache survives an edge restart.
#[test]
fn store_down_cached_objects_still_served_and_recovery() {
    let root = tempfile::tempdir().unwrap();
    let bucket_dir = root.path().join("media-down");
    std::fs::create_dir_all(bucket_dir.join("p/catalog")).unwrap();
    std::fs::write(bucket_dir.join("p/catalog/a.jpg"), local(PRODUCT)).unwrap();
    std::fs::write(bucket_dir.join("p/catalog/b.jpg"), b"second object").unwrap();
    let port = free_addr().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut s3 = spawn_s3(root.path(), port);
    let cache = tempfile::tempdir().unwrap();
    let config = media_config(&endpoint, "media-down", "p", cache.path(), "");
    let edge = spawn_edge(&config, true);
    assert_eq!(
        get(edge.addr, "GET", "/media/catalog/a.jpg", &[]).status,
        200
    );

    s3.child.kill().unwrap();
    s3.child.wait().unwrap();
    let a = get(edge.addr, "GET", "/media/catalog/a.jpg", &[]);
    assert_eq!(a.status, 200, "cached while the store is down");
    assert_eq!(a.body, local(PRODUCT));
    let t = Instant::now();
    let b = get(edge.addr, "GET", "/media/catalog/b.jpg", &[]);
    assert_eq!(b.status, 503);
    assert_eq!(b.header("retry-after"), Some("7"));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        t.elapsed()
    );

    // The edge restarts with the store still down: its disk cache is kept.
    drop(edge);
    let edge = spawn_edge(&config, true);
    assert_eq!(
        get(edge.addr, "GET", "/media/catalog/a.jpg", &[]).status,
        200
    );
    assert_eq!(
        get(edge.addr, "GET", "/media/catalog/b.jpg", &[]).status,
        503
    );

    let _s3 = spawn_s3(root.path(), port);
    let b = get(edge.addr, "GET", "/media/catalog/b.jpg", &[]);
    assert_eq!(b.status, 200, "recovered");
    assert_eq!(b.body, b"second object");
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn originals() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let jpg = image::RgbImage::from_fn(800, 600, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let png = image::RgbaImage::from_fn(600, 400, |x, _| {
        image::Rgba([20, 200, 20, if x < 300 { 0 } else { 255 }])
    });
    let gif = image::RgbaImage::from_fn(300, 200, |x, _| {
        image::Rgba([if x < 150 { 255 } else { 0 }, 0, 0, 255])
    });
    (
        encode(jpg.into(), image::ImageFormat::Jpeg),
        encode(png.into(), image::ImageFormat::Png),
        encode(gif.into(), image::ImageFormat::Gif),
    )
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header declares 40000 x 40000 pixels (6.4 GB decoded) in a
/// few bytes: a decompression bomb.
fn bomb_png() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height())
}

fn metric(admin: SocketAddr, line_prefix: &str) -> u64 {
    let m = common::http_raw(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    m.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in:\n{m}"))
}

fn rss_peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Magento-style resize URLs for a JPEG, a PNG with transparency and a GIF:
/// right sizes and formats, WebP by Accept with Vary: Accept, cached
/// variants with 304s; 400 for an oversized request, 415 for a non-image,
/// 413 for a decompression bomb, with the edge's memory staying small.
#[test]
fn resize_magento_urls_and_refusals() {
    let endpoint = env("MAGESTACK_S3_ENDPOINT");
    let bucket = env("MAGESTACK_S3_BUCKET");
    let prefix = unique("resize");
    let (jpg, png, gif) = originals();
    for (name, bytes) in [
        ("a/b/photo.jpg", jpg),
        ("a/b/logo.png", png),
        ("a/b/anim.gif", gif),
        ("a/b/fake.jpg", b"<?php echo 'not an image';".to_vec()),
        ("a/b/bomb.png", bomb_png()),
    ] {
        upload(
            &endpoint,
            &bucket,
            &format!("{prefix}/catalog/product/{name}"),
            bytes,
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let edge = spawn_edge(
        &media_config(
            &endpoint,
            &bucket,
            &prefix,
            cache.path(),
            "resize = true\nresize_max_source_pixels = 20000000",
        ),
        true,
    );
    let q = "width=265&height=265&store=default&image-type=small_image";
    let url = |f: &str| format!("/media/catalog/product/a/b/{f}?{q}");

    let r = get(edge.addr, "GET", &url("photo.jpg"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert_eq!(dims(&r.body), (265, 199));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable"),
        "the location's headers"
    );
    let etag = r.header("etag").unwrap().to_owned();
    let again = get(edge.addr, "GET", &url("photo.jpg"), &[]);
    assert_eq!(
        (again.header("etag"), &again.body),
        (Some(etag.as_str()), &r.body)
    );
    assert_eq!(
        get(
            edge.addr,
            "GET",
            &url("photo.jpg"),
            &[("If-None-Match", &etag)]
        )
        .status,
        304
    );

    let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    let w = get(edge.addr, "GET", &url("photo.jpg"), &[("Accept", chrome)]);
    assert_eq!(w.status, 200);
    assert_eq!(w.header("content-type"), Some("image/webp"));
    assert_eq!(&w.body[8..12], b"WEBP");
    assert_eq!(dims(&w.body), (265, 199));
    assert_ne!(w.header("etag"), Some(etag.as_str()), "another variant");

    let p = get(edge.addr, "GET", &url("logo.png"), &[]);
    assert_eq!(p.header("content-type"), Some("image/png"));
    let img = image::load_from_memory(&p.body).unwrap().into_rgba8();
    assert_eq!(img.dimensions(), (265, 177));
    assert_eq!(img.get_pixel(10, 50)[3], 0, "transparency kept");
    assert_eq!(img.get_pixel(250, 50)[3], 255);

    let g = get(edge.addr, "GET", &url("anim.gif"), &[]);
    assert_eq!(g.header("content-type"), Some("image/gif"));
    assert_eq!(dims(&g.body), (265, 177));

    // Without parameters: the original, untouched.
    let o = get(
        edge.addr,
        "GET",
        "/media/catalog/product/a/b/photo.jpg?store=default",
        &[],
    );
    assert_eq!(dims(&o.body), (800, 600));

    let t = get(
        edge.addr,
        "GET",
        "/media/catalog/product/a/b/photo.jpg?width=100000&height=10",
        &[],
    );
    assert_eq!(t.status, 400);
    let t = get(
        edge.addr,
        "GET",
        "/media/catalog/product/a/b/fake.jpg?width=10",
        &[],
    );
    assert_eq!(t.status, 415);
    let t = get(
        edge.addr,
        "GET",
        "/media/catalog/product/a/b/bomb.png?width=10",
        &[],
    );
    assert_eq!(t.status, 413);
    let peak = rss_peak_kib(edge.proc.child.id());
    assert!(peak < 400 * 1024, "edge peak RSS {peak} KiB");
}

/// 50 concurrent first requests for one variant cause one resize.
#[test]
fn fifty_concurrent_first_requests_one_resize() {
    let endpoint = env("MAGESTACK_S3_ENDPOINT");
    let bucket = env("MAGESTACK_S3_BUCKET");
    let prefix = unique("coalesce");
    let (jpg, _, _) = originals();
    upload(
        &endpoint,
        &bucket,
        &format!("{prefix}/catalog/product/c/d/cd.jpg"),
        jpg,
    );
    let cache = tempfile::tempdir().unwrap();
    let admin = free_addr();
    let edge = spawn_edge_admin(
        &media_config(&endpoint, &bucket, &prefix, cache.path(), "resize = true"),
        true,
        Some(admin),
    );
    common::wait_up(admin);
    let addr = edge.addr;
    let barrier = Arc::new(std::sync::Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let r = get(
                    addr,
                    "GET",
                    "/media/catalog/product/c/d/cd.jpg?width=300&height=300",
                    &[],
                );
                (r.status, r.body)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        results.iter().all(|(s, _)| *s == 200),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(results.iter().all(|(_, b)| b == &results[0].1));
    assert_eq!(
        metric(admin, "magestack_media_resizes_total{format=\"jpeg\"} "),
        1
    );
    assert_eq!(
        metric(admin, "magestack_media_requests_total{result=\"miss\"} "),
        2,
        "one fetch of the original, one resize"
    );
}

/// `magestack media sync` uploads a release's pub/static (and pub/media);
/// the edge then serves `/static/version<release>/` from the bucket, and
/// another release's URL is not mixed up with it.
#[test]
fn media_sync_uploads_a_release_the_edge_serves() {
    let endpoint = env("MAGESTACK_S3_ENDPOINT");
    let bucket = env("MAGESTACK_S3_BUCKET");
    let sbucket = env("MAGESTACK_S3_STATIC_BUCKET");
    let prefix = unique("sync-media");
    let sprefix = unique("sync-static");
    let cache = tempfile::tempdir().unwrap();
    let config_text = format!(
        "{}[static]\nsource = \"s3://{sbucket}/{sprefix}\"\n[magento]\ndocroot = \"{}\"\n",
        media_config(&endpoint, &bucket, &prefix, cache.path(), ""),
        storefront_pub().display()
    );
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("edge.toml");
    std::fs::write(&config, &config_text).unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(media_dir.path().join("catalog/product/a/b")).unwrap();
    std::fs::write(
        media_dir.path().join("catalog/product/a/b/ab.jpg"),
        local(PRODUCT),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_magestack"))
        .args([
            "media",
            "sync",
            "--config",
            config.to_str().unwrap(),
            "--static-dir",
            storefront_pub().join("static").to_str().unwrap(),
            "--release",
            "42",
            "--media-dir",
            media_dir.path().to_str().unwrap(),
        ])
        .env("AWS_ACCESS_KEY_ID", env("MAGESTACK_S3_ACCESS_KEY_ID"))
        .env(
            "AWS_SECRET_ACCESS_KEY",
            env("MAGESTACK_S3_SECRET_ACCESS_KEY"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(0 failed)"), "{stdout}");
    let edge = spawn_edge(&config_text, true);
    let css = "/static/version42/frontend/Magento/luma/en_US/css/styles-m.css";
    let r = get(edge.addr, "GET", css, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        local("/static/frontend/Magento/luma/en_US/css/styles-m.css")
    );
    let m = get(edge.addr, "GET", PRODUCT, &[]);
    assert_eq!((m.status, m.body), (200, local(PRODUCT)));
    // Release 43 was never uploaded: the object is missing, so static.php answers, not release 42's file.
    let other = get(
        edge.addr,
        "GET",
        "/static/version43/frontend/Magento/luma/en_US/css/styles-m.css",
        &[],
    );
    assert!(other.header("etag") != r.header("etag") || other.status != 200);
}

/// Resizing with the docroot as the source: the original from disk, the
/// variant made once and then served from the cache (same ETag).
#[test]
fn resize_from_the_docroot() {
    let cache = tempfile::tempdir().unwrap();
    let edge = spawn_edge(
        &format!(
            "[media]\nresize = true\ncache_dir = \"{}\"\n",
            cache.path().display()
        ),
        false,
    );
    let url = "/media/catalog/product/a/b/ab.jpg?width=16&height=16";
    let a = get(edge.addr, "GET", url, &[]);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("image/jpeg"));
    assert_eq!(dims(&a.body), (16, 16));
    let b = get(edge.addr, "GET", url, &[]);
    assert_eq!((b.header("etag"), &b.body), (a.header("etag"), &a.body));
    let o = get(edge.addr, "GET", "/media/catalog/product/a/b/ab.jpg", &[]);
    assert_eq!(
        o.body,
        local(PRODUCT),
        "no parameters: the file as nginx serves it"
    );
}
