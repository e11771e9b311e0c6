//! Thumbnails: which size answers a request, and making it with the `image`
//! crate. Sizes, methods and output types follow Synapse: a request gets the
//! nearest configured size (or exactly what it asked for with
//! `dynamic_thumbnails`); JPEG and WebP sources give JPEG thumbnails, PNG and
//! GIF give PNG; `scale` never enlarges, `crop` fills the box.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, imageops::FilterType, metadata::Orientation};

use super::MediaError;
use crate::config::{ThumbnailMethod, ThumbnailSize};

/// The largest side a dynamic thumbnail may have.
const MAX_DYNAMIC_SIDE: u32 = 4096;

/// The type thumbnails of `source_type` are made in, or `None` when such
/// content is not thumbnailed.
pub fn output_type(source_type: &str) -> Option<&'static str> {
    let essence = source_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "image/jpeg" | "image/jpg" | "image/webp" => Some("image/jpeg"),
        "image/png" | "image/gif" => Some("image/png"),
        _ => None,
    }
}

/// The thumbnail that answers a request for `width` x `height` by `method`.
pub fn choose(sizes: &[ThumbnailSize], dynamic: bool, width: u32, height: u32, method: ThumbnailMethod) -> ThumbnailSize {
    if dynamic || sizes.is_empty() {
        return ThumbnailSize { width: width.clamp(1, MAX_DYNAMIC_SIDE), height: height.clamp(1, MAX_DYNAMIC_SIDE), method };
    }
    let same_method: Vec<ThumbnailSize> = sizes.iter().copied().filter(|size| size.method == method).collect();
    let candidates = if same_method.is_empty() { sizes.to_vec() } else { same_method };
    let (w, h) = (i64::from(width), i64::from(height));
    // Synapse's preference: sizes that reach the request in either dimension
    // first; then, for crop, the closest aspect ratio; then the closest area.
    let score = |size: &ThumbnailSize| {
        let (tw, th) = (i64::from(size.width), i64::from(size.height));
        let too_small = !(tw >= w || th >= h);
        let crop = method == ThumbnailMethod::Crop;
        let aspect = if crop { (w * th - h * tw).abs() } else { 0 };
        let covers = i64::from(crop && !(w <= tw && h <= th));
        let size_quality = ((w - tw) * (h - th)).abs();
        (too_small, aspect, covers, size_quality)
    };
    candidates.into_iter().min_by_key(score).unwrap_or(ThumbnailSize { width, height, method })
}

/// Decodes `source` and renders `size` as `output_type`.
pub fn render(source: &[u8], size: ThumbnailSize, output_type: &str, max_pixels: u64) -> Result<Vec<u8>, MediaError> {
    let reader = || ImageReader::new(Cursor::new(source)).with_guessed_format().map_err(|_| MediaError::CannotThumbnail);
    let (source_width, source_height) = reader()?.into_dimensions().map_err(|_| MediaError::CannotThumbnail)?;
    if u64::from(source_width) * u64::from(source_height) > max_pixels {
        return Err(MediaError::ImageTooLarge);
    }
    let mut decoder = reader()?.into_decoder().map_err(|_| MediaError::CannotThumbnail)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|_| MediaError::CannotThumbnail)?;
    image.apply_orientation(orientation);

    let thumbnail = match size.method {
        ThumbnailMethod::Scale => scale(&image, size.width, size.height),
        ThumbnailMethod::Crop => crop(&image, size.width, size.height),
    };
    encode(thumbnail, output_type)
}

/// Fits inside the box, keeping the aspect ratio, never larger than the source.
fn scale(image: &DynamicImage, max_width: u32, max_height: u32) -> DynamicImage {
    let (width, height) = (u64::from(image.width().max(1)), u64::from(image.height().max(1)));
    let (max_w, max_h) = (u64::from(max_width), u64::from(max_height));
    let (w, h) = if max_w * height < max_h * width { (max_w, (max_w * height / width).max(1)) } else { ((max_h * width / height).max(1), max_h) };
    let (w, h) = (w.min(width) as u32, h.min(height) as u32);
    image.resize_exact(w, h, FilterType::CatmullRom)
}

/// Fills the box and cuts what sticks out, centred.
fn crop(image: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    let (source_w, source_h) = (u64::from(image.width().max(1)), u64::from(image.height().max(1)));
    let (w, h) = (u64::from(width), u64::from(height));
    let (scaled_w, scaled_h) = if w * source_h > h * source_w { (w, (w * source_h / source_w).max(1)) } else { ((h * source_w / source_h).max(1), h) };
    let scaled = image.resize_exact(scaled_w as u32, scaled_h as u32, FilterType::CatmullRom);
    let left = (scaled_w.saturating_sub(w) / 2) as u32;
    let top = (scaled_h.saturating_sub(h) / 2) as u32;
    scaled.crop_imm(left, top, width.min(scaled_w as u32), height.min(scaled_h as u32))
}

fn encode(image: DynamicImage, output_type: &str) -> Result<Vec<u8>, MediaError> {
    let mut out = Cursor::new(Vec::new());
    let written = if output_type == "image/jpeg" {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
        DynamicImage::ImageRgb8(image.to_rgb8()).write_with_encoder(encoder)
    } else {
        image.write_to(&mut out, ImageFormat::Png)
    };
    written.map_err(|_| MediaError::CannotThumbnail)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Vec<ThumbnailSize> {
        [(32, 32, ThumbnailMethod::Crop), (96, 96, ThumbnailMethod::Crop), (320, 240, ThumbnailMethod::Scale), (640, 480, ThumbnailMethod::Scale), (800, 600, ThumbnailMethod::Scale)]
            .into_iter()
            .map(|(width, height, method)| ThumbnailSize { width, height, method })
            .collect()
    }

    #[test]
    fn the_nearest_configured_size_that_reaches_the_request() {
        let pick = |w, h, method| {
            let size = choose(&sizes(), false, w, h, method);
            (size.width, size.height, size.method)
        };
        assert_eq!(pick(32, 32, ThumbnailMethod::Crop), (32, 32, ThumbnailMethod::Crop));
        assert_eq!(pick(40, 40, ThumbnailMethod::Crop), (96, 96, ThumbnailMethod::Crop));
        assert_eq!(pick(500, 500, ThumbnailMethod::Crop), (96, 96, ThumbnailMethod::Crop), "the largest crop when none reaches");
        assert_eq!(pick(300, 200, ThumbnailMethod::Scale), (320, 240, ThumbnailMethod::Scale));
        assert_eq!(pick(700, 500, ThumbnailMethod::Scale), (800, 600, ThumbnailMethod::Scale));
        assert_eq!(choose(&sizes(), true, 50, 70, ThumbnailMethod::Scale), ThumbnailSize { width: 50, height: 70, method: ThumbnailMethod::Scale });
    }

    #[test]
    fn scale_keeps_the_aspect_and_never_enlarges_while_crop_fills_the_box() {
        let image = DynamicImage::new_rgb8(400, 200);
        let scaled = scale(&image, 100, 100);
        assert_eq!((scaled.width(), scaled.height()), (100, 50));
        let scaled = scale(&image, 1000, 1000);
        assert_eq!((scaled.width(), scaled.height()), (400, 200));
        let cropped = crop(&image, 64, 64);
        assert_eq!((cropped.width(), cropped.height()), (64, 64));
    }

    #[test]
    fn types_that_are_thumbnailed() {
        assert_eq!(output_type("image/png"), Some("image/png"));
        assert_eq!(output_type("image/gif"), Some("image/png"));
        assert_eq!(output_type("IMAGE/JPEG; foo=bar"), Some("image/jpeg"));
        assert_eq!(output_type("image/webp"), Some("image/jpeg"));
        assert_eq!(output_type("image/svg+xml"), None);
        assert_eq!(output_type("text/plain"), None);
    }
}
