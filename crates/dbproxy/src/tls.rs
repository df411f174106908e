//! TLS on both sides of the proxy, with rustls (the edge's stack): to the
//! servers (`backend_tls = "required"`, Aurora with
//! `require_secure_transport`), verified against a configured CA bundle and
//! never falling back to plain TCP; and from clients that ask for it
//! (`CLIENT_SSL`), with the certificate and key from the configuration.
//!
//! MySQL starts TLS inside its own handshake (the SSL Request after the
//! server's greeting), so these are plain rustls connectors and acceptors
//! that `client` and `backend` apply to the TCP stream mid-handshake.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why TLS could not be set up; names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("tls {what} {path}: {message}")]
    File {
        /// `ca bundle`, `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match).
    #[error("tls config")]
    Config(#[from] rustls::Error),
    /// A server name that is neither a DNS name nor an IP address.
    #[error("tls server name {0:?} is not a DNS name or IP address")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        what,
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

/// TLS to the servers: every connection verifies the server's certificate
/// against the CA bundle and a name (the configured one, else the host of
/// the server's address).
#[derive(Clone)]
pub struct BackendTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl BackendTls {
    /// Trusts the CAs in `ca_file` (PEM; RDS's `global-bundle.pem` holds
    /// one per region) and nothing else: no system roots, so a certificate
    /// from any other CA is refused even if the public web would trust it.
    ///
    /// # Errors
    ///
    /// An unreadable or empty bundle, a certificate rustls refuses, a
    /// server name that is not a name.
    pub fn from_pem(ca_file: &Path, server_name: Option<&str>) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(ca_file, "ca bundle")? {
            roots.add(c)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = server_name
            .map(|n| ServerName::try_from(n.to_owned()).map_err(|_| TlsError::ServerName(n.into())))
            .transpose()?;
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The name to verify for a server at `addr` (`host:port`, `[v6]:port`).
    pub(crate) fn name_for(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.into()))
    }

    pub(crate) fn connector(&self) -> &tokio_rustls::TlsConnector {
        &self.connector
    }
}

/// TLS from clients: offered with `CLIENT_SSL` in the proxy's greeting;
/// `required` refuses clients that log in without it.
#[derive(Clone)]
pub struct ClientTls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// Clients that do not start TLS are refused.
    pub required: bool,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The certificate chain and key shown to clients.
    ///
    /// # Errors
    ///
    /// Unreadable or empty files, or a key rustls refuses for the chain.
    pub fn from_pem(cert: &Path, key: &Path, required: bool) -> Result<Self, TlsError> {
        let chain = certs(cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
            what: "key",
            path: key.display().to_string(),
            message: e.to_string(),
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            required,
        })
    }

    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_host_of_the_address_unless_configured() {
        let dir = std::env::temp_dir().join(format!("dbproxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&ca, c.cert.pem()).unwrap();
        let t = BackendTls::from_pem(&ca, None).unwrap();
        assert_eq!(
            t.name_for("db.cluster-x.eu-west-1.rds.amazonaws.com:3306")
                .unwrap(),
            ServerName::try_from("db.cluster-x.eu-west-1.rds.amazonaws.com").unwrap()
        );
        assert_eq!(
            t.name_for("127.0.0.1:3306").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            t.name_for("[::1]:3306").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        let named = BackendTls::from_pem(&ca, Some("localhost")).unwrap();
        assert_eq!(
            named.name_for("127.0.0.1:3306").unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
        assert!(matches!(
            BackendTls::from_pem(&dir.join("missing.pem"), None),
            Err(TlsError::File { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
