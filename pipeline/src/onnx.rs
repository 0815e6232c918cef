//! Any ONNX image model as a [`BatchModel`] (cargo feature `onnx`): `classify` (softmax top-k
//! over a `[batch, classes]` output), `embed` (a `[batch, dim]` output, or a token output
//! pooled) and `outputs` (every output as a float32 list column).

use std::collections::BTreeMap;

use dataflux_inference::folder::OnnxFiles;
use dataflux_inference::onnx::head::{
    classify_output, embed_output, l2_normalize, pool, softmax_top_k,
};
use dataflux_inference::onnx::{labels_file, OnnxModel, OutputInfo, SessionOptions};
use dataflux_inference::{CroppedImage, Preprocessor};

use crate::error::{Error, Result};
use crate::locate::{definition, preprocess_mode};
use crate::model::{BatchModel, Column, ColumnKind, ModelError, Rejection, Row, Value};
use crate::setting::Setting;
use crate::spec::{ModelSpec, Task};

/// What the rows of an ONNX model are made of, decided once at load.
#[derive(Debug, Clone)]
enum Head {
    /// Top-k of this output's softmax.
    Classify { output: String },
    /// This output, pooled when it has tokens, L2-normalised unless raw.
    Embed {
        output: String,
        item_dims: Vec<usize>,
    },
    /// Every output with a batch axis, flattened.
    Outputs { outputs: Vec<(String, Vec<usize>)> },
}

/// An ONNX model running one of the job's tasks.
#[derive(Debug)]
pub struct OnnxBatchModel {
    model: OnnxModel,
    spec: ModelSpec,
    head: Head,
}

impl OnnxBatchModel {
    /// Loads `files` for `spec`'s task on `spec`'s device: the output the task reads is chosen
    /// (and checked) here, so a model that cannot do the task is a configuration error before
    /// any work.
    pub fn load(files: &OnnxFiles, spec: &ModelSpec) -> Result<Self> {
        let labels = match &spec.labels {
            Some(path) => Some(labels_file(path)?),
            None => None,
        };
        let options = SessionOptions::default()
            .with_device(spec.device)
            .with_threads(spec.threads);
        let mut model = OnnxModel::load(files, &options, spec.preprocessor.clone(), labels)?;
        let preprocessor = Preprocessor::new(model.preprocessor().config().clone())
            .with_mode(preprocess_mode(spec));
        model.set_preprocessor(preprocessor);
        let head = head(&model, spec).map_err(|reason| Error::Config {
            setting: if spec.output_name.is_some() {
                Setting::OutputName
            } else {
                Setting::Task
            },
            reason: match spec.output_name {
                Some(_) => format!("{}: {reason}", files.model.display()),
                None => format!(
                    "{}: {reason} (name the output to read with {})",
                    files.model.display(),
                    Setting::OutputName
                ),
            },
        })?;
        Ok(Self {
            model,
            spec: spec.clone(),
            head,
        })
    }

    /// The model.
    pub fn model(&self) -> &OnnxModel {
        &self.model
    }
}

/// The task's reading of the model's outputs.
fn head(model: &OnnxModel, spec: &ModelSpec) -> std::result::Result<Head, String> {
    let outputs = model.outputs();
    let named = spec.output_name.as_deref();
    let dims = |o: &OutputInfo| {
        o.item_dims()
            .ok_or_else(|| format!("output {} has no fixed size per image", o.name))
    };
    Ok(match spec.task {
        Task::Classify => Head::Classify {
            output: classify_output(outputs, named)?.name.clone(),
        },
        Task::Embed => {
            let o = embed_output(outputs, named)?;
            Head::Embed {
                output: o.name.clone(),
                item_dims: dims(o)?,
            }
        }
        Task::Outputs => {
            let chosen: Vec<&OutputInfo> = match named {
                Some(name) => outputs.iter().filter(|o| o.name == name).collect(),
                None => outputs.iter().filter(|o| !o.dims.is_empty()).collect(),
            };
            if chosen.is_empty() {
                return Err(format!(
                    "no output to write (asked for {named:?}; the model has {:?})",
                    outputs.iter().map(|o| &o.name).collect::<Vec<_>>()
                ));
            }
            Head::Outputs {
                outputs: chosen
                    .into_iter()
                    .map(|o| Ok((o.name.clone(), dims(o)?)))
                    .collect::<std::result::Result<_, String>>()?,
            }
        }
    })
}

impl BatchModel for OnnxBatchModel {
    type Input = CroppedImage;

    fn task(&self) -> &str {
        self.spec.task.name()
    }

    fn definition(&self) -> BTreeMap<String, String> {
        let mut options = vec![
            ("engine", "onnxruntime".to_string()),
            ("model_sha256", self.model.digest().to_string()),
            (
                "preprocess",
                format!("{:?}", self.model.preprocessor().config()),
            ),
        ];
        match &self.head {
            Head::Classify { output } => {
                options.push(("top_k", self.spec.top_k.to_string()));
                options.push(("output", output.clone()));
                options.push(("labels", self.model.labels().join("\n")));
            }
            Head::Embed { output, .. } => {
                options.push(("output", output.clone()));
                options.push(("pooling", self.spec.pooling.name().to_string()));
                options.push(("normalize", self.spec.normalize.to_string()));
            }
            Head::Outputs { outputs } => {
                let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                options.push(("outputs", names.join(",")));
            }
        }
        definition(&self.spec, options)
    }

    fn columns(&self) -> Vec<Column> {
        match &self.head {
            Head::Classify { .. } => crate::classify::top_k_columns(self.spec.top_k),
            Head::Embed { item_dims, .. } => {
                let dim = match item_dims.as_slice() {
                    [_, dim] => *dim,
                    dims => dims.iter().product(),
                };
                vec![Column::new("embedding", ColumnKind::Float32List(dim))]
            }
            Head::Outputs { outputs } => outputs
                .iter()
                .map(|(name, dims)| {
                    Column::new(name.clone(), ColumnKind::Float32List(dims.iter().product()))
                        .with_shape(dims.clone())
                })
                .collect(),
        }
    }

    fn preprocess(&self, bytes: &[u8]) -> std::result::Result<CroppedImage, Rejection> {
        self.model
            .preprocessor()
            .preprocess_u8(bytes)
            .map_err(|e| Rejection::new(e.kind(), e.to_string()))
    }

    fn preprocess_rgb(
        &self,
        image: &dataflux_inference::RgbImage,
    ) -> std::result::Result<CroppedImage, Rejection> {
        self.model
            .preprocessor()
            .crop_rgb8(image)
            .map_err(|e| Rejection::new(e.kind(), e.to_string()))
    }

    fn concurrency(&self) -> usize {
        match self.model.session().provider() {
            dataflux_inference::onnx::Provider::Cuda(_) => 2,
            _ => 1,
        }
    }

    fn infer(&self, batch: Vec<CroppedImage>) -> std::result::Result<Vec<Row>, ModelError> {
        let n = batch.len();
        let outputs = self.model.run(&batch)?;
        // Each output read must have one row per image (an output without a batch axis cannot
        // be split into rows).
        let find = |name: &str| match outputs.iter().find(|o| o.name == name) {
            None => Err(format!("the model gave no output {name}")),
            Some(o) if o.shape.first() != Some(&n) => Err(format!(
                "output {name} has shape {:?}, not one row for each of the batch's {n} images",
                o.shape
            )),
            Some(o) => Ok(o),
        };
        let rows = match &self.head {
            Head::Classify { output } => {
                let logits = find(output)?;
                let k = self.spec.top_k.max(1);
                (0..n)
                    .map(|i| {
                        let preds = softmax_top_k(logits.row(i), k, self.model.labels());
                        crate::classify::top_k_row(preds, k)
                    })
                    .collect()
            }
            Head::Embed { output, item_dims } => {
                let out = find(output)?;
                (0..n)
                    .map(|i| {
                        let mut v = pool(out.row(i), item_dims, self.spec.pooling);
                        if self.spec.normalize {
                            l2_normalize(&mut v);
                        }
                        vec![Value::Float32List(v)]
                    })
                    .collect()
            }
            Head::Outputs { outputs: names } => {
                let found: Vec<_> = names
                    .iter()
                    .map(|(name, _)| find(name))
                    .collect::<std::result::Result<_, _>>()?;
                (0..n)
                    .map(|i| {
                        found
                            .iter()
                            .map(|o| Value::Float32List(o.row(i).to_vec()))
                            .collect()
                    })
                    .collect()
            }
        };
        Ok(rows)
    }
}
