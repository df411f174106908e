//! Image formats: recognised by their first bytes (never by the file name),
//! chosen by `Accept`, and the limits checked before any pixel is decoded.

use crate::params::ResizeLimits;
use crate::Refusal;

/// A format the edge decodes and encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG.
    Jpeg,
    /// PNG (transparency kept).
    Png,
    /// GIF (the first frame).
    Gif,
    /// WebP.
    Webp,
}

impl ImageFormat {
    /// The format of `bytes` by its magic number, `None` when it is not one
    /// of these.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    /// The media type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }

    /// A short name for labels, logs and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

/// True when `accept` lists `image/webp` explicitly with q > 0 (browsers
/// that decode WebP say so; `image/*` alone is not taken as a yes).
pub fn accepts_webp(accept: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let ty = parts.next().unwrap_or("").trim();
        if !ty.eq_ignore_ascii_case("image/webp") {
            return false;
        }
        parts.all(|p| {
            let p = p.trim();
            match p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                Some(q) => q.trim().parse::<f32>().is_ok_and(|q| q > 0.0),
                None => true,
            }
        })
    })
}

/// The output format: WebP when enabled and accepted, else the original's.
pub fn negotiate(original: ImageFormat, accept: Option<&str>, webp: bool) -> ImageFormat {
    if webp && accept.is_some_and(accepts_webp) {
        ImageFormat::Webp
    } else {
        original
    }
}

/// The decompression-bomb and size check, on the byte length and the
/// dimensions the header declares, before decoding.
///
/// # Errors
///
/// [`Refusal::TooLarge`] (413).
pub fn check_source(
    len: u64,
    width: u32,
    height: u32,
    limits: &ResizeLimits,
) -> Result<(), Refusal> {
    if len > limits.max_source_bytes {
        return Err(Refusal::TooLarge {
            what: format!("{len} bytes > {} bytes", limits.max_source_bytes),
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_source_pixels || width == 0 || height == 0 {
        return Err(Refusal::TooLarge {
            what: format!(
                "{width}x{height} = {pixels} pixels > {} pixels",
                limits.max_source_pixels
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(
            ImageFormat::sniff(b"\xFF\xD8\xFF\xE0xx"),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\nxx"),
            Some(ImageFormat::Png)
        );
        assert_eq!(ImageFormat::sniff(b"GIF89a..."), Some(ImageFormat::Gif));
        assert_eq!(
            ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"<?php echo 1;"), None);
        assert_eq!(ImageFormat::sniff(b""), None);
    }

    #[test]
    fn accept_negotiation() {
        let chrome = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
        assert!(accepts_webp(chrome));
        assert!(!accepts_webp("image/*,*/*;q=0.8"));
        assert!(!accepts_webp("image/webp;q=0"));
        assert!(accepts_webp("IMAGE/WEBP;q=0.5"));
        assert_eq!(
            negotiate(ImageFormat::Png, Some(chrome), true),
            ImageFormat::Webp
        );
        assert_eq!(
            negotiate(ImageFormat::Png, Some(chrome), false),
            ImageFormat::Png
        );
        assert_eq!(negotiate(ImageFormat::Jpeg, None, true), ImageFormat::Jpeg);
    }

    #[test]
    fn bombs_are_413() {
        let l = ResizeLimits::default();
        assert!(check_source(1000, 1000, 1000, &l).is_ok());
        assert_eq!(
            check_source(1000, 100_000, 100_000, &l).map_err(|e| e.status()),
            Err(413)
        );
        assert_eq!(
            check_source(64 << 20, 10, 10, &l).map_err(|e| e.status()),
            Err(413)
        );
    }
}
