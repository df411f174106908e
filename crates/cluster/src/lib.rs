//! Many edge replicas behaving as one cache, as pure cores: no sockets, no
//! Redis client, no clock. The edge's `purge_bus` module is the I/O shell.
//!
//! - [`message`]: what a purge looks like on the bus (JSON, versioned), and
//!   which replica sent it.
//! - [`l2`]: the binary record of a cached page in the shared L2 store.
//! - [`sequence`]: every published purge takes the next number of one Redis
//!   counter, atomically with its `PUBLISH`; a replica that sees a number
//!   skipped, or finds the counter moved past what it saw after a
//!   reconnection, knows it missed purges and must not trust its cache.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod l2;
pub mod message;
pub mod sequence;

pub use l2::{L2Error, L2Object};
pub use message::{DecodeError, PurgeCommand, PurgeMessage};
pub use sequence::{Sequence, SequenceVerdict};
