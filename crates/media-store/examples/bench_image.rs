//! Writes a product-photo-like JPEG for the resize benchmark (`scripts/bench`
//! profile `resize`): `bench_image OUT.jpg WIDTH HEIGHT`. Smooth gradients
//! with some texture, quality 85: about what a catalog upload looks like to
//! a resizer (a flat or random image would flatter or punish the codecs).

use image::ImageEncoder;

const USAGE: &str = "usage: bench_image OUT.jpg [WIDTH [HEIGHT]] (sides 1-20000, default 1000)";

fn side(arg: Option<&String>) -> Result<u32, String> {
    match arg {
        None => Ok(1000),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=20_000).contains(&n) => Ok(n),
            _ => Err(format!("{s:?} is not a side in pixels; {USAGE}")),
        },
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).ok_or(USAGE)?;
    let w = side(args.get(2))?;
    let h = side(args.get(3))?;
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
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85).write_image(
        img.as_raw(),
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )?;
    std::fs::write(out, buf).map_err(|e| format!("{out}: {e}"))?;
    Ok(())
}
