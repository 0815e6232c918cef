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
use crate::simd::simd_dispatch;

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
/// The horizontal pass over `rows` of `src` (`w` pixels wide) into `dw` pixels, by blocks of
/// [`ROWS_PER_BLOCK`] rows: each block is transposed, resized by a vertical pass, and transposed
/// back. A horizontal pass walks each output pixel's taps across interleaved RGB, which no
/// compiler vectorises; a vertical pass adds whole rows at once ([`accumulate`]). The same
/// integer sums, so the same bytes (tested against the direct pass); blocks keep the transposed
/// copies in cache.
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
    TRANSPOSED.with(|t| {
        let mut t = t.borrow_mut();
        let (transposed, resized, back) = &mut *t;
        for (block, out_rows) in (rows.start..rows.end)
            .step_by(ROWS_PER_BLOCK)
            .zip(out.chunks_mut(ROWS_PER_BLOCK * dw * 3))
        {
            let n = ROWS_PER_BLOCK.min(rows.end - block);
            transpose(&src[block * w * 3..(block + n) * w * 3], w, n, transposed);
            vertical(transposed, n, 0, c, dw, resized);
            transpose(resized, n, dw, back);
            out_rows.copy_from_slice(back);
        }
    });
}

/// Rows of a horizontal pass transposed at once: 640 pixels of 32 rows are 60 KiB.
const ROWS_PER_BLOCK: usize = 32;

/// The pixels of a `w` x `h` RGB image, transposed (`h` wide, `w` tall), in cache-sized blocks.
fn transpose(src: &[u8], w: usize, h: usize, out: &mut Vec<u8>) {
    const BLOCK: usize = 32;
    out.clear();
    out.resize(w * h * 3, 0);
    for y0 in (0..h).step_by(BLOCK) {
        for x0 in (0..w).step_by(BLOCK) {
            for y in y0..(y0 + BLOCK).min(h) {
                let row = &src[y * w * 3..(y + 1) * w * 3];
                for x in x0..(x0 + BLOCK).min(w) {
                    let o = (x * h + y) * 3;
                    out[o..o + 3].copy_from_slice(&row[x * 3..x * 3 + 3]);
                }
            }
        }
    }
}

#[inline(always)]
fn accumulate_body(acc: &mut [i32], row: &[u8], k: i32) {
    for (a, &p) in acc.iter_mut().zip(row) {
        *a += i32::from(p) * k;
    }
}

simd_dispatch!(
    /// `acc += row * k`, element-wise: one tap of a vertical pass over a whole row.
    fn accumulate(acc: &mut [i32], row: &[u8], k: i32) => accumulate_body
);

#[inline(always)]
fn clip_row_body(out: &mut [u8], acc: &[i32]) {
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = clip8(a);
    }
}

simd_dispatch!(
    /// Each accumulator shifted down to 8 bits and clipped.
    fn clip_row(out: &mut [u8], acc: &[i32]) => clip_row_body
);

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
            accumulate(&mut acc, &src[y * stride..(y + 1) * stride], kk);
        }
        clip_row(row_out, &acc);
    }
}

fn vertical_first((w, h): (usize, usize), (dw, dh): (usize, usize)) -> bool {
    let dy = h as i64 - dh as i64;
    let dx = w as i64 - dw as i64;
    dy > 0 && dy > 2 * dx
}

thread_local! {
    /// The first pass's output, reused by each two-pass resize on this thread.
    static INTERMEDIATE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The horizontal pass's transposed input and output, reused.
    static TRANSPOSED: std::cell::RefCell<(Vec<u8>, Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
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

    /// The direct horizontal pass, as Pillow writes it: the reference for the transposed one.
    fn horizontal_direct(src: &[u8], w: usize, h: usize, c: &Coefficients, dw: usize) -> Vec<u8> {
        let mut out = vec![0u8; h * dw * 3];
        for (row_out, y) in out.chunks_exact_mut(dw * 3).zip(0..h) {
            let row = &src[y * w * 3..(y + 1) * w * 3];
            for (xx, px) in row_out.chunks_exact_mut(3).enumerate() {
                let (xmin, k) = c.taps(xx);
                let mut acc = [HALF; 3];
                for (p, &kk) in row[xmin * 3..(xmin + k.len()) * 3].chunks_exact(3).zip(k) {
                    for ch in 0..3 {
                        acc[ch] += i32::from(p[ch]) * kk;
                    }
                }
                for ch in 0..3 {
                    px[ch] = clip8(acc[ch]);
                }
            }
        }
        out
    }

    #[test]
    fn the_transposed_horizontal_pass_gives_the_direct_pass_s_bytes() {
        let mut s = 7u32;
        for (w, h, dw) in [
            (640, 48, 224),
            (37, 5, 101),
            (101, 33, 13),
            (3, 1, 1),
            (64, 64, 64),
        ] {
            let src: Vec<u8> = (0..w * h * 3)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    (s >> 24) as u8
                })
                .collect();
            for r in [
                Resample::Bilinear,
                Resample::Bicubic,
                Resample::Lanczos,
                Resample::Box,
            ] {
                let c = Coefficients::new(w, dw, r);
                let mut out = Vec::new();
                horizontal(&src, w, 0..h, &c, dw, &mut out);
                assert_eq!(
                    out,
                    horizontal_direct(&src, w, h, &c, dw),
                    "{w}x{h} -> {dw} {r:?}"
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
