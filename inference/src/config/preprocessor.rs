//! `preprocessor_config.json`: what the image processors of `transformers` say that changes
//! pixels (ViT, DeiT, BEiT, Swin, CLIP, SigLIP, ConvNeXt and ResNet, BiT and DINOv2,
//! EfficientNet), read into one [`PreprocessorConfig`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{defaults, read_json};
use crate::error::{Error, Result};
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
    // Read only for the processors that have them (refused by name for the others).
    "crop_pct",
    "include_top",
    "rescale_offset",
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
    "reduce_labels",
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
    crop_pct: Option<f64>,
    #[serde(default)]
    include_top: Option<bool>,
    #[serde(default)]
    rescale_offset: Option<bool>,
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
    /// Subtract 1 after rescaling (`EfficientNetImageProcessor`'s `rescale_offset`: pixels in
    /// [-1, 1] with a rescale factor of 1/127.5).
    pub rescale_offset: bool,
    /// Divide by `image_std` once more after normalizing (`EfficientNetImageProcessor`'s
    /// `include_top`, its default).
    pub extra_std_division: bool,
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
            rescale_offset: false,
            extra_std_division: false,
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
        let family = Family::of(processor);
        // CLIP, BiT (DINOv2) and ConvNeXt (ResNet) read a bare integer size as a shortest edge
        // (`get_size_dict(default_to_square=False)`), the others as a square.
        let int_is_shortest_edge = matches!(family, Family::Clip | Family::Bit | Family::ConvNext);
        // Without the flag, images are converted plainly (we always convert: a model takes
        // RGB); with it, alpha is composited onto white. CLIP's and BiT's processors set it by
        // default.
        let alpha_on_white = json
            .do_convert_rgb
            .unwrap_or(matches!(family, Family::Clip | Family::Bit));
        // Keys only some processors have: refused by name elsewhere (they would change pixels).
        let only_for = |key: &str, set: bool, owner: &str| {
            if set {
                Err(invalid(format!(
                    "{key:?} is only read for {owner}, and this is a {} (it would change the \
                     pixels; we refuse rather than ignore it)",
                    if processor.is_empty() {
                        "processor of no declared type"
                    } else {
                        processor
                    }
                )))
            } else {
                Ok(())
            }
        };
        if family != Family::ConvNext {
            only_for(
                "crop_pct",
                json.crop_pct.is_some(),
                "ConvNextImageProcessor",
            )?;
        }
        if family != Family::EfficientNet {
            only_for(
                "include_top",
                json.include_top == Some(true),
                "EfficientNetImageProcessor",
            )?;
            only_for(
                "rescale_offset",
                json.rescale_offset == Some(true),
                "EfficientNetImageProcessor",
            )?;
        }
        let size = match &json.size {
            None => SizeJson::HeightWidth {
                height: 224,
                width: 224,
            },
            Some(v) => parse_size(v, "size").map_err(invalid)?,
        };
        let (resize, center_crop, height, width) = if family == Family::ConvNext {
            convnext_geometry(&json, size).map_err(invalid)?
        } else {
            geometry(&json, size, int_is_shortest_edge).map_err(invalid)?
        };
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
            rescale_offset: json.rescale_offset.unwrap_or(false),
            // EfficientNet's include_top defaults to true.
            extra_std_division: family == Family::EfficientNet && json.include_top.unwrap_or(true),
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

/// The resize and crop of a ViT-, CLIP- or BiT-like processor: `(resize, center_crop, height,
/// width)`, or why they cannot be batched.
fn geometry(
    json: &PreprocessorJson,
    size: SizeJson,
    int_is_shortest_edge: bool,
) -> std::result::Result<(Resize, bool, u32, u32), String> {
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
        (Some(v), true) => Some(match parse_size(v, "crop_size")? {
            SizeJson::Square(s) => (s, s),
            SizeJson::HeightWidth { height, width } => (height, width),
            SizeJson::ShortestEdge { .. } => {
                return Err("crop_size {\"shortest_edge\": ...} is not a crop size".into())
            }
        }),
        (None, true) => return Err("do_center_crop is true but crop_size is missing".into()),
        (_, false) => None,
    };
    let (height, width) = match (crop, resize) {
        (Some(hw), _) => hw,
        (None, Resize::To { height, width }) => (height, width),
        (None, Resize::ShortestEdge(e)) => {
            return Err(format!(
                "size {{\"shortest_edge\": {e}}} without a centre crop gives images of \
                     different sizes, which cannot be batched"
            ))
        }
    };
    let zero = match resize {
        Resize::To { height, width } => height == 0 || width == 0,
        Resize::ShortestEdge(e) => e == 0,
    };
    if height == 0 || width == 0 || zero {
        return Err(format!(
            "an output size of {height}x{width} ({resize:?}) is empty"
        ));
    }
    Ok((resize, center_crop, height, width))
}

/// `ConvNextImageProcessor` (ConvNeXt, ResNet, RegNet, …): below 384, the shortest edge is
/// resized to `int(shortest_edge / crop_pct)`, then the centre `shortest_edge` square is
/// cropped; from 384 up the image is resized to that square without a crop.
fn convnext_geometry(
    json: &PreprocessorJson,
    size: SizeJson,
) -> std::result::Result<(Resize, bool, u32, u32), String> {
    let edge =
        match size {
            SizeJson::Square(e) | SizeJson::ShortestEdge { shortest_edge: e } => e,
            SizeJson::HeightWidth { .. } => return Err(
                "ConvNextImageProcessor takes size {\"shortest_edge\": N}, not height and width"
                    .into(),
            ),
        };
    // transformers: crop_pct if given, else 224 / 256.
    let crop_pct = json.crop_pct.unwrap_or(224.0 / 256.0);
    if edge == 0 || !(crop_pct > 0.0 && crop_pct.is_finite()) {
        return Err(format!(
            "shortest_edge {edge} with crop_pct {crop_pct} gives no image"
        ));
    }
    if json.do_center_crop.is_some() || json.crop_size.is_some() {
        return Err(
            "ConvNextImageProcessor crops by crop_pct; do_center_crop and crop_size are not its keys"
                .into(),
        );
    }
    Ok(if edge < 384 {
        // Python's int(shortest_edge / crop_pct): f64 division, truncated.
        let resized = (f64::from(edge) / crop_pct) as u32;
        (Resize::ShortestEdge(resized.max(1)), true, edge, edge)
    } else {
        (
            Resize::To {
                height: edge,
                width: edge,
            },
            false,
            edge,
            edge,
        )
    })
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

/// The image processor families whose keys differ (`image_processor_type`, else
/// `feature_extractor_type`). Every other processor reads like `ViTImageProcessor` (DeiT, BEiT,
/// Swin, SigLIP and ViT itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Clip,
    Bit,
    ConvNext,
    EfficientNet,
    ViTLike,
}

impl Family {
    fn of(processor: &str) -> Self {
        if processor.contains("CLIP") {
            Family::Clip
        } else if processor.starts_with("Bit") {
            Family::Bit
        } else if processor.starts_with("ConvNext") {
            Family::ConvNext
        } else if processor.starts_with("EfficientNet") {
            Family::EfficientNet
        } else {
            Family::ViTLike
        }
    }
}
