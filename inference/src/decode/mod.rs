//! Image bytes to 8-bit RGB, as PIL's `Image.open(…).convert("RGB")` gives them.
//!
//! JPEG, PNG, WebP, GIF (first frame), BMP and TIFF are recognised by their content. Header
//! dimensions are checked against [`DecodeLimits`] before anything is allocated, and the
//! decoder's allocations are capped too. JPEGs go through libjpeg-turbo's decoder where the
//! build has it (`jpeg`, feature `turbojpeg`), PIL's own, so the pixels are PIL's exactly;
//! everything else through the `image` crate. See [`crate::preprocess`] for the conversion
//! rules (grey, alpha, palettes, CMYK, 16-bit samples).

pub(crate) mod jpeg;

use std::io::Cursor;

use image::{ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use crate::error::PreprocessError;
pub use jpeg::{draft_reduction, scaled_jpeg_decoding};

/// Limits that refuse decompression bombs before they are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest accepted `width * height` (PIL refuses above 2 × 89,478,485; we use PIL's
    /// warning threshold, 89,478,485, as the refusal point).
    pub max_pixels: u64,
    /// Largest single allocation the decoder may make, in bytes.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 65_535,
            max_height: 65_535,
            max_pixels: 89_478_485,
            max_alloc_bytes: 1 << 30,
        }
    }
}

/// Chainable setters, one per field: callers build it as `DecodeLimits::default().with_…(…)`, so
/// that new fields do not break them.
impl DecodeLimits {
    /// Sets [`max_width`](Self::max_width): largest accepted width in pixels.
    #[must_use]
    pub fn with_max_width(mut self, max_width: u32) -> Self {
        self.max_width = max_width;
        self
    }

    /// Sets [`max_height`](Self::max_height): largest accepted height in pixels.
    #[must_use]
    pub fn with_max_height(mut self, max_height: u32) -> Self {
        self.max_height = max_height;
        self
    }

    /// Sets [`max_pixels`](Self::max_pixels): largest accepted `width * height` (PIL refuses above
    /// 2 × 89,478,485; we use PIL's warning threshold, 89,478,485, as the refusal point).
    #[must_use]
    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    /// Sets [`max_alloc_bytes`](Self::max_alloc_bytes): largest single allocation the decoder may
    /// make, in bytes.
    #[must_use]
    pub fn with_max_alloc_bytes(mut self, max_alloc_bytes: u64) -> Self {
        self.max_alloc_bytes = max_alloc_bytes;
        self
    }
}

/// Fast mode's decoding: a JPEG at least twice `out_width`x`out_height` is decoded at its
/// [`draft_reduction`] in the DCT domain where this build can ([`scaled_jpeg_decoding`]);
/// everything else as [`decode_rgb8`] does. Errors and limits are those of [`decode_rgb8`].
pub fn decode_rgb8_draft(
    bytes: &[u8],
    limits: &DecodeLimits,
    out_width: u32,
    out_height: u32,
) -> Result<RgbImage, PreprocessError> {
    match jpeg::decode_reduced(bytes, limits, out_width, out_height) {
        Some(reduced) => reduced,
        None => decode_rgb8(bytes, limits),
    }
}

/// Decodes any supported format to 8-bit RGB as PIL's `convert("RGB")` does (see the module
/// documentation), refusing images beyond `limits`.
pub fn decode_rgb8(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, PreprocessError> {
    decode_rgb8_as(bytes, limits, false)
}

/// [`decode_rgb8`], but an image with alpha is composited onto opaque white first, as
/// `transformers`' `convert_to_rgb` does (`Image.alpha_composite` on a white RGBA canvas, in
/// PIL's fixed-point arithmetic).
pub fn decode_rgb8_on_white(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<RgbImage, PreprocessError> {
    decode_rgb8_as(bytes, limits, true)
}

pub(crate) fn decode_rgb8_as(
    bytes: &[u8],
    limits: &DecodeLimits,
    alpha_on_white: bool,
) -> Result<RgbImage, PreprocessError> {
    let format = image::guess_format(bytes).map_err(|_| PreprocessError::UnknownFormat {
        magic: bytes.iter().take(8).copied().collect(),
    })?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    ) {
        return Err(PreprocessError::Unsupported {
            reason: format!("{format:?} images are not decoded"),
        });
    }
    // PIL refuses a JPEG that ends before its end-of-image marker ("image file is truncated");
    // zune-jpeg would fill the missing rows with grey. 0xFFD9 cannot occur in entropy-coded
    // data (0xFF is always stuffed there), so its absence means truncation.
    if format == ImageFormat::Jpeg && !bytes.windows(2).rev().any(|w| w == [0xFF, 0xD9]) {
        return Err(PreprocessError::Decode {
            reason: "truncated JPEG: no end-of-image marker".into(),
        });
    }
    // With the `turbojpeg` feature libjpeg-turbo, PIL's own decoder, decodes JPEGs: PIL's
    // pixels exactly. Without it (or for what it declines) zune-jpeg does, a few levels off.
    if format == ImageFormat::Jpeg {
        if let Some(decoded) = jpeg::decode_full(bytes, limits) {
            return decoded;
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // Dimensions are checked below, from the header, so that the error can name them.
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(image_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(e, limits))?;
    let (width, height) = decoder.dimensions();
    if width > limits.max_width
        || height > limits.max_height
        || width as u64 * height as u64 > limits.max_pixels
    {
        return Err(PreprocessError::TooLarge { width, height });
    }
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width, height });
    }
    // Not every decoder honours `max_alloc`; the decoded buffer is the big allocation.
    if decoder.total_bytes() > limits.max_alloc_bytes {
        return Err(PreprocessError::AllocationLimit {
            limit_bytes: limits.max_alloc_bytes,
        });
    }
    let image = image::DynamicImage::from_decoder(decoder).map_err(|e| match e {
        ImageError::Limits(ref l)
            if matches!(l.kind(), image::error::LimitErrorKind::DimensionError) =>
        {
            PreprocessError::TooLarge { width, height }
        }
        e => map_image_error(e, limits),
    })?;
    if alpha_on_white && image.color().has_alpha() {
        return Ok(composite_on_white(&image));
    }
    Ok(match image {
        // PIL reads 16-bit RGB(A) PNGs with libpng's strip-16: the high byte of each sample.
        image::DynamicImage::ImageRgb16(_) | image::DynamicImage::ImageRgba16(_) => {
            high_bytes_rgb(&image)
        }
        image => image.into_rgb8(),
    })
}

/// The high byte of each colour sample of a 16-bit RGB(A) image, alpha dropped (PIL's
/// `convert("RGB")` of such a PNG).
fn high_bytes_rgb(image: &image::DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let rgba = image.to_rgba16();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in rgba.pixels() {
        out.extend(px.0[..3].iter().map(|&v| (v >> 8) as u8));
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// PIL's `Image.alpha_composite(white, image)` then `convert("RGB")`: with an opaque
/// destination its integer formula reduces to `div255((c * a + 255 * (255 - a)) * 128 +
/// 128 * 128) >> 7`, where `div255(x) = ((x >> 8) + x) >> 8`.
fn composite_on_white(image: &image::DynamicImage) -> RgbImage {
    // 16-bit alpha images go through 8 bits first, as PIL's RGBA conversion does.
    let rgba = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in rgba.as_raw().chunks_exact(4) {
        let a = u32::from(px[3]);
        for &c in &px[..3] {
            let v = match a {
                0 => 255,
                _ => {
                    let tmp = (u32::from(c) * a + 255 * (255 - a)) * 128 + (0x80 << 7);
                    ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
                }
            };
            out.push(v);
        }
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

fn map_image_error(e: ImageError, limits: &DecodeLimits) -> PreprocessError {
    match e {
        ImageError::Limits(l) => match l.kind() {
            image::error::LimitErrorKind::InsufficientMemory => PreprocessError::AllocationLimit {
                limit_bytes: limits.max_alloc_bytes,
            },
            _ => PreprocessError::Unsupported {
                reason: l.to_string(),
            },
        },
        ImageError::Unsupported(u) => PreprocessError::Unsupported {
            reason: u.to_string(),
        },
        other => PreprocessError::Decode {
            reason: other.to_string(),
        },
    }
}
