//! pub/media and pub/static from an object store, for the edge: the S3
//! client ([`store`]), the disk cache ([`disk`]), one fetch per object in
//! flight ([`coalesce`]), and [`MediaFiles`], which ties them together.
//!
//! Decisions (keys, parameters, plans, eviction order) come from the pure
//! [`magestack_media`] crate; this crate does the I/O. It builds no HTTP
//! responses: the edge's `media_source` module does, with the same
//! conditional and range rules as local files.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod coalesce;
pub mod disk;
pub mod files;
pub mod resize;
pub mod store;

pub use disk::{Committed, DiskCache, Meta};
pub use files::{
    Body, CacheStatus, MediaFiles, ObjectError, Opened, ResizeSpec, Spec, Stats, VariantError,
    Which,
};
pub use store::{FetchError, Remote, RemoteSpec, StoreError};
