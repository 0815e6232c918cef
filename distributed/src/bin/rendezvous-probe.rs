//! Test helper: one rank of a rendezvous scenario, run as a separate process by
//! `tests/rendezvous_processes.rs`. Reads its rank from the environment like a real job.
//!
//! Steps: `share("listing")` (rank 0 produces it) → `set("rank-<r>")` → `all_gather("summary")`
//! → optional crash (`--crash-after gather`, exit 3) → `barrier("done")` → `wait` for the
//! next rank's key → prints one JSON line → `finish()`. Errors go to stderr, exit 2.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use dataflux_distributed::{Rendezvous, RendezvousOptions, Topology};

/// Arguments of the probe.
#[derive(Debug, Parser)]
struct Args {
    /// Location of the rendezvous (`gs://…`, `file:///…`).
    #[arg(long)]
    url: String,
    /// Run id.
    #[arg(long)]
    run_id: String,
    /// Timeout for every wait, in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    timeout_ms: u64,
    /// Exit with code 3 after this step (`gather`), as a crashing rank would.
    #[arg(long)]
    crash_after: Option<String>,
    /// Which attempt of this rank this is (put into the values it writes).
    #[arg(long, default_value_t = 0)]
    attempt: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let topology = Topology::from_env()?;
    let (rank, world) = (topology.rank, topology.world_size);
    let rdzv = Rendezvous::open(&args.url, &args.run_id, &topology)
        .await?
        .with_options(RendezvousOptions {
            timeout: Duration::from_millis(args.timeout_ms),
            poll_initial: Duration::from_millis(20),
            poll_max: Duration::from_millis(200),
        });
    let attempt = args.attempt;
    let listing = rdzv
        .share("listing", || async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, std::io::Error>(Bytes::from(format!("listing by rank 0 attempt {attempt}")))
        })
        .await?;
    rdzv.set(&format!("rank-{rank}"), format!("hello from {rank}"))
        .await?;
    let gathered = rdzv
        .all_gather("summary", format!("rank {rank} attempt {attempt}"))
        .await?;
    if args.crash_after.as_deref() == Some("gather") {
        std::process::exit(3);
    }
    rdzv.barrier("done").await?;
    let neighbour = rdzv.wait(&format!("rank-{}", (rank + 1) % world)).await?;
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let line = serde_json::json!({
        "rank": rank,
        "listing": text(&listing),
        "neighbour": text(&neighbour),
        "gather": gathered.iter().map(text).collect::<Vec<_>>(),
    });
    println!("{line}");
    rdzv.finish().await.context("finish")?;
    Ok(())
}
