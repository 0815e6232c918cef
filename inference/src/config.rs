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

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum SizeJson {
    Square(u32),
    HeightWidth { height: u32, width: u32 },
    ShortestEdge { shortest_edge: u32 },
}

/// Every key of a `preprocessor_config.json` we read, and the keys that never change pixels.
/// Any other key is refused by name: a field we do not implement must not be ignored.
const KNOWN_KEYS: &[&str] = &[
    "size",
    "crop_size",
    "do_center_crop",
    "image_mean",
    "image_std",
    "resample",
    "do_resize",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "do_convert_rgb",
    // Bookkeeping that names classes, not pixels.
    "image_processor_type",
    "feature_extractor_type",
    "processor_class",
    "_processor_class",
];

/// Keys that are harmless when they hold their neutral value (`null` or `false`).
const NEUTRAL_WHEN_OFF: &[&str] = &[
    "do_pad",
    "do_flip_channel_order",
    "do_reduce_labels",
    "input_data_format",
    "data_format",
    "default_to_square",
];

#[derive(Debug, Deserialize)]
struct PreprocessorJson {
    #[serde(default)]
    size: Option<serde_json::Value>,
    #[serde(default)]
    crop_size: Option<serde_json::Value>,
    #[serde(default)]
    do_center_crop: Option<bool>,
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
    #[serde(default)]
    do_convert_rgb: Option<bool>,
    #[serde(default)]
    image_processor_type: Option<String>,
    #[serde(default)]
    feature_extractor_type: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// The resize step, before any centre crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// To exactly `height` x `width`, aspect ratio not kept (`ViTImageProcessor`'s
    /// `{"height", "width"}`).
    To {
        /// Height after resizing.
        height: u32,
        /// Width after resizing.
        width: u32,
    },
    /// The shortest edge to this many pixels, aspect ratio kept (`CLIPImageProcessor`'s
    /// `{"shortest_edge"}`): the long edge becomes `int(edge * long / short)`, truncated, as
    /// `transformers`' `get_resize_output_image_size` computes it.
    ShortestEdge(u32),
}

impl Resize {
    /// The size `(width, height)` an image of `width` x `height` is resized to.
    ///
    /// ```
    /// use dataflux_inference::config::Resize;
    /// assert_eq!(Resize::ShortestEdge(224).output_size(640, 480), (298, 224));
    /// assert_eq!(Resize::ShortestEdge(224).output_size(37, 101), (224, 611));
    /// assert_eq!(Resize::To { height: 32, width: 48 }.output_size(640, 480), (48, 32));
    /// ```
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        match *self {
            Resize::To { height, width } => (width, height),
            Resize::ShortestEdge(edge) => {
                let (short, long) = (width.min(height).max(1), width.max(height));
                // Python's int(edge * long / short): f64 division, truncated.
                let scaled = (f64::from(edge) * f64::from(long) / f64::from(short)) as u32;
                if width <= height {
                    (edge, scaled)
                } else {
                    (scaled, edge)
                }
            }
        }
    }
}

/// The `preprocessor_config.json` of an image checkpoint: what `ViTImageProcessor` and
/// `CLIPImageProcessor` can say that changes pixels.
///
/// Steps: resize ([`Resize`]) with `resample`, then (if `center_crop`) crop the centre
/// `height` x `width`, then rescale and normalize. Defaults when a key (or the whole file) is
/// absent are `ViTImageProcessor`'s: 224x224, bilinear, no crop, rescale by 1/255, normalize with
/// mean = std = 0.5. Keys we do not implement are refused by name ([`Error::InvalidConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessorConfig {
    /// Height of the model's input (after any crop).
    pub height: u32,
    /// Width of the model's input (after any crop).
    pub width: u32,
    /// The resize step.
    pub resize: Resize,
    /// Whether to crop the centre `height` x `width` after resizing (padding with zeros where
    /// the resized image is smaller, as `transformers`' `center_crop` does).
    pub center_crop: bool,
    /// Per-channel mean subtracted after rescaling.
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub image_std: [f32; 3],
    /// Resize filter.
    pub resample: Resample,
    /// Whether to resize (when false, images must already have the output size, or are
    /// cropped to it when `center_crop` is set).
    pub do_resize: bool,
    /// Whether to multiply pixel values by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Whether to apply mean and std.
    pub do_normalize: bool,
    /// Whether images with alpha (or a transparent palette entry) are composited onto opaque
    /// white before dropping alpha, as `transformers`' `convert_to_rgb` does when
    /// `do_convert_rgb` is set (`CLIPImageProcessor`'s default). When false, alpha is dropped
    /// as PIL's `convert("RGB")` does (ViT and the tutorial).
    pub alpha_on_white: bool,
}

impl Default for PreprocessorConfig {
    fn default() -> Self {
        PreprocessorConfig::square(224)
    }
}

/// CLIP's normalisation constants (`OPENAI_CLIP_MEAN`, `OPENAI_CLIP_STD` in `transformers`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// See [`CLIP_MEAN`].
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl PreprocessorConfig {
    /// `ViTImageProcessor`'s defaults with a `size`x`size` output.
    pub fn square(size: u32) -> Self {
        PreprocessorConfig {
            height: size,
            width: size,
            resize: Resize::To {
                height: size,
                width: size,
            },
            center_crop: false,
            image_mean: defaults::mean_std(),
            image_std: defaults::mean_std(),
            resample: Resample::Bilinear,
            do_resize: true,
            do_rescale: true,
            rescale_factor: defaults::rescale_factor(),
            do_normalize: true,
            alpha_on_white: false,
        }
    }

    /// `CLIPImageProcessor`'s defaults for a `size`x`size` model: shortest edge to `size`,
    /// bicubic, centre crop `size`x`size`, CLIP's mean and std.
    pub fn clip(size: u32) -> Self {
        PreprocessorConfig {
            resize: Resize::ShortestEdge(size),
            center_crop: true,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            resample: Resample::Bicubic,
            alpha_on_white: true,
            ..PreprocessorConfig::square(size)
        }
    }

    /// Reads a `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let json: PreprocessorJson = read_json(path)?;
        Self::from_json(json, path)
    }

    fn from_json(json: PreprocessorJson, path: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        for (key, value) in &json.rest {
            if KNOWN_KEYS.contains(&key.as_str()) {
                continue;
            }
            let neutral = matches!(
                value,
                serde_json::Value::Null | serde_json::Value::Bool(false)
            );
            if !(NEUTRAL_WHEN_OFF.contains(&key.as_str()) && neutral) {
                return Err(invalid(format!(
                    "{key:?} = {value} is not supported (it would change the pixels; we refuse \
                     rather than ignore it)"
                )));
            }
        }
        // CLIP-style processors read a bare integer size as a shortest edge, ViT-style ones as
        // a square (`get_size_dict(default_to_square=...)`).
        let processor = json
            .image_processor_type
            .as_deref()
            .or(json.feature_extractor_type.as_deref())
            .unwrap_or("");
        let clip_style = processor.contains("CLIP");
        let int_is_shortest_edge = clip_style;
        // Without the flag, images are converted plainly (we always convert: a model takes
        // RGB); with it, alpha is composited onto white. CLIP's processor sets it by default.
        let alpha_on_white = json.do_convert_rgb.unwrap_or(clip_style);
        let size = match &json.size {
            None => SizeJson::HeightWidth {
                height: 224,
                width: 224,
            },
            Some(v) => parse_size(v, "size").map_err(invalid)?,
        };
        let resize = match size {
            SizeJson::Square(s) if int_is_shortest_edge => Resize::ShortestEdge(s),
            SizeJson::Square(s) => Resize::To {
                height: s,
                width: s,
            },
            SizeJson::HeightWidth { height, width } => Resize::To { height, width },
            SizeJson::ShortestEdge { shortest_edge } => Resize::ShortestEdge(shortest_edge),
        };
        let center_crop = json.do_center_crop.unwrap_or(false);
        let crop = match (&json.crop_size, center_crop) {
            (Some(v), true) => Some(match parse_size(v, "crop_size").map_err(invalid)? {
                SizeJson::Square(s) => (s, s),
                SizeJson::HeightWidth { height, width } => (height, width),
                SizeJson::ShortestEdge { .. } => {
                    return Err(invalid(
                        "crop_size {\"shortest_edge\": ...} is not a crop size".into(),
                    ))
                }
            }),
            (None, true) => {
                return Err(invalid(
                    "do_center_crop is true but crop_size is missing".into(),
                ))
            }
            (_, false) => None,
        };
        let (height, width) = match (crop, resize) {
            (Some(hw), _) => hw,
            (None, Resize::To { height, width }) => (height, width),
            (None, Resize::ShortestEdge(e)) => {
                return Err(invalid(format!(
                    "size {{\"shortest_edge\": {e}}} without a centre crop gives images of \
                     different sizes, which cannot be batched"
                )))
            }
        };
        let zero = match resize {
            Resize::To { height, width } => height == 0 || width == 0,
            Resize::ShortestEdge(e) => e == 0,
        };
        if height == 0 || width == 0 || zero {
            return Err(invalid(format!(
                "an output size of {height}x{width} ({resize:?}) is empty"
            )));
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
            resize,
            center_crop,
            image_mean: json.image_mean,
            image_std: json.image_std,
            resample,
            do_resize: json.do_resize,
            do_rescale: json.do_rescale,
            rescale_factor: json.rescale_factor,
            do_normalize: json.do_normalize,
            alpha_on_white,
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

fn parse_size(v: &serde_json::Value, key: &str) -> std::result::Result<SizeJson, String> {
    if let Some(obj) = v.as_object() {
        let extra: Vec<&String> = obj
            .keys()
            .filter(|k| !matches!(k.as_str(), "height" | "width" | "shortest_edge"))
            .collect();
        if !extra.is_empty() {
            return Err(format!("{key} {v} has unsupported keys {extra:?}"));
        }
        if obj.contains_key("shortest_edge") && obj.len() > 1 {
            return Err(format!("{key} {v} mixes shortest_edge with height/width"));
        }
    }
    serde_json::from_value::<SizeJson>(v.clone())
        .map_err(|_| format!("{key} {v} is not an integer, {{height, width}} or {{shortest_edge}}"))
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
