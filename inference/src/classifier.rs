//! The user-facing classifier: load a checkpoint, classify prepared images in batches, or run
//! a pipelined loop that decodes the next batch while the current one is on the model.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::{PreprocessorConfig, ViTConfig};
use crate::cpu_pool::DecodePool;
use crate::device::DeviceSpec;
use crate::error::{Error, PreprocessError, Result};
use crate::preprocess::{batch_tensor, CroppedImage, PreparedImage, PreprocessMode, Preprocessor};
use crate::source::{open_weights, LoadOptions, ModelFiles, ModelSource};
use crate::staging::PixelStager;
use crate::vit::ViTForImageClassification;

/// One class of a top-k answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Class name from `id2label`.
    pub label: String,
    /// Class index.
    pub index: usize,
    /// Softmax probability, computed in f32 from the logits.
    pub probability: f32,
}

/// The answer for one image of a pipelined batch: its predictions, or why it was skipped.
pub type ImageResult = std::result::Result<Vec<Prediction>, PreprocessError>;

/// A ViT image classifier with its preprocessing and labels.
#[derive(Debug, Clone)]
pub struct Classifier {
    model: ViTForImageClassification,
    labels: Vec<String>,
    preprocessor: Preprocessor,
    stager: PixelStager,
    config: ViTConfig,
}

impl Classifier {
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

    /// [`Classifier::load`] for synchronous callers; it runs the download on a private runtime
    /// in a helper thread, so it is also safe (but blocking) inside an async runtime.
    pub fn load_blocking(
        source: &ModelSource,
        options: &LoadOptions,
        device: DeviceSpec,
        dtype: Option<DType>,
    ) -> Result<Self> {
        let files = ModelFiles::fetch_blocking(source, options)?;
        Self::from_files(&files, &device.open()?, dtype)
    }

    /// Loads a checkpoint whose files are already local. The weights are memory-mapped.
    pub fn from_files(files: &ModelFiles, device: &Device, dtype: Option<DType>) -> Result<Self> {
        let config = ViTConfig::from_file(&files.config)?;
        let pre = files.preprocessor(config.image_size as u32, PreprocessorConfig::square)?;
        let (vb, weights) = open_weights(files, device, dtype)?;
        Self::from_parts(config, pre, vb, weights)
    }

    /// Builds a classifier from an in-memory config and a [`VarBuilder`] (random weights in
    /// tests, for instance); `weights` names the source in errors.
    pub fn from_parts(
        config: ViTConfig,
        preprocessor: PreprocessorConfig,
        vb: VarBuilder,
        weights: &Path,
    ) -> Result<Self> {
        let model = ViTForImageClassification::new(&config, vb, weights)?;
        let labels = config.labels(model.num_labels());
        let preprocessor = Preprocessor::new(preprocessor);
        let stager = PixelStager::new(
            &preprocessor,
            model.image_size(),
            model.device(),
            model.dtype(),
        )?;
        Ok(Classifier {
            model,
            labels,
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

    /// Class names by index.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The model configuration.
    pub fn config(&self) -> &ViTConfig {
        &self.config
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

    /// Logits `(batch, num_labels)` as f32 for a `(batch, 3, size, size)` pixel tensor (any
    /// float dtype, any device; it is moved and cast as needed).
    pub fn logits(&self, pixels: &Tensor) -> Result<Tensor> {
        let pixels = pixels.to_device(self.device())?.to_dtype(self.dtype())?;
        Ok(self.model.forward(&pixels)?.to_dtype(DType::F32)?)
    }

    /// The `top_k` most probable classes of each image, most probable first.
    pub fn classify(&self, images: &[PreparedImage], top_k: usize) -> Result<Vec<Vec<Prediction>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let logits = self.logits(&self.batch_tensor(images)?)?;
        self.top_k(&logits, top_k)
    }

    /// [`Classifier::classify`] for 8-bit images ([`Preprocessor::preprocess_u8`]): on CUDA
    /// they are uploaded as they are and normalised on the device ([`PixelStager`]).
    pub fn classify_cropped(
        &self,
        images: &[CroppedImage],
        top_k: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let logits = self.logits(&self.stager.stage(images)?)?;
        self.top_k(&logits, top_k)
    }

    /// Top-k predictions from f32 logits `(batch, num_labels)`.
    pub fn top_k(&self, logits: &Tensor, top_k: usize) -> Result<Vec<Vec<Prediction>>> {
        let probs = candle_nn::ops::softmax_last_dim(logits)?.to_vec2::<f32>()?;
        Ok(probs
            .iter()
            .map(|row| most_probable(row, top_k, &self.labels))
            .collect())
    }

    /// Classifies a batch where some images may have failed to decode: failures are passed
    /// through, the rest go through the model together.
    pub fn classify_prepared(
        &self,
        prepared: Vec<std::result::Result<PreparedImage, PreprocessError>>,
        top_k: usize,
    ) -> Result<Vec<ImageResult>> {
        let mut ok = Vec::new();
        let mut slots = Vec::with_capacity(prepared.len());
        for p in prepared {
            match p {
                Ok(image) => {
                    slots.push(Ok(ok.len()));
                    ok.push(image);
                }
                Err(e) => slots.push(Err(e)),
            }
        }
        let mut predictions = self.classify(&ok, top_k)?.into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| slot.map(|_| predictions.next().unwrap_or_default()))
            .collect())
    }

    /// Pipelined classification: a helper thread preprocesses batch `n + 1` on `pool` while
    /// batch `n` runs on the model. For each batch, in order, `sink` receives the batch's items
    /// and one result per item. Stops at the first model error or `sink` error.
    pub fn classify_stream<I, T, F>(
        &self,
        pool: &DecodePool,
        batches: I,
        top_k: usize,
        mut sink: F,
    ) -> Result<()>
    where
        I: IntoIterator<Item = Vec<T>>,
        I::IntoIter: Send,
        T: AsRef<[u8]> + Send + Sync,
        F: FnMut(Vec<T>, Vec<ImageResult>) -> Result<()>,
    {
        let batches = batches.into_iter();
        let preprocessor = &self.preprocessor;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let producer = s.spawn(move || {
                for batch in batches {
                    let prepared = pool.preprocess_batch(preprocessor, &batch);
                    if tx.send((batch, prepared)).is_err() {
                        break;
                    }
                }
            });
            for (batch, prepared) in rx {
                let results = self.classify_prepared(prepared, top_k)?;
                sink(batch, results)?;
            }
            producer.join().map_err(|_| Error::Worker {
                reason: "preprocessing thread panicked".into(),
            })
        })
    }
}

/// The `k` most probable classes of `probs`, ties by index; `labels[i]` names class `i`, its
/// index where `labels` has no entry.
pub(crate) fn most_probable(probs: &[f32], k: usize, labels: &[String]) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|index| Prediction {
            label: labels
                .get(index)
                .cloned()
                .unwrap_or_else(|| index.to_string()),
            index,
            probability: probs[index],
        })
        .collect()
}
