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

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use crate::config::ViTConfig;
use crate::error::{Error, Result};
use crate::transformer::{Act, BlockNames, BlockShape, Layer, Linear, Norm, Weights};

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
        let shape = block_shape(cfg);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(&shape, &BlockNames::vit(i), &w))
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
        let (h, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
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
        let shape = block_shape(cfg);
        for i in 0..cfg.num_hidden_layers {
            shapes.extend(BlockNames::vit(i).shapes(&shape));
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

fn block_shape(cfg: &ViTConfig) -> BlockShape {
    BlockShape {
        hidden: cfg.hidden_size,
        heads: cfg.num_attention_heads,
        intermediate: cfg.intermediate_size,
        eps: cfg.layer_norm_eps,
        act: Act::Candle(cfg.hidden_act),
        qkv_bias: cfg.qkv_bias,
    }
}
