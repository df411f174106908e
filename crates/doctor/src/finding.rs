//! What a check reports: a leaf module, so every check module can use it
//! without depending on another.

use serde::Serialize;

/// How bad a finding is. `Error` makes `magestack doctor` exit 1: it is
/// reserved for what breaks a shop or loses data under load, so CI can gate
/// on it; `Warning` costs speed or resilience; `Info` says what could not be
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Could not be checked, or worth knowing.
    Info,
    /// Costs speed or resilience.
    Warning,
    /// Breaks the shop or loses data under load.
    Error,
}

impl Severity {
    /// The label in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding: what was found, why it hurts, the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// Stable id of the check (`fpm.memory`, `opcache.validate_timestamps` …),
    /// so CI can allow-list one.
    pub check: &'static str,
    /// What was found, with the figures and where.
    pub message: String,
    /// Why it hurts.
    pub why: String,
    /// What to change.
    pub fix: String,
}

impl Finding {
    /// A finding.
    pub fn new(
        severity: Severity,
        check: &'static str,
        message: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            check,
            message: message.into(),
            why: why.into(),
            fix: fix.into(),
        }
    }
}
