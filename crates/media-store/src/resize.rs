//! Image resizing: [`transform`] (decode, resize, crop, pad, encode; a
//! blocking function) and [`ResizePool`], which runs transforms on
//! blocking threads, at most `workers` at once with at most `queue`
//! waiting, so resizing never takes the request workers and a burst gets
//! 503 instead of an unbounded queue.
//!
//! Limits come first: the format from the first bytes (415 otherwise), the
//! byte size and the pixel count from the header before a pixel is decoded
//! (413: decompression bombs), then the decoder's own allocation limit as a
//! second wall. Peak memory per transform is about 4 bytes per source pixel
//! plus 4 per output pixel.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fast_image_resize as fr;
use image::ImageEncoder;
use magestack_media::format::check_source;
use magestack_media::{plan, ImageFormat, Refusal, ResizeLimits, ResizeParams};
use tokio::sync::Semaphore;

/// Why a transform failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// Refused by the limits or the format (400/413/415).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The pool is full: 503.
    #[error("resize pool busy")]
    Busy,
    /// Decoding or encoding failed on an image that looked valid: 415.
    #[error("image could not be processed: {0}")]
    Failed(String),
}

/// An encoded variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The file.
    pub bytes: Vec<u8>,
    /// Its format.
    pub format: ImageFormat,
    /// Its width.
    pub width: u32,
    /// Its height.
    pub height: u32,
}

fn image_format(f: ImageFormat) -> image::ImageFormat {
    match f {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
    }
}

fn failed(e: impl std::fmt::Display) -> ResizeError {
    ResizeError::Failed(e.to_string())
}

/// Resizes `src` for `params` and encodes it as `out` (`None`: the
/// original's format).
///
/// # Errors
///
/// [`ResizeError::Refused`] with 415 for what is not a JPEG, PNG, GIF or
/// WebP, 413 past the byte or pixel limit; [`ResizeError::Failed`] when the
/// image is corrupt.
pub fn transform(
    src: &[u8],
    params: &ResizeParams,
    out: Option<ImageFormat>,
    limits: &ResizeLimits,
) -> Result<Encoded, ResizeError> {
    let format = ImageFormat::sniff(src).ok_or(Refusal::Unsupported)?;
    let out = out.unwrap_or(format);
    let reader = || image::ImageReader::with_format(Cursor::new(src), image_format(format));
    let (w, h) = reader()
        .into_dimensions()
        .map_err(|_| Refusal::Unsupported)?;
    check_source(src.len() as u64, w, h, limits)?;
    let mut reader = reader();
    let mut dec_limits = image::Limits::default();
    dec_limits.max_image_width = Some(w);
    dec_limits.max_image_height = Some(h);
    dec_limits.max_alloc = Some(limits.max_source_pixels.saturating_mul(4) + (16 << 20));
    reader.limits(dec_limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => ResizeError::Refused(Refusal::TooLarge {
            what: format!("{w}x{h} needs more memory than allowed"),
        }),
        other => failed(other),
    })?;
    let has_alpha = img.color().has_alpha();
    let p = plan(w, h, params);
    let mut rgba = img.into_rgba8().into_raw();
    let (mut cw, mut ch) = (w, h);
    if (p.width, p.height) != (w, h) {
        let src_img =
            fr::images::Image::from_vec_u8(w, h, rgba, fr::PixelType::U8x4).map_err(failed)?;
        let mut dst = fr::images::Image::new(p.width, p.height, fr::PixelType::U8x4);
        fr::Resizer::new()
            .resize(
                &src_img,
                &mut dst,
                &fr::ResizeOptions::new()
                    .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3)),
            )
            .map_err(failed)?;
        rgba = dst.into_vec();
        (cw, ch) = (p.width, p.height);
    }
    if let Some(c) = p.crop {
        let mut cut = Vec::with_capacity(c.w as usize * c.h as usize * 4);
        for row in c.y..c.y + c.h {
            let start = (row as usize * cw as usize + c.x as usize) * 4;
            cut.extend_from_slice(&rgba[start..start + c.w as usize * 4]);
        }
        rgba = cut;
        (cw, ch) = (c.w, c.h);
    }
    let transparent_ok = out != ImageFormat::Jpeg;
    let bg = params.bg;
    let mut alpha = has_alpha;
    if let Some((canvas_w, canvas_h, at)) = p.canvas {
        let fill = match bg {
            Some([r, g, b]) => [r, g, b, 255],
            None if has_alpha && transparent_ok => [0, 0, 0, 0],
            None => [255, 255, 255, 255],
        };
        let mut canvas = fill.repeat(canvas_w as usize * canvas_h as usize);
        for row in 0..at.h {
            let from = (row as usize * cw as usize) * 4;
            let to = (((at.y + row) as usize) * canvas_w as usize + at.x as usize) * 4;
            canvas[to..to + at.w as usize * 4]
                .copy_from_slice(&rgba[from..from + at.w as usize * 4]);
        }
        alpha = fill[3] < 255 || has_alpha;
        rgba = canvas;
        (cw, ch) = (canvas_w, canvas_h);
    }
    let quality = params.quality_or_default();
    let bytes = encode(&rgba, cw, ch, alpha && transparent_ok, out, quality, bg)?;
    Ok(Encoded {
        bytes,
        format: out,
        width: cw,
        height: ch,
    })
}

/// RGB of `rgba` composited over `bg` (white by default).
fn flatten(rgba: &[u8], bg: Option<[u8; 3]>) -> Vec<u8> {
    let [br, bgc, bb] = bg.unwrap_or([255, 255, 255]);
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = u16::from(px[3]);
        let mix = |c: u8, b: u8| ((u16::from(c) * a + u16::from(b) * (255 - a) + 127) / 255) as u8;
        rgb.extend_from_slice(&[mix(px[0], br), mix(px[1], bgc), mix(px[2], bb)]);
    }
    rgb
}

fn encode(
    rgba: &[u8],
    w: u32,
    h: u32,
    alpha: bool,
    out: ImageFormat,
    quality: u8,
    bg: Option<[u8; 3]>,
) -> Result<Vec<u8>, ResizeError> {
    let mut buf = Vec::new();
    match out {
        ImageFormat::Jpeg => {
            let rgb = flatten(rgba, bg);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
                .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
                .map_err(failed)?;
        }
        ImageFormat::Png => {
            let enc = image::codecs::png::PngEncoder::new(&mut buf);
            if alpha {
                enc.write_image(rgba, w, h, image::ExtendedColorType::Rgba8)
            } else {
                enc.write_image(&flatten(rgba, bg), w, h, image::ExtendedColorType::Rgb8)
            }
            .map_err(failed)?;
        }
        ImageFormat::Gif => {
            let mut enc = image::codecs::gif::GifEncoder::new_with_speed(&mut buf, 10);
            enc.encode(rgba, w, h, image::ExtendedColorType::Rgba8)
                .map_err(failed)?;
        }
        ImageFormat::Webp => {
            let mem = if alpha {
                webp::Encoder::from_rgba(rgba, w, h).encode(f32::from(quality))
            } else {
                let rgb = flatten(rgba, bg);
                webp::Encoder::from_rgb(&rgb, w, h).encode(f32::from(quality))
            };
            buf = mem.to_vec();
        }
    }
    Ok(buf)
}

/// Resize counters, for metrics.
#[derive(Debug, Default)]
pub struct ResizeStats {
    /// Resizes done, by output format: JPEG, PNG, GIF, WebP.
    pub done: [AtomicU64; 4],
    /// Seconds spent in resizes, in microseconds.
    pub busy_micros: AtomicU64,
    /// Requests refused because the pool was full.
    pub rejected: AtomicU64,
    /// Transforms that failed or were refused (413/415).
    pub failed: AtomicU64,
}

impl ResizeStats {
    /// The `done` slot of a format.
    pub fn slot(format: ImageFormat) -> usize {
        match format {
            ImageFormat::Jpeg => 0,
            ImageFormat::Png => 1,
            ImageFormat::Gif => 2,
            ImageFormat::Webp => 3,
        }
    }
}

/// At most `workers` transforms at once on blocking threads, at most
/// `queue` waiting.
#[derive(Debug)]
pub struct ResizePool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    /// Counters.
    pub stats: ResizeStats,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ResizePool {
    /// A pool of `workers` (0: one per CPU) with `queue` places.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            queue,
            stats: ResizeStats::default(),
        }
    }

    /// Runs [`transform`] on the pool.
    ///
    /// # Errors
    ///
    /// [`ResizeError::Busy`] when every worker is busy and the queue is
    /// full; otherwise what [`transform`] returns.
    pub async fn run(
        &self,
        src: bytes::Bytes,
        params: ResizeParams,
        out: Option<ImageFormat>,
        limits: ResizeLimits,
    ) -> Result<Encoded, ResizeError> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(ResizeError::Busy);
                }
                let _w = Waiting(&self.waiting);
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|_| ResizeError::Busy)?
            }
        };
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            transform(&src, &params, out, &limits)
        })
        .await
        .map_err(|e| ResizeError::Failed(format!("resize task: {e}")))?;
        let took: Duration = started.elapsed();
        self.stats.busy_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match &result {
            Ok(e) => {
                self.stats.done[ResizeStats::slot(e.format)].fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use magestack_media::params::parse;

    fn png(w: u32, h: u32, alpha: u8) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(w, h, image::Rgba([200, 10, 10, alpha]));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgba8)
            .unwrap();
        out
    }

    fn p(q: &str) -> ResizeParams {
        parse(q, &ResizeLimits::default()).unwrap().unwrap()
    }

    fn dims(bytes: &[u8]) -> (u32, u32) {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap()
    }

    #[test]
    fn png_with_alpha_keeps_it_and_webp_on_request() {
        let src = png(400, 200, 128);
        let e = transform(
            &src,
            &p("width=100&height=100"),
            None,
            &ResizeLimits::default(),
        )
        .unwrap();
        assert_eq!(e.format, ImageFormat::Png);
        assert_eq!(dims(&e.bytes), (100, 50));
        let img = image::load_from_memory(&e.bytes).unwrap().into_rgba8();
        assert_eq!(img.get_pixel(50, 25)[3], 128, "alpha kept");
        let e = transform(
            &src,
            &p("width=100"),
            Some(ImageFormat::Webp),
            &ResizeLimits::default(),
        )
        .unwrap();
        assert_eq!(ImageFormat::sniff(&e.bytes), Some(ImageFormat::Webp));
        assert_eq!(dims(&e.bytes), (100, 50));
        let e = transform(
            &src,
            &p("width=100&height=100&fit=pad&bg-color=255,255,255"),
            Some(ImageFormat::Jpeg),
            &ResizeLimits::default(),
        )
        .unwrap();
        assert_eq!(dims(&e.bytes), (100, 100));
    }

    #[test]
    fn refusals() {
        let l = ResizeLimits::default();
        assert_eq!(
            transform(b"<?php echo 1;", &p("width=10"), None, &l).map_err(|e| match e {
                ResizeError::Refused(r) => r.status(),
                _ => 0,
            }),
            Err(415)
        );
        let small = ResizeLimits {
            max_source_pixels: 1000,
            ..ResizeLimits::default()
        };
        let e = transform(&png(100, 100, 255), &p("width=10"), None, &small).unwrap_err();
        assert!(
            matches!(e, ResizeError::Refused(Refusal::TooLarge { .. })),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_full_pool_answers_busy() {
        let pool = ResizePool::new(1, 0);
        let src = bytes::Bytes::from(png(2000, 2000, 255));
        let a = pool.run(src.clone(), p("width=1999"), None, ResizeLimits::default());
        let b = async {
            tokio::task::yield_now().await;
            pool.run(src.clone(), p("width=10"), None, ResizeLimits::default())
                .await
        };
        let (a, b) = tokio::join!(a, b);
        assert!(a.is_ok());
        assert_eq!(b.unwrap_err(), ResizeError::Busy);
        assert_eq!(pool.stats.rejected.load(Ordering::Relaxed), 1);
    }
}
