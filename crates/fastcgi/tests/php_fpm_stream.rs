//! A 100 MiB PHP response streams through with bounded memory.
//!
//! Its own test binary, so no other test allocates in this process while
//! VmRSS is measured.

mod common;

use http_body_util::BodyExt;
use magestack_fastcgi::{ClientConfig, RequestBody};

use common::{Fpm, Listen};

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 1600; // 100 MiB

fn vm_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_response_streams_with_bounded_memory() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script(
        "big.php",
        &format!(
            "<?php header('Content-Type: application/octet-stream');\n\
             $c = str_repeat('x', {CHUNK});\n\
             for ($i = 0; $i < {CHUNKS}; $i++) {{ $c[0] = chr(65 + $i % 26); echo $c; flush(); }}\n"
        ),
    );
    let client = fpm.client(ClientConfig::default());
    let params = fpm.params("big.php", "GET", "", None);

    // Warm up allocator and runtime with a small request first.
    fpm.script("small.php", "<?php echo 'ok';");
    let resp = client
        .request(
            &fpm.params("small.php", "GET", "", None),
            RequestBody::Empty,
        )
        .await
        .expect("warm-up");
    resp.body.collect().await.expect("warm-up body");

    let before = vm_rss_bytes();
    let mut peak = before;
    let mut resp = client
        .request(&params, RequestBody::Empty)
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", fpm.logs()));
    assert_eq!(resp.status, 200);
    let mut total = 0usize;
    let mut frames = 0usize;
    let mut marks = 0usize;
    while let Some(frame) = resp.body.frame().await {
        let data = frame
            .unwrap_or_else(|e| panic!("body failed after {total} bytes: {e:?}"))
            .into_data()
            .expect("only data frames");
        // Each 64 KiB chunk starts with a letter, the rest is 'x'.
        for (i, b) in data.iter().enumerate() {
            let pos = total + i;
            if pos.is_multiple_of(CHUNK) {
                assert_eq!(*b, b'A' + ((pos / CHUNK) % 26) as u8, "chunk mark at {pos}");
                marks += 1;
            } else {
                assert_eq!(*b, b'x', "byte {pos}");
            }
        }
        total += data.len();
        frames += 1;
        if frames.is_multiple_of(64) {
            peak = peak.max(vm_rss_bytes());
        }
        drop(data);
    }
    peak = peak.max(vm_rss_bytes());
    assert_eq!(total, CHUNK * CHUNKS);
    assert_eq!(marks, CHUNKS);
    assert!(frames > CHUNKS / 2, "streamed in many frames, got {frames}");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 64 * 1024 * 1024,
        "RSS grew by {} MiB while streaming 100 MiB",
        growth / (1024 * 1024)
    );
    eprintln!(
        "streamed {} MiB in {frames} frames; RSS growth {} KiB",
        total >> 20,
        growth >> 10
    );
    // The connection went back to the pool at END_REQUEST.
    assert_eq!(client.stats().idle, 1);
}
