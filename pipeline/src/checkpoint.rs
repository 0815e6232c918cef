//! A model of any engine, recognised by its files and loaded ([`AnyModel`]). Finding it is
//! [`locate`]'s.

use dataflux_inference::folder::Checkpoint;

use crate::error::Result;
pub use crate::locate::locate;
use crate::spec::Task;

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
    /// model that cannot do the task is a configuration error ([`crate::Error::is_config`]).
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
                .map_err(|e| crate::Error::Model(format!("loading the ONNX model: {e}")))?
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
