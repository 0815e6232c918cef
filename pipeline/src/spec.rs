//! The job's typed specification. [`JobSpec::default`] is the one place defaults live: the
//! binaries take theirs from it.

use std::collections::BTreeMap;
use std::time::Duration;

use dataflux::Location;
use dataflux_inference::video::Sampling;
use dataflux_inference::{DType, DeviceSpec, ModelSource, Pooling, PreprocessorConfig};

use crate::error::{Error, Result};
use crate::setting::Setting;

pub use crate::output::OutputFormat;

/// What the job computes per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Task {
    /// Top-k labels from a `ViTForImageClassification` checkpoint ([`crate::VitClassifier`]).
    #[default]
    Classify,
    /// Image embeddings from a CLIP checkpoint (`CLIPModel` or
    /// `CLIPVisionModelWithProjection`, [`crate::ClipEmbedder`]), or any ONNX model.
    Embed,
    /// Every `[batch, …]` output of an ONNX model, each as a float32 list column (any model).
    Outputs,
}

impl Task {
    /// Its name (`classify`, `embed`), as `--task` takes it and run definitions record it.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::Embed => "embed",
            Task::Outputs => "outputs",
        }
    }

    /// The output format when none is asked for: the tutorial's CSV for labels, Parquet for
    /// embeddings.
    pub fn default_format(self) -> OutputFormat {
        match self {
            Task::Classify => OutputFormat::Csv,
            Task::Embed | Task::Outputs => OutputFormat::Parquet,
        }
    }

    /// The checkpoint used when none is named: the GKE tutorial's ViT-B/16 for labels (and
    /// for `outputs`, which needs `--model` in practice), OpenAI's CLIP ViT-B/32 for embeddings.
    pub fn default_model(self) -> ModelSource {
        let repo = match self {
            Task::Classify | Task::Outputs => "google/vit-base-patch16-224",
            Task::Embed => "openai/clip-vit-base-patch32",
        };
        ModelSource::Hub {
            repo: repo.into(),
            revision: None,
        }
    }

    /// The `config.json` architectures our candle models take for this task (any ONNX model
    /// can do every task).
    pub fn architectures(self) -> &'static [&'static str] {
        match self {
            Task::Classify => &["ViTForImageClassification"],
            Task::Embed => &["CLIPModel", "CLIPVisionModelWithProjection"],
            Task::Outputs => &[],
        }
    }

    /// Checks that the checkpoint whose `config.json` is at `config` can do this task: a
    /// [`Error::Config`] of `--task` naming both otherwise.
    pub fn check_architecture(self, config: &std::path::Path) -> Result<()> {
        let found = dataflux_inference::config::architecture(config)?;
        if self.architectures().contains(&found.as_str()) {
            return Ok(());
        }
        if self == Task::Outputs {
            return Err(Error::Config {
                setting: Setting::Task,
                reason: format!(
                    "outputs runs ONNX models (model.onnx), and {} is a safetensors checkpoint",
                    config.display()
                ),
            });
        }
        let other = [Task::Classify, Task::Embed]
            .into_iter()
            .find(|t| t.architectures().contains(&found.as_str()));
        Err(Error::Config {
            setting: Setting::Task,
            reason: format!(
                "{} needs a {} checkpoint, but {} is a {found}{}",
                self.name(),
                self.architectures().join(" or "),
                config.display(),
                other.map_or(String::new(), |t| format!(
                    " (set {} to {})",
                    Setting::Task,
                    t.name()
                ))
            ),
        })
    }
}

/// Where a checkpoint comes from: one variant per source, so that no setting of another
/// source can be left over.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CheckpointSource {
    /// A Hugging Face hub repository (`owner/name`) at a branch, tag or commit (`main` when
    /// `None`), downloaded into the hub's cache.
    Hub {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit hash.
        revision: Option<String>,
    },
    /// A directory (safetensors or ONNX, recognised by its files) or a bare `.onnx` file.
    Local(std::path::PathBuf),
    /// A checkpoint folder in a bucket (`gs://`, `s3://`, `file://`, `memory://`), fetched once
    /// per node into `cache` ([`crate::model_cache`]) and loaded from there.
    Bucket {
        /// The folder.
        location: Location,
        /// The node's cache (`None`: [`crate::model_cache::default_cache_dir`]).
        cache: Option<std::path::PathBuf>,
    },
}

impl CheckpointSource {
    /// The hub repository or local path, as the inference crate loads it; `None` for a bucket.
    pub fn model_source(&self) -> Option<ModelSource> {
        match self {
            CheckpointSource::Hub { repo, revision } => Some(ModelSource::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
            }),
            CheckpointSource::Local(path) => Some(ModelSource::Local(path.clone())),
            CheckpointSource::Bucket { .. } => None,
        }
    }
}

impl From<ModelSource> for CheckpointSource {
    fn from(source: ModelSource) -> Self {
        match source {
            ModelSource::Hub { repo, revision } => CheckpointSource::Hub { repo, revision },
            ModelSource::Local(path) => CheckpointSource::Local(path),
        }
    }
}

impl std::fmt::Display for CheckpointSource {
    /// `owner/name[@revision]`, the path, or the bucket's URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointSource::Bucket { location, .. } => f.write_str(&location.url),
            other => match other.model_source() {
                Some(source) => write!(f, "{source}"),
                None => Ok(()),
            },
        }
    }
}

/// Which checkpoint to load and how (used by the models this crate ships, such as
/// [`crate::VitClassifier`]; a user's own model may ignore it). Its [`Default`] is
/// [`JobSpec::default`]'s.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelSpec {
    /// Where the checkpoint comes from: the hub, a directory or `.onnx` file, or a bucket.
    pub checkpoint: CheckpointSource,
    /// Where to run it.
    pub device: DeviceSpec,
    /// Compute precision (`None`: f32 on CPU, bf16 on CUDA).
    pub dtype: Option<DType>,
    /// What to compute.
    pub task: Task,
    /// Predictions per image (classification).
    pub top_k: usize,
    /// L2-normalise embeddings (embeddings; `false` keeps the raw projection).
    pub normalize: bool,
    /// Reduced-scale JPEG decoding (faster, pixels slightly different).
    pub fast_decode: bool,
    /// Never download: use the hub cache or a local directory.
    pub offline: bool,
    /// The ONNX output a task reads (`None`: the task's own choice, see
    /// `dataflux_inference::onnx::head`, feature `onnx`).
    pub output_name: Option<String>,
    /// How an ONNX `[batch, tokens, dim]` output becomes an embedding.
    pub pooling: Pooling,
    /// A labels file (one class name per line) for an ONNX classifier, instead of
    /// `config.json`'s `id2label`.
    pub labels: Option<std::path::PathBuf>,
    /// Preprocessing for an ONNX model instead of its `preprocessor_config.json` (a bare
    /// `.onnx` file has none).
    pub preprocessor: Option<PreprocessorConfig>,
    /// ONNX Runtime's intra-op threads on the CPU (0: ONNX Runtime's default).
    pub threads: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        JobSpec::default().model
    }
}

/// Chainable setters, one per field: callers build it as `ModelSpec::default().with_…(…)`, so
/// that new fields do not break them.
impl ModelSpec {
    /// Sets [`checkpoint`](Self::checkpoint): the hub, a directory or `.onnx` file, or a
    /// bucket.
    #[must_use]
    pub fn with_checkpoint(mut self, checkpoint: CheckpointSource) -> Self {
        self.checkpoint = checkpoint;
        self
    }

    /// Sets [`checkpoint`](Self::checkpoint) to a hub repository or a local directory.
    #[must_use]
    pub fn with_source(self, source: ModelSource) -> Self {
        self.with_checkpoint(source.into())
    }

    /// Sets [`device`](Self::device): where to run it.
    #[must_use]
    pub fn with_device(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    /// Sets [`dtype`](Self::dtype): compute precision (`None`: f32 on CPU, bf16 on CUDA).
    #[must_use]
    pub fn with_dtype(mut self, dtype: Option<DType>) -> Self {
        self.dtype = dtype;
        self
    }

    /// Sets [`task`](Self::task): what to compute.
    #[must_use]
    pub fn with_task(mut self, task: Task) -> Self {
        self.task = task;
        self
    }

    /// Sets [`top_k`](Self::top_k): predictions per image (classification).
    #[must_use]
    pub fn with_top_k(mut self, top_k: usize) -> Self {
        self.top_k = top_k;
        self
    }

    /// Sets [`normalize`](Self::normalize): L2-normalise embeddings (embeddings; `false` keeps the
    /// raw projection).
    #[must_use]
    pub fn with_normalize(mut self, normalize: bool) -> Self {
        self.normalize = normalize;
        self
    }

    /// Sets [`fast_decode`](Self::fast_decode): reduced-scale JPEG decoding (faster, pixels
    /// slightly different).
    #[must_use]
    pub fn with_fast_decode(mut self, fast_decode: bool) -> Self {
        self.fast_decode = fast_decode;
        self
    }

    /// Sets [`offline`](Self::offline): never download: use the hub cache or a local directory.
    #[must_use]
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Sets [`output_name`](Self::output_name): the ONNX output a task reads.
    #[must_use]
    pub fn with_output_name(mut self, output_name: Option<String>) -> Self {
        self.output_name = output_name;
        self
    }

    /// Sets [`pooling`](Self::pooling): how an ONNX token output becomes an embedding.
    #[must_use]
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// Sets [`labels`](Self::labels): a labels file for an ONNX classifier.
    #[must_use]
    pub fn with_labels(mut self, labels: Option<std::path::PathBuf>) -> Self {
        self.labels = labels;
        self
    }

    /// Sets [`preprocessor`](Self::preprocessor): preprocessing for an ONNX model.
    #[must_use]
    pub fn with_preprocessor(mut self, preprocessor: Option<PreprocessorConfig>) -> Self {
        self.preprocessor = preprocessor;
        self
    }

    /// Sets [`threads`](Self::threads): ONNX Runtime's intra-op threads on the CPU.
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

/// Everything a job needs to know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobSpec {
    /// The images: `gs://`, `s3://`, `file://`, a local path or `memory://`, with a prefix.
    pub input: Location,
    /// Where results go (same kinds).
    pub output: Location,
    /// The run id; derived from what defines the results when `None` (never from the world
    /// size, so a resubmission with another node count is the same run).
    pub run_id: Option<String>,
    /// Result format.
    pub format: OutputFormat,
    /// The checkpoint.
    pub model: ModelSpec,
    /// Images per chunk: the unit of claim, commit and resume. Fixed per run.
    pub chunk_size: usize,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Concurrent fetches.
    pub concurrency: usize,
    /// Bytes fetched ahead of decoding at most.
    pub prefetch_bytes: u64,
    /// Composed download (GCS).
    pub compose: bool,
    /// Largest temporary composite.
    pub max_composite_bytes: u64,
    /// Objects larger than this get an error row `too_large` without being downloaded.
    pub max_object_bytes: u64,
    /// Decode threads; 0: every core.
    pub decode_threads: usize,
    /// How long a claim holds without renewal (renewed every third of it). A dead or hung
    /// holder's chunks are taken over once it lapses.
    pub lease: Duration,
    /// How often a rank with nothing to claim looks again.
    pub poll: Duration,
    /// An idle rank also runs chunks that live ranks hold but have not committed (backup
    /// tasks: the first commit wins), so that a straggler does not hold the job.
    pub speculate: bool,
    /// After a stop request (SIGTERM), how long in-flight chunks may take to commit before
    /// they are released.
    pub grace: Duration,
    /// How long the store may keep failing transiently before the rank gives up (it exits
    /// with a retriable error; nothing committed is redone).
    pub store_deadline: Duration,
    /// How long a rank waits for another (rank 0's index, the other shards' files).
    pub wait_timeout: Duration,
    /// A pause after each batch (demos and tests that need a slow job).
    pub batch_delay: Duration,
    /// How videos in the input are sampled (`--video-fps`, `--video-max-frames`,
    /// `--video-keyframes`); `None`: a video is an error row (`unsupported`). With it, every
    /// row has the sample's `frame` and `time_s`; a still image is frame 0 at 0 s.
    pub video: Option<Sampling>,
    /// A chunk is also closed once its objects hold this many bytes (`--chunk-bytes`), so
    /// that a chunk of long videos does not hold its lease for hours. A larger object is a
    /// chunk of its own.
    pub chunk_bytes: Option<u64>,
}

impl Default for JobSpec {
    fn default() -> Self {
        Self {
            input: local("images"),
            output: local("output"),
            run_id: None,
            format: OutputFormat::Csv,
            model: ModelSpec {
                checkpoint: Task::Classify.default_model().into(),
                device: DeviceSpec::Auto,
                dtype: None,
                task: Task::Classify,
                top_k: 1,
                normalize: true,
                fast_decode: false,
                offline: false,
                output_name: None,
                pooling: Pooling::Cls,
                labels: None,
                preprocessor: None,
                threads: 0,
            },
            chunk_size: 1024,
            batch_size: 64,
            concurrency: 16,
            prefetch_bytes: 256 * 1024 * 1024,
            compose: true,
            max_composite_bytes: 32 * 1024 * 1024,
            max_object_bytes: 256 * 1024 * 1024,
            decode_threads: 0,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            speculate: true,
            grace: Duration::from_secs(20),
            store_deadline: Duration::from_secs(600),
            wait_timeout: Duration::from_secs(3600),
            batch_delay: Duration::ZERO,
            video: None,
            chunk_bytes: None,
        }
    }
}

/// Chainable setters, one per field: callers build it as `JobSpec::default().with_…(…)`, so
/// that new fields do not break them.
impl JobSpec {
    /// Sets [`input`](Self::input): the images: `gs://`, `s3://`, `file://`, a local path or
    /// `memory://`, with a prefix.
    #[must_use]
    pub fn with_input(mut self, input: Location) -> Self {
        self.input = input;
        self
    }

    /// Sets [`output`](Self::output): where results go (same kinds).
    #[must_use]
    pub fn with_output(mut self, output: Location) -> Self {
        self.output = output;
        self
    }

    /// Sets [`run_id`](Self::run_id): the run id (`None`: derived from what defines the results).
    #[must_use]
    pub fn with_run_id(mut self, run_id: Option<String>) -> Self {
        self.run_id = run_id;
        self
    }

    /// Sets [`format`](Self::format): result format.
    #[must_use]
    pub fn with_format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }

    /// Sets [`model`](Self::model): the checkpoint.
    #[must_use]
    pub fn with_model(mut self, model: ModelSpec) -> Self {
        self.model = model;
        self
    }

    /// Sets [`chunk_size`](Self::chunk_size): images per chunk.
    #[must_use]
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Sets [`batch_size`](Self::batch_size): images per forward pass.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets [`concurrency`](Self::concurrency): concurrent fetches.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets [`prefetch_bytes`](Self::prefetch_bytes): bytes fetched ahead of decoding at most.
    #[must_use]
    pub fn with_prefetch_bytes(mut self, prefetch_bytes: u64) -> Self {
        self.prefetch_bytes = prefetch_bytes;
        self
    }

    /// Sets [`compose`](Self::compose): composed download (GCS).
    #[must_use]
    pub fn with_compose(mut self, compose: bool) -> Self {
        self.compose = compose;
        self
    }

    /// Sets [`max_composite_bytes`](Self::max_composite_bytes): largest temporary composite.
    #[must_use]
    pub fn with_max_composite_bytes(mut self, max_composite_bytes: u64) -> Self {
        self.max_composite_bytes = max_composite_bytes;
        self
    }

    /// Sets [`max_object_bytes`](Self::max_object_bytes): objects larger than this get an error row
    /// `too_large` without being downloaded.
    #[must_use]
    pub fn with_max_object_bytes(mut self, max_object_bytes: u64) -> Self {
        self.max_object_bytes = max_object_bytes;
        self
    }

    /// Sets [`decode_threads`](Self::decode_threads): decode threads (0: every core).
    #[must_use]
    pub fn with_decode_threads(mut self, decode_threads: usize) -> Self {
        self.decode_threads = decode_threads;
        self
    }

    /// Sets [`lease`](Self::lease): how long a claim holds without renewal (renewed every third of
    /// it).
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`poll`](Self::poll): how often a rank with nothing to claim looks again.
    #[must_use]
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Sets [`speculate`](Self::speculate): an idle rank also runs chunks that live ranks hold but
    /// have not committed (backup tasks: the first commit wins).
    #[must_use]
    pub fn with_speculate(mut self, speculate: bool) -> Self {
        self.speculate = speculate;
        self
    }

    /// Sets [`grace`](Self::grace): after a stop request (SIGTERM), how long in-flight chunks may
    /// take to commit before they are released.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`store_deadline`](Self::store_deadline): how long the store may keep failing
    /// transiently before the rank gives up (it exits with a retriable error; nothing committed is
    /// redone).
    #[must_use]
    pub fn with_store_deadline(mut self, store_deadline: Duration) -> Self {
        self.store_deadline = store_deadline;
        self
    }

    /// Sets [`wait_timeout`](Self::wait_timeout): how long a rank waits for another (rank 0's
    /// index, the other shards' files).
    #[must_use]
    pub fn with_wait_timeout(mut self, wait_timeout: Duration) -> Self {
        self.wait_timeout = wait_timeout;
        self
    }

    /// Sets [`batch_delay`](Self::batch_delay): a pause after each batch (demos and tests that need
    /// a slow job).
    #[must_use]
    pub fn with_batch_delay(mut self, batch_delay: Duration) -> Self {
        self.batch_delay = batch_delay;
        self
    }

    /// Sets [`video`](Self::video): how videos are sampled.
    #[must_use]
    pub fn with_video(mut self, video: Option<Sampling>) -> Self {
        self.video = video;
        self
    }

    /// Sets [`chunk_bytes`](Self::chunk_bytes): bytes per chunk at most.
    #[must_use]
    pub fn with_chunk_bytes(mut self, chunk_bytes: Option<u64>) -> Self {
        self.chunk_bytes = chunk_bytes;
        self
    }
}

fn local(dir: &str) -> Location {
    let root = std::path::absolute(dir).unwrap_or_else(|_| std::path::PathBuf::from(dir));
    Location {
        url: dir.to_string(),
        backend: dataflux::Backend::Local { root },
        prefix: String::new(),
    }
}

impl JobSpec {
    /// Checks the settings that have limits; the error names the [`Setting`].
    pub fn validate(&self) -> Result<()> {
        let positive = [
            (Setting::ChunkSize, self.chunk_size),
            (Setting::BatchSize, self.batch_size),
            (Setting::Concurrency, self.concurrency),
            (Setting::TopK, self.model.top_k),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(Error::Config {
                    setting,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.prefetch_bytes == 0 {
            return Err(Error::Config {
                setting: Setting::Prefetch,
                reason: "must be at least 1".into(),
            });
        }
        if self.lease < Duration::from_millis(300) {
            return Err(Error::Config {
                setting: Setting::Lease,
                reason: format!("{:?} is too short to renew", self.lease),
            });
        }
        if self.chunk_bytes == Some(0) {
            return Err(Error::Config {
                setting: Setting::ChunkBytes,
                reason: "must be at least 1".into(),
            });
        }
        if let Some(video) = &self.video {
            validate_video(video)?;
        }
        if let Some(id) = &self.run_id {
            let ok = !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(Error::Config {
                    setting: Setting::RunId,
                    reason: format!("{id:?}: use letters, digits, '-', '_' and '.'"),
                });
            }
        }
        Ok(())
    }

    /// What defines this job's results: the input, the output format, the model's task and
    /// definition. Saved with the run and compared on every start.
    pub fn definition(
        &self,
        task: &str,
        model: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut d: BTreeMap<String, String> = model
            .into_iter()
            .map(|(k, v)| (format!("model.{k}"), v))
            .collect();
        d.insert("input".into(), canonical_url(&self.input));
        d.insert("format".into(), self.format.extension().into());
        d.insert("task".into(), task.into());
        if let Some(v) = &self.video {
            let fps = v.fps.map_or_else(|| "key frames".into(), |f| f.to_string());
            d.insert("video.fps".into(), fps);
            d.insert("video.keyframes".into(), v.keyframes.to_string());
            if let Some(m) = v.max_frames {
                d.insert("video.max_frames".into(), m.to_string());
            }
        }
        d
    }
}

/// A video sampling the job can run: a positive, finite rate (or key frames), and a build
/// with video support.
fn validate_video(video: &Sampling) -> Result<()> {
    if let Some(fps) = video.fps {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(Error::Config {
                setting: Setting::VideoFps,
                reason: format!("{fps}: give a rate above 0 (0.2 is one frame every 5 s)"),
            });
        }
    }
    if video.max_frames == Some(0) {
        return Err(Error::Config {
            setting: Setting::VideoMaxFrames,
            reason: "must be at least 1".into(),
        });
    }
    if !video.is_enabled() {
        return Err(Error::Config {
            setting: Setting::VideoFps,
            reason: format!("give a rate, or set {}", Setting::VideoKeyframes),
        });
    }
    if !dataflux_inference::video::SUPPORTED {
        return Err(Error::Config {
            setting: if video.fps.is_some() {
                Setting::VideoFps
            } else {
                Setting::VideoKeyframes
            },
            reason: "this build has no video support: build with `--features video` \
                     (FFmpeg's -dev packages; see the README)"
                .into(),
        });
    }
    Ok(())
}

/// A location as a URL that does not depend on how it was typed (`dir`, `./dir/`, `file:///abs/dir`).
pub fn canonical_url(location: &Location) -> String {
    use dataflux::Backend;
    match &location.backend {
        Backend::Gcs { bucket } => format!("gs://{bucket}/{}", location.prefix),
        Backend::S3 { bucket } => format!("s3://{bucket}/{}", location.prefix),
        Backend::Local { root } => format!("file://{}/{}", root.display(), location.prefix),
        Backend::Memory { name } => format!("memory://{name}/{}", location.prefix),
    }
}

/// The default run id: a stable hash of the job's definition.
///
/// ```
/// use std::collections::BTreeMap;
/// let a = BTreeMap::from([("input".to_string(), "gs://b/x/".to_string())]);
/// let b = BTreeMap::from([("input".to_string(), "gs://b/y/".to_string())]);
/// let id = dataflux_pipeline::spec::default_run_id(&a);
/// assert!(id.starts_with("run-") && id != dataflux_pipeline::spec::default_run_id(&b));
/// ```
pub fn default_run_id(definition: &BTreeMap<String, String>) -> String {
    let mut crc = 0u32;
    for (k, v) in definition {
        crc = crc32c::crc32c_append(crc, k.as_bytes());
        crc = crc32c::crc32c_append(crc, b"\0");
        crc = crc32c::crc32c_append(crc, v.as_bytes());
        crc = crc32c::crc32c_append(crc, b"\n");
    }
    format!("run-{crc:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_video(sampling: Sampling) -> JobSpec {
        JobSpec::default().with_video(Some(sampling))
    }

    fn setting(spec: &JobSpec) -> Option<Setting> {
        match spec.validate() {
            Err(Error::Config { setting, .. }) => Some(setting),
            _ => None,
        }
    }

    #[test]
    fn video_settings_that_cannot_run_name_their_flag() {
        assert_eq!(
            setting(&with_video(Sampling::fps(0.0))),
            Some(Setting::VideoFps)
        );
        assert_eq!(
            setting(&with_video(Sampling::fps(f64::NAN))),
            Some(Setting::VideoFps)
        );
        assert_eq!(
            setting(&with_video(Sampling::fps(1.0).with_max_frames(Some(0)))),
            Some(Setting::VideoMaxFrames)
        );
        assert_eq!(
            setting(&with_video(Sampling::default().with_max_frames(Some(3)))),
            Some(Setting::VideoFps)
        );
        assert_eq!(
            setting(&JobSpec::default().with_chunk_bytes(Some(0))),
            Some(Setting::ChunkBytes)
        );
    }

    #[test]
    fn video_sampling_needs_the_feature() {
        let spec = with_video(Sampling::fps(1.0));
        if dataflux_inference::video::SUPPORTED {
            assert!(spec.validate().is_ok());
        } else {
            // A build without `video`: a configuration error naming the flag and the feature.
            let err = spec.validate().unwrap_err();
            assert!(err.to_string().contains("--features video"), "{err}");
            assert_eq!(setting(&spec), Some(Setting::VideoFps));
        }
    }

    #[test]
    fn the_sampling_is_part_of_the_run_definition() {
        let a = with_video(Sampling::fps(1.0)).definition("classify", BTreeMap::new());
        let b = with_video(Sampling::fps(0.5)).definition("classify", BTreeMap::new());
        let none = JobSpec::default().definition("classify", BTreeMap::new());
        assert_ne!(a, b);
        assert_eq!(a.get("video.fps").map(String::as_str), Some("1"));
        assert!(!none.contains_key("video.fps"));
    }
}
