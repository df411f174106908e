//! One client connection: the proxy's handshake and its own check of the
//! password, then the command loop that borrows backends per statement
//! (multiplexing) and keeps one while the session is pinned.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use magestack_mysql_proto::auth::{self, CACHING_SHA2_PASSWORD, NATIVE_PASSWORD, SCRAMBLE_LEN};
use magestack_mysql_proto::consts::{cap, err, status};
use magestack_mysql_proto::handshake::{
    encode_auth_switch, ClientHello, InitialHandshake, FAST_AUTH_SUCCESS,
};
use magestack_mysql_proto::response::first_text_column;
use magestack_mysql_proto::{
    classify, Command, EofPacket, ErrPacket, OkPacket, Outcome, Part, Release, ResponseReader,
    Session, StateChange, Statement,
};
use tokio::net::TcpStream;

use crate::backend::Reply;
use crate::error::{BackendError, IoError};
use crate::io::PacketStream;
use crate::pool::Lease;
use crate::Shared;

/// Capabilities offered to clients. No `CLIENT_SESSION_TRACK` (the tracking
/// the proxy turns on belongs to the proxy), no `CLIENT_DEPRECATE_EOF`
/// (backends run without it, so result sets pass unchanged), no
/// `CLIENT_SSL` yet, no compression, no `LOCAL INFILE`.
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
    ps: PacketStream<TcpStream>,
    caps: u32,
    session: Session,
    pinned: Option<Lease>,
}

/// Serves one client until it quits or its connection fails.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let limits = shared.cfg.backend.limits;
    let mut ps = PacketStream::new(stream, limits);
    let Some((caps, session)) = login(&shared, &mut ps, peer).await else {
        return;
    };
    let mut c = Client {
        shared,
        ps,
        caps,
        session,
        pinned: None,
    };
    let _ = c.run().await;
    c.leave().await;
}

fn scramble() -> Vec<u8> {
    let mut s = [0u8; SCRAMBLE_LEN];
    // A failing OS random source leaves zeros mapped to a fixed scramble;
    // getrandom only fails on platforms without one.
    let _ = getrandom::getrandom(&mut s);
    // Printable, never NUL (the handshake NUL-terminates it), as servers do.
    s.iter().map(|b| 33 + b % 94).collect()
}

async fn login(
    shared: &Shared,
    ps: &mut PacketStream<TcpStream>,
    peer: SocketAddr,
) -> Option<(u32, Session)> {
    let scramble = scramble();
    let hs = InitialHandshake {
        server_version: shared.server_version(),
        connection_id: shared.next_id.fetch_add(1, Ordering::Relaxed),
        scramble: scramble.clone(),
        capabilities: CLIENT_CAPS,
        charset: magestack_mysql_proto::consts::UTF8MB4_GENERAL_CI,
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.as_bytes().to_vec(),
    };
    let mut b = BytesMut::new();
    hs.encode(&mut b);
    ps.send(&b, 0).await.ok()?;
    let p = ps.read().await.ok()?;
    let mut seq = p.last_seq.wrapping_add(1);
    let resp = match ClientHello::decode(&p.payload) {
        Ok(ClientHello::Response(r)) => r,
        Ok(ClientHello::SslRequest { .. }) | Err(_) => {
            let e = ErrPacket::new(
                err::HANDSHAKE,
                b"08S01",
                "Bad handshake (magestack dbproxy: TLS from clients is not offered)",
            );
            let _ = send_err(ps, &e, seq).await;
            return None;
        }
    };
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
    if !user_ok || !auth::constant_time_eq(&expected, &answer) {
        let msg = format!(
            "Access denied for user '{}'@'{}' (using password: {})",
            String::from_utf8_lossy(&resp.username),
            peer.ip(),
            if answer.is_empty() { "NO" } else { "YES" }
        );
        tracing::info!(%peer, user = %String::from_utf8_lossy(&resp.username), "Client authentication failed.");
        let _ = send_err(ps, &ErrPacket::new(err::ACCESS_DENIED, b"28000", msg), seq).await;
        return None;
    }
    if used_plugin == CACHING_SHA2_PASSWORD {
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
    Some((caps, Session::new(db, caps & cap::MULTI_STATEMENTS != 0)))
}

async fn send_err(ps: &mut PacketStream<TcpStream>, e: &ErrPacket, seq: u8) -> Result<u8, IoError> {
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
}

impl Client {
    async fn run(&mut self) -> Result<(), IoError> {
        loop {
            let p = self.ps.read().await?;
            let cmd = match Command::decode(&p.payload) {
                Ok(c) => c,
                Err(_) => {
                    self.error(err::UNKNOWN_COM, b"08S01", "Unknown command".into())
                        .await?;
                    continue;
                }
            };
            match cmd {
                Command::Quit => return Ok(()),
                Command::Ping if self.pinned.is_none() => self.ok().await?,
                Command::SetOption(opt) if opt <= 1 => {
                    self.session.on_set_option(opt == 0);
                    let mut b = BytesMut::new();
                    EofPacket {
                        warnings: 0,
                        status: status::AUTOCOMMIT,
                    }
                    .encode(&mut b);
                    self.ps.send(&b, 1).await?;
                }
                Command::ResetConnection => {
                    if let Some(mut lease) = self.pinned.take() {
                        let addr = self.shared.writer.cfg.addr.clone();
                        match lease.conn.reset(&addr).await {
                            Ok(()) => self.shared.writer.release(lease),
                            Err(_) => self.shared.writer.discard(lease),
                        }
                    }
                    self.session.on_reset_connection();
                    self.ok().await?;
                }
                Command::ChangeUser | Command::Unknown(_) | Command::SetOption(_) => {
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
                    self.statement(&p.payload, &cmd, Some(&st)).await?;
                }
                _ => self.statement(&p.payload, &cmd, None).await?,
            }
        }
    }

    async fn ok(&mut self) -> Result<(), IoError> {
        let mut b = BytesMut::new();
        OkPacket {
            status: status::AUTOCOMMIT,
            ..Default::default()
        }
        .encode(0, self.caps, &mut b);
        self.ps.send(&b, 1).await.map(|_| ())
    }

    async fn error(&mut self, code: u16, state: &[u8; 5], msg: String) -> Result<(), IoError> {
        send_err(&mut self.ps, &ErrPacket::new(code, state, msg), 1)
            .await
            .map(|_| ())
    }

    async fn lease(&mut self) -> Result<Lease, BackendError> {
        match self.pinned.take() {
            Some(l) => Ok(l),
            None => self.shared.writer.acquire().await,
        }
    }

    /// Runs a command on a backend (the pinned one, or a borrowed one),
    /// retrying once on a fresh connection when the backend fails before
    /// answering and the session held nothing there.
    async fn statement(
        &mut self,
        payload: &Bytes,
        cmd: &Command,
        st: Option<&Statement>,
    ) -> Result<(), IoError> {
        for attempt in 0..2 {
            let was_pinned = self.pinned.is_some();
            let mut lease = match self.lease().await {
                Ok(l) => l,
                Err(BackendError::QueueTimeout) => {
                    let msg = format!(
                        "Too many connections (magestack dbproxy: no backend connection free within {} ms; \
                         max_backend_connections = {})",
                        self.shared.cfg.queue_timeout.as_millis(),
                        self.shared.writer.max()
                    );
                    return self.error(err::CON_COUNT, b"08004", msg).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Backend unavailable.");
                    let msg = format!(
                        "magestack dbproxy: backend unavailable ({})",
                        error_chain(&e)
                    );
                    return self.error(2003, b"HY000", msg).await;
                }
            };
            match self.run_on(&mut lease, payload, cmd, st).await {
                Ok(Ran::Done) => {
                    if self.session.is_pinned() {
                        self.pinned = Some(lease);
                    } else {
                        self.shared.writer.release(lease);
                    }
                    return Ok(());
                }
                Ok(Ran::FailedBeforeResponse(e)) => {
                    self.shared.writer.discard(lease);
                    if was_pinned {
                        // Never 2006/2013 here: Magento would reconnect and
                        // re-run the statement outside its transaction.
                        self.session.on_backend_lost();
                        tracing::warn!(error = %e, "Pinned backend lost.");
                        let msg = "Deadlock found when trying to get lock; try restarting transaction \
                                   (magestack dbproxy: the backend connection holding this session's \
                                   transaction, locks or temporary tables was lost)";
                        return self.error(err::LOCK_DEADLOCK, b"40001", msg.into()).await;
                    }
                    if attempt == 1 {
                        return self
                            .error(
                                2003,
                                b"HY000",
                                format!("magestack dbproxy: backend failed ({e})"),
                            )
                            .await;
                    }
                }
                Err(e) => {
                    // Part of the response reached the client: it cannot be resumed.
                    self.shared.writer.discard(lease);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn run_on(
        &mut self,
        lease: &mut Lease,
        payload: &Bytes,
        cmd: &Command,
        st: Option<&Statement>,
    ) -> Result<Ran, IoError> {
        let conn = &mut lease.conn;
        match conn.sync(&self.session).await {
            Ok(Reply::Ok) => {}
            Ok(Reply::Err(e)) => {
                send_err(&mut self.ps, &e, 1).await?;
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
        let mut seq = 1u8;
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
        let pool = &self.shared.writer;
        match self.session.release() {
            Release::Pool => pool.release(lease),
            Release::Reset => {
                let addr = pool.cfg.addr.clone();
                match lease.conn.reset(&addr).await {
                    Ok(()) => {
                        pool.stats.resets_total.fetch_add(1, Ordering::Relaxed);
                        pool.release(lease);
                    }
                    Err(_) => pool.discard(lease),
                }
            }
            Release::Close => {
                pool.stats
                    .closed_with_locks_total
                    .fetch_add(1, Ordering::Relaxed);
                pool.discard(lease);
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
