//! The pieces of `benches/gpu-check.sh`, one subcommand each, every result one JSON line on
//! stdout. Built with `--features cuda` on a CPU machine and copied to the GPU machine, which
//! needs no Rust toolchain and no network.
//!
//! - `checkpoint`: a ViT checkpoint in Hugging Face's layout with random weights (`base`:
//!   ViT-B/16 at 224, 1,000 labels; `tiny`: for a quick run of the script).
//! - `images`: deterministic photo-like 640x480 JPEGs.
//! - `reference`: the CPU f32 logits of the first images, saved for `agree`.
//! - `probe`: opens the device; exit status 3 and the reason when it cannot.
//! - `throughput`: the model alone on the device in bf16 (or `--dtype`) at each `--batch`:
//!   images/s of the forward pass, and of upload + normalise + forward from 8-bit pixels.
//! - `agree`: the device's logits against `reference`: max |difference|, and top-1 equality
//!   over the images whose reference top-1 leads the runner-up by at least `--margin`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Parser, Subcommand, ValueEnum};
use dataflux_benches::{synthetic_jpeg, Chroma};
use dataflux_inference::vit::ViTForImageClassification;
use dataflux_inference::{
    Classifier, CroppedImage, DeviceSpec, LoadOptions, ModelSource, Preprocessor,
    PreprocessorConfig, ViTConfig,
};
use rayon::prelude::*;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes config.json, preprocessor_config.json and model.safetensors (random weights).
    Checkpoint {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Shape::Base)]
        shape: Shape,
    },
    /// Writes `count` JPEGs named `img-NNNNN.jpg`.
    Images {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        count: u32,
    },
    /// Saves the CPU f32 logits of the first `count` images (sorted by name) of `images`.
    Reference {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        images: PathBuf,
        #[arg(long, default_value_t = 64)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Opens the device: exit status 0 and its name, or 3 and why not.
    Probe {
        #[arg(long, default_value = "cuda")]
        device: DeviceSpec,
    },
    /// Forward-pass throughput of the checkpoint's model with random inputs.
    Throughput {
        #[arg(long, default_value = "cuda")]
        device: DeviceSpec,
        #[arg(long, value_enum, default_value_t = Precision::Bf16)]
        dtype: Precision,
        #[arg(long, value_enum, default_value_t = Shape::Base)]
        shape: Shape,
        /// Batch sizes, each measured on its own.
        #[arg(long, default_values_t = [64, 256])]
        batch: Vec<usize>,
        /// Timed passes per batch size, after two warm-up passes.
        #[arg(long, default_value_t = 10)]
        iters: usize,
    },
    /// The device's logits (model's default dtype) against `reference`.
    Agree {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        reference: PathBuf,
        #[arg(long, default_value = "cuda")]
        device: DeviceSpec,
        /// Top-1 must agree where the reference's top-1 logit leads by at least this much.
        #[arg(long, default_value_t = 1e-2)]
        margin: f64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Shape {
    /// ViT-B/16, 224x224, 1,000 labels (google/vit-base-patch16-224's shape).
    Base,
    /// Two layers of width 64 at 32x32, 10 labels: to exercise the script quickly.
    Tiny,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }
}

fn config(shape: Shape) -> ViTConfig {
    match shape {
        Shape::Base => ViTConfig::vit_base_patch16_224(1000),
        Shape::Tiny => {
            let mut cfg = ViTConfig::vit_base_patch16_224(10);
            cfg.hidden_size = 64;
            cfg.num_hidden_layers = 2;
            cfg.num_attention_heads = 4;
            cfg.intermediate_size = 128;
            cfg.image_size = 32;
            cfg.patch_size = 8;
            cfg
        }
    }
}

/// Random weights of `cfg`'s shape: N(0, 0.02²) matrices, layer norms at 1 ± 0.02, biases
/// N(0, 0.02²), so that activations stay in range through every layer.
fn random_weights(cfg: &ViTConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    for (name, shape) in ViTForImageClassification::weight_shapes(cfg, cfg.id2label.len()) {
        let t = Tensor::randn(0f32, 0.02, shape, device)?;
        let t = if name.contains("layernorm") && name.ends_with(".weight") {
            (t + 1.0)?
        } else {
            t
        };
        tensors.insert(name, t);
    }
    Ok(tensors)
}

fn write_checkpoint(out: &Path, shape: Shape) -> Result<serde_json::Value> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cfg = config(shape);
    let id2label: serde_json::Map<String, serde_json::Value> = (0..cfg.id2label.len())
        .map(|i| (i.to_string(), json!(format!("class {i}"))))
        .collect();
    let config = json!({
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": 3,
        "qkv_bias": true,
        "id2label": id2label,
    });
    let size = cfg.image_size;
    let preprocessor = json!({
        "image_processor_type": "ViTImageProcessor",
        "do_resize": true,
        "size": {"height": size, "width": size},
        "resample": 2,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    });
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    std::fs::write(
        out.join("preprocessor_config.json"),
        serde_json::to_vec_pretty(&preprocessor)?,
    )?;
    let tensors = random_weights(&cfg, &Device::Cpu)?;
    let params: usize = tensors.values().map(Tensor::elem_count).sum();
    candle_core::safetensors::save(&tensors, out.join("model.safetensors"))?;
    Ok(json!({"checkpoint": out, "shape": format!("{shape:?}"), "parameters": params}))
}

fn write_images(out: &Path, count: u32) -> Result<serde_json::Value> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let bytes: u64 = (0..count)
        .into_par_iter()
        .map(|i| -> Result<u64> {
            let jpeg = synthetic_jpeg(i, 90, Chroma::S420)?;
            std::fs::write(out.join(format!("img-{i:05}.jpg")), &jpeg)?;
            Ok(jpeg.len() as u64)
        })
        .sum::<Result<u64>>()?;
    Ok(json!({"images": count, "bytes": bytes, "dir": out}))
}

/// The first `count` images of `dir` by name, preprocessed to 8 bits.
fn cropped(pre: &Preprocessor, dir: &Path, count: usize) -> Result<Vec<CroppedImage>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths.truncate(count);
    if paths.is_empty() {
        bail!("no images in {}", dir.display());
    }
    paths
        .par_iter()
        .map(|p| {
            let bytes = std::fs::read(p)?;
            pre.preprocess_u8(&bytes)
                .with_context(|| format!("preprocessing {}", p.display()))
        })
        .collect()
}

fn load(model: &Path, device: DeviceSpec, dtype: Option<DType>) -> Result<Classifier> {
    let source = ModelSource::Local(model.to_path_buf());
    Ok(Classifier::load_blocking(
        &source,
        &LoadOptions::from_env(),
        device,
        dtype,
    )?)
}

fn logits(classifier: &Classifier, images: &[CroppedImage]) -> Result<Tensor> {
    let mut rows = Vec::new();
    for batch in images.chunks(64) {
        let pixels = classifier.stager().stage(batch)?;
        rows.push(classifier.logits(&pixels)?.to_device(&Device::Cpu)?);
    }
    Ok(Tensor::cat(&rows, 0)?)
}

fn reference(model: &Path, images: &Path, count: usize, out: &Path) -> Result<serde_json::Value> {
    let classifier = load(model, DeviceSpec::Cpu, Some(DType::F32))?;
    let inputs = cropped(classifier.preprocessor(), images, count)?;
    let start = Instant::now();
    let logits = logits(&classifier, &inputs)?;
    let secs = start.elapsed().as_secs_f64();
    candle_core::safetensors::save(&HashMap::from([("logits".to_string(), logits)]), out)?;
    Ok(
        json!({"reference": out, "images": inputs.len(), "cpu_f32_images_per_s": inputs.len() as f64 / secs}),
    )
}

fn probe(device: DeviceSpec) -> Result<serde_json::Value> {
    let dev = device.open()?;
    if dev.is_cpu() && device != DeviceSpec::Cpu {
        bail!("{device} opened the CPU");
    }
    // One kernel and one copy back: the driver, the kernels and the copy engine all work.
    let x = Tensor::arange(0f32, 1024.0, &dev)?.sqr()?.sum_all()?;
    let sum = x.to_scalar::<f32>()?;
    Ok(json!({"device": format!("{dev:?}"), "check_sum": sum}))
}

fn sync(t: &Tensor) -> Result<()> {
    // Reading one value back waits for everything queued before it.
    t.flatten_all()?
        .get(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?;
    Ok(())
}

fn throughput(
    device: DeviceSpec,
    dtype: DType,
    shape: Shape,
    batches: &[usize],
    iters: usize,
) -> Result<Vec<serde_json::Value>> {
    let dev = device.open()?;
    let cfg = config(shape);
    let size = cfg.image_size;
    let labels = cfg.id2label.len();
    let weights = random_weights(&cfg, &dev)?;
    let vb = candle_nn::VarBuilder::from_tensors(weights, dtype, &dev);
    let pre = PreprocessorConfig::square(size as u32);
    let classifier = Classifier::from_parts(cfg, pre, vb, Path::new("random"))?;
    let stager = classifier.stager();
    let mut out = Vec::new();
    for &batch in batches {
        // Random levels, as decoded images would be.
        let levels = Tensor::rand(0f32, 255.0, (batch, 3 * size * size), &Device::Cpu)?
            .to_dtype(DType::U8)?
            .to_vec2::<u8>()?;
        let images: Vec<CroppedImage> = levels
            .into_iter()
            .map(|pixels| CroppedImage {
                pixels,
                height: size as u32,
                width: size as u32,
                source_width: size as u32,
                source_height: size as u32,
            })
            .collect();
        let pixels = stager.stage(&images)?;
        for _ in 0..2 {
            sync(&classifier.logits(&pixels)?)?;
        }
        let start = Instant::now();
        for _ in 0..iters {
            sync(&classifier.logits(&pixels)?)?;
        }
        let forward = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..iters {
            sync(&classifier.logits(&stager.stage(&images)?)?)?;
        }
        let staged = start.elapsed().as_secs_f64();
        out.push(json!({
            "model": format!("{shape:?}"),
            "labels": labels,
            "dtype": format!("{dtype:?}"),
            "batch": batch,
            "forward_images_per_s": (batch * iters) as f64 / forward,
            "upload_and_forward_images_per_s": (batch * iters) as f64 / staged,
            "normalises_on_device": stager.normalises_on_device(),
            "pinned": stager.pinned(),
        }));
    }
    Ok(out)
}

fn agree(
    model: &Path,
    images: &Path,
    reference: &Path,
    device: DeviceSpec,
    margin: f64,
) -> Result<serde_json::Value> {
    let want = candle_core::safetensors::load(reference, &Device::Cpu)?;
    let want = want
        .get("logits")
        .context("the reference file has no `logits`")?
        .to_vec2::<f32>()?;
    let classifier = load(model, device, None)?;
    let inputs = cropped(classifier.preprocessor(), images, want.len())?;
    let got = logits(&classifier, &inputs)?.to_vec2::<f32>()?;
    if got.len() != want.len() {
        bail!("{} logit rows, {} in the reference", got.len(), want.len());
    }
    let top2 = |row: &[f32]| {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        (
            order[0],
            row[order[0]] - order.get(1).map_or(f32::NEG_INFINITY, |&i| row[i]),
        )
    };
    let (mut max_diff, mut checked, mut equal, mut all_equal) = (0f32, 0, 0, 0);
    for (g, w) in got.iter().zip(&want) {
        for (a, b) in g.iter().zip(w) {
            max_diff = max_diff.max((a - b).abs());
        }
        let (wi, lead) = top2(w);
        let (gi, _) = top2(g);
        all_equal += usize::from(gi == wi);
        if f64::from(lead) >= margin {
            checked += 1;
            equal += usize::from(gi == wi);
        }
    }
    Ok(json!({
        "device": device.to_string(),
        "dtype": format!("{:?}", classifier.dtype()),
        "images": got.len(),
        "max_abs_logit_diff": max_diff,
        "margin": margin,
        "top1_checked": checked,
        "top1_equal": equal,
        "top1_equal_all_images": all_equal,
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Checkpoint { out, shape } => write_checkpoint(&out, shape).map(|v| vec![v]),
        Command::Images { out, count } => write_images(&out, count).map(|v| vec![v]),
        Command::Reference {
            model,
            images,
            count,
            out,
        } => reference(&model, &images, count, &out).map(|v| vec![v]),
        Command::Probe { device } => match probe(device) {
            Ok(v) => Ok(vec![v]),
            Err(e) => {
                println!(
                    "{}",
                    json!({"device": device.to_string(), "unavailable": format!("{e:#}")})
                );
                return ExitCode::from(3);
            }
        },
        Command::Throughput {
            device,
            dtype,
            shape,
            batch,
            iters,
        } => throughput(device, dtype.dtype(), shape, &batch, iters.max(1)),
        Command::Agree {
            model,
            images,
            reference,
            device,
            margin,
        } => agree(&model, &images, &reference, device, margin).map(|v| vec![v]),
    };
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gpu_check: {e:#}");
            ExitCode::FAILURE
        }
    }
}
