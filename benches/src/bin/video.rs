//! Videos, against PyAV measured in the same run (`benches/python/video_baseline.py`).
//!
//! - Sampling: 1 sample/s (and 0.1/s, where we seek) from a 30 s 720p H.264 at 30 fps, from
//!   memory to RGB samples: frames of video processed per second, ours
//!   (`dataflux_inference::video`, one decoder thread) against PyAV doing the same sampling in
//!   Python (every frame decoded, the samples converted to RGB; PyAV's default threading).
//! - `--job N`: the whole job over N such videos (`batch-inference --video-fps 1 --model
//!   <ResNet-50 ONNX folder>`) against PyAV + transformers (the image processor, PyTorch eager
//!   on batches, a CSV), same threads.
//!
//! ```sh
//! cargo build --release -p dataflux-benches --features video --bin video
//! cargo build --release --features video --bin batch-inference
//! PYTHON=/path/to/venv/bin/python ORT_DYLIB_PATH=… target/release/video --dir /tmp/bench-video \
//!     --job 4 --model /tmp/onnx-models/resnet50
//! ```
//!
//! The video is made once into `--dir` with the `ffmpeg` command: FFmpeg's test pattern with
//! light temporal noise (so that it does not compress to nothing), a key frame every 2 s.
//! The two sides alternate for `--rounds` rounds and each keeps its best.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dataflux_benches::python_json;
use dataflux_inference::video::{decode_video, Sampling, VideoOptions};

#[derive(Parser, Debug)]
struct Args {
    /// Where the bench video is (made there when missing).
    #[arg(long, default_value = "/tmp/bench-video")]
    dir: PathBuf,
    /// Rounds of (ours, baseline), alternating; each side keeps its best.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also run the whole job over this many copies of the video.
    #[arg(long, default_value_t = 0)]
    job: usize,
    /// The model folder for --job (an ONNX export, e.g. benches/python/onnx_models.py's
    /// resnet50).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Threads for each side of --job (our decode threads and ONNX Runtime's; PyTorch's).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The batch-inference binary for --job (built with --features video).
    #[arg(long, default_value = "target/release/batch-inference")]
    batch_inference: PathBuf,
    /// Python with av (and torch, transformers for --job).
    #[arg(long, env = "PYTHON", default_value = "python3")]
    python: String,
}

/// The 30 s 720p H.264 bench video, made with the ffmpeg command when missing.
fn video(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("clip720.mp4");
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=1280x720:rate=30:duration=30,noise=alls=3:allf=t")
        .args([
            "-c:v", "libx264", "-preset", "fast", "-crf", "23", "-g", "60",
        ])
        .args(["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&path)
        .status()
        .context("running ffmpeg (apt install ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg could not make {}", path.display());
    }
    Ok(path)
}

/// Our sampling of `bytes` at `fps`: (frames decoded, samples, seconds).
fn ours(bytes: &[u8], fps: f64) -> Result<(u64, u64, f64)> {
    let start = Instant::now();
    let summary = decode_video(
        std::io::Cursor::new(bytes.to_vec()),
        None,
        &VideoOptions::new(Sampling::fps(fps)).with_threads(1),
        |f| {
            std::hint::black_box(&f.image);
            ControlFlow::Continue(())
        },
    )?;
    Ok((
        summary.decoded,
        summary.samples,
        start.elapsed().as_secs_f64(),
    ))
}

fn sampling(args: &Args, path: &Path) -> Result<()> {
    let bytes = std::fs::read(path)?;
    let mb = bytes.len() as f64 / 1e6;
    println!(
        "video: {} ({mb:.1} MB, 30 s, 1280x720, 30 fps: 900 frames)",
        path.display()
    );
    for fps in [1.0, 0.1] {
        let (mut best_ours, mut best_py) = (f64::MAX, f64::MAX);
        let (mut decoded, mut samples, mut py_samples) = (0, 0, 0);
        for _ in 0..args.rounds {
            let (d, s, secs) = ours(&bytes, fps)?;
            (decoded, samples) = (d, s);
            best_ours = best_ours.min(secs);
            let py = python_json(
                &args.python,
                "video_baseline.py",
                &[
                    "sample".into(),
                    "--video".into(),
                    path.display().to_string(),
                    "--fps".into(),
                    fps.to_string(),
                ],
            )
            .context("the PyAV baseline failed")?;
            py_samples = py["samples"].as_u64().unwrap_or(0);
            best_py = best_py.min(py["secs"].as_f64().unwrap_or(f64::MAX));
        }
        if samples != py_samples {
            bail!("{samples} samples against PyAV's {py_samples}");
        }
        println!(
            "sampling {fps}/s: ours {:.0} video frames/s ({decoded} decoded, {samples} samples, {best_ours:.2} s), PyAV {:.0} frames/s ({best_py:.2} s): {:.2}x",
            900.0 / best_ours,
            900.0 / best_py,
            best_py / best_ours
        );
    }
    Ok(())
}

fn job(args: &Args, path: &Path) -> Result<()> {
    let model = args.model.as_ref().context("--job needs --model")?;
    let input = args.dir.join(format!("videos-{}", args.job));
    if !input.is_dir() {
        std::fs::create_dir_all(&input)?;
        for i in 0..args.job {
            std::fs::copy(path, input.join(format!("clip{i:03}.mp4")))?;
        }
    }
    let (mut best_ours, mut best_py) = (f64::MAX, f64::MAX);
    for round in 0..args.rounds {
        let out = args.dir.join(format!("out-{round}"));
        let _ = std::fs::remove_dir_all(&out);
        let start = Instant::now();
        let status = Command::new(&args.batch_inference)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .arg("--model")
            .arg(model)
            .args(["--device", "cpu", "--video-fps", "1", "--quiet"])
            .args(["--decode-threads", &args.threads.to_string()])
            .status()?;
        let secs = start.elapsed().as_secs_f64();
        if !status.success() {
            bail!("batch-inference failed: {status}");
        }
        best_ours = best_ours.min(secs);
        let py = python_json(
            &args.python,
            "video_baseline.py",
            &[
                "job".into(),
                "--input".into(),
                input.display().to_string(),
                "--model".into(),
                model.display().to_string(),
                "--output".into(),
                args.dir.join("baseline.csv").display().to_string(),
                "--threads".into(),
                args.threads.to_string(),
            ],
        )
        .context("the PyAV + transformers baseline failed")?;
        best_py = best_py.min(py["secs"].as_f64().unwrap_or(f64::MAX));
        let rows = std::fs::read_dir(&out)?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("results_"))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .count()
                    - 1
            })
            .unwrap_or(0);
        if rows as u64 != py["samples"].as_u64().unwrap_or(0) {
            bail!("{rows} rows against the baseline's {}", py["samples"]);
        }
    }
    let samples = args.job * 30;
    println!(
        "job over {} videos (900 frames each, {samples} samples): ours {best_ours:.2} s ({:.1} samples/s, {:.0} video frames/s), PyAV + transformers {best_py:.2} s ({:.1} samples/s): {:.2}x",
        args.job,
        samples as f64 / best_ours,
        (args.job * 900) as f64 / best_ours,
        samples as f64 / best_py,
        best_py / best_ours
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let path = video(&args.dir)?;
    sampling(&args, &path)?;
    if args.job > 0 {
        job(&args, &path)?;
    }
    Ok(())
}
