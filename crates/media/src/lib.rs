//! Media and static files from an object store, and product images resized
//! at the edge, as pure cores: no sockets, no files, no threads, no clock.
//! The I/O shell (`magestack-media-store`: the object-store client, the
//! disk cache, coalescing, the resize pool) and the edge's `media_source`
//! module call into these.
//!
//! - [`key`]: a request path to an object key under the source's prefix,
//!   refusing anything that could leave it (`..`, `.`, empty segments,
//!   backslashes, `%`, control characters), and Magento's
//!   `/static/versionNNN/` stripping with the release it names.
//! - [`params`]: the query of an `image_optimization_parameters` URL
//!   (`width`, `height`, `quality`, `bg-color`, `fit`, `canvas`, `store`,
//!   `image-type`), decoded once, validated against [`params::ResizeLimits`],
//!   refused as [`Refusal`] (400/413/415).
//! - [`plan`]: the target geometry of a resize from the original's size.
//! - [`format`]: image formats by magic bytes, `Accept` negotiation, and the
//!   decompression-bomb check on the header's dimensions.
//! - [`conditional`]: 304s and single byte ranges, as nginx answers them.
//! - [`index`]: the byte-bounded LRU index of the disk cache (which files
//!   to evict), rebuilt from the directory at start.
//!
//! Not here: HTTP types, decoding or encoding pixels, reading the store.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod conditional;
pub mod format;
pub mod index;
pub mod key;
pub mod params;
pub mod plan;

pub use format::{negotiate, ImageFormat};
pub use index::DiskIndex;
pub use key::{cache_name, media_key, static_key, KeyError, StaticKey};
pub use params::{ResizeLimits, ResizeParams};
pub use plan::{plan, Fit, Plan};

/// Why a resize request is refused, with the status it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A parameter is malformed or out of bounds: 400.
    #[error("bad parameter {name}: {reason}")]
    BadParam {
        /// The query parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The size is not one of the allowed sizes: 400.
    #[error("size {width}x{height} is not an allowed size")]
    SizeNotAllowed {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// The original is larger than the resize limits: 413.
    #[error("original too large: {what}")]
    TooLarge {
        /// Bytes or pixels, with the limit.
        what: String,
    },
    /// The original is not an image the edge can resize: 415.
    #[error("not a supported image")]
    Unsupported,
}

impl Refusal {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadParam { .. } | Self::SizeNotAllowed { .. } => 400,
            Self::TooLarge { .. } => 413,
            Self::Unsupported => 415,
        }
    }

    /// A label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::BadParam { .. } => "bad_param",
            Self::SizeNotAllowed { .. } => "size_not_allowed",
            Self::TooLarge { .. } => "too_large",
            Self::Unsupported => "unsupported",
        }
    }
}
