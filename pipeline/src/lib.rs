//! The batch inference job as a library: list a bucket once, cut the listing into chunks,
//! let any number of ranks claim, process and commit them exactly once, and write the
//! results back — with any model that implements [`BatchModel`].
//!
//! The job reads top to bottom as the data flows ([`stages`]): **claim** a chunk (a
//! create-only claim with a lease, see `claims`) → **fetch** its objects
//! (composed on GCS, verified) → **decode** on a bounded CPU pool ([`BatchModel::preprocess`])
//! → **batch** → **infer** ([`BatchModel::infer`]) → **commit** its rows create-only. The
//! outputs are built from commits alone (`finalize`), so they are the
//! same whatever the schedule: two processes of one rank, a resubmission with another world
//! size while the old job still runs, a rank killed at any instant. Only permanent failures
//! become error rows; a chunk hit by a transient one is given back and done again.
//!
//! A model of your own — here, the mean colour of each image — over an in-memory store:
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use dataflux::{Location, PutMode};
//! use dataflux_distributed::Topology;
//! use dataflux_inference::{preprocess::decode_rgb8, DecodeLimits};
//! use dataflux_pipeline::{BatchModel, Column, ColumnKind, Job, JobSpec, ModelError, Outcome, Rejection, Row, Value};
//!
//! struct MeanColour;
//!
//! impl BatchModel for MeanColour {
//!     type Input = [f32; 3];
//!     fn task(&self) -> &str { "mean-colour" }
//!     fn definition(&self) -> BTreeMap<String, String> { BTreeMap::new() }
//!     fn columns(&self) -> Vec<Column> {
//!         vec![Column::new("mean_rgb", ColumnKind::Float32List(3))]
//!     }
//!     fn preprocess(&self, bytes: &[u8]) -> Result<[f32; 3], Rejection> {
//!         let img = decode_rgb8(bytes, &DecodeLimits::default())
//!             .map_err(|e| Rejection::new(e.kind(), e.to_string()))?;
//!         let mut sum = [0f64; 3];
//!         for p in img.pixels() {
//!             for c in 0..3 { sum[c] += f64::from(p.0[c]); }
//!         }
//!         let n = (img.width() * img.height()) as f64;
//!         Ok(sum.map(|s| (s / n) as f32))
//!     }
//!     fn infer(&self, batch: Vec<[f32; 3]>) -> Result<Vec<Row>, ModelError> {
//!         Ok(batch.into_iter().map(|m| vec![Value::Float32List(m.to_vec())]).collect())
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Location::parse("memory://doc").unwrap().open().await.unwrap();
//! for (name, rgb) in [("red", [255, 0, 0]), ("grey", [100, 100, 100])] {
//!     let mut png = std::io::Cursor::new(Vec::new());
//!     image::RgbImage::from_pixel(4, 3, image::Rgb(rgb)).write_to(&mut png, image::ImageFormat::Png).unwrap();
//!     store.put(&format!("imgs/{name}.png"), Bytes::from(png.into_inner()), PutMode::Overwrite).await.unwrap();
//! }
//! store.put("imgs/notes.txt", Bytes::from_static(b"not an image"), PutMode::Overwrite).await.unwrap();
//!
//! let spec = JobSpec::default()
//!     .with_input(Location::parse("memory://doc/imgs").unwrap())
//!     .with_output(Location::parse("memory://doc/out").unwrap())
//!     .with_run_id(Some("colours".into()));
//! let outcome = Job::run(&spec, Arc::new(MeanColour), &Topology::single(), Default::default()).await.unwrap();
//! assert!(matches!(outcome, Outcome::Finished(ref f) if f.has_bad_inputs()));
//! let csv = store.get("out/results_colours_shard_0.csv", None).await.unwrap();
//! assert_eq!(&csv[..], b"image_id,mean_rgb\r\n\
//!     grey,100.000000 100.000000 100.000000\r\n\
//!     red,255.000000 0.000000 0.000000\r\n");
//! let errors = store.get("out/errors_colours_shard_0.csv", None).await.unwrap();
//! assert!(errors.starts_with(b"object,error_kind,message\r\nimgs/notes.txt,unknown_format,"));
//! # });
//! ```

#![warn(missing_docs)]

pub mod carrier;
pub mod checkpoint;
mod claims;
mod classify;
mod commit_format;
pub mod cpu_pool;
pub mod dry_run;
mod embed;
pub mod error;
mod finalize;
mod job;
pub mod layout;
mod locate;
pub mod model;
pub mod model_cache;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod output;
mod pick;
pub mod plan;
pub mod progress;
mod run_store;
pub mod setting;
pub mod spec;
pub mod stages;
pub mod status;
mod store_clock;
mod store_ops;
pub mod summary;
pub mod video;

pub use carrier::{BadInput, Chunk, Failure, Item};
pub use checkpoint::AnyModel;
pub use classify::VitClassifier;
pub use dry_run::{dry_run, DryRun};
pub use embed::ClipEmbedder;
pub use error::{Error, Result};
pub use job::{Job, Stores};
pub use layout::Layout;
pub use model::{BatchModel, Column, ColumnKind, ModelError, Rejection, Row, Value};
#[cfg(feature = "onnx")]
pub use onnx::OnnxBatchModel;
/// The outputs' old module names: [`output`] (rows of every format) and [`output::parquet`].
pub use output::{self as rows, parquet};
pub use progress::{JobTally, Progress, ProgressSnapshot};
pub use setting::Setting;
pub use spec::{CheckpointSource, JobSpec, ModelSpec, OutputFormat, Task};
pub use stages::commit::CommitCounts;
pub use summary::{Finished, JobSummary, Outcome, RankSummary, ShardSummary, StageTimes};
