//! One backend connection: login, the proxy's session-tracking setup, and
//! bringing its session to what a client expects (replay only on a
//! difference).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use magestack_mysql_proto::consts::{cap, com};
use magestack_mysql_proto::handshake::{
    encode_ssl_request, AuthStep, BackendAuth, BackendAuthError, InitialHandshake,
};
use magestack_mysql_proto::response::{column_name, text_row};
use magestack_mysql_proto::session::{replay_sql, Vars};
use magestack_mysql_proto::{ErrPacket, Expect, Limits, Part, ResponseReader, Session};
use tokio::net::TcpStream;

use crate::error::{BackendError, IoError};
use crate::io::{PacketStream, Stream};
use crate::tls::BackendTls;

/// Capabilities the proxy asks of its backends: session tracking (the
/// safety net for pinning) whatever the clients negotiated, multi-results
/// and multi-statements (switched per client with `COM_SET_OPTION`), and no
/// `CLIENT_DEPRECATE_EOF` so result sets pass to every client unchanged.
pub(crate) const BACKEND_CAPS: u32 = cap::LONG_PASSWORD
    | cap::LONG_FLAG
    | cap::PROTOCOL_41
    | cap::TRANSACTIONS
    | cap::SECURE_CONNECTION
    | cap::MULTI_STATEMENTS
    | cap::MULTI_RESULTS
    | cap::PS_MULTI_RESULTS
    | cap::PLUGIN_AUTH
    | cap::PLUGIN_AUTH_LENENC_DATA
    | cap::SESSION_TRACK;

/// Trackers the proxy turns on: every session variable, the schema, and the
/// generic "state changed" flag (user variables, temporary tables, …).
const TRACKING_SETUP: &str = "SET SESSION session_track_system_variables = '*', \
     session_track_schema = ON, session_track_state_change = ON";

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// `host:port`.
    pub addr: String,
    /// User name (the clients' too).
    pub user: String,
    /// Password.
    pub password: String,
    /// Connect + login timeout.
    pub connect_timeout: Duration,
    /// Packet ceiling.
    pub limits: Limits,
    /// TLS to the server (`None`: plain TCP).
    pub tls: Option<Arc<BackendTls>>,
}

/// A logged-in backend connection.
#[derive(Debug)]
pub(crate) struct BackendConn {
    pub(crate) ps: PacketStream<Stream>,
    pub(crate) caps: u32,
    /// The server's version string (shown to clients in the proxy's handshake).
    pub(crate) version: Vec<u8>,
    vars: Vars,
    schema: Option<String>,
    /// Multi-statements switched on; `None` after a reset (unknown).
    multi: Option<bool>,
}

/// A small result set of the proxy's own queries.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The first row's value in the column named `name` (any of them).
    pub(crate) fn first(&self, names: &[&str]) -> Option<Option<&str>> {
        let i = self
            .columns
            .iter()
            .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))?;
        self.rows
            .first()
            .map(|r| r.get(i).and_then(|v| v.as_deref()))
    }
}

/// What a setup command answered.
pub(crate) enum Reply {
    Ok,
    Err(ErrPacket),
}

impl BackendConn {
    pub(crate) async fn connect(cfg: &BackendConfig) -> Result<Self, BackendError> {
        let io = |source| BackendError::Io {
            addr: cfg.addr.clone(),
            source,
        };
        let fut = async {
            let stream = TcpStream::connect(&cfg.addr)
                .await
                .map_err(|e| io(e.into()))?;
            let _ = stream.set_nodelay(true);
            let mut ps = PacketStream::new(Stream::Plain(stream), cfg.limits);
            let first = ps.read().await.map_err(io)?;
            if first.payload.first() == Some(&0xff) {
                let e = ErrPacket::decode(&first.payload, cap::PROTOCOL_41)
                    .map_err(|e| io(e.into()))?;
                return Err(BackendError::Setup {
                    addr: cfg.addr.clone(),
                    message: format!("{} {}", e.code, String::from_utf8_lossy(&e.message)),
                });
            }
            let hs = InitialHandshake::decode(&first.payload).map_err(|e| io(e.into()))?;
            let tls_err = |source: Box<dyn std::error::Error + Send + Sync>| BackendError::Tls {
                addr: cfg.addr.clone(),
                source,
            };
            let (mut auth, resp) = BackendAuth::start(
                &hs,
                BACKEND_CAPS,
                cfg.user.as_bytes(),
                cfg.password.as_bytes(),
                None,
                cfg.tls.is_some(),
            )
            .map_err(|source| match source {
                BackendAuthError::NoTls => tls_err(source.into()),
                source => BackendError::Auth {
                    addr: cfg.addr.clone(),
                    source,
                },
            })?;
            let mut seq = first.last_seq.wrapping_add(1);
            if let Some(tls) = &cfg.tls {
                // SSL Request, then TLS, then the response inside it.
                let mut b = BytesMut::new();
                encode_ssl_request(resp.capabilities, resp.max_packet, resp.charset, &mut b);
                seq = ps.send(&b, seq).await.map_err(io)?;
                let name = tls.name_for(&cfg.addr).map_err(|e| tls_err(e.into()))?;
                let Some(Stream::Plain(tcp)) = ps.into_stream() else {
                    return Err(tls_err("the server spoke before the TLS handshake".into()));
                };
                let s = tls
                    .connector()
                    .connect(name, tcp)
                    .await
                    .map_err(|e| tls_err(e.into()))?;
                ps = PacketStream::new(Stream::ToServer(Box::new(s)), cfg.limits);
            }
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            ps.send(&b, seq).await.map_err(io)?;
            loop {
                let p = ps.read().await.map_err(io)?;
                match auth.on_packet(&p.payload) {
                    Ok(AuthStep::Send(data)) => {
                        ps.send(&data, p.last_seq.wrapping_add(1))
                            .await
                            .map_err(io)?;
                    }
                    Ok(AuthStep::SendEncrypted {
                        public_key_pem,
                        plaintext,
                    }) => {
                        // Plain TCP to a MySQL 8 server whose cache is cold:
                        // the password goes RSA-encrypted under its key.
                        let ct = crate::rsa_auth::encrypt(&public_key_pem, &plaintext).map_err(
                            |message| BackendError::Setup {
                                addr: cfg.addr.clone(),
                                message,
                            },
                        )?;
                        ps.send(&ct, p.last_seq.wrapping_add(1)).await.map_err(io)?;
                    }
                    Ok(AuthStep::Wait) => {}
                    Ok(AuthStep::Done(_)) => break,
                    Err(source) => {
                        return Err(BackendError::Auth {
                            addr: cfg.addr.clone(),
                            source,
                        })
                    }
                }
            }
            let mut conn = Self {
                ps,
                caps: auth.capabilities(),
                version: hs.server_version,
                vars: Vec::new(),
                schema: None,
                multi: Some(true),
            };
            conn.setup(&cfg.addr).await?;
            Ok(conn)
        };
        tokio::time::timeout(cfg.connect_timeout, fut)
            .await
            .map_err(|_| BackendError::ConnectTimeout {
                addr: cfg.addr.clone(),
            })?
    }

    /// Turns session tracking on (again after a reset).
    async fn setup(&mut self, addr: &str) -> Result<(), BackendError> {
        match self
            .command(com::QUERY, TRACKING_SETUP.as_bytes(), Expect::ResultSets)
            .await
        {
            Ok(Reply::Ok) => Ok(()),
            Ok(Reply::Err(e)) => Err(BackendError::Setup {
                addr: addr.to_owned(),
                message: String::from_utf8_lossy(&e.message).into_owned(),
            }),
            Err(source) => Err(BackendError::Io {
                addr: addr.to_owned(),
                source,
            }),
        }
    }

    /// Runs one command whose response the proxy consumes itself.
    pub(crate) async fn command(
        &mut self,
        code: u8,
        arg: &[u8],
        expect: Expect,
    ) -> Result<Reply, IoError> {
        let mut b = BytesMut::with_capacity(arg.len() + 1);
        b.put_u8(code);
        b.put_slice(arg);
        self.ps.send(&b, 0).await?;
        let mut r = ResponseReader::new(expect, self.caps);
        let mut err = None;
        loop {
            let p = self.ps.read().await?;
            if let Part::Err(e) = r.feed(&p.payload)? {
                err = Some(e);
            }
            if r.is_done() {
                break;
            }
        }
        Ok(err.map_or(Reply::Ok, Reply::Err))
    }

    /// Runs a query of the proxy's own (monitoring) and returns its column
    /// names and text rows, or the server's error.
    pub(crate) async fn query_rows(
        &mut self,
        sql: &str,
    ) -> Result<Result<Rows, ErrPacket>, IoError> {
        let mut b = BytesMut::with_capacity(sql.len() + 1);
        b.put_u8(com::QUERY);
        b.put_slice(sql.as_bytes());
        self.ps.send(&b, 0).await?;
        let mut r = ResponseReader::new(Expect::ResultSets, self.caps);
        let mut rows = Rows::default();
        let mut err = None;
        loop {
            let p = self.ps.read().await?;
            match r.feed(&p.payload)? {
                Part::Err(e) => err = Some(e),
                Part::ColumnDef => rows
                    .columns
                    .push(String::from_utf8_lossy(column_name(&p.payload)?).into_owned()),
                Part::Row { .. } => rows.rows.push(
                    text_row(&p.payload)?
                        .into_iter()
                        .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                        .collect(),
                ),
                _ => {}
            }
            if r.is_done() {
                break;
            }
        }
        Ok(err.map_or(Ok(rows), Err))
    }

    /// Brings this connection's session to what `session` expects:
    /// multi-statements option, schema, replayable variables. Sends nothing
    /// when they already match.
    pub(crate) async fn sync(&mut self, session: &Session) -> Result<Reply, IoError> {
        if self.multi != Some(session.multi_statements()) {
            let opt: u16 = if session.multi_statements() { 0 } else { 1 };
            if let Reply::Err(e) = self
                .command(com::SET_OPTION, &opt.to_le_bytes(), Expect::Single)
                .await?
            {
                return Ok(Reply::Err(e));
            }
            self.multi = Some(session.multi_statements());
        }
        if let Some(db) = session.schema() {
            if self.schema.as_deref() != Some(db) {
                if let Reply::Err(e) = self
                    .command(com::INIT_DB, db.as_bytes(), Expect::Single)
                    .await?
                {
                    return Ok(Reply::Err(e));
                }
                self.schema = Some(db.to_owned());
            }
        }
        if let Some(sql) = replay_sql(&self.vars, session.vars()) {
            if let Reply::Err(e) = self
                .command(com::QUERY, sql.as_bytes(), Expect::ResultSets)
                .await?
            {
                return Ok(Reply::Err(e));
            }
            self.vars = session.vars().clone();
        }
        Ok(Reply::Ok)
    }

    /// After a statement ran here: the connection's session is now the
    /// client's (its SETs and USEs took effect on this connection).
    pub(crate) fn adopt(&mut self, session: &Session) {
        self.vars = session.vars().clone();
        self.schema = session.schema().map(str::to_owned);
        self.multi = Some(session.multi_statements());
    }

    /// `COM_RESET_CONNECTION`, then tracking again. The schema stays (MySQL
    /// and MariaDB keep it); variables return to the server's defaults.
    pub(crate) async fn reset(&mut self, addr: &str) -> Result<(), BackendError> {
        let io = |source| BackendError::Io {
            addr: addr.to_owned(),
            source,
        };
        match self
            .command(com::RESET_CONNECTION, &[], Expect::Single)
            .await
            .map_err(io)?
        {
            Reply::Ok => {}
            Reply::Err(e) => {
                return Err(BackendError::Setup {
                    addr: addr.to_owned(),
                    message: String::from_utf8_lossy(&e.message).into_owned(),
                })
            }
        }
        self.vars.clear();
        self.multi = None;
        self.setup(addr).await
    }
}
