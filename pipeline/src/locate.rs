//! Finding a model and what every model's loader shares: the model located (hub, directory,
//! bucket or `.onnx` file) and recognised by its files, a safetensors checkpoint checked
//! against the task, the model's identity in a run's definition, and the decode mode.

use std::collections::BTreeMap;

use dataflux_inference::folder::Checkpoint;
use dataflux_inference::preprocess::scaled_jpeg_decoding;
use dataflux_inference::source::fetch_checkpoint;
use dataflux_inference::{LoadOptions, ModelFiles, ModelSource, PreprocessMode};

use crate::error::{Error, Result};
use crate::setting::Setting;
use crate::spec::{CheckpointSource, ModelSpec, Task};

/// Fetches (hub, bucket) or finds (directory, `.onnx` file) the model of `spec` and
/// recognises it by its files ([`dataflux_inference::folder`]); a bucket may fail transiently
/// for `store_deadline` before the fetch gives up.
pub async fn locate(spec: &ModelSpec, store_deadline: std::time::Duration) -> Result<Checkpoint> {
    let implemented = spec.task.architectures();
    match &spec.checkpoint {
        CheckpointSource::Bucket { location, cache } => {
            let root = cache
                .clone()
                .unwrap_or_else(crate::model_cache::default_cache_dir);
            let cache = crate::model_cache::ModelCache::new(root, store_deadline);
            let dir = cache.fetch(location).await?;
            Ok(dataflux_inference::folder::recognise(&dir, implemented)?)
        }
        CheckpointSource::Hub { repo, revision } => {
            let mut options = LoadOptions::from_env();
            options.offline |= spec.offline;
            let source = ModelSource::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
            };
            Ok(fetch_checkpoint(&source, &options, implemented).await?)
        }
        CheckpointSource::Local(path) => {
            Ok(dataflux_inference::folder::recognise(path, implemented)?)
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
            setting: Setting::Model,
            reason: format!(
                "{} is an ONNX model: load it with AnyModel::load (ONNX Runtime)",
                files.model.display()
            ),
        }),
    }
}

/// A checkpoint's identity in a run's definition: a hub id as given, a directory by its
/// canonical path (the same checkpoint typed from another working directory is the same).
pub(crate) fn model_id(spec: &ModelSpec) -> String {
    match &spec.checkpoint {
        CheckpointSource::Local(dir) => std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string(),
        other => other.to_string(),
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
