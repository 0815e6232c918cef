//! End-to-end benchmark of the `batch-inference` job: images/s on CPU over the GCS emulator
//! with added latency per request, composed vs individual fetches, and peak memory (RSS) for
//! a small and a 10× larger dataset — memory must not grow with the dataset.
//!
//! Uses the tiny fixture model (`inference/fixtures/tiny-vit`) so that the pipeline, not the
//! model, is measured; build the job first:
//!
//! `cargo build --release -p dataflux-examples --bin batch-inference && cargo run --release -p dataflux-benches --bin pipeline`

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use dataflux_benches::{DelayProxy, Emulator};

#[derive(Parser)]
struct Args {
    /// Dataset sizes.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    images: Vec<usize>,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Image width and height.
    #[arg(long, default_value_t = 160)]
    width: u32,
    #[arg(long, default_value_t = 120)]
    height: u32,
    /// Another build of `batch-inference` (for example an earlier commit's) to compare with
    /// in the same run: composed fetches, rounds alternating, best round of each.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Rounds per binary when comparing with a baseline.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn job_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("batch-inference");
    if !bin.exists() {
        bail!(
            "{} not found: cargo build --release -p dataflux-examples --bin batch-inference",
            bin.display()
        );
    }
    Ok(bin)
}

fn jpeg(i: usize, w: u32, h: u32) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x as usize * 3 + i) % 256) as u8,
            ((y as usize * 5 + i * 7) % 256) as u8,
            ((x + y) as usize % 256) as u8,
        ])
    });
    let mut buf = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut buf, image::ImageFormat::Jpeg)?;
    Ok(buf.into_inner())
}

/// Peak resident set of a running process so far (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct RunResult {
    secs: f64,
    peak_rss_mib: f64,
    images_per_sec: f64,
}

fn run_job(
    bin: &Path,
    endpoint: &str,
    bucket: &str,
    out: &str,
    n: usize,
    compose: bool,
) -> Result<RunResult> {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference/fixtures/tiny-vit");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--input",
        &format!("gs://{bucket}/imgs"),
        "--output",
        &format!("gs://{bucket}/{out}"),
    ])
    .args([
        "--model",
        model.to_str().unwrap_or_default(),
        "--device",
        "cpu",
    ])
    .env("STORAGE_EMULATOR_HOST", endpoint)
    .env("RUST_LOG", "warn")
    .env_remove("RANK")
    .env_remove("WORLD_SIZE")
    .env_remove("DATAFLUX_RUN_ID")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if !compose {
        cmd.arg("--no-compose");
    }
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting batch-inference")?;
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(p) = peak_rss_kib(pid) {
            peak = peak.max(p);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = start.elapsed().as_secs_f64();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "batch-inference failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(RunResult {
        secs,
        peak_rss_mib: peak as f64 / 1024.0,
        images_per_sec: n as f64 / secs,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = job_binary()?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "pipeline benchmark: batch-inference on the emulator + {} ms per request, tiny fixture model, {}x{} JPEGs, {} cores",
        args.latency_ms, args.width, args.height, threads
    );
    println!(
        "{:>8} {:>10} {:>12} {:>12} {:>14}",
        "images", "fetch", "wall s", "images/s", "peak RSS MiB"
    );
    let mut rss = Vec::new();
    for &n in &args.images {
        let data = tempfile_dir()?;
        let bucket = "bench-pipeline";
        let root = data.join(bucket).join("imgs");
        std::fs::create_dir_all(&root)?;
        for i in 0..n {
            std::fs::write(
                root.join(format!("{i:012}.jpg")),
                jpeg(i, args.width, args.height)?,
            )?;
        }
        let emulator = Emulator::start(&data)?;
        let proxy =
            DelayProxy::start(emulator.addr, Duration::from_millis(args.latency_ms)).await?;
        if let Some(base) = args.baseline_bin.clone() {
            let (bin2, url, rounds) = (bin.clone(), proxy.url(), args.rounds.max(1));
            let (ours, theirs) = tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
                let (mut ours, mut theirs) = (0f64, 0f64);
                for round in 0..rounds {
                    let a = run_job(&bin2, &url, bucket, &format!("out-new-{round}"), n, true)?;
                    let b = run_job(&base, &url, bucket, &format!("out-base-{round}"), n, true)?;
                    println!(
                        "{:>8} round {round}: this build {:.1} images/s, baseline {:.1} images/s",
                        n, a.images_per_sec, b.images_per_sec
                    );
                    ours = ours.max(a.images_per_sec);
                    theirs = theirs.max(b.images_per_sec);
                }
                Ok((ours, theirs))
            })
            .await??;
            println!(
                "{:>8} best: this build {:.1} images/s, baseline {:.1} images/s, ratio {:.3}",
                n,
                ours,
                theirs,
                ours / theirs
            );
            drop(proxy);
            drop(emulator);
            let _ = std::fs::remove_dir_all(&data);
            continue;
        }
        let bin2 = bin.clone();
        let url = proxy.url();
        let (composed, single) =
            tokio::task::spawn_blocking(move || -> Result<(RunResult, RunResult)> {
                let composed = run_job(&bin2, &url, bucket, "out-composed", n, true)?;
                let single = run_job(&bin2, &url, bucket, "out-single", n, false)?;
                Ok((composed, single))
            })
            .await??;
        for (label, r) in [("composed", &composed), ("single", &single)] {
            println!(
                "{:>8} {:>10} {:>12.2} {:>12.1} {:>14.1}",
                n, label, r.secs, r.images_per_sec, r.peak_rss_mib
            );
        }
        println!(
            "{:>8} composed / single speedup: {:.2}x",
            n,
            composed.images_per_sec / single.images_per_sec
        );
        rss.push((n, composed.peak_rss_mib));
        drop(proxy);
        drop(emulator);
        let _ = std::fs::remove_dir_all(&data);
    }
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        println!(
            "peak RSS {} images: {:.1} MiB, {} images: {:.1} MiB (ratio {:.2} for {:.0}x the images)",
            first.0, first.1, last.0, last.1, last.1 / first.1, last.0 as f64 / first.0 as f64
        );
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("dataflux-bench-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
