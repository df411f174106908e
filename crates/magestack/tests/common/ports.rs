//! Ports for child processes, shared by the test suites of `magestack` and
//! `magestack-edge` (included by path: tests cannot depend on each other).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// An address on loopback for a child process to listen on.
///
/// Not a kernel-assigned port (bind to port 0): those come from the ephemeral
/// range, which every outgoing connection draws from too, so between this
/// probe and the child's own bind another test's connection could take it
/// (seen in CI: an edge that never started). Ports below the ephemeral range
/// (Linux: from 32768) are handed out by a counter, offset by the process id
/// so that consecutive runs do not reuse each other's, and checked free.
pub fn free_addr() -> SocketAddr {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919);
    loop {
        let port = FIRST + offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

/// The port of [`free_addr`].
pub fn free_port() -> u16 {
    free_addr().port()
}
