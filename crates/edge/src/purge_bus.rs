//! The purge bus: every edge replica subscribed to one Redis channel, so a
//! purge accepted by any of them reaches all of them.
//!
//! Publishing runs a Lua script that takes the next number of the counter
//! `<channel>:seq` and publishes `<seq> <json>` in one atomic step; the
//! decisions (duplicate, in order, gap) are `magestack_cluster`'s. This
//! module is the I/O shell: one task per edge process that keeps a
//! subscription and a command connection, reconnects with backoff, and
//! applies what arrives to the local cache.
//!
//! Trade-off while Redis is unreachable: the replica keeps serving (fresh
//! objects, then grace) and applies purges it receives itself; their
//! publication waits in a bounded queue and is sent on reconnection. What it
//! may have missed meanwhile it cannot know, so on reconnection it compares
//! the counter with the last number it saw and, on any difference, marks
//! its whole cache stale (soft purge: grace still covers a backend outage).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use magestack_cluster::{PurgeCommand, PurgeMessage, Sequence, SequenceVerdict};
use tokio::sync::mpsc;

use crate::cache::Cache;

/// Publishes atomically with its sequence number, after removing the purged
/// objects from L2 (exact tags: through their tag sets; anything else: a new
/// L2 generation, so old entries are never read again and expire).
/// KEYS: seq, L2 generation. ARGV: channel, json, l2 action, L2 prefix, tags…
const PUBLISH_LUA: &str = r"
local seq = redis.call('INCR', KEYS[1])
if ARGV[3] == 'flush' then
  redis.call('INCR', KEYS[2])
elseif ARGV[3] == 'tags' then
  local g = redis.call('GET', KEYS[2]) or '0'
  for i = 5, #ARGV do
    local set = ARGV[4] .. ':' .. g .. ':tag:' .. ARGV[i]
    for _, k in ipairs(redis.call('SMEMBERS', set)) do redis.call('DEL', k) end
    redis.call('DEL', set)
  end
end
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. ARGV[2])
return seq
";

/// The variants of one page in L2. KEYS: generation. ARGV: prefix, key.
const L2_GET_LUA: &str = r"
local g = redis.call('GET', KEYS[1]) or '0'
return redis.call('HGETALL', ARGV[1] .. ':' .. g .. ':obj:' .. ARGV[2])
";

/// Stores one variant, unless a purge was published since the fetch began
/// (the copy could predate it). KEYS: generation, seq. ARGV: prefix, key,
/// variance, record, ttl seconds, seq at fetch start, tags…
const L2_PUT_LUA: &str = r"
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur ~= tonumber(ARGV[6]) then return 0 end
local g = redis.call('GET', KEYS[1]) or '0'
local k = ARGV[1] .. ':' .. g .. ':obj:' .. ARGV[2]
local ttl = tonumber(ARGV[5])
redis.call('HSET', k, ARGV[3], ARGV[4])
if redis.call('TTL', k) < ttl then redis.call('EXPIRE', k, ttl) end
for i = 7, #ARGV do
  local set = ARGV[1] .. ':' .. g .. ':tag:' .. ARGV[i]
  redis.call('SADD', set, k)
  if redis.call('TTL', set) < ttl then redis.call('EXPIRE', set, ttl) end
end
return 1
";

/// Longest wait for L2 on a request's path: past it, PHP is asked.
const L2_TIMEOUT: Duration = Duration::from_millis(50);

/// Purges waiting to be published while Redis is away.
const QUEUE: usize = 10_000;
/// How often the command connection is pinged (a silent network failure
/// would otherwise leave a dead subscription unnoticed).
const PING_EVERY: Duration = Duration::from_secs(1);
/// Timeouts of every Redis call.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

pub use crate::settings::ClusterSpec;

/// Bus figures for `/metrics`.
#[derive(Debug, Default)]
pub struct BusCounters {
    /// Purges published.
    pub sent: AtomicU64,
    /// Messages received (own included).
    pub received: AtomicU64,
    /// Others' purges applied.
    pub applied: AtomicU64,
    /// Messages skipped as already seen.
    pub duplicates: AtomicU64,
    /// Times this replica found it may have missed purges.
    pub gaps: AtomicU64,
    /// Failed Redis calls and lost connections.
    pub errors: AtomicU64,
    /// Purges not queued for publication (queue full).
    pub dropped: AtomicU64,
    /// Local misses answered from L2.
    pub l2_hits: AtomicU64,
    /// Local misses L2 could not answer.
    pub l2_misses: AtomicU64,
    /// Bytes of records written to L2.
    pub l2_bytes_written: AtomicU64,
    /// L2 calls that failed or timed out.
    pub l2_errors: AtomicU64,
}

/// A snapshot of [`BusCounters`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BusStats {
    /// See [`BusCounters`].
    pub sent: u64,
    /// See [`BusCounters`].
    pub received: u64,
    /// See [`BusCounters`].
    pub applied: u64,
    /// See [`BusCounters`].
    pub duplicates: u64,
    /// See [`BusCounters`].
    pub gaps: u64,
    /// See [`BusCounters`].
    pub errors: u64,
    /// See [`BusCounters`].
    pub dropped: u64,
    /// See [`BusCounters`].
    pub l2_hits: u64,
    /// See [`BusCounters`].
    pub l2_misses: u64,
    /// See [`BusCounters`].
    pub l2_bytes_written: u64,
    /// See [`BusCounters`].
    pub l2_errors: u64,
    /// L2 is on.
    pub l2: bool,
    /// Subscribed right now.
    pub connected: bool,
}

/// The bus handle the edge keeps (across reloads).
#[derive(Debug)]
pub struct PurgeBus {
    spec: ClusterSpec,
    tx: mpsc::Sender<PurgeMessage>,
    counters: Arc<BusCounters>,
    connected: Arc<AtomicBool>,
    /// The command connection while connected (L2 reads and writes use it).
    conn: Arc<arc_swap::ArcSwapOption<redis::aio::MultiplexedConnection>>,
    /// Last purge number seen (`u64::MAX` before the first sync).
    last_seq: Arc<AtomicU64>,
    /// The L2 scripts (their SHA computed once).
    l2_get_script: redis::Script,
    l2_put_script: Arc<redis::Script>,
}

impl PurgeBus {
    /// Starts the bus task on the current tokio runtime.
    pub(crate) fn start(spec: ClusterSpec, cache: Option<Arc<Cache>>) -> Arc<PurgeBus> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let bus = Arc::new(PurgeBus {
            spec: spec.clone(),
            tx,
            counters: Arc::default(),
            connected: Arc::default(),
            conn: Arc::default(),
            last_seq: Arc::new(AtomicU64::new(u64::MAX)),
            l2_get_script: redis::Script::new(L2_GET_LUA),
            l2_put_script: Arc::new(redis::Script::new(L2_PUT_LUA)),
        });
        let task = BusTask {
            spec,
            cache,
            counters: Arc::clone(&bus.counters),
            connected: Arc::clone(&bus.connected),
            conn: Arc::clone(&bus.conn),
            last_seq: Arc::clone(&bus.last_seq),
            sequence: Sequence::new(),
        };
        tokio::spawn(task.run(rx));
        bus
    }

    /// The spec it was started with (a reload with the same spec keeps it).
    pub(crate) fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Publishes a purge this replica accepted (and applied already).
    pub(crate) fn publish(&self, soft: bool, command: PurgeCommand) {
        let msg = PurgeMessage {
            v: magestack_cluster::message::VERSION,
            origin: self.spec.node.clone(),
            soft,
            command,
        };
        if self.tx.try_send(msg).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "Purge bus queue full: a purge was applied here but not published to the other replicas."
            );
        }
    }

    /// Figures for `/metrics` and `/cache/stats`.
    pub fn stats(&self) -> BusStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BusStats {
            sent: l(&c.sent),
            received: l(&c.received),
            applied: l(&c.applied),
            duplicates: l(&c.duplicates),
            gaps: l(&c.gaps),
            errors: l(&c.errors),
            dropped: l(&c.dropped),
            l2_hits: l(&c.l2_hits),
            l2_misses: l(&c.l2_misses),
            l2_bytes_written: l(&c.l2_bytes_written),
            l2_errors: l(&c.l2_errors),
            l2: self.spec.l2,
            connected: self.connected.load(Ordering::Relaxed),
        }
    }

    /// L2 is on (and may be asked).
    pub(crate) fn l2_enabled(&self) -> bool {
        self.spec.l2
    }

    /// The last purge number seen, to tag a fetch that may be written to L2.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    fn l2_prefix(&self) -> String {
        format!("{}:l2", self.spec.channel)
    }

    /// The stored variants of a page, from L2; empty when L2 is off,
    /// unreachable, slow, or holds nothing for it.
    pub(crate) async fn l2_get(&self, primary: &[u8; 16]) -> Vec<magestack_cluster::L2Object> {
        let Some(conn) = self.conn.load_full() else {
            return Vec::new();
        };
        let mut conn = (*conn).clone();
        let prefix = self.l2_prefix();
        let mut call = self.l2_get_script.key(format!("{prefix}:gen"));
        call.arg(&prefix).arg(hex(primary));
        let flat =
            match tokio::time::timeout(L2_TIMEOUT, call.invoke_async::<Vec<Vec<u8>>>(&mut conn))
                .await
            {
                Ok(Ok(v)) => v,
                Ok(Err(_)) | Err(_) => {
                    self.counters.l2_errors.fetch_add(1, Ordering::Relaxed);
                    return Vec::new();
                }
            };
        let objects: Vec<_> = flat
            .chunks(2)
            .filter_map(|pair| pair.get(1))
            .filter_map(|rec| magestack_cluster::L2Object::decode(rec).ok())
            .collect();
        let counter = if objects.is_empty() {
            &self.counters.l2_misses
        } else {
            &self.counters.l2_hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        objects
    }

    /// Copies a stored page to L2 in the background, unless a purge was
    /// published since `seq_at_fetch` (the number seen when the fetch began).
    pub(crate) fn l2_put(
        &self,
        primary: [u8; 16],
        object: magestack_cluster::L2Object,
        seq_at_fetch: u64,
    ) {
        let Some(conn) = self.conn.load_full() else {
            return;
        };
        if seq_at_fetch == u64::MAX {
            return; // not synced yet: cannot prove the copy current
        }
        let mut conn = (*conn).clone();
        let prefix = self.l2_prefix();
        let seq_key = format!("{}:seq", self.spec.channel);
        let ttl_secs = (object.ttl_ms + object.grace_ms).div_ceil(1000).max(1);
        let record = object.encode();
        let counters = Arc::clone(&self.counters);
        let script = Arc::clone(&self.l2_put_script);
        tokio::spawn(async move {
            let mut call = script.key(format!("{prefix}:gen"));
            call.key(&seq_key)
                .arg(&prefix)
                .arg(hex(&primary))
                .arg(object.variance)
                .arg(&record)
                .arg(ttl_secs)
                .arg(seq_at_fetch);
            for t in &object.tags {
                call.arg(t);
            }
            match tokio::time::timeout(REDIS_TIMEOUT, call.invoke_async::<u64>(&mut conn)).await {
                Ok(Ok(1)) => {
                    counters
                        .l2_bytes_written
                        .fetch_add(record.len() as u64, Ordering::Relaxed);
                }
                Ok(Ok(_)) => {} // a purge raced the fetch: not copied
                Ok(Err(_)) | Err(_) => {
                    counters.l2_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct BusTask {
    spec: ClusterSpec,
    cache: Option<Arc<Cache>>,
    counters: Arc<BusCounters>,
    connected: Arc<AtomicBool>,
    conn: Arc<arc_swap::ArcSwapOption<redis::aio::MultiplexedConnection>>,
    last_seq: Arc<AtomicU64>,
    sequence: Sequence,
}

impl BusTask {
    async fn run(mut self, mut rx: mpsc::Receiver<PurgeMessage>) {
        let client = match client(&self.spec) {
            Ok(c) => c,
            Err(e) => {
                // The URL was checked at load time and the CA bundle at
                // start; this is a bug or an unusable password.
                tracing::error!(error = %e, "Purge bus disabled: bad Redis address.");
                return;
            }
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session(&client, &mut rx).await {
                Ok(()) => return, // queue closed: the edge is gone
                Err(e) => {
                    self.connected.store(false, Ordering::Relaxed);
                    self.conn.store(None);
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(why) = refusal(&self.spec, &e) {
                        tracing::error!(error = %e, retry_ms = backoff.as_millis() as u64, "Purge bus: {why}; serving on, purges stay local.");
                    } else {
                        tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "Purge bus: Redis unreachable; serving on, purges stay local until it is back.");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            if self.connected.load(Ordering::Relaxed) {
                backoff = Duration::from_millis(100);
            }
        }
    }

    /// One connected period: subscribe, sync the sequence, then relay.
    async fn session(
        &mut self,
        client: &redis::Client,
        rx: &mut mpsc::Receiver<PurgeMessage>,
    ) -> Result<(), redis::RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&self.spec.channel).await?;
        let seq_key = format!("{}:seq", self.spec.channel);
        // Subscribed first, then read the counter: a purge published in
        // between arrives as a message numbered above it.
        let current: Option<u64> = redis::cmd("GET")
            .arg(&seq_key)
            .query_async(&mut conn)
            .await?;
        if self.sequence.on_sync(current.unwrap_or(0)) == SequenceVerdict::Gap {
            self.gap("resubscribed and the purge counter moved");
        }
        self.last_seq
            .store(self.sequence.last().unwrap_or(u64::MAX), Ordering::Release);
        self.conn.store(Some(Arc::new(conn.clone())));
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(channel = %self.spec.channel, "Purge bus connected.");
        let script = redis::Script::new(PUBLISH_LUA);
        let mut messages = pubsub.on_message();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")));
                    };
                    self.on_payload(msg.get_payload_bytes());
                }
                out = rx.recv() => {
                    let Some(out) = out else { return Ok(()) };
                    let (action, tags) = l2_action(&out.command);
                    let mut call = script.key(&seq_key);
                    call.key(format!("{}:l2:gen", self.spec.channel))
                        .arg(&self.spec.channel)
                        .arg(out.to_json())
                        .arg(if self.spec.l2 { action } else { "none" })
                        .arg(format!("{}:l2", self.spec.channel));
                    for t in &tags {
                        call.arg(t);
                    }
                    let seq: u64 = call.invoke_async(&mut conn).await?;
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(seq, "Purge published.");
                }
                _ = ping.tick() => {
                    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                }
            }
        }
    }

    fn on_payload(&mut self, payload: &[u8]) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let (seq, msg) = match PurgeMessage::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                // Unknown version or garbage: cannot prove anything.
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.gap(&format!("undecodable message: {e}"));
                return;
            }
        };
        let verdict = self.sequence.on_message(seq);
        self.last_seq
            .store(self.sequence.last().unwrap_or(u64::MAX), Ordering::Release);
        if verdict == SequenceVerdict::Duplicate {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if verdict == SequenceVerdict::Gap {
            self.gap("purge numbers skipped");
        }
        if msg.origin == self.spec.node {
            return; // applied when it was accepted here
        }
        if let Some(cache) = &self.cache {
            let n = crate::cache::apply_command(cache, &msg.command, msg.soft);
            tracing::info!(seq, origin = %msg.origin, objects = n, "Purged (bus).");
        }
        self.counters.applied.fetch_add(1, Ordering::Relaxed);
    }

    fn gap(&self, why: &str) {
        self.counters.gaps.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.cache {
            let n = crate::cache::soft_purge_everything(cache, SystemTime::now());
            tracing::warn!(why, objects = n, "Purge bus: purges may have been missed; everything cached is now stale (grace only).");
        }
    }
}

/// What a purge does to L2: delete the entries of exact tags, or start a
/// new generation for anything broader (regex patterns, everything).
fn l2_action(command: &PurgeCommand) -> (&'static str, Vec<String>) {
    use magestack_fpc::prelude::{parse_tags_pattern, PurgePattern};
    match command {
        PurgeCommand::Tags { tags } => ("tags", tags.clone()),
        PurgeCommand::All => ("flush", Vec::new()),
        PurgeCommand::Pattern {
            tags_pattern,
            pool_pattern,
        } => {
            if pool_pattern.is_some() {
                return ("flush", Vec::new());
            }
            match tags_pattern.as_deref().map(parse_tags_pattern) {
                Some(PurgePattern::Tags(tags)) => {
                    ("tags", tags.iter().map(|t| t.to_string()).collect())
                }
                Some(PurgePattern::Empty | PurgePattern::Invalid(_)) | None => ("none", Vec::new()),
                Some(_) => ("flush", Vec::new()),
            }
        }
    }
}

/// The client for the spec: `rediss://` verifies the server's certificate
/// and name against `cluster.redis_ca_file` when given, else the system's
/// trust store (rustls with ring, as the edge's listeners).
fn client(spec: &ClusterSpec) -> redis::RedisResult<redis::Client> {
    match &spec.ca {
        Some((_, pem)) if spec.redis_url.starts_with("rediss://") => redis::Client::build_with_tls(
            connection_url(spec),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        _ => redis::Client::open(connection_url(spec)),
    }
}

/// What an operator should fix when Redis was reached but the connection
/// was refused: the server's certificate (rustls' reason is in the error
/// itself) or the password. `None` for anything else (Redis down, network),
/// which is retried with a warning.
fn refusal(spec: &ClusterSpec, e: &redis::RedisError) -> Option<String> {
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return Some(
            "the password (MAGESTACK_REDIS_PASSWORD[_FILE]) was refused by Redis".to_owned(),
        );
    }
    if !spec.redis_url.starts_with("rediss://") {
        return None;
    }
    let text = e.to_string();
    let trust = match &spec.ca {
        Some((path, _)) => format!("cluster.redis_ca_file {}", path.display()),
        None => "the system's trust store (set cluster.redis_ca_file)".to_owned(),
    };
    let why = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!("the server's certificate is not signed by a CA in {trust}")
    } else if text.contains("NotValidForName") {
        "the server's certificate is not valid for the host name in cluster.redis_url".to_owned()
    } else if text.contains("invalid peer certificate") || text.contains("InvalidCertificate") {
        format!("the server's certificate was refused (checked against {trust})")
    } else {
        return None;
    };
    Some(format!("TLS to Redis refused: {why}"))
}

/// The URL with the password added (never logged).
pub(crate) fn connection_url(spec: &ClusterSpec) -> String {
    match &spec.password {
        Some(pw) if !pw.is_empty() => {
            let enc = percent_encoding::utf8_percent_encode(pw, percent_encoding::NON_ALPHANUMERIC);
            match spec.redis_url.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://:{enc}@{rest}"),
                None => spec.redis_url.clone(),
            }
        }
        _ => spec.redis_url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_goes_into_the_url_encoded() {
        let spec = ClusterSpec {
            redis_url: "redis://10.0.0.9:6379/2".into(),
            password: Some("p@ss:w/rd".into()),
            ca: None,
            channel: "c".into(),
            node: "n".into(),
            l2: false,
        };
        assert_eq!(
            connection_url(&spec),
            "redis://:p%40ss%3Aw%2Frd@10.0.0.9:6379/2"
        );
        let none = ClusterSpec {
            password: None,
            ..spec
        };
        assert_eq!(connection_url(&none), "redis://10.0.0.9:6379/2");
    }
}
