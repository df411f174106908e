//! The geometry of a resize, from the original's size and the request.
//!
//! Images are never enlarged (Magento's `constrain_only`, Fastly's default
//! without `enable=upscale`): a box larger than the original gives the
//! original's size, so the output never has more pixels than the original.

pub use crate::params::Fit;
use crate::params::ResizeParams;

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// What to do to the pixels, in order: resize to `width`×`height`, cut
/// `crop` out of that, then centre it on `canvas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Width after resizing.
    pub width: u32,
    /// Height after resizing.
    pub height: u32,
    /// The part kept (within `width`×`height`).
    pub crop: Option<Rect>,
    /// The final canvas and where the image sits on it.
    pub canvas: Option<(u32, u32, Rect)>,
}

impl Plan {
    /// The output's size.
    pub fn output_size(&self) -> (u32, u32) {
        match (self.canvas, self.crop) {
            (Some((w, h, _)), _) => (w, h),
            (None, Some(c)) => (c.w, c.h),
            (None, None) => (self.width, self.height),
        }
    }

    /// True when the output is the original, untouched.
    pub fn is_identity(&self, src_w: u32, src_h: u32) -> bool {
        self.width == src_w && self.height == src_h && self.crop.is_none() && self.canvas.is_none()
    }
}

fn scaled(side: u32, scale: f64) -> u32 {
    let v = (f64::from(side) * scale).round();
    // In 1..=side: scale ≤ 1 here, so the cast cannot overflow.
    (v.max(1.0).min(f64::from(side))) as u32
}

/// Fits `(sw, sh)` inside `(bw, bh)` (`None` = unbounded), never enlarging.
fn fit_inside(sw: u32, sh: u32, bw: Option<u32>, bh: Option<u32>) -> (u32, u32) {
    let sx = bw.map_or(f64::INFINITY, |w| f64::from(w) / f64::from(sw));
    let sy = bh.map_or(f64::INFINITY, |h| f64::from(h) / f64::from(sh));
    let s = sx.min(sy).min(1.0);
    (scaled(sw, s), scaled(sh, s))
}

fn centred(outer_w: u32, outer_h: u32, w: u32, h: u32) -> Rect {
    Rect {
        x: (outer_w - w) / 2,
        y: (outer_h - h) / 2,
        w,
        h,
    }
}

/// The plan for an original of `src_w`×`src_h` (both ≥ 1).
pub fn plan(src_w: u32, src_h: u32, p: &ResizeParams) -> Plan {
    let (sw, sh) = (src_w.max(1), src_h.max(1));
    let mut out = match (p.fit, p.width, p.height) {
        (Fit::Cover | Fit::Crop, Some(bw), Some(bh)) => {
            let s = (f64::from(bw) / f64::from(sw))
                .max(f64::from(bh) / f64::from(sh))
                .min(1.0);
            let (w, h) = (scaled(sw, s), scaled(sh, s));
            let (cw, ch) = (bw.min(w), bh.min(h));
            Plan {
                width: w,
                height: h,
                crop: ((cw, ch) != (w, h)).then(|| centred(w, h, cw, ch)),
                canvas: None,
            }
        }
        (Fit::Pad, Some(bw), Some(bh)) => {
            let (w, h) = fit_inside(sw, sh, Some(bw), Some(bh));
            Plan {
                width: w,
                height: h,
                crop: None,
                canvas: ((w, h) != (bw, bh)).then(|| (bw, bh, centred(bw, bh, w, h))),
            }
        }
        _ => {
            let (w, h) = fit_inside(sw, sh, p.width, p.height);
            Plan {
                width: w,
                height: h,
                crop: None,
                canvas: None,
            }
        }
    };
    if let Some((cw, ch)) = p.canvas {
        // An explicit canvas replaces the padding of `fit=pad`.
        out.canvas = None;
        let (iw, ih) = out.output_size();
        if iw > cw || ih > ch {
            // The image does not fit the canvas: fit it inside instead.
            let bw = p.width.map_or(cw, |w| w.min(cw));
            let bh = p.height.map_or(ch, |h| h.min(ch));
            let (w, h) = fit_inside(sw, sh, Some(bw), Some(bh));
            out = Plan {
                width: w,
                height: h,
                crop: None,
                canvas: None,
            };
        }
        let (iw, ih) = out.output_size();
        if (iw, ih) != (cw, ch) {
            out.canvas = Some((cw, ch, centred(cw, ch, iw, ih)));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::params::{parse, ResizeLimits};
    use proptest::prelude::*;

    fn pl(sw: u32, sh: u32, q: &str) -> Plan {
        plan(
            sw,
            sh,
            &parse(q, &ResizeLimits::default()).unwrap().unwrap(),
        )
    }

    #[test]
    fn bounds_keep_the_aspect_ratio_and_never_enlarge() {
        assert_eq!(
            pl(1000, 500, "width=265&height=265").output_size(),
            (265, 133)
        );
        assert_eq!(
            pl(500, 1000, "width=265&height=265").output_size(),
            (133, 265)
        );
        assert_eq!(pl(1000, 500, "width=100").output_size(), (100, 50));
        assert_eq!(pl(1000, 500, "height=100").output_size(), (200, 100));
        assert_eq!(
            pl(100, 50, "width=1000&height=1000").output_size(),
            (100, 50)
        );
        assert!(pl(100, 50, "width=1000").is_identity(100, 50));
    }

    #[test]
    fn cover_crops_centred() {
        let p = pl(1000, 500, "width=200&height=200&fit=cover");
        assert_eq!((p.width, p.height), (400, 200));
        assert_eq!(
            p.crop,
            Some(Rect {
                x: 100,
                y: 0,
                w: 200,
                h: 200
            })
        );
        assert_eq!(p.output_size(), (200, 200));
    }

    #[test]
    fn pad_and_canvas_centre_on_the_box() {
        let p = pl(1000, 500, "width=200&height=200&fit=pad");
        assert_eq!((p.width, p.height), (200, 100));
        assert_eq!(
            p.canvas,
            Some((
                200,
                200,
                Rect {
                    x: 0,
                    y: 50,
                    w: 200,
                    h: 100
                }
            ))
        );
        let p = pl(1000, 500, "width=200&canvas=300:300");
        assert_eq!(p.output_size(), (300, 300));
        assert_eq!(
            p.canvas,
            Some((
                300,
                300,
                Rect {
                    x: 50,
                    y: 100,
                    w: 200,
                    h: 100
                }
            ))
        );
        let p = pl(1000, 500, "width=400&canvas=100:100");
        assert_eq!(p.output_size(), (100, 100));
        assert_eq!((p.width, p.height), (100, 50));
    }

    proptest! {
        #[test]
        fn outputs_are_within_the_box_and_the_original(
            sw in 1u32..5000, sh in 1u32..5000,
            w in proptest::option::of(1u32..4096), h in proptest::option::of(1u32..4096),
            fit in prop_oneof![Just("bounds"), Just("cover"), Just("pad")],
            canvas in proptest::option::of((1u32..4096, 1u32..4096)),
        ) {
            prop_assume!(w.is_some() || h.is_some());
            let mut q = format!("fit={fit}");
            if let Some(w) = w { q.push_str(&format!("&width={w}")); }
            if let Some(h) = h { q.push_str(&format!("&height={h}")); }
            if let Some((cw, ch)) = canvas { q.push_str(&format!("&canvas={cw}:{ch}")); }
            let p = pl(sw, sh, &q);
            prop_assert!(p.width >= 1 && p.height >= 1);
            prop_assert!(p.width <= sw && p.height <= sh);
            if let Some(c) = p.crop {
                prop_assert!(c.x + c.w <= p.width && c.y + c.h <= p.height);
            }
            let (ow, oh) = p.output_size();
            if let Some((cw, ch, r)) = p.canvas {
                prop_assert_eq!((ow, oh), (cw, ch));
                prop_assert!(r.x + r.w <= cw && r.y + r.h <= ch);
                let (iw, ih) = p.crop.map_or((p.width, p.height), |c| (c.w, c.h));
                prop_assert_eq!((r.w, r.h), (iw, ih));
            } else {
                if let Some(w) = w { prop_assert!(ow <= w); }
                if let Some(h) = h { prop_assert!(oh <= h); }
            }
        }
    }
}
