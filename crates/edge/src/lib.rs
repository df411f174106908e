//! `magestack edge`: the HTTP front of a Magento pod, where nginx (and later
//! Varnish) stood.
//!
//! The request pipeline is: accept ([`server`]) → limits → route by Magento's
//! nginx rules ([`magestack_routing`]) → static file ([`static_files`]) or upstream
//! (FastCGI to PHP-FPM via [`magestack_fastcgi`], or HTTP via [`http_upstream`]) →
//! response filters (charset, gzip) → access log. Decisions live in pure crates;
//! this crate is the I/O shell around them.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod access_log;
pub mod admin;
pub mod answer;
pub mod body;
mod cache;
pub mod cgi;
pub mod client_ip;
pub mod compress;
mod conn_io;
pub mod demo;
mod discovery;
pub mod error_chain;
mod framing;
mod gzip_stream;
mod handler;
pub mod http_upstream;
pub mod injection;
mod ip_filter;
pub mod live;
pub mod media_source;
pub mod metrics;
pub mod open_file_cache;
pub mod pipeline;
pub mod pool;
pub mod pool_route;
pub mod purge_bus;
mod rate_limit;
pub mod release;
pub mod request_body;
pub mod request_hygiene;
pub mod rollout;
pub mod server;
pub mod settings;
pub mod static_files;
pub mod status_page;
pub mod tls;
mod token;
mod upstream_failure;

pub use error_chain::{os_error, ErrorChain};
pub use handler::{CacheStats, Edge};
pub use live::LiveEdge;
pub use server::{ConnInfo, ListenerKind, Server, ServerLimits};
pub use settings::{CacheSettings, EdgeSettings, HealthCheckSettings, UpstreamTarget};
