//! Static files through the edge's open-file cache: fresh after a change
//! within the revalidation interval, 404 after a delete, gzip variants made
//! once (or taken from a `.gz` sibling), large files streamed with ranges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use magestack_edge::settings::UpstreamTarget;
use support::*;

const VALID: Duration = Duration::from_secs(1);

async fn start_on(docroot: &Path) -> Running {
    let env = php_env();
    let mut s = settings(
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(docroot.to_path_buf()),
    );
    s.open_file_cache.valid = VALID;
    start(s, limits()).await
}

fn gunzip(b: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn css(fill: char, n: usize) -> String {
    format!(".a{{content:\"{}\"}}\n", fill.to_string().repeat(n))
}

#[tokio::test]
async fn a_changed_file_is_fresh_within_the_interval_and_a_deleted_one_is_404() {
    let dir = tempfile::tempdir().unwrap();
    let rel = "static/frontend/Magento/luma/en_US/css/t.css";
    let file = dir.path().join(rel);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let first = css('a', 3000);
    std::fs::write(&file, &first).unwrap();
    let edge = start_on(dir.path()).await;
    let url = "/static/version1733616000/frontend/Magento/luma/en_US/css/t.css";

    let r = get(edge.addr, url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), first);
    assert_eq!(r.header("content-type").unwrap(), "text/css");
    let strong = r.header("etag").unwrap();

    // A gzip client gets the variant made once: same bytes on every request.
    let g1 = get_with(edge.addr, url, &[("accept-encoding", "gzip, br")]).await;
    let g2 = get_with(edge.addr, url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(g1.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(gunzip(&g1.body), first);
    assert_eq!(g1.body, g2.body, "the variant is kept, not redone");
    assert_eq!(g1.header("etag").unwrap(), format!("W/{strong}"));
    assert_eq!(
        g1.header("content-length").unwrap(),
        g1.body.len().to_string()
    );
    assert!(g1
        .header("vary")
        .unwrap()
        .eq_ignore_ascii_case("accept-encoding"));
    // Its validator still answers 304.
    let r = get_with(
        edge.addr,
        url,
        &[
            ("accept-encoding", "gzip"),
            ("if-none-match", &format!("W/{strong}")),
        ],
    )
    .await;
    assert_eq!(r.status, 304);

    // A new version on disk (another size): served within the interval.
    let second = css('b', 4000);
    std::fs::write(&file, &second).unwrap();
    let changed = Instant::now();
    wait_until(
        "the changed file",
        VALID + Duration::from_secs(2),
        || async { get(edge.addr, url).await.text() == second },
    )
    .await;
    assert!(changed.elapsed() <= VALID + Duration::from_millis(900));
    let g = get_with(edge.addr, url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gunzip(&g.body), second, "the gzip variant follows the file");

    // Deleted: 404 within the interval.
    std::fs::remove_file(&file).unwrap();
    let deleted = Instant::now();
    wait_until(
        "404 after delete",
        VALID + Duration::from_secs(2),
        || async { get(edge.addr, url).await.status == 404 },
    )
    .await;
    assert!(deleted.elapsed() <= VALID + Duration::from_millis(900));
    edge.shutdown().await;
}

#[tokio::test]
async fn a_gz_sibling_is_served_to_gzip_clients() {
    let dir = tempfile::tempdir().unwrap();
    let js = dir.path().join("static/frontend/app.js");
    std::fs::create_dir_all(js.parent().unwrap()).unwrap();
    std::fs::write(&js, "var x = 1;\n".repeat(300)).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, b"/* from the .gz sibling */").unwrap();
    std::fs::write(
        dir.path().join("static/frontend/app.js.gz"),
        enc.finish().unwrap(),
    )
    .unwrap();
    let edge = start_on(dir.path()).await;

    let r = get_with(
        edge.addr,
        "/static/frontend/app.js",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(gunzip(&r.body), "/* from the .gz sibling */");
    let plain = get(edge.addr, "/static/frontend/app.js").await;
    assert_eq!(plain.body.len(), 3300);
    assert!(plain.header("content-encoding").is_none());
    edge.shutdown().await;
}

#[tokio::test]
async fn large_files_are_streamed_with_ranges_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("media/video.mp4");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let edge = start_on(dir.path()).await;

    let r = get(edge.addr, "/media/video.mp4").await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &data[..]);
    let r = get_with(
        edge.addr,
        "/media/video.mp4",
        &[("range", "bytes=500000-500009")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &data[500_000..500_010]);
    assert_eq!(
        r.header("content-range").unwrap(),
        "bytes 500000-500009/1000000"
    );
    // A small file from memory: a range is a slice of the kept bytes.
    std::fs::write(dir.path().join("media/small.txt"), "0123456789").unwrap();
    let r = get(edge.addr, "/media/small.txt").await;
    assert_eq!(r.text(), "0123456789");
    let r = get_with(edge.addr, "/media/small.txt", &[("range", "bytes=-3")]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (206, "789"));
    edge.shutdown().await;
}
