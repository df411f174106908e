//! Helpers shared by the binary's tests: child processes, ports, raw HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "ports.rs"]
mod ports;
pub use ports::free_addr;

/// A child process killed when the test ends. When the test failed, the
/// child's stderr (kept in a file) is printed: an edge that exited or logged
/// an error explains the failure.
pub struct Killed {
    pub child: Child,
    /// Removed when dropped.
    log: tempfile::TempPath,
}

impl Killed {
    /// Spawns `cmd` with stdout discarded and stderr kept for a failure report.
    pub fn spawn(mut cmd: Command) -> Killed {
        cmd.stdout(Stdio::null());
        Killed::spawn_keeping_stdout(cmd)
    }

    /// As [`Killed::spawn`], with stdout as `cmd` sets it (e.g. piped).
    pub fn spawn_keeping_stdout(mut cmd: Command) -> Killed {
        let (file, log) = tempfile::Builder::new()
            .prefix("magestack-test-")
            .suffix(".log")
            .tempfile()
            .unwrap()
            .into_parts();
        let child = cmd.stderr(Stdio::from(file)).spawn().unwrap();
        Killed { child, log }
    }

    /// What the child wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the child accepts connections on `addr`; fails at once if
    /// it exited (its stderr is then printed), rather than talking to
    /// whatever else may listen there.
    pub fn wait_up(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "pid {} exited ({status}) before listening on {addr}",
                    self.child.id()
                );
            }
            if TcpStream::connect(addr).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "nothing listens on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("--- stderr of pid {} (last lines) ---", self.child.id());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The value of an environment variable `scripts/test` sets (fails loudly).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test (it starts PHP-FPM and Redis)")
    })
}

/// One request on its own connection (`Connection: close`); the raw answer.
pub fn http_raw(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Waits until something accepts connections on `addr`.
pub fn wait_up(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A copy of `examples/storefront` whose `pub/static/deployed_version.txt`
/// names `release` (the storefront marks its pages with it).
pub fn storefront_release(release: &str) -> tempfile::TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/storefront");
    let dir = tempfile::Builder::new()
        .prefix("magestack-release-")
        .tempdir()
        .unwrap();
    copy_tree(&src, dir.path());
    std::fs::write(
        dir.path().join("pub/static/deployed_version.txt"),
        format!("{release}\n"),
    )
    .unwrap();
    dir
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The storefront's `pub/` in the repository.
pub fn storefront_pub() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/storefront/pub")
}

/// `magestack edge` with `config` (TOML text, written to a temporary file
/// that lives as long as the returned path) on `addr`, its admin listener on
/// `admin`, in front of the tests' PHP-FPM with `docroot`. The caller adds
/// flags or environment and spawns it.
pub fn edge_command(
    config: &str,
    addr: SocketAddr,
    admin: SocketAddr,
    docroot: &str,
) -> (Command, tempfile::TempPath) {
    let path = tempfile::Builder::new()
        .prefix("magestack-edge-")
        .suffix(".toml")
        .tempfile()
        .unwrap()
        .into_temp_path();
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_magestack"));
    cmd.args([
        "edge",
        "--config",
        path.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
        "--admin-listen",
        &admin.to_string(),
        "--upstream",
        &format!("fcgi://{}", env("MAGESTACK_FPM_ADDR")),
        "--docroot",
        docroot,
    ]);
    (cmd, path)
}
