//! Listing benchmark: sequential listing against the parallel work-stealing one (raced
//! against sequential, as `dataflux::list` does by default), on a private fake-gcs-server
//! behind a proxy that adds a fixed latency to every request.
//!
//! ```text
//! cargo run --release -p dataflux-benches --bin list -- --latency-ms 100 --objects 500,20000
//! cargo run --release -p dataflux-benches --bin list -- --layouts folders97,folders10,flat --objects 2000,20000
//! ```
//!
//! Each dataset lives in its own bucket, preloaded with `-data` (the emulator's list cost
//! grows with the bucket, not the prefix). Besides wall time, the bench reports list
//! requests and the emulator's CPU time per list request (from `/proc`), because on a
//! small machine the emulator's CPU, not only the added latency, bounds the speedup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Parser;
use dataflux::{list, ListOptions, Location, Store, Strategy};
use dataflux_benches::{use_endpoint, write_preload, DelayProxy, Emulator};

#[derive(Parser)]
struct Args {
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// Dataset sizes to list.
    #[arg(long, value_delimiter = ',', default_value = "500,20000")]
    objects: Vec<usize>,
    /// Parallel listing workers.
    #[arg(long, default_value_t = ListOptions::default().parallelism)]
    parallelism: usize,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// How the names are laid out: coco (one folder, 12-digit numbers), folders97 (97 folders
    /// `img/00/` … `img/96/`, the layout cloud providers recommend to spread request load),
    /// folders10 (10 folders), flat (no folder below the prefix, random-looking names).
    #[arg(long, value_delimiter = ',', default_value = "coco")]
    layouts: Vec<String>,
}

struct Measure {
    median: Duration,
    requests: u64,
    emulator_cpu: Duration,
    strategy: Strategy,
}

async fn measure(
    emulator: &Emulator,
    url: &str,
    options: &ListOptions,
    repeat: usize,
    n: usize,
) -> Result<Measure> {
    let mut times = Vec::new();
    let (mut requests, mut cpu) = (0, Duration::ZERO);
    let mut strategy = Strategy::Sequential;
    for _ in 0..repeat.max(1) {
        // A fresh store per run: fresh connections and counters, as a new process has.
        let location = Location::parse(url)?;
        let store: Arc<dyn Store> = location.open().await?;
        let cpu_before = emulator.cpu_time().unwrap_or_default();
        let start = Instant::now();
        let listing = list(&store, &location.prefix, options).await?;
        times.push(start.elapsed());
        // Let the losing side of a race finish its in-flight request before reading CPU.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cpu += emulator
            .cpu_time()
            .unwrap_or_default()
            .saturating_sub(cpu_before);
        requests += store.stats().snapshot().list;
        strategy = listing.strategy;
        ensure!(
            listing.objects.len() == n,
            "listed {} of {n}",
            listing.objects.len()
        );
    }
    times.sort();
    let runs = times.len() as u32;
    Ok(Measure {
        median: times[times.len() / 2],
        requests: requests / u64::from(runs),
        emulator_cpu: cpu / runs,
        strategy,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let data = tempfile_dir()?;
    let started = Instant::now();
    for layout in &args.layouts {
        for &n in &args.objects {
            let objects: Vec<(String, usize)> = (0..n)
                .map(|i| layout_name(layout, i).map(|name| (name, 1)))
                .collect::<Result<_>>()?;
            write_preload(&data, &bucket(layout, n), &objects)?;
        }
    }
    let emulator = Emulator::start(&data)?;
    eprintln!(
        "emulator on {} preloaded in {:.1} s",
        emulator.addr,
        started.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(&args, &emulator))?;
    drop(emulator);
    std::fs::remove_dir_all(&data)?;
    Ok(())
}

/// Object `i`'s name under `data/` in `layout`.
fn layout_name(layout: &str, i: usize) -> Result<String> {
    let name = match layout {
        // COCO-like names: a folder, a 12-digit number.
        "coco" => format!("data/val2017/{:012}.jpg", i * 7 + 139),
        "folders97" => format!("data/{:02}/{:08}.jpg", i % 97, i),
        "folders10" => format!("data/{}/{:08}.jpg", i % 10, i),
        // A hash-like name per object, no folder.
        "flat" => format!(
            "data/{:016x}.jpg",
            (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ),
        other => {
            anyhow::bail!("--layouts: unknown layout {other:?} (coco, folders97, folders10, flat)")
        }
    };
    Ok(name)
}

/// The bucket holding `n` objects in `layout`.
fn bucket(layout: &str, n: usize) -> String {
    format!("list-{layout}-{n}")
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dataflux-bench-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn run(args: &Args, emulator: &Emulator) -> Result<()> {
    let latency = Duration::from_millis(args.latency_ms);
    let proxy = DelayProxy::start(emulator.addr, latency).await?;
    use_endpoint(&proxy.url());
    println!(
        "listing benchmark: fake-gcs-server + {} ms per request, {} workers, median of {}",
        args.latency_ms, args.parallelism, args.repeat
    );
    println!(
        "{:>7} {:>11} {:>11} {:>11} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8} {:>8}",
        "objects",
        "sequential",
        "parallel",
        "raced",
        "seq req",
        "par req",
        "race req",
        "cpu/req",
        "winner",
        "par x",
        "raced x"
    );
    for layout in &args.layouts {
        for &n in &args.objects {
            let url = format!("gs://{}/data/", bucket(layout, n));
            let sequential = ListOptions::default().with_parallelism(1);
            let parallel = ListOptions::default()
                .with_parallelism(args.parallelism)
                .with_race_sequential(false);
            let raced = ListOptions::default().with_parallelism(args.parallelism);
            let seq = measure(emulator, &url, &sequential, args.repeat, n).await?;
            let par = measure(emulator, &url, &parallel, args.repeat, n).await?;
            let race = measure(emulator, &url, &raced, args.repeat, n).await?;
            let cpu_per_req = seq.emulator_cpu.as_secs_f64() * 1e3 / seq.requests.max(1) as f64;
            println!(
            "{:>7} {:>9.3} s {:>9.3} s {:>9.3} s {:>7} {:>7} {:>7} {:>6.1} ms {:>9} {:>7.2}x {:>7.2}x",
            n,
            seq.median.as_secs_f64(),
            par.median.as_secs_f64(),
            race.median.as_secs_f64(),
            seq.requests,
            par.requests,
            race.requests,
            cpu_per_req,
            format!("{:?}", race.strategy),
            seq.median.as_secs_f64() / par.median.as_secs_f64(),
            seq.median.as_secs_f64() / race.median.as_secs_f64(),
        );
            println!(
            "        emulator CPU per listing: sequential {:.2} s, parallel {:.2} s, raced {:.2} s",
            seq.emulator_cpu.as_secs_f64(),
            par.emulator_cpu.as_secs_f64(),
            race.emulator_cpu.as_secs_f64()
        );
            println!("        layout {layout}");
        }
    }
    Ok(())
}
