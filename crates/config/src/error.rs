//! Error types: key paths, semantic errors from [`compile`](crate::compile),
//! and the located diagnostics that [`load_str`](crate::load_str) reports.

use std::fmt;

/// One step of a [`KeyPath`]: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key inside a table, e.g. `server`.
    Key(String),
    /// An index inside an array or array of tables, e.g. `[0]`.
    Index(usize),
}

/// A dotted key path into the configuration, e.g. `magento.run[1].code`.
///
/// Displayed the way an operator would write it: bare keys joined by `.`,
/// array indices in brackets, and keys that are not bare (contain `.`, space,
/// ...) quoted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The empty path (the document root).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Builds a path from dotted bare keys, e.g. `KeyPath::from_dotted("server.tls")`.
    ///
    /// Only for paths whose keys are bare (no quoting, no indices).
    pub fn from_dotted(dotted: &str) -> Self {
        Self(
            dotted
                .split('.')
                .filter(|k| !k.is_empty())
                .map(|k| Segment::Key(k.to_owned()))
                .collect(),
        )
    }

    /// Returns this path extended by a key.
    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_owned()));
        p
    }

    /// Returns this path extended by an array index.
    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(index));
        p
    }

    /// Appends a segment in place.
    pub fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    /// Removes the last segment in place.
    pub fn pop(&mut self) -> Option<Segment> {
        self.0.pop()
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// True for the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `self` equals `other` or lies inside it
    /// (`server.listen[0]` starts with `server.listen`).
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

fn is_bare(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare(k) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong with one value, found by [`compile`](crate::compile).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A string or list that must have content is empty.
    #[error("must not be empty")]
    Empty,
    /// A limit or timeout that must be positive is 0.
    #[error("must be greater than 0")]
    Zero,
    /// A number does not fit the platform's `usize`.
    #[error("{value} is too large for this platform")]
    TooLarge {
        /// The configured number.
        value: u64,
    },
    /// Not a socket address.
    #[error("invalid socket address {value:?}: expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080 (host names are not accepted)")]
    SocketAddr {
        /// The configured text.
        value: String,
    },
    /// Not a CIDR block or IP address.
    #[error("invalid CIDR {value:?}: expected an address block like 10.0.0.0/8 or fd00::/8, or a single IP address")]
    Cidr {
        /// The configured text.
        value: String,
    },
    /// A string that must be one of a fixed set of words is not.
    #[error("unknown value {value:?}, expected one of {expected}")]
    UnknownVariant {
        /// The configured text.
        value: String,
        /// The accepted words, already quoted and joined.
        expected: &'static str,
    },
    /// `upstream.url` does not parse.
    #[error(transparent)]
    UpstreamUrl(#[from] crate::UpstreamUrlError),
    /// Two settings claim the same resource (for example one port).
    #[error("conflicts with {other}")]
    Conflict {
        /// The other setting, with its value.
        other: String,
    },
    /// A setting that is optional on its own is required by another one.
    #[error("required {because}")]
    Required {
        /// Why it is required ("when ...").
        because: &'static str,
    },
    /// A value that is well-typed but not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// A semantic error found by [`compile`](crate::compile): the key path and
/// what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ConfigError {
    /// Where the error is, e.g. `server.listen[1]`.
    pub path: KeyPath,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// Builds an error at `path`.
    pub fn new(path: KeyPath, kind: ErrorKind) -> Self {
        Self { path, kind }
    }
}

/// The kind of problem a [`Diagnostic`] reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The configuration file could not be read.
    #[error("cannot read configuration: {0}")]
    Io(String),
    /// The text is not valid TOML. Reported once; nothing else is checked.
    #[error("invalid TOML: {0}")]
    Syntax(String),
    /// Valid TOML that does not fit the schema: unknown key, wrong type.
    #[error("{0}")]
    Schema(String),
    /// Fits the schema but fails validation (see [`ErrorKind`]).
    #[error(transparent)]
    Invalid(#[from] ErrorKind),
}

/// One reported error, located as precisely as possible.
///
/// Displays as `<origin>:<line>: <key.path>: <message>`; the line is left out
/// when unknown (the key is absent from the file, or came from the command
/// line) and the path when the error concerns the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the setting came from: the file name given to the loader, or
    /// [`COMMAND_LINE`](crate::COMMAND_LINE) for overrides and flag-only runs.
    pub origin: String,
    /// 1-based line in `origin`, when known.
    pub line: Option<usize>,
    /// The key path; the root path when the error concerns the whole file.
    pub path: KeyPath,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.problem)
    }
}

/// Every error found while loading a configuration, in line order.
///
/// `Display` prints one [`Diagnostic`] per line, which is exactly what
/// `magestack check` prints before exiting with status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<Diagnostic>);

impl ConfigErrors {
    /// Wraps diagnostics, sorted by line (those without a line last),
    /// keeping discovery order among equals.
    pub(crate) fn new(mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.line.is_none(), d.line));
        Self(diagnostics)
    }

    /// The diagnostics, in line order (those without a line last).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.0
    }

    /// Iterates over the diagnostics.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// The number of diagnostics (never 0 for a value returned by a loader).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no diagnostics.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_path_display() {
        let p = KeyPath::from_dotted("magento.run").index(2).key("code");
        assert_eq!(p.to_string(), "magento.run[2].code");
        assert_eq!(KeyPath::root().key("a.b").key("c").to_string(), "\"a.b\".c");
        assert!(p.starts_with(&KeyPath::from_dotted("magento.run")));
        assert!(
            !KeyPath::from_dotted("magento.runs").starts_with(&KeyPath::from_dotted("magento.run"))
        );
    }

    #[test]
    fn diagnostic_display() {
        let d = Diagnostic {
            origin: "edge.toml".into(),
            line: Some(7),
            path: KeyPath::from_dotted("server.max_headers"),
            problem: Problem::Schema("invalid type: string \"many\", expected u32".into()),
        };
        assert_eq!(
            d.to_string(),
            "edge.toml:7: server.max_headers: invalid type: string \"many\", expected u32"
        );
        let d = Diagnostic {
            origin: "edge.toml".into(),
            line: None,
            path: KeyPath::root(),
            problem: Problem::Io("not found".into()),
        };
        assert_eq!(
            d.to_string(),
            "edge.toml: cannot read configuration: not found"
        );
    }
}
