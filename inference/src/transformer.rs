//! The pre-norm Transformer encoder block shared by ViT and CLIP's vision tower, with the
//! weight access both use. Each model file names its tensors ([`BlockNames`]) and builds its
//! own embeddings and head.
//!
//! Written here, not taken from candle-transformers, for speed (see `vit.rs`): every linear
//! layer is one 2-D GEMM over `batch * tokens` rows, query/key/value are one GEMM, and on CPU
//! in f32 the fused kernels of `cpu_kernels` add bias, residual and GELU in one pass and run
//! attention as one op.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, IndexOp, Module, Tensor};
use candle_nn::{Activation, LayerNorm, VarBuilder};

use crate::cpu_kernels::{CpuAttention, CpuLayerNorm, CpuLinear};
use crate::error::{Error, Result};

/// Reads named tensors from the checkpoint, checking their shapes.
pub(crate) struct Weights<'a> {
    pub vb: VarBuilder<'a>,
    pub path: &'a Path,
}

impl Weights<'_> {
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if !self.vb.contains_tensor(name) {
            return Err(Error::MissingWeight {
                path: self.path.to_path_buf(),
                name: name.to_string(),
            });
        }
        let t = self
            .vb
            .get_unchecked(name)
            .map_err(|source| Error::Weights {
                path: self.path.to_path_buf(),
                source,
            })?;
        if t.dims() != shape {
            return Err(Error::ShapeMismatch {
                path: self.path.to_path_buf(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t)
    }

    /// Whether the fused CPU f32 kernels apply.
    pub(crate) fn cpu_f32(&self) -> bool {
        self.vb.device().is_cpu() && self.vb.dtype() == DType::F32
    }

    /// The leading dimension of a stored tensor, read without checking it.
    pub(crate) fn dim0(&self, name: &str) -> Result<usize> {
        if !self.vb.contains_tensor(name) {
            return Err(Error::MissingWeight {
                path: self.path.to_path_buf(),
                name: name.to_string(),
            });
        }
        let t = self
            .vb
            .get_unchecked(name)
            .map_err(|source| Error::Weights {
                path: self.path.to_path_buf(),
                source,
            })?;
        Ok(t.dims().first().copied().unwrap_or(0))
    }

    /// The weight `(d_out, d_in)` and optional bias of the linear layer at `prefix`.
    pub(crate) fn linear_tensors(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let weight = self.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let bias = if bias {
            Some(self.get(&format!("{prefix}.bias"), &[d_out])?)
        } else {
            None
        };
        Ok((weight, bias))
    }

    pub(crate) fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear> {
        let (weight, bias) = self.linear_tensors(prefix, d_in, d_out, bias)?;
        self.build_linear(weight, bias)
    }

    /// Several linear layers with the same input stacked into one (outputs side by side), as
    /// query, key and value are.
    pub(crate) fn fused_linear(
        &self,
        prefixes: &[String],
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear> {
        let parts = prefixes
            .iter()
            .map(|p| self.linear_tensors(p, d_in, d_out, bias))
            .collect::<Result<Vec<_>>>()?;
        let weights: Vec<&Tensor> = parts.iter().map(|(w, _)| w).collect();
        let biases: Vec<&Tensor> = parts.iter().filter_map(|(_, b)| b.as_ref()).collect();
        let weight = Tensor::cat(&weights, 0)?;
        let bias = if bias {
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        self.build_linear(weight, bias)
    }

    /// The fused CPU kernel in f32 on CPU, candle's ops otherwise.
    pub(crate) fn build_linear(&self, weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        if self.cpu_f32() {
            return Ok(Linear::Cpu(Arc::new(CpuLinear::new(
                &weight,
                bias.as_ref(),
            )?)));
        }
        Ok(Linear::Tensor { weight, bias })
    }

    pub(crate) fn layer_norm(&self, prefix: &str, dim: usize, eps: f64) -> Result<Norm> {
        let weight = self.get(&format!("{prefix}.weight"), &[dim])?;
        let bias = self.get(&format!("{prefix}.bias"), &[dim])?;
        if self.cpu_f32() {
            return Ok(Norm::Cpu(Arc::new(CpuLayerNorm::new(&weight, &bias, eps)?)));
        }
        Ok(Norm::Tensor(LayerNorm::new(weight, bias, eps)))
    }
}

/// Layer norm over the last dimension of a 2-D input.
#[derive(Debug, Clone)]
pub(crate) enum Norm {
    /// Any device and dtype: candle-nn's.
    Tensor(LayerNorm),
    /// CPU f32: one parallel, vectorised pass.
    Cpu(Arc<CpuLayerNorm>),
}

impl Module for Norm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Norm::Tensor(ln) => ln.forward(xs),
            Norm::Cpu(ln) => xs.apply_op1_no_bwd(ln.as_ref()),
        }
    }
}

/// `y = x W^T + b` on a 2-D input of shape `(rows, d_in)`.
#[derive(Debug, Clone)]
pub(crate) enum Linear {
    /// Any device and dtype: candle's matmul and broadcast add.
    Tensor {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// CPU f32: one GEMM, then one pass adding the bias (and residual, and GELU).
    Cpu(Arc<CpuLinear>),
}

impl Linear {
    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Tensor { weight, bias } => {
                let ys = xs.matmul(&weight.t()?)?;
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
            Linear::Cpu(lin) => lin.forward(xs, false),
        }
    }

    /// `act(x W^T + b)`, fused for the exact GELU on CPU.
    pub(crate) fn forward_act(&self, xs: &Tensor, act: Act) -> candle_core::Result<Tensor> {
        match (self, act) {
            (Linear::Cpu(lin), Act::Candle(Activation::Gelu)) => lin.forward(xs, true),
            _ => act.forward(&self.forward(xs)?),
        }
    }

    /// `x W^T + b + residual`.
    pub(crate) fn forward_residual(
        &self,
        xs: &Tensor,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        match self {
            Linear::Cpu(lin) => lin.forward_residual(xs, residual),
            Linear::Tensor { .. } => self.forward(xs)? + residual,
        }
    }
}

/// An MLP activation: candle-nn's, or CLIP's `quick_gelu`, which candle-nn does not have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    /// One of candle-nn's (`gelu` is the exact, erf-based GELU, as in PyTorch).
    Candle(Activation),
    /// `x * sigmoid(1.702 x)` (`transformers`' `QuickGELUActivation`).
    QuickGelu,
}

impl Act {
    /// Parses `transformers`' `hidden_act` name (`"gelu"`, `"quick_gelu"`, `"gelu_new"`, …).
    pub fn from_hf(name: &str) -> Option<Self> {
        if name == "quick_gelu" {
            return Some(Act::QuickGelu);
        }
        serde_json::from_value::<Activation>(serde_json::Value::from(name))
            .ok()
            .map(Act::Candle)
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Act::Candle(a) => a.forward(xs),
            Act::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
        }
    }
}

/// The shape of an encoder block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockShape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f64,
    pub act: Act,
    pub qkv_bias: bool,
}

/// The Hugging Face names of one block's tensors (prefixes of `.weight` and `.bias`).
pub(crate) struct BlockNames {
    pub norm_before: String,
    /// Query, key and value projections.
    pub qkv: [String; 3],
    pub attention_out: String,
    pub norm_after: String,
    pub mlp_in: String,
    pub mlp_out: String,
}

impl BlockNames {
    /// `vit.encoder.layer.N` of `ViTModel`.
    pub fn vit(i: usize) -> Self {
        let pre = format!("vit.encoder.layer.{i}");
        let att = format!("{pre}.attention.attention");
        BlockNames {
            norm_before: format!("{pre}.layernorm_before"),
            qkv: ["query", "key", "value"].map(|n| format!("{att}.{n}")),
            attention_out: format!("{pre}.attention.output.dense"),
            norm_after: format!("{pre}.layernorm_after"),
            mlp_in: format!("{pre}.intermediate.dense"),
            mlp_out: format!("{pre}.output.dense"),
        }
    }

    /// `vision_model.encoder.layers.N` of `CLIPVisionTransformer`.
    pub fn clip(i: usize) -> Self {
        let pre = format!("vision_model.encoder.layers.{i}");
        BlockNames {
            norm_before: format!("{pre}.layer_norm1"),
            qkv: ["q_proj", "k_proj", "v_proj"].map(|n| format!("{pre}.self_attn.{n}")),
            attention_out: format!("{pre}.self_attn.out_proj"),
            norm_after: format!("{pre}.layer_norm2"),
            mlp_in: format!("{pre}.mlp.fc1"),
            mlp_out: format!("{pre}.mlp.fc2"),
        }
    }

    /// Every tensor of the block: name and shape.
    pub fn shapes(&self, s: &BlockShape) -> Vec<(String, Vec<usize>)> {
        let (h, m) = (s.hidden, s.intermediate);
        let mut out = Vec::new();
        for n in &self.qkv {
            out.push((format!("{n}.weight"), vec![h, h]));
            if s.qkv_bias {
                out.push((format!("{n}.bias"), vec![h]));
            }
        }
        out.push((format!("{}.weight", self.attention_out), vec![h, h]));
        out.push((format!("{}.bias", self.attention_out), vec![h]));
        out.push((format!("{}.weight", self.mlp_in), vec![m, h]));
        out.push((format!("{}.bias", self.mlp_in), vec![m]));
        out.push((format!("{}.weight", self.mlp_out), vec![h, m]));
        out.push((format!("{}.bias", self.mlp_out), vec![h]));
        for n in [&self.norm_before, &self.norm_after] {
            out.push((format!("{n}.weight"), vec![h]));
            out.push((format!("{n}.bias"), vec![h]));
        }
        out
    }
}

/// One pre-norm encoder block: attention and MLP, each with a residual.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    layernorm_before: Norm,
    qkv: Linear,
    attention_output: Linear,
    layernorm_after: Norm,
    intermediate: Linear,
    output: Linear,
    act: Act,
    num_heads: usize,
    head_dim: usize,
}

impl Layer {
    pub fn new(s: &BlockShape, names: &BlockNames, w: &Weights) -> Result<Self> {
        let h = s.hidden;
        Ok(Layer {
            layernorm_before: w.layer_norm(&names.norm_before, h, s.eps)?,
            qkv: w.fused_linear(&names.qkv, h, h, s.qkv_bias)?,
            attention_output: w.linear(&names.attention_out, h, h, true)?,
            layernorm_after: w.layer_norm(&names.norm_after, h, s.eps)?,
            intermediate: w.linear(&names.mlp_in, h, s.intermediate, true)?,
            output: w.linear(&names.mlp_out, s.intermediate, h, true)?,
            act: s.act,
            num_heads: s.heads,
            head_dim: h / s.heads,
        })
    }

    /// `xs` is `(batch * tokens, hidden)`.
    pub fn forward(&self, xs: &Tensor, batch: usize, tokens: usize) -> candle_core::Result<Tensor> {
        let qkv = self.qkv.forward(&xs.apply(&self.layernorm_before)?)?;
        let context = self.attention(&qkv, batch, tokens)?;
        let xs = self.attention_output.forward_residual(&context, xs)?;
        let mid = self
            .intermediate
            .forward_act(&xs.apply(&self.layernorm_after)?, self.act)?;
        self.output.forward_residual(&mid, &xs)
    }

    /// Multi-head self-attention from the fused `(batch * tokens, 3 * hidden)` query/key/value
    /// rows to the `(batch * tokens, hidden)` context.
    fn attention(&self, qkv: &Tensor, batch: usize, tokens: usize) -> candle_core::Result<Tensor> {
        let (nh, hd) = (self.num_heads, self.head_dim);
        if matches!(self.qkv, Linear::Cpu(_)) {
            return qkv.apply_op1_no_bwd(&CpuAttention {
                batch,
                tokens,
                heads: nh,
                head_dim: hd,
            });
        }
        let qkv = qkv
            .reshape((batch, tokens, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let q = (qkv.i(0)? * (1.0 / (hd as f64).sqrt()))?;
        let k = qkv.i(1)?;
        let v = qkv.i(2)?;
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        probs
            .matmul(&v)?
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((batch * tokens, nh * hd))
    }
}
