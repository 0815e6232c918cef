//! CLIP image embeddings from `dataflux-inference` as a [`BatchModel`]: one `embedding`
//! column, a fixed-size list of float32 (L2-normalised unless asked otherwise).

use std::collections::BTreeMap;

use dataflux_inference::{CroppedImage, Embedder};

use crate::error::Result;
use crate::locate::{definition, fetch_checked, preprocess_mode};
use crate::model::{BatchModel, Column, ColumnKind, ModelError, Rejection, Row, Value};
use crate::spec::{ModelSpec, Task};

/// Image embeddings with a CLIP checkpoint in Hugging Face's layout (`CLIPModel` or
/// `CLIPVisionModelWithProjection`). Rows: `embedding`, `dim` float32 values, computed in
/// the model's dtype and returned in f32.
#[derive(Debug)]
pub struct ClipEmbedder {
    embedder: Embedder,
    spec: ModelSpec,
}

impl ClipEmbedder {
    /// Loads the checkpoint `spec` names (hub or directory) on its device; a checkpoint that
    /// is not a CLIP one is a configuration error of `--task`.
    pub async fn load(spec: &ModelSpec) -> Result<Self> {
        Self::from_files(&fetch_checked(spec, Task::Embed).await?, spec)
    }

    /// Loads a checkpoint already found and checked against the task, on `spec`'s device.
    pub fn from_files(files: &dataflux_inference::ModelFiles, spec: &ModelSpec) -> Result<Self> {
        let embedder = Embedder::from_files(files, &spec.device.open()?, spec.dtype)?;
        Ok(Self::new(embedder, spec.clone()))
    }

    /// Wraps a loaded embedder; `spec` says normalisation and the decode mode (its source is
    /// what the run's definition records).
    pub fn new(mut embedder: Embedder, spec: ModelSpec) -> Self {
        embedder.set_preprocess_mode(preprocess_mode(&spec));
        Self { embedder, spec }
    }

    /// The embedder.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }
}

impl BatchModel for ClipEmbedder {
    type Input = CroppedImage;

    fn task(&self) -> &str {
        Task::Embed.name()
    }

    fn definition(&self) -> BTreeMap<String, String> {
        definition(&self.spec, [("normalize", self.spec.normalize.to_string())])
    }

    fn columns(&self) -> Vec<Column> {
        vec![Column::new(
            "embedding",
            ColumnKind::Float32List(self.embedder.dim()),
        )]
    }

    fn preprocess(&self, bytes: &[u8]) -> std::result::Result<CroppedImage, Rejection> {
        self.embedder
            .preprocessor()
            .preprocess_u8(bytes)
            .map_err(|e| Rejection::new(e.kind(), e.to_string()))
    }

    fn preprocess_rgb(
        &self,
        image: &dataflux_inference::RgbImage,
    ) -> std::result::Result<CroppedImage, Rejection> {
        self.embedder
            .preprocessor()
            .crop_rgb8(image)
            .map_err(|e| Rejection::new(e.kind(), e.to_string()))
    }

    fn concurrency(&self) -> usize {
        if self.embedder.device().is_cuda() {
            2
        } else {
            1
        }
    }

    fn infer(&self, batch: Vec<CroppedImage>) -> std::result::Result<Vec<Row>, ModelError> {
        Ok(self
            .embedder
            .embed_cropped(&batch, self.spec.normalize)?
            .into_iter()
            .map(|v| vec![Value::Float32List(v)])
            .collect())
    }
}
