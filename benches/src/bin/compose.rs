//! Composed download benchmark: composed fetch against individual GETs at the same
//! concurrency and against sequential GETs, on a private fake-gcs-server behind a proxy that
//! adds a fixed latency to every request.
//!
//! ```text
//! cargo run --release -p dataflux-benches --bin compose -- --objects 2000 --size 16384 --latency-ms 20 --concurrency 16
//! ```
//!
//! Every mode streams the same listing with [`Dataset::stream`] (in order, verified by length
//! and CRC32C) and checks every byte against what was preloaded.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Parser;
use dataflux::{
    list, Dataset, DatasetConfig, FetchOptions, ListOptions, Location, StatsSnapshot, Store,
};
use dataflux_benches::{
    process_cpu_time, use_endpoint, write_preload, Backend, DelayProxy, Emulator,
};
use futures::StreamExt;

#[derive(Parser)]
struct Args {
    /// Objects to fetch.
    #[arg(long, default_value_t = 2000)]
    objects: usize,
    /// Average object size in bytes (sizes vary ±25 %).
    #[arg(long, default_value_t = 16 * 1024)]
    size: usize,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Groups in flight at once, for composed and individual fetches alike.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Objects fetched by the sequential baseline (it is slow: one round trip each).
    #[arg(long)]
    sequential_objects: Option<usize>,
    /// The emulator's backend: `filesystem` (on tmpfs; lookups cost the same at any bucket
    /// size, as on GCS), `memory` (lookups scan the bucket: CPU grows with its size), or
    /// `both`, one after the other.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    backend: BackendChoice,
    /// Folders the objects are spread over, round robin (`imgs/03/000123.jpg`); 0: none
    /// (`imgs/000123.jpg`).
    #[arg(long, default_value_t = 0)]
    folders: usize,
    /// Time the listing too, as `dataflux fetch` spends it (default listing, raced), in every
    /// mode.
    #[arg(long)]
    time_listing: bool,
    /// Also time the `dataflux fetch` command itself (this binary), composed and with
    /// `--no-compose`, whole processes from start to exit, into a scratch directory on tmpfs.
    #[arg(long)]
    cli: Option<std::path::PathBuf>,
    /// Runs of each `dataflux fetch` mode (the best is reported).
    #[arg(long, default_value_t = 3)]
    cli_repeat: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendChoice {
    Both,
    Filesystem,
    Memory,
}

struct Run {
    elapsed: Duration,
    /// CPU the emulator spent during the run.
    emulator_cpu: Duration,
    /// CPU this process (client and delaying proxy) spent during the run.
    client_cpu: Duration,
    objects: usize,
    bytes: u64,
    stats: StatsSnapshot,
}

impl Run {
    fn per_object(&self) -> f64 {
        self.elapsed.as_secs_f64() / self.objects as f64
    }
    fn requests_per_object(&self) -> f64 {
        (self.stats.requests() - self.stats.list) as f64 / self.objects as f64
    }
}

/// What [`write_preload`] wrote for object `i`.
fn body_of(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

#[allow(clippy::too_many_arguments)]
async fn fetch(
    emulator: &Emulator,
    url: &str,
    compose: bool,
    concurrency: usize,
    take: usize,
    expected: &[Vec<u8>],
    time_listing: bool,
) -> Result<Run> {
    let location = Location::parse(url)?;
    let store: Arc<dyn Store> = location.open().await?;
    let listed = Instant::now();
    let mut listing = list(&store, &location.prefix, &ListOptions::default()).await?;
    let listing_time = if time_listing {
        listed.elapsed()
    } else {
        Duration::ZERO
    };
    listing.objects.truncate(take);
    let config = DatasetConfig::default()
        .with_fetch(
            FetchOptions::default()
                .with_compose(compose)
                .with_concurrency(concurrency),
        )
        .with_concurrency(concurrency);
    let dataset = Dataset::from_listing(Arc::clone(&store), listing, config);
    let before = store.stats().snapshot();
    let cpu = || {
        (
            emulator.cpu_time().unwrap_or_default(),
            process_cpu_time(std::process::id()).unwrap_or_default(),
        )
    };
    let (emulator_before, client_before) = cpu();
    let start = Instant::now();
    let mut stream = Box::pin(dataset.stream(dataset.start())?);
    let (mut objects, mut bytes) = (0, 0u64);
    while let Some(item) = stream.next().await {
        let data = item.data?;
        ensure!(
            data[..] == expected[item.index][..],
            "{}: wrong bytes",
            item.meta.name
        );
        objects += 1;
        bytes += data.len() as u64;
    }
    // Deletes run behind the downloads; the fetch is complete once they are done.
    dataset.fetcher().settle(Duration::from_secs(60)).await;
    let elapsed = start.elapsed() + listing_time;
    let (emulator_after, client_after) = cpu();
    let stats = store.stats().snapshot().since(&before);
    ensure!(objects == take, "fetched {objects} of {take}");
    ensure!(
        dataset.fetcher().sweep().await? == 0,
        "temporaries left behind"
    );
    Ok(Run {
        elapsed,
        emulator_cpu: emulator_after.saturating_sub(emulator_before),
        client_cpu: client_after.saturating_sub(client_before),
        objects,
        bytes,
        stats,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let data = std::env::temp_dir().join(format!("dataflux-bench-compose-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    // Sizes vary around the average; object i is the i-th name in listing order.
    let sizes: Vec<usize> = (0..args.objects)
        .map(|i| args.size * 3 / 4 + (i * 7919) % (args.size / 2).max(1))
        .collect();
    let mut names: Vec<String> = (0..args.objects)
        .map(|i| match args.folders {
            0 => format!("imgs/{i:06}.jpg"),
            n => format!("imgs/{:02}/{i:06}.jpg", i % n),
        })
        .collect();
    names.sort();
    let objects: Vec<(String, usize)> = names.into_iter().zip(sizes.iter().copied()).collect();
    write_preload(&data, "compose-bench", &objects)?;
    // Every fetched byte is checked against these, built before any clock starts.
    let expected: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| body_of(i, s))
        .collect();
    let tmpfs = Path::new("/dev/shm");
    let scratch = if tmpfs.is_dir() {
        tmpfs.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let fs_root = scratch.join(format!("dataflux-bench-compose-fs-{}", std::process::id()));
    let backends = match args.backend {
        BackendChoice::Memory => vec![Backend::Memory],
        BackendChoice::Filesystem => vec![Backend::Filesystem(fs_root.clone())],
        BackendChoice::Both => vec![Backend::Filesystem(fs_root.clone()), Backend::Memory],
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut result = Ok(());
    for backend in &backends {
        let emulator = Emulator::start_with(&data, backend)?;
        result = runtime.block_on(run(&args, &emulator, backend, &expected));
        drop(emulator);
        if result.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&fs_root);
    std::fs::remove_dir_all(&data)?;
    result
}

async fn run(
    args: &Args,
    emulator: &Emulator,
    backend: &Backend,
    expected: &[Vec<u8>],
) -> Result<()> {
    let proxy = DelayProxy::start(emulator.addr, Duration::from_millis(args.latency_ms)).await?;
    use_endpoint(&proxy.url());
    let url = "gs://compose-bench/imgs/";
    let n = args.objects;
    let seq_n = args.sequential_objects.unwrap_or(n).min(n);
    println!(
        "\ncompose benchmark: {n} objects of ~{} B in {} folders, fake-gcs-server ({backend}) + {} ms per request, concurrency {}{}",
        args.size,
        args.folders,
        args.latency_ms,
        args.concurrency,
        if args.time_listing { ", listing timed" } else { "" }
    );
    // Warm-up (connections, emulator caches), not measured.
    let timed = args.time_listing;
    fetch(
        emulator,
        url,
        true,
        args.concurrency,
        n.min(64),
        expected,
        false,
    )
    .await?;
    let composed = fetch(emulator, url, true, args.concurrency, n, expected, timed).await?;
    let individual = fetch(emulator, url, false, args.concurrency, n, expected, timed).await?;
    let sequential = fetch(emulator, url, false, 1, seq_n, expected, timed).await?;
    println!(
        "{:<24} {:>8} {:>10} {:>12} {:>10} {:>9} {:>10} {:>10}  requests",
        "mode", "objects", "time", "objects/s", "MB/s", "req/obj", "emu CPU", "our CPU"
    );
    for (name, r) in [
        ("composed (16)", &composed),
        ("individual GETs (16)", &individual),
        ("sequential GETs", &sequential),
    ] {
        println!(
            "{:<24} {:>8} {:>8.3} s {:>12.1} {:>10.2} {:>9.3} {:>8.2} s {:>8.2} s  {}",
            name.replace("16", &args.concurrency.to_string()),
            r.objects,
            r.elapsed.as_secs_f64(),
            r.objects as f64 / r.elapsed.as_secs_f64(),
            r.bytes as f64 / 1e6 / r.elapsed.as_secs_f64(),
            r.requests_per_object(),
            r.emulator_cpu.as_secs_f64(),
            r.client_cpu.as_secs_f64(),
            r.stats
        );
    }
    println!(
        "composed vs individual at equal concurrency: {:.2}x; composed vs sequential: {:.2}x; individual vs sequential: {:.2}x{}",
        individual.per_object() / composed.per_object(),
        sequential.per_object() / composed.per_object(),
        sequential.per_object() / individual.per_object(),
        if seq_n < n {
            format!(" (sequential timed on {seq_n} objects, compared per object)")
        } else {
            String::new()
        }
    );
    if let Some(cli) = &args.cli {
        let scratch = Path::new("/dev/shm")
            .to_path_buf()
            .join(format!("dataflux-bench-cli-{}", std::process::id()));
        let mut best = [f64::MAX; 2];
        for _ in 0..args.cli_repeat.max(1) {
            for (mode, slot) in [(false, 0), (true, 1)] {
                let _ = std::fs::remove_dir_all(&scratch);
                let mut cmd = std::process::Command::new(cli);
                cmd.args(["fetch", url, "--to"]).arg(&scratch).args([
                    "--concurrency",
                    &args.concurrency.to_string(),
                    "--stats",
                ]);
                if mode {
                    cmd.arg("--no-compose");
                }
                let start = Instant::now();
                let status = cmd.status()?;
                let took = start.elapsed().as_secs_f64();
                ensure!(status.success(), "dataflux fetch failed: {status}");
                let files = walkdir_count(&scratch)?;
                ensure!(files == n, "dataflux fetch wrote {files} of {n} files");
                best[slot] = best[slot].min(took);
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        println!(
            "dataflux fetch (whole process, best of {}): composed {:.3} s, --no-compose {:.3} s: {:.2}x",
            args.cli_repeat.max(1),
            best[0],
            best[1],
            best[1] / best[0]
        );
    }
    Ok(())
}

/// Files under `dir`, at any depth.
fn walkdir_count(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += walkdir_count(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}
