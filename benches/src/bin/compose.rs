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

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Parser;
use dataflux::{
    list, Dataset, DatasetConfig, FetchOptions, ListOptions, Location, StatsSnapshot, Store,
};
use dataflux_benches::{use_endpoint, write_preload, DelayProxy, Emulator};
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
}

struct Run {
    elapsed: Duration,
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

fn body_of(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

async fn fetch(
    url: &str,
    compose: bool,
    concurrency: usize,
    take: usize,
    sizes: &[usize],
) -> Result<Run> {
    let location = Location::parse(url)?;
    let store: Arc<dyn Store> = location.open().await?;
    let mut listing = list(&store, &location.prefix, &ListOptions::default()).await?;
    listing.objects.truncate(take);
    let config = DatasetConfig {
        fetch: FetchOptions {
            compose,
            concurrency,
            ..Default::default()
        },
        concurrency,
        ..Default::default()
    };
    let dataset = Dataset::from_listing(Arc::clone(&store), listing, config);
    let before = store.stats().snapshot();
    let start = Instant::now();
    let mut stream = Box::pin(dataset.stream(dataset.start())?);
    let (mut objects, mut bytes) = (0, 0u64);
    while let Some(item) = stream.next().await {
        let data = item.data?;
        ensure!(
            data[..] == body_of(item.index, sizes[item.index])[..],
            "{}: wrong bytes",
            item.meta.name
        );
        objects += 1;
        bytes += data.len() as u64;
    }
    // Deletes run behind the downloads; the fetch is complete once they are done.
    dataset.fetcher().settle(Duration::from_secs(60)).await;
    let elapsed = start.elapsed();
    let stats = store.stats().snapshot().since(&before);
    ensure!(objects == take, "fetched {objects} of {take}");
    ensure!(
        dataset.fetcher().sweep().await? == 0,
        "temporaries left behind"
    );
    Ok(Run {
        elapsed,
        objects,
        bytes,
        stats,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let data = std::env::temp_dir().join(format!("dataflux-bench-compose-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    // Sizes vary around the average; names sort in index order.
    let sizes: Vec<usize> = (0..args.objects)
        .map(|i| args.size * 3 / 4 + (i * 7919) % (args.size / 2).max(1))
        .collect();
    let objects: Vec<(String, usize)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| (format!("imgs/{i:06}.jpg"), s))
        .collect();
    write_preload(&data, "compose-bench", &objects)?;
    let emulator = Emulator::start(&data)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(run(&args, &emulator, &sizes));
    drop(emulator);
    std::fs::remove_dir_all(&data)?;
    result
}

async fn run(args: &Args, emulator: &Emulator, sizes: &[usize]) -> Result<()> {
    let proxy = DelayProxy::start(emulator.addr, Duration::from_millis(args.latency_ms)).await?;
    use_endpoint(&proxy.url());
    let url = "gs://compose-bench/imgs/";
    let n = args.objects;
    let seq_n = args.sequential_objects.unwrap_or(n).min(n);
    println!(
        "compose benchmark: {n} objects of ~{} B, fake-gcs-server + {} ms per request, concurrency {}",
        args.size, args.latency_ms, args.concurrency
    );
    // Warm-up (connections, emulator caches), not measured.
    fetch(url, true, args.concurrency, n.min(64), sizes).await?;
    let composed = fetch(url, true, args.concurrency, n, sizes).await?;
    let individual = fetch(url, false, args.concurrency, n, sizes).await?;
    let sequential = fetch(url, false, 1, seq_n, sizes).await?;
    println!(
        "{:<24} {:>8} {:>10} {:>12} {:>10} {:>9}  requests",
        "mode", "objects", "time", "objects/s", "MB/s", "req/obj"
    );
    for (name, r) in [
        ("composed (16)", &composed),
        ("individual GETs (16)", &individual),
        ("sequential GETs", &sequential),
    ] {
        println!(
            "{:<24} {:>8} {:>8.3} s {:>12.1} {:>10.2} {:>9.3}  {}",
            name.replace("16", &args.concurrency.to_string()),
            r.objects,
            r.elapsed.as_secs_f64(),
            r.objects as f64 / r.elapsed.as_secs_f64(),
            r.bytes as f64 / 1e6 / r.elapsed.as_secs_f64(),
            r.requests_per_object(),
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
    Ok(())
}
