//! Any model on ONNX Runtime, on the CPU, against its baselines measured in the same run at the
//! same thread count.
//!
//! - Model alone (ResNet-50 and ViT-B/16, exported with optimum): our engine
//!   (`dataflux_inference::onnx`) against ONNX Runtime's Python API on the same `model.onnx` and
//!   PyTorch eager on the same architecture. Goal: ≥ 1.0x ONNX Runtime Python.
//! - `--job N`: the whole job (`batch-inference --model <ResNet-50 folder>`) over N photos
//!   (640x480 JPEGs) against the tutorial-style PyTorch job (DataLoader, PIL, the model's
//!   transformers image processor, eager). Goal: ≥ 3x.
//!
//! ```sh
//! cargo build --release -p dataflux-benches --features onnx --bin onnx_cpu
//! cargo build --release --bin batch-inference
//! PYTHON=/path/to/venv/bin/python ORT_DYLIB_PATH=… target/release/onnx_cpu --models /tmp/onnx-models --job 256
//! ```
//!
//! The models are made once into `--models` by `benches/python/onnx_models.py` (torch,
//! transformers and optimum in `$PYTHON`). The two sides alternate for `--rounds` rounds and
//! each keeps its best, as the machine drifts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dataflux_benches::{python_json, synthetic_jpeg, Chroma};
use dataflux_inference::folder::{recognise, Checkpoint};
use dataflux_inference::onnx::{OnnxModel, SessionOptions};
use dataflux_inference::CroppedImage;

#[derive(Parser, Debug)]
struct Args {
    /// Where the exported models are (made there when missing).
    #[arg(long)]
    models: PathBuf,
    /// Intra-op threads for every side.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Images per forward pass (model alone).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed passes (best is reported) after one warm-up.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Rounds of (ours, baselines), alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Also run the whole job over this many photos against the tutorial-style PyTorch job.
    #[arg(long, default_value_t = 0)]
    job: usize,
    /// `--batch-size` of both jobs (ours and the PyTorch one).
    #[arg(long, default_value_t = 64)]
    job_batch: usize,
    /// The batch-inference binary for --job.
    #[arg(long, default_value = "target/release/batch-inference")]
    batch_inference: PathBuf,
    /// Python with torch, transformers, onnxruntime (and optimum to make the models).
    #[arg(long, env = "PYTHON", default_value = "python3")]
    python: String,
}

fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

fn ensure_models(args: &Args) -> Result<()> {
    if ["resnet50", "vit-b16"]
        .iter()
        .all(|m| args.models.join(m).join("model.onnx").is_file())
    {
        return Ok(());
    }
    let status = Command::new(&args.python)
        .arg(python_script("onnx_models.py"))
        .arg(&args.models)
        .status()
        .context("running onnx_models.py")?;
    if !status.success() {
        bail!("onnx_models.py failed ({status})");
    }
    Ok(())
}

fn load(dir: &Path, threads: usize) -> Result<OnnxModel> {
    let Checkpoint::Onnx(files) = recognise(dir, &[])? else {
        bail!("{} is not an ONNX model folder", dir.display());
    };
    Ok(OnnxModel::load(
        &files,
        &SessionOptions::default().with_threads(threads),
        None,
        None,
    )?)
}

/// Images per second of our engine: the best of `iters` runs of one batch.
fn ours(model: &OnnxModel, batch: &[CroppedImage], iters: usize) -> Result<f64> {
    model.run(batch)?;
    let mut best = f64::INFINITY;
    for _ in 0..iters {
        let start = Instant::now();
        model.run(batch)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(batch.len() as f64 / best)
}

fn model_alone(args: &Args, name: &str) -> Result<()> {
    let dir = args.models.join(name);
    let model = load(&dir, args.threads)?;
    let c = model.preprocessor().config();
    let (h, w) = (c.height, c.width);
    let mut seed = 1u32;
    let batch: Vec<CroppedImage> = (0..args.batch)
        .map(|_| CroppedImage {
            pixels: (0..3 * h as usize * w as usize)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed >> 24) as u8
                })
                .collect(),
            height: h,
            width: w,
            source_width: w,
            source_height: h,
        })
        .collect();
    let (mut best_ours, mut best_ort, mut best_torch, mut versions) = (0f64, 0f64, 0f64, None);
    for round in 1..=args.rounds.max(1) {
        let rate = ours(&model, &batch, args.iters)?;
        best_ours = best_ours.max(rate);
        print!("{name} round {round}: ours {rate:.2} images/s");
        let script_args = [
            "--model".to_string(),
            dir.display().to_string(),
            "--threads".into(),
            args.threads.to_string(),
            "--batch".into(),
            args.batch.to_string(),
            "--iters".into(),
            args.iters.to_string(),
        ];
        if let Some(v) = python_json(&args.python, "onnx_cpu_baseline.py", &script_args) {
            let (o, t) = (
                v["ort_python_images_per_s"].as_f64().unwrap_or(0.0),
                v["torch_images_per_s"].as_f64().unwrap_or(0.0),
            );
            print!(", ONNX Runtime Python {o:.2}, PyTorch eager {t:.2}");
            best_ort = best_ort.max(o);
            best_torch = best_torch.max(t);
            versions = Some(format!(
                "onnxruntime {}, torch {}",
                v["onnxruntime"], v["torch"]
            ));
        }
        println!();
    }
    println!(
        "{name} f32, batch {}, {} threads, best of {} passes x {} rounds ({})",
        args.batch,
        args.threads,
        args.iters,
        args.rounds,
        versions.as_deref().unwrap_or("baselines unavailable")
    );
    println!("  ONNX Runtime Python API  {best_ort:7.2} images/s");
    println!("  PyTorch eager            {best_torch:7.2} images/s");
    println!(
        "  dataflux onnx engine     {best_ours:7.2} images/s  ({:.2}x ONNX Runtime Python, goal 1.0x; {:.2}x PyTorch)",
        best_ours / best_ort,
        best_ours / best_torch
    );
    Ok(())
}

fn job(args: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos)?;
    for i in 0..args.job {
        let bytes = synthetic_jpeg(i as u32, 90, Chroma::S420)?;
        std::fs::write(photos.join(format!("{i:012}.jpg")), bytes)?;
    }
    let model = args.models.join("resnet50");
    let (mut best_ours, mut best_torch) = (0f64, 0f64);
    for round in 1..=args.rounds.max(1) {
        let out = dir.path().join(format!("out-{round}"));
        let start = Instant::now();
        let run = Command::new(&args.batch_inference)
            .arg("--model")
            .arg(&model)
            .arg("--input")
            .arg(&photos)
            .arg("--output")
            .arg(&out)
            .args([
                "--device",
                "cpu",
                "--batch-size",
                &args.job_batch.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .output()
            .context("running batch-inference")?;
        if !run.status.success() {
            bail!("batch-inference: {}", String::from_utf8_lossy(&run.stderr));
        }
        let rate = args.job as f64 / start.elapsed().as_secs_f64();
        best_ours = best_ours.max(rate);
        let script_args = [
            "--model".to_string(),
            model.display().to_string(),
            "--input".into(),
            photos.display().to_string(),
            "--output".into(),
            dir.path().join("torch.csv").display().to_string(),
            "--threads".into(),
            args.threads.to_string(),
            "--batch".into(),
            args.job_batch.to_string(),
        ];
        let torch = python_json(&args.python, "tutorial_job_baseline.py", &script_args)
            .and_then(|v| v["images_per_s"].as_f64())
            .unwrap_or(0.0);
        best_torch = best_torch.max(torch);
        println!("job round {round}: ours {rate:.2} images/s, PyTorch job {torch:.2} images/s");
    }
    println!(
        "whole job, ResNet-50 ONNX, {} photos 640x480 JPEG, CPU, {} threads, start to end of process",
        args.job, args.threads
    );
    println!("  tutorial-style PyTorch job  {best_torch:7.2} images/s");
    println!(
        "  batch-inference (onnx)      {best_ours:7.2} images/s  ({:.2}x, goal 3x)",
        best_ours / best_torch
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.models)?;
    ensure_models(&args)?;
    for name in ["resnet50", "vit-b16"] {
        model_alone(&args, name)?;
    }
    if args.job > 0 {
        job(&args)?;
    }
    Ok(())
}
