//! Listing at scale: `dataflux::list` with default settings against a sequential listing, on
//! `list_server` (a GCS JSON API list server whose requests cost O(log N + page), with a fixed
//! added latency), at 1,000,000 objects and more, in several naming schemes.
//!
//! ```text
//! cargo build --release -p dataflux-benches --bin list_server --bin list_scale && target/release/list_scale --objects 1000000 --names seq,hex,tree,coco --latency-ms 100
//! cargo build --release -p dataflux-benches --bin list_server --bin list_scale && target/release/list_scale --objects 10000000 --names seq,hex,tree,coco --latency-ms 100 --sequential false
//! target/release/list_scale --objects 1000000 --names folders,hashed --latency-ms 100 [--ignore-delimiter]
//! ```
//!
//! For each (objects, scheme) the bench starts `list_server` (found next to this executable;
//! `--server` overrides) as a child process, points the GCS client at it with
//! `STORAGE_EMULATOR_HOST`, and lists `gs://bench/images/`, each time with a freshly opened
//! store (new connections, zeroed counters) and the server's counters reset:
//!
//! - parallel, first (`--repeat` times): `dataflux::list` with `ListOptions::default()`
//!   (`--parallelism` overrides the worker count only);
//! - sequential, then (unless `--sequential false`; it takes N/1000 × latency, 1,000 s at
//!   10M): the same with `parallelism: 1`.
//!
//! Reported per listing: wall time; list requests the server received (the sequential racer's
//! included; a request cancelled in flight counts, as GCS would bill it), the client's own
//! count, and TCP connections opened; requests per full page, full pages being ceil(N / 1000),
//! what a sequential listing needs; peak heap: the peak of live heap bytes above those live
//! just before the listing (a counting global allocator), per object; retained: live heap
//! bytes after it, the result included, per object; peak RSS: the process's `VmHWM`, reset
//! through `/proc/self/clear_refs` just before (after `malloc_trim`, so memory earlier
//! listings freed counts as little as glibc allows); CPU time of the server and of this process
//! (on a small machine the JSON both sides handle bounds the parallel listing too).
//!
//! Every listing is checked exact: N objects, strictly ascending (sorted, no duplicates), the
//! same names in the same order as the server holds under the prefix (the server's digest of
//! them, from a plain scan, not its paging code), and each object's size, generation and
//! CRC32C as generated. The bench exits non-zero if any listing is not exact. The goals
//! (issue): speedup ≥ 20× at 1M objects and 100 ms, requests ≤ 1.3 × full pages, and peak
//! ≤ 120 bytes per object at 10M.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use dataflux::{list, ListOptions, Listing, Location, Store, Strategy};
use dataflux_benches::listgen::{object_info, Digest, Scheme, PREFIX};
use dataflux_benches::{process_cpu_time, use_endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Counts live heap bytes and their peak.
struct CountingAlloc;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are only arithmetic.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Parser)]
struct Args {
    /// Objects under `images/` (comma-separated sizes).
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    objects: Vec<usize>,
    /// Naming schemes (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "seq,hex,tree,coco"
    )]
    names: Vec<Scheme>,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// Also time the sequential baseline (N/1000 × latency).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sequential: bool,
    /// Parallel listing workers (default: `ListOptions::default()`'s).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Seed of the names.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Parallel listings per dataset (each reported).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// The server ignores `delimiter` (a store without folders: no folder hints).
    #[arg(long)]
    ignore_delimiter: bool,
    /// The `list_server` binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Have the server print every request line on stderr (to see how a listing splits).
    #[arg(long)]
    server_log: bool,
}

const BUCKET: &str = "bench";

/// A `list_server` child process; killed on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn spawn(
        bin: &Path,
        n: usize,
        scheme: Scheme,
        seed: u64,
        latency_ms: u64,
        log: bool,
        ignore_delimiter: bool,
    ) -> Result<Self> {
        let mut child = Command::new(bin)
            .args(["--objects", &n.to_string(), "--names", scheme.name()])
            .args(log.then_some("--log"))
            .args(ignore_delimiter.then_some("--ignore-delimiter"))
            .args(["--seed", &seed.to_string(), "--latency-ms"])
            .arg(latency_ms.to_string())
            .args(["--port", "0", "--bucket", BUCKET])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it: cargo build --release -p dataflux-benches --bin list_server)",
                    bin.display()
                )
            })?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let status = child.wait()?;
            bail!("list_server did not start ({status}): {line:?}");
        };
        let addr = addr
            .parse()
            .with_context(|| format!("bad address {addr:?}"))?;
        Ok(Self { child, addr })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection; the body of a 200 answer.
async fn http(addr: SocketAddr, method: &str, path: &str) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8(resp)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no response head")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{method} {path}: {head}");
    }
    Ok(body.to_string())
}

async fn server_json(addr: SocketAddr, method: &str, path: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&http(addr, method, path).await?)?)
}

/// Peak and current RSS in bytes (`VmHWM`, `VmRSS` of `/proc/self/status`).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0); false where that is not possible. Hands
/// the memory earlier listings freed back to the system first (glibc keeps it otherwise), so
/// that the peak is this listing's.
fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free heap memory; any thread may call it.
        unsafe {
            malloc_trim(0);
        }
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One timed listing.
#[derive(Clone)]
struct Run {
    seconds: f64,
    /// List requests the server received.
    requests: u64,
    /// List requests the client made (its store counter).
    client_requests: u64,
    /// TCP connections the listing opened to the server.
    connections: u64,
    strategy: Strategy,
    /// Peak live heap bytes above what was live before the listing.
    peak_heap: usize,
    /// Live heap bytes the result holds afterwards.
    retained_heap: usize,
    /// Peak RSS during the listing (whole process), when it could be reset before.
    peak_rss: Option<u64>,
    rss_before: u64,
    /// CPU time the server spent during the listing (and the wait after it).
    server_cpu: Duration,
    /// CPU time this process spent during the listing (and the wait after it).
    client_cpu: Duration,
    /// Why the listing is not exact, if it is not.
    error: Option<String>,
}

async fn measure(
    server: &ServerProcess,
    options: &ListOptions,
    n: usize,
    expected: Digest,
    latency: Duration,
) -> Result<Run> {
    let addr = server.addr;
    server_json(addr, "POST", "/_reset").await?;
    let location = Location::parse(&format!("gs://{BUCKET}/{PREFIX}"))?;
    let store: Arc<dyn Store> = location.open().await?;
    let rss_reset = reset_peak_rss();
    let (_, rss_before) = rss();
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let server_cpu = process_cpu_time(server.child.id()).unwrap_or_default();
    let client_cpu = process_cpu_time(std::process::id()).unwrap_or_default();
    let start = Instant::now();
    let listing = list(&store, &location.prefix, options).await;
    let seconds = start.elapsed().as_secs_f64();
    let peak_heap = PEAK.load(Ordering::SeqCst).saturating_sub(base);
    let retained_heap = CURRENT.load(Ordering::SeqCst).saturating_sub(base);
    let (hwm, _) = rss();
    let listing = listing.context("listing failed")?;
    // A request the losing side of a race had in flight reaches the server all the same.
    tokio::time::sleep(latency + Duration::from_millis(50)).await;
    let server_cpu = process_cpu_time(server.child.id())
        .unwrap_or_default()
        .saturating_sub(server_cpu);
    let client_cpu = process_cpu_time(std::process::id())
        .unwrap_or_default()
        .saturating_sub(client_cpu);
    let stats = server_json(addr, "GET", "/_stats").await?;
    let requests = stats["list_requests"]
        .as_u64()
        .context("no list_requests")?;
    // Less the stats request's own connection.
    let connections = stats["connections"].as_u64().unwrap_or(0).saturating_sub(1);
    let client_requests = store.stats().snapshot().list;
    let error = check(&listing, n, expected).err();
    let strategy = listing.strategy;
    drop(listing);
    drop(store);
    Ok(Run {
        seconds,
        requests,
        client_requests,
        connections,
        strategy,
        peak_heap,
        retained_heap,
        peak_rss: rss_reset.then_some(hwm),
        rss_before,
        server_cpu,
        client_cpu,
        error,
    })
}

/// Whether `listing` is exactly the `n` names the server holds under the prefix.
fn check(listing: &Listing, n: usize, expected: Digest) -> std::result::Result<(), String> {
    let objects = &listing.objects;
    if objects.len() != n {
        return Err(format!("{} objects listed, {n} expected", objects.len()));
    }
    if let Some(w) = objects.windows(2).find(|w| w[0].name >= w[1].name) {
        return Err(format!(
            "not strictly ascending: {:?} then {:?}",
            w[0].name, w[1].name
        ));
    }
    for o in objects {
        if !o.name.starts_with(PREFIX) {
            return Err(format!("{:?} is outside {PREFIX}", o.name));
        }
        let info = object_info(&o.name);
        if o.size != info.size
            || o.generation != Some(info.generation)
            || o.crc32c != Some(info.crc32c)
        {
            return Err(format!(
                "{:?}: size {} generation {:?} crc32c {:?}, expected {} {} {}",
                o.name, o.size, o.generation, o.crc32c, info.size, info.generation, info.crc32c
            ));
        }
    }
    let digest = Digest::of(objects.iter().map(|o| o.name.as_str()));
    if digest != expected {
        return Err(format!(
            "names differ from the server's: digest {:016x}, expected {:016x}",
            digest.hash, expected.hash
        ));
    }
    Ok(())
}

struct Row {
    scheme: Scheme,
    n: usize,
    sequential: Option<Run>,
    parallel: Run,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match &args.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the executable has no folder")?
            .join("list_server"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let rows = runtime.block_on(run(&args, &bin))?;
    println!();
    println!(
        "summary: {} ms per request, parallelism {}, load average now {}; goals: speedup >= 20x (1M), \
         requests <= 1.3x full pages, peak <= 120 B/object (10M)",
        args.latency_ms,
        parallel_options(&args).parallelism,
        load_average()
    );
    println!(
        "| scheme | objects | sequential | parallel | speedup | requests (seq) | full pages | requests / full pages | peak heap B/obj | retained B/obj | peak RSS MiB | server CPU ms/req | strategy | exact |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for row in &rows {
        let pages = row.n.div_ceil(1000).max(1);
        let p = &row.parallel;
        let exact = p.error.is_none() && row.sequential.as_ref().is_none_or(|s| s.error.is_none());
        failed |= !exact;
        println!(
            "| {} | {} | {} | {:.2} s | {} | {}{} | {} | {:.3} | {:.1} | {:.1} | {} | {:.2} | {:?} | {} |",
            row.scheme,
            row.n,
            row.sequential
                .as_ref()
                .map_or("-".to_string(), |s| format!("{:.1} s", s.seconds)),
            p.seconds,
            row.sequential
                .as_ref()
                .map_or("-".to_string(), |s| format!("{:.1}x", s.seconds / p.seconds)),
            p.requests,
            row.sequential
                .as_ref()
                .map_or(String::new(), |s| format!(" ({})", s.requests)),
            pages,
            p.requests as f64 / pages as f64,
            p.peak_heap as f64 / row.n.max(1) as f64,
            p.retained_heap as f64 / row.n.max(1) as f64,
            p.peak_rss
                .map_or("-".to_string(), |r| format!("{:.0}", mib(r))),
            p.server_cpu.as_secs_f64() * 1e3 / p.requests.max(1) as f64,
            p.strategy,
            if exact { "yes" } else { "NO" },
        );
    }
    if failed {
        bail!("some listings were not exact (see above)");
    }
    Ok(())
}

fn parallel_options(args: &Args) -> ListOptions {
    match args.parallelism {
        Some(parallelism) => ListOptions::default().with_parallelism(parallelism),
        None => ListOptions::default(),
    }
}

/// The measurements of one listing, on one line.
fn print_detail(scheme: Scheme, n: usize, label: &str, r: &Run, pages: usize) {
    println!(
        "{scheme:>5} {n:>9} {label:<10} {:>8.2} s {:>7} requests (client {}, {} connections), {:.3} per full page ({pages}), \
         peak heap {:.1} B/object, retained {:.1} B/object, peak RSS {} (before {:.0} MiB), \
         CPU: server {:.2} s ({:.2} ms/request), bench {:.2} s, {:?}{}",
        r.seconds,
        r.requests,
        r.client_requests,
        r.connections,
        r.requests as f64 / pages as f64,
        r.peak_heap as f64 / n.max(1) as f64,
        r.retained_heap as f64 / n.max(1) as f64,
        r.peak_rss
            .map_or("-".to_string(), |b| format!("{:.0} MiB", mib(b))),
        mib(r.rss_before),
        r.server_cpu.as_secs_f64(),
        r.server_cpu.as_secs_f64() * 1e3 / r.requests.max(1) as f64,
        r.client_cpu.as_secs_f64(),
        r.strategy,
        r.error
            .as_ref()
            .map_or(String::new(), |e| format!("  NOT EXACT: {e}")),
    );
}

/// The 1-minute load average (`/proc/loadavg`): how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

async fn run(args: &Args, bin: &Path) -> Result<Vec<Row>> {
    let latency = Duration::from_millis(args.latency_ms);
    let parallel = parallel_options(args);
    let sequential = ListOptions::default().with_parallelism(1);
    println!(
        "list_scale: list_server + {} ms per request, ListOptions (parallelism {}), gs://{BUCKET}/{PREFIX}, \
         {} CPUs, load average {}",
        args.latency_ms,
        parallel.parallelism,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let mut rows = Vec::new();
    for &n in &args.objects {
        for &scheme in &args.names {
            let server = ServerProcess::spawn(
                bin,
                n,
                scheme,
                args.seed,
                args.latency_ms,
                args.server_log,
                args.ignore_delimiter,
            )?;
            use_endpoint(&format!("http://{}", server.addr));
            let digest =
                server_json(server.addr, "GET", &format!("/_digest?prefix={PREFIX}")).await?;
            let expected = Digest {
                count: digest["count"].as_u64().context("no count")?,
                hash: u64::from_str_radix(digest["hash"].as_str().context("no hash")?, 16)?,
            };
            if expected.count != n as u64 {
                bail!(
                    "the server holds {} objects under {PREFIX}, not {n}",
                    expected.count
                );
            }
            let pages = n.div_ceil(1000).max(1);
            let mut runs = Vec::new();
            for _ in 0..args.repeat.max(1) {
                let p = measure(&server, &parallel, n, expected, latency).await?;
                print_detail(scheme, n, "parallel", &p, pages);
                runs.push(p);
            }
            let seq = if args.sequential {
                let s = measure(&server, &sequential, n, expected, latency).await?;
                print_detail(scheme, n, "sequential", &s, pages);
                Some(s)
            } else {
                None
            };
            // One line per parallel run, against the sequential one.
            for p in runs {
                let speedup = seq.as_ref().map_or("-".to_string(), |s| {
                    format!("{:.1}x", s.seconds / p.seconds)
                });
                println!(
                    "{scheme:>5} {n:>9}: sequential {} parallel {:.2} s speedup {speedup} requests {} full pages {pages} requests/full pages {:.3} peak {:.1} B/object{}",
                    seq.as_ref().map_or("-".to_string(), |s| format!("{:.2} s", s.seconds)),
                    p.seconds,
                    p.requests,
                    p.requests as f64 / pages as f64,
                    p.peak_heap as f64 / n.max(1) as f64,
                    if p.error.is_some() || seq.as_ref().is_some_and(|s| s.error.is_some()) {
                        "  NOT EXACT"
                    } else {
                        ""
                    },
                );
                rows.push(Row {
                    scheme,
                    n,
                    sequential: seq.clone(),
                    parallel: p,
                });
            }
            drop(server);
        }
    }
    Ok(rows)
}
