//! Writes a product-photo-like JPEG for the resize benchmark (`scripts/bench`
//! profile `resize`): `bench_image OUT.jpg WIDTH HEIGHT`. Smooth gradients
//! with some texture, quality 85: about what a catalog upload looks like to
//! a resizer (a flat or random image would flatter or punish the codecs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use image::ImageEncoder;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .get(1)
        .expect("usage: bench_image OUT.jpg WIDTH HEIGHT");
    let w: u32 = args.get(2).map_or(1000, |s| s.parse().unwrap());
    let h: u32 = args.get(3).map_or(1000, |s| s.parse().unwrap());
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let ripple = ((fx * 37.0).sin() * (fy * 23.0).cos() * 40.0) as i32;
        let c = |base: f32, amp: f32| (base + amp + ripple as f32).clamp(0.0, 255.0) as u8;
        image::Rgb([
            c(60.0, fx * 150.0),
            c(90.0, fy * 120.0),
            c(140.0, (fx + fy) * 50.0),
        ])
    });
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(out, buf).unwrap();
}
