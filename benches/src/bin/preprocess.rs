//! Preprocessing throughput per core: our exact and fast modes against the GKE tutorial's
//! PIL + torchvision pipeline, measured in the same run on the same synthetic JPEGs.
//!
//! `cargo run --release -p dataflux-benches --bin preprocess -- [--images 200] [--python python3]`
//!
//! The baseline runs `benches/python/preprocess_baseline.py` when `python3 -c 'import torch,
//! torchvision'` works; otherwise the reference numbers of REFERENCE.md are printed, labelled.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use dataflux_benches::{
    best_rate, python_imports, python_json, random_classifier, synthetic_jpeg, Chroma,
};
use dataflux_inference::preprocess::{decode_rgb8, decode_rgb8_draft, scaled_jpeg_decoding};
use dataflux_inference::{
    DecodeLimits, PreparedImage, PreprocessMode, Preprocessor, PreprocessorConfig, ViTConfig,
};

/// Reference numbers from REFERENCE.md (PIL + torchvision on one core of this machine kind).
const REFERENCE_TUTORIAL_PER_S: f64 = 295.0;
const REFERENCE_DECODE_PER_S: f64 = 700.0;

#[derive(Parser, Debug)]
struct Args {
    /// Number of synthetic 640x480 JPEGs.
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Best of this many passes per round.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Rounds, each measuring ours and then the baseline; every rate keeps its best round.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// JPEG qualities, used in turn (the issue asks for COCO-like images of quality 75–95).
    #[arg(long, value_delimiter = ',', default_value = "75,80,85,90,95")]
    quality: Vec<u8>,
    /// Chroma subsampling of the JPEGs: 444 (full-resolution colour, as cameras' high
    /// quality settings and the `image` crate write) or 420 (half-resolution colour both ways,
    /// what most encoders write for web photos).
    #[arg(long, value_enum, default_value_t = Chroma::S444)]
    chroma: Chroma,
    /// Python interpreter with torch, torchvision and pillow.
    #[arg(long, env = "PYTHON", default_value = "python3")]
    python: String,
}

/// How far fast mode is from exact mode on `blobs`: pixel differences (in 8-bit levels) and
/// top-1 agreement of a random-weight ViT (224/16, hidden 64, 2 layers, 1,000 labels). Real
/// checkpoints cannot be downloaded here, so the model is a proxy that reacts to pixels much
/// as a trained one does at its first layer; agreement is also given where the exact mode's
/// top-1/top-2 logit margin exceeds 1e-2, as the parity tests do.
struct Agreement {
    mean_level: f64,
    max_level: f64,
    agree: usize,
    decided: usize,
    agree_decided: usize,
    total: usize,
}

fn agreement(exact: &Preprocessor, fast: &Preprocessor, blobs: &[Vec<u8>]) -> Result<Agreement> {
    let mut cfg = ViTConfig::vit_base_patch16_224(1000);
    cfg.hidden_size = 64;
    cfg.num_hidden_layers = 2;
    cfg.num_attention_heads = 4;
    cfg.intermediate_size = 128;
    let model = random_classifier(cfg, 0.2)?;
    let (mut sum, mut max, mut values) = (0f64, 0f64, 0usize);
    let mut out = Agreement {
        mean_level: 0.0,
        max_level: 0.0,
        agree: 0,
        decided: 0,
        agree_decided: 0,
        total: 0,
    };
    for chunk in blobs.chunks(16) {
        let a: Vec<PreparedImage> = chunk
            .iter()
            .map(|b| exact.preprocess(b))
            .collect::<Result<_, _>>()?;
        let b: Vec<PreparedImage> = chunk
            .iter()
            .map(|b| fast.preprocess(b))
            .collect::<Result<_, _>>()?;
        for (x, y) in a.iter().zip(&b) {
            for (p, q) in x.pixels.iter().zip(&y.pixels) {
                // Normalized with mean 0.5, std 0.5: one 8-bit level is 2/255.
                let d = f64::from((p - q).abs()) * 255.0 / 2.0;
                sum += d;
                max = max.max(d);
                values += 1;
            }
        }
        let top_a = model.classify(&a, 2)?;
        let top_b = model.classify(&b, 2)?;
        for (pa, pb) in top_a.iter().zip(&top_b) {
            let same = pa[0].index == pb[0].index;
            out.total += 1;
            out.agree += usize::from(same);
            // Softmax keeps logit differences: ln p1 - ln p2 = z1 - z2.
            if pa[0].probability.ln() - pa[1].probability.ln() > 1e-2 {
                out.decided += 1;
                out.agree_decided += usize::from(same);
            }
        }
    }
    out.mean_level = sum / values.max(1) as f64;
    out.max_level = max;
    Ok(out)
}

fn python_baseline(python: &str, dir: &Path, repeat: usize) -> Option<(f64, f64, String)> {
    let args = [
        dir.display().to_string(),
        "--repeat".into(),
        repeat.to_string(),
    ];
    let v = python_json(python, "preprocess_baseline.py", &args)?;
    Some((
        v["tutorial_images_per_s"].as_f64()?,
        v["decode_images_per_s"].as_f64()?,
        format!("torch {}, pillow {}", v["torch"], v["pillow"]),
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.quality.is_empty(),
        "--quality needs at least one value"
    );
    anyhow::ensure!(
        args.rounds >= 1 && args.repeat >= 1,
        "--rounds and --repeat must be at least 1"
    );
    let dir =
        std::env::temp_dir().join(format!("dataflux-preprocess-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut blobs = Vec::new();
    for i in 0..args.images as u32 {
        let quality = args.quality[i as usize % args.quality.len()];
        let b = synthetic_jpeg(i, quality, args.chroma)?;
        let path: PathBuf = dir.join(format!("{i:05}.jpg"));
        std::fs::write(&path, &b).with_context(|| format!("writing {}", path.display()))?;
        blobs.push(b);
    }
    let mean_kb = blobs.iter().map(Vec::len).sum::<usize>() as f64 / blobs.len() as f64 / 1024.0;
    println!(
        "{} synthetic 640x480 {} JPEGs (quality {:?}, mean {mean_kb:.0} KiB), one thread, best of {} rounds x {} passes",
        blobs.len(),
        args.chroma,
        args.quality,
        args.rounds,
        args.repeat
    );

    let exact = Preprocessor::new(PreprocessorConfig::square(224));
    let fast = exact.clone().with_mode(PreprocessMode::Fast);
    let limits = DecodeLimits::default();
    let n = blobs.len();
    // This VM's speed drifts by tens of percent over a minute, so ours and the baseline are
    // measured in alternating rounds and each keeps its best.
    let mut ours = [0f64; 5];
    let mut baseline: Option<(f64, f64, String)> = None;
    let has_baseline = python_imports(&args.python, "torch, torchvision");
    for _ in 0..args.rounds {
        let rates = [
            best_rate(args.repeat, n, || {
                for b in &blobs {
                    decode_rgb8(b, &limits)?;
                }
                Ok(())
            })?,
            best_rate(args.repeat, n, || {
                for b in &blobs {
                    decode_rgb8_draft(b, &limits, 224, 224)?;
                }
                Ok(())
            })?,
            // At 1/8 scale the IDCT, upsampling and colour conversion almost vanish: what is
            // left is mostly entropy decoding, which no reduction avoids (the ceiling of any
            // fast mode).
            best_rate(args.repeat, n, || {
                for b in &blobs {
                    decode_rgb8_draft(b, &limits, 80, 60)?;
                }
                Ok(())
            })?,
            best_rate(args.repeat, n, || {
                for b in &blobs {
                    exact.preprocess(b)?;
                }
                Ok(())
            })?,
            best_rate(args.repeat, n, || {
                for b in &blobs {
                    fast.preprocess(b)?;
                }
                Ok(())
            })?,
        ];
        for (best, rate) in ours.iter_mut().zip(rates) {
            *best = best.max(rate);
        }
        let measured = has_baseline
            .then(|| python_baseline(&args.python, &dir, args.repeat))
            .flatten();
        if let Some((t, d, versions)) = measured {
            baseline = Some(match baseline {
                Some((bt, bd, _)) => (bt.max(t), bd.max(d), versions),
                None => (t, d, versions),
            });
        }
    }
    let [decode, draft_decode, eighth_decode, exact_rate, fast_rate] = ours;
    let (base, base_decode, label) = match baseline {
        Some((t, d, versions)) => (t, d, format!("measured now ({versions})")),
        None => {
            println!(
                "PIL/torchvision baseline unavailable ({} cannot import torch, torchvision)",
                args.python
            );
            (
                REFERENCE_TUTORIAL_PER_S,
                REFERENCE_DECODE_PER_S,
                "REFERENCE.md numbers, NOT measured in this run".to_string(),
            )
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let agree = agreement(&exact, &fast, &blobs)?;
    println!("baseline: {label}");
    println!("  PIL+torchvision tutorial  {base:8.1} images/s");
    println!("  PIL decode only           {base_decode:8.1} images/s");
    println!("ours:");
    println!(
        "  decode only               {decode:8.1} images/s  ({:.2}x PIL decode)",
        decode / base_decode
    );
    println!(
        "  decode only, draft scale  {draft_decode:8.1} images/s  ({:.2}x PIL decode)",
        draft_decode / base_decode
    );
    println!(
        "  decode only, 1/8 scale    {eighth_decode:8.1} images/s  ({:.2}x tutorial: about the ceiling of any fast mode)",
        eighth_decode / base
    );
    println!(
        "  exact mode                {exact_rate:8.1} images/s  ({:.2}x tutorial, target 1.5x)",
        exact_rate / base
    );
    println!(
        "  fast mode                 {fast_rate:8.1} images/s  ({:.2}x tutorial, target 3x; {})",
        fast_rate / base,
        if scaled_jpeg_decoding() {
            "libjpeg-turbo scaled decoding"
        } else {
            "built WITHOUT --features turbojpeg: full-size decoding"
        }
    );
    println!(
        "fast vs exact: mean {:.3}, max {:.0} 8-bit levels; top-1 agreement on a random-weight ViT {}/{} ({:.1} %), {}/{} where the logit margin > 1e-2",
        agree.mean_level,
        agree.max_level,
        agree.agree,
        agree.total,
        100.0 * agree.agree as f64 / agree.total.max(1) as f64,
        agree.agree_decided,
        agree.decided,
    );
    Ok(())
}
