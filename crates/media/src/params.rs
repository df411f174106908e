//! The query of a Magento image URL with `image_optimization_parameters`:
//! `/media/catalog/product/a/b/ab.jpg?width=265&height=265&store=default&image-type=small_image`,
//! plus `quality`, `bg-color`, `fit` and `canvas` where Magento (or its
//! Fastly module) sends them. Decoded once, validated, canonicalised: two
//! queries that ask for the same pixels give the same [`ResizeParams::canonical`]
//! string, so they share one cached variant.

use crate::Refusal;

/// How the original is fitted to the requested box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Inside the box, aspect ratio kept (the default).
    Bounds,
    /// Fill the box, aspect ratio kept, the overflow cut off centred.
    Cover,
    /// As `Cover` (Fastly's name for it).
    Crop,
    /// Inside the box, then padded to the box with the background
    /// (Magento's `keep_frame`).
    Pad,
}

impl Fit {
    /// Parses a `fit` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bounds" => Some(Self::Bounds),
            "cover" => Some(Self::Cover),
            "crop" => Some(Self::Crop),
            "pad" => Some(Self::Pad),
            _ => None,
        }
    }

    /// The `fit` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bounds => "bounds",
            Self::Cover => "cover",
            Self::Crop => "crop",
            Self::Pad => "pad",
        }
    }
}

/// What an operator allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeLimits {
    /// Largest width (and canvas width) asked for.
    pub max_width: u32,
    /// Largest height (and canvas height) asked for.
    pub max_height: u32,
    /// Allowed `(width, height)` pairs; empty = any within the bounds. A
    /// request with one side only must match a pair's side.
    pub sizes: Vec<(u32, u32)>,
    /// Largest original, in bytes.
    pub max_source_bytes: u64,
    /// Largest original, in pixels (from its header, before decoding).
    pub max_source_pixels: u64,
}

impl Default for ResizeLimits {
    fn default() -> Self {
        Self {
            max_width: 4096,
            max_height: 4096,
            sizes: Vec::new(),
            max_source_bytes: 32 << 20,
            max_source_pixels: 50_000_000,
        }
    }
}

/// A validated resize request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeParams {
    /// Target width; `None` = from the height and the aspect ratio.
    pub width: Option<u32>,
    /// Target height; `None` = from the width and the aspect ratio.
    pub height: Option<u32>,
    /// Encoder quality 1..=100 (JPEG, lossy WebP); `None` = the default (80).
    pub quality: Option<u8>,
    /// Background for transparent pixels in JPEG output and for padding.
    pub bg: Option<[u8; 3]>,
    /// How the original fits the box.
    pub fit: Fit,
    /// A canvas the result is centred on, padded with `bg` (Magento's
    /// "keep frame").
    pub canvas: Option<(u32, u32)>,
    /// `store` as sent (informational: the pixels do not depend on it).
    pub store: Option<String>,
    /// `image-type` as sent (informational).
    pub image_type: Option<String>,
}

/// Default encoder quality (Magento's `image_quality` default is 80).
pub const DEFAULT_QUALITY: u8 = 80;

impl ResizeParams {
    /// The quality to encode with.
    pub fn quality_or_default(&self) -> u8 {
        self.quality.unwrap_or(DEFAULT_QUALITY)
    }

    /// A canonical text of everything that changes the pixels, for variant
    /// keys: `w=265;h=265;q=80;bg=ffffff;fit=bounds;canvas=-`.
    pub fn canonical(&self) -> String {
        let side = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let bg = self.bg.map_or_else(
            || "-".to_owned(),
            |[r, g, b]| format!("{r:02x}{g:02x}{b:02x}"),
        );
        let canvas = self
            .canvas
            .map_or_else(|| "-".to_owned(), |(w, h)| format!("{w}x{h}"));
        format!(
            "w={};h={};q={};bg={bg};fit={};canvas={canvas}",
            side(self.width),
            side(self.height),
            self.quality_or_default(),
            self.fit.as_str(),
        )
    }
}

fn bad(name: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal::BadParam {
        name,
        reason: reason.into(),
    }
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

fn number(name: &'static str, v: &str, max: u32) -> Result<u32, Refusal> {
    let n: u32 = v
        .trim()
        .parse()
        .map_err(|_| bad(name, format!("not a whole number: {v:?}")))?;
    if n == 0 || n > max {
        return Err(bad(name, format!("must be 1 to {max}, got {n}")));
    }
    Ok(n)
}

fn color(v: &str) -> Result<[u8; 3], Refusal> {
    let v = v.trim().trim_start_matches('#');
    let parts: Vec<&str> = v.split(',').collect();
    if parts.len() == 3 {
        let mut out = [0u8; 3];
        for (o, p) in out.iter_mut().zip(parts) {
            *o = p.trim().parse().map_err(|_| {
                bad(
                    "bg-color",
                    format!("expected R,G,B (0-255) or hex, got {v:?}"),
                )
            })?;
        }
        return Ok(out);
    }
    let hex = |s: &str| u8::from_str_radix(s, 16).ok();
    let rgb = match v.len() {
        6 => (|| Some([hex(&v[0..2])?, hex(&v[2..4])?, hex(&v[4..6])?]))(),
        3 => (|| {
            let d = |i: usize| hex(&v[i..=i]).map(|x| x * 17);
            Some([d(0)?, d(1)?, d(2)?])
        })(),
        _ => None,
    };
    rgb.ok_or_else(|| {
        bad(
            "bg-color",
            format!("expected R,G,B (0-255) or hex, got {v:?}"),
        )
    })
}

fn plain_word(name: &'static str, v: &str) -> Result<String, Refusal> {
    if v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad(name, "letters, digits, '_' and '-' only, at most 64"));
    }
    Ok(v.to_owned())
}

/// Reads a query string. `Ok(None)`: no `width` and no `height`, so not a
/// resize request (the original is served).
///
/// Unknown parameters are ignored (they do not change the pixels); a
/// repeated known parameter, an empty-but-present `width`/`height` with the
/// other one missing, and every out-of-bounds value are refused.
///
/// # Errors
///
/// [`Refusal::BadParam`] or [`Refusal::SizeNotAllowed`] (both 400).
pub fn parse(query: &str, limits: &ResizeLimits) -> Result<Option<ResizeParams>, Refusal> {
    let mut p = ResizeParams {
        width: None,
        height: None,
        quality: None,
        bg: None,
        fit: Fit::Bounds,
        canvas: None,
        store: None,
        image_type: None,
    };
    let mut seen: Vec<&'static str> = Vec::new();
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k);
        let v = decode(v);
        let name: &'static str = match k.as_str() {
            "width" => "width",
            "height" => "height",
            "quality" => "quality",
            "bg-color" => "bg-color",
            "fit" => "fit",
            "canvas" => "canvas",
            "store" => "store",
            "image-type" => "image-type",
            _ => continue,
        };
        if seen.contains(&name) {
            return Err(bad(name, "given more than once"));
        }
        seen.push(name);
        if v.is_empty() {
            // http_build_query drops nulls; an empty value means "not set".
            continue;
        }
        match name {
            "width" => p.width = Some(number(name, &v, limits.max_width)?),
            "height" => p.height = Some(number(name, &v, limits.max_height)?),
            "quality" => {
                let q = number(name, &v, 100)?;
                p.quality = u8::try_from(q).ok();
            }
            "bg-color" => p.bg = Some(color(&v)?),
            "fit" => {
                p.fit = Fit::parse(&v).ok_or_else(|| {
                    bad(
                        name,
                        format!("expected bounds, cover, crop or pad, got {v:?}"),
                    )
                })?;
            }
            "canvas" => {
                let (w, h) = v
                    .split_once([':', ',', 'x'])
                    .ok_or_else(|| bad(name, format!("expected W:H, got {v:?}")))?;
                p.canvas = Some((
                    number(name, w, limits.max_width)?,
                    number(name, h, limits.max_height)?,
                ));
            }
            "store" => p.store = Some(plain_word(name, &v)?),
            _ => p.image_type = Some(plain_word(name, &v)?),
        }
    }
    if p.width.is_none() && p.height.is_none() {
        return Ok(None);
    }
    if !limits.sizes.is_empty() {
        let ok = limits
            .sizes
            .iter()
            .any(|&(w, h)| p.width.is_none_or(|pw| pw == w) && p.height.is_none_or(|ph| ph == h));
        if !ok {
            return Err(Refusal::SizeNotAllowed {
                width: p.width.unwrap_or(0),
                height: p.height.unwrap_or(0),
            });
        }
    }
    Ok(Some(p))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l() -> ResizeLimits {
        ResizeLimits::default()
    }

    #[test]
    fn magento_urls() {
        let p = parse(
            "width=265&height=265&store=default&image-type=small_image",
            &l(),
        )
        .unwrap()
        .unwrap();
        assert_eq!((p.width, p.height), (Some(265), Some(265)));
        assert_eq!(p.store.as_deref(), Some("default"));
        assert_eq!(p.image_type.as_deref(), Some("small_image"));
        assert_eq!(p.canonical(), "w=265;h=265;q=80;bg=-;fit=bounds;canvas=-");
        let p = parse(
            "width=100&quality=60&bg-color=255,255,255&fit=cover&canvas=120:130",
            &l(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.quality, Some(60));
        assert_eq!(p.bg, Some([255, 255, 255]));
        assert_eq!(p.fit, Fit::Cover);
        assert_eq!(p.canvas, Some((120, 130)));
        assert_eq!(
            parse("bg-color=%23fff&height=5", &l()).unwrap().unwrap().bg,
            Some([255, 255, 255])
        );
        assert_eq!(parse("", &l()).unwrap(), None);
        assert_eq!(parse("store=default&v=3", &l()).unwrap(), None);
        assert_eq!(parse("width=&height=", &l()).unwrap(), None);
    }

    #[test]
    fn refusals_are_400() {
        for q in [
            "width=100000",
            "width=0",
            "width=-1",
            "width=abc",
            "height=4097",
            "width=10&width=20",
            "width=10&quality=101",
            "width=10&quality=0",
            "width=10&bg-color=red",
            "width=10&fit=stretch",
            "width=10&canvas=10",
            "width=10&store=../x",
        ] {
            let e = parse(q, &l()).unwrap_err();
            assert_eq!(e.status(), 400, "{q}: {e}");
        }
    }

    #[test]
    fn allowed_sizes() {
        let lim = ResizeLimits {
            sizes: vec![(265, 265), (700, 560)],
            ..l()
        };
        assert!(parse("width=265&height=265", &lim).is_ok());
        assert!(parse("width=700", &lim).is_ok());
        assert!(parse("height=560", &lim).is_ok());
        assert_eq!(
            parse("width=266&height=265", &lim).unwrap_err(),
            Refusal::SizeNotAllowed {
                width: 266,
                height: 265
            }
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_bounds_hold(q in "[a-z=&%0-9,:#-]{0,60}") {
            if let Ok(Some(p)) = parse(&q, &l()) {
                prop_assert!(p.width.is_none_or(|w| (1..=4096).contains(&w)));
                prop_assert!(p.height.is_none_or(|h| (1..=4096).contains(&h)));
            }
        }

        #[test]
        fn order_does_not_change_the_variant(w in 1u32..4096, h in 1u32..4096, q in 1u8..=100) {
            let a = parse(&format!("width={w}&height={h}&quality={q}&store=default"), &l()).unwrap().unwrap();
            let b = parse(&format!("store=x&quality={q}&height={h}&width={w}"), &l()).unwrap().unwrap();
            prop_assert_eq!(a.canonical(), b.canonical());
        }
    }
}
