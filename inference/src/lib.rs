//! Vision Transformer image classification and CLIP image embeddings with candle, matching
//! Hugging Face `transformers`.
//!
//! - [`source`]: where a checkpoint comes from (hub repository or local directory).
//! - [`config`]: `config.json` (ViT, CLIP) and `preprocessor_config.json`.
//! - [`preprocess`]: image bytes to normalized pixels, as PIL + `ViTImageProcessor` or
//!   `CLIPImageProcessor` do (exact or shortest-edge resize, bilinear or bicubic, centre crop).
//! - [`vit`]: the ViT classifier model, in Hugging Face's weight layout.
//! - [`clip`]: CLIP's image tower and projection, in Hugging Face's weight layout.
//! - [`classifier`]: loading, batched top-k classification, pipelined classification.
//! - [`embedder`]: loading, batched image embeddings (L2-normalised or raw).
//! - [`staging`]: 8-bit batches to the model's input on its device (normalised on the GPU).
//! - [`device`]: `auto`, `cpu`, `cuda:N`.
//! - [`folder`]: a model folder recognised by its files (candle or ONNX Runtime).
//! - `onnx` (feature `onnx`): ONNX Runtime for any image model exported to ONNX.
//!
//! ```no_run
//! use dataflux_inference::{Classifier, DecodePool, DeviceSpec, LoadOptions, ModelSource};
//!
//! # fn main() -> Result<(), dataflux_inference::Error> {
//! let source: ModelSource = "google/vit-base-patch16-224".parse().unwrap_or_else(|e| match e {});
//! let classifier = Classifier::load_blocking(&source, &LoadOptions::from_env(), DeviceSpec::Auto, None)?;
//! let pool = DecodePool::new(2)?;
//! let bytes = std::fs::read("cat.jpg").map_err(|source| dataflux_inference::Error::Io {
//!     path: "cat.jpg".into(),
//!     source,
//! })?;
//! let prepared = pool.preprocess_batch(classifier.preprocessor(), &[bytes]);
//! for result in classifier.classify_prepared(prepared, 5)? {
//!     println!("{result:?}");
//! }
//! # Ok(())
//! # }
//! ```

pub mod classifier;
pub mod clip;
pub mod config;
mod cpu_kernels;
pub mod cpu_pool;
pub mod decode;
pub mod device;
pub mod embedder;
pub mod error;
pub mod folder;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod pooling;
pub mod preprocess;
mod resample;
mod simd;
pub mod source;
pub mod staging;
mod transformer;
pub mod video;
pub mod vit;

pub use classifier::{Classifier, ImageResult, Prediction};
pub use config::{ClipConfig, ClipVisionConfig, PreprocessorConfig, Resample, Resize, ViTConfig};
pub use cpu_pool::{CpuPool, DecodePool};
pub use device::DeviceSpec;
pub use embedder::Embedder;
pub use error::{Error, PreprocessError, Result};
pub use pooling::Pooling;
pub use preprocess::{CroppedImage, DecodeLimits, PreparedImage, PreprocessMode, Preprocessor};
pub use source::{LoadOptions, ModelFiles, ModelSource};
pub use staging::PixelStager;
pub use transformer::Act;

/// Re-export of candle's tensor types used in this crate's API.
pub use candle_core::{DType, Device, Tensor};
/// An 8-bit RGB picture (the `image` crate's), as decoders and video samples give them.
pub use image::RgbImage;
