//! CLIP ViT-B/32 f32 CPU image-embedding throughput against PyTorch eager at the same thread
//! count, measured in the same run.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p dataflux-benches --bin clip_cpu -- [--threads 2] [--batch 8]`
//!
//! Both sides embed a random `(batch, 3, 224, 224)` pixel tensor with random weights of
//! `openai/clip-vit-base-patch32`'s vision shape (`CLIPVisionModelWithProjection`, hidden 768,
//! 12 layers, patch 32, projection 512) and L2-normalise the result: ours through
//! [`dataflux_inference::Embedder::embeddings`], the baseline through
//! `benches/python/clip_cpu_baseline.py`, run when `python3 -c 'import torch, transformers'`
//! works. There is no reference number to fall back on: without the baseline the bench prints
//! our rate and fails. Shared machines drift by tens of percent within a minute, so the two
//! sides alternate for `--rounds` rounds and each keeps its best.

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use clap::Parser;
use dataflux_benches::{python_imports, python_json, random_embedder};
use dataflux_inference::ClipVisionConfig;

#[derive(Parser, Debug)]
struct Args {
    /// Threads for both candle (rayon) and PyTorch.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed passes (best is reported) after one warm-up.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Rounds of (ours, PyTorch), alternating.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Python interpreter with torch and transformers.
    #[arg(long, env = "PYTHON", default_value = "python3")]
    python: String,
}

fn python_baseline(args: &Args) -> Option<(f64, String)> {
    let script_args = [
        "--threads".to_string(),
        args.threads.to_string(),
        "--batch".into(),
        args.batch.to_string(),
        "--iters".into(),
        args.iters.to_string(),
    ];
    let v = python_json(&args.python, "clip_cpu_baseline.py", &script_args)?;
    Some((v["images_per_s"].as_f64()?, format!("torch {}", v["torch"])))
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.threads >= 1 && args.batch >= 1 && args.iters >= 1,
        "--threads, --batch and --iters must be at least 1"
    );
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("configuring rayon's global pool")?;
    let dev = Device::Cpu;
    let embedder = random_embedder(ClipVisionConfig::vit_base_patch32(), 0.02)?;
    let pixels = Tensor::randn(0f32, 1.0, (args.batch, 3, 224, 224), &dev)?;
    // Warm-up, and the shape the baseline asserts too.
    let (rows, dim) = embedder.embeddings(&pixels, true)?.dims2()?;
    ensure!(
        rows == args.batch && dim == embedder.dim(),
        "embeddings of shape ({rows}, {dim}), expected ({}, {})",
        args.batch,
        embedder.dim()
    );
    let has_torch = python_imports(&args.python, "torch, transformers");
    let (mut ours, mut base, mut versions) = (0f64, 0f64, None);
    for round in 1..=args.rounds.max(1) {
        let mut best = f64::INFINITY;
        for _ in 0..args.iters {
            let start = Instant::now();
            embedder.embeddings(&pixels, true)?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        let rate = args.batch as f64 / best;
        ours = ours.max(rate);
        print!("round {round}: ours {rate:.2} images/s");
        if has_torch {
            if let Some((rate, v)) = python_baseline(&args) {
                print!(", PyTorch {rate:.2} images/s");
                base = base.max(rate);
                versions = Some(v);
            }
        }
        println!();
    }
    println!(
        "CLIP ViT-B/32 image embeddings (L2-normalised, dim {dim}), f32, batch {}, {} threads, best of {} passes x {} rounds",
        args.batch, args.threads, args.iters, args.rounds
    );
    let Some(versions) = versions else {
        println!("  candle (dataflux-inference)          {ours:7.2} images/s");
        bail!(
            "PyTorch baseline unavailable ({} cannot import torch, transformers, or \
             benches/python/clip_cpu_baseline.py failed); there is no reference number, so no \
             ratio (set PYTHON or --python to an interpreter with torch and transformers)",
            args.python
        );
    };
    println!("  PyTorch eager (measured now, {versions}) {base:7.2} images/s");
    println!(
        "  candle (dataflux-inference)          {ours:7.2} images/s  ({:.2}x)",
        ours / base
    );
    Ok(())
}
