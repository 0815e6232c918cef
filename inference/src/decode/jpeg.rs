//! The libjpeg-turbo path: JPEGs decoded as PIL decodes them, at full scale (exact mode) or,
//! in fast mode, at a reduced scale in the DCT domain.
//!
//! A JPEG at least twice the output size on both sides is decoded at 1/2, 1/4 or 1/8 of its
//! size — the largest reduction that still covers the output, PIL's `Image.draft` rule — by
//! libjpeg-turbo's scaled inverse DCT: each 8x8 block of coefficients becomes a 4x4, 2x2 or
//! 1x1 block of pixels, so the IDCT, chroma upsampling and colour conversion do a quarter (or
//! less) of the work, and the resize that follows reads a quarter of the pixels. Only the
//! entropy decoding stays as it is.
//!
//! The decoder is libjpeg-turbo's, behind this crate's `turbojpeg` feature, built from source
//! by the `mozjpeg-sys` crate with the `cc` crate alone: no cmake, and its SIMD code where
//! `nasm` is installed (without nasm the C code, same pixels, slower). mozjpeg is libjpeg-turbo
//! with a better *encoder*; its decoder is libjpeg-turbo's (accurate integer IDCT, fancy
//! upsampling: PIL's defaults), and the parity tests hold it to PIL's pixels. It is not
//! written here because no pure-Rust JPEG decoder has a scaled IDCT that pays: `zune-jpeg` has
//! none, and `jpeg-decoder`'s half-scale decode is slower than `zune-jpeg`'s full decode on
//! 640x480 photos. Without the feature, [`decode_reduced`] declines every image and fast mode
//! decodes at full size.

use image::RgbImage;

use super::DecodeLimits;
use crate::error::PreprocessError;

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
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return None;
    }
    // libjpeg reports a fatal error (and here, a warning too) by unwinding out of its error
    // handler (`resume_unwind`, so no panic message is printed); every call into it stays inside
    // this `catch_unwind`, and an unwind means "decline".
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_turbo_unguarded(bytes, limits, pick)
    }))
    .ok()
    .flatten()
}

#[cfg(feature = "turbojpeg")]
fn decode_turbo_unguarded(
    bytes: &[u8],
    limits: &DecodeLimits,
    pick: impl Fn(u32, u32) -> Option<u32>,
) -> Option<Result<RgbImage, PreprocessError>> {
    use mozjpeg_sys::J_COLOR_SPACE as Cs;

    let mut decompress = mozjpeg::Decompress::with_err(strict_error_manager())
        .from_mem(bytes)
        .ok()?;
    let colour = matches!(
        decompress.color_space(),
        Cs::JCS_YCbCr | Cs::JCS_GRAYSCALE | Cs::JCS_RGB
    );
    if !colour {
        return None;
    }
    let (width, height) = (
        u32::try_from(decompress.width()).ok()?,
        u32::try_from(decompress.height()).ok()?,
    );
    if width > limits.max_width
        || height > limits.max_height
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Some(Err(PreprocessError::TooLarge { width, height }));
    }
    let k = pick(width, height)?;
    // libjpeg scales by scale_num / 8: 1/k is (8 / k) / 8.
    decompress.scale(u8::try_from(8 / k.clamp(1, 8)).ok()?);
    let mut started = decompress.rgb().ok()?;
    let (w, h) = (started.width(), started.height());
    // Over the allocation limit: the full decoder refuses it with its own error.
    if (w as u64) * (h as u64) * 3 > limits.max_alloc_bytes {
        return None;
    }
    let mut pixels = vec![0u8; w * h * 3];
    let read = started.read_scanlines_into(&mut pixels[..]).ok()?.len();
    if read != pixels.len() {
        return None;
    }
    started.finish().ok()?;
    RgbImage::from_raw(u32::try_from(w).ok()?, u32::try_from(h).ok()?, pixels).map(Ok)
}

/// libjpeg's standard error manager, with fatal errors and warnings (a corrupt segment, data
/// missing before the end marker) both unwinding: such an image is declined, and the full
/// decoder then reports it in its own words, so the error a user sees does not depend on the
/// mode.
#[cfg(feature = "turbojpeg")]
fn strict_error_manager() -> mozjpeg_sys::jpeg_error_mgr {
    use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error};
    use std::os::raw::c_int;

    extern "C-unwind" fn fail(_cinfo: &mut jpeg_common_struct) {
        // Not `panic!`: no panic hook runs, nothing is printed.
        std::panic::resume_unwind(Box::new("libjpeg error"));
    }
    extern "C-unwind" fn message(_cinfo: &mut jpeg_common_struct, level: c_int) {
        // Level -1 is a warning: the data is corrupt. Levels 0 and up are trace messages.
        if level < 0 {
            std::panic::resume_unwind(Box::new("libjpeg warning"));
        }
    }
    // SAFETY: jpeg_error_mgr is a plain C struct of integers, pointers and function pointers,
    // for which all-zero is a valid value; jpeg_std_error fills every field.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(fail);
    err.emit_message = Some(message);
    err
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
