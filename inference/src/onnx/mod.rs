//! ONNX Runtime as the second engine: any image model exported to ONNX (`torch.onnx.export`,
//! optimum), with the same PIL-identical preprocessing as the candle models (cargo feature
//! `onnx`).
//!
//! - [`runtime`]: finding and loading `libonnxruntime.so` at run time (nothing at build time).
//! - [`session`]: one model in a session: its image input, outputs, provider, batches.
//! - [`head`]: which output a task reads, softmax and top-k, pooling, L2 normalisation.
//!
//! [`OnnxModel`] puts a session together with its preprocessing and labels:
//!
//! ```no_run
//! use dataflux_inference::folder::OnnxFiles;
//! use dataflux_inference::onnx::{OnnxModel, SessionOptions};
//!
//! # fn main() -> Result<(), dataflux_inference::Error> {
//! let model = OnnxModel::load(&OnnxFiles::bare("resnet.onnx".into()), &SessionOptions::default(), None, None)?;
//! let image = model.preprocessor().preprocess_u8(&std::fs::read("cat.jpg").unwrap_or_default())?;
//! let outputs = model.run(&[image])?;
//! println!("{:?}", outputs[0].shape);
//! # Ok(())
//! # }
//! ```

pub mod head;
pub mod runtime;
pub mod session;

use std::io::Read;
use std::path::Path;

pub use crate::pooling::Pooling;
pub use session::{
    Element, ImageInput, OnnxSession, OutputInfo, OutputTensor, Provider, SessionOptions,
};

use crate::config::PreprocessorConfig;
use crate::error::{Error, Result};
use crate::folder::OnnxFiles;
use crate::preprocess::{CroppedImage, Preprocessor};

/// ImageNet's mean, the default normalisation of a bare `.onnx` file (torchvision's).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's standard deviation; see [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An ONNX image model with its preprocessing and labels.
#[derive(Debug)]
pub struct OnnxModel {
    session: OnnxSession,
    preprocessor: Preprocessor,
    labels: Vec<String>,
    digest: String,
    outputs: Vec<OutputInfo>,
}

impl OnnxModel {
    /// Loads `files` on the provider of `options`.
    ///
    /// Preprocessing: `preprocessor` when given, else the folder's `preprocessor_config.json`,
    /// else `ViTImageProcessor`'s steps at the model's input size (224 where the graph leaves
    /// it open) with ImageNet's mean and std. Labels: `labels` when given, else `id2label` of
    /// the folder's `config.json`, else class indices. The model is run once on a blank image
    /// so that every output's size per image is known before the first batch.
    pub fn load(
        files: &OnnxFiles,
        options: &SessionOptions,
        preprocessor: Option<PreprocessorConfig>,
        labels: Option<Vec<String>>,
    ) -> Result<Self> {
        let session = OnnxSession::load(&files.model, options)?;
        let input = session.input().clone();
        let config = match (preprocessor, &files.preprocessor_config) {
            (Some(config), _) => config,
            (None, Some(path)) => PreprocessorConfig::from_file(path)?,
            (None, None) => {
                let size = input.height.or(input.width).unwrap_or(224);
                PreprocessorConfig {
                    image_mean: IMAGENET_MEAN,
                    image_std: IMAGENET_STD,
                    ..PreprocessorConfig::square(size)
                }
            }
        };
        let fits = |fixed: Option<u32>, ours: u32| fixed.is_none_or(|f| f == ours);
        if !fits(input.height, config.height) || !fits(input.width, config.width) {
            return Err(Error::OnnxModel {
                path: files.model.clone(),
                reason: format!(
                    "its input {} is {}x{}, the preprocessing gives {}x{}",
                    input.name,
                    input.height.map_or("?".into(), |h| h.to_string()),
                    input.width.map_or("?".into(), |w| w.to_string()),
                    config.height,
                    config.width
                ),
            });
        }
        let labels = match (labels, &files.config) {
            (Some(labels), _) => labels,
            (None, Some(config)) => config_labels(config)?,
            (None, None) => Vec::new(),
        };
        let digest = digest(&files.model)?;
        let mut model = Self {
            session,
            preprocessor: Preprocessor::new(config),
            labels,
            digest,
            outputs: Vec::new(),
        };
        model.outputs = model.probe()?;
        Ok(model)
    }

    /// Runs one blank image: the outputs with their per-image sizes filled in.
    fn probe(&self) -> Result<Vec<OutputInfo>> {
        let c = self.preprocessor.config();
        let blank = CroppedImage {
            pixels: vec![0; 3 * c.height as usize * c.width as usize],
            height: c.height,
            width: c.width,
            source_width: c.width,
            source_height: c.height,
        };
        let ran = self.run(&[blank])?;
        Ok(self
            .session
            .outputs()
            .iter()
            .map(|info| match ran.iter().find(|t| t.name == info.name) {
                Some(t) => OutputInfo {
                    dims: std::iter::once(None)
                        .chain(t.shape.iter().skip(1).map(|&d| Some(d)))
                        .collect(),
                    ..info.clone()
                },
                None => info.clone(),
            })
            .collect())
    }

    /// The preprocessing (decode, resize, crop) into the model's input.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Replaces the preprocessor's decode mode and limits (its configuration stays).
    pub fn set_preprocessor(&mut self, preprocessor: Preprocessor) {
        self.preprocessor = preprocessor;
    }

    /// Class names by index (empty: indices are the labels).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The model file's SHA-256, hex: part of a run's definition.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The session.
    pub fn session(&self) -> &OnnxSession {
        &self.session
    }

    /// The outputs, each with its size per image as the model gives it (the batch axis
    /// `None`).
    pub fn outputs(&self) -> &[OutputInfo] {
        &self.outputs
    }

    /// Runs a batch of preprocessed images; every output, batch first, one row per image.
    pub fn run(&self, images: &[CroppedImage]) -> Result<Vec<OutputTensor>> {
        let c = self.preprocessor.config();
        let per = 3 * c.height as usize * c.width as usize;
        let mut pixels = vec![0f32; per * images.len()];
        for (index, (image, out)) in images.iter().zip(pixels.chunks_exact_mut(per)).enumerate() {
            if image.pixels.len() != per {
                return Err(Error::InputSize {
                    index,
                    expected: per,
                    found: image.pixels.len(),
                    size: c.height as usize,
                });
            }
            self.preprocessor.normalize_planar_into(&image.pixels, out);
        }
        self.session.run(pixels, images.len(), c.height, c.width)
    }
}

/// `id2label` of a `config.json` as a list by index (indices without a name get their number).
pub fn config_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_slice(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let Some(map) = json.get("id2label").and_then(|m| m.as_object()) else {
        return Ok(Vec::new());
    };
    let by_index: std::collections::BTreeMap<usize, String> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    let len = by_index.keys().next_back().map_or(0, |&k| k + 1);
    Ok((0..len)
        .map(|i| by_index.get(&i).cloned().unwrap_or_else(|| i.to_string()))
        .collect())
}

/// A labels file: one class name per line, in index order (a trailing empty line ignored).
pub fn labels_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}

/// The SHA-256 of a file, hex, read in blocks.
fn digest(path: &Path) -> Result<String> {
    use sha2::Digest;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
