//! `batch-inference`: classify (ViT) or embed (CLIP) every image under a prefix and write the
//! results back, across any number of ranks, every image exactly once (the job is
//! `dataflux-pipeline`'s).
//!
//! Exit codes: 0 done (or the run had already finished), 1 fatal error, 2 configuration
//! error (nothing was done), 3 finished with bad inputs (see the errors files), 75 stopped
//! early (SIGTERM, or the store unreachable past its deadline): run it again to carry on.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dataflux_distributed::{Budget, Topology};
use dataflux_examples::cli::{self, DTypeArg, FormatArg, PoolingArg, ResampleArg, TaskArg};
use dataflux_examples::logging::{self, LogFormat};
use dataflux_examples::progress;
use dataflux_inference::video::Sampling;
use dataflux_pipeline::{
    AnyModel, BatchModel, CheckpointSource, Job, JobSpec, ModelSpec, Stores, Task,
};
use tokio_util::sync::CancellationToken;

fn defaults() -> JobSpec {
    JobSpec::default()
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Classify or embed every image under a prefix and write the results back, across ranks, exactly once."
)]
struct Args {
    /// Images: gs://bucket/prefix, s3://bucket/prefix, file:///dir or a local path [default:
    /// the sample images: samples/ next to this binary, ../share/dataflux/samples from it, or
    /// examples/samples of the checkout around the current directory].
    #[arg(long, env = "DATAFLUX_INPUT")]
    input: Option<String>,
    /// Where results go (same kinds of location).
    #[arg(long, env = "DATAFLUX_OUTPUT", default_value_t = defaults().output.url)]
    output: String,
    /// What to compute: top-k labels (a ViT classifier or any ONNX classifier), image
    /// embeddings (a CLIP model or any ONNX model), or every output of an ONNX model.
    #[arg(long, env = "DATAFLUX_TASK", value_enum, default_value_t = TaskArg::Classify)]
    task: TaskArg,
    /// The model: a Hugging Face repository id (owner/name[@revision]), a local folder, a
    /// folder in a bucket (gs://bucket/prefix, s3://…, file://…; fetched once per node into
    /// --model-cache), or a .onnx file. A folder is recognised by its files: model.onnx or
    /// onnx/model.onnx runs on ONNX Runtime (an optimum export), model.safetensors of a ViT or
    /// CLIP on candle [default: google/vit-base-patch16-224 to classify,
    /// openai/clip-vit-base-patch32 to embed].
    #[arg(long, env = "DATAFLUX_MODEL")]
    model: Option<String>,
    /// The node's cache for checkpoints from buckets, shared by its ranks (one downloads under
    /// a file lock, the others wait) [default: $HF_HOME/dataflux].
    #[arg(long, env = "DATAFLUX_MODEL_CACHE")]
    model_cache: Option<std::path::PathBuf>,
    /// Images per forward pass.
    #[arg(long, env = "DATAFLUX_BATCH_SIZE", default_value_t = defaults().batch_size)]
    batch_size: usize,
    /// auto, cpu, cuda (this process's LOCAL_RANK GPU) or cuda:N.
    #[arg(long, env = "DATAFLUX_DEVICE", default_value_t = defaults().model.device.to_string())]
    device: String,
    /// Compute precision (default: f32 on CPU, bf16 on CUDA).
    #[arg(long, env = "DATAFLUX_DTYPE", value_enum)]
    dtype: Option<DTypeArg>,
    /// Predictions per image (more than 1 adds score and label columns).
    #[arg(long, env = "DATAFLUX_TOP_K", default_value_t = defaults().model.top_k)]
    top_k: usize,
    /// Result format [default: csv to classify, parquet to embed].
    #[arg(long, env = "DATAFLUX_FORMAT", value_enum)]
    format: Option<FormatArg>,
    /// Keep embeddings as the model projects them (default: L2-normalised).
    #[arg(long)]
    raw_embeddings: bool,
    /// ONNX models: the output the task reads [default: classify: logits, else the only
    /// [batch, classes] output; embed: image_embeds, else pooler_output, else the first
    /// [batch, dim] output, else the first [batch, tokens, dim] output, pooled].
    #[arg(long)]
    output_name: Option<String>,
    /// ONNX models: how a [batch, tokens, dim] output becomes an embedding.
    #[arg(long, value_enum, default_value_t = PoolingArg::Cls)]
    pooling: PoolingArg,
    /// ONNX classifiers: a labels file, one class name per line [default: config.json's
    /// id2label, else the class index].
    #[arg(long)]
    labels: Option<std::path::PathBuf>,
    /// ONNX models: a preprocessor_config.json to use instead of the model folder's.
    #[arg(long)]
    preprocessor_config: Option<std::path::PathBuf>,
    /// ONNX models without a preprocessor_config.json: resize to N (or HxW) pixels [default:
    /// the model's input size, else 224].
    #[arg(long)]
    image_size: Option<String>,
    /// ONNX models: after resizing the shortest edge to --image-size, crop the centre N (or
    /// HxW), as torchvision's Resize + CenterCrop.
    #[arg(long)]
    center_crop: Option<String>,
    /// ONNX models: per-channel mean, r,g,b [default: ImageNet's 0.485,0.456,0.406].
    #[arg(long)]
    image_mean: Option<String>,
    /// ONNX models: per-channel standard deviation [default: ImageNet's 0.229,0.224,0.225].
    #[arg(long)]
    image_std: Option<String>,
    /// ONNX models: resize filter [default: bilinear].
    #[arg(long, value_enum)]
    resample: Option<ResampleArg>,
    /// Fetch objects one by one instead of composing them (GCS).
    #[arg(long)]
    no_compose: bool,
    /// Largest temporary composite, in bytes.
    #[arg(long, default_value_t = defaults().max_composite_bytes)]
    max_composite_bytes: u64,
    /// Concurrent fetches.
    #[arg(long, default_value_t = defaults().concurrency)]
    concurrency: usize,
    /// Objects larger than this many bytes get an error row `too_large`, without a download.
    #[arg(long, default_value_t = defaults().max_object_bytes)]
    max_object_bytes: u64,
    /// MiB fetched ahead of decoding at most (default: this rank's share of the memory limit).
    #[arg(long)]
    prefetch_mb: Option<u64>,
    /// Decode threads (default: this rank's share of the CPU quota).
    #[arg(long)]
    decode_threads: Option<usize>,
    /// Fast decoding: large JPEGs decoded at reduced scale (feature turbojpeg); pixels differ.
    #[arg(long)]
    fast_decode: bool,
    /// Run id: the same id resumes, or does nothing if finished (default: from the input,
    /// model, task and format, never the world size).
    #[arg(long, env = "DATAFLUX_RUN_ID")]
    run_id: Option<String>,
    /// Never download the model (use the cache or a local directory).
    #[arg(long)]
    offline: bool,
    /// Images per chunk, the unit of claim, commit and resume (fixed when a run starts).
    #[arg(long, env = "DATAFLUX_CHUNK_SIZE", default_value_t = defaults().chunk_size)]
    chunk_size: usize,
    /// Also close a chunk once its objects hold this many bytes (a chunk of long videos then
    /// holds its lease for minutes, not hours); fixed when a run starts.
    #[arg(long, env = "DATAFLUX_CHUNK_BYTES")]
    chunk_bytes: Option<u64>,
    /// Videos in the input (recognised by their content: MP4, MOV, MKV, WebM, AVI, …): take
    /// this many frames per second of video (0.2: one every 5 s); sample k is the last frame
    /// at or before k / F. Rows gain `frame` and `time_s`. Needs a build with `--features
    /// video`. Without it, a video is an error row.
    #[arg(long, env = "DATAFLUX_VIDEO_FPS")]
    video_fps: Option<f64>,
    /// At most this many samples per video.
    #[arg(long)]
    video_max_frames: Option<u64>,
    /// Key frames only (decoded alone, the fastest way through a long video): with
    /// --video-fps, sample k is the last key frame at or before k / F; without, every key
    /// frame.
    #[arg(long)]
    video_keyframes: bool,
    /// Seconds a claim holds without renewal before another rank may take it over.
    #[arg(long, default_value_t = defaults().lease.as_secs_f64())]
    lease_secs: f64,
    /// Seconds in-flight chunks get to commit after SIGTERM.
    #[arg(long, default_value_t = defaults().grace.as_secs_f64())]
    grace_secs: f64,
    /// Seconds the store may fail transiently before the rank gives up (exit 75).
    #[arg(long, default_value_t = defaults().store_deadline.as_secs_f64())]
    store_deadline_secs: f64,
    /// Seconds a rank waits for another (rank 0's listing, the other shards).
    #[arg(long, default_value_t = defaults().wait_timeout.as_secs_f64())]
    wait_timeout_secs: f64,
    /// List, print the chunk plan and the requests the job would make with their cost at GCS
    /// list prices, and exit having written nothing.
    #[arg(long)]
    dry_run: bool,
    /// No backup tasks: an idle rank does not re-run chunks held long by a slow one.
    #[arg(long)]
    no_speculate: bool,
    /// Log lines: text, json (Cloud Logging), or auto (text on a terminal, JSON otherwise).
    #[arg(long, env = "DATAFLUX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Only warnings, errors and the final summary (no progress or info lines; RUST_LOG, when
    /// set, still wins).
    #[arg(long)]
    quiet: bool,
    /// Without a terminal (JSON logs, a pipe): a progress line every this many seconds (0:
    /// none). On a terminal the progress is a live display instead.
    #[arg(long, env = "DATAFLUX_PROGRESS_SECS", default_value_t = 30.0)]
    progress_secs: f64,
    /// Pause after each batch, in milliseconds (for tests and demos).
    #[arg(long, default_value_t = 0, hide = true)]
    batch_delay_ms: u64,
}

fn spec(args: &Args, topology: &Topology, budget: &Budget) -> Result<JobSpec, cli::ConfigError> {
    let task = Task::from(args.task);
    // Flags are checked in the order --help lists them: the first bad one is reported.
    let input = match &args.input {
        Some(input) => cli::location("--input", input)?,
        None => cli::default_input()?,
    };
    let output = cli::location("--output", &args.output)?;
    // --model-cache (often set for a whole fleet by its environment) serves a bucket's model
    // only: a hub model has the hub's cache, a directory needs none.
    let checkpoint = match &args.model {
        Some(m) if m.contains("://") => CheckpointSource::Bucket {
            location: cli::location("--model", m)?,
            cache: args.model_cache.clone(),
        },
        Some(m) => cli::model_source("--model", m)?.into(),
        None if task == Task::Outputs => {
            return Err(cli::ConfigError(
                "--task outputs: needs --model (an ONNX model folder or .onnx file)".into(),
            ))
        }
        None => task.default_model().into(),
    };
    let preprocessor = cli::PreprocessFlags {
        config_file: args.preprocessor_config.clone(),
        image_size: args.image_size.clone(),
        center_crop: args.center_crop.clone(),
        mean: args.image_mean.clone(),
        std: args.image_std.clone(),
        resample: args.resample,
    }
    .config()?;
    if let Some(labels) = &args.labels {
        if !labels.is_file() {
            return Err(cli::ConfigError(format!(
                "--labels {}: no such file",
                labels.display()
            )));
        }
    }
    let model = ModelSpec::default()
        .with_checkpoint(checkpoint)
        .with_device(cli::device("--device", &args.device, topology)?)
        .with_dtype(args.dtype.map(Into::into))
        .with_task(task)
        .with_top_k(args.top_k)
        .with_normalize(!args.raw_embeddings)
        .with_fast_decode(args.fast_decode)
        .with_offline(args.offline)
        .with_output_name(args.output_name.clone())
        .with_pooling(args.pooling.into())
        .with_labels(args.labels.clone())
        .with_preprocessor(preprocessor)
        // ONNX Runtime on the CPU: this rank's share of the cores, as the decode pool has; the
        // two take turns (decode runs ahead of the model, bounded by the prefetch window, and
        // ONNX Runtime does not spin while it waits).
        .with_threads(args.decode_threads.unwrap_or(budget.decode_threads).max(1));
    Ok(defaults()
        .with_input(input)
        .with_output(output)
        .with_run_id(args.run_id.clone())
        .with_format(args.format.map_or(task.default_format(), Into::into))
        .with_model(model)
        .with_chunk_size(args.chunk_size)
        .with_chunk_bytes(args.chunk_bytes)
        .with_video(video_sampling(args))
        .with_batch_size(args.batch_size)
        .with_concurrency(args.concurrency)
        .with_prefetch_bytes(
            args.prefetch_mb
                .map_or(budget.prefetch_bytes, |mb| mb.saturating_mul(1024 * 1024)),
        )
        .with_compose(!args.no_compose)
        .with_max_composite_bytes(args.max_composite_bytes)
        .with_max_object_bytes(args.max_object_bytes)
        .with_decode_threads(args.decode_threads.unwrap_or(budget.decode_threads))
        .with_lease(cli::seconds("--lease-secs", args.lease_secs)?)
        .with_grace(cli::seconds("--grace-secs", args.grace_secs)?)
        .with_store_deadline(cli::seconds(
            "--store-deadline-secs",
            args.store_deadline_secs,
        )?)
        .with_wait_timeout(cli::seconds("--wait-timeout-secs", args.wait_timeout_secs)?)
        .with_speculate(!args.no_speculate)
        .with_batch_delay(Duration::from_millis(args.batch_delay_ms)))
}

/// The video sampling the flags ask for: none without --video-fps or --video-keyframes.
fn video_sampling(args: &Args) -> Option<Sampling> {
    if args.video_fps.is_none() && !args.video_keyframes {
        if args.video_max_frames.is_some() {
            // Checked by JobSpec::validate: --video-max-frames alone names the missing rate.
            return Some(Sampling::default().with_max_frames(args.video_max_frames));
        }
        return None;
    }
    let mut sampling = match args.video_fps {
        Some(fps) => Sampling::fps(fps),
        None => Sampling::keyframes(),
    };
    sampling = sampling
        .with_keyframes(args.video_keyframes)
        .with_max_frames(args.video_max_frames);
    Some(sampling)
}

async fn run(args: Args, topology: Topology, budget: Budget) -> ExitCode {
    let spec = match spec(&args, &topology, &budget)
        .and_then(|s| s.validate().map(|_| s).map_err(Into::into))
    {
        Ok(s) => s,
        Err(e) => return cli::config_exit(&e.to_string()),
    };
    let progress_every = match cli::seconds("--progress-secs", args.progress_secs) {
        Ok(d) => d,
        Err(e) => return cli::config_exit(&e.to_string()),
    };
    let display = progress::Mode::pick(args.quiet, args.log_format, progress_every);
    cli::log_budget(&budget, &spec);
    if args.dry_run {
        return cli::dry_run_exit(&spec, topology.world_size).await;
    }
    let stores = match Job::preflight(&spec).await {
        Ok(s) => s,
        Err(e) => return cli::error_exit(&e),
    };
    let cancel = CancellationToken::new();
    let _signals = cli::stop_on_signals(cancel.clone());
    let loaded = match AnyModel::load(&spec).await {
        Ok(AnyModel::Vit(m)) => {
            return run_model(stores, &spec, Arc::new(m), &topology, cancel, display).await
        }
        Ok(AnyModel::Clip(m)) => {
            return run_model(stores, &spec, Arc::new(m), &topology, cancel, display).await
        }
        #[cfg(feature = "onnx")]
        Ok(AnyModel::Onnx(m)) => {
            return run_model(stores, &spec, Arc::new(m), &topology, cancel, display).await
        }
        #[allow(unreachable_patterns)]
        Ok(_) => {
            eprintln!("error: --model: this build cannot run the model");
            return ExitCode::from(2);
        }
        Err(e) => e,
    };
    if loaded.is_config() {
        return cli::error_exit(&loaded);
    }
    eprintln!(
        "error: --model {}: {}",
        spec.model.checkpoint,
        cli::flags_in(&loaded.to_string())
    );
    // A store or hub down past the deadline: run it again to carry on, as for the job itself.
    ExitCode::from(if loaded.is_retriable() {
        cli::EXIT_RETRY
    } else {
        1
    })
}

async fn run_model<M: BatchModel>(
    stores: Stores,
    spec: &JobSpec,
    model: Arc<M>,
    topology: &Topology,
    cancel: CancellationToken,
    mode: progress::Mode,
) -> ExitCode {
    logging::set_field("run_id", Job::run_id(spec, model.as_ref()));
    let observed = mode.progress();
    let display =
        progress::Display::start(observed.clone(), mode, topology.rank, topology.world_size);
    let result = Job::run_observed(stores, spec, model, topology, cancel, &observed).await;
    // The display is cleared before the final summary is printed.
    display.stop().await;
    match result {
        Ok(outcome) => cli::outcome_exit(&outcome),
        Err(e) => cli::error_exit(&e),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = if args.quiet { "warn" } else { "info" };
    dataflux_examples::logging::init(level, args.log_format);
    let topology = match Topology::from_env() {
        Ok(t) => t,
        Err(e) => return cli::config_exit(&e.to_string()),
    };
    logging::set_field("rank", topology.rank);
    let budget = Budget::detect(topology.local_world_size);
    match cli::runtime(&budget) {
        Ok(rt) => rt.block_on(run(args, topology, budget)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}
