//! Shared helpers: a real php-fpm in a temp dir, a channel-backed request
//! body, and a log capture for `tracing` output.
#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use magestack_fastcgi::{BoxError, Client, ClientConfig, Endpoint, Params};

/// The php-fpm binary: `$MAGESTACK_PHP_FPM`, else Debian's `/usr/sbin/php-fpm8.2`.
/// Panics (the test fails, never skips) if it is missing.
pub fn php_fpm_binary() -> PathBuf {
    let path = std::env::var_os("MAGESTACK_PHP_FPM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/php-fpm8.2"));
    assert!(
        path.is_file(),
        "php-fpm not found at {}: these integration tests need a real PHP-FPM. \
         Install it (Debian: `apt-get install php8.2-fpm`) or set MAGESTACK_PHP_FPM \
         to a php-fpm binary.",
        path.display()
    );
    path
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A port nobody listens on (bound once, then released).
pub fn unused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Tcp,
    Unix,
}

/// A php-fpm master with `pm = static`, 4 children, its own config, docroot
/// and log in a temp dir. Killed on drop.
pub struct Fpm {
    child: Child,
    dir: tempfile::TempDir,
    pub endpoint: Endpoint,
}

impl Fpm {
    pub fn start(listen: Listen) -> Fpm {
        Self::start_with(listen, "")
    }

    /// Starts php-fpm; `extra_pool` lines are appended to the pool section.
    pub fn start_with(listen: Listen, extra_pool: &str) -> Fpm {
        let bin = php_fpm_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let docroot = dir.path().join("docroot");
        std::fs::create_dir(&docroot).expect("mkdir docroot");
        let (listen_line, endpoint) = match listen {
            Listen::Tcp => {
                let port = unused_port();
                (
                    format!("127.0.0.1:{port}"),
                    Endpoint::Tcp(format!("127.0.0.1:{port}")),
                )
            }
            Listen::Unix => {
                let sock = dir.path().join("fpm.sock");
                (sock.display().to_string(), Endpoint::Unix(sock))
            }
        };
        let root = running_as_root();
        let user = if root {
            "user = root\ngroup = root\n"
        } else {
            ""
        };
        let conf = format!(
            "[global]\n\
             error_log = {log}\n\
             daemonize = no\n\
             pid = {pid}\n\
             \n\
             [www]\n\
             {user}\
             listen = {listen_line}\n\
             pm = static\n\
             pm.max_children = 4\n\
             clear_env = no\n\
             catch_workers_output = yes\n\
             php_admin_value[post_max_size] = 64M\n\
             php_admin_value[memory_limit] = 256M\n\
             php_admin_value[output_buffering] = 0\n\
             {extra_pool}\n",
            log = dir.path().join("fpm.log").display(),
            pid = dir.path().join("fpm.pid").display(),
        );
        let conf_path = dir.path().join("php-fpm.conf");
        std::fs::write(&conf_path, conf).expect("write php-fpm.conf");
        let mut cmd = Command::new(&bin);
        cmd.arg("--fpm-config")
            .arg(&conf_path)
            .arg("--nodaemonize")
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("fpm.stderr")).expect("stderr file"),
            ));
        if root {
            cmd.arg("--allow-to-run-as-root");
        }
        // Its own process group, so Drop can kill the master and every worker.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut fpm = Fpm {
            child,
            dir,
            endpoint,
        };
        fpm.wait_ready();
        fpm
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let up = match &self.endpoint {
                Endpoint::Tcp(a) => a.parse::<SocketAddr>().ok().is_some_and(|a| {
                    TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
                }),
                Endpoint::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
            };
            if up {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "php-fpm exited with {status} before listening:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "php-fpm did not listen within 15 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- fpm.log\n{}--- stderr\n{}",
            read("fpm.log"),
            read("fpm.stderr")
        )
    }

    pub fn docroot(&self) -> PathBuf {
        self.dir.path().join("docroot")
    }

    /// Writes `docroot/<name>`.
    pub fn script(&self, name: &str, source: &str) {
        std::fs::write(self.docroot().join(name), source).expect("write script");
    }

    pub fn client(&self, config: ClientConfig) -> Client {
        Client::new(self.endpoint.clone(), config)
    }

    /// The minimal CGI params a real FPM needs for `docroot/<script>`.
    pub fn params(
        &self,
        script: &str,
        method: &str,
        query: &str,
        body: Option<(usize, &str)>,
    ) -> Params {
        cgi_params(&self.docroot(), script, method, query, body)
    }
}

impl Drop for Fpm {
    fn drop(&mut self) {
        // SIGKILL the whole group (master and workers, even busy ones); the
        // group id is the master's pid. Killing only the master would orphan
        // its workers.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cgi_params(
    docroot: &Path,
    script: &str,
    method: &str,
    query: &str,
    body: Option<(usize, &str)>,
) -> Params {
    let mut p = Params::with_capacity(12);
    let uri = if query.is_empty() {
        format!("/{script}")
    } else {
        format!("/{script}?{query}")
    };
    p.push(
        "SCRIPT_FILENAME",
        docroot.join(script).display().to_string(),
    );
    p.push("SCRIPT_NAME", format!("/{script}"));
    p.push("REQUEST_METHOD", method.to_owned());
    p.push("QUERY_STRING", query.to_owned());
    let (len, ty) = match body {
        Some((len, ty)) => (len.to_string(), ty.to_owned()),
        None => (String::new(), String::new()),
    };
    p.push("CONTENT_LENGTH", len);
    p.push("CONTENT_TYPE", ty);
    p.push("REQUEST_URI", uri);
    p.push("DOCUMENT_ROOT", docroot.display().to_string());
    p.push("SERVER_PROTOCOL", "HTTP/1.1");
    p.push("GATEWAY_INTERFACE", "CGI/1.1");
    p.push("REDIRECT_STATUS", "200");
    p
}

/// A request body fed through a channel, chunk by chunk.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl ChannelBody {
    pub fn new(depth: usize) -> (tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>, Self) {
        let (tx, rx) = tokio::sync::mpsc::channel(depth);
        (tx, Self { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// md5 of `data` as lowercase hex, via coreutils' `md5sum`.
pub fn md5_hex(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum (coreutils) is needed by this test");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to md5sum");
    let out = child.wait_with_output().expect("md5sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Captures `tracing` output of the current thread.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a subscriber for the current thread (use with a
    /// current-thread runtime) and returns the capture and its guard.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let cap = Self::default();
        let writer = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(sub);
        (cap, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the whole body.
pub async fn collect(
    body: magestack_fastcgi::ResponseBody,
) -> Result<Bytes, magestack_fastcgi::Error> {
    use http_body_util::BodyExt;
    Ok(body.collect().await?.to_bytes())
}
