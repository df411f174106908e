//! Releases and canary rollouts, decided in the edge: the pure core.
//!
//! What is here: release ids ([`release`]). Data in, decisions out; no
//! sockets, no clocks, no threads (time and randomness are parameters), so
//! every rule is unit- and property-tested without I/O. The edge's
//! `rollout` module is the I/O shell around it.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod release;

pub use release::{is_release_id, MAX_RELEASE_ID_LEN};
