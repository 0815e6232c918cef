//! CLIP's image tower with its projection, as `transformers`' `CLIPModel.get_image_features`
//! and `CLIPVisionModelWithProjection` compute it, reading Hugging Face weight names
//! (`vision_model.*`, `visual_projection.weight`; a `CLIPModel`'s `text_model.*` tensors are
//! left unread in the memory map).
//!
//! candle-transformers 0.11.1 has a CLIP (`models::clip`) that reads the same names and pools
//! as `transformers` does (CLS token → `post_layernorm`), but it is not usable as is for
//! "any CLIP vision shape": every layer norm's epsilon is fixed at 1e-5 whatever the config
//! says, its only activation is `quick_gelu` (a config saying `"gelu"` would be computed
//! wrongly), its config is not read from `config.json`, and each linear layer runs as a
//! batched 3-D matmul, without our fused CPU kernels. This file reuses the encoder block of `transformer.rs`
//! (the one the ViT runs on, with its fused CPU kernels) and adds CLIP's embeddings
//! (class embedding without bias on the patch projection, `pre_layrnorm`) and head.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use crate::config::{ClipConfig, ClipVisionConfig};
use crate::error::{Error, Result};
use crate::transformer::{BlockNames, BlockShape, Layer, Linear, Norm, Weights};

/// `vision_model` + `visual_projection`: pixels to the projected image embedding.
#[derive(Debug, Clone)]
pub struct ClipImageEncoder {
    class_embedding: Tensor,
    position_embedding: Tensor,
    /// The patch convolution (no bias) as a `(hidden, 3 * patch * patch)` linear.
    patch_embedding: Linear,
    pre_layernorm: Norm,
    layers: Vec<Layer>,
    post_layernorm: Norm,
    projection: Linear,
    patch_size: usize,
    grid: usize,
    hidden_size: usize,
    image_size: usize,
    projection_dim: usize,
    dtype: DType,
    device: Device,
}

fn block_shape(v: &ClipVisionConfig) -> Option<BlockShape> {
    Some(BlockShape {
        hidden: v.hidden_size,
        heads: v.num_attention_heads,
        intermediate: v.intermediate_size,
        eps: v.layer_norm_eps,
        act: v.activation()?,
        qkv_bias: true,
    })
}

impl ClipImageEncoder {
    /// Builds the encoder from checkpoint tensors in `vb` (Hugging Face names); `path` is the
    /// weight file, named in errors.
    pub fn new(cfg: &ClipConfig, vb: VarBuilder, path: &Path) -> Result<Self> {
        let v = &cfg.vision;
        let dtype = vb.dtype();
        let device = vb.device().clone();
        let w = Weights { vb, path };
        let (h, p, c) = (v.hidden_size, v.patch_size, v.num_channels);
        let grid = v.image_size / p;
        let tokens = grid * grid + 1;
        let shape = block_shape(v).ok_or_else(|| Error::InvalidConfig {
            path: path.to_path_buf(),
            reason: format!("hidden_act {:?} is not supported", v.hidden_act),
        })?;
        let class_embedding = w
            .get("vision_model.embeddings.class_embedding", &[h])?
            .reshape((1, 1, h))?;
        let position_embedding = w
            .get(
                "vision_model.embeddings.position_embedding.weight",
                &[tokens, h],
            )?
            .reshape((1, tokens, h))?;
        let patch = w
            .get(
                "vision_model.embeddings.patch_embedding.weight",
                &[h, c, p, p],
            )?
            .reshape((h, c * p * p))?;
        let patch_embedding = w.build_linear(patch, None)?;
        let pre_layernorm = w.layer_norm("vision_model.pre_layrnorm", h, v.layer_norm_eps)?;
        let layers = (0..v.num_hidden_layers)
            .map(|i| Layer::new(&shape, &BlockNames::clip(i), &w))
            .collect::<Result<Vec<_>>>()?;
        let post_layernorm = w.layer_norm("vision_model.post_layernorm", h, v.layer_norm_eps)?;
        let projection = w.linear("visual_projection", h, v.projection_dim, false)?;
        Ok(ClipImageEncoder {
            class_embedding,
            position_embedding,
            patch_embedding,
            pre_layernorm,
            layers,
            post_layernorm,
            projection,
            patch_size: p,
            grid,
            hidden_size: h,
            image_size: v.image_size,
            projection_dim: v.projection_dim,
            dtype,
            device,
        })
    }

    /// Every tensor the image side of a checkpoint for `cfg` holds: Hugging Face name and
    /// shape (used to build random-weight models for tests and benches).
    pub fn weight_shapes(cfg: &ClipConfig) -> Vec<(String, Vec<usize>)> {
        let v = &cfg.vision;
        let (h, p, c) = (v.hidden_size, v.patch_size, v.num_channels);
        let tokens = (v.image_size / p).pow(2) + 1;
        let mut shapes = vec![
            (
                "vision_model.embeddings.class_embedding".to_string(),
                vec![h],
            ),
            (
                "vision_model.embeddings.position_embedding.weight".into(),
                vec![tokens, h],
            ),
            (
                "vision_model.embeddings.patch_embedding.weight".into(),
                vec![h, c, p, p],
            ),
            ("vision_model.pre_layrnorm.weight".into(), vec![h]),
            ("vision_model.pre_layrnorm.bias".into(), vec![h]),
            ("vision_model.post_layernorm.weight".into(), vec![h]),
            ("vision_model.post_layernorm.bias".into(), vec![h]),
            ("visual_projection.weight".into(), vec![v.projection_dim, h]),
        ];
        if let Some(shape) = block_shape(v) {
            for i in 0..v.num_hidden_layers {
                shapes.extend(BlockNames::clip(i).shapes(&shape));
            }
        }
        shapes
    }

    /// Width of the projected embedding.
    pub fn projection_dim(&self) -> usize {
        self.projection_dim
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

    /// Projected embeddings `(batch, projection_dim)`, not normalised, for pixels
    /// `(batch, 3, size, size)` in the model's dtype.
    pub fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, _, _) = pixels.dims4()?;
        let (g, p, h) = (self.grid, self.patch_size, self.hidden_size);
        let tokens = g * g + 1;
        let patches = pixels
            .reshape((b, c, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, c * p * p))?;
        let patches = self
            .patch_embedding
            .forward(&patches)?
            .reshape((b, g * g, h))?;
        let cls = self.class_embedding.broadcast_as((b, 1, h))?;
        let xs = Tensor::cat(&[&cls, &patches], 1)?
            .broadcast_add(&self.position_embedding)?
            .reshape((b * tokens, h))?;
        let mut xs = xs.apply(&self.pre_layernorm)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, b, tokens)?;
        }
        let pooled = xs
            .reshape((b, tokens, h))?
            .i((.., 0, ..))?
            .contiguous()?
            .apply(&self.post_layernorm)?;
        self.projection.forward(&pooled)
    }
}
