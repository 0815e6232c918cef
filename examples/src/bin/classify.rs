//! `classify`: the quickest way to try a checkpoint on a few local images, and to check
//! parity with PyTorch from a shell. Prints `file,label,probability` rows (tutorial CSV
//! quoting), one per prediction.
//!
//! `classify --model <hub id or dir> [--top-k K] [--device D] [--fast-decode] <files or folders>…`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use dataflux_examples::cli;
use dataflux_inference::DecodePool;
use dataflux_pipeline::{ModelSpec, VitClassifier};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Classify local image files with a ViT checkpoint; prints file,label,probability."
)]
struct Args {
    /// Hugging Face repository id or local checkpoint directory.
    #[arg(
        long,
        env = "DATAFLUX_MODEL",
        default_value = "google/vit-base-patch16-224"
    )]
    model: String,
    /// Predictions per image.
    #[arg(long, default_value_t = 1)]
    top_k: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Fast decoding: large JPEGs decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (builds
    /// with the `turbojpeg` feature), then resized; faster, pixels slightly different.
    #[arg(long)]
    fast_decode: bool,
    /// Never download the model.
    #[arg(long)]
    offline: bool,
    /// Image files, or folders to read every file from.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            out.extend(entries);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn run(args: Args) -> Result<bool> {
    let spec = ModelSpec::default()
        .with_source(cli::model_source("--model", &args.model).map_err(|e| anyhow::anyhow!("{e}"))?)
        .with_device(
            args.device
                .parse()
                .with_context(|| format!("--device {}", args.device))?,
        )
        .with_dtype(None)
        .with_top_k(args.top_k.max(1))
        .with_fast_decode(args.fast_decode)
        .with_offline(args.offline);
    // The same model the batch job runs, loaded the same way.
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let vit = runtime
        .block_on(VitClassifier::load(&spec))
        .map_err(|e| anyhow::anyhow!(cli::flags_in(&e.to_string())))
        .with_context(|| format!("loading model {}", args.model))?;
    let classifier = vit.classifier();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pool = DecodePool::new(threads)?;
    let paths = files(&args.inputs)?;
    let mut all_ok = true;
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(std::io::stdout());
    out.write_record(["file", "label", "probability"])?;
    for chunk in paths.chunks(32) {
        let bytes: Vec<Vec<u8>> = chunk
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .collect::<Result<_>>()?;
        let prepared = pool.preprocess_batch(classifier.preprocessor(), &bytes);
        for (path, result) in chunk
            .iter()
            .zip(classifier.classify_prepared(prepared, args.top_k.max(1))?)
        {
            match result {
                Ok(preds) => {
                    for p in preds {
                        out.write_record([
                            display(path),
                            p.label,
                            format!("{:.6}", p.probability),
                        ])?;
                    }
                }
                Err(e) => {
                    all_ok = false;
                    eprintln!("{}: {} ({})", path.display(), e, e.kind());
                }
            }
        }
    }
    out.flush()?;
    Ok(all_ok)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
