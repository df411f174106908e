//! One client connection: the proxy's handshake and its own check of the
//! password, then the command loop that borrows backends per statement
//! (multiplexing) and keeps one while the session is pinned.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use magestack_mysql_proto::auth::{self, CACHING_SHA2_PASSWORD, NATIVE_PASSWORD, SCRAMBLE_LEN};
use magestack_mysql_proto::consts::{cap, err, status};
use magestack_mysql_proto::handshake::{
    encode_auth_switch, ChangeUser, ClientHello, InitialHandshake, FAST_AUTH_SUCCESS,
    PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY,
};
use magestack_mysql_proto::response::first_text_column;
use magestack_mysql_proto::{
    classify, fingerprint, Command, EofPacket, ErrPacket, OkPacket, Outcome, Packet, Part, Release,
    ResponseReader, Route, Session, StateChange, Statement,
};
use tokio::net::TcpStream;

use crate::backend::Reply;
use crate::error::{BackendError, IoError};
use crate::io::{PacketStream, Stream};
use crate::metrics::{pin_mask, Decision, ErrorKind as MetricError};
use crate::pool::Lease;
use crate::Shared;

/// Capabilities offered to clients. No `CLIENT_SESSION_TRACK` (the tracking
/// the proxy turns on belongs to the proxy), no `CLIENT_DEPRECATE_EOF`
/// (backends run without it, so result sets pass unchanged), no
/// compression, no `LOCAL INFILE`. `CLIENT_SSL` is added when TLS from
/// clients is configured.
pub(crate) const CLIENT_CAPS: u32 = cap::LONG_PASSWORD
    | cap::LONG_FLAG
    | cap::CONNECT_WITH_DB
    | cap::PROTOCOL_41
    | cap::INTERACTIVE
    | cap::TRANSACTIONS
    | cap::SECURE_CONNECTION
    | cap::MULTI_STATEMENTS
    | cap::MULTI_RESULTS
    | cap::PS_MULTI_RESULTS
    | cap::PLUGIN_AUTH
    | cap::CONNECT_ATTRS
    | cap::PLUGIN_AUTH_LENENC_DATA;

/// Flush to the client once this much is queued (large result sets stream).
const FLUSH_AT: usize = 64 * 1024;

struct Client {
    shared: Arc<Shared>,
    ps: PacketStream<Stream>,
    peer: SocketAddr,
    caps: u32,
    session: Session,
    scramble: [u8; SCRAMBLE_LEN],
    pinned: Option<Lease>,
    /// Pin reasons last reported to the metrics (bit mask).
    pins: u16,
    /// The last response ended with an error (for `/digests`).
    last_failed: bool,
    /// Sequence id of the current command's first response packet: 1,
    /// unless the command came in several packets (a payload of 16 MiB or
    /// more), then one past its last.
    seq: u8,
}

/// ER_OPTION_PREVENTS_STATEMENT: the server runs with `read_only` (a
/// demoted writer).
const READ_ONLY: u16 = 1290;

/// Serves one client until it quits or its connection fails.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let limits = shared.cfg.backend.limits;
    let ps = PacketStream::new(Stream::Plain(stream), limits);
    shared.metrics.client_opened();
    // A client that never finishes its login (or its TLS handshake) must not
    // hold a task and a descriptor for ever.
    // Boxed, as every phase here: the task's own state stays what an idle
    // client needs (see `Client::run`).
    let Ok(Some((ps, login))) =
        tokio::time::timeout(LOGIN_TIMEOUT, Box::pin(login(&shared, ps, peer))).await
    else {
        shared.metrics.client_closed();
        return;
    };
    let mut c = Client {
        shared,
        ps,
        peer,
        caps: login.caps,
        session: login.session,
        scramble: login.scramble,
        pinned: None,
        pins: 0,
        last_failed: false,
        seq: 1,
    };
    let _ = c.run().await;
    Box::pin(c.leave()).await;
    c.shared.metrics.pins_changed(c.pins, 0);
    c.shared.metrics.client_closed();
}

fn scramble() -> [u8; SCRAMBLE_LEN] {
    let mut s = [0u8; SCRAMBLE_LEN];
    // A failing OS random source leaves zeros mapped to a fixed scramble;
    // getrandom only fails on platforms without one.
    let _ = getrandom::getrandom(&mut s);
    // Printable, never NUL (the handshake NUL-terminates it), as servers do.
    s.map(|b| 33 + b % 94)
}

/// Longest connection phase (greeting to OK, TLS included): real clients
/// need milliseconds; MySQL's own `connect_timeout` is 10 s.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// ER_SECURE_TRANSPORT_REQUIRED: MySQL's code for a plain connection where
/// TLS is required.
const SECURE_TRANSPORT_REQUIRED: u16 = 3159;

/// The connection phase: greeting, TLS when the client asks for it, the
/// password check. `None`: the client was refused or left.
/// What a successful login leaves.
struct Login {
    caps: u32,
    session: Session,
    /// The greeting's scramble: `COM_CHANGE_USER` answers it again.
    scramble: [u8; SCRAMBLE_LEN],
}

async fn login(
    shared: &Shared,
    mut ps: PacketStream<Stream>,
    peer: SocketAddr,
) -> Option<(PacketStream<Stream>, Login)> {
    let tls = shared.cfg.client_tls.as_ref();
    let offered = CLIENT_CAPS | tls.map_or(0, |_| cap::SSL);
    let scramble = scramble();
    let hs = InitialHandshake {
        server_version: shared.server_version(),
        connection_id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        scramble: scramble.to_vec(),
        capabilities: offered,
        charset: magestack_mysql_proto::consts::UTF8MB4_GENERAL_CI,
        status: status::AUTOCOMMIT,
        // With full authentication on, MySQL 8's default plugin, so that
        // clients answer with it (a client may still choose native).
        auth_plugin: if shared.cfg.client_full_auth {
            CACHING_SHA2_PASSWORD
        } else {
            NATIVE_PASSWORD
        }
        .as_bytes()
        .to_vec(),
    };
    let mut b = BytesMut::new();
    hs.encode(&mut b);
    ps.send(&b, 0).await.ok()?;
    let mut p = ps.read_exact_packet().await.ok()?;
    let mut hello = ClientHello::decode(&p.payload);
    if let (Ok(ClientHello::SslRequest { .. }), Some(tls)) = (&hello, tls) {
        // TLS now; the Handshake Response follows inside it.
        let Some(Stream::Plain(tcp)) = ps.into_stream() else {
            return None;
        };
        let s = match tls.acceptor().accept(tcp).await {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(%peer, error = %e, "Client TLS handshake failed.");
                shared.metrics.error(MetricError::AuthFailed);
                return None;
            }
        };
        ps = PacketStream::new(Stream::FromClient(Box::new(s)), shared.cfg.backend.limits);
        p = ps.read().await.ok()?;
        hello = ClientHello::decode(&p.payload);
    }
    let mut seq = p.last_seq.wrapping_add(1);
    let resp = match hello {
        Ok(ClientHello::Response(r)) => r,
        Ok(ClientHello::SslRequest { .. }) | Err(_) => {
            let e = ErrPacket::new(
                err::HANDSHAKE,
                b"08S01",
                "Bad handshake (magestack dbproxy: TLS from clients is not offered)",
            );
            let _ = send_err(&mut ps, &e, seq).await;
            return None;
        }
    };
    if tls.is_some_and(|t| t.required) && !ps.stream.is_tls() {
        let e = ErrPacket::new(
            SECURE_TRANSPORT_REQUIRED,
            b"HY000",
            "Connections using insecure transport are prohibited (magestack dbproxy: \
             require_client_tls)",
        );
        shared.metrics.error(MetricError::AuthFailed);
        let _ = send_err(&mut ps, &e, seq).await;
        return None;
    }
    let caps = resp.capabilities & CLIENT_CAPS;
    let cfg = &shared.cfg.backend;
    let plugin = resp
        .auth_plugin
        .as_deref()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| NATIVE_PASSWORD.to_owned());
    let password = cfg.password.as_bytes();
    let (mut answer, mut used_plugin) = (resp.auth_response.clone(), plugin.clone());
    if auth::expected_response(&plugin, password, &scramble).is_none() {
        // A plugin the proxy cannot verify: ask for mysql_native_password.
        let mut b = BytesMut::new();
        encode_auth_switch(NATIVE_PASSWORD, &scramble, &mut b);
        ps.send(&b, seq).await.ok()?;
        let p = ps.read().await.ok()?;
        seq = p.last_seq.wrapping_add(1);
        answer = p.payload.to_vec();
        used_plugin = NATIVE_PASSWORD.to_owned();
    }
    let expected = auth::expected_response(&used_plugin, password, &scramble).unwrap_or_default();
    let user_ok = resp.username == cfg.user.as_bytes();
    let mut pass_ok = auth::constant_time_eq(&expected, &answer);
    let mut full = false;
    if used_plugin == CACHING_SHA2_PASSWORD && shared.cfg.client_full_auth && !answer.is_empty() {
        // Full authentication, as a MySQL 8 server with a cold cache asks
        // for it: the password itself, in clear inside TLS, else encrypted
        // under the proxy's RSA key.
        ps.send(PERFORM_FULL_AUTH, seq).await.ok()?;
        let (got, next) = full_auth(shared, &mut ps, &scramble).await?;
        seq = next;
        pass_ok = got.is_some_and(|pw| auth::constant_time_eq(&pw, password));
        full = true;
    }
    if !user_ok || !pass_ok {
        let msg = format!(
            "Access denied for user '{}'@'{}' (using password: {})",
            String::from_utf8_lossy(&resp.username),
            peer.ip(),
            if answer.is_empty() { "NO" } else { "YES" }
        );
        tracing::info!(%peer, user = %String::from_utf8_lossy(&resp.username), "Client authentication failed.");
        shared.metrics.error(MetricError::AuthFailed);
        let _ = send_err(
            &mut ps,
            &ErrPacket::new(err::ACCESS_DENIED, b"28000", msg),
            seq,
        )
        .await;
        return None;
    }
    if used_plugin == CACHING_SHA2_PASSWORD && !full {
        seq = ps.send(FAST_AUTH_SUCCESS, seq).await.ok()?;
    }
    let mut b = BytesMut::new();
    OkPacket {
        status: status::AUTOCOMMIT,
        ..Default::default()
    }
    .encode(0, caps, &mut b);
    ps.send(&b, seq).await.ok()?;
    let db = resp
        .database
        .filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(&d).into_owned());
    let mut session = Session::new(db, caps & cap::MULTI_STATEMENTS != 0);
    session.set_login_names(shared.login_names(u16::from(resp.charset)));
    Some((
        ps,
        Login {
            caps,
            session,
            scramble,
        },
    ))
}

/// `caching_sha2_password` full authentication after the proxy sent
/// "perform full authentication": reads the
/// client's password (inside TLS in clear; over plain TCP, after the client
/// asked for the proxy's public key, RSA-OAEP encrypted, XOR the scramble).
/// A cleartext password over plain TCP is never accepted (it fails to
/// decrypt). Returns the password (`None`: not decryptable) and the next
/// sequence id; `None` when the client left.
async fn full_auth(
    shared: &Shared,
    ps: &mut PacketStream<Stream>,
    scramble: &[u8],
) -> Option<(Option<Vec<u8>>, u8)> {
    let mut p = ps.read().await.ok()?;
    let mut seq = p.last_seq.wrapping_add(1);
    if ps.stream.is_tls() {
        let pw = p.payload.strip_suffix(&[0]).unwrap_or(&p.payload).to_vec();
        return Some((Some(pw), seq));
    }
    let key = match shared.rsa_key().await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "RSA key generation failed.");
            return Some((None, seq));
        }
    };
    if p.payload[..] == [REQUEST_PUBLIC_KEY] {
        let mut b = Vec::with_capacity(1 + key.pem.len());
        b.push(0x01);
        b.extend_from_slice(&key.pem);
        ps.send(&b, seq).await.ok()?;
        p = ps.read().await.ok()?;
        seq = p.last_seq.wrapping_add(1);
    }
    // A private-key operation: milliseconds of CPU, off the reactor.
    let ciphertext = p.payload.to_vec();
    let plain = tokio::task::spawn_blocking(move || key.decrypt(&ciphertext))
        .await
        .ok()
        .flatten();
    let pw = plain.map(|x| {
        let mut pw = auth::xor_scramble(&x, scramble);
        if pw.last() == Some(&0) {
            pw.pop();
        }
        pw
    });
    Some((pw, seq))
}

async fn send_err(ps: &mut PacketStream<Stream>, e: &ErrPacket, seq: u8) -> Result<u8, IoError> {
    let mut b = BytesMut::new();
    e.encode(&mut b);
    ps.send(&b, seq).await
}

/// How a statement on a backend ended.
enum Ran {
    /// The response reached the client.
    Done,
    /// The backend failed before anything reached the client: safe to retry
    /// elsewhere when the session holds nothing on it.
    FailedBeforeResponse(IoError),
    /// The writer refused it as read-only (1290) and nothing reached the
    /// client: it was demoted, and the statement may run on the new one.
    ReadOnly(ErrPacket),
}

/// Where a statement is headed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Writer,
    Reader,
}

impl Client {
    /// The command loop. What an idle client's task holds is this
    /// future's state while it waits in `read_idle`: every command runs in
    /// a boxed future of its own (one allocation per command), so the
    /// waiting state stays small instead of being as large as the largest
    /// await of a statement (4 KiB measured, most of an idle client's cost).
    async fn run(&mut self) -> Result<(), IoError> {
        loop {
            let p = self.ps.read_idle().await?;
            if !Box::pin(self.command(p)).await? {
                return Ok(());
            }
        }
    }

    /// One client command; `false` when the connection ends.
    async fn command(&mut self, p: Packet) -> Result<bool, IoError> {
        self.seq = p.last_seq.wrapping_add(1);
        let cmd = match Command::decode(&p.payload) {
            Ok(c) => c,
            Err(_) => {
                self.error(err::UNKNOWN_COM, b"08S01", "Unknown command".into())
                    .await?;
                return Ok(true);
            }
        };
        match cmd {
            Command::Quit => return Ok(false),
            Command::Ping if self.pinned.is_none() => self.ok().await?,
            Command::SetOption(opt) if opt <= 1 => {
                self.session.on_set_option(opt == 0);
                let mut b = BytesMut::new();
                EofPacket {
                    warnings: 0,
                    status: status::AUTOCOMMIT,
                }
                .encode(&mut b);
                self.ps.send(&b, self.seq).await?;
            }
            Command::ResetConnection => {
                if let Some(mut lease) = self.pinned.take() {
                    let addr = lease.pool.cfg.addr.clone();
                    match lease.conn.reset(&addr).await {
                        Ok(()) => lease.release(),
                        Err(_) => lease.discard(),
                    }
                }
                self.session.on_reset_connection();
                self.report_pins();
                self.ok().await?;
            }
            Command::ChangeUser => {
                if !self.change_user(&p.payload).await? {
                    return Ok(false);
                }
            }
            Command::Unknown(_) | Command::SetOption(_) => {
                self.shared.metrics.error(MetricError::UnknownCommand);
                let msg = format!(
                    "Unknown command (magestack dbproxy does not support {})",
                    cmd.as_str()
                );
                self.error(err::UNKNOWN_COM, b"08S01", msg).await?;
            }
            Command::StmtExecute(_) | Command::StmtReset(_) | Command::StmtFetch(_)
                if self.pinned.is_none() =>
            {
                self.error(
                    err::UNKNOWN_STMT_HANDLER,
                    b"HY000",
                    "Unknown prepared statement handler given to EXECUTE".into(),
                )
                .await?;
            }
            Command::StmtClose(_) | Command::StmtSendLongData(_) if self.pinned.is_none() => {}
            Command::Query(ref sql) => {
                let st = classify(sql);
                self.statement(&p.payload, &cmd, Some((&st, sql))).await?;
            }
            _ => self.statement(&p.payload, &cmd, None).await?,
        }
        self.report_pins();
        Ok(true)
    }

    /// `COM_CHANGE_USER`: a new login on this connection. The old session
    /// ends first, whatever the outcome (its pinned backend is reset, or
    /// closed when it holds `GET_LOCK` locks, exactly as when a client
    /// leaves); then the answer is checked as at login, against the
    /// greeting's scramble, or after an auth switch with a fresh one for a
    /// plugin the proxy cannot check. On success the session starts afresh
    /// (no variables, the packet's schema). A refused change closes the
    /// connection after error 1045, as servers do. `false`: closed.
    async fn change_user(&mut self, payload: &[u8]) -> Result<bool, IoError> {
        self.leave().await;
        self.session = Session::new(None, self.caps & cap::MULTI_STATEMENTS != 0);
        self.report_pins();
        let cu = match ChangeUser::decode(payload, self.caps) {
            Ok(cu) => cu,
            Err(_) => {
                let e = ErrPacket::new(err::HANDSHAKE, b"08S01", "Bad handshake");
                send_err(&mut self.ps, &e, self.seq).await?;
                return Ok(false);
            }
        };
        let cfg = &self.shared.cfg.backend;
        let password = cfg.password.as_bytes();
        let mut plugin = cu
            .auth_plugin
            .as_deref()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| NATIVE_PASSWORD.to_owned());
        let mut answer = cu.auth_response.clone();
        let mut seq = self.seq;
        if auth::expected_response(&plugin, password, &self.scramble).is_none() {
            self.scramble = scramble();
            let mut b = BytesMut::new();
            encode_auth_switch(NATIVE_PASSWORD, &self.scramble, &mut b);
            self.ps.send(&b, seq).await?;
            let p = self.ps.read().await?;
            seq = p.last_seq.wrapping_add(1);
            answer = p.payload.to_vec();
            NATIVE_PASSWORD.clone_into(&mut plugin);
        }
        let expected =
            auth::expected_response(&plugin, password, &self.scramble).unwrap_or_default();
        let mut pass_ok = auth::constant_time_eq(&expected, &answer);
        let full = plugin == CACHING_SHA2_PASSWORD
            && self.shared.cfg.client_full_auth
            && !answer.is_empty();
        if full {
            // As at login: the password itself.
            self.ps.send(PERFORM_FULL_AUTH, seq).await?;
            let shared = self.shared.clone();
            let Some((got, next)) = full_auth(&shared, &mut self.ps, &self.scramble).await else {
                return Ok(false);
            };
            seq = next;
            pass_ok = got.is_some_and(|pw| auth::constant_time_eq(&pw, password));
        }
        if cu.username != cfg.user.as_bytes() || !pass_ok {
            let msg = format!(
                "Access denied for user '{}'@'{}' (using password: {})",
                String::from_utf8_lossy(&cu.username),
                self.peer.ip(),
                if answer.is_empty() { "NO" } else { "YES" }
            );
            tracing::info!(peer = %self.peer, user = %String::from_utf8_lossy(&cu.username), "COM_CHANGE_USER refused.");
            self.shared.metrics.error(MetricError::AuthFailed);
            send_err(
                &mut self.ps,
                &ErrPacket::new(err::ACCESS_DENIED, b"28000", msg),
                seq,
            )
            .await?;
            return Ok(false);
        }
        if plugin == CACHING_SHA2_PASSWORD && !full {
            seq = self.ps.send(FAST_AUTH_SUCCESS, seq).await?;
        }
        let db =
            (!cu.database.is_empty()).then(|| String::from_utf8_lossy(&cu.database).into_owned());
        self.session = Session::new(db, self.caps & cap::MULTI_STATEMENTS != 0);
        if let Some(cs) = cu.charset {
            self.session.set_login_names(self.shared.login_names(cs));
        }
        let mut b = BytesMut::new();
        OkPacket {
            status: status::AUTOCOMMIT,
            ..Default::default()
        }
        .encode(0, self.caps, &mut b);
        self.ps.send(&b, seq).await?;
        Ok(true)
    }

    async fn ok(&mut self) -> Result<(), IoError> {
        let mut b = BytesMut::new();
        OkPacket {
            status: status::AUTOCOMMIT,
            ..Default::default()
        }
        .encode(0, self.caps, &mut b);
        self.ps.send(&b, self.seq).await.map(|_| ())
    }

    async fn error(&mut self, code: u16, state: &[u8; 5], msg: String) -> Result<(), IoError> {
        send_err(&mut self.ps, &ErrPacket::new(code, state, msg), self.seq)
            .await
            .map(|_| ())
    }

    /// Tells the metrics when the session's pin reasons changed.
    fn report_pins(&mut self) {
        let now = pin_mask(&self.session.pin_reasons());
        if now != self.pins {
            self.shared.metrics.pins_changed(self.pins, now);
            self.pins = now;
        }
    }

    /// Where an unpinned statement goes: a reader only with the split on,
    /// for a read the session may send there, naming no writer-only table.
    fn target(&self, st: Option<(&Statement, &[u8])>) -> (Target, Decision) {
        let cluster = &self.shared.cluster;
        let Some((st, sql)) = st else {
            return (Target::Writer, Decision::Writer);
        };
        if !cluster.has_readers() || !st.is_read_only() {
            return (Target::Writer, Decision::Writer);
        }
        let routing = cluster.routing();
        let route = self
            .session
            .route(st, Instant::now(), routing.read_your_writes);
        if route == Route::Writer || routing.tables.matches_sql(sql) {
            return (Target::Writer, Decision::WriterKept);
        }
        (Target::Reader, Decision::Reader)
    }

    async fn refuse(&mut self, kind: MetricError, code: u16, msg: String) -> Result<(), IoError> {
        self.shared.metrics.error(kind);
        self.error(code, b"HY000", msg).await
    }

    /// Runs a command on a backend (the pinned one, a reader, or the
    /// writer). Outside a pin it is retried once when its backend fails
    /// before answering: a failed reader's read on the writer, a lost or
    /// demoted (1290) writer's statement on the writer detection names.
    /// Pinned (a transaction, locks, temporary tables…), never: the client
    /// gets 1213, not a silent replay and not 2006/2013.
    async fn statement(
        &mut self,
        payload: &Bytes,
        cmd: &Command,
        st: Option<(&Statement, &[u8])>,
    ) -> Result<(), IoError> {
        let started = Instant::now();
        self.last_failed = true;
        let (mut target, decision) = if self.pinned.is_some() {
            (Target::Writer, Decision::Pinned)
        } else {
            self.target(st)
        };
        let mut decision = Some(decision);
        let failover_wait = self.shared.cfg.queue_timeout;
        let mut result = Err(IoError::Closed);
        let mut waited = false;
        for attempt in 0..3 {
            let was_pinned = self.pinned.is_some();
            let mut lease = match self.pinned.take() {
                Some(l) => l,
                None => {
                    let cluster = self.shared.cluster.clone();
                    let pool = match target {
                        Target::Reader => match cluster.reader() {
                            Some(p) => p,
                            None => {
                                decision = Some(Decision::ReaderFallback);
                                target = Target::Writer;
                                cluster.writer()
                            }
                        },
                        Target::Writer => cluster.writer(),
                    };
                    match pool.acquire().await {
                        Ok(l) => l,
                        Err(BackendError::QueueTimeout) => {
                            let msg = format!(
                                "Too many connections (magestack dbproxy: no backend connection free within {} ms; \
                                 max_backend_connections = {})",
                                self.shared.cfg.queue_timeout.as_millis(),
                                pool.max()
                            );
                            self.shared.metrics.error(MetricError::QueueTimeout);
                            return self.error(err::CON_COUNT, b"08004", msg).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Backend unavailable.");
                            cluster.check_soon();
                            if attempt == 0 && target == Target::Reader {
                                // The failed reader's read goes to the writer.
                                decision = Some(Decision::ReaderFallback);
                                target = Target::Writer;
                                continue;
                            }
                            // The writer is gone: once per statement, wait
                            // for detection to name another.
                            if !waited
                                && target == Target::Writer
                                && cluster
                                    .wait_new_writer(pool.index, failover_wait)
                                    .await
                                    .is_some()
                            {
                                waited = true;
                                self.shared.metrics.error(MetricError::Retried);
                                continue;
                            }
                            let msg = format!(
                                "magestack dbproxy: backend unavailable ({})",
                                error_chain(&e)
                            );
                            return self
                                .refuse(MetricError::BackendUnavailable, 2003, msg)
                                .await;
                        }
                    }
                }
            };
            if let Some(d) = decision.take() {
                self.shared.metrics.route(d);
            }
            let on_writer = lease.pool.index == self.shared.cluster.writer_index();
            lease
                .pool
                .stats
                .statements_total
                .fetch_add(1, Ordering::Relaxed);
            match self
                .run_on(
                    &mut lease,
                    payload,
                    cmd,
                    st.map(|s| s.0),
                    !was_pinned && on_writer,
                )
                .await
            {
                Ok(Ran::Done) => {
                    if self.session.is_pinned() {
                        if !on_writer && !was_pinned {
                            // A read on a reader left state behind (only
                            // the tracker's safety net can): a reader never
                            // keeps a session, its next write would fail.
                            tracing::debug!(server = %lease.pool.addr(), reasons = ?self.session.pin_reasons(), "Read left session state on a reader; reset.");
                            let addr = lease.pool.cfg.addr.clone();
                            match lease.conn.reset(&addr).await {
                                Ok(()) => lease.release(),
                                Err(_) => lease.discard(),
                            }
                            self.session.on_backend_lost();
                        } else {
                            self.pinned = Some(lease);
                        }
                    } else {
                        lease.release();
                    }
                    result = Ok(());
                    break;
                }
                Ok(Ran::ReadOnly(e)) => {
                    let pool = lease.pool.clone();
                    lease.release();
                    pool.health
                        .read_only
                        .store(crate::pool::RO_ON, Ordering::Relaxed);
                    if !waited
                        && self
                            .shared
                            .cluster
                            .wait_new_writer(pool.index, failover_wait)
                            .await
                            .is_some()
                    {
                        self.shared.metrics.error(MetricError::ReadOnlyRetried);
                        waited = true;
                        target = Target::Writer;
                        continue;
                    }
                    self.shared.metrics.error(MetricError::ReadOnly);
                    result = send_err(&mut self.ps, &e, self.seq).await.map(|_| ());
                    break;
                }
                Ok(Ran::FailedBeforeResponse(e)) => {
                    let pool = lease.pool.clone();
                    lease.discard();
                    pool.drain_idle();
                    if was_pinned {
                        // Never 2006/2013 here: Magento would reconnect and
                        // re-run the statement outside its transaction.
                        self.session.on_backend_lost();
                        tracing::warn!(error = %e, "Pinned backend lost.");
                        let msg = "Deadlock found when trying to get lock; try restarting transaction \
                                   (magestack dbproxy: the backend connection holding this session's \
                                   transaction, locks or temporary tables was lost)";
                        self.shared.metrics.error(MetricError::PinnedBackendLost);
                        return self.error(err::LOCK_DEADLOCK, b"40001", msg.into()).await;
                    }
                    if attempt >= 1 {
                        let msg = format!("magestack dbproxy: backend failed ({e})");
                        return self
                            .refuse(MetricError::BackendUnavailable, 2003, msg)
                            .await;
                    }
                    self.shared.metrics.error(MetricError::Retried);
                    self.shared.cluster.check_soon();
                    if pool.reader && pool.index != self.shared.cluster.writer_index() {
                        target = Target::Writer;
                        decision = Some(Decision::ReaderFallback);
                    }
                }
                Err(e) => {
                    // Part of the response reached the client: it cannot be resumed.
                    self.shared.metrics.error(MetricError::BrokenMidResponse);
                    lease.discard();
                    return Err(e);
                }
            }
        }
        if result.is_err() {
            // Every attempt was used up without an answer: say so.
            let msg = "magestack dbproxy: no backend could run the statement".to_owned();
            return self
                .refuse(MetricError::BackendUnavailable, 2003, msg)
                .await;
        }
        if let Some((_, sql)) = st {
            self.shared
                .digests
                .record(fingerprint(sql), started.elapsed(), self.last_failed);
        }
        result
    }

    /// Runs one command on `lease`. With `read_only_retry`, a 1290 that is
    /// the whole response is held back ([`Ran::ReadOnly`]).
    async fn run_on(
        &mut self,
        lease: &mut Lease,
        payload: &Bytes,
        cmd: &Command,
        st: Option<&Statement>,
        read_only_retry: bool,
    ) -> Result<Ran, IoError> {
        let conn = &mut lease.conn;
        match conn.sync(&self.session).await {
            Ok(Reply::Ok) => {}
            Ok(Reply::Err(e)) => {
                send_err(&mut self.ps, &e, self.seq).await?;
                return Ok(Ran::Done);
            }
            Err(e) => return Ok(Ran::FailedBeforeResponse(e)),
        }
        if let Err(e) = conn.ps.send(payload, 0).await {
            return Ok(Ran::FailedBeforeResponse(e));
        }
        let Some(expect) = cmd.expect() else {
            if let Command::StmtClose(_) = cmd {
                self.session.on_stmt_close();
            }
            return Ok(Ran::Done);
        };
        let mut reader = ResponseReader::new(expect, conn.caps);
        let mut seq = self.seq;
        let mut forwarded = false;
        let mut first_value: Option<Option<Vec<u8>>> = None;
        let mut last_ok: Option<OkPacket> = None;
        let mut state_changes: Vec<StateChange> = Vec::new();
        let mut failed = false;
        let mut prepared = false;
        loop {
            let p = match conn.ps.read().await {
                Ok(p) => p,
                Err(e) if !forwarded => return Ok(Ran::FailedBeforeResponse(e)),
                Err(e) => return Err(e),
            };
            let part = reader.feed(&p.payload)?;
            if let Part::Err(e) = &part {
                if !forwarded && read_only_retry && e.code == READ_ONLY {
                    return Ok(Ran::ReadOnly(e.clone()));
                }
            }
            match &part {
                Part::Ok(ok) => {
                    let mut b = BytesMut::new();
                    ok.encode(p.payload[0], self.caps, &mut b);
                    seq = self.ps.queue(&b, seq);
                    state_changes.extend(ok.state_changes.iter().cloned());
                    last_ok = Some(ok.clone());
                }
                Part::LocalInfile => {
                    // Not negotiated; a server asking anyway gets an empty file.
                    let _ = conn.ps.send(&[], p.last_seq.wrapping_add(1)).await;
                    seq = self.ps.queue(&p.payload, seq);
                }
                other => {
                    if let Part::Err(_) = other {
                        failed = true;
                    }
                    if let Part::PrepareOk { .. } = other {
                        prepared = true;
                    }
                    if let (Part::Row { first_row: true }, None) = (other, &first_value) {
                        first_value = Some(
                            first_text_column(&p.payload)
                                .ok()
                                .flatten()
                                .map(<[u8]>::to_vec),
                        );
                    }
                    seq = self.ps.queue(&p.payload, seq);
                }
            }
            forwarded = true;
            if self.ps.queued() >= FLUSH_AT {
                self.ps.flush().await?;
            }
            if reader.is_done() {
                break;
            }
        }
        self.ps.flush().await?;
        self.last_failed = failed;
        let now = Instant::now();
        match (cmd, st) {
            (Command::Query(_), Some(st)) => {
                let out = Outcome {
                    ok: !failed,
                    final_status: reader.final_status(),
                    first_value: first_value.as_ref().map(|v| v.as_deref()),
                    last_insert_id: last_ok.as_ref().map_or(0, |o| o.last_insert_id),
                    state_changes: &state_changes,
                };
                self.session.after_query(st, &out, now);
            }
            (Command::InitDb(db), _) if !failed => self.session.on_init_db(db),
            (Command::StmtPrepare(_), _) if prepared => self.session.on_prepare(),
            _ => {
                if let Some(s) = reader.final_status() {
                    self.session.on_status(s);
                }
            }
        }
        conn.adopt(&self.session);
        Ok(Ran::Done)
    }

    /// The client is gone: its backend goes back only in a state no other
    /// client can notice.
    async fn leave(&mut self) {
        let Some(mut lease) = self.pinned.take() else {
            return;
        };
        let pool = lease.pool.clone();
        match self.session.release() {
            Release::Pool => lease.release(),
            Release::Reset => {
                let addr = pool.cfg.addr.clone();
                match lease.conn.reset(&addr).await {
                    Ok(()) => {
                        pool.stats.resets_total.fetch_add(1, Ordering::Relaxed);
                        lease.release();
                    }
                    Err(_) => lease.discard(),
                }
            }
            Release::Close => {
                pool.stats
                    .closed_with_locks_total
                    .fetch_add(1, Ordering::Relaxed);
                lease.discard();
            }
        }
    }
}

/// `e` and its sources, `: `-separated (messages do not repeat their source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
