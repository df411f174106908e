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

/// Publishes atomically with its sequence number.
const PUBLISH_LUA: &str = r"
local seq = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. ARGV[2])
return seq
";

/// Purges waiting to be published while Redis is away.
const QUEUE: usize = 10_000;
/// How often the command connection is pinged (a silent network failure
/// would otherwise leave a dead subscription unnoticed).
const PING_EVERY: Duration = Duration::from_secs(1);
/// Timeouts of every Redis call.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the bus lives and who this replica is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `redis://host:port[/db]` (no credentials).
    pub redis_url: String,
    /// Password (from the environment or a file), if any.
    pub password: Option<String>,
    /// Pub/sub channel; the counter is `<channel>:seq`.
    pub channel: String,
    /// This replica's name in messages (pod name / host name + pid).
    pub node: String,
}

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
        });
        let task = BusTask {
            spec,
            cache,
            counters: Arc::clone(&bus.counters),
            connected: Arc::clone(&bus.connected),
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
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

struct BusTask {
    spec: ClusterSpec,
    cache: Option<Arc<Cache>>,
    counters: Arc<BusCounters>,
    connected: Arc<AtomicBool>,
    sequence: Sequence,
}

impl BusTask {
    async fn run(mut self, mut rx: mpsc::Receiver<PurgeMessage>) {
        let client = match redis::Client::open(connection_url(&self.spec)) {
            Ok(c) => c,
            Err(e) => {
                // The URL was checked at load time; this is a bug or an
                // unusable password.
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
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "Purge bus: Redis unreachable; serving on, purges stay local until it is back.");
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
                    let seq: u64 = script
                        .key(&seq_key)
                        .arg(&self.spec.channel)
                        .arg(out.to_json())
                        .invoke_async(&mut conn)
                        .await?;
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

/// The URL with the password added (never logged).
fn connection_url(spec: &ClusterSpec) -> String {
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
            channel: "c".into(),
            node: "n".into(),
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
