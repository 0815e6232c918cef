//! The command line of the test kit's GCS JSON API list server (`dataflux_testkit::list_server`), whose requests cost O(log N + page), for listing benchmarks
//! at millions of objects (fake-gcs-server's memory backend scans the whole bucket on every
//! list call, so there the server, not the listing algorithm, is what gets measured).
//!
//! ```text
//! cargo build --release -p dataflux-benches --bin list_server && target/release/list_server --objects 1000000 --names seq --seed 1 --latency-ms 100 --port 0
//! STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT …   # then gs://bench/images/ lists from it
//! ```
//!
//! `list_scale` starts it by itself; run it alone to poke at it (`--log` prints every request
//! line).
//!
//! It generates `--objects` names under `images/` (scheme `--names`: `seq`, `hex`, `tree` or
//! `coco`, see `dataflux_testkit::listgen`) plus a few outside it, keeps them sorted in memory,
//! prints `listening on 127.0.0.1:PORT` on stdout once it is ready, and answers:
//!
//! - `GET /storage/v1/b/{bucket}/o`: objects.list with `prefix`, `startOffset` (inclusive),
//!   `endOffset` (exclusive), `maxResults` (default and cap 1000) and `pageToken` (opaque: the
//!   hex of the next name) and `delimiter` (names past it roll up into `prefixes`, each folder
//!   skipped by one binary search) and `fields` (only its `items(…)` part: a partial response
//!   with those fields of each object); `projection` and the rest are ignored. Binary
//!   search finds the range, so a request costs O(log N + page). Each item carries the fields
//!   GCS sends (and that `gcloud-storage`'s `Object` requires); `nextPageToken` only when more
//!   names remain in range.
//! - `GET /storage/v1/b/{bucket}/o/{object}`: one object's metadata; `GET /storage/v1/b/{bucket}`:
//!   the bucket's; `GET /storage/v1/b`: the bucket list.
//! - `GET /_stats`: `{"list_requests":n,"requests":m,"connections":c}` (storage requests, and
//!   TCP connections accepted; `?reset=true` zeroes them after
//!   answering, as does `POST /_reset`); `GET /_digest?prefix=images/`: `{"count":n,"hash":"…"}`,
//!   the order-sensitive `listgen::Digest` of the names under the prefix, computed by a plain
//!   scan (not the paging code), so a client can check its listing is exact.
//! - anything else: a GCS-style 404 JSON error.
//!
//! Every storage request waits `--latency-ms` (tokio sleep, so concurrent requests overlap as
//! on GCS) before its answer. HTTP/1.1 with keep-alive, written by hand on tokio: requests are
//! framed by their head and `Content-Length` (no chunked request bodies), answers always carry
//! a `Content-Length`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use dataflux_testkit::list_server::{Config, Server};
use dataflux_testkit::listgen::{self, Scheme};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// Objects under `images/`.
    #[arg(long, default_value_t = 1_000_000)]
    objects: usize,
    /// Naming scheme.
    #[arg(long, value_enum, default_value_t = Scheme::Seq)]
    names: Scheme,
    /// Seed of the names.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Added latency per storage request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// Port (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The bucket's name.
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// Print every request line (to stderr, cut at 300 bytes).
    #[arg(long)]
    log: bool,
    /// Answer list requests as a store without folders does: `delimiter` is ignored (items
    /// only, no prefixes).
    #[arg(long)]
    ignore_delimiter: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let names = listgen::generate(args.names, args.objects, args.seed);
    eprintln!(
        "list_server: {} objects under {} ({} names, seed {}) + {} outside, {:.0} MB, generated in {:.1} s",
        args.objects,
        listgen::PREFIX,
        args.names,
        args.seed,
        names.len() - args.objects,
        names.heap_bytes() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    // The folder structure under the prefix: how many folders, how uneven.
    let (mut folders, mut largest, mut smallest, mut run, mut parent) =
        (0usize, 0, usize::MAX, 0, "");
    for name in names.iter().filter(|n| n.starts_with(listgen::PREFIX)) {
        let p = name.rfind('/').map_or("", |i| &name[..i]);
        if p != parent {
            if run > 0 {
                largest = largest.max(run);
                smallest = smallest.min(run);
            }
            folders += 1;
            (parent, run) = (p, 0);
        }
        run += 1;
    }
    if run > 0 {
        largest = largest.max(run);
        smallest = smallest.min(run);
    }
    eprintln!(
        "list_server: {folders} folders under {}, {} to {largest} objects each",
        listgen::PREFIX,
        if folders == 0 { 0 } else { smallest }
    );
    let server = Server::new(Config {
        names,
        bucket: args.bucket.clone(),
        latency: Duration::from_millis(args.latency_ms),
        log: args.log,
        ignore_delimiter: args.ignore_delimiter,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        println!("listening on {addr}");
        std::io::stdout().flush()?;
        server.run(listener).await
    })
}
