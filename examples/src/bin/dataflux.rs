//! `dataflux`: list, fetch and clean up object-store datasets from a shell.
//!
//! ```text
//! dataflux list  gs://bucket/prefix [--parallelism N] [--sequential] [--count] [--stats]
//! dataflux fetch gs://bucket/prefix --to DIR [--no-compose] [--concurrency N] [--stats]
//! dataflux gc    gs://bucket [--older-than 1h] [--temp-prefix dataflux-tmp/]
//! dataflux status gs://bucket/output [--run-id ID] [--json]
//! ```
//!
//! Exit status: 0 on success, 1 on an error, 2 on a usage error, 3 when `fetch` could not
//! read some objects (each is reported on stderr; the others are written). `status` exits 0
//! whether the run is running or finished, 1 when there is no run to report.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use dataflux::compose::{cleanup_stale, stale_temporaries};
use dataflux::{
    folder_prefix, list, Dataset, DatasetConfig, FetchOptions, Fetcher, ListOptions, Location,
    DEFAULT_TEMP_PREFIX,
};
use dataflux_examples::logging::LogFormat;
use dataflux_examples::progress::human_secs;
use dataflux_pipeline::{status, JobSpec};
use futures::StreamExt;

#[derive(Parser, Debug)]
#[command(
    name = "dataflux",
    version,
    about = "List, fetch and clean up datasets in object stores (gs://, s3://, file://, local paths, memory://)",
    after_help = "With STORAGE_EMULATOR_HOST set, gs:// URLs go to that emulator anonymously.\nLogs go to stderr; set RUST_LOG (e.g. RUST_LOG=dataflux=debug) for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines: text, json (Cloud Logging), or auto (text on a terminal, JSON otherwise).
    #[arg(long, env = "DATAFLUX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists the objects under a URL: one `name<TAB>size` per line, sorted by name.
    List(ListArgs),
    /// Downloads every object under a URL into a local directory (composed on GCS).
    Fetch(FetchArgs),
    /// Deletes temporary composites that crashed runs left behind.
    Gc(GcArgs),
    /// A batch-inference run across all its ranks, read from its bookkeeping in the output:
    /// chunks committed, claimed (by which rank, lease age), lapsed and free; rows and bad
    /// inputs so far; the recent rate and ETA; whether it finished. Writes nothing.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// The run's output: what batch-inference was given as --output.
    output: String,
    /// The run [default: the only run there, else the most recently started].
    #[arg(long, env = "DATAFLUX_RUN_ID")]
    run_id: Option<String>,
    /// The lease the ranks run with (their --lease-secs): older claims count as lapsed.
    #[arg(long, default_value_t = JobSpec::default().lease.as_secs_f64())]
    lease_secs: f64,
    /// Seconds the store may fail transiently before giving up.
    #[arg(long, default_value_t = 30.0)]
    store_deadline_secs: f64,
    /// One JSON object on stdout (for scripts).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Location: gs://bucket/prefix, s3://bucket/prefix, file:///dir, a local path, memory://name.
    url: String,
    /// Concurrent list workers (work stealing).
    #[arg(long, default_value_t = ListOptions::default().parallelism)]
    parallelism: usize,
    /// List page after page with one worker (no parallel listing, no race).
    #[arg(long)]
    sequential: bool,
    /// Print only the number of objects.
    #[arg(long)]
    count: bool,
    /// Print the time, the winning strategy and the requests by kind on stderr.
    #[arg(long)]
    stats: bool,
    /// Prefix of the library's temporary objects, left out of the listing.
    #[arg(long, default_value = DEFAULT_TEMP_PREFIX)]
    temp_prefix: String,
}

#[derive(Args, Debug)]
struct FetchArgs {
    /// Location: gs://bucket/prefix, s3://bucket/prefix, file:///dir, a local path, memory://name.
    url: String,
    /// Directory to write into; each object goes to DIR/<name relative to the URL's prefix>.
    #[arg(long)]
    to: PathBuf,
    /// Fetch every object with its own GET (no GCS compose).
    #[arg(long)]
    no_compose: bool,
    /// Groups (composites, or single objects) in flight at once.
    #[arg(long, default_value_t = DatasetConfig::default().concurrency)]
    concurrency: usize,
    /// Largest composite, in bytes; bigger objects are fetched alone with ranged GETs.
    #[arg(long, default_value_t = FetchOptions::default().max_composite_bytes)]
    max_composite_bytes: u64,
    /// Prefix of temporary composites in the bucket (swept for this run at start and end).
    #[arg(long, default_value = DEFAULT_TEMP_PREFIX)]
    temp_prefix: String,
    /// Print the time, throughput and requests by kind on stderr.
    #[arg(long)]
    stats: bool,
}

#[derive(Args, Debug)]
struct GcArgs {
    /// The bucket (gs://bucket; a path after the bucket is ignored), or any other location.
    url: String,
    /// Delete temporaries created longer ago than this: 90s, 30m, 1h, 2d, 500ms, or 0 for all.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    older_than: Duration,
    /// Prefix of temporary composites in the bucket (never empty).
    #[arg(long, default_value = DEFAULT_TEMP_PREFIX)]
    temp_prefix: String,
    /// List what would be deleted, one name per line, and delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Parses `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d` (a bare `0` is allowed).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 30m, 1h, 2d"))?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" if n == 0 => 0,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: too long"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    dataflux_examples::logging::init("warn", cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::List(args) => run_list(args).await,
            Command::Fetch(args) => run_fetch(args).await,
            Command::Gc(args) => run_gc(args).await,
            Command::Status(args) => run_status(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_list(args: ListArgs) -> Result<ExitCode> {
    let location = Location::parse(&args.url)?;
    let store = location.open().await?;
    let options = ListOptions::default()
        .with_parallelism(if args.sequential {
            1
        } else {
            args.parallelism.max(1)
        })
        .with_race_sequential(!args.sequential)
        .with_temp_prefix(args.temp_prefix.clone());
    let start = Instant::now();
    let listing = list(&store, &location.prefix, &options)
        .await
        .with_context(|| format!("listing {}", args.url))?;
    let elapsed = start.elapsed();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if args.count {
        writeln!(out, "{}", listing.objects.len())
    } else {
        listing
            .objects
            .iter()
            .try_for_each(|o| writeln!(out, "{}\t{}", o.name, o.size))
    }
    .and_then(|()| out.flush());
    match written {
        // `dataflux list … | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other.context("writing to stdout")?,
    }
    if args.stats {
        let s = store.stats().snapshot();
        eprintln!(
            "listed {} objects in {:.3} s, strategy {:?}, parallelism {}; skipped {} directory markers, {} temporaries",
            listing.objects.len(),
            elapsed.as_secs_f64(),
            listing.strategy,
            options.parallelism,
            listing.skipped.directory_markers,
            listing.skipped.temporary,
        );
        eprintln!("{s}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Where an object goes under `dir`: its name relative to `prefix`, refused if it would
/// leave `dir` (`..`, absolute paths) or is empty.
fn target_path(dir: &Path, prefix: &str, name: &str) -> Result<PathBuf> {
    let relative = name.strip_prefix(prefix).unwrap_or(name);
    let mut path = dir.to_path_buf();
    let mut parts = 0;
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => {
                path.push(part);
                parts += 1;
            }
            Component::CurDir => {}
            _ => bail!(
                "object name {name:?} would be written outside {}",
                dir.display()
            ),
        }
    }
    if parts == 0 {
        bail!("object name {name:?} has no file name");
    }
    Ok(path)
}

async fn write_object(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    tokio::fs::write(path, data)
        .await
        .with_context(|| format!("writing {}", path.display()))
}

async fn run_fetch(args: FetchArgs) -> Result<ExitCode> {
    let config = DatasetConfig::default()
        .with_fetch(
            FetchOptions::default()
                .with_compose(!args.no_compose)
                .with_max_composite_bytes(args.max_composite_bytes.max(1))
                .with_temp_prefix(args.temp_prefix.clone())
                .with_concurrency(args.concurrency.max(1)),
        )
        .with_concurrency(args.concurrency.max(1));
    let start = Instant::now();
    let location = Location::parse(&args.url).with_context(|| format!("listing {}", args.url))?;
    let store = location
        .open()
        .await
        .with_context(|| format!("listing {}", args.url))?;
    let fetcher = Arc::new(Fetcher::new(store.clone(), config.fetch.clone()));
    let list_options = config
        .list
        .clone()
        .with_temp_prefix(config.fetch.temp_prefix.clone());
    // A crash's leftovers under this run id are swept while the prefix is listed: this run
    // composes nothing before its listing is done, so the sweep costs no round trip of its own.
    let (listing, swept) = tokio::join!(
        list(&store, &location.prefix, &list_options),
        fetcher.sweep()
    );
    let listing = listing.with_context(|| format!("listing {}", args.url))?;
    if let Err(e) = swept {
        tracing::warn!(error = %e, "could not sweep this run's temporaries at start");
    }
    let listed = start.elapsed();
    let dataset = Dataset::with_fetcher(fetcher.clone(), listing, config);
    tokio::fs::create_dir_all(&args.to)
        .await
        .with_context(|| format!("creating {}", args.to.display()))?;
    let (mut ok, mut failed, mut bytes) = (0usize, 0usize, 0u64);
    // Files are written concurrently (as many as the fetch concurrency): on a disk the writes,
    // not the fetches, would otherwise set the pace.
    let (to, prefix) = (args.to.clone(), dataset.prefix().to_string());
    let mut stream = Box::pin(
        dataset
            .stream(dataset.start())?
            .map(|item| {
                let (to, prefix) = (to.clone(), prefix.clone());
                async move {
                    let written = match item.data {
                        Ok(data) => match target_path(&to, &prefix, &item.meta.name) {
                            Ok(path) => write_object(&path, &data).await.map(|()| data.len()),
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e.into()),
                    };
                    (item.meta, written)
                }
            })
            .buffer_unordered(args.concurrency.max(1)),
    );
    while let Some((meta, written)) = stream.next().await {
        let item_name = meta.name;
        match written {
            Ok(n) => {
                ok += 1;
                bytes += n as u64;
            }
            Err(e) => {
                failed += 1;
                eprintln!("failed: {item_name}: {e:#}");
            }
        }
    }
    drop(stream);
    // The deletes behind the downloads, and a sweep where one of them failed.
    if let Err(e) = fetcher.finish(Duration::from_secs(60)).await {
        tracing::warn!(error = %e, "could not sweep this run's temporaries at end");
    }
    let undeletable = fetcher.undeletable();
    if let Some(first) = undeletable.first() {
        tracing::warn!(count = undeletable.len(), first = %first, "composites the store would not delete are left behind");
    }
    let elapsed = start.elapsed();
    if args.stats {
        let s = dataset.stats();
        let fetch_requests = s.requests() - s.list;
        eprintln!(
            "fetched {ok} objects ({bytes} B) in {:.3} s (listing {:.3} s), {:.1} objects/s, {:.1} MB/s; {failed} failed; composed: {}",
            elapsed.as_secs_f64(),
            listed.as_secs_f64(),
            ok as f64 / elapsed.as_secs_f64().max(1e-9),
            bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
            fetcher.composing(),
        );
        eprintln!(
            "{s}; {:.3} fetch requests per object",
            fetch_requests as f64 / dataset.len().max(1) as f64
        );
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} objects could not be fetched",
            dataset.len()
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_gc(args: GcArgs) -> Result<ExitCode> {
    let location = Location::parse(&args.url)?;
    if !location.prefix.is_empty() {
        tracing::info!(prefix = %location.prefix, "gc works on the whole bucket: the path is ignored");
    }
    if folder_prefix(&args.temp_prefix).is_empty() {
        eprintln!("error: --temp-prefix: must not be empty (it would take in the whole bucket)");
        return Ok(ExitCode::from(2));
    }
    let store = location.open().await?;
    if args.dry_run {
        let doomed = stale_temporaries(&store, &args.temp_prefix, args.older_than)
            .await
            .with_context(|| format!("listing {}{}", store.url(), args.temp_prefix))?;
        for name in doomed {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let deleted = cleanup_stale(&store, &args.temp_prefix, args.older_than)
        .await
        .with_context(|| format!("cleaning {}{}", store.url(), args.temp_prefix))?;
    println!("{deleted}");
    Ok(ExitCode::SUCCESS)
}

async fn run_status(args: StatusArgs) -> Result<ExitCode> {
    let (Ok(lease), Ok(deadline)) = (
        Duration::try_from_secs_f64(args.lease_secs),
        Duration::try_from_secs_f64(args.store_deadline_secs),
    ) else {
        eprintln!("error: --lease-secs, --store-deadline-secs: not a number of seconds");
        return Ok(ExitCode::from(2));
    };
    let location = Location::parse(&args.output)?;
    // The deadline is the store's retry policy (the one retry layer).
    let retry = dataflux::RetryPolicy::default().with_deadline(deadline);
    let store = match location.open_with_retry(retry).await {
        Ok(store) => store,
        Err(e) if e.is_not_found() => bail!("no batch-inference run at {}: {e}", args.output),
        Err(e) => return Err(e.into()),
    };
    let run_id = match args.run_id {
        Some(id) => id,
        None => {
            let runs = status::runs(&store, &location.prefix, deadline).await?;
            match runs.last() {
                Some(id) => {
                    if runs.len() > 1 {
                        eprintln!(
                            "{} runs at {}: showing the latest started, {id} (others: {}); pick one with --run-id",
                            runs.len(),
                            args.output,
                            runs[..runs.len() - 1].join(", ")
                        );
                    }
                    id.clone()
                }
                None => bail!("no batch-inference run at {}", args.output),
            }
        }
    };
    let s = match status::read(&store, &location.prefix, &run_id, lease, deadline).await {
        Ok(s) => s,
        Err(e) if e.is_config() => {
            use dataflux_examples::cli;
            return Ok(cli::config_exit(&cli::flags_in(&e.to_string())));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    print_status(&mut out, &args.output, &s)?;
    Ok(ExitCode::SUCCESS)
}

/// The human form of a run's status.
fn print_status(out: &mut impl Write, output: &str, s: &status::RunStatus) -> std::io::Result<()> {
    let pct = |n: u64| {
        if s.images == 0 {
            100.0
        } else {
            100.0 * n as f64 / s.images as f64
        }
    };
    if let Some(done) = &s.finished {
        writeln!(out, "run {} at {output}: finished", s.run_id)?;
        writeln!(
            out,
            "  {} images: {} with results, {} bad; {} chunks, {} output shards; {:.1} s, {:.1} images/s",
            done.images, done.images_ok, done.images_failed, done.chunks, done.shards, done.wall_secs, done.images_per_sec
        )?;
        return Ok(());
    }
    writeln!(out, "run {} at {output}: running", s.run_id)?;
    writeln!(
        out,
        "  chunks: {} in all: {} committed, {} claimed, {} lapsed, {} free",
        s.chunks,
        s.committed,
        s.claimed.len(),
        s.lapsed.len(),
        s.free
    )?;
    writeln!(
        out,
        "  images: {} of {} committed ({:.1}%): {} rows, {} bad inputs",
        s.images_committed,
        s.images,
        pct(s.images_committed),
        s.rows,
        s.bad
    )?;
    match (s.images_per_sec, s.eta_secs) {
        (Some(rate), Some(eta)) => writeln!(
            out,
            "  rate: {rate:.1} images/s over the last {} min; ETA {}",
            status::RATE_WINDOW.as_secs() / 60,
            human_secs(eta)
        )?,
        _ => writeln!(
            out,
            "  rate: no chunk committed in the last {} min",
            status::RATE_WINDOW.as_secs() / 60
        )?,
    }
    for (what, views) in [("claimed", &s.claimed), ("lapsed", &s.lapsed)] {
        if views.is_empty() {
            continue;
        }
        writeln!(out, "  {what}:")?;
        for v in views {
            writeln!(
                out,
                "    chunk {:>6}  rank {:>4}  holder {:<16}  attempt {}  lease written {} ago",
                v.chunk,
                v.rank.map_or("?".to_string(), |r| r.to_string()),
                v.holder.as_deref().unwrap_or("?"),
                v.attempt,
                v.lease_age_secs.map_or("?".to_string(), human_secs)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "h", "10", "1w", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn objects_stay_inside_the_target_directory() {
        let dir = Path::new("/out");
        assert_eq!(
            target_path(dir, "imgs/", "imgs/a/b.jpg").unwrap(),
            PathBuf::from("/out/a/b.jpg")
        );
        assert_eq!(
            target_path(dir, "", "x y.jpg").unwrap(),
            PathBuf::from("/out/x y.jpg")
        );
        assert!(target_path(dir, "imgs/", "imgs/../../etc/passwd").is_err());
        assert!(target_path(dir, "", "/abs").is_err());
        assert!(target_path(dir, "imgs/", "imgs/").is_err());
    }
}
