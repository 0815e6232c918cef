//! The two JSON files of a Hugging Face image-classification checkpoint: `config.json`
//! ([`ViTConfig`]) and `preprocessor_config.json` ([`PreprocessorConfig`]).
//!
//! Field names are Hugging Face's; every field has the default `transformers` uses when the key
//! is absent, so older or trimmed files load.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

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

/// Resampling filter, numbered as PIL's `Image.Resampling` (the `resample` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// PIL `NEAREST` (0).
    Nearest,
    /// PIL `LANCZOS` (1).
    Lanczos,
    /// PIL `BILINEAR` (2), antialiased: the ViT default.
    Bilinear,
    /// PIL `BICUBIC` (3).
    Bicubic,
    /// PIL `BOX` (4).
    Box,
    /// PIL `HAMMING` (5).
    Hamming,
}

impl Resample {
    /// Maps PIL's number to a filter.
    pub fn from_pil(code: u8) -> Option<Self> {
        Some(match code {
            0 => Resample::Nearest,
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            _ => return None,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeJson {
    Square(u32),
    HeightWidth { height: u32, width: u32 },
    ShortestEdge { shortest_edge: u32 },
}

#[derive(Debug, Deserialize)]
struct PreprocessorJson {
    #[serde(default)]
    size: Option<SizeJson>,
    #[serde(default = "defaults::mean_std")]
    image_mean: [f32; 3],
    #[serde(default = "defaults::mean_std")]
    image_std: [f32; 3],
    #[serde(default = "defaults::resample")]
    resample: u8,
    #[serde(default = "defaults::yes")]
    do_resize: bool,
    #[serde(default = "defaults::yes")]
    do_rescale: bool,
    #[serde(default = "defaults::rescale_factor")]
    rescale_factor: f64,
    #[serde(default = "defaults::yes")]
    do_normalize: bool,
}

/// The `preprocessor_config.json` of a ViT checkpoint (`ViTImageProcessor`).
///
/// Defaults when a key (or the whole file) is absent are `ViTImageProcessor`'s: 224x224,
/// bilinear, rescale by 1/255, normalize with mean = std = 0.5.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessorConfig {
    /// Output height in pixels.
    pub height: u32,
    /// Output width in pixels.
    pub width: u32,
    /// Per-channel mean subtracted after rescaling.
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub image_std: [f32; 3],
    /// Resize filter.
    pub resample: Resample,
    /// Whether to resize (when false, images must already have the output size).
    pub do_resize: bool,
    /// Whether to multiply pixel values by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Whether to apply mean and std.
    pub do_normalize: bool,
}

impl Default for PreprocessorConfig {
    fn default() -> Self {
        PreprocessorConfig::square(224)
    }
}

impl PreprocessorConfig {
    /// `ViTImageProcessor`'s defaults with a `size`x`size` output.
    pub fn square(size: u32) -> Self {
        PreprocessorConfig {
            height: size,
            width: size,
            image_mean: defaults::mean_std(),
            image_std: defaults::mean_std(),
            resample: Resample::Bilinear,
            do_resize: true,
            do_rescale: true,
            rescale_factor: defaults::rescale_factor(),
            do_normalize: true,
        }
    }

    /// Reads a `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let json: PreprocessorJson = read_json(path)?;
        let invalid = |reason: String| Error::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        let (height, width) = match json.size {
            None => (224, 224),
            Some(SizeJson::Square(s)) => (s, s),
            Some(SizeJson::HeightWidth { height, width }) => (height, width),
            Some(SizeJson::ShortestEdge { shortest_edge }) => {
                return Err(invalid(format!(
                    "size {{\"shortest_edge\": {shortest_edge}}} (aspect-preserving resize) is not supported for ViT"
                )))
            }
        };
        if height == 0 || width == 0 {
            return Err(invalid(format!("size {height}x{width} is empty")));
        }
        let resample = Resample::from_pil(json.resample)
            .ok_or_else(|| invalid(format!("unknown resample {}", json.resample)))?;
        if json.image_std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(invalid(format!(
                "image_std {:?} has a zero",
                json.image_std
            )));
        }
        Ok(PreprocessorConfig {
            height,
            width,
            image_mean: json.image_mean,
            image_std: json.image_std,
            resample,
            do_resize: json.do_resize,
            do_rescale: json.do_rescale,
            rescale_factor: json.rescale_factor,
            do_normalize: json.do_normalize,
        })
    }

    /// Reads `path` when it exists, else returns the defaults for a `size`x`size` model.
    pub fn from_file_or_default(path: &Path, size: u32) -> Result<Self> {
        if path.exists() {
            Self::from_file(path)
        } else {
            Ok(Self::square(size))
        }
    }
}
