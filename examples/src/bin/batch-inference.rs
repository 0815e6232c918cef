//! `batch-inference`: classify every image under a prefix with a Vision Transformer and write
//! the labels back, across any number of ranks, resumably.
//!
//! Exit codes: 0 all images classified (or the run had already finished), 1 fatal error,
//! 2 usage error, 3 finished with some bad inputs (see the errors file).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dataflux_examples::output::Format;
use dataflux_examples::pipeline::{self, JobConfig, Outcome};

/// The sample images shipped with the repository (the default input).
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Classify every image under a prefix and write labels back, across ranks, resumably."
)]
struct Args {
    /// Images to classify: gs://bucket/prefix, s3://bucket/prefix, file:///dir or a local path.
    #[arg(long, env = "DATAFLUX_INPUT", default_value = SAMPLES)]
    input: String,
    /// Where results go (same kinds of location).
    #[arg(long, env = "DATAFLUX_OUTPUT", default_value = "output")]
    output: String,
    /// Hugging Face repository id, or a local checkpoint directory.
    #[arg(
        long,
        env = "DATAFLUX_MODEL",
        default_value = "google/vit-base-patch16-224"
    )]
    model: String,
    /// Images per forward pass.
    #[arg(long, env = "DATAFLUX_BATCH_SIZE", default_value_t = 64)]
    batch_size: usize,
    /// auto, cpu, cuda (this process's LOCAL_RANK GPU) or cuda:N.
    #[arg(long, env = "DATAFLUX_DEVICE", default_value = "auto")]
    device: String,
    /// f32, bf16 or f16 (default: f32 on CPU, bf16 on CUDA).
    #[arg(long, env = "DATAFLUX_DTYPE")]
    dtype: Option<String>,
    /// Predictions per image (more than 1 adds score and label columns).
    #[arg(long, env = "DATAFLUX_TOP_K", default_value_t = 1)]
    top_k: usize,
    /// Result format.
    #[arg(long, env = "DATAFLUX_FORMAT", value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Fetch objects one by one instead of composing them (GCS).
    #[arg(long)]
    no_compose: bool,
    /// Largest temporary composite, in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_composite_bytes: u64,
    /// Concurrent fetches.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// MiB fetched ahead of decoding at most.
    #[arg(long, default_value_t = 256)]
    prefetch_mb: u64,
    /// Decode threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    decode_threads: usize,
    /// Fast decoding: large JPEGs decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (builds
    /// with the `turbojpeg` feature), then resized; faster, pixels slightly different.
    #[arg(long)]
    fast_decode: bool,
    /// Run id: a rerun with the same id resumes, or does nothing if finished (default:
    /// derived from input, output, model and format).
    #[arg(long, env = "DATAFLUX_RUN_ID")]
    run_id: Option<String>,
    /// Never download the model (use the cache or a local directory).
    #[arg(long)]
    offline: bool,
    /// Images per committed part (the unit of resume).
    #[arg(long, default_value_t = 1024)]
    part_size: usize,
    /// Seconds ranks wait for one another.
    #[arg(long, default_value_t = 3600)]
    rendezvous_timeout_secs: u64,
    /// No progress bar or progress lines.
    #[arg(long)]
    quiet: bool,
    /// Pause after each batch, in milliseconds (for tests and demos).
    #[arg(long, default_value_t = 0, hide = true)]
    batch_delay_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    dataflux_examples::logging::init("info");
    let config = JobConfig {
        input: args.input,
        output: args.output,
        model: args.model,
        batch_size: args.batch_size.max(1),
        device: args.device,
        dtype: args.dtype,
        top_k: args.top_k.max(1),
        compose: !args.no_compose,
        max_composite_bytes: args.max_composite_bytes,
        concurrency: args.concurrency.max(1),
        prefetch_bytes: args.prefetch_mb.max(1) * 1024 * 1024,
        format: args.format,
        run_id: args.run_id,
        decode_threads: args.decode_threads,
        offline: args.offline,
        fast_decode: args.fast_decode,
        part_size: args.part_size.max(1),
        progress: !args.quiet,
        rendezvous_timeout: Duration::from_secs(args.rendezvous_timeout_secs),
        batch_delay: Duration::from_millis(args.batch_delay_ms),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(pipeline::run(config)) {
        Ok(Outcome::AlreadyFinished { summary }) => {
            eprintln!("Nothing to do: this run already finished (summary: {summary}).");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Finished { rank, job }) => {
            eprintln!("{}", pipeline::summary_table(&rank, job.as_deref()));
            if rank.images_failed > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
