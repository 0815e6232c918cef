//! The user-facing image embedder: load a CLIP checkpoint, embed prepared images in batches.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::clip::ClipImageEncoder;
use crate::config::{ClipConfig, PreprocessorConfig};
use crate::device::DeviceSpec;
use crate::error::Result;
use crate::preprocess::{batch_tensor, CroppedImage, PreparedImage, PreprocessMode, Preprocessor};
use crate::source::{open_weights, LoadOptions, ModelFiles, ModelSource};
use crate::staging::PixelStager;

/// A CLIP image embedder (`CLIPModel` or `CLIPVisionModelWithProjection`) with its
/// preprocessing.
///
/// ```no_run
/// use dataflux_inference::{DeviceSpec, Embedder, LoadOptions, ModelSource};
///
/// # fn main() -> Result<(), dataflux_inference::Error> {
/// let source: ModelSource = "openai/clip-vit-base-patch32".parse().unwrap_or_else(|e| match e {});
/// let embedder = Embedder::load_blocking(&source, &LoadOptions::from_env(), DeviceSpec::Auto, None)?;
/// let bytes = std::fs::read("cat.jpg").map_err(|source| dataflux_inference::Error::Io {
///     path: "cat.jpg".into(),
///     source,
/// })?;
/// let image = embedder.preprocessor().preprocess(&bytes)?;
/// let vectors = embedder.embed(&[image], true)?;
/// assert_eq!(vectors[0].len(), embedder.dim());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Embedder {
    model: ClipImageEncoder,
    preprocessor: Preprocessor,
    stager: PixelStager,
    config: ClipConfig,
}

impl Embedder {
    /// Fetches (hub) or finds (local directory) the checkpoint and loads it on `device` in
    /// `dtype` (default: f32 on CPU, bf16 on CUDA).
    pub async fn load(
        source: &ModelSource,
        options: &LoadOptions,
        device: DeviceSpec,
        dtype: Option<DType>,
    ) -> Result<Self> {
        let files = ModelFiles::fetch(source, options).await?;
        Self::from_files(&files, &device.open()?, dtype)
    }

    /// [`Embedder::load`] for synchronous callers (safe, but blocking, inside a runtime).
    pub fn load_blocking(
        source: &ModelSource,
        options: &LoadOptions,
        device: DeviceSpec,
        dtype: Option<DType>,
    ) -> Result<Self> {
        let files = ModelFiles::fetch_blocking(source, options)?;
        Self::from_files(&files, &device.open()?, dtype)
    }

    /// Loads a checkpoint whose files are already local. The weights are memory-mapped; a
    /// `CLIPModel`'s text tower is never read.
    pub fn from_files(files: &ModelFiles, device: &Device, dtype: Option<DType>) -> Result<Self> {
        let config = ClipConfig::from_file(&files.config)?;
        let pre = files.preprocessor(config.vision.image_size as u32, PreprocessorConfig::clip)?;
        let (vb, weights) = open_weights(files, device, dtype)?;
        Self::from_parts(config, pre, vb, weights)
    }

    /// Builds an embedder from an in-memory config and a [`VarBuilder`] (random weights in
    /// tests, for instance); `weights` names the source in errors.
    pub fn from_parts(
        config: ClipConfig,
        preprocessor: PreprocessorConfig,
        vb: VarBuilder,
        weights: &Path,
    ) -> Result<Self> {
        let model = ClipImageEncoder::new(&config, vb, weights)?;
        let preprocessor = Preprocessor::new(preprocessor);
        let stager = PixelStager::new(
            &preprocessor,
            model.image_size(),
            model.device(),
            model.dtype(),
        )?;
        Ok(Embedder {
            model,
            preprocessor,
            stager,
            config,
        })
    }

    /// The preprocessor matching this checkpoint.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Replaces the preprocessor (to change mode or limits); fails only when its
    /// normalisation tables cannot be put on the device.
    pub fn set_preprocessor(&mut self, preprocessor: Preprocessor) -> Result<()> {
        self.stager = self.stager.clone().with_preprocessor(&preprocessor)?;
        self.preprocessor = preprocessor;
        Ok(())
    }

    /// What turns [`CroppedImage`]s into the model's input on its device.
    pub fn stager(&self) -> &PixelStager {
        &self.stager
    }

    /// Switches the preprocessor between exact and fast mode, keeping its limits.
    pub fn set_preprocess_mode(&mut self, mode: PreprocessMode) {
        self.preprocessor = self.preprocessor.clone().with_mode(mode);
    }

    /// The model configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.model.projection_dim()
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// The precision the model computes in.
    pub fn dtype(&self) -> DType {
        self.model.dtype()
    }

    /// Stacks prepared images into a `(batch, 3, size, size)` f32 tensor on the model's device.
    pub fn batch_tensor(&self, images: &[PreparedImage]) -> Result<Tensor> {
        batch_tensor(images, self.model.image_size(), self.device())
    }

    /// Projected embeddings `(batch, dim)` as f32, L2-normalised when `normalize`, for a
    /// `(batch, 3, size, size)` pixel tensor (any float dtype, any device; it is moved and cast
    /// as needed). The norm is taken in f32 whatever the compute dtype.
    pub fn embeddings(&self, pixels: &Tensor, normalize: bool) -> Result<Tensor> {
        let pixels = pixels.to_device(self.device())?.to_dtype(self.dtype())?;
        let raw = self.model.forward(&pixels)?.to_dtype(DType::F32)?;
        if !normalize {
            return Ok(raw);
        }
        // As `image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)`.
        let norm = raw.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(raw.broadcast_div(&norm)?)
    }

    /// One embedding per image, in order, L2-normalised when `normalize`.
    pub fn embed(&self, images: &[PreparedImage], normalize: bool) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.embeddings(&self.batch_tensor(images)?, normalize)?;
        Ok(out.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }

    /// [`Embedder::embed`] for 8-bit images ([`Preprocessor::preprocess_u8`]): on CUDA they
    /// are uploaded as they are and normalised on the device ([`PixelStager`]).
    pub fn embed_cropped(&self, images: &[CroppedImage], normalize: bool) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.embeddings(&self.stager.stage(images)?, normalize)?;
        Ok(out.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }
}
