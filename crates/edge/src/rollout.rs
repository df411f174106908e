//! The edge's own canary: the I/O shell around [`magestack_rollout`].
//!
//! What it does, per request (only while a rollout is running, paused or
//! promoted; otherwise one atomic load): assigns the visitor a track
//! ([`magestack_rollout::assign`]), tags the request with it ([`Routed`]:
//! the track, its release for the cache key, the canary's pool and docroot),
//! and sets the assignment cookie on the response. PHP answers of the split
//! pool are counted per track ([`Rollout::observe`]).
//!
//! In the background ([`Rollout::run`]): every analysis interval the
//! figures of the step are judged ([`magestack_rollout::judge`]; four times
//! a second when the early-abort rule already holds) and the
//! state advanced, promoted or aborted ([`RolloutState::tick`]); every
//! 250 ms the state is synchronised with the other replicas through Redis
//! (newest generation wins), else kept in a local file. A restarted edge
//! loads it back and resumes at the same step.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use http::header::{self, HeaderValue};
use http::Request;
use magestack_rollout::stats::{bucket_upper_us, BUCKETS};
use magestack_rollout::{
    Action, AssignInput, Judgement, Phase, Plan, RolloutState, Split, Track, TrackWindow,
};

use crate::discovery::Resolver;
use crate::pool::Pool;
pub use crate::settings::RolloutSpec;
use crate::settings::{PoolSpec, UpstreamTarget};

/// Redis key suffix of the shared state (after `cluster.channel`).
const REDIS_KEY_SUFFIX: &str = ":rollout";
/// How often the shared state is compared with Redis.
const SYNC_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait for one Redis call.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Assignment cookie lifetime (a visitor keeps its bucket across rollouts).
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;
/// Largest start body read.
pub(crate) const MAX_START_BODY: usize = 64 * 1024;

/// The canary side of the split pool: its pool, docroot and release.
///
/// Its pool is a pool like the stable ones: endpoints given by host name
/// are discovered in DNS (every address an endpoint, looked up every
/// `resolve_interval`) and every endpoint is health-checked, by background
/// tasks that live as long as the track ([`Rollout::ensure_canary_tasks`];
/// dropped with it).
pub(crate) struct CanaryTrack {
    pub(crate) pool: Arc<Pool>,
    pub(crate) router: Option<magestack_routing::Router>,
    pub(crate) release: Arc<str>,
    endpoints: Vec<String>,
    /// The pool's checks and discovery, once started.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for CanaryTrack {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

impl std::fmt::Debug for CanaryTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryTrack")
            .field("release", &self.release)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// A request's track, in its extensions: read by the cache (the release in
/// the key), by routing (the canary's docroot) and by admission (the
/// canary's pool).
#[derive(Debug, Clone)]
pub(crate) struct Routed {
    pub(crate) track: Track,
    /// The cache namespace.
    pub(crate) release: Option<Arc<str>>,
    /// Set when the track is the canary.
    pub(crate) canary: Option<Arc<CanaryTrack>>,
    /// The request goes to the split pool (its answer is counted).
    pub(crate) counted: bool,
}

/// The canary track of a request, when it has one.
pub(crate) fn canary_of<B>(req: &Request<B>) -> Option<Arc<CanaryTrack>> {
    req.extensions()
        .get::<Routed>()
        .and_then(|r| r.canary.clone())
}

impl crate::Edge {
    /// Tags a request with its rollout track (see [`Rollout::assign`]);
    /// the cookie to set, if any. Without a rollout splitting traffic the
    /// request is left as it is (one atomic load).
    pub(crate) fn assign_track<B>(
        &self,
        mut req: Request<B>,
        conn: &crate::ConnInfo,
        client: IpAddr,
    ) -> (Request<B>, Option<HeaderValue>) {
        let Some(rollout) = &self.rollout else {
            return (req, None);
        };
        if rollout.split() == Split::AllStable {
            return (req, None);
        }
        // Admin traffic stays on stable until promotion, whichever pool it
        // goes to (without an admin pool, the split one).
        let path = req.uri().path();
        let pool = if crate::pool_route::is_admin_path(path, &self.s.pool_routing.admin_front_name)
        {
            usize::MAX
        } else {
            self.pool_index_for(path)
        };
        let https = crate::client_ip::is_https(
            conn.tls,
            conn.peer.ip(),
            req.headers(),
            &self.s.trusted_proxies,
        );
        match rollout.assign(&req, pool, client, https) {
            Some((routed, cookie)) => {
                req.extensions_mut().insert(routed);
                (req, cookie)
            }
            None => (req, None),
        }
    }
}

/// Counters of one track.
struct Figures {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Figures {
    fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn record(&self, error: bool, us: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[magestack_rollout::stats::bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    fn window(&self) -> TrackWindow {
        TrackWindow {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency: magestack_rollout::stats::LatencyHistogram::from_counts(std::array::from_fn(
                |i| self.latency[i].load(Ordering::Relaxed),
            )),
        }
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        for b in &self.latency {
            b.store(0, Ordering::Relaxed);
        }
    }
}

/// Split modes in [`Rollout::mode`].
const MODE_STABLE: u8 = 0;
const MODE_WEIGHT: u8 = 1;
const MODE_CANARY: u8 = 2;

/// Why an admin operation failed: the HTTP status and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRefusal {
    /// 400 (bad input) or 409 (wrong phase).
    pub status: u16,
    /// For people.
    pub reason: String,
}

/// A start request's overrides (`POST /admin/rollout/start` JSON body).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Steps instead of the configured ones.
    pub steps: Option<Vec<String>>,
    /// Canary endpoints instead of the configured ones.
    pub canary_endpoints: Option<Vec<String>>,
}

/// Where the state lives besides memory.
struct Shared {
    client: redis::Client,
    key: String,
}

/// The rollout of one pool.
pub(crate) struct Rollout {
    spec: RolloutSpec,
    /// Index of the split pool.
    pool_index: usize,
    /// The split pool's spec, copied for the canary's pool.
    pool_spec: PoolSpec,
    keepalive: usize,
    max_response_header_bytes: usize,
    generation: crate::settings::Generation,
    http: bool,
    stable_release: Option<Arc<str>>,
    /// Hot path: the split without a lock.
    mode: AtomicU8,
    weight: AtomicU8,
    state: Mutex<RolloutState>,
    canary: ArcSwapOption<CanaryTrack>,
    /// Figures of the current step (index: 0 stable, 1 canary), reset at
    /// each step change; and since start, for metrics.
    window: [Figures; 2],
    total: [Figures; 2],
    /// The (rollout, step) the window belongs to.
    window_of: Mutex<(u64, usize)>,
    last_judgement: Mutex<Option<Judgement>>,
    /// Decisions taken here, by action and reason label.
    decided: Mutex<Vec<((Action, &'static str), u64)>>,
    shared: Option<Shared>,
    ids: RandomState,
    id_counter: AtomicU64,
    /// The edge's resolver, or one built for the canary when the stable
    /// pools need none (`dns_servers` as for them).
    resolver: Mutex<Option<Arc<Resolver>>>,
    dns_servers: Vec<std::net::SocketAddr>,
    /// A canary track built and resolved by a start request, taken by
    /// [`Rollout::adopt`] when its endpoints are the started ones.
    prepared: Mutex<Option<Arc<CanaryTrack>>>,
}

impl std::fmt::Debug for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout")
            .field("pool", &self.spec.pool)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unix time in ms.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses an endpoint URL as the config writes it.
pub fn parse_endpoint(s: &str) -> Result<UpstreamTarget, String> {
    let hostport = |rest: &str| -> Result<String, String> {
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected host:port after the scheme"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{s:?}: expected host:port with a port 1-65535"));
        }
        Ok(rest.to_owned())
    };
    if let Some(rest) = s.strip_prefix("fcgi+unix://") {
        if !rest.starts_with('/') {
            return Err(format!("{s:?}: expected fcgi+unix:///absolute/path"));
        }
        Ok(UpstreamTarget::FastCgiUnix(PathBuf::from(rest)))
    } else if let Some(rest) = s.strip_prefix("fcgi://") {
        Ok(UpstreamTarget::FastCgiTcp(hostport(rest)?))
    } else if let Some(rest) = s.strip_prefix("http://") {
        Ok(UpstreamTarget::Http(hostport(rest)?))
    } else {
        Err(format!(
            "unknown canary endpoint {s:?}: expected fcgi://host:port, fcgi+unix:///path or http://host:port"
        ))
    }
}

/// Where the canary's FPM status is read: when stable's status endpoints
/// are its endpoints' hosts on another port (the kit's layout: FastCGI on
/// 9000, `pm.status_path` on 9001 of the same pod or Service), the canary's
/// are too, on the same port; otherwise none (the status is asked of the
/// endpoint itself).
fn canary_status_endpoints(stable: &PoolSpec, canary: &[UpstreamTarget]) -> Vec<UpstreamTarget> {
    let host_port = |t: &UpstreamTarget| match t {
        UpstreamTarget::FastCgiTcp(a) => a
            .rsplit_once(':')
            .map(|(h, p)| (h.to_owned(), p.to_owned())),
        _ => None,
    };
    let ports: Option<Vec<String>> = stable
        .endpoints
        .iter()
        .zip(&stable.status_endpoints)
        .map(|(e, s)| match (host_port(e), host_port(s)) {
            (Some((eh, _)), Some((sh, sp))) if eh == sh => Some(sp),
            _ => None,
        })
        .collect();
    let port = match ports.as_deref() {
        Some([first, rest @ ..]) if rest.iter().all(|p| p == first) => first.clone(),
        _ => return Vec::new(),
    };
    canary
        .iter()
        .map(|t| host_port(t).map(|(h, _)| UpstreamTarget::FastCgiTcp(format!("{h}:{port}"))))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

impl Rollout {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        spec: RolloutSpec,
        pool_index: usize,
        pool_spec: PoolSpec,
        keepalive: usize,
        max_response_header_bytes: usize,
        generation: crate::settings::Generation,
        http: bool,
        stable_release: Option<Arc<str>>,
        redis: Option<(redis::Client, String)>,
        resolver: Option<Arc<Resolver>>,
        dns_servers: Vec<std::net::SocketAddr>,
    ) -> Rollout {
        let r = Rollout {
            pool_index,
            pool_spec,
            keepalive,
            max_response_header_bytes,
            generation,
            http,
            stable_release,
            mode: AtomicU8::new(MODE_STABLE),
            weight: AtomicU8::new(0),
            state: Mutex::new(RolloutState::default()),
            canary: ArcSwapOption::empty(),
            window: [Figures::new(), Figures::new()],
            total: [Figures::new(), Figures::new()],
            window_of: Mutex::new((0, 0)),
            last_judgement: Mutex::new(None),
            decided: Mutex::new(Vec::new()),
            shared: redis.map(|(client, channel)| Shared {
                client,
                key: format!("{channel}{REDIS_KEY_SUFFIX}"),
            }),
            ids: RandomState::new(),
            id_counter: AtomicU64::new(0),
            resolver: Mutex::new(resolver),
            dns_servers,
            prepared: Mutex::new(None),
            spec,
        };
        if let Some(state) = r.load_file() {
            tracing::info!(
                state = state.phase.as_str(),
                step = state.step,
                generation = state.generation,
                "Rollout state loaded from its file."
            );
            r.adopt(state);
        }
        r
    }

    fn state_file(&self) -> PathBuf {
        self.spec.state_file.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("magestack-rollout-{}.json", self.spec.pool))
        })
    }

    fn load_file(&self) -> Option<RolloutState> {
        let path = self.state_file();
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Rollout state file unreadable; starting idle.");
                None
            }
        }
    }

    fn save_file(&self, state: &RolloutState) {
        let path = self.state_file();
        let tmp = path.with_extension("json.tmp");
        let text = match serde_json::to_string_pretty(state) {
            Ok(t) => t,
            Err(_) => return,
        };
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "Rollout state not written to its file.");
        }
    }

    /// The split now (one atomic load while idle).
    pub(crate) fn split(&self) -> Split {
        match self.mode.load(Ordering::Acquire) {
            MODE_WEIGHT => Split::Weight(self.weight.load(Ordering::Acquire)),
            MODE_CANARY => Split::AllCanary,
            _ => Split::AllStable,
        }
    }

    fn build_canary(&self, endpoints: &[String]) -> Result<CanaryTrack, String> {
        let mut targets = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let t = parse_endpoint(e)?;
            if matches!(t, UpstreamTarget::Http(_)) != self.http {
                return Err(format!(
                    "canary endpoint {e:?} does not speak the upstream's protocol ({})",
                    if self.http { "HTTP" } else { "FastCGI" }
                ));
            }
            targets.push(t);
        }
        if targets.is_empty() {
            return Err(
                "no canary endpoints: give canary_endpoints in [rollout] or in the start request"
                    .into(),
            );
        }
        let mut spec = self.pool_spec.clone();
        spec.status_endpoints = canary_status_endpoints(&self.pool_spec, &targets);
        spec.endpoints = targets;
        let pool = Arc::new(Pool::new(
            &spec,
            self.keepalive,
            self.max_response_header_bytes,
            None,
        ));
        let router = match &self.spec.canary_docroot {
            Some(d) => {
                if !d.is_dir() {
                    return Err(format!(
                        "rollout.canary_docroot {}: not a directory",
                        d.display()
                    ));
                }
                let root = d.canonicalize().unwrap_or_else(|_| d.clone());
                Some(magestack_routing::Router::new(root, self.generation))
            }
            None => None,
        };
        let release = crate::release::resolve(
            self.spec.canary_docroot.as_deref(),
            self.spec.canary_release.as_deref(),
        )
        .unwrap_or_else(|| Arc::from("canary"));
        Ok(CanaryTrack {
            pool,
            router,
            release,
            endpoints: endpoints.to_vec(),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The resolver for the canary's names (built on first need).
    fn resolver(&self) -> Result<Arc<Resolver>, String> {
        let mut r = lock(&self.resolver);
        if let Some(r) = &*r {
            return Ok(Arc::clone(r));
        }
        let built = Arc::new(
            Resolver::new(&self.dns_servers).map_err(|e| format!("canary endpoints: {e}"))?,
        );
        *r = Some(Arc::clone(&built));
        Ok(built)
    }

    /// Before a start: builds the canary track of the request (or the
    /// config) and, when its endpoints are host names, looks them up once
    /// and checks what they resolve to, so that the first canary request
    /// finds endpoints. A name that resolves to nothing refuses the start
    /// (400) rather than sending a share of the visitors to no server.
    pub(crate) async fn prepare_start(
        &self,
        start: Option<&StartRequest>,
    ) -> Result<(), RolloutRefusal> {
        let bad = |reason: String| RolloutRefusal {
            status: 400,
            reason,
        };
        if lock(&self.state).phase.is_active() {
            return Ok(()); // the start is refused (409) anyway
        }
        let endpoints = start
            .and_then(|s| s.canary_endpoints.clone())
            .unwrap_or_else(|| self.spec.canary_endpoints.clone());
        let track = self.build_canary(&endpoints).map_err(bad)?;
        if track.pool.discovers() {
            let resolver = self.resolver().map_err(bad)?;
            let unresolved = track.pool.discover_once(&resolver).await;
            if let Some((host, why)) = unresolved.first() {
                return Err(bad(format!(
                    "canary endpoint name {host:?} does not resolve: {why}"
                )));
            }
        }
        let track = Arc::new(track);
        self.start_canary_tasks(&track);
        *lock(&self.prepared) = Some(track);
        Ok(())
    }

    /// Drops a track [`Rollout::prepare_start`] built for a start that was
    /// then refused (its checks and discovery stop with it).
    pub(crate) fn discard_prepared(&self) {
        lock(&self.prepared).take();
    }

    /// Starts the health checks and DNS discovery of the current canary
    /// track's pool, once per track (the background loop calls it every
    /// tick, so a track adopted from Redis or the state file gets them too).
    fn ensure_canary_tasks(&self) {
        if let Some(track) = self.canary.load_full() {
            self.start_canary_tasks(&track);
        }
    }

    fn start_canary_tasks(&self, track: &CanaryTrack) {
        let mut tasks = lock(&track.tasks);
        if !tasks.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tasks.push(tokio::spawn(Arc::clone(&track.pool).run_checks()).abort_handle());
        if track.pool.discovers() {
            match self.resolver() {
                Ok(resolver) => tasks.push(
                    tokio::spawn(Arc::clone(&track.pool).run_discovery(resolver)).abort_handle(),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "Canary endpoint names cannot be looked up.")
                }
            }
        }
    }

    /// Makes `state` the running one: the hot-path split, the canary track,
    /// the step's figures. The caller persists it when it is new here.
    fn adopt(&self, state: RolloutState) {
        let needs_canary = matches!(
            state.phase,
            Phase::Running | Phase::Paused | Phase::Promoted
        );
        if needs_canary {
            let current = self.canary.load_full();
            if current
                .as_ref()
                .is_none_or(|c| c.endpoints != state.canary_endpoints)
            {
                let prepared = lock(&self.prepared)
                    .take()
                    .filter(|t| t.endpoints == state.canary_endpoints);
                match prepared.map_or_else(
                    || self.build_canary(&state.canary_endpoints).map(Arc::new),
                    Ok,
                ) {
                    Ok(track) => {
                        self.start_canary_tasks(&track);
                        self.canary.store(Some(track));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Rollout canary track cannot be built; everyone stays on stable.");
                        self.canary.store(None);
                    }
                }
            }
        }
        {
            let mut of = lock(&self.window_of);
            if *of != (state.rollout_id, state.step) {
                *of = (state.rollout_id, state.step);
                self.window[0].reset();
                self.window[1].reset();
                *lock(&self.last_judgement) = None;
            }
        }
        let (mode, weight) = match (state.split(), self.canary.load().is_some()) {
            (_, false) => (MODE_STABLE, 0),
            (Split::AllStable, _) => (MODE_STABLE, 0),
            (Split::Weight(w), _) => (MODE_WEIGHT, w),
            (Split::AllCanary, _) => (MODE_CANARY, 100),
        };
        self.weight.store(weight, Ordering::Release);
        self.mode.store(mode, Ordering::Release);
        *lock(&self.state) = state;
    }

    fn commit(&self, state: RolloutState, action: Action, label: &'static str) {
        tracing::warn!(action = action.as_str(), state = state.phase.as_str(), step = state.step, weight = state.weight(), reason = %state.reason, "Rollout decision.");
        {
            let mut d = lock(&self.decided);
            match d.iter_mut().find(|(k, _)| *k == (action, label)) {
                Some((_, n)) => *n += 1,
                None => d.push(((action, label), 1)),
            }
        }
        self.save_file(&state);
        self.adopt(state);
    }

    /// Assigns a request (see the module docs). `None` when no rollout
    /// splits traffic: the request goes to stable under the stable release.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assign<B>(
        &self,
        req: &Request<B>,
        pool_index: usize,
        client: IpAddr,
        https: bool,
    ) -> Option<(Routed, Option<HeaderValue>)> {
        let split = self.split();
        if split == Split::AllStable {
            return None;
        }
        let canary = self.canary.load_full()?;
        let path = req.uri().path();
        let headers = req.headers();
        let routed = |track: Track, counted: bool| match track {
            Track::Canary => Routed {
                track,
                release: Some(Arc::clone(&canary.release)),
                canary: Some(Arc::clone(&canary)),
                counted,
            },
            Track::Stable => Routed {
                track,
                release: self.stable_release.clone(),
                canary: None,
                counted,
            },
        };
        // Static files: a versioned URL (`/static/version<release>/…`, as
        // Magento writes them) names its release, whoever asks (a CDN asks
        // without cookies); anything else under /static/ or /media/ follows
        // the visitor's track when it has one, else stable, and never sets
        // the cookie.
        let file = path.starts_with("/static/") || path.starts_with("/media/");
        if let Some(rest) = path.strip_prefix("/static/version") {
            let version = rest.split('/').next().unwrap_or("");
            if version == &*canary.release {
                return Some((routed(Track::Canary, false), None));
            }
            if self.stable_release.as_deref() == Some(version) {
                return Some((routed(Track::Stable, false), None));
            }
        }
        let cookie = find_cookie(headers, magestack_rollout::assign::COOKIE_NAME);
        let bearer = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .and_then(|v| v.strip_prefix(b"Bearer "))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty());
        let api = {
            let p = path.strip_prefix("/index.php").unwrap_or(path);
            p.starts_with("/rest/") || p.starts_with("/graphql")
        };
        if file && cookie.is_none() && bearer.is_none() {
            return Some((routed(Track::Stable, false), None));
        }
        let input = AssignInput {
            cookie: cookie.as_deref(),
            bearer,
            address: crate::client_ip::canonical(client),
            api,
            checkout: magestack_rollout::assign::is_checkout_path(path),
            eligible: pool_index == self.pool_index,
        };
        let now_secs = now_ms() / 1000;
        let a = magestack_rollout::assign(
            &input,
            split,
            now_secs,
            self.spec.checkout_sticky.as_secs(),
            || self.new_id(),
        );
        let set_cookie = a.set_cookie.filter(|_| !file).and_then(|v| {
            HeaderValue::from_str(&format!(
                "{}={v}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax{}",
                magestack_rollout::assign::COOKIE_NAME,
                if https { "; Secure" } else { "" }
            ))
            .ok()
        });
        Some((routed(a.track, input.eligible && !file), set_cookie))
    }

    fn new_id(&self) -> u64 {
        let mut h = self.ids.build_hasher();
        h.write_u64(self.id_counter.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    }

    /// Counts one answer of the split pool's PHP: `status` (`None`: the
    /// upstream failed and the edge answered 502/504) after `elapsed`.
    pub(crate) fn observe(&self, track: Track, status: Option<u16>, elapsed: Duration) {
        let i = match track {
            Track::Stable => 0,
            Track::Canary => 1,
        };
        let error = status.is_none_or(|s| s >= 500);
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.window[i].record(error, us);
        self.total[i].record(error, us);
    }

    /// One judgement now; applies its decision.
    fn analyse(&self) {
        let state = lock(&self.state).clone();
        if !state.phase.is_active() {
            return;
        }
        let j = magestack_rollout::judge(
            &self.window[1].window(),
            &self.window[0].window(),
            state.stable_p95_baseline_us,
            &self.spec.thresholds,
        );
        let mut next = state;
        let now = now_ms();
        match next.tick(now, &j) {
            Some(d) => {
                let label = if d.action == Action::Abort
                    || d.action == Action::Promote
                    || d.action == Action::Advance
                {
                    j.code.as_str()
                } else {
                    "operator"
                };
                self.commit(next, d.action, label);
            }
            None => {
                // The baseline may have moved: keep it, without a new generation.
                lock(&self.state).stable_p95_baseline_us = next.stable_p95_baseline_us;
                tracing::debug!(reason = %j.reason, "Rollout judged; no change.");
            }
        }
        *lock(&self.last_judgement) = Some(j);
    }

    /// The canary's figures already meet the early-abort rule (two atomic
    /// loads; checked every [`SYNC_INTERVAL`]).
    fn early_abort_due(&self) -> bool {
        let canary = &self.window[1];
        let requests = canary.requests.load(Ordering::Relaxed);
        requests < self.spec.thresholds.min_requests
            && magestack_rollout::analysis::early_abort(
                canary.errors.load(Ordering::Relaxed),
                requests,
                self.spec.thresholds.max_error_ratio,
            )
            && lock(&self.state).phase.is_active()
    }

    /// The background loop: judgements every analysis interval, state sync
    /// with Redis every [`SYNC_INTERVAL`]. Runs until the edge stops it.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_analysis = Instant::now();
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        loop {
            tick.tick().await;
            if let Some(shared) = &self.shared {
                self.sync(shared, &mut conn).await;
            }
            self.ensure_canary_tasks();
            // A gross failure before the minimum sample is judged at the
            // next tick rather than the next interval: the early rule is
            // what lets a canary failing most of its requests go in
            // seconds (magestack_rollout::analysis, "Early abort").
            if last_analysis.elapsed() >= self.spec.analysis_interval || self.early_abort_due() {
                last_analysis = Instant::now();
                let before = lock(&self.state).generation;
                self.analyse();
                let changed = lock(&self.state).generation != before;
                if let (Some(shared), true) = (&self.shared, changed) {
                    self.sync(shared, &mut conn).await;
                }
            }
        }
    }

    /// Newest generation wins: a newer state in Redis is adopted; a newer
    /// one here is written there (compare-and-set on the generation).
    async fn sync(&self, shared: &Shared, conn: &mut Option<redis::aio::MultiplexedConnection>) {
        if conn.is_none() {
            match tokio::time::timeout(
                REDIS_TIMEOUT,
                shared.client.get_multiplexed_async_connection(),
            )
            .await
            {
                Ok(Ok(c)) => *conn = Some(c),
                _ => return,
            }
        }
        let Some(c) = conn.as_mut() else { return };
        let remote: Option<String> = match tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("GET").arg(&shared.key).query_async(c),
        )
        .await
        {
            Ok(Ok(v)) => v,
            _ => {
                *conn = None;
                return;
            }
        };
        let remote: Option<RolloutState> = remote.and_then(|t| serde_json::from_str(&t).ok());
        let local_gen = lock(&self.state).generation;
        match remote {
            Some(r) if r.generation > local_gen => {
                tracing::info!(
                    state = r.phase.as_str(),
                    step = r.step,
                    generation = r.generation,
                    "Rollout state from another replica applied."
                );
                self.save_file(&r);
                self.adopt(r);
            }
            Some(r) if r.generation == local_gen => {}
            _ => {
                if local_gen == 0 {
                    return;
                }
                let state = lock(&self.state).clone();
                let Ok(text) = serde_json::to_string(&state) else {
                    return;
                };
                let script = redis::Script::new(CAS_LUA);
                let mut call = script.key(&shared.key);
                call.arg(text).arg(state.generation);
                if tokio::time::timeout(REDIS_TIMEOUT, call.invoke_async::<i64>(c))
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    *conn = None;
                }
            }
        }
    }

    /// Applies an operator's command; the new state, or why not.
    pub(crate) fn command(
        &self,
        action: Action,
        start: Option<StartRequest>,
    ) -> Result<RolloutState, RolloutRefusal> {
        let conflict = |e: magestack_rollout::Refused| RolloutRefusal {
            status: 409,
            reason: e.to_string(),
        };
        let bad = |reason: String| RolloutRefusal {
            status: 400,
            reason,
        };
        let mut next = lock(&self.state).clone();
        let now = now_ms();
        match action {
            Action::Start => {
                let req = start.unwrap_or_default();
                let plan = match &req.steps {
                    Some(steps) => Plan::parse(steps).map_err(|e| bad(e.to_string()))?,
                    None => self.spec.plan.clone(),
                };
                let endpoints = req
                    .canary_endpoints
                    .unwrap_or_else(|| self.spec.canary_endpoints.clone());
                if next.phase.is_active() {
                    return Err(conflict(magestack_rollout::Refused::AlreadyActive(
                        next.phase.as_str(),
                    )));
                }
                // Check the endpoints (and docroot) before anything changes.
                self.build_canary(&endpoints).map_err(bad)?;
                next.start(plan, endpoints, now, "started by an operator".into())
                    .map_err(conflict)?;
            }
            Action::Pause => next
                .pause(now, "paused by an operator".into())
                .map_err(conflict)?,
            Action::Resume => next
                .resume(now, "resumed by an operator".into())
                .map_err(conflict)?,
            Action::Promote => next
                .promote(
                    now,
                    "promoted by an operator (remaining steps skipped)".into(),
                )
                .map_err(conflict)?,
            Action::Abort => next
                .abort(now, "aborted by an operator".into())
                .map_err(conflict)?,
            Action::Advance => return Err(bad("not an operator command".into())),
        }
        self.commit(next.clone(), action, "operator");
        Ok(next)
    }

    /// The split pool's index.
    pub(crate) fn pool_index(&self) -> usize {
        self.pool_index
    }

    /// `GET /rollout`; `stable_pool` is the split pool's figures (for its
    /// FPM saturation).
    pub(crate) fn status_json(
        &self,
        stable_pool: Option<&crate::pool::PoolStats>,
    ) -> serde_json::Value {
        let state = lock(&self.state).clone();
        let now = now_ms();
        let canary = self.canary.load_full();
        let judgement = lock(&self.last_judgement).clone();
        let saturation = |p: Option<&crate::pool::PoolStats>| {
            p.map(|p| {
                serde_json::json!({
                    "inflight": p.inflight,
                    "max_inflight": p.max_inflight,
                    "queued": p.queued,
                    "busy_ratio": (p.max_inflight > 0).then(|| p.inflight as f64 / p.max_inflight as f64),
                })
            })
        };
        let canary_pool = canary.as_ref().map(|c| c.pool.stats());
        let track = |i: usize, release: Option<&str>, endpoints: Vec<String>| {
            let w = self.window[i].window();
            serde_json::json!({
                "fpm": saturation(if i == 0 { stable_pool } else { canary_pool.as_ref() }),
                "release": release,
                "endpoints": endpoints,
                "requests": w.requests,
                "errors": w.errors,
                "p95_ms": w.p95_us().map(|us| us as f64 / 1000.0),
                "requests_total": self.total[i].requests.load(Ordering::Relaxed),
                "errors_total": self.total[i].errors.load(Ordering::Relaxed),
            })
        };
        let reason = judgement
            .as_ref()
            .and_then(|j| state.waiting_reason(now, j))
            .unwrap_or_else(|| state.reason.clone());
        serde_json::json!({
            "state": state.phase.as_str(),
            "step": state.active_step(),
            "weight": state.weight(),
            "reason": reason,
            "last_change": state.reason,
            "pool": self.spec.pool,
            "steps": state.plan.texts(),
            "time_in_step_secs": state.time_in_step_ms(now) as f64 / 1000.0,
            "rollout_id": state.rollout_id,
            "generation": state.generation,
            "shared": if self.shared.is_some() { "redis" } else { "file" },
            "analysis": judgement.as_ref().map(|j| serde_json::json!({
                "verdict": format!("{:?}", j.verdict).to_lowercase(),
                "reason": j.reason,
            })),
            "tracks": {
                "stable": track(0, self.stable_release.as_deref(), Vec::new()),
                "canary": track(
                    1,
                    canary.as_ref().map(|c| &*c.release),
                    canary.as_ref().map(|c| c.endpoints.clone()).unwrap_or_else(|| state.canary_endpoints.clone()),
                ),
            },
            "decisions": state.decisions,
        })
    }

    /// `magestack_rollout_*` in the Prometheus text format.
    pub(crate) fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let state = lock(&self.state).clone();
        let mut out = String::new();
        let _ = writeln!(out, "# HELP magestack_rollout_weight Percentage of the split pool's visitors on the canary.\n# TYPE magestack_rollout_weight gauge\nmagestack_rollout_weight {}", self.weight.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP magestack_rollout_step Current step (0-based); -1 when no rollout runs.\n# TYPE magestack_rollout_step gauge\nmagestack_rollout_step {}", state.active_step().map_or(-1, |s| s as i64));
        let _ = writeln!(out, "# HELP magestack_rollout_state 1 for the rollout's state.\n# TYPE magestack_rollout_state gauge");
        for p in [
            Phase::Idle,
            Phase::Running,
            Phase::Paused,
            Phase::Promoted,
            Phase::Aborted,
        ] {
            let _ = writeln!(
                out,
                "magestack_rollout_state{{state=\"{}\"}} {}",
                p.as_str(),
                u8::from(p == state.phase)
            );
        }
        let _ = writeln!(out, "# HELP magestack_rollout_decisions Rollout decisions taken by this edge, by action and reason.\n# TYPE magestack_rollout_decisions counter");
        for ((action, reason), n) in lock(&self.decided).iter() {
            let _ = writeln!(
                out,
                "magestack_rollout_decisions_total{{action=\"{}\",reason=\"{reason}\"}} {n}",
                action.as_str()
            );
        }
        let _ = writeln!(out, "# HELP magestack_rollout_requests Requests of the split pool that reached PHP, by track.\n# TYPE magestack_rollout_requests counter");
        for (i, t) in ["stable", "canary"].iter().enumerate() {
            let _ = writeln!(
                out,
                "magestack_rollout_requests_total{{track=\"{t}\"}} {}",
                self.total[i].requests.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP magestack_rollout_errors 5xx answers of the split pool's PHP (not the edge's shedding), by track.\n# TYPE magestack_rollout_errors counter");
        for (i, t) in ["stable", "canary"].iter().enumerate() {
            let _ = writeln!(
                out,
                "magestack_rollout_errors_total{{track=\"{t}\"}} {}",
                self.total[i].errors.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP magestack_rollout_request_duration_seconds Time to PHP's answer in the split pool, by track.\n# TYPE magestack_rollout_request_duration_seconds histogram");
        for (i, t) in ["stable", "canary"].iter().enumerate() {
            let mut cumulative = 0u64;
            let mut sum_us = 0f64;
            for b in 0..BUCKETS {
                let n = self.total[i].latency[b].load(Ordering::Relaxed);
                cumulative += n;
                let upper = bucket_upper_us(b);
                sum_us += n as f64
                    * if upper == u64::MAX {
                        bucket_upper_us(b - 1) as f64
                    } else {
                        upper as f64
                    };
                // Every fourth bound is a power of two: exact cumulative counts.
                if b % 4 == 0 && b + 1 < BUCKETS {
                    let _ = writeln!(out, "magestack_rollout_request_duration_seconds_bucket{{track=\"{t}\",le=\"{}\"}} {cumulative}", upper as f64 / 1e6);
                }
            }
            let _ = writeln!(out, "magestack_rollout_request_duration_seconds_bucket{{track=\"{t}\",le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(
                out,
                "magestack_rollout_request_duration_seconds_sum{{track=\"{t}\"}} {}",
                sum_us / 1e6
            );
            let _ = writeln!(
                out,
                "magestack_rollout_request_duration_seconds_count{{track=\"{t}\"}} {cumulative}"
            );
        }
        out
    }
}

/// The edge's metrics text with `magestack_rollout_*` added before the
/// OpenMetrics `# EOF` line.
pub(crate) fn with_metrics(mut text: String, rollout: Option<&Rollout>) -> String {
    let Some(r) = rollout else { return text };
    let extra = r.render_metrics();
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &extra),
        None => text.push_str(&extra),
    }
    text
}

/// Writes the state if its generation is newer than the stored one.
const CAS_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and old.generation and tonumber(old.generation) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

/// The value of cookie `name` (first one), as PHP would read it.
fn find_cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if k == name {
                    return Some(val.trim().to_owned());
                }
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_reads_its_status_where_stable_does() {
        let tcp = |a: &str| UpstreamTarget::FastCgiTcp(a.into());
        let none = PoolSpec {
            name: "frontend".into(),
            endpoints: Vec::new(),
            max_inflight: 0,
            queue_size: 0,
            queue_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            status_path: Some("/status".into()),
            status_endpoints: Vec::new(),
            check_interval: Duration::from_secs(5),
            unhealthy_after: 3,
            resolve_interval: Duration::from_secs(5),
        };
        let stable = PoolSpec {
            endpoints: vec![tcp("php-fpm-frontend-stable:9000")],
            status_endpoints: vec![tcp("php-fpm-frontend-stable:9001")],
            ..none.clone()
        };
        assert_eq!(
            canary_status_endpoints(&stable, &[tcp("php-fpm-frontend-canary:9000")]),
            vec![tcp("php-fpm-frontend-canary:9001")]
        );
        // A status elsewhere (another host) is not carried over.
        let elsewhere = PoolSpec {
            status_endpoints: vec![tcp("10.0.0.9:9001")],
            ..stable.clone()
        };
        assert!(canary_status_endpoints(&elsewhere, &[tcp("c:9000")]).is_empty());
        // Nor to a Unix socket.
        let unix = UpstreamTarget::FastCgiUnix("/run/php.sock".into());
        assert!(canary_status_endpoints(&stable, &[unix]).is_empty());
        assert!(canary_status_endpoints(&none, &[tcp("c:9000")]).is_empty());
    }

    #[test]
    fn endpoints_parse_or_say_why() {
        assert_eq!(
            parse_endpoint("fcgi://127.0.0.1:9001"),
            Ok(UpstreamTarget::FastCgiTcp("127.0.0.1:9001".into()))
        );
        assert_eq!(
            parse_endpoint("fcgi+unix:///run/php.sock"),
            Ok(UpstreamTarget::FastCgiUnix("/run/php.sock".into()))
        );
        assert_eq!(
            parse_endpoint("http://app:8080/"),
            Ok(UpstreamTarget::Http("app:8080".into()))
        );
        assert!(parse_endpoint("gopher://x:1")
            .unwrap_err()
            .contains("unknown canary endpoint"));
        assert!(parse_endpoint("fcgi://x").is_err());
        assert!(parse_endpoint("fcgi://x:0").is_err());
    }

    proptest::proptest! {
        /// The edge's own injection inspection (which looks into cookies)
        /// never blocks the assignment cookie. See the pin's separator in
        /// `magestack_rollout::assign::Visitor::parse`.
        #[test]
        fn the_waf_never_flags_the_assignment_cookie(id in proptest::prelude::any::<u64>(), pin in proptest::option::of(0u64..10_000_000_000)) {
            use magestack_waf::inject::{Detectors, Inspector, RequestView};
            let inspector = Inspector::new(
                magestack_waf::inject::profile::Profile::magento("admin", Vec::new()),
                Detectors::default(),
            );
            let value = magestack_rollout::assign::Visitor { id, stable_until: pin }.cookie_value();
            let mut headers = http::HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(&format!("magestack_track={value}")).unwrap());
            let uri: http::Uri = "/checkout/cart/".parse().unwrap();
            let found = inspector.inspect(&RequestView { method: &http::Method::GET, uri: &uri, headers: &headers, body: None });
            proptest::prop_assert!(found.is_none(), "{value}: {found:?}");
        }
    }

    #[test]
    fn cookies_are_found_as_php_reads_them() {
        let mut h = http::HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; magestack_track=v1.x"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("magestack_track=v1.y"),
        );
        assert_eq!(find_cookie(&h, "magestack_track").as_deref(), Some("v1.x"));
        assert_eq!(find_cookie(&h, "nope"), None);
    }
}
