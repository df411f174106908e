//! `[dbproxy]`: the checked settings of `magestack dbproxy`, its
//! command-line overrides, and its loader.
//!
//! A dbproxy file usually holds only `[dbproxy]` (and `[log]`); it is read
//! with the same loader as the edge's, so unknown keys anywhere and wrong
//! types are reported with key and line, but only these two sections are
//! compiled: the edge's own requirements (a docroot for FastCGI) do not
//! apply to a database proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::compile::{p, parse_socket_addr, Errors};
use crate::error::{ErrorKind, KeyPath};
use crate::file;

/// Checked `[dbproxy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbproxySettings {
    /// Client listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Login user; empty = from the environment.
    pub user: String,
    /// The writer, `host:port`; empty only when not required.
    pub writer: String,
    /// Readers, `host:port`, none equal to the writer.
    pub readers: Vec<String>,
    /// Writer detection by `read_only` is on.
    pub writer_detection: bool,
    /// Cap per server, positive.
    pub max_backend_connections: usize,
    /// Cap on client connections, positive.
    pub max_client_connections: usize,
    /// Positive.
    pub connect_timeout: Duration,
    /// Positive.
    pub queue_timeout: Duration,
    /// Read-your-writes window (may be zero).
    pub read_your_writes: Duration,
    /// Largest replica lag a reader may have.
    pub max_replica_lag: Duration,
    /// Positive.
    pub check_interval: Duration,
    /// Lower-cased patterns, prefix already applied; `*` only at the end.
    pub writer_only_tables: Vec<String>,
    /// Capacity of the digest table, positive.
    pub digests_max: usize,
    /// TLS to the servers, when required.
    pub backend_tls: Option<BackendTlsSettings>,
    /// TLS from clients, when offered.
    pub client_tls: Option<ClientTlsSettings>,
    /// `caching_sha2_password` clients give their password (full
    /// authentication) instead of a scramble answer.
    pub client_full_auth: bool,
}

/// Checked `dbproxy.backend_tls*`: TLS to every server, verified. The
/// files are not opened here; the proxy reads them at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTlsSettings {
    /// PEM CA bundle.
    pub ca_file: PathBuf,
    /// Name to verify instead of each server's host.
    pub server_name: Option<String>,
}

/// Checked `dbproxy.tls_*`: the certificate shown to clients that start TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Clients without TLS are refused.
    pub required: bool,
}

/// `magestack dbproxy`'s flags: each replaces one `dbproxy.*` key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbproxyOverrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--writer`.
    pub writer: Option<String>,
    /// `--reader` (repeatable): replaces `dbproxy.readers` when given.
    pub readers: Vec<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--max-backend-connections`.
    pub max_backend_connections: Option<u32>,
    /// `--queue-timeout-ms`.
    pub queue_timeout_ms: Option<u64>,
    /// `--admin-listen`.
    pub admin_listen: Option<SocketAddr>,
}

impl DbproxyOverrides {
    pub(crate) fn apply(&self, c: &mut file::Config) -> Vec<KeyPath> {
        let d = &mut c.dbproxy;
        let mut replaced = Vec::new();
        if let Some(a) = self.listen {
            d.listen = a.to_string();
            replaced.push(p("dbproxy.listen"));
        }
        if let Some(w) = &self.writer {
            d.writer.clone_from(w);
            replaced.push(p("dbproxy.writer"));
        }
        if !self.readers.is_empty() {
            d.readers.clone_from(&self.readers);
            replaced.push(p("dbproxy.readers"));
        }
        if let Some(u) = &self.user {
            d.user.clone_from(u);
            replaced.push(p("dbproxy.user"));
        }
        if let Some(n) = self.max_backend_connections {
            d.max_backend_connections = n;
            replaced.push(p("dbproxy.max_backend_connections"));
        }
        if let Some(n) = self.queue_timeout_ms {
            d.queue_timeout_ms = n;
            replaced.push(p("dbproxy.queue_timeout_ms"));
        }
        if let Some(a) = self.admin_listen {
            d.admin_listen = Some(a.to_string());
            replaced.push(p("dbproxy.admin_listen"));
        }
        replaced
    }
}

/// True when a parsed file is a dbproxy file: it has `[dbproxy]` and no
/// table of the edge's besides `[log]`. `magestack check` checks such a
/// file as [`load_dbproxy`] would.
pub fn is_dbproxy_file(src: &str) -> bool {
    let Ok(doc) = src.parse::<toml_edit::DocumentMut>() else {
        return false;
    };
    let keys: Vec<&str> = doc.as_table().iter().map(|(k, _)| k).collect();
    keys.contains(&"dbproxy") && keys.iter().all(|k| matches!(*k, "dbproxy" | "log"))
}

/// `host:port` with a non-empty host and a port.
fn check_server(path: KeyPath, s: &str, errs: &mut Errors) {
    let ok = s.rsplit_once(':').is_some_and(|(h, port)| {
        !h.is_empty()
            && !h.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !ok {
        errs.push(
            path,
            ErrorKind::Invalid(format!(
                "{s:?} is not host:port (e.g. 127.0.0.1:3306 or db.example.com:3306)"
            )),
        );
    }
}

pub(crate) fn compile_dbproxy(
    d: file::DbproxyConfig,
    require_writer: bool,
    errs: &mut Errors,
) -> Option<DbproxySettings> {
    let before = errs.0.len();
    let listen = parse_socket_addr(p("dbproxy.listen"), &d.listen, errs);
    let admin_listen = d
        .admin_listen
        .as_deref()
        .and_then(|a| parse_socket_addr(p("dbproxy.admin_listen"), a, errs));
    if let (Some(l), Some(a)) = (listen, admin_listen) {
        if l.port() == a.port()
            && (l.ip() == a.ip() || l.ip().is_unspecified() || a.ip().is_unspecified())
        {
            errs.push(
                p("dbproxy.admin_listen"),
                ErrorKind::Conflict {
                    other: format!("dbproxy.listen = {l}"),
                },
            );
        }
    }
    let writer = d.writer.trim().to_owned();
    if writer.is_empty() {
        if require_writer {
            errs.push(
                p("dbproxy.writer"),
                ErrorKind::Required {
                    because: "to run the proxy (or --writer)",
                },
            );
        }
    } else {
        check_server(p("dbproxy.writer"), &writer, errs);
    }
    for (i, r) in d.readers.iter().enumerate() {
        let path = p("dbproxy.readers").index(i);
        check_server(path.clone(), r, errs);
        if *r == writer {
            errs.push(
                path,
                ErrorKind::Conflict {
                    other: format!("dbproxy.writer = {writer:?}"),
                },
            );
        } else if d.readers[..i].contains(r) {
            errs.push(path, ErrorKind::Invalid(format!("{r:?} is listed twice")));
        }
    }
    let max_backend_connections = errs.positive_size(
        p("dbproxy.max_backend_connections"),
        u64::from(d.max_backend_connections),
    );
    let max_client_connections = errs.positive_size(
        p("dbproxy.max_client_connections"),
        d.max_client_connections,
    );
    let ms = |errs: &mut Errors, key: &str, v: u64| {
        if v == 0 {
            errs.push(p(key), ErrorKind::Zero);
        }
        Duration::from_millis(v)
    };
    let connect_timeout = ms(errs, "dbproxy.connect_timeout_ms", d.connect_timeout_ms);
    let queue_timeout = ms(errs, "dbproxy.queue_timeout_ms", d.queue_timeout_ms);
    let check_interval = ms(errs, "dbproxy.check_interval_ms", d.check_interval_ms);
    let prefix = d.table_prefix.to_ascii_lowercase();
    if !prefix.bytes().all(is_table_byte) {
        errs.push(
            p("dbproxy.table_prefix"),
            ErrorKind::Invalid(format!(
                "{:?}: letters, digits, `_` and `$` only",
                d.table_prefix
            )),
        );
    }
    let mut writer_only_tables = Vec::with_capacity(d.writer_only_tables.len());
    for (i, t) in d.writer_only_tables.iter().enumerate() {
        let name = t.strip_suffix('*').unwrap_or(t);
        if name.is_empty() || !name.bytes().all(is_table_byte) {
            errs.push(
                p("dbproxy.writer_only_tables").index(i),
                ErrorKind::Invalid(format!(
                    "{t:?}: a table name (letters, digits, `_`, `$`), optionally ending in `*`"
                )),
            );
        }
        writer_only_tables.push(format!("{prefix}{}", t.to_ascii_lowercase()));
    }
    let digests_max = errs.positive_size(p("dbproxy.digests_max"), u64::from(d.digests_max));
    let backend_tls = match d.backend_tls.as_str() {
        "disabled" => None,
        "required" => {
            if d.backend_tls_ca_file.trim().is_empty() {
                errs.push(
                    p("dbproxy.backend_tls_ca_file"),
                    ErrorKind::Required {
                        because: "when backend_tls = \"required\" (the servers' certificates are verified)",
                    },
                );
            }
            let name = d.backend_tls_server_name.trim();
            Some(BackendTlsSettings {
                ca_file: PathBuf::from(d.backend_tls_ca_file.trim()),
                server_name: (!name.is_empty()).then(|| name.to_owned()),
            })
        }
        other => {
            errs.push(
                p("dbproxy.backend_tls"),
                ErrorKind::Invalid(format!("{other:?}: \"disabled\" or \"required\"")),
            );
            None
        }
    };
    let (cert, key) = (d.tls_cert_file.trim(), d.tls_key_file.trim());
    let client_tls = match (cert.is_empty(), key.is_empty()) {
        (true, true) => None,
        (false, false) => Some(ClientTlsSettings {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
            required: d.require_client_tls,
        }),
        (true, false) => {
            errs.push(
                p("dbproxy.tls_cert_file"),
                ErrorKind::Required {
                    because: "when tls_key_file is set",
                },
            );
            None
        }
        (false, true) => {
            errs.push(
                p("dbproxy.tls_key_file"),
                ErrorKind::Required {
                    because: "when tls_cert_file is set",
                },
            );
            None
        }
    };
    if d.require_client_tls && cert.is_empty() && key.is_empty() {
        errs.push(
            p("dbproxy.tls_cert_file"),
            ErrorKind::Required {
                because: "when require_client_tls = true",
            },
        );
    }
    if errs.0.len() > before {
        return None;
    }
    Some(DbproxySettings {
        listen: listen?,
        admin_listen,
        user: d.user,
        writer,
        readers: d.readers,
        writer_detection: d.writer_detection,
        max_backend_connections,
        max_client_connections,
        connect_timeout,
        queue_timeout,
        read_your_writes: Duration::from_millis(d.read_your_writes_ms),
        max_replica_lag: Duration::from_secs(d.max_replica_lag_secs),
        check_interval,
        writer_only_tables,
        digests_max,
        backend_tls,
        client_tls,
        client_full_auth: d.client_full_auth,
    })
}

fn is_table_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}
