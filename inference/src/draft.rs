//! Fast mode's JPEG decoding at a reduced scale, in the DCT domain.
//!
//! A JPEG at least twice the output size on both sides is decoded at 1/2, 1/4 or 1/8 of its
//! size — the largest reduction that still covers the output, PIL's `Image.draft` rule — by
//! libjpeg-turbo's scaled inverse DCT: each 8x8 block of coefficients becomes a 4x4, 2x2 or
//! 1x1 block of pixels, so the IDCT, chroma upsampling and colour conversion do a quarter (or
//! less) of the work, and the resize that follows reads a quarter of the pixels. Only the
//! entropy decoding stays as it is.
//!
//! The decoder is libjpeg-turbo through the `turbojpeg` crate, behind this crate's
//! `turbojpeg` feature (building it needs `cmake`, and `nasm` for its SIMD code). It is not
//! written here because no pure-Rust JPEG decoder has a scaled IDCT that pays: `zune-jpeg` has
//! none, and `jpeg-decoder`'s half-scale decode is slower than `zune-jpeg`'s full decode on
//! 640x480 photos. Without the feature, [`decode_reduced`] declines every image and fast mode
//! decodes at full size.

use image::RgbImage;

use crate::error::PreprocessError;
use crate::preprocess::DecodeLimits;

/// The reductions libjpeg's scaled IDCT offers, largest first.
const REDUCTIONS: [u32; 3] = [8, 4, 2];

/// The draft reduction (1, 2, 4 or 8) for a `width`x`height` image resized to
/// `out_width`x`out_height`: the largest `k` with both sides at least `k` times the output,
/// as PIL's `Image.draft` picks it. The reduced image, `ceil(width / k)` by
/// `ceil(height / k)`, is never smaller than the output.
///
/// ```
/// use dataflux_inference::preprocess::draft_reduction;
/// assert_eq!(draft_reduction(640, 480, 224, 224), 2); // COCO-sized: decoded at 320x240
/// assert_eq!(draft_reduction(447, 447, 224, 224), 1); // less than twice: full size
/// assert_eq!(draft_reduction(4000, 3000, 224, 224), 8);
/// assert_eq!(draft_reduction(1800, 500, 224, 224), 2); // the short side decides
/// ```
pub fn draft_reduction(width: u32, height: u32, out_width: u32, out_height: u32) -> u32 {
    let (w, h) = (u64::from(width), u64::from(height));
    let (ow, oh) = (u64::from(out_width).max(1), u64::from(out_height).max(1));
    REDUCTIONS
        .into_iter()
        .find(|&k| w >= u64::from(k) * ow && h >= u64::from(k) * oh)
        .unwrap_or(1)
}

/// Decodes a JPEG at its draft reduction for an `out_width`x`out_height` output, checking the
/// header against `limits` before anything is allocated.
///
/// `None` means "not for this path; decode at full size": not a JPEG, no reduction to make,
/// a colour space libjpeg-turbo does not turn into RGB (CMYK, YCCK), a lossless JPEG, an
/// output over the allocation limit, or any decoder complaint (the full decoder then reports a corrupt image in its own words, so the
/// error a user sees does not depend on the mode). `Some(Err)` is a header over the limits.
#[cfg(feature = "turbojpeg")]
pub(crate) fn decode_reduced(
    bytes: &[u8],
    limits: &DecodeLimits,
    out_width: u32,
    out_height: u32,
) -> Option<Result<RgbImage, PreprocessError>> {
    decode_turbo(bytes, limits, |w, h| {
        let k = draft_reduction(w, h, out_width, out_height);
        (k > 1).then_some(k)
    })
}

/// Exact mode's JPEG decoding in a build with the `turbojpeg` feature: libjpeg-turbo at full
/// scale with its defaults (accurate integer IDCT, fancy upsampling), which are Pillow's, so
/// the pixels are PIL's exactly (zune-jpeg's are up to a few levels off). `None` where
/// [`decode_reduced`] would decline (CMYK, lossless, a decoder complaint): zune-jpeg then
/// decodes the image.
#[cfg(feature = "turbojpeg")]
pub(crate) fn decode_full(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Option<Result<RgbImage, PreprocessError>> {
    decode_turbo(bytes, limits, |_, _| Some(1))
}

/// Decodes with libjpeg-turbo at the reduction `pick` chooses from the header's size
/// (`None`: decline the image).
#[cfg(feature = "turbojpeg")]
fn decode_turbo(
    bytes: &[u8],
    limits: &DecodeLimits,
    pick: impl Fn(u32, u32) -> Option<u32>,
) -> Option<Result<RgbImage, PreprocessError>> {
    use std::cell::RefCell;
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

    thread_local! {
        /// One decompressor per thread: creating one allocates libjpeg's state.
        static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    }

    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return None;
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Decompressor::new().ok();
        }
        let decompressor = slot.as_mut()?;
        let header = decompressor.read_header(bytes).ok()?;
        let colour = matches!(
            header.colorspace,
            Colorspace::YCbCr | Colorspace::Gray | Colorspace::RGB
        );
        if !colour || header.is_lossless {
            return None;
        }
        let (width, height) = (
            u32::try_from(header.width).ok()?,
            u32::try_from(header.height).ok()?,
        );
        if width > limits.max_width
            || height > limits.max_height
            || u64::from(width) * u64::from(height) > limits.max_pixels
        {
            return Some(Err(PreprocessError::TooLarge { width, height }));
        }
        let k = pick(width, height)?;
        let factor = ScalingFactor::new(1, k as usize);
        decompressor.set_scaling_factor(factor).ok()?;
        let (w, h) = (factor.scale(header.width), factor.scale(header.height));
        // Over the allocation limit: the full decoder refuses it with its own error.
        if (w as u64) * (h as u64) * 3 > limits.max_alloc_bytes {
            return None;
        }
        let mut pixels = vec![0u8; w * h * 3];
        let image = Image {
            pixels: &mut pixels[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        // Warnings (a corrupt segment, a missing end marker) come back as errors too: the
        // full decoder takes those images over.
        decompressor.decompress(bytes, image).ok()?;
        RgbImage::from_raw(u32::try_from(w).ok()?, u32::try_from(h).ok()?, pixels).map(Ok)
    })
}

/// Without the `turbojpeg` feature there is no scaled decoder: every image is decoded at full
/// size.
#[cfg(not(feature = "turbojpeg"))]
pub(crate) fn decode_reduced(
    _bytes: &[u8],
    _limits: &DecodeLimits,
    _out_width: u32,
    _out_height: u32,
) -> Option<Result<RgbImage, PreprocessError>> {
    None
}

/// Without the `turbojpeg` feature, exact mode decodes every JPEG with `zune-jpeg`.
#[cfg(not(feature = "turbojpeg"))]
pub(crate) fn decode_full(
    _bytes: &[u8],
    _limits: &DecodeLimits,
) -> Option<Result<RgbImage, PreprocessError>> {
    None
}

/// Whether this build decodes JPEGs at a reduced scale in fast mode (the `turbojpeg`
/// feature).
///
/// ```
/// let scaled = dataflux_inference::preprocess::scaled_jpeg_decoding();
/// assert_eq!(scaled, cfg!(feature = "turbojpeg"));
/// ```
pub fn scaled_jpeg_decoding() -> bool {
    cfg!(feature = "turbojpeg")
}
