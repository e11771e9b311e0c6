//! Thumbnails: which size answers a request, and making it with the `image`
//! crate. Sizes, methods and output types follow Synapse: a request gets the
//! nearest configured size (or exactly what it asked for with
//! `dynamic_thumbnails`); JPEG and WebP sources give JPEG thumbnails, PNG and
//! GIF give PNG; neither `scale` nor `crop` ever enlarges (the
//! specification forbids it): a crop cuts the largest centred rectangle of
//! the box's shape out of the source, then shrinks it to the box if larger.

use std::{
    io::{BufReader, Cursor},
    path::Path,
};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, imageops::FilterType, metadata::Orientation};

use weft_core::config::{ThumbnailMethod, ThumbnailSize};

use super::MediaError;

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

/// The size of the image in the file at `path` as it is shown (its EXIF
/// orientation applied), read from its header without decoding it.
pub fn shown_dimensions(path: &Path) -> Result<(u32, u32), MediaError> {
    let file = std::fs::File::open(path)?;
    let reader = ImageReader::new(BufReader::new(file)).with_guessed_format().map_err(|_| MediaError::CannotThumbnail)?;
    let mut decoder = reader.into_decoder().map_err(|_| MediaError::CannotThumbnail)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (width, height) = decoder.dimensions();
    Ok(if quarter_turn(orientation) { (height, width) } else { (width, height) })
}

fn quarter_turn(orientation: Orientation) -> bool {
    matches!(orientation, Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH)
}

/// The size a thumbnail of `size` of a `source`-sized image comes out at:
/// never larger than the source in either dimension.
pub fn output_size(size: ThumbnailSize, source: (u32, u32)) -> (u32, u32) {
    match size.method {
        ThumbnailMethod::Scale => fitted(source, size.width, size.height),
        ThumbnailMethod::Crop => {
            let (_, _, crop_width, crop_height) = crop_rect(source, size.width, size.height);
            if crop_width >= size.width { (size.width, size.height) } else { (crop_width, crop_height) }
        }
    }
}

/// The thumbnail that answers a request for `width` x `height` by `method`
/// of an image of `source` size: the configured size whose real output is
/// best by Synapse's measure (sizes that reach the request in either
/// dimension first; for crop, then the closest aspect ratio and one that
/// covers the request; then the closest area), or exactly the request with
/// `dynamic_thumbnails`.
pub fn choose(sizes: &[ThumbnailSize], dynamic: bool, width: u32, height: u32, method: ThumbnailMethod, source: (u32, u32)) -> ThumbnailSize {
    if dynamic || sizes.is_empty() {
        return ThumbnailSize { width: width.clamp(1, MAX_DYNAMIC_SIDE), height: height.clamp(1, MAX_DYNAMIC_SIDE), method };
    }
    let same_method: Vec<ThumbnailSize> = sizes.iter().copied().filter(|size| size.method == method).collect();
    let candidates = if same_method.is_empty() { sizes.to_vec() } else { same_method };
    let (w, h) = (i64::from(width), i64::from(height));
    let crop = method == ThumbnailMethod::Crop;
    let score = |size: &ThumbnailSize| {
        let (tw, th) = output_size(*size, source);
        let (tw, th) = (i64::from(tw), i64::from(th));
        let too_small = !(tw >= w || th >= h);
        let aspect = if crop { (w * th - h * tw).abs() } else { 0 };
        let covers = i64::from(crop && !(w <= tw && h <= th));
        let size_quality = ((w - tw) * (h - th)).abs();
        (too_small, aspect, covers, size_quality)
    };
    candidates.into_iter().min_by_key(score).unwrap_or(ThumbnailSize { width, height, method })
}

/// Decodes `source` and renders `size` as `output_type`.
pub fn render(source: &[u8], size: ThumbnailSize, output_type: &str) -> Result<Vec<u8>, MediaError> {
    let reader = ImageReader::new(Cursor::new(source)).with_guessed_format().map_err(|_| MediaError::CannotThumbnail)?;
    let mut decoder = reader.into_decoder().map_err(|_| MediaError::CannotThumbnail)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|_| MediaError::CannotThumbnail)?;
    image.apply_orientation(orientation);

    let source_size = (image.width(), image.height());
    let (width, height) = output_size(size, source_size);
    let thumbnail = match size.method {
        ThumbnailMethod::Scale => image.resize_exact(width, height, FilterType::CatmullRom),
        ThumbnailMethod::Crop => {
            let (left, top, crop_width, crop_height) = crop_rect(source_size, size.width, size.height);
            let cropped = image.crop_imm(left, top, crop_width, crop_height);
            if (crop_width, crop_height) == (width, height) { cropped } else { cropped.resize_exact(width, height, FilterType::CatmullRom) }
        }
    };
    encode(thumbnail, output_type)
}

/// The box fitted inside `source`'s aspect ratio, no larger than `source`.
fn fitted(source: (u32, u32), max_width: u32, max_height: u32) -> (u32, u32) {
    let (width, height) = (u64::from(source.0.max(1)), u64::from(source.1.max(1)));
    let (max_w, max_h) = (u64::from(max_width), u64::from(max_height));
    let (w, h) = if max_w * height < max_h * width { (max_w, (max_w * height / width).max(1)) } else { ((max_h * width / height).max(1), max_h) };
    (w.min(width) as u32, h.min(height) as u32)
}

/// The largest centred rectangle of `width`:`height` inside `source`, as
/// `(left, top, width, height)`: what a crop keeps before any shrinking.
fn crop_rect(source: (u32, u32), width: u32, height: u32) -> (u32, u32, u32, u32) {
    let (source_w, source_h) = (u64::from(source.0.max(1)), u64::from(source.1.max(1)));
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let (crop_w, crop_h) = if w * source_h > h * source_w { (source_w, (source_w * h / w).max(1)) } else { ((source_h * w / h).max(1), source_h) };
    (((source_w - crop_w) / 2) as u32, ((source_h - crop_h) / 2) as u32, crop_w as u32, crop_h as u32)
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
        [
            (32, 32, ThumbnailMethod::Crop),
            (96, 96, ThumbnailMethod::Crop),
            (320, 240, ThumbnailMethod::Scale),
            (640, 480, ThumbnailMethod::Scale),
            (800, 600, ThumbnailMethod::Scale),
        ]
        .into_iter()
        .map(|(width, height, method)| ThumbnailSize { width, height, method })
        .collect()
    }

    #[test]
    fn the_configured_size_whose_output_best_fits_the_request() {
        let pick = |w, h, method, source| {
            let size = choose(&sizes(), false, w, h, method, source);
            (size.width, size.height, size.method)
        };
        let big = (1000, 1000);
        assert_eq!(pick(32, 32, ThumbnailMethod::Crop, big), (32, 32, ThumbnailMethod::Crop));
        assert_eq!(pick(40, 40, ThumbnailMethod::Crop, big), (96, 96, ThumbnailMethod::Crop));
        assert_eq!(pick(500, 500, ThumbnailMethod::Crop, big), (96, 96, ThumbnailMethod::Crop), "the largest crop when none reaches");
        assert_eq!(pick(300, 200, ThumbnailMethod::Scale, big), (320, 240, ThumbnailMethod::Scale));
        assert_eq!(pick(700, 500, ThumbnailMethod::Scale, big), (800, 600, ThumbnailMethod::Scale));
        // A 2:1 image: 320x240 would give 320x160, shorter than asked; a larger box gives the whole image.
        let (w, h, _) = pick(300, 200, ThumbnailMethod::Scale, (400, 200));
        assert_eq!(output_size(ThumbnailSize { width: w, height: h, method: ThumbnailMethod::Scale }, (400, 200)), (400, 200));
        assert_eq!(choose(&sizes(), true, 50, 70, ThumbnailMethod::Scale, big), ThumbnailSize { width: 50, height: 70, method: ThumbnailMethod::Scale });
    }

    #[test]
    fn neither_method_enlarges_and_crop_keeps_the_box_shape() {
        let box_of = |width, height, method| ThumbnailSize { width, height, method };
        assert_eq!(output_size(box_of(100, 100, ThumbnailMethod::Scale), (400, 200)), (100, 50));
        assert_eq!(output_size(box_of(1000, 1000, ThumbnailMethod::Scale), (400, 200)), (400, 200));
        assert_eq!(output_size(box_of(64, 64, ThumbnailMethod::Crop), (400, 200)), (64, 64));
        assert_eq!(output_size(box_of(32, 32, ThumbnailMethod::Crop), (20, 10)), (10, 10), "a small avatar is cut, not enlarged");
        // A needle-thin image: the crop is its own width, nothing is allocated past the source.
        assert_eq!(crop_rect((1, 30_000_000), 96, 96), (0, 14_999_999, 1, 1));
        assert_eq!(output_size(box_of(96, 96, ThumbnailMethod::Crop), (1, 30_000_000)), (1, 1));
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
