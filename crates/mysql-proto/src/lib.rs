//! The MySQL client/server protocol as a sans-IO core for `magestack
//! dbproxy`: it contains no networking code, no tokio and no clock (time is
//! passed in), so it is property-tested and fuzzed without I/O.
//!
//! # Modules
//!
//! * [`packet`] — framing: 3-byte length + sequence id, joining and
//!   splitting payloads of 16 MiB and more, with a size ceiling.
//! * [`handshake`] and [`auth`] — the connection phase: Initial Handshake
//!   v10, Handshake Response 41 / SSL Request, auth switch, and
//!   `mysql_native_password` / `caching_sha2_password` (fast path both
//!   ways; full authentication to a backend over TLS only).
//! * [`command`] — client commands.
//! * [`response`] — OK/ERR/EOF (status flags, session-state tracking),
//!   and [`ResponseReader`](response::ResponseReader), which follows a
//!   command's response (result sets, multi-results, `CLIENT_DEPRECATE_EOF`,
//!   prepare responses) to its end.
//! * [`classify`] — the leading-keyword statement classifier.
//! * [`session`] — the per-client state machine: pinned or not and why,
//!   session variables to replay, routing, and what to do with the backend
//!   when the client leaves.
//!
//! # Why not `mysql_common`
//!
//! `mysql_common` (the packet layer of `mysql_async`) has these types, but
//! as a dependency of a codec crate it brings some thirty crates (bigint,
//! regex, flate2, rand, serde, chrono-style value conversion) into a crate
//! the house style limits to `bytes` and `thiserror`; its packet structs
//! borrow for zero-copy clients rather than re-encode for a proxy that
//! rewrites OK packets per client capabilities; and it has no
//! `Ok(None)`-style incremental framing with a size ceiling. The proxy
//! inspects few fields (headers, status flags, session-state info, the
//! first column of `GET_LOCK`) and forwards everything else byte for byte,
//! so the hand-written part is small, and its tests run against a real
//! MariaDB in `crates/dbproxy`.
//!
//! # Non-goals
//!
//! Decoding row values or column definitions (forwarded untouched), the
//! 3.20 handshake, compression, `LOAD DATA LOCAL INFILE`, and the binary
//! protocol's value encoding.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod auth;
pub mod classify;
pub mod command;
pub mod consts;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod session;
pub mod wire;

pub use classify::{classify, fingerprint, Kind, Statement, TableMatcher};
pub use command::Command;
pub use packet::{FrameError, Limits, Packet};
pub use response::{EofPacket, ErrPacket, Expect, OkPacket, Part, ResponseReader, StateChange};
pub use session::{Outcome, PinReason, Release, Route, Session};
pub use wire::ParseError;
