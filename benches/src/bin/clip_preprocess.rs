//! CLIP preprocessing throughput per core: our exact and fast modes with
//! `PreprocessorConfig::clip(224)` (shortest edge to 224, bicubic, centre crop 224x224, CLIP's
//! mean and std) against `transformers`' PIL CLIP image processor, measured in the same run on
//! the same synthetic JPEGs (those of the `preprocess` bench), from encoded bytes to normalised
//! pixels.
//!
//! `cargo run --release -p dataflux-benches --bin clip_preprocess -- [--images 200] [--python python3]`
//!
//! The baseline runs `benches/python/clip_preprocess_baseline.py` (`CLIPImageProcessorPil`, or
//! `CLIPImageProcessor` on transformers 4) when `python3 -c 'import numpy, PIL, transformers'`
//! works. There is no reference number to fall back on: without the baseline the bench prints
//! our rates and fails. This VM's speed drifts by tens of percent over a minute, so ours and
//! the baseline are measured in alternating rounds and each rate keeps its best.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use dataflux_benches::{best_rate, python_imports, python_json, synthetic_jpeg, Chroma};
use dataflux_inference::preprocess::{decode_rgb8, scaled_jpeg_decoding};
use dataflux_inference::{DecodeLimits, PreprocessMode, Preprocessor, PreprocessorConfig};

#[derive(Parser, Debug)]
struct Args {
    /// Number of synthetic 640x480 JPEGs.
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// Side of the model's square input (the shortest edge is resized to it, then the centre
    /// is cropped to it).
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Best of this many passes per round.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Rounds, each measuring ours and then the baseline; every rate keeps its best round.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// JPEG qualities, used in turn.
    #[arg(long, value_delimiter = ',', default_value = "75,80,85,90,95")]
    quality: Vec<u8>,
    /// Chroma subsampling of the JPEGs: 444 (full-resolution colour) or 420 (half-resolution
    /// colour both ways, what most encoders write for web photos).
    #[arg(long, value_enum, default_value_t = Chroma::S444)]
    chroma: Chroma,
    /// Python interpreter with transformers, pillow and numpy.
    #[arg(long, env = "PYTHON", default_value = "python3")]
    python: String,
}

/// A folder removed (with its contents) on drop.
/// The baseline's full and decode-only rates, and what it ran on.
fn python_baseline(args: &Args, dir: &Path) -> Option<(f64, f64, String)> {
    let script_args = [
        dir.display().to_string(),
        "--size".into(),
        args.size.to_string(),
        "--repeat".into(),
        args.repeat.to_string(),
    ];
    let v = python_json(&args.python, "clip_preprocess_baseline.py", &script_args)?;
    Some((
        v["images_per_s"].as_f64()?,
        v["decode_images_per_s"].as_f64()?,
        format!(
            "{}, transformers {}, pillow {}",
            v["processor"].as_str().unwrap_or("?"),
            v["transformers"],
            v["pillow"]
        ),
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        !args.quality.is_empty(),
        "--quality needs at least one value"
    );
    ensure!(
        args.rounds >= 1 && args.repeat >= 1 && args.images >= 1 && args.size >= 1,
        "--rounds, --repeat, --images and --size must be at least 1"
    );
    // Removed when dropped, errors included.
    let dir = tempfile::Builder::new()
        .prefix("dataflux-clip-preprocess-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let mut blobs = Vec::new();
    for i in 0..args.images as u32 {
        let quality = args.quality[i as usize % args.quality.len()];
        let b = synthetic_jpeg(i, quality, args.chroma)?;
        let path = dir.path().join(format!("{i:05}.jpg"));
        std::fs::write(&path, &b).with_context(|| format!("writing {}", path.display()))?;
        blobs.push(b);
    }
    let mean_kb = blobs.iter().map(Vec::len).sum::<usize>() as f64 / blobs.len() as f64 / 1024.0;
    println!(
        "{} synthetic 640x480 {} JPEGs (quality {:?}, mean {mean_kb:.0} KiB), CLIP preprocessing to {}x{} (shortest edge, bicubic, centre crop), one thread, best of {} rounds x {} passes",
        blobs.len(),
        args.chroma,
        args.quality,
        args.size,
        args.size,
        args.rounds,
        args.repeat
    );

    let exact = Preprocessor::new(PreprocessorConfig::clip(args.size));
    let fast = exact.clone().with_mode(PreprocessMode::Fast);
    let first = exact.preprocess(&blobs[0])?;
    ensure!(
        first.width == args.size
            && first.height == args.size
            && first.pixels.len() == 3 * args.size as usize * args.size as usize,
        "exact mode gave {}x{} with {} values, expected {}x{}x3",
        first.width,
        first.height,
        first.pixels.len(),
        args.size,
        args.size
    );
    let limits = DecodeLimits::default();
    let n = blobs.len();
    let mut ours = [0f64; 3];
    let mut baseline: Option<(f64, f64, String)> = None;
    let has_baseline = python_imports(&args.python, "numpy, PIL, transformers");
    for _ in 0..args.rounds {
        let rates = [
            // JPEGs have no alpha, so this is what CLIP's convert-to-RGB decodes too.
            best_rate(args.repeat, n, || {
                for b in &blobs {
                    decode_rgb8(b, &limits)?;
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
            .then(|| python_baseline(&args, dir.path()))
            .flatten();
        if let Some((full, decode, versions)) = measured {
            baseline = Some(match baseline {
                Some((bf, bd, _)) => (bf.max(full), bd.max(decode), versions),
                None => (full, decode, versions),
            });
        }
    }
    let [decode, exact_rate, fast_rate] = ours;
    let fast_note = if scaled_jpeg_decoding() {
        "libjpeg-turbo scaled decoding"
    } else {
        "built WITHOUT --features turbojpeg: full-size decoding"
    };
    let Some((base, base_decode, versions)) = baseline else {
        println!("ours (no baseline):");
        println!("  decode only               {decode:8.1} images/s");
        println!("  exact mode                {exact_rate:8.1} images/s");
        println!("  fast mode                 {fast_rate:8.1} images/s  ({fast_note})");
        bail!(
            "CLIP image processor baseline unavailable ({} cannot import numpy, PIL, \
             transformers, or benches/python/clip_preprocess_baseline.py failed); there is no \
             reference number, so no ratio (set PYTHON or --python to an interpreter with \
             transformers, pillow and numpy)",
            args.python
        );
    };
    println!("baseline: measured now ({versions})");
    println!("  CLIP image processor      {base:8.1} images/s");
    println!("  PIL decode only           {base_decode:8.1} images/s");
    println!("ours:");
    println!(
        "  decode only               {decode:8.1} images/s  ({:.2}x PIL decode)",
        decode / base_decode
    );
    println!(
        "  exact mode                {exact_rate:8.1} images/s  ({:.2}x CLIP image processor)",
        exact_rate / base
    );
    println!(
        "  fast mode                 {fast_rate:8.1} images/s  ({:.2}x CLIP image processor; {fast_note})",
        fast_rate / base
    );
    Ok(())
}
