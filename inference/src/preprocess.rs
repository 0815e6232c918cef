//! Image bytes to model input, as `ViTImageProcessor`, `CLIPImageProcessor` (their PIL
//! paths) and the GKE tutorial's `convert("RGB") → Resize((s, s)) → ToTensor → Normalize`
//! compute it.
//!
//! Steps, each matching PIL:
//! 1. Decode JPEG, PNG, WebP, GIF (first frame), BMP or TIFF; EXIF orientation is ignored, as
//!    the tutorial does. Header dimensions are checked against [`DecodeLimits`] before anything is
//!    allocated, and the decoder's allocations are capped too.
//! 2. Convert to 8-bit RGB as PIL's `convert("RGB")`: grey is replicated, alpha is dropped (not
//!    blended onto a background), palettes are expanded, CMYK becomes `(255-C)(255-K)/255`.
//!    16-bit RGB(A) samples keep their high byte (`v >> 8`), as PIL reads them; 16-bit grey is
//!    rounded to `v / 257`. *Difference from PIL*: PIL opens 16-bit grey PNGs as mode `I;16` and
//!    its `convert("RGB")` clips values above 255, so almost every pixel turns white; we scale
//!    instead.
//! 3. Resize ([`crate::config::Resize`]): to exactly `height`x`width` (ViT, aspect ratio not
//!    kept) or by the shortest edge (CLIP, aspect kept), with PIL's antialiased convolution
//!    filters — bilinear, bicubic, Lanczos, box, Hamming — as `Image.resize` applies them, value
//!    for value (`crate::resample`, Pillow's fixed-point convolution and pass order).
//! 4. Centre crop to the model's input when the config asks (`transformers`' `center_crop`,
//!    zero padding included).
//! 5. Rescale by `rescale_factor` (1/255) and normalize with the config's mean and std, channels
//!    first (`CHW`), f32.
//!
//! [`PreprocessMode::Fast`] trades exactness for speed; see its documentation.

use std::cell::RefCell;
use std::sync::Arc;

use fast_image_resize as fir;
use image::RgbImage;

use crate::config::{PreprocessorConfig, Resample};
use crate::decode::decode_rgb8_as;
use crate::decode::jpeg::decode_reduced;
pub use crate::decode::{
    decode_rgb8, decode_rgb8_draft, decode_rgb8_on_white, draft_reduction, scaled_jpeg_decoding,
    DecodeLimits,
};
use crate::error::{Error, PreprocessError, Result};
use crate::simd::simd_dispatch;

/// How closely to follow PIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreprocessMode {
    /// PIL's pixels: the decoders aside (JPEGs through libjpeg-turbo equal PIL's; zune-jpeg and
    /// the CMYK path can be a level off), every value is PIL's, the resize being Pillow's own
    /// fixed-point arithmetic and pass order.
    #[default]
    Exact,
    /// Faster and slightly different, for CPU-bound nodes. A JPEG at least twice the output
    /// size is decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (libjpeg-turbo's scaled
    /// IDCT, as PIL's `Image.draft` does; see [`draft_reduction`]) when the crate is built
    /// with the `turbojpeg` feature ([`scaled_jpeg_decoding`] says whether it was). Then, when
    /// both sides are still at least twice the output size, the image is shrunk by an integer
    /// factor with a box filter (PIL's `reduce`, as `reducing_gap=2.0` does), and finally
    /// resized with the configured filter. Other formats, CMYK JPEGs and small JPEGs take the
    /// exact decoder. The `fast_mode_is_close` test prints the difference from
    /// [`PreprocessMode::Exact`] on a photo-like JPEG; the `preprocess` bench reports speed
    /// and top-1 agreement.
    Fast,
}

/// A decoded, resized and normalized image, ready to be stacked into a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedImage {
    /// Pixel values, channels first (`3 x height x width`), normalized.
    pub pixels: Vec<f32>,
    /// Output height.
    pub height: u32,
    /// Output width.
    pub width: u32,
    /// Width of the decoded image (in fast mode, after any draft reduction).
    pub source_width: u32,
    /// Height of the decoded image (in fast mode, after any draft reduction).
    pub source_height: u32,
}

/// A decoded, resized and centre-cropped image in 8 bits, channels first (`3 x height x
/// width`), before normalisation: a quarter of a [`PreparedImage`]'s bytes. A GPU job uploads
/// these and normalises on the device ([`crate::PixelStager`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CroppedImage {
    /// Pixel levels, channels first (`3 x height x width`).
    pub pixels: Vec<u8>,
    /// Output height.
    pub height: u32,
    /// Output width.
    pub width: u32,
    /// Width of the decoded image (in fast mode, after any draft reduction).
    pub source_width: u32,
    /// Height of the decoded image (in fast mode, after any draft reduction).
    pub source_height: u32,
}

/// Turns encoded image bytes into [`PreparedImage`]s. Cheap to clone (shares its tables).
#[derive(Debug, Clone)]
pub struct Preprocessor {
    config: PreprocessorConfig,
    limits: DecodeLimits,
    mode: PreprocessMode,
    /// `lut[c][v]`: the normalized value of 8-bit level `v` in channel `c`.
    lut: Arc<[[f32; 256]; 3]>,
}

impl Preprocessor {
    /// A preprocessor for `config` with default limits, in [`PreprocessMode::Exact`].
    pub fn new(config: PreprocessorConfig) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                // transformers rescales in f64 and casts to f32, then normalizes in f32.
                let mut x = if config.do_rescale {
                    (v as f64 * config.rescale_factor) as f32
                } else {
                    v as f32
                };
                if config.do_rescale && config.rescale_offset {
                    x -= 1.0;
                }
                if config.do_normalize {
                    x = (x - config.image_mean[c]) / config.image_std[c];
                }
                if config.extra_std_division {
                    x /= config.image_std[c];
                }
                *out = x;
            }
        }
        Preprocessor {
            config,
            limits: DecodeLimits::default(),
            mode: PreprocessMode::Exact,
            lut: Arc::new(lut),
        }
    }

    /// Replaces the decode limits.
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Selects exact or fast mode.
    pub fn with_mode(mut self, mode: PreprocessMode) -> Self {
        self.mode = mode;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &PreprocessorConfig {
        &self.config
    }

    /// The decode limits in use.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// The mode in use.
    pub fn mode(&self) -> PreprocessMode {
        self.mode
    }

    /// Decodes, converts, resizes and normalizes one encoded image.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<PreparedImage, PreprocessError> {
        self.prepare_rgb8(&self.decode(bytes)?)
    }

    /// Decodes, converts, resizes and crops one encoded image, leaving it in 8 bits for
    /// normalisation on the model's device ([`crate::PixelStager`]).
    /// [`Preprocessor::normalize_cropped`] of the result equals [`Preprocessor::preprocess`]
    /// bit for bit.
    pub fn preprocess_u8(&self, bytes: &[u8]) -> Result<CroppedImage, PreprocessError> {
        self.crop_rgb8(&self.decode(bytes)?)
    }

    /// Steps 1 and 2: the 8-bit RGB image (in fast mode, reduced while decoding).
    fn decode(&self, bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
        let on_white = self.config.alpha_on_white;
        match self.mode {
            PreprocessMode::Exact => decode_rgb8_as(bytes, &self.limits, on_white),
            PreprocessMode::Fast => {
                match decode_reduced(bytes, &self.limits, self.config.width, self.config.height) {
                    Some(reduced) => reduced,
                    None => decode_rgb8_as(bytes, &self.limits, on_white),
                }
            }
        }
    }

    /// Resizes, crops and normalizes an already decoded RGB image (steps 3 to 5).
    pub fn prepare_rgb8(&self, rgb: &RgbImage) -> Result<PreparedImage, PreprocessError> {
        let pixels = self.with_resized(rgb, |resized, w, h| self.crop_normalize(resized, w, h))?;
        let (sw, sh) = rgb.dimensions();
        Ok(PreparedImage {
            pixels,
            height: self.config.height,
            width: self.config.width,
            source_width: sw,
            source_height: sh,
        })
    }

    /// Resizes and crops an already decoded RGB image (steps 3 and 4), channels first, in 8
    /// bits.
    pub fn crop_rgb8(&self, rgb: &RgbImage) -> Result<CroppedImage, PreprocessError> {
        let pixels = self.with_resized(rgb, |resized, w, h| self.crop_planar(resized, w, h))?;
        let (sw, sh) = rgb.dimensions();
        Ok(CroppedImage {
            pixels,
            height: self.config.height,
            width: self.config.width,
            source_width: sw,
            source_height: sh,
        })
    }

    /// Step 5 on a [`CroppedImage`]: the same values [`Preprocessor::preprocess`] gives.
    pub fn normalize_cropped(&self, image: &CroppedImage) -> PreparedImage {
        let mut pixels = vec![0f32; image.pixels.len()];
        self.normalize_planar_into(&image.pixels, &mut pixels);
        PreparedImage {
            pixels,
            height: image.height,
            width: image.width,
            source_width: image.source_width,
            source_height: image.source_height,
        }
    }

    /// Normalizes channels-first 8-bit pixels (`3 x h x w`, as a [`CroppedImage`] holds them)
    /// into `out`, which is as long as `planar`.
    pub fn normalize_planar_into(&self, planar: &[u8], out: &mut [f32]) {
        let plane = planar.len() / 3;
        for (c, (src, dst)) in planar
            .chunks_exact(plane.max(1))
            .zip(out.chunks_exact_mut(plane.max(1)))
            .take(3)
            .enumerate()
        {
            let table = &self.lut[c];
            for (o, &v) in dst.iter_mut().zip(src) {
                *o = table[usize::from(v)];
            }
        }
    }

    /// The normalized value of each 8-bit level, per channel: `lut()[c][v]`.
    pub fn lut(&self) -> &[[f32; 256]; 3] {
        &self.lut
    }

    /// Step 3, then `f` on the resized interleaved image and its size. Checks that the image
    /// is not empty and that a model input can be cut from it.
    fn with_resized<T>(
        &self,
        rgb: &RgbImage,
        f: impl FnOnce(&[u8], u32, u32) -> T,
    ) -> Result<T, PreprocessError> {
        let (sw, sh) = rgb.dimensions();
        if sw == 0 || sh == 0 {
            return Err(PreprocessError::Empty {
                width: sw,
                height: sh,
            });
        }
        let (dw, dh) = (self.config.width, self.config.height);
        let (rw, rh) = if self.config.do_resize {
            self.config.resize.output_size(sw, sh)
        } else {
            (sw, sh)
        };
        if !self.config.center_crop && (rw, rh) != (dw, dh) {
            return Err(PreprocessError::Unsupported {
                reason: format!(
                    "image is {sw}x{sh}, the model takes {dw}x{dh} and do_resize is false"
                ),
            });
        }
        if (rw, rh) == (sw, sh) {
            return Ok(f(rgb.as_raw(), rw, rh));
        }
        // The resized image lives in a per-thread buffer: only the output is allocated.
        RESIZED.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            self.resize(rgb, rw, rh, &mut buffer)?;
            Ok(f(&buffer, rw, rh))
        })
    }

    /// The 8-bit RGB image after the resize step only, before any crop (`width * height * 3`
    /// bytes, interleaved), with its size: for checking the resize against PIL's.
    pub fn resized_rgb8(&self, rgb: &RgbImage) -> Result<(Vec<u8>, u32, u32), PreprocessError> {
        let (sw, sh) = rgb.dimensions();
        if sw == 0 || sh == 0 {
            return Err(PreprocessError::Empty {
                width: sw,
                height: sh,
            });
        }
        let (rw, rh) = if self.config.do_resize {
            self.config.resize.output_size(sw, sh)
        } else {
            (sw, sh)
        };
        if (rw, rh) == (sw, sh) {
            return Ok((rgb.as_raw().clone(), rw, rh));
        }
        let mut out = Vec::new();
        self.resize(rgb, rw, rh, &mut out)?;
        Ok((out, rw, rh))
    }

    /// Normalizes the `width` x `height` image `rgb`, cropping its centre to the output size
    /// first when that differs (`transformers`' `center_crop`: the window starts at
    /// `floor((size - crop) / 2)` and reads zeros where it overhangs the image).
    fn crop_normalize(&self, rgb: &[u8], width: u32, height: u32) -> Vec<f32> {
        let (dw, dh) = (self.config.width, self.config.height);
        if (width, height) == (dw, dh) {
            return self.normalize(rgb);
        }
        let left = (i64::from(width) - i64::from(dw)).div_euclid(2);
        let top = (i64::from(height) - i64::from(dh)).div_euclid(2);
        let plane = dw as usize * dh as usize;
        let mut out = vec![0f32; 3 * plane];
        let (w, h) = (i64::from(width), i64::from(height));
        for y in 0..dh as usize {
            let sy = top + y as i64;
            for x in 0..dw as usize {
                let sx = left + x as i64;
                let o = y * dw as usize + x;
                for c in 0..3 {
                    let v = if (0..h).contains(&sy) && (0..w).contains(&sx) {
                        rgb[((sy * w + sx) * 3) as usize + c]
                    } else {
                        0
                    };
                    out[c * plane + o] = self.lut[c][usize::from(v)];
                }
            }
        }
        out
    }

    /// Crops the centre of the `width` x `height` interleaved image `rgb` to the output size
    /// as [`Preprocessor::crop_normalize`] does (zeros where the window overhangs), into three
    /// 8-bit planes.
    fn crop_planar(&self, rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
        let (dw, dh) = (self.config.width as usize, self.config.height as usize);
        let plane = dw * dh;
        let mut out = vec![0u8; 3 * plane];
        let left = (i64::from(width) - dw as i64).div_euclid(2);
        let top = (i64::from(height) - dh as i64).div_euclid(2);
        let (w, h) = (i64::from(width), i64::from(height));
        for y in 0..dh {
            let sy = top + y as i64;
            if !(0..h).contains(&sy) {
                continue;
            }
            for x in 0..dw {
                let sx = left + x as i64;
                if !(0..w).contains(&sx) {
                    continue;
                }
                let s = ((sy * w + sx) * 3) as usize;
                let o = y * dw + x;
                out[o] = rgb[s];
                out[plane + o] = rgb[s + 1];
                out[2 * plane + o] = rgb[s + 2];
            }
        }
        out
    }

    /// Resizes `rgb` to `dw` x `dh` into `out` (resized to fit).
    fn resize(
        &self,
        rgb: &RgbImage,
        dw: u32,
        dh: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), PreprocessError> {
        let (sw, sh) = rgb.dimensions();
        let resize_err = |reason: String| PreprocessError::Resize {
            width: sw,
            height: sh,
            reason,
        };
        let reduced;
        let (src, w, h): (&[u8], u32, u32) = match self.mode {
            PreprocessMode::Fast => {
                let factor = (sw / dw.saturating_mul(2)).min(sh / dh.saturating_mul(2));
                if factor >= 2 {
                    reduced = box_reduce(rgb.as_raw(), sw, sh, factor);
                    (&reduced.0, reduced.1, reduced.2)
                } else {
                    (rgb.as_raw(), sw, sh)
                }
            }
            PreprocessMode::Exact => (rgb.as_raw(), sw, sh),
        };
        // fast_image_resize implements Pillow's convolution, but with 16-bit coefficients and
        // the vertical pass first: a level off now and then (on ~15% of the pixels of a ViT
        // squash resize), and up to 20+ levels where bicubic's overshoot is clipped between
        // the passes. Both modes run Pillow's own arithmetic (`crate::resample`) for every
        // convolution filter, so that the pixels are PIL's and fast mode differs from exact
        // mode only by its reduced decoding (it costs ~30% of exact mode's rate on 640x480
        // photos: benches/RESULTS.md); fast_image_resize keeps nearest-neighbour.
        if self.config.resample != Resample::Nearest {
            crate::resample::resize_rgb8(
                src,
                (w as usize, h as usize),
                (dw as usize, dh as usize),
                self.config.resample,
                out,
            );
            return Ok(());
        }
        let alg = match self.config.resample {
            Resample::Nearest => fir::ResizeAlg::Nearest,
            Resample::Lanczos => fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
            Resample::Bilinear => fir::ResizeAlg::Convolution(fir::FilterType::Bilinear),
            Resample::Bicubic => fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom),
            Resample::Box => fir::ResizeAlg::Convolution(fir::FilterType::Box),
            Resample::Hamming => fir::ResizeAlg::Convolution(fir::FilterType::Hamming),
        };
        let src = fir::images::ImageRef::new(w, h, src, fir::PixelType::U8x3)
            .map_err(|e| resize_err(e.to_string()))?;
        out.resize(dw as usize * dh as usize * 3, 0);
        let mut dst = fir::images::Image::from_slice_u8(dw, dh, out, fir::PixelType::U8x3)
            .map_err(|e| resize_err(e.to_string()))?;
        let options = fir::ResizeOptions::new().resize_alg(alg);
        RESIZER.with(|r| {
            r.borrow_mut()
                .resize(&src, &mut dst, &options)
                .map_err(|e| resize_err(e.to_string()))
        })
    }

    fn normalize(&self, rgb: &[u8]) -> Vec<f32> {
        let mut out = vec![0f32; rgb.len()];
        normalize_into(&self.lut, rgb, &mut out);
        out
    }
}

simd_dispatch! {
    /// Looks interleaved RGB up in the per-channel tables, writing three planes (CHW) to `out`
    /// (as long as `rgb`).
    fn normalize_into(lut: &[[f32; 256]; 3], rgb: &[u8], out: &mut [f32]) => normalize_body
}

#[inline(always)]
fn normalize_body(lut: &[[f32; 256]; 3], rgb: &[u8], out: &mut [f32]) {
    let plane = rgb.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let [lr, lg, lb] = lut;
    // Iterators instead of indices: no bounds checks in the loop (a u8 always indexes a
    // 256-entry table).
    for (px, (r, (g, b))) in rgb
        .chunks_exact(3)
        .zip(r.iter_mut().zip(g.iter_mut().zip(b.iter_mut())))
    {
        *r = lr[usize::from(px[0])];
        *g = lg[usize::from(px[1])];
        *b = lb[usize::from(px[2])];
    }
}

thread_local! {
    /// One resizer per thread: it keeps scratch buffers between calls.
    static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
    /// The resized 8-bit image, before normalization; reused by each call on this thread.
    static RESIZED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Averages `factor`x`factor` blocks (PIL's `Image.reduce`); the last partial row and column of
/// blocks average what they have.
fn box_reduce(src: &[u8], w: u32, h: u32, factor: u32) -> (Vec<u8>, u32, u32) {
    let (w, h, f) = (w as usize, h as usize, factor as usize);
    let (ow, oh) = (w.div_ceil(f), h.div_ceil(f));
    let mut sums = vec![0u32; ow * 3];
    let mut out = vec![0u8; ow * oh * 3];
    for (oy, out_row) in out.chunks_exact_mut(ow * 3).enumerate() {
        sums.iter_mut().for_each(|s| *s = 0);
        let y0 = oy * f;
        let y1 = (y0 + f).min(h);
        for row in src[y0 * w * 3..y1 * w * 3].chunks_exact(w * 3) {
            for (x, px) in row.chunks_exact(3).enumerate() {
                let o = (x / f) * 3;
                sums[o] += px[0] as u32;
                sums[o + 1] += px[1] as u32;
                sums[o + 2] += px[2] as u32;
            }
        }
        let rows = (y1 - y0) as u32;
        for ox in 0..ow {
            let cols = ((ox * f + f).min(w) - ox * f) as u32;
            let n = rows * cols;
            for c in 0..3 {
                out_row[ox * 3 + c] = ((sums[ox * 3 + c] + n / 2) / n) as u8;
            }
        }
    }
    (out, ow as u32, oh as u32)
}

/// Checks that every image of a batch holds `3 x size x size` values (`lens`, in order);
/// returns that number, or an [`Error::InputSize`] naming the first image that does not.
pub(crate) fn check_input_sizes(lens: impl Iterator<Item = usize>, size: usize) -> Result<usize> {
    let per_image = 3 * size * size;
    for (index, found) in lens.enumerate() {
        if found != per_image {
            return Err(Error::InputSize {
                index,
                expected: per_image,
                found,
                size,
            });
        }
    }
    Ok(per_image)
}

/// Stacks prepared `size` x `size` images into a `(batch, 3, size, size)` f32 tensor on
/// `device`; an image of another size is an [`Error::InputSize`] naming its position.
pub fn batch_tensor(
    images: &[PreparedImage],
    size: usize,
    device: &candle_core::Device,
) -> Result<candle_core::Tensor> {
    let per_image = check_input_sizes(images.iter().map(|i| i.pixels.len()), size)?;
    let mut data = Vec::with_capacity(per_image * images.len());
    for image in images {
        data.extend_from_slice(&image.pixels);
    }
    Ok(candle_core::Tensor::from_vec(
        data,
        (images.len(), 3, size, size),
        device,
    )?)
}
