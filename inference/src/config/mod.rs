//! The two JSON files of a Hugging Face image-classification checkpoint: `config.json`
//! ([`ViTConfig`]) and `preprocessor_config.json` ([`PreprocessorConfig`]).
//!
//! Field names are Hugging Face's; every field has the default `transformers` uses when the key
//! is absent, so older or trimmed files load.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

mod preprocessor;

pub use preprocessor::{PreprocessorConfig, Resample, Resize, CLIP_MEAN, CLIP_STD};

/// The `config.json` of a `ViTForImageClassification` checkpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct ViTConfig {
    /// Width of the token embeddings.
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// Number of encoder layers.
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Width of the MLP.
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    /// MLP activation (`"gelu"` is the exact, erf-based GELU, as in PyTorch).
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: candle_nn::Activation,
    /// Epsilon of every layer norm.
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Side of the square input image, in pixels.
    #[serde(default = "defaults::image_size")]
    pub image_size: usize,
    /// Side of a square patch, in pixels; must divide `image_size`.
    #[serde(default = "defaults::patch_size")]
    pub patch_size: usize,
    /// Input channels (3 for RGB).
    #[serde(default = "defaults::num_channels")]
    pub num_channels: usize,
    /// Whether the query, key and value projections have a bias.
    #[serde(default = "defaults::qkv_bias")]
    pub qkv_bias: bool,
    /// Class names by index (keys are decimal strings, as `transformers` writes them).
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    /// Model classes the checkpoint was saved from (`["ViTForImageClassification"]`).
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// `transformers` model type (`"vit"`).
    #[serde(default)]
    pub model_type: Option<String>,
}

mod defaults {
    pub fn hidden_size() -> usize {
        768
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn hidden_act() -> candle_nn::Activation {
        candle_nn::Activation::Gelu
    }
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        16
    }
    pub fn num_channels() -> usize {
        3
    }
    pub fn qkv_bias() -> bool {
        true
    }
    pub fn mean_std() -> [f32; 3] {
        [0.5, 0.5, 0.5]
    }
    pub fn yes() -> bool {
        true
    }
    pub fn rescale_factor() -> f64 {
        1.0 / 255.0
    }
    pub fn resample() -> u8 {
        2
    }
    pub fn clip_patch_size() -> usize {
        32
    }
    pub fn clip_hidden_act() -> String {
        "quick_gelu".into()
    }
    pub fn clip_layer_norm_eps() -> f64 {
        1e-5
    }
    pub fn projection_dim() -> usize {
        512
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

impl ViTConfig {
    /// The shape of `google/vit-base-patch16-224` (768 wide, 12 layers, 12 heads, 224/16),
    /// with `num_labels` unnamed classes.
    pub fn vit_base_patch16_224(num_labels: usize) -> Self {
        ViTConfig {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: candle_nn::Activation::Gelu,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            id2label: (0..num_labels)
                .map(|i| (i.to_string(), format!("LABEL_{i}")))
                .collect(),
            architectures: Some(vec!["ViTForImageClassification".into()]),
            model_type: Some("vit".into()),
        }
    }

    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: ViTConfig = read_json(path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks the architecture and that the sizes fit together; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let wrong = |found: String| Error::WrongArchitecture {
            path: path.to_path_buf(),
            found,
        };
        match (&self.architectures, &self.model_type) {
            (Some(archs), _) if !archs.is_empty() => {
                let ok = archs.iter().any(|a| a == "ViTForImageClassification");
                if !ok {
                    return Err(wrong(archs.join(", ")));
                }
            }
            (_, Some(t)) if t != "vit" => return Err(wrong(format!("model_type {t:?}"))),
            (_, None) => return Err(wrong("no architectures and no model_type".into())),
            _ => {}
        }
        let invalid = |reason: String| Error::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || self.num_hidden_layers == 0
            || self.intermediate_size == 0
        {
            return Err(invalid(
                "hidden_size, num_attention_heads, num_hidden_layers and intermediate_size must be positive"
                    .into(),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(invalid(format!(
                "num_attention_heads {} does not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            )));
        }
        if self.patch_size == 0
            || self.image_size == 0
            || !self.image_size.is_multiple_of(self.patch_size)
        {
            return Err(invalid(format!(
                "patch_size {} does not divide image_size {}",
                self.patch_size, self.image_size
            )));
        }
        if self.num_channels != 3 {
            return Err(invalid(format!(
                "num_channels is {}, only RGB (3) is supported",
                self.num_channels
            )));
        }
        for key in self.id2label.keys() {
            if key.parse::<usize>().is_err() {
                return Err(invalid(format!("id2label key {key:?} is not an integer")));
            }
        }
        Ok(())
    }

    /// Class names by index, `LABEL_i` where `id2label` has no entry; `num_labels` comes from the
    /// classifier weight.
    pub fn labels(&self, num_labels: usize) -> Vec<String> {
        let by_index: BTreeMap<usize, &String> = self
            .id2label
            .iter()
            .filter_map(|(k, v)| k.parse::<usize>().ok().map(|k| (k, v)))
            .collect();
        (0..num_labels)
            .map(|i| {
                by_index
                    .get(&i)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| format!("LABEL_{i}"))
            })
            .collect()
    }

    /// Number of classes named in `id2label` (0 when absent).
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }
}

/// The `architectures` entry (else the `model_type`) of a `config.json`: what the checkpoint
/// was saved from, for matching it with a task before loading.
pub fn architecture(path: &Path) -> Result<String> {
    let json: serde_json::Value = read_json(path)?;
    if let Some(first) = json
        .get("architectures")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
    {
        return Ok(first.to_string());
    }
    Ok(json
        .get("model_type")
        .and_then(|t| t.as_str())
        .map(|t| format!("model_type {t:?}"))
        .unwrap_or_else(|| "no architectures and no model_type".into()))
}

/// The vision tower of a CLIP checkpoint (`CLIPVisionConfig`): `vision_config` of a
/// `CLIPModel`, or the whole file of a `CLIPVisionModelWithProjection`. Defaults are
/// `transformers`' (those of `openai/clip-vit-base-patch32`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the token embeddings.
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: usize,
    /// Number of encoder layers.
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Input channels (3 for RGB).
    #[serde(default = "defaults::num_channels")]
    pub num_channels: usize,
    /// Side of the square input image, in pixels.
    #[serde(default = "defaults::image_size")]
    pub image_size: usize,
    /// Side of a square patch, in pixels; must divide `image_size`.
    #[serde(default = "defaults::clip_patch_size")]
    pub patch_size: usize,
    /// MLP activation name (`"quick_gelu"`, `"gelu"`, …).
    #[serde(default = "defaults::clip_hidden_act")]
    pub hidden_act: String,
    /// Epsilon of every layer norm.
    #[serde(default = "defaults::clip_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Width of the projected embedding (read from the top level of a `CLIPModel`'s file).
    #[serde(default = "defaults::projection_dim")]
    pub projection_dim: usize,
}

/// Which CLIP class a checkpoint was saved from. Both keep the vision tower under
/// `vision_model.` and the projection as `visual_projection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipArchitecture {
    /// `CLIPModel`: text and vision towers; the text weights are not loaded.
    Model,
    /// `CLIPVisionModelWithProjection`: the vision tower and its projection only.
    VisionWithProjection,
}

/// A CLIP checkpoint's `config.json`, reduced to what the image embedding needs.
#[derive(Debug, Clone)]
pub struct ClipConfig {
    /// The class it was saved from.
    pub architecture: ClipArchitecture,
    /// The vision tower, with the projection width.
    pub vision: ClipVisionConfig,
}

impl ClipVisionConfig {
    /// The vision tower of `openai/clip-vit-base-patch32` (768 wide, 12 layers, 12 heads,
    /// 224/32, projection 512, quick GELU).
    pub fn vit_base_patch32() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            projection_dim: 512,
        }
    }

    /// The activation, parsed.
    pub fn activation(&self) -> Option<crate::Act> {
        crate::Act::from_hf(&self.hidden_act)
    }
}

impl ClipConfig {
    /// Reads and validates a CLIP `config.json` (either architecture).
    pub fn from_file(path: &Path) -> Result<Self> {
        let json: serde_json::Value = read_json(path)?;
        let parse = |v: serde_json::Value| {
            serde_json::from_value::<ClipVisionConfig>(v).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            })
        };
        let found = architecture(path)?;
        let model_type = json.get("model_type").and_then(|t| t.as_str());
        let architecture = match (found.as_str(), model_type) {
            ("CLIPModel", _) | (_, Some("clip")) => ClipArchitecture::Model,
            ("CLIPVisionModelWithProjection", _) | (_, Some("clip_vision_model")) => {
                ClipArchitecture::VisionWithProjection
            }
            _ => {
                return Err(Error::WrongArchitecture {
                    path: path.to_path_buf(),
                    found,
                })
            }
        };
        let vision = match architecture {
            ClipArchitecture::Model => {
                let mut vision = parse(
                    json.get("vision_config")
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({})),
                )?;
                // `CLIPModel` projects to its own (top-level) projection_dim.
                vision.projection_dim = json
                    .get("projection_dim")
                    .and_then(|d| d.as_u64())
                    .map(|d| d as usize)
                    .unwrap_or_else(defaults::projection_dim);
                vision
            }
            ClipArchitecture::VisionWithProjection => parse(json)?,
        };
        let cfg = ClipConfig {
            architecture,
            vision,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks that the sizes fit together; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let v = &self.vision;
        let invalid = |reason: String| Error::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        if v.hidden_size == 0
            || v.num_attention_heads == 0
            || v.num_hidden_layers == 0
            || v.intermediate_size == 0
            || v.projection_dim == 0
        {
            return Err(invalid(
                "hidden_size, num_attention_heads, num_hidden_layers, intermediate_size and projection_dim must be positive"
                    .into(),
            ));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(invalid(format!(
                "num_attention_heads {} does not divide hidden_size {}",
                v.num_attention_heads, v.hidden_size
            )));
        }
        if v.patch_size == 0 || v.image_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(invalid(format!(
                "patch_size {} does not divide image_size {}",
                v.patch_size, v.image_size
            )));
        }
        if v.num_channels != 3 {
            return Err(invalid(format!(
                "num_channels is {}, only RGB (3) is supported",
                v.num_channels
            )));
        }
        if v.activation().is_none() {
            return Err(invalid(format!(
                "hidden_act {:?} is not supported",
                v.hidden_act
            )));
        }
        Ok(())
    }
}
