//! Pillow's 8-bit convolution resampler (`libImaging/Resample.c`), reproduced value for value:
//! the same filters and supports, coefficients normalised in f64 and rounded to 22-bit fixed
//! point as `normalize_coeffs_8bpc` rounds them, the same accumulator start (half a unit) and
//! clipping, and two one-axis passes with the intermediate clipped to 8 bits.
//!
//! Written here because no crate reproduces Pillow exactly: fast_image_resize implements the
//! same convolution but with 16-bit coefficients (a level off now and then) and runs the
//! vertical pass first on 8-bit images always (with bicubic's negative lobes, the clipping
//! between the passes then differs by up to 20+ levels on small images).
//!
//! The pass order is Pillow 13's: horizontal first, unless the height shrinks by more than
//! twice as many pixels as the width does (`in_h - out_h > 2 * (in_w - out_w)`, strictly, and
//! the height shrinks at all), when the vertical pass runs first over the whole image
//! ([`vertical_first`]). That rule came with Pillow 13.0 (pull request 9549, "resize vertically
//! first if height is scaled down significantly more than width"); it was read from the
//! wheel's `ImagingResample` and confirmed on 3,719 shapes, every one of which only one order
//! reproduces.

use crate::config::Resample;

/// Fixed-point precision of the coefficients (Pillow's `PRECISION_BITS`, `32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// A filter and its support, as Pillow defines them.
fn filter(resample: Resample) -> (fn(f64) -> f64, f64) {
    match resample {
        Resample::Box | Resample::Nearest => (box_filter, 0.5),
        Resample::Bilinear => (bilinear_filter, 1.0),
        Resample::Hamming => (hamming_filter, 1.0),
        Resample::Bicubic => (bicubic_filter, 2.0),
        Resample::Lanczos => (lanczos_filter, 3.0),
    }
}

fn box_filter(x: f64) -> f64 {
    if x > -0.5 && x <= 0.5 {
        1.0
    } else {
        0.0
    }
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn hamming_filter(x: f64) -> f64 {
    let x = x.abs();
    if x == 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let x = x * std::f64::consts::PI;
    // Pillow writes the constants as C floats (`0.54f`, `0.46f`).
    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
}

fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

fn lanczos_filter(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// The fixed-point coefficients of one axis: for output `i`, the inputs
/// `start[i] .. start[i] + len[i]` weighted by `k[i * ksize ..]`.
struct Coefficients {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
}

impl Coefficients {
    /// Pillow's `precompute_coeffs` over the whole input, then `normalize_coeffs_8bpc`.
    fn new(in_size: usize, out_size: usize, resample: Resample) -> Self {
        let (f, support) = filter(resample);
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = support * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / filterscale;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut k = vec![0i32; out_size * ksize];
        let mut w = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero, then Pillow clamps.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, slot) in w.iter_mut().enumerate().take(n) {
                let v = f((x as f64 + xmin as f64 - center + 0.5) * inv);
                *slot = v;
                ww += v;
            }
            let row = &mut k[xx * ksize..xx * ksize + ksize];
            for (x, out) in row.iter_mut().enumerate().take(n) {
                let v = if ww != 0.0 { w[x] / ww } else { w[x] };
                let scaled = v * f64::from(1u32 << PRECISION_BITS);
                *out = if v < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                };
            }
            start.push(xmin);
            len.push(n);
        }
        Coefficients {
            ksize,
            start,
            len,
            k,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let k = &self.k[i * self.ksize..i * self.ksize + self.len[i]];
        (self.start[i], k)
    }
}

#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Resizes rows `rows` of the interleaved RGB image `src` (`w` wide) horizontally to `dw`,
/// into `out`.
fn horizontal(
    src: &[u8],
    w: usize,
    rows: std::ops::Range<usize>,
    c: &Coefficients,
    dw: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.resize(rows.len() * dw * 3, 0);
    for (row_out, y) in out.chunks_exact_mut(dw * 3).zip(rows) {
        let row = &src[y * w * 3..(y + 1) * w * 3];
        for (xx, px) in row_out.chunks_exact_mut(3).enumerate() {
            let (xmin, k) = c.taps(xx);
            let (mut a0, mut a1, mut a2) = (HALF, HALF, HALF);
            for (p, &kk) in row[xmin * 3..(xmin + k.len()) * 3].chunks_exact(3).zip(k) {
                a0 += i32::from(p[0]) * kk;
                a1 += i32::from(p[1]) * kk;
                a2 += i32::from(p[2]) * kk;
            }
            px[0] = clip8(a0);
            px[1] = clip8(a1);
            px[2] = clip8(a2);
        }
    }
}

/// Resizes the interleaved RGB image `src` (`w` wide; its first row is input row `offset`)
/// vertically to `dh` rows into `out`.
fn vertical(src: &[u8], w: usize, offset: usize, c: &Coefficients, dh: usize, out: &mut Vec<u8>) {
    let stride = w * 3;
    out.clear();
    out.resize(dh * stride, 0);
    let mut acc = vec![0i32; stride];
    for (yy, row_out) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, k) = c.taps(yy);
        acc.iter_mut().for_each(|a| *a = HALF);
        for (t, &kk) in k.iter().enumerate() {
            let y = ymin + t - offset;
            let row = &src[y * stride..(y + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * kk;
            }
        }
        for (o, &a) in row_out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
}

/// Whether Pillow 13 runs the vertical pass first for a resize that needs both passes: when
/// the height shrinks, and by more than twice as many pixels as the width does.
///
/// Ties stay horizontal-first (33x57 to 32x55: 2 rows against 2 x 1 column).
fn vertical_first((w, h): (usize, usize), (dw, dh): (usize, usize)) -> bool {
    let dy = h as i64 - dh as i64;
    let dx = w as i64 - dw as i64;
    dy > 0 && dy > 2 * dx
}

thread_local! {
    /// The first pass's output, reused by each two-pass resize on this thread.
    static INTERMEDIATE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Resizes the interleaved 8-bit RGB image `src` (`w` x `h`) to `dw` x `dh` into `out`, as
/// Pillow's `Image.resize(..., resample)` does for an RGB image (no `reducing_gap`).
pub(crate) fn resize_rgb8(
    src: &[u8],
    (w, h): (usize, usize),
    (dw, dh): (usize, usize),
    resample: Resample,
    out: &mut Vec<u8>,
) {
    let need_h = dw != w;
    let need_v = dh != h;
    match (need_h, need_v) {
        (false, false) => {
            out.clear();
            out.extend_from_slice(src);
        }
        (true, false) => horizontal(src, w, 0..h, &Coefficients::new(w, dw, resample), dw, out),
        (false, true) => vertical(src, w, 0, &Coefficients::new(h, dh, resample), dh, out),
        (true, true) => {
            let ch = Coefficients::new(w, dw, resample);
            let cv = Coefficients::new(h, dh, resample);
            INTERMEDIATE.with(|tmp| {
                let mut tmp = tmp.borrow_mut();
                if vertical_first((w, h), (dw, dh)) {
                    // Every row and column, as Pillow's vertical-first path does.
                    vertical(src, w, 0, &cv, dh, &mut tmp);
                    horizontal(&tmp, w, 0..dh, &ch, dw, out);
                } else {
                    // Only the rows the vertical pass reads, as Pillow does.
                    let first = cv.start.first().copied().unwrap_or(0);
                    let last = (0..dh).map(|i| cv.start[i] + cv.len[i]).max().unwrap_or(h);
                    horizontal(src, w, first..last, &ch, dw, &mut tmp);
                    vertical(&tmp, dw, first, &cv, dh, out);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (i, o) in [(640, 298), (13, 46), (101, 87), (5, 5)] {
            let c = Coefficients::new(i, o, Resample::Bicubic);
            for x in 0..o {
                let (_, k) = c.taps(x);
                let sum: i64 = k.iter().map(|&v| i64::from(v)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= k.len() as i64,
                    "{i}->{o} at {x}"
                );
            }
        }
    }

    #[test]
    fn pass_order_is_pillow_13s() {
        // (in, out, vertical first), as the Pillow 13.0 wheel resizes them.
        for ((w, h), (dw, dh), v) in [
            ((37, 101), (32, 87), true),
            ((37, 101), (32, 90), true),
            ((37, 101), (32, 91), false), // a tie: 10 rows against 2 x 5 columns
            ((33, 57), (32, 55), false),  // a tie
            ((33, 57), (32, 54), true),
            ((101, 37), (87, 32), false),
            ((640, 480), (43, 32), false),
            ((300, 1000), (224, 746), true),
            ((20, 30), (40, 15), true), // width grows, height shrinks
            ((20, 30), (40, 45), false),
        ] {
            assert_eq!(vertical_first((w, h), (dw, dh)), v, "{w}x{h} -> {dw}x{dh}");
        }
    }

    #[test]
    fn both_orders_keep_sizes_and_flat_images() {
        let src = vec![200u8; 37 * 101 * 3];
        let mut out = Vec::new();
        for (dw, dh) in [(32, 87), (32, 91)] {
            resize_rgb8(&src, (37, 101), (dw, dh), Resample::Bicubic, &mut out);
            assert_eq!(out.len(), dw * dh * 3);
            assert!(out.iter().all(|&v| v == 200));
        }
    }

    #[test]
    fn a_flat_image_stays_flat_and_sizes_are_exact() {
        let src = vec![77u8; 37 * 101 * 3];
        let mut out = Vec::new();
        for f in [
            Resample::Bilinear,
            Resample::Bicubic,
            Resample::Lanczos,
            Resample::Box,
            Resample::Hamming,
        ] {
            resize_rgb8(&src, (37, 101), (32, 87), f, &mut out);
            assert_eq!(out.len(), 32 * 87 * 3);
            assert!(out.iter().all(|&v| v == 77), "{f:?}");
        }
    }
}
