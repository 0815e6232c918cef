//! Fused f32 kernels for the ViT forward pass on CPU.
//!
//! candle's CPU backend runs every operation as its own pass over memory, some on one thread:
//! a linear layer is a GEMM, then a broadcast add of the bias, then a residual add; attention
//! is a permute copy, a scale, a batched GEMM, a softmax (scalar `expf`), a second batched GEMM
//! and a permute copy back. Measured on ViT-B/16 at batch 8 on 2 threads, everything outside
//! the four big GEMMs took about 40 % of the time (PyTorch runs attention as one fused
//! kernel). No crate offers fused CPU attention over candle tensors, so these kernels call the
//! `gemm` crate (candle's own CPU GEMM) directly:
//! - [`CpuLinear`]: `y = x W^T + b (+ residual)`: one GEMM, then one parallel pass over the
//!   output that adds the bias and the residual and applies GELU where asked;
//! - [`CpuAttention`]: multi-head self-attention straight from the fused `(rows, 3 * hidden)`
//!   query/key/value matrix into the `(rows, hidden)` context, one task per (image, head),
//!   reading query, key and value through strides instead of copies;
//! - [`CpuLayerNorm`]: one parallel pass, sums taken 16 lanes wide;
//! - a vectorisable `exp` for the softmax and a rational `erf` for the exact GELU.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::simd::simd_dispatch;

/// Slices a contiguous f32 CPU tensor's storage, or fails naming the op.
fn contiguous_f32<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} expects f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} expects a contiguous tensor");
    };
    Ok(&data[start..end])
}

/// Rows and columns of a 2-D layout, or fails naming the op.
fn dims2(op: &str, layout: &Layout) -> candle_core::Result<(usize, usize)> {
    match layout.dims() {
        &[rows, cols] => Ok((rows, cols)),
        dims => candle_core::bail!("{op} expects a 2-D tensor, got shape {dims:?}"),
    }
}

/// The product of `factors`, or fails naming the op when it overflows `usize`.
fn product(op: &str, factors: &[usize]) -> candle_core::Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: sizes {factors:?} overflow")))
}

/// GEMM parallelism for the calling thread's rayon pool.
fn pool_parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// A linear layer's weights laid out for one GEMM call on CPU: `W^T` row-major
/// (`d_in × d_out`) and the bias.
pub(crate) struct CpuLinear {
    weight_t: Vec<f32>,
    bias: Option<Vec<f32>>,
    d_in: usize,
    d_out: usize,
}

impl std::fmt::Debug for CpuLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuLinear")
            .field("d_in", &self.d_in)
            .field("d_out", &self.d_out)
            .field("bias", &self.bias.is_some())
            .finish()
    }
}

impl CpuLinear {
    /// Copies `weight` `(d_out, d_in)` and `bias` `(d_out)` (f32 tensors) into GEMM layout.
    pub(crate) fn new(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let (d_out, d_in) = weight.dims2()?;
        if d_out == 0 || d_in == 0 {
            candle_core::bail!("cpu-linear: weight has an empty dimension ({d_out}, {d_in})");
        }
        if let Some(b) = bias {
            if b.dims1()? != d_out {
                candle_core::bail!(
                    "cpu-linear: bias has {:?} values for {d_out} outputs",
                    b.dims()
                );
            }
        }
        let weight_t = weight.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
        Ok(CpuLinear {
            weight_t,
            bias,
            d_in,
            d_out,
        })
    }

    /// `x W^T + b`, then GELU (exact, erf) when `gelu` is set; `xs` is `(rows, d_in)`.
    pub(crate) fn forward(&self, xs: &Tensor, gelu: bool) -> candle_core::Result<Tensor> {
        xs.apply_op1_no_bwd(&LinearOp { linear: self, gelu })
    }

    /// `x W^T + b + residual`; `residual` is `(rows, d_out)`.
    pub(crate) fn forward_residual(
        &self,
        xs: &Tensor,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        xs.apply_op2_no_bwd(residual, &LinearResidualOp { linear: self })
    }

    /// Writes `x W^T` into `out`.
    fn gemm_into(&self, xs: &[f32], rows: usize, out: &mut [f32]) {
        let (k, n) = (self.d_in, self.d_out);
        debug_assert_eq!(xs.len(), rows * k);
        debug_assert_eq!(out.len(), rows * n);
        // SAFETY: `out` is `rows × n`, `xs` is `rows × k` and `weight_t` is `k × n`, all
        // row-major and in bounds for the strides given; `out` does not alias the inputs.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                xs.as_ptr(),
                1,
                k as isize,
                self.weight_t.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                pool_parallelism(),
            );
        }
    }

    /// Checks the input and returns its rows.
    fn check(&self, op: &str, layout: &Layout) -> candle_core::Result<usize> {
        let (rows, cols) = dims2(op, layout)?;
        if cols != self.d_in {
            candle_core::bail!(
                "{op}: input has {cols} columns, the weight expects {}",
                self.d_in
            );
        }
        Ok(rows)
    }

    /// Adds the bias and `residual` to the GEMM's output and applies GELU, in one parallel
    /// pass over rows.
    fn epilogue(&self, out: &mut [f32], residual: Option<&[f32]>, gelu: bool) {
        let n = self.d_out;
        // About 32 KiB of output per task: enough to amortise scheduling, small enough to
        // spread over the pool.
        let rows_per_task = (8192 / n).max(1);
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * rows_per_task * n;
                if let Some(res) = residual {
                    for (o, r) in chunk.iter_mut().zip(&res[first..]) {
                        *o += r;
                    }
                }
                for row in chunk.chunks_exact_mut(n) {
                    if let Some(b) = &self.bias {
                        for (o, b) in row.iter_mut().zip(b) {
                            *o += b;
                        }
                    }
                    if gelu {
                        gelu_slice(row);
                    }
                }
            });
    }
}

/// [`CpuLinear::forward`] as a candle op.
struct LinearOp<'a> {
    linear: &'a CpuLinear,
    gelu: bool,
}

impl CustomOp1 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "cpu-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let rows = self.linear.check(self.name(), layout)?;
        let xs = contiguous_f32(self.name(), storage, layout)?;
        let mut out = vec![0f32; product(self.name(), &[rows, self.linear.d_out])?];
        self.linear.gemm_into(xs, rows, &mut out);
        self.linear.epilogue(&mut out, None, self.gelu);
        Ok((CpuStorage::F32(out), Shape::from((rows, self.linear.d_out))))
    }
}

/// [`CpuLinear::forward_residual`] as a candle op.
struct LinearResidualOp<'a> {
    linear: &'a CpuLinear,
}

impl CustomOp2 for LinearResidualOp<'_> {
    fn name(&self) -> &'static str {
        "cpu-linear-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let rows = self.linear.check(self.name(), l1)?;
        let xs = contiguous_f32(self.name(), s1, l1)?;
        let residual = contiguous_f32(self.name(), s2, l2)?;
        let n = self.linear.d_out;
        if dims2(self.name(), l2)? != (rows, n) {
            candle_core::bail!(
                "{}: residual has shape {:?}, expected ({rows}, {n})",
                self.name(),
                l2.dims()
            );
        }
        let mut out = vec![0f32; product(self.name(), &[rows, n])?];
        self.linear.gemm_into(xs, rows, &mut out);
        self.linear.epilogue(&mut out, Some(residual), false);
        Ok((CpuStorage::F32(out), Shape::from((rows, n))))
    }
}

/// Layer norm over the last dimension of a `(rows, dim)` f32 tensor: one parallel pass over
/// rows, each row's mean and variance summed 16 lanes wide (candle-nn's CPU layer norm sums
/// one element at a time).
pub(crate) struct CpuLayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl std::fmt::Debug for CpuLayerNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuLayerNorm")
            .field("dim", &self.weight.len())
            .field("eps", &self.eps)
            .finish()
    }
}

impl CpuLayerNorm {
    /// Copies `weight` and `bias` (f32, both `(dim)`).
    pub(crate) fn new(weight: &Tensor, bias: &Tensor, eps: f64) -> candle_core::Result<Self> {
        let (weight, bias) = (weight.to_vec1::<f32>()?, bias.to_vec1::<f32>()?);
        if weight.is_empty() || weight.len() != bias.len() {
            candle_core::bail!(
                "cpu-layer-norm: weight has {} values, bias {}",
                weight.len(),
                bias.len()
            );
        }
        Ok(CpuLayerNorm {
            weight,
            bias,
            eps: eps as f32,
        })
    }
}

impl CustomOp1 for CpuLayerNorm {
    fn name(&self) -> &'static str {
        "cpu-layer-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, dim) = dims2(self.name(), layout)?;
        if dim != self.weight.len() {
            candle_core::bail!(
                "{}: input has {dim} columns, the weight {}",
                self.name(),
                self.weight.len()
            );
        }
        let xs = contiguous_f32(self.name(), storage, layout)?;
        let mut out = vec![0f32; xs.len()];
        let rows_per_task = (8192 / dim).max(1);
        out.par_chunks_mut(rows_per_task * dim)
            .zip(xs.par_chunks(rows_per_task * dim))
            .for_each(|(o, x)| layer_norm_rows(x, o, &self.weight, &self.bias, self.eps));
        Ok((CpuStorage::F32(out), Shape::from((rows, dim))))
    }
}

simd_dispatch! {
    /// Layer norm of each `weight.len()`-long row of `xs` into `out`.
    fn layer_norm_rows(xs: &[f32], out: &mut [f32], weight: &[f32], bias: &[f32], eps: f32)
        => layer_norm_rows_body
}

#[inline(always)]
fn layer_norm_rows_body(xs: &[f32], out: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let dim = weight.len();
    for (x, o) in xs.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let mean = sum_lanes(x) / dim as f32;
        for (o, &x) in o.iter_mut().zip(x) {
            let d = x - mean;
            *o = d * d;
        }
        let inv = 1.0 / (sum_lanes(o) / dim as f32 + eps).sqrt();
        for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(weight).zip(bias) {
            *o = (x - mean) * inv * w + b;
        }
    }
}

/// Multi-head self-attention on the fused query/key/value matrix of `batch` sequences of
/// `tokens` rows: input `(batch * tokens, 3 * heads * head_dim)` with query, key and value side
/// by side (as `Linear::fuse` stacks them), output `(batch * tokens, heads * head_dim)` with the
/// heads side by side, ready for the output projection.
pub(crate) struct CpuAttention {
    pub(crate) batch: usize,
    pub(crate) tokens: usize,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
}

/// The output pointer shared by the attention tasks.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: every task writes only its own (sequence, head) block of the output (rows of its
// sequence, columns of its head); no two tasks' blocks overlap and nothing reads the buffer
// until all tasks have finished.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl CustomOp1 for CpuAttention {
    fn name(&self) -> &'static str {
        "cpu-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, t, nh, hd) = (self.batch, self.tokens, self.heads, self.head_dim);
        if t == 0 || nh == 0 || hd == 0 {
            candle_core::bail!(
                "{}: tokens {t}, heads {nh} and head_dim {hd} must be positive",
                self.name()
            );
        }
        let h = product(self.name(), &[nh, hd])?;
        let expected = (
            product(self.name(), &[b, t])?,
            product(self.name(), &[3, h])?,
        );
        let (rows, cols) = dims2(self.name(), layout)?;
        if (rows, cols) != expected {
            candle_core::bail!(
                "{}: input shape ({rows}, {cols}), expected {expected:?}",
                self.name()
            );
        }
        let qkv = contiguous_f32(self.name(), storage, layout)?;
        let scratch = product(self.name(), &[t, t])?;
        let mut out = vec![0f32; product(self.name(), &[rows, h])?];
        let shared = SharedOut(out.as_mut_ptr());
        let scale = 1.0 / (hd as f32).sqrt();
        (0..b * nh).into_par_iter().for_each_init(
            || vec![0f32; scratch],
            |scores, task| {
                let (bi, hi) = (task / nh, task % nh);
                let base = bi * t * 3 * h + hi * hd;
                let q = qkv[base..].as_ptr();
                let k = qkv[base + h..].as_ptr();
                let v = qkv[base + 2 * h..].as_ptr();
                let row = 3 * h as isize;
                // SAFETY: query, key and value blocks are `t` rows of `hd` floats at stride
                // `3h` inside `qkv` (checked shape above); `scores` is `t × t`; the output block
                // is `t` rows of `hd` floats at stride `h` starting at row `bi * t`, column
                // `hi * hd` of the `(b * t) × h` output, owned by this task alone.
                unsafe {
                    // scores = scale · Q Kᵀ
                    gemm::gemm(
                        t,
                        t,
                        hd,
                        scores.as_mut_ptr(),
                        1,
                        t as isize,
                        false,
                        q,
                        1,
                        row,
                        k,
                        row,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                softmax_rows(scores, t);
                let dst = shared;
                // SAFETY: as above.
                unsafe {
                    // context = softmax(scores) V
                    gemm::gemm(
                        t,
                        hd,
                        t,
                        dst.0.add(bi * t * h + hi * hd),
                        1,
                        h as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        t as isize,
                        v,
                        1,
                        row,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((rows, h))))
    }
}

simd_dispatch! {
    /// Softmax of each `row`-long row of `scores`, in place.
    fn softmax_rows(scores: &mut [f32], row: usize) => softmax_rows_body
}

#[inline(always)]
fn softmax_rows_body(scores: &mut [f32], row: usize) {
    for r in scores.chunks_exact_mut(row) {
        let max = max_lanes(r);
        for x in r.iter_mut() {
            *x = exp(*x - max);
        }
        let inv = 1.0 / sum_lanes(r);
        for x in r.iter_mut() {
            *x *= inv;
        }
    }
}

simd_dispatch! {
    /// Exact (erf) GELU over a slice, in place.
    fn gelu_slice(xs: &mut [f32]) => gelu_slice_body
}

#[inline(always)]
fn gelu_slice_body(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = gelu_erf(*x);
    }
}

/// Maximum with sixteen partial maxima, so that the compiler can vectorise it.
#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

/// Sum with sixteen partial sums, so that the compiler can vectorise it.
#[inline(always)]
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `e^x` for `x ≤ 0` down to underflow (softmax after subtracting the row maximum), branch-free
/// so that loops over it vectorise: `x = n ln 2 + r`, `e^r` by a degree-6 polynomial (Cephes'
/// `expf` coefficients), `2^n` by exponent bits. Relative error ≤ 2e-7 (see tests).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let er = p * r * r + r + 1.0;
    // 2^n from exponent bits without a float-to-int cast (Rust's saturating `as` keeps the
    // loop scalar): n + 127 is in [1, 254], and adding 2^23 puts it in the low mantissa bits.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits();
    er * f32::from_bits(biased << 23)
}

/// `x * (1 + erf(x / sqrt 2)) / 2`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Rational approximation of erf on f32 (the one XLA and Eigen use; |error| ≈ 1e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329_3e-3;
    q = x2 * q + -1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Module, D};

    #[test]
    fn exp_is_within_2e7_relative() {
        let mut worst = 0f32;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (ours, std) = (exp(x), x.exp());
            worst = worst.max(((ours - std) / std).abs());
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), (-87f32).exp());
    }

    #[test]
    fn gelu_matches_exact() -> candle_core::Result<()> {
        let mut xs: Vec<f32> = (-20_000..20_000).map(|i| i as f32 * 6e-4).collect();
        let exact: Vec<f32> = Tensor::new(xs.as_slice(), &Device::Cpu)?
            .gelu_erf()?
            .to_vec1()?;
        gelu_slice(&mut xs);
        let worst = xs
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-6, "worst abs error {worst}");
        Ok(())
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn linear_matches_candle() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (37, 24), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (40, 24), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 40, &dev)?;
        let res = Tensor::randn(0f32, 1.0, (37, 40), &dev)?;
        let lin = CpuLinear::new(&w, Some(&b))?;
        let want = x.matmul(&w.t()?)?.broadcast_add(&b)?;
        assert!(max_abs_diff(&lin.forward(&x, false)?, &want)? < 1e-4);
        assert!(max_abs_diff(&lin.forward(&x, true)?, &want.gelu_erf()?)? < 1e-4);
        assert!(max_abs_diff(&lin.forward_residual(&x, &res)?, &(&want + &res)?)? < 1e-4);
        let no_bias = CpuLinear::new(&w, None)?;
        assert!(max_abs_diff(&no_bias.forward(&x, false)?, &x.matmul(&w.t()?)?)? < 1e-4);
        let wrong = Tensor::zeros((37, 23), DType::F32, &dev)?;
        assert!(lin.forward(&wrong, false).is_err());
        assert!(lin.forward_residual(&x, &x).is_err());
        let short_bias = Tensor::zeros(39, DType::F32, &dev)?;
        assert!(CpuLinear::new(&w, Some(&short_bias)).is_err());
        let empty = Tensor::zeros((0, 24), DType::F32, &dev)?;
        assert!(CpuLinear::new(&empty, None).is_err());
        Ok(())
    }

    #[test]
    fn layer_norm_matches_candle() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 1.0, (45, 40), &dev)? * 3.0)?.affine(1.0, 0.5)?;
        let w = Tensor::randn(0f32, 1.0, 40, &dev)?;
        let b = Tensor::randn(0f32, 1.0, 40, &dev)?;
        let ours = x.apply_op1_no_bwd(&CpuLayerNorm::new(&w, &b, 1e-12)?)?;
        let want = candle_nn::LayerNorm::new(w.clone(), b.clone(), 1e-12).forward(&x)?;
        assert!(max_abs_diff(&ours, &want)? < 1e-5);
        let wrong = Tensor::zeros((45, 39), DType::F32, &dev)?;
        assert!(wrong
            .apply_op1_no_bwd(&CpuLayerNorm::new(&w, &b, 1e-12)?)
            .is_err());
        assert!(CpuLayerNorm::new(&w, &b.narrow(0, 0, 39)?, 1e-12).is_err());
        Ok(())
    }

    #[test]
    fn attention_matches_candle() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (b, t, nh, hd) = (3, 17, 4, 8);
        let h = nh * hd;
        let qkv = (Tensor::randn(0f32, 1.0, (b * t, 3 * h), &dev)? * 2.0)?;
        let ours = qkv.apply_op1_no_bwd(&CpuAttention {
            batch: b,
            tokens: t,
            heads: nh,
            head_dim: hd,
        })?;
        let split = qkv
            .reshape((b, t, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (split.get(0)?, split.get(1)?, split.get(2)?);
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let want = probs
            .matmul(&v)?
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((b * t, h))?;
        assert!(max_abs_diff(&ours, &want)? < 1e-5);
        // Shapes that do not fit the parameters are errors, not out-of-bounds reads.
        let wrong = |batch, tokens, heads, head_dim| {
            qkv.apply_op1_no_bwd(&CpuAttention {
                batch,
                tokens,
                heads,
                head_dim,
            })
            .is_err()
        };
        assert!(wrong(b, t + 1, nh, hd));
        assert!(wrong(b, t, nh, hd + 1));
        assert!(wrong(b * t, 0, nh, hd));
        assert!(wrong(b, t, 0, hd));
        assert!(wrong(b, t, usize::MAX, 2));
        Ok(())
    }
}
