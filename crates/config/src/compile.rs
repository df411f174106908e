//! What every section's compiler shares: the error collector, key paths and
//! address parsing. A leaf module: the edge's and the dbproxy's sections
//! both build on it without importing each other.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{ConfigError, ErrorKind, KeyPath};

/// Collects errors while compiling.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<ConfigError>);

impl Errors {
    pub(crate) fn push(&mut self, path: KeyPath, kind: ErrorKind) {
        self.0.push(ConfigError::new(path, kind));
    }

    /// `secs` as a positive duration.
    pub(crate) fn positive_secs(&mut self, path: KeyPath, secs: u64) -> Duration {
        if secs == 0 {
            self.push(path, ErrorKind::Zero);
        }
        Duration::from_secs(secs)
    }

    /// `n` as a `usize`.
    pub(crate) fn size(&mut self, path: KeyPath, n: u64) -> usize {
        match usize::try_from(n) {
            Ok(v) => v,
            Err(_) => {
                self.push(path, ErrorKind::TooLarge { value: n });
                0
            }
        }
    }

    /// `n` as a positive `usize`.
    pub(crate) fn positive_size(&mut self, path: KeyPath, n: u64) -> usize {
        if n == 0 {
            self.push(path, ErrorKind::Zero);
            return 0;
        }
        self.size(path, n)
    }

    pub(crate) fn word<T: FromStr<Err = ErrorKind>>(
        &mut self,
        path: KeyPath,
        s: &str,
    ) -> Option<T> {
        match s.parse() {
            Ok(v) => Some(v),
            Err(kind) => {
                self.push(path, kind);
                None
            }
        }
    }
}

pub(crate) fn p(dotted: &str) -> KeyPath {
    KeyPath::from_dotted(dotted)
}

pub(crate) fn parse_socket_addr(path: KeyPath, s: &str, errs: &mut Errors) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(
                path,
                ErrorKind::SocketAddr {
                    value: s.to_owned(),
                },
            );
            None
        }
    }
}
