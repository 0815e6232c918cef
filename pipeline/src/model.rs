//! The model boundary: what the job asks of any model, and the values its rows hold.

use std::collections::BTreeMap;

/// A model the job can run: bytes in, one row per image out.
///
/// The job calls [`BatchModel::preprocess`] on its bounded CPU pool, one image at a time
/// (decode, resize, normalise: anything that turns an object's bytes into the model's
/// input), then [`BatchModel::infer`] on batches, off the async runtime. A rejected image
/// becomes an error row; an `infer` error stops the job (it is the model's fault, not the
/// image's). A panic in `preprocess` becomes an error row of kind `panic`; a panic in
/// `infer` stops the job with [`crate::Error::StagePanicked`].
///
/// What defines the rows — [`BatchModel::task`] and [`BatchModel::definition`] — is saved
/// with the run: a run id reused with another model or options is refused.
pub trait BatchModel: Send + Sync + 'static {
    /// One preprocessed image.
    type Input: Send + 'static;

    /// The task's name (`classify`, `embed`, …), part of the run's definition.
    fn task(&self) -> &str;

    /// Everything else that decides the rows (model id, revision, options such as top-k or
    /// the decode mode), as `(name, value)` pairs.
    fn definition(&self) -> BTreeMap<String, String>;

    /// The columns of every row, after the job's own `image_id`.
    fn columns(&self) -> Vec<Column>;

    /// Turns one object's bytes into the model's input.
    fn preprocess(&self, bytes: &[u8]) -> Result<Self::Input, Rejection>;

    /// Turns one decoded picture (a video's sample, in 8-bit RGB) into the model's input, by
    /// the same steps [`BatchModel::preprocess`] takes after decoding. The default refuses
    /// (kind `unsupported`): a model that only takes encoded images cannot run on videos.
    fn preprocess_rgb(
        &self,
        image: &dataflux_inference::RgbImage,
    ) -> Result<Self::Input, Rejection> {
        let _ = image;
        Err(Rejection::new(
            "unsupported",
            "this model takes encoded images only, not video frames",
        ))
    }

    /// Runs a batch; returns exactly one row per input, in order, each with
    /// [`BatchModel::columns`]' values.
    fn infer(&self, batch: Vec<Self::Input>) -> Result<Vec<Row>, ModelError>;

    /// How many batches the job may have in [`BatchModel::infer`] at once, each on its own
    /// thread, results kept in order. 1 (the default) for a model that uses the whole machine
    /// per batch, as a CPU one does; a GPU model says 2, so that the next batch is copied to
    /// the device while the current one is computed and the GPU never waits for the host.
    fn concurrency(&self) -> usize {
        1
    }
}

/// Why `infer` failed on a whole batch.
pub type ModelError = Box<dyn std::error::Error + Send + Sync>;

/// One row's values, in column order.
pub type Row = Vec<Value>;

/// Why one image cannot go through the model (an error row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A short machine-readable reason: `decode`, `unsupported`, `too_large`, …
    pub kind: String,
    /// The full message.
    pub message: String,
}

impl Rejection {
    /// A rejection of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// A column of the model's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name in headers and JSON keys.
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
    /// The shape of each value, for a list that holds a tensor (`[tokens, dim]`): written as
    /// the field's `shape` metadata in Parquet (a JSON list).
    pub shape: Option<Vec<usize>>,
}

impl Column {
    /// A column named `name` holding `kind`.
    pub fn new(name: impl Into<String>, kind: ColumnKind) -> Self {
        Self {
            name: name.into(),
            kind,
            shape: None,
        }
    }

    /// The same column, its values' tensor shape recorded.
    #[must_use]
    pub fn with_shape(mut self, shape: Vec<usize>) -> Self {
        self.shape = Some(shape);
        self
    }
}

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Text (a label).
    Text,
    /// One float (a score); CSV writes it with six decimals.
    Float32,
    /// A fixed number of floats (an embedding).
    Float32List(usize),
    /// A whole number (a video sample's index); Parquet int64.
    Int64,
    /// A time in seconds; CSV writes it with three decimals, Parquet as float64.
    Seconds,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Text(String),
    /// One float.
    Float32(f32),
    /// Several floats.
    Float32List(Vec<f32>),
    /// A whole number.
    Int64(i64),
    /// Seconds.
    Seconds(f64),
}
