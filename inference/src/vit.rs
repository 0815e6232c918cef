//! The Vision Transformer of `transformers`' `ViTForImageClassification`, reading Hugging Face
//! weight names as they are stored in `model.safetensors`.
//!
//! candle-transformers 0.11.1 has a correct ViT (`models::vit`: HF names, CLS token → final
//! layer norm → classifier, exact-erf GELU) and our tests check we agree with it. This file
//! exists for speed and for error reporting, not correctness:
//! - every linear layer runs as one 2-D GEMM over `batch * tokens` rows (candle-nn's `Linear`
//!   broadcasts the weight and runs one GEMM per image);
//! - query, key and value are fused into one GEMM;
//! - the patch embedding is a reshape and a GEMM instead of a strided convolution;
//! - the final layer norm runs on the CLS token only (it is per-token, so this is exact);
//! - on CPU in f32, each linear layer is one GEMM plus one pass that adds the bias and the
//!   residual and applies GELU, and attention is one fused op (see `cpu_kernels`);
//! - a missing or mis-shaped weight is reported by its Hugging Face name with both shapes.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Activation, LayerNorm, VarBuilder};

use crate::config::ViTConfig;
use crate::cpu_kernels::{CpuAttention, CpuLayerNorm, CpuLinear};
use crate::error::{Error, Result};

/// Reads named tensors from the checkpoint, checking their shapes.
struct Weights<'a> {
    vb: VarBuilder<'a>,
    path: &'a Path,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
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
    fn cpu_f32(&self) -> bool {
        self.vb.device().is_cpu() && self.vb.dtype() == DType::F32
    }

    /// The leading dimension of a stored tensor, read without checking it.
    fn dim0(&self, name: &str) -> Result<usize> {
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
    fn linear_tensors(
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

    fn linear(&self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        let (weight, bias) = self.linear_tensors(prefix, d_in, d_out, bias)?;
        self.build_linear(weight, bias)
    }

    /// Several linear layers with the same input stacked into one (outputs side by side), as
    /// query, key and value are.
    fn fused_linear(
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
    fn build_linear(&self, weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        if self.cpu_f32() {
            return Ok(Linear::Cpu(Arc::new(CpuLinear::new(
                &weight,
                bias.as_ref(),
            )?)));
        }
        Ok(Linear::Tensor { weight, bias })
    }

    fn layer_norm(&self, prefix: &str, dim: usize, eps: f64) -> Result<Norm> {
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
enum Norm {
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
enum Linear {
    /// Any device and dtype: candle's matmul and broadcast add.
    Tensor {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// CPU f32: one GEMM, then one pass adding the bias (and residual, and GELU).
    Cpu(Arc<CpuLinear>),
}

impl Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
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
    fn forward_act(&self, xs: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        match (self, act) {
            (Linear::Cpu(lin), Activation::Gelu) => lin.forward(xs, true),
            _ => act.forward(&self.forward(xs)?),
        }
    }

    /// `x W^T + b + residual`.
    fn forward_residual(&self, xs: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Cpu(lin) => lin.forward_residual(xs, residual),
            Linear::Tensor { .. } => self.forward(xs)? + residual,
        }
    }
}

/// Patch projection, CLS token and position embeddings (`vit.embeddings`).
#[derive(Debug, Clone)]
struct Embeddings {
    cls_token: Tensor,
    position_embeddings: Tensor,
    /// The convolution kernel as a `(hidden, 3 * patch * patch)` linear.
    projection: Linear,
    patch_size: usize,
    grid: usize,
    hidden_size: usize,
}

impl Embeddings {
    fn new(cfg: &ViTConfig, w: &Weights) -> Result<Self> {
        let h = cfg.hidden_size;
        let p = cfg.patch_size;
        let c = cfg.num_channels;
        let grid = cfg.image_size / p;
        let cls_token = w.get("vit.embeddings.cls_token", &[1, 1, h])?;
        let position_embeddings = w.get(
            "vit.embeddings.position_embeddings",
            &[1, grid * grid + 1, h],
        )?;
        let prefix = "vit.embeddings.patch_embeddings.projection";
        let weight = w
            .get(&format!("{prefix}.weight"), &[h, c, p, p])?
            .reshape((h, c * p * p))?;
        let bias = w.get(&format!("{prefix}.bias"), &[h])?;
        Ok(Embeddings {
            cls_token,
            position_embeddings,
            projection: w.build_linear(weight, Some(bias))?,
            patch_size: p,
            grid,
            hidden_size: h,
        })
    }

    /// `(batch, 3, size, size)` pixels to `(batch, tokens, hidden)` embeddings.
    fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, _, _) = pixels.dims4()?;
        let (g, p, h) = (self.grid, self.patch_size, self.hidden_size);
        let patches = pixels
            .reshape((b, c, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, c * p * p))?;
        let tokens = self.projection.forward(&patches)?.reshape((b, g * g, h))?;
        let cls = self.cls_token.broadcast_as((b, 1, h))?;
        Tensor::cat(&[&cls, &tokens], 1)?.broadcast_add(&self.position_embeddings)
    }
}

/// One encoder block (`vit.encoder.layer.N`): pre-norm attention and pre-norm MLP.
#[derive(Debug, Clone)]
struct Layer {
    layernorm_before: Norm,
    qkv: Linear,
    attention_output: Linear,
    layernorm_after: Norm,
    intermediate: Linear,
    output: Linear,
    act: Activation,
    num_heads: usize,
    head_dim: usize,
}

impl Layer {
    fn new(cfg: &ViTConfig, w: &Weights, i: usize) -> Result<Self> {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let pre = format!("vit.encoder.layer.{i}");
        let att = format!("{pre}.attention.attention");
        let qkv = ["query", "key", "value"].map(|n| format!("{att}.{n}"));
        Ok(Layer {
            layernorm_before: w.layer_norm(&format!("{pre}.layernorm_before"), h, eps)?,
            qkv: w.fused_linear(&qkv, h, h, cfg.qkv_bias)?,
            attention_output: w.linear(&format!("{pre}.attention.output.dense"), h, h, true)?,
            layernorm_after: w.layer_norm(&format!("{pre}.layernorm_after"), h, eps)?,
            intermediate: w.linear(
                &format!("{pre}.intermediate.dense"),
                h,
                cfg.intermediate_size,
                true,
            )?,
            output: w.linear(
                &format!("{pre}.output.dense"),
                cfg.intermediate_size,
                h,
                true,
            )?,
            act: cfg.hidden_act,
            num_heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// `xs` is `(batch * tokens, hidden)`.
    fn forward(&self, xs: &Tensor, batch: usize, tokens: usize) -> candle_core::Result<Tensor> {
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

/// `ViTForImageClassification` with the pooler-free head: CLS token → layer norm → classifier.
#[derive(Debug, Clone)]
pub struct ViTForImageClassification {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    layernorm: Norm,
    classifier: Linear,
    num_labels: usize,
    image_size: usize,
    dtype: DType,
    device: Device,
}

impl ViTForImageClassification {
    /// Builds the model from checkpoint tensors in `vb` (Hugging Face names); `path` is the
    /// weight file, named in errors.
    pub fn new(cfg: &ViTConfig, vb: VarBuilder, path: &Path) -> Result<Self> {
        let dtype = vb.dtype();
        let device = vb.device().clone();
        let w = Weights { vb, path };
        let h = cfg.hidden_size;
        let embeddings = Embeddings::new(cfg, &w)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, &w, i))
            .collect::<Result<Vec<_>>>()?;
        let layernorm = w.layer_norm("vit.layernorm", h, cfg.layer_norm_eps)?;
        let num_labels = w.dim0("classifier.weight")?;
        if num_labels == 0 {
            return Err(Error::ShapeMismatch {
                path: path.to_path_buf(),
                name: "classifier.weight".into(),
                expected: vec![cfg.num_labels().max(1), h],
                found: vec![0, h],
            });
        }
        if cfg.num_labels() > 0 && cfg.num_labels() != num_labels {
            return Err(Error::ShapeMismatch {
                path: path.to_path_buf(),
                name: "classifier.weight".into(),
                expected: vec![cfg.num_labels(), h],
                found: vec![num_labels, h],
            });
        }
        let classifier = w.linear("classifier", h, num_labels, true)?;
        Ok(ViTForImageClassification {
            embeddings,
            layers,
            layernorm,
            classifier,
            num_labels,
            image_size: cfg.image_size,
            dtype,
            device,
        })
    }

    /// Every tensor a checkpoint for `cfg` with `num_labels` classes holds: Hugging Face name and
    /// shape (used to build random-weight models for tests and benches).
    pub fn weight_shapes(cfg: &ViTConfig, num_labels: usize) -> Vec<(String, Vec<usize>)> {
        let (h, m, p, c) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.patch_size,
            cfg.num_channels,
        );
        let tokens = (cfg.image_size / p).pow(2) + 1;
        let mut shapes = vec![
            ("vit.embeddings.cls_token".to_string(), vec![1, 1, h]),
            (
                "vit.embeddings.position_embeddings".into(),
                vec![1, tokens, h],
            ),
            (
                "vit.embeddings.patch_embeddings.projection.weight".into(),
                vec![h, c, p, p],
            ),
            (
                "vit.embeddings.patch_embeddings.projection.bias".into(),
                vec![h],
            ),
            ("vit.layernorm.weight".into(), vec![h]),
            ("vit.layernorm.bias".into(), vec![h]),
            ("classifier.weight".into(), vec![num_labels, h]),
            ("classifier.bias".into(), vec![num_labels]),
        ];
        for i in 0..cfg.num_hidden_layers {
            let pre = format!("vit.encoder.layer.{i}");
            for n in ["query", "key", "value"] {
                shapes.push((format!("{pre}.attention.attention.{n}.weight"), vec![h, h]));
                if cfg.qkv_bias {
                    shapes.push((format!("{pre}.attention.attention.{n}.bias"), vec![h]));
                }
            }
            shapes.push((format!("{pre}.attention.output.dense.weight"), vec![h, h]));
            shapes.push((format!("{pre}.attention.output.dense.bias"), vec![h]));
            shapes.push((format!("{pre}.intermediate.dense.weight"), vec![m, h]));
            shapes.push((format!("{pre}.intermediate.dense.bias"), vec![m]));
            shapes.push((format!("{pre}.output.dense.weight"), vec![h, m]));
            shapes.push((format!("{pre}.output.dense.bias"), vec![h]));
            for n in ["layernorm_before", "layernorm_after"] {
                shapes.push((format!("{pre}.{n}.weight"), vec![h]));
                shapes.push((format!("{pre}.{n}.bias"), vec![h]));
            }
        }
        shapes
    }

    /// Number of classes (rows of `classifier.weight`).
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// Side of the square input the model takes.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Precision of the weights and of the computation.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `(batch, num_labels)` for pixels `(batch, 3, size, size)` in the model's dtype.
    pub fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.embeddings.forward(pixels)?;
        let (batch, tokens, hidden) = xs.dims3()?;
        let mut xs = xs.reshape((batch * tokens, hidden))?;
        for layer in &self.layers {
            xs = layer.forward(&xs, batch, tokens)?;
        }
        let cls = xs
            .reshape((batch, tokens, hidden))?
            .i((.., 0, ..))?
            .contiguous()?;
        self.classifier.forward(&cls.apply(&self.layernorm)?)
    }
}
