//! Descriptor exhaustion (issue 13, item 3), against the real binary with a
//! hard descriptor limit of 1,024: 1,100 connections that send nothing,
//! from five addresses (each under the per-address cap), must not take the
//! edge down. A connection opened before the flood keeps being served at
//! once, a new one is served once the silent ones time out, the edge never
//! runs out of descriptors and does not spin logging accept errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const FLOOD: usize = 1_100;

async fn ask(s: &mut TcpStream) -> String {
    s.write_all(b"GET /robots.txt HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_does_not_exhaust_descriptors() {
    rlimit::increase_nofile_limit(8192).unwrap();
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"{addr}\"]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 60\n\n[upstream]\nurl = \"http://127.0.0.1:9\"\n"
        ),
    )
    .unwrap();
    // A hard limit of 1,024 descriptors, as the attacked edge had.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 1024 && exec \"$0\" edge --config \"$1\"",
        env!("CARGO_BIN_EXE_magestack"),
        config.to_str().unwrap(),
    ]);
    let mut edge = Killed::spawn(cmd);
    edge.wait_up(addr);
    let pid = edge.child.id();

    // A shopper connected before the flood.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert!(ask(&mut kept).await.starts_with("HTTP/1.1 "));

    // The flood: five source addresses, 220 silent connections each.
    let mut tasks = Vec::new();
    for i in 0..FLOOD {
        let source: SocketAddr = format!("127.0.0.{}:0", 2 + i % 5).parse().unwrap();
        tasks.push(tokio::spawn(async move {
            let socket = TcpSocket::new_v4().ok()?;
            socket.bind(source).ok()?;
            tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
                .await
                .ok()?
                .ok()
        }));
    }
    let mut flood = Vec::new();
    for t in tasks {
        if let Some(s) = t.await.unwrap() {
            flood.push(s);
        }
    }
    let mut peak_fds = open_fds(pid);

    // The shopper who was already connected is served at once.
    let t = Instant::now();
    assert!(ask(&mut kept).await.starts_with("HTTP/1.1 "));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // A new shopper is served once the silent connections time out.
    let t = Instant::now();
    let mut fresh = loop {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => break s,
            _ => assert!(t.elapsed() < Duration::from_secs(60), "cannot connect"),
        }
    };
    let answer = {
        let wait = async {
            loop {
                peak_fds = peak_fds.max(open_fds(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            a = ask(&mut fresh) => a,
            () = wait => unreachable!(),
        }
    };
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    let waited = t.elapsed();
    let log = edge.stderr_text();
    let accept_errors = log.matches("Accept failed").count();
    eprintln!(
        "flood: {} of {FLOOD} silent connections established; edge peak descriptors {peak_fds} of 1024; new shopper served after {waited:?}; accept-error log lines {accept_errors}",
        flood.len()
    );
    assert!(
        peak_fds < 1000,
        "the edge used {peak_fds} of 1024 descriptors"
    );
    assert!(
        accept_errors <= 3,
        "accept errors logged {accept_errors} times:\n{log}"
    );
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    assert!(
        log.contains("max_client_connections reached"),
        "the cap was never reached: {log}"
    );
    drop(flood);
}
