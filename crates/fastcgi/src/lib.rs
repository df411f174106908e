//! FastCGI for the magestack edge: talk to PHP-FPM the way nginx does, with
//! keep-alive connections and streaming in both directions.
//!
//! # Modules
//!
//! * [`codec`] — a **sans-IO** FastCGI 1.0 record codec: record headers,
//!   every record type, name-value pairs, and encoders for the PARAMS and
//!   STDIN streams. `decode` returns `Ok(None)` for "need more bytes";
//!   encoders append to caller buffers. No tokio, no sockets, no clock.
//! * [`response`] — a **pure** CGI response-head parser: `Status:`, the
//!   `Location:` → 302 rule, header validation into `http` types, and a
//!   ceiling on the head size (32 KiB by default, like nginx's
//!   `fastcgi_buffer_size` in Magento's sample config).
//! * `client` (feature `client`, on by default) — the tokio driver: [`Endpoint`] (`fcgi://host:port`,
//!   `fcgi+unix:///path`), a cloneable [`Client`] with a pool of idle
//!   keep-alive connections, timeouts, retry of a stale pooled connection,
//!   and a [`ResponseBody`] that streams STDOUT with backpressure. STDERR is
//!   logged with `tracing::warn!`, never forwarded.
//!
//! # Non-goals
//!
//! * Building CGI parameters from an HTTP request (`HTTP_*`, `SCRIPT_*`,
//!   Magento's extras): the edge does that and hands over [`Params`].
//! * Request multiplexing (several request ids on one connection): PHP-FPM
//!   does not support it, and nginx does not use it either.
//! * The AUTHORIZER and FILTER roles, and the server side of the protocol
//!   (the codec can decode requests, but nothing here serves them).
//! * Buffering a request body to compute `CONTENT_LENGTH`: PHP needs it, and
//!   the edge sets it before calling [`Client::request`].
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use http_body_util::BodyExt;
//! use magestack_fastcgi::{Client, ClientConfig, Endpoint, Params, RequestBody};
//!
//! let endpoint: Endpoint = "fcgi://127.0.0.1:9000".parse()?;
//! let client = Client::new(endpoint, ClientConfig::default());
//! let mut params = Params::new();
//! params.push("SCRIPT_FILENAME", "/app/pub/index.php");
//! params.push("REQUEST_METHOD", "GET");
//! let resp = client.request(&params, RequestBody::Empty).await?;
//! println!("{}", resp.status);
//! let body = resp.body.collect().await?.to_bytes();
//! # let _ = body;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod response;
pub mod status;

#[cfg(feature = "client")]
pub use client::{
    BoxError, Client, ClientConfig, ClientStats, Endpoint, EndpointParseError, Error,
    ProtocolError, RequestBody, Response, ResponseBody,
};
pub use codec::{DecodeError, EncodeError, Limits, Params, Record, RecordBody, RecordType};
pub use response::{HeadError, HeadParser, ResponseHead, DEFAULT_MAX_HEADER_BYTES};
#[cfg(feature = "client")]
pub use status::fetch_status;
pub use status::{parse_status, FpmStatus, StatusError};
