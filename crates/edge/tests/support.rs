//! Shared helpers for the end-to-end tests: start an edge in-process on an
//! ephemeral port and talk to it over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use magestack_edge::{Edge, EdgeSettings, Server, ServerLimits, UpstreamTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where `scripts/deps` started PHP-FPM with the storefront. Missing means the test
/// environment is broken: fail loudly, never skip.
pub struct PhpEnv {
    pub fpm_addr: String,
    pub fpm_sock: Option<PathBuf>,
    pub storefront: PathBuf,
}

pub fn php_env() -> PhpEnv {
    let fpm_addr = std::env::var("MAGESTACK_FPM_ADDR").unwrap_or_else(|_| {
        panic!("MAGESTACK_FPM_ADDR is not set: these end-to-end tests need the real PHP-FPM that ./scripts/test starts (or run `scripts/deps start` and `source .deps/env`)")
    });
    let storefront = std::env::var("MAGESTACK_STOREFRONT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/storefront")
        });
    assert!(
        storefront.join("pub/index.php").is_file(),
        "storefront missing at {}",
        storefront.display()
    );
    PhpEnv {
        fpm_addr,
        fpm_sock: std::env::var("MAGESTACK_FPM_SOCK").ok().map(PathBuf::from),
        storefront,
    }
}

pub fn settings(upstream: UpstreamTarget, docroot: Option<PathBuf>) -> EdgeSettings {
    EdgeSettings {
        docroot,
        generation: magestack_edge::settings::Generation::G3,
        server_name: "localhost".into(),
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        max_body_bytes: 64 * 1024 * 1024,
        body: Default::default(),
        gzip: true,
        gzip_min_length: 1100,
        open_file_cache: Default::default(),
        php_value: Some("memory_limit=756M\nmax_execution_time=18000".into()),
        php_flag: Some("session.auto_start=off\nsuhosin.session.cryptua=off".into()),
        mage_mode: None,
        mage_run: vec![],
        release: None,
        upstream,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(30),
        keepalive_connections: 16,
        max_connections: 0,
        max_response_header_bytes: 32 * 1024,
        dns_servers: Vec::new(),
        access_log: false,
        access_sink: None,
        pools: Vec::new(),
        pool_routing: Default::default(),
        readiness: Default::default(),
        rate_limit: Some(Default::default()),
        tarpit: Duration::ZERO,
        injection: Some(Default::default()),
        cluster: None,
        rollout: None,
        deny_without_docroot: false,
        ip_rules: Default::default(),
        cache: None,
        media: None,
    }
}

/// A `frontend` pool of `endpoints` for tests to adjust (`PoolSpec { max_inflight: 8,
/// ..pool_spec(endpoints) }`): cap 4, queue 64 × 5 s, no DNS discovery, and health checks
/// so rare that only what the test does decides an endpoint's health.
pub fn pool_spec(endpoints: Vec<UpstreamTarget>) -> magestack_edge::settings::PoolSpec {
    magestack_edge::settings::PoolSpec {
        name: "frontend".into(),
        endpoints,
        max_inflight: 4,
        queue_size: 64,
        queue_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(1),
        status_path: None,
        status_endpoints: Vec::new(),
        check_interval: Duration::from_secs(3600),
        unhealthy_after: 5,
        resolve_interval: Duration::ZERO,
    }
}

pub fn limits() -> ServerLimits {
    ServerLimits {
        max_header_bytes: 16 * 1024,
        max_headers: 100,
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(5),
        h2c: true,
        max_connections_per_ip: 0,
        per_ip_exempt: Vec::new(),
        max_connections: 0,
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<usize>,
}

impl Running {
    /// Starts the drain and waits for the server to finish.
    pub async fn shutdown(mut self) -> usize {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.await.unwrap()
    }
}

pub async fn start(settings: EdgeSettings, limits: ServerLimits) -> Running {
    let edge = Arc::new(Edge::new(settings).expect("edge settings"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(edge, limits, None);
    let done = tokio::spawn(server.run(vec![listener], async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        done,
    }
}

pub async fn start_php() -> (Running, PhpEnv) {
    let env = php_env();
    let s = settings(
        UpstreamTarget::FastCgiTcp(env.fpm_addr.clone()),
        Some(env.storefront.join("pub")),
    );
    (start(s, limits()).await, env)
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }
}

/// One request over a fresh HTTP/1.1 connection.
pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    get_with(addr, path, &[]).await
}

pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(path).header("host", "shop.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Sends raw bytes and returns everything the server answered until it closed
/// (or `wait` passed).
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP port on loopback that nothing listens on.
pub fn dead_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// One pool of a php-fpm started by [`start_fpm`].
pub struct FpmPool {
    pub name: &'static str,
    /// The loopback address it listens on (status too): `127.0.0.1` unless a
    /// test needs several FPMs on one port (DNS discovery gives addresses).
    pub host: &'static str,
    pub port: u16,
    pub children: u32,
    /// `pm.status_path = /status` on `pm.status_listen = 127.0.0.1:PORT`.
    pub status_port: Option<u16>,
    /// Extra `env[NAME] = VALUE` lines for the pool.
    pub env: Vec<(String, String)>,
}

impl FpmPool {
    pub fn new(name: &'static str, port: u16, children: u32) -> FpmPool {
        FpmPool {
            name,
            host: "127.0.0.1",
            port,
            children,
            status_port: None,
            env: Vec::new(),
        }
    }
}

/// A php-fpm master of a test's own (`MAGESTACK_PHP_FPM` from scripts/deps),
/// serving the storefront on loopback; killed when dropped.
pub struct Fpm {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Fpm {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them,
        // still holding the listening sockets).
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[path = "../../magestack/tests/common/ports.rs"]
mod ports;
#[allow(unused_imports)] // not every suite starts a child process
pub use ports::free_port;

/// Starts php-fpm with `pools` and waits until every pool listens.
pub fn start_fpm(storefront: &std::path::Path, pools: &[FpmPool]) -> Fpm {
    use std::process::{Command, Stdio};
    let fpm = std::env::var("MAGESTACK_PHP_FPM").unwrap_or_else(|_| {
        panic!("MAGESTACK_PHP_FPM is not set: run ./scripts/test (scripts/deps finds php-fpm)")
    });
    let dir = tempfile::tempdir().unwrap();
    let var = dir.path().join("var");
    std::fs::create_dir_all(var.join("sessions")).unwrap();
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let user = if root {
        "user = root\ngroup = root\n"
    } else {
        ""
    };
    let mut conf = format!(
        "[global]\nerror_log = {}\ndaemonize = no\n\n",
        dir.path().join("fpm.log").display()
    );
    for p in pools {
        conf.push_str(&format!(
            "[{name}]\n{user}listen = {host}:{port}\nlisten.backlog = 511\npm = static\n\
             pm.max_children = {children}\nclear_env = no\ncatch_workers_output = yes\n\
             security.limit_extensions = .php\nchdir = {pub_dir}\n\
             env[MAGESTACK_STOREFRONT_VAR] = {var}\n",
            name = p.name,
            host = p.host,
            port = p.port,
            children = p.children,
            pub_dir = storefront.join("pub").display(),
            var = var.display(),
        ));
        for (k, v) in &p.env {
            conf.push_str(&format!("env[{k}] = {v}\n"));
        }
        if let Some(sp) = p.status_port {
            conf.push_str(&format!(
                "pm.status_path = /status\npm.status_listen = {}:{sp}\n",
                p.host
            ));
        }
        conf.push('\n');
    }
    let conf_path = dir.path().join("php-fpm.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(&fpm);
    cmd.arg("--fpm-config").arg(&conf_path).arg("--nodaemonize");
    if root {
        cmd.arg("--allow-to-run-as-root");
    }
    let child = cmd
        .env("MAGESTACK_STOREFRONT_VAR", &var)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {fpm}: {e}"));
    let fpm = Fpm { child, _dir: dir };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while pools
        .iter()
        .any(|p| std::net::TcpStream::connect((p.host, p.port)).is_err())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "php-fpm pools did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    fpm
}

/// The admin listener (ready, loopback ACL, no reload) for `live`; its address.
pub async fn spawn_admin(live: magestack_edge::LiveEdge) -> SocketAddr {
    use magestack_edge::admin::{AdminAccess, Readiness};
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = admin.local_addr().unwrap();
    let ready = Arc::new(Readiness::default());
    ready.set(true);
    tokio::spawn(magestack_edge::admin::serve(
        admin,
        ready,
        live,
        AdminAccess {
            acl: vec!["127.0.0.0/8".parse().unwrap()],
            token: None,
        },
        None,
    ));
    addr
}

/// The cookies a response sets, as one `Cookie` header value (deleted ones left out).
pub fn cookies_from(r: &Resp) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|kv| !kv.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until `ok` holds, polling every 20 ms; fails the test after `limit`
/// naming `what`. For effects of background work (a refresh, a health
/// check): a condition with a deadline instead of a fixed sleep.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !ok().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
