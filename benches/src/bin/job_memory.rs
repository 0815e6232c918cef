//! Memory of a non-zero rank against the size of the run's listing: a synthetic listing of
//! N objects on the memory store, rank 0 publishes the run's plan (index + one manifest per
//! chunk), then rank 1 of 2 starts, claims and commits one chunk and is stopped. Reported:
//! the heap that rank 1's run needed at its peak (a counting allocator), for each N. Memory
//! must not grow with the listing: rank 1 reads the index and only its chunk's manifest.
//!
//! `cargo run --release -p dataflux-benches --bin job_memory -- --objects 10000,1000000`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use dataflux::{Location, PutMode};
use dataflux_distributed::Topology;
use dataflux_pipeline::{
    BatchModel, Column, ColumnKind, Job, JobSpec, ModelError, Outcome, Rejection, Row, Stores,
    Value,
};
use tokio_util::sync::CancellationToken;

/// Counts live heap bytes and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's layout unchanged; the counters
// are only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[derive(Parser)]
struct Args {
    /// Listing sizes.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    objects: Vec<usize>,
}

/// A model that costs nothing: one row with the object's size.
struct Size;

impl BatchModel for Size {
    type Input = usize;
    fn task(&self) -> &str {
        "size"
    }
    fn definition(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::new("bytes", ColumnKind::Text)]
    }
    fn preprocess(&self, bytes: &[u8]) -> Result<usize, Rejection> {
        Ok(bytes.len())
    }
    fn infer(&self, batch: Vec<usize>) -> Result<Vec<Row>, ModelError> {
        Ok(batch
            .into_iter()
            .map(|n| vec![Value::Text(n.to_string())])
            .collect())
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "job memory: a non-zero rank processing one chunk of 1,024 against the listing's size"
    );
    println!(
        "{:>10} {:>8} {:>14} {:>16} {:>12}",
        "objects", "chunks", "rank 0 plan s", "rank 1 peak MiB", "per object"
    );
    for &n in &args.objects {
        let name = format!("job-memory-{n}");
        let store = Location::parse(&format!("memory://{name}"))?.open().await?;
        let body = Bytes::from_static(b"x");
        for i in 0..n {
            store
                .put(
                    &format!("imgs/{:08}/{i:012}.jpg", i / 10_000),
                    body.clone(),
                    PutMode::Overwrite,
                )
                .await?;
        }
        let spec = JobSpec::default()
            .with_input(Location::parse(&format!("memory://{name}/imgs"))?)
            .with_output(Location::parse(&format!("memory://{name}/out"))?)
            .with_run_id(Some("mem".into()))
            .with_decode_threads(1);
        let stores = Stores {
            input: store.clone(),
            output: store.clone(),
        };
        // Rank 0 plans the run, then stops at once (before claiming anything).
        let t = Instant::now();
        let stop = CancellationToken::new();
        stop.cancel();
        let zero = Job::run_on(
            stores.clone(),
            &spec,
            Arc::new(Size),
            &Topology::new(0, 2)?,
            stop,
        )
        .await?;
        anyhow::ensure!(
            matches!(zero, Outcome::Interrupted { .. }),
            "rank 0: {zero:?}"
        );
        let plan_secs = t.elapsed().as_secs_f64();

        // Rank 1: from its start until its first commit and stop.
        let commits = "out/_dataflux/mem/commits/".to_string();
        let stop = CancellationToken::new();
        let watcher = {
            let (store, stop) = (store.clone(), stop.clone());
            let commits = commits.clone();
            tokio::spawn(async move {
                loop {
                    let page = store
                        .list_page(dataflux::PageRequest::new(&commits, None, None, 1))
                        .await;
                    if page.is_ok_and(|p| !p.objects.is_empty()) {
                        stop.cancel();
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let one = Job::run_on(stores, &spec, Arc::new(Size), &Topology::new(1, 2)?, stop).await?;
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        watcher.await.context("watcher")?;
        anyhow::ensure!(
            matches!(one, Outcome::Interrupted { .. }),
            "rank 1: {one:?}"
        );
        println!(
            "{:>10} {:>8} {:>14.2} {:>16.2} {:>10.1} B",
            n,
            n.div_ceil(1024),
            plan_secs,
            mib(peak),
            peak as f64 / n as f64
        );
    }
    Ok(())
}
