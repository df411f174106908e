//! Purge messages on the bus.
//!
//! A message carries the purge as the replica received it (the raw
//! `X-Magento-Tags-Pattern` / `X-Pool` values of a `PURGE`, or the admin
//! API's exact tags / everything), so every replica runs the same parser on
//! the same input. The bus sequence number is not in the JSON: the Lua script
//! that publishes prefixes it (`<seq> <json>`), so the number and the message
//! are assigned in one atomic step.

use serde::{Deserialize, Serialize};

/// Format version; replicas ignore messages of a version they do not know
/// (and treat that as a gap, to stay safe during an upgrade).
pub const VERSION: u32 = 1;

/// What to purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PurgeCommand {
    /// Magento's `PURGE`: the header values as sent (either may be absent).
    Pattern {
        /// `X-Magento-Tags-Pattern`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tags_pattern: Option<String>,
        /// `X-Pool`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool_pattern: Option<String>,
    },
    /// Exact tags (admin API, CLI).
    Tags {
        /// Tag names.
        tags: Vec<String>,
    },
    /// Every tagged object.
    All,
}

/// One purge on the bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeMessage {
    /// Format version ([`VERSION`]).
    pub v: u32,
    /// The replica that accepted the purge (it applied it already).
    pub origin: String,
    /// Soft (objects become stale, kept for grace) or hard.
    pub soft: bool,
    /// The purge.
    #[serde(flatten)]
    pub command: PurgeCommand,
}

/// Why a bus payload was not a purge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// No `<seq> ` prefix.
    #[error("payload has no sequence number")]
    NoSequence,
    /// The JSON did not parse.
    #[error("payload is not a purge message: {0}")]
    Json(String),
    /// A version this replica does not know.
    #[error("unknown message version {0}")]
    Version(u32),
}

impl PurgeMessage {
    /// The JSON the publisher hands to the Lua script.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and bools cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes `<seq> <json>` as published.
    pub fn decode(payload: &[u8]) -> Result<(u64, PurgeMessage), DecodeError> {
        let space = payload
            .iter()
            .position(|&b| b == b' ')
            .ok_or(DecodeError::NoSequence)?;
        let seq = std::str::from_utf8(&payload[..space])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(DecodeError::NoSequence)?;
        let msg: PurgeMessage = serde_json::from_slice(&payload[space + 1..])
            .map_err(|e| DecodeError::Json(e.to_string()))?;
        if msg.v != VERSION {
            return Err(DecodeError::Version(msg.v));
        }
        Ok((seq, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_with_the_sequence_prefix() {
        for command in [
            PurgeCommand::Pattern {
                tags_pattern: Some("((^|,)cat_p_42(,|$))".into()),
                pool_pattern: None,
            },
            PurgeCommand::Tags {
                tags: vec!["cat_c_3".into(), "cms_b_footer".into()],
            },
            PurgeCommand::All,
        ] {
            let m = PurgeMessage {
                v: VERSION,
                origin: "pod-a".into(),
                soft: true,
                command,
            };
            let payload = format!("17 {}", m.to_json());
            assert_eq!(PurgeMessage::decode(payload.as_bytes()), Ok((17, m)));
        }
    }

    #[test]
    fn garbage_and_future_versions_are_refused() {
        assert_eq!(PurgeMessage::decode(b"{}"), Err(DecodeError::NoSequence));
        assert!(matches!(
            PurgeMessage::decode(b"3 {"),
            Err(DecodeError::Json(_))
        ));
        let v2 = br#"5 {"v":2,"origin":"x","soft":false,"kind":"all"}"#;
        assert_eq!(PurgeMessage::decode(v2), Err(DecodeError::Version(2)));
    }

    proptest! {
        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = PurgeMessage::decode(&data);
        }
    }
}
