//! The ViT image classifier of `dataflux-inference` as a [`BatchModel`]: top-k labels.

use std::collections::BTreeMap;

use dataflux_inference::{Classifier, CroppedImage, Prediction};

use crate::error::Result;
use crate::locate::{definition, fetch_checked, preprocess_mode};
use crate::model::{BatchModel, Column, ColumnKind, ModelError, Rejection, Row, Value};
use crate::spec::{ModelSpec, Task};

/// Image classification with a ViT checkpoint in Hugging Face's layout. Its rows are the
/// tutorial's: `classification` (the top label); with top-k > 1 also `score`, then
/// `label_k`, `score_k` for k = 2..=top-k.
#[derive(Debug)]
pub struct VitClassifier {
    classifier: Classifier,
    spec: ModelSpec,
}

impl VitClassifier {
    /// Loads the checkpoint `spec` names (hub or directory) on its device; a checkpoint that
    /// is not a `ViTForImageClassification` is a configuration error of `--task`.
    pub async fn load(spec: &ModelSpec) -> Result<Self> {
        Self::from_files(&fetch_checked(spec, Task::Classify).await?, spec)
    }

    /// Loads a checkpoint already found and checked against the task, on `spec`'s device.
    pub fn from_files(files: &dataflux_inference::ModelFiles, spec: &ModelSpec) -> Result<Self> {
        let classifier = Classifier::from_files(files, &spec.device.open()?, spec.dtype)?;
        Ok(Self::new(classifier, spec.clone()))
    }

    /// Wraps a loaded classifier; `spec` says top-k and the decode mode (its source is what
    /// the run's definition records).
    pub fn new(mut classifier: Classifier, spec: ModelSpec) -> Self {
        classifier.set_preprocess_mode(preprocess_mode(&spec));
        Self { classifier, spec }
    }

    /// The classifier.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }
}

impl BatchModel for VitClassifier {
    type Input = CroppedImage;

    fn task(&self) -> &str {
        Task::Classify.name()
    }

    fn definition(&self) -> BTreeMap<String, String> {
        definition(&self.spec, [("top_k", self.spec.top_k.to_string())])
    }

    fn columns(&self) -> Vec<Column> {
        top_k_columns(self.spec.top_k)
    }

    fn preprocess(&self, bytes: &[u8]) -> std::result::Result<CroppedImage, Rejection> {
        self.classifier
            .preprocessor()
            .preprocess_u8(bytes)
            .map_err(|e| Rejection::new(e.kind(), e.to_string()))
    }

    fn preprocess_rgb(
        &self,
        image: &dataflux_inference::RgbImage,
    ) -> std::result::Result<CroppedImage, Rejection> {
        self.classifier
            .preprocessor()
            .crop_rgb8(image)
            .map_err(|e| Rejection::new(e.kind(), e.to_string()))
    }

    fn concurrency(&self) -> usize {
        if self.classifier.device().is_cuda() {
            2
        } else {
            1
        }
    }

    fn infer(&self, batch: Vec<CroppedImage>) -> std::result::Result<Vec<Row>, ModelError> {
        let k = self.spec.top_k.max(1);
        let predictions = self.classifier.classify_cropped(&batch, k)?;
        Ok(predictions
            .into_iter()
            .map(|preds| top_k_row(preds, k))
            .collect())
    }
}

/// The columns of top-k classification: `classification` (the top label); with top-k > 1
/// also `score`, then `label_k`, `score_k` for k = 2..=top-k.
pub(crate) fn top_k_columns(top_k: usize) -> Vec<Column> {
    let mut cols = vec![Column::new("classification", ColumnKind::Text)];
    if top_k > 1 {
        cols.push(Column::new("score", ColumnKind::Float32));
        for k in 2..=top_k {
            cols.push(Column::new(format!("label_{k}"), ColumnKind::Text));
            cols.push(Column::new(format!("score_{k}"), ColumnKind::Float32));
        }
    }
    cols
}

/// One image's row of [`top_k_columns`] from its predictions, most probable first (missing
/// ones empty, at probability 0).
pub(crate) fn top_k_row(preds: Vec<Prediction>, k: usize) -> Row {
    let mut row = Vec::with_capacity(2 * k);
    let mut it = preds.into_iter();
    let first = it.next();
    row.push(Value::Text(
        first.as_ref().map(|p| p.label.clone()).unwrap_or_default(),
    ));
    if k > 1 {
        row.push(Value::Float32(first.map(|p| p.probability).unwrap_or(0.0)));
        for _ in 2..=k {
            let p = it.next();
            row.push(Value::Text(
                p.as_ref().map(|p| p.label.clone()).unwrap_or_default(),
            ));
            row.push(Value::Float32(p.map(|p| p.probability).unwrap_or(0.0)));
        }
    }
    row
}
