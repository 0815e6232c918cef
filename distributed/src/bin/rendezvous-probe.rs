//! Test helper: one rank of a rendezvous scenario, run as a separate process by
//! `tests/rendezvous_processes.rs`. Reads its rank from the environment like a real job.
//!
//! Steps: `share("listing")` (rank 0 produces it) → `set("rank-<r>")` → `all_gather("summary")`
//! → optional crash (`--crash-after gather`, exit 3) → `barrier("done")` → `wait` for the
//! next rank's key → prints one JSON line → `finish()`. Errors go to stderr, exit 2.

use std::time::Duration;

use bytes::Bytes;
use dataflux_distributed::{Rendezvous, RendezvousOptions, Topology};

/// Arguments of the probe (`--name value` pairs; the library has no CLI parser, and a test
/// helper needs none).
#[derive(Debug)]
struct Args {
    /// Location of the rendezvous (`gs://…`, `file:///…`): `--url`.
    url: String,
    /// Run id: `--run-id`.
    run_id: String,
    /// Timeout for every wait, in milliseconds: `--timeout-ms` (20,000).
    timeout_ms: u64,
    /// Exit with code 3 after this step (`gather`), as a crashing rank would: `--crash-after`.
    crash_after: Option<String>,
    /// Which attempt of this rank this is (put into the values it writes): `--attempt` (0).
    attempt: u32,
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self, String> {
        let (mut url, mut run_id, mut crash_after) = (None, None, None);
        let (mut timeout_ms, mut attempt) = (20_000, 0);
        while let Some(flag) = argv.next() {
            let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--url" => url = Some(value),
                "--run-id" => run_id = Some(value),
                "--timeout-ms" => timeout_ms = number(&flag, &value)?,
                "--crash-after" => crash_after = Some(value),
                "--attempt" => attempt = number(&flag, &value)?,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Self {
            url: url.ok_or("--url is required")?,
            run_id: run_id.ok_or("--run-id is required")?,
            timeout_ms,
            crash_after,
            attempt,
        })
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value}: not a number"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let topology = Topology::from_env()?;
    let (rank, world) = (topology.rank, topology.world_size);
    let rdzv = Rendezvous::open(&args.url, &args.run_id, &topology)
        .await?
        .with_options(
            RendezvousOptions::default()
                .with_timeout(Duration::from_millis(args.timeout_ms))
                .with_poll_initial(Duration::from_millis(20))
                .with_poll_max(Duration::from_millis(200)),
        );
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
    rdzv.finish().await.map_err(|e| format!("finish: {e}"))?;
    Ok(())
}
