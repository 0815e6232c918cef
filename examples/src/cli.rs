//! What the binaries share at their edge: parsing flags into typed values (a bad one is a
//! configuration error naming the flag, exit code 2, before any work), exit codes, and
//! stopping on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use dataflux::Location;
use dataflux_distributed::logs::say;
use dataflux_distributed::Topology;
use dataflux_inference::{DType, DeviceSpec, ModelSource};
use dataflux_pipeline::{OutputFormat, Setting};
use tokio_util::sync::CancellationToken;

/// Exit code of a configuration error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code of a run stopped early (SIGTERM, the store unreachable past its deadline):
/// running it again carries on. `k8s/batch-inference.yaml`'s pod failure policy retries it.
pub const EXIT_RETRY: u8 = 75;

/// A flag that cannot be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<dataflux_pipeline::Error> for ConfigError {
    fn from(e: dataflux_pipeline::Error) -> Self {
        ConfigError(flags_in(&e.to_string()))
    }
}

/// The flag that sets `setting` (the library's errors name settings; the binaries name
/// flags).
///
/// ```
/// use dataflux_examples::cli::flag;
/// use dataflux_pipeline::Setting;
/// assert_eq!(flag(Setting::Prefetch), "--prefetch-mb");
/// ```
pub fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Input => "--input",
        Setting::Output => "--output",
        Setting::RunId => "--run-id",
        Setting::ChunkSize => "--chunk-size",
        Setting::ChunkBytes => "--chunk-bytes",
        Setting::BatchSize => "--batch-size",
        Setting::Concurrency => "--concurrency",
        Setting::Prefetch => "--prefetch-mb",
        Setting::MaxObject => "--max-object-bytes",
        Setting::Lease => "--lease-secs",
        Setting::DecodeThreads => "--decode-threads",
        Setting::Model => "--model",
        Setting::ModelCache => "--model-cache",
        Setting::Task => "--task",
        Setting::TopK => "--top-k",
        Setting::OutputName => "--output-name",
        Setting::Labels => "--labels",
        Setting::VideoFps => "--video-fps",
        Setting::VideoMaxFrames => "--video-max-frames",
        Setting::VideoKeyframes => "--video-keyframes",
        // A setting added to the library later: its own name is still clear.
        other => other.name(),
    }
}

/// A library message with every setting it names turned into its flag.
///
/// ```
/// use dataflux_examples::cli::flags_in;
/// assert_eq!(
///     flags_in("Sampling::fps: give a rate, or set Sampling::keyframes"),
///     "--video-fps: give a rate, or set --video-keyframes"
/// );
/// ```
pub fn flags_in(message: &str) -> String {
    Setting::rename_in(message, flag)
}

/// Prints a configuration error and returns exit code 2.
pub fn config_exit(message: &str) -> ExitCode {
    say(&format!("error: {message}"));
    ExitCode::from(EXIT_CONFIG)
}

/// Prints a job's error; returns its exit code: 2 for configuration errors, 75 for those
/// after which a rerun carries on, else 1.
pub fn error_exit(e: &dataflux_pipeline::Error) -> ExitCode {
    say(&format!("error: {}", flags_in(&e.to_string())));
    ExitCode::from(if e.is_config() {
        EXIT_CONFIG
    } else if e.is_retriable() {
        EXIT_RETRY
    } else {
        1
    })
}

/// Prints how a job ended; returns its exit code: 0 done (or done before), 3 done with bad
/// inputs, 75 stopped early (run it again to carry on).
pub fn outcome_exit(outcome: &dataflux_pipeline::Outcome) -> ExitCode {
    use dataflux_pipeline::Outcome;
    match outcome {
        Outcome::AlreadyFinished { summary } => {
            say(&format!(
                "Nothing to do: this run already finished (summary: {summary})."
            ));
            ExitCode::SUCCESS
        }
        Outcome::Finished(f) => {
            say(dataflux_pipeline::summary::summary_table(f).trim_end());
            ExitCode::from(if f.has_bad_inputs() { 3 } else { 0 })
        }
        Outcome::Interrupted { .. } => {
            say("Stopped before the run finished; run it again to carry on.");
            ExitCode::from(EXIT_RETRY)
        }
    }
}

/// `--dry-run`: lists, prints the plan and the requests with their cost, writes nothing.
pub async fn dry_run_exit(spec: &dataflux_pipeline::JobSpec, world_size: usize) -> ExitCode {
    match dataflux_pipeline::dry_run(spec, world_size).await {
        Ok(plan) => {
            say(plan.to_string().trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => error_exit(&e),
    }
}

/// Logs this rank's budget and what the spec takes of it.
pub fn log_budget(budget: &dataflux_distributed::Budget, spec: &dataflux_pipeline::JobSpec) {
    tracing::info!(
        cpus = budget.cpus,
        memory_mib = budget.memory_bytes.map(|m| m >> 20),
        local_world_size = budget.local_world_size,
        decode_threads = spec.decode_threads,
        async_workers = budget.async_workers,
        prefetch_mib = spec.prefetch_bytes >> 20,
        "this rank's budget"
    );
}

/// A location flag.
pub fn location(flag: &str, value: &str) -> Result<Location, ConfigError> {
    Location::parse(value).map_err(|e| ConfigError(format!("{flag} {value}: {e}")))
}

/// The input when `--input` is not given: the sample images, looked for in order in
/// `samples/` next to the executable, `../share/dataflux/samples` from it (an installed
/// image: `/usr/local/bin/batch-inference` finds `/usr/local/share/dataflux/samples`), then
/// `examples/samples` in the current directory or the nearest parent that has one (a
/// checkout). The one place that decides the default input; not finding it is a
/// configuration error that says where it looked.
pub fn default_input() -> Result<Location, ConfigError> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let cwd = std::env::current_dir().ok();
    let samples = find_samples(exe_dir.as_deref(), cwd.as_deref()).map_err(|looked| {
        ConfigError(format!(
            "--input is not given and no sample images were found (looked in {}); pass \
             --input gs://bucket/prefix, s3://bucket/prefix, file:///dir or a local directory",
            looked.join(", ")
        ))
    })?;
    let path = samples.to_str().ok_or_else(|| {
        ConfigError(format!(
            "--input is not given and the sample images' path {} is not UTF-8",
            samples.display()
        ))
    })?;
    location("--input", path)
}

/// The sample images from these directories (see [`default_input`]), as a canonical path
/// (no `bin/..` in the run's definition); `Err` lists where it looked.
fn find_samples(exe_dir: Option<&Path>, cwd: Option<&Path>) -> Result<PathBuf, Vec<String>> {
    let mut looked = Vec::new();
    if let Some(dir) = exe_dir {
        for candidate in [dir.join("samples"), dir.join("../share/dataflux/samples")] {
            if candidate.is_dir() {
                return Ok(candidate.canonicalize().unwrap_or(candidate));
            }
            looked.push(candidate.display().to_string());
        }
    }
    if let Some(cwd) = cwd {
        if let Some(found) = cwd
            .ancestors()
            .map(|dir| dir.join("examples/samples"))
            .find(|candidate| candidate.is_dir())
        {
            return Ok(found.canonicalize().unwrap_or(found));
        }
        looked.push(format!(
            "examples/samples in {} and its parents",
            cwd.display()
        ));
    }
    Err(looked)
}

/// A model flag: an existing directory, or a hub id (`owner/name[@revision]`, or `name`).
/// Something that can only be a path (absolute, `./…`, `~…`, or with more than one `/`)
/// must be an existing directory.
///
/// ```
/// use dataflux_examples::cli::model_source;
/// assert!(model_source("--model", "google/vit-base-patch16-224").is_ok());
/// let e = model_source("--model", "/no/such/checkpoint").unwrap_err();
/// assert!(e.0.starts_with("--model /no/such/checkpoint"));
/// ```
pub fn model_source(flag: &str, value: &str) -> Result<ModelSource, ConfigError> {
    let path = Path::new(value);
    if path.is_dir() || (path.is_file() && value.to_ascii_lowercase().ends_with(".onnx")) {
        return Ok(ModelSource::Local(path.to_path_buf()));
    }
    let repo = value.split('@').next().unwrap_or(value);
    let path_like = value.starts_with(['/', '.', '~']) || repo.matches('/').count() > 1;
    if path_like || value.is_empty() {
        return Err(ConfigError(format!(
            "{flag} {value}: no such checkpoint directory or .onnx file (and not a hub id owner/name)"
        )));
    }
    Ok(value.parse().unwrap_or_else(|e| match e {}))
}

/// A device flag; plain `cuda` is this process's GPU (`LOCAL_RANK`).
pub fn device(flag: &str, value: &str, topology: &Topology) -> Result<DeviceSpec, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "cuda" | "gpu" => Ok(DeviceSpec::Cuda(topology.local_rank)),
        other => other
            .parse()
            .map_err(|e| ConfigError(format!("{flag} {value}: {e}"))),
    }
}

/// A duration flag in seconds.
pub fn seconds(flag: &str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| ConfigError(format!("{flag} {value}: not a number of seconds")))
}

/// `--dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    /// 32-bit float.
    F32,
    /// bfloat16 (CUDA).
    Bf16,
    /// float16 (CUDA).
    F16,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::Bf16 => DType::BF16,
            DTypeArg::F16 => DType::F16,
        }
    }
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// The tutorial's CSV.
    Csv,
    /// JSON lines.
    Jsonl,
    /// Parquet (typed columns; embeddings as fixed-size lists of float32).
    Parquet,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => OutputFormat::Csv,
            FormatArg::Jsonl => OutputFormat::Jsonl,
            FormatArg::Parquet => OutputFormat::Parquet,
        }
    }
}

/// `--task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    /// Top-k labels (ViT classifiers, or any ONNX classifier).
    Classify,
    /// Image embeddings (CLIP, or any ONNX model).
    Embed,
    /// Every output of an ONNX model, as float32 list columns (any model).
    Outputs,
}

impl From<TaskArg> for dataflux_pipeline::Task {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::Classify => dataflux_pipeline::Task::Classify,
            TaskArg::Embed => dataflux_pipeline::Task::Embed,
            TaskArg::Outputs => dataflux_pipeline::Task::Outputs,
        }
    }
}

/// The async runtime for one rank: its budget's worker threads (I/O needs few; the CPU work
/// runs on the decode pool).
pub fn runtime(budget: &dataflux_distributed::Budget) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(budget.async_workers)
        .enable_all()
        .build()
}

/// Cancels `cancel` on SIGTERM or Ctrl-C, for as long as the returned guard lives.
pub fn stop_on_signals(cancel: CancellationToken) -> SignalGuard {
    SignalGuard(tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::warn!("stop requested (signal)");
        cancel.cancel();
    }))
}

/// Stops listening for signals when dropped.
#[derive(Debug)]
pub struct SignalGuard(tokio::task::JoinHandle<()>);

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_next_to_the_binary_then_installed_then_in_a_checkout() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("prefix/bin");
        let checkout = root.path().join("checkout");
        let deep = checkout.join("a/b");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&deep).unwrap();

        // Nothing anywhere: the error lists every place.
        let looked = find_samples(Some(&bin), Some(&deep)).unwrap_err();
        assert_eq!(looked.len(), 3, "{looked:?}");
        assert!(
            looked[2].contains(&deep.display().to_string()),
            "{looked:?}"
        );

        // A checkout around the current directory.
        std::fs::create_dir_all(checkout.join("examples/samples")).unwrap();
        let found = |dir: PathBuf| dir.canonicalize().unwrap();
        assert_eq!(
            find_samples(Some(&bin), Some(&deep)).unwrap(),
            found(checkout.join("examples/samples"))
        );
        // An installed share directory wins over the checkout.
        let share = root.path().join("prefix/share/dataflux/samples");
        std::fs::create_dir_all(&share).unwrap();
        assert_eq!(find_samples(Some(&bin), Some(&deep)).unwrap(), found(share));
        // And samples/ next to the binary wins over both.
        std::fs::create_dir_all(bin.join("samples")).unwrap();
        assert_eq!(
            find_samples(Some(&bin), Some(&deep)).unwrap(),
            found(bin.join("samples"))
        );
    }
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingArg {
    /// The first token (`[CLS]`).
    Cls,
    /// The mean over all tokens.
    Mean,
}

impl From<PoolingArg> for dataflux_inference::Pooling {
    fn from(p: PoolingArg) -> Self {
        match p {
            PoolingArg::Cls => dataflux_inference::Pooling::Cls,
            PoolingArg::Mean => dataflux_inference::Pooling::Mean,
        }
    }
}

/// `--resample`: PIL's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResampleArg {
    /// PIL NEAREST.
    Nearest,
    /// PIL BILINEAR (antialiased).
    Bilinear,
    /// PIL BICUBIC.
    Bicubic,
    /// PIL LANCZOS.
    Lanczos,
}

impl From<ResampleArg> for dataflux_inference::Resample {
    fn from(r: ResampleArg) -> Self {
        match r {
            ResampleArg::Nearest => dataflux_inference::Resample::Nearest,
            ResampleArg::Bilinear => dataflux_inference::Resample::Bilinear,
            ResampleArg::Bicubic => dataflux_inference::Resample::Bicubic,
            ResampleArg::Lanczos => dataflux_inference::Resample::Lanczos,
        }
    }
}

/// The preprocessing flags of an ONNX model without a `preprocessor_config.json` (a bare
/// `.onnx` file), as one configuration; `None` when no flag is given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreprocessFlags {
    /// `--preprocessor-config`: a `preprocessor_config.json` to use.
    pub config_file: Option<std::path::PathBuf>,
    /// `--image-size`: `N` or `HxW`.
    pub image_size: Option<String>,
    /// `--center-crop`: `N` or `HxW`.
    pub center_crop: Option<String>,
    /// `--image-mean`: three numbers.
    pub mean: Option<String>,
    /// `--image-std`: three numbers.
    pub std: Option<String>,
    /// `--resample`.
    pub resample: Option<ResampleArg>,
}

impl PreprocessFlags {
    /// The configuration the flags describe, or `None` when none is given: torchvision's
    /// steps, PIL-exact: resize to `--image-size` (`HxW` exactly; `N` exactly to NxN, or the
    /// shortest edge to N when `--center-crop` is given), centre crop, rescale by 1/255,
    /// normalise with `--image-mean` / `--image-std` (default ImageNet's).
    pub fn config(&self) -> Result<Option<dataflux_inference::PreprocessorConfig>, ConfigError> {
        use dataflux_inference::config::Resize;
        if let Some(path) = &self.config_file {
            return dataflux_inference::PreprocessorConfig::from_file(path)
                .map(Some)
                .map_err(|e| ConfigError(format!("--preprocessor-config: {e}")));
        }
        if *self == Self::default() {
            return Ok(None);
        }
        let size = |flag: &str, v: &str| -> Result<(u32, u32, bool), ConfigError> {
            let bad = || {
                ConfigError(format!(
                    "{flag} {v}: expected N or HxW (pixels, at least 1)"
                ))
            };
            let (h, w, square) = match v.split_once(['x', 'X']) {
                Some((h, w)) => (
                    h.trim().parse().map_err(|_| bad())?,
                    w.trim().parse().map_err(|_| bad())?,
                    false,
                ),
                None => {
                    let n: u32 = v.trim().parse().map_err(|_| bad())?;
                    (n, n, true)
                }
            };
            if h == 0 || w == 0 {
                return Err(bad());
            }
            Ok((h, w, square))
        };
        let three = |flag: &str, v: &str| -> Result<[f32; 3], ConfigError> {
            let parts: Vec<f32> = v
                .split(',')
                .map(|p| p.trim().parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|_| ConfigError(format!("{flag} {v}: expected three numbers, a,b,c")))?;
            <[f32; 3]>::try_from(parts)
                .map_err(|_| ConfigError(format!("{flag} {v}: expected three numbers, a,b,c")))
        };
        let (h, w, square) = match &self.image_size {
            Some(v) => size("--image-size", v)?,
            None => (224, 224, true),
        };
        let crop = match &self.center_crop {
            Some(v) => Some(size("--center-crop", v)?),
            None => None,
        };
        let mut config = dataflux_inference::PreprocessorConfig::square(h);
        config.resize = Resize::To {
            height: h,
            width: w,
        };
        (config.height, config.width) = (h, w);
        if let Some((ch, cw, _)) = crop {
            if square {
                config.resize = Resize::ShortestEdge(h);
            }
            config.center_crop = true;
            (config.height, config.width) = (ch, cw);
        }
        config.image_mean = match &self.mean {
            Some(v) => three("--image-mean", v)?,
            None => [0.485, 0.456, 0.406],
        };
        config.image_std = match &self.std {
            Some(v) => three("--image-std", v)?,
            None => [0.229, 0.224, 0.225],
        };
        if config.image_std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(ConfigError("--image-std: a standard deviation of 0".into()));
        }
        if let Some(r) = self.resample {
            config.resample = r.into();
        }
        Ok(Some(config))
    }
}
