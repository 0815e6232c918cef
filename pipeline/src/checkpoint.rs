//! What the checkpoint-backed models share: finding the model (hub, directory, bucket or
//! `.onnx` file), recognising its engine by its files and loading it ([`AnyModel`]), checking a
//! safetensors checkpoint against the task, the model's identity in a run's definition, and the
//! decode mode.

use std::collections::BTreeMap;

use dataflux_inference::folder::Checkpoint;
use dataflux_inference::preprocess::scaled_jpeg_decoding;
use dataflux_inference::source::fetch_checkpoint;
use dataflux_inference::{LoadOptions, ModelFiles, ModelSource, PreprocessMode};

use crate::error::{Error, Result};
use crate::spec::{ModelSpec, Task};

/// Fetches (hub, bucket) or finds (directory, `.onnx` file) the model of `spec` and
/// recognises it by its files ([`dataflux_inference::folder`]); a bucket may fail transiently
/// for `store_deadline` before the fetch gives up.
pub async fn locate(spec: &ModelSpec, store_deadline: std::time::Duration) -> Result<Checkpoint> {
    let implemented = spec.task.architectures();
    match &spec.remote {
        Some(location) => {
            let root = spec
                .cache
                .clone()
                .unwrap_or_else(crate::model_cache::default_cache_dir);
            let cache = crate::model_cache::ModelCache::new(root, store_deadline);
            let dir = cache.fetch(location).await?;
            Ok(dataflux_inference::folder::recognise(&dir, implemented)?)
        }
        None => {
            let mut options = LoadOptions::from_env();
            options.offline |= spec.offline;
            Ok(fetch_checkpoint(&spec.source, &options, implemented).await?)
        }
    }
}

/// Fetches or finds the safetensors checkpoint of `spec` and checks that it can do `task`,
/// before any weight is read.
pub(crate) async fn fetch_checked(spec: &ModelSpec, task: Task) -> Result<ModelFiles> {
    match locate(spec, crate::JobSpec::default().store_deadline).await? {
        Checkpoint::Candle(files) => {
            task.check_architecture(&files.config)?;
            Ok(files)
        }
        Checkpoint::Onnx(files) => Err(Error::Config {
            setting: "--model",
            reason: format!(
                "{} is an ONNX model: load it with AnyModel::load (ONNX Runtime)",
                files.model.display()
            ),
        }),
    }
}

/// A model of any engine, as [`AnyModel::load`] recognised and loaded it.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyModel {
    /// A ViT classifier on candle.
    Vit(crate::VitClassifier),
    /// A CLIP embedder on candle.
    Clip(crate::ClipEmbedder),
    /// Any ONNX model on ONNX Runtime.
    #[cfg(feature = "onnx")]
    Onnx(crate::onnx::OnnxBatchModel),
}

impl AnyModel {
    /// Finds the model of `job`, recognises its engine by its files (logged with the reason),
    /// and loads it for the job's task; a model in a bucket is fetched within the job's
    /// `store_deadline`. A model nothing here can run, a missing ONNX Runtime or provider, or a
    /// model that cannot do the task is a configuration error ([`Error::is_config`]).
    pub async fn load(job: &crate::JobSpec) -> Result<Self> {
        let spec = &job.model;
        let checkpoint = locate(spec, job.store_deadline).await?;
        tracing::info!(
            engine = checkpoint.engine(),
            task = spec.task.name(),
            "model engine: {} ({})",
            checkpoint.engine(),
            checkpoint.reason()
        );
        match checkpoint {
            Checkpoint::Candle(files) => {
                spec.task.check_architecture(&files.config)?;
                Ok(match spec.task {
                    Task::Classify => {
                        AnyModel::Vit(crate::VitClassifier::from_files(&files, spec)?)
                    }
                    Task::Embed | Task::Outputs => {
                        AnyModel::Clip(crate::ClipEmbedder::from_files(&files, spec)?)
                    }
                })
            }
            #[cfg(feature = "onnx")]
            Checkpoint::Onnx(files) => {
                let spec = spec.clone();
                // Loading reads and digests the file and runs it once: off the async workers.
                tokio::task::spawn_blocking(move || {
                    crate::onnx::OnnxBatchModel::load(&files, &spec)
                })
                .await
                .map_err(|e| Error::Model(format!("loading the ONNX model: {e}")))?
                .map(AnyModel::Onnx)
            }
            #[cfg(not(feature = "onnx"))]
            Checkpoint::Onnx(files) => Err(dataflux_inference::Error::FeatureDisabled {
                what: format!("the ONNX model {}", files.model.display()),
                feature: "onnx",
            }
            .into()),
        }
    }
}

/// A checkpoint's identity in a run's definition: a hub id as given, a directory by its
/// canonical path (the same checkpoint typed from another working directory is the same).
pub(crate) fn model_id(spec: &ModelSpec) -> String {
    match &spec.remote {
        Some(location) => location.url.clone(),
        None => source_id(&spec.source),
    }
}

fn source_id(source: &ModelSource) -> String {
    match source {
        ModelSource::Local(dir) => std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string(),
        hub => hub.to_string(),
    }
}

/// The preprocessing mode `spec` asks for; fast mode in a build without a scaled JPEG
/// decoder says so once per model.
pub(crate) fn preprocess_mode(spec: &ModelSpec) -> PreprocessMode {
    let mode = requested_mode(spec);
    if mode == PreprocessMode::Fast && !scaled_jpeg_decoding() {
        tracing::warn!("fast decoding: this build has no scaled JPEG decoder (cargo feature turbojpeg): large images are decoded at full size, then shrunk");
    }
    mode
}

/// A checkpoint-backed model's definition: its source and decode mode, plus the model's own
/// `options`.
pub(crate) fn definition<'a>(
    spec: &ModelSpec,
    options: impl IntoIterator<Item = (&'a str, String)>,
) -> BTreeMap<String, String> {
    let decode = match requested_mode(spec) {
        PreprocessMode::Fast => "fast",
        PreprocessMode::Exact => "exact",
    };
    let mut d = BTreeMap::from([
        ("source".to_string(), model_id(spec)),
        ("decode".to_string(), decode.to_string()),
    ]);
    d.extend(options.into_iter().map(|(k, v)| (k.to_string(), v)));
    d
}

/// The mode `spec` asks for.
fn requested_mode(spec: &ModelSpec) -> PreprocessMode {
    if spec.fast_decode {
        PreprocessMode::Fast
    } else {
        PreprocessMode::Exact
    }
}
