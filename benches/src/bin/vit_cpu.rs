//! ViT-B/16 f32 CPU throughput against PyTorch eager at the same thread count, measured in the
//! same run.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p dataflux-benches --bin vit_cpu -- [--threads 2] [--batch 8]`
//!
//! The baseline runs `benches/python/vit_cpu_baseline.py` when `python3 -c 'import torch,
//! torchvision'` works; otherwise the reference number of REFERENCE.md is printed, labelled.
//! Shared machines drift by tens of percent within a minute, so the two sides alternate for
//! `--rounds` rounds and each keeps its best.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use clap::Parser;
use dataflux_benches::{python_imports, python_json, random_classifier};
use dataflux_inference::ViTConfig;

/// REFERENCE.md: PyTorch 2.15 CPU, 2 threads, ViT-B/16 f32 batch 8.
const REFERENCE_TORCH_PER_S: f64 = 4.5;

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
    let v = python_json(&args.python, "vit_cpu_baseline.py", &script_args)?;
    Some((v["images_per_s"].as_f64()?, format!("torch {}", v["torch"])))
}

fn main() -> Result<()> {
    let args = Args::parse();
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("configuring rayon's global pool")?;
    let dev = Device::Cpu;
    let classifier = random_classifier(ViTConfig::vit_base_patch16_224(1000), 0.02)?;
    let pixels = Tensor::randn(0f32, 1.0, (args.batch, 3, 224, 224), &dev)?;
    classifier.logits(&pixels)?;
    let has_torch = python_imports(&args.python, "torch, torchvision, transformers");
    let (mut ours, mut base, mut versions) = (0f64, 0f64, None);
    for round in 1..=args.rounds.max(1) {
        let mut best = f64::INFINITY;
        for _ in 0..args.iters {
            let start = Instant::now();
            classifier.logits(&pixels)?;
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
    let (base, label) = match versions {
        Some(v) => (base, format!("measured now ({v})")),
        None => {
            println!(
                "PyTorch baseline unavailable ({} cannot import torch, torchvision, transformers)",
                args.python
            );
            (
                REFERENCE_TORCH_PER_S,
                "REFERENCE.md number, NOT measured in this run".to_string(),
            )
        }
    };
    println!(
        "ViT-B/16 f32, batch {}, {} threads, best of {} passes x {} rounds",
        args.batch, args.threads, args.iters, args.rounds
    );
    println!("  PyTorch eager ({label}) {base:7.2} images/s");
    println!(
        "  candle (dataflux-inference)          {ours:7.2} images/s  ({:.2}x, target 0.8x)",
        ours / base
    );
    Ok(())
}
