//! The batch inference job, read top to bottom as the data flows:
//! list (rank 0 publishes the manifest) → shard → fetch (composed) → decode/resize pool →
//! batch → model → writer. Each stage is a task joined to the next by a bounded channel, so
//! memory is bounded by the prefetch window and the queue sizes, never by the dataset size.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use dataflux::{
    list, manifest, Dataset, DatasetConfig, FetchOptions, ListOptions, Listing, Location,
    ObjectMeta, PutMode, ShardSpec, StatsSnapshot, Store,
};
use dataflux_distributed::{Rendezvous, Topology};
use dataflux_inference::preprocess::scaled_jpeg_decoding;
use dataflux_inference::{
    Classifier, DType, DecodePool, DeviceSpec, LoadOptions, ModelSource, PreparedImage,
    PreprocessError, PreprocessMode,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::output::{self, BadInput, Classified, Format, Layout};
use crate::progress::Progress;

/// Everything the job needs to know; the binary fills it from flags and the environment.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Input URL (`gs://`, `s3://`, `file://`, a local path, `memory://`) with prefix.
    pub input: String,
    /// Output URL, same kinds.
    pub output: String,
    /// Hub repository id or local checkpoint directory.
    pub model: String,
    /// Images per forward pass.
    pub batch_size: usize,
    /// `auto`, `cpu`, `cuda` (this process's `LOCAL_RANK`) or `cuda:N`.
    pub device: String,
    /// `f32`, `bf16`, `f16`; default f32 on CPU, bf16 on CUDA.
    pub dtype: Option<String>,
    /// Predictions per image.
    pub top_k: usize,
    /// Composed download on GCS.
    pub compose: bool,
    /// Largest composite.
    pub max_composite_bytes: u64,
    /// Concurrent fetches.
    pub concurrency: usize,
    /// Bytes fetched ahead of decoding at most.
    pub prefetch_bytes: u64,
    /// Result format.
    pub format: Format,
    /// Run id (a rerun with the same id resumes or does nothing); derived from the inputs
    /// when absent.
    pub run_id: Option<String>,
    /// Decode threads (0: all cores).
    pub decode_threads: usize,
    /// Never touch the network for the model.
    pub offline: bool,
    /// Reduced-scale JPEG decode (faster, slightly different pixels).
    pub fast_decode: bool,
    /// Images per committed part.
    pub part_size: usize,
    /// Show progress (rank 0).
    pub progress: bool,
    /// How long ranks wait for each other at rendezvous points.
    pub rendezvous_timeout: Duration,
    /// Extra pause after each batch (tests and demos that need a slow job).
    pub batch_delay: Duration,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            input: String::new(),
            output: "output".into(),
            model: "google/vit-base-patch16-224".into(),
            batch_size: 64,
            device: "auto".into(),
            dtype: None,
            top_k: 1,
            compose: true,
            max_composite_bytes: 32 * 1024 * 1024,
            concurrency: 16,
            prefetch_bytes: 256 * 1024 * 1024,
            format: Format::Csv,
            run_id: None,
            decode_threads: 0,
            offline: false,
            fast_decode: false,
            part_size: 1024,
            progress: true,
            rendezvous_timeout: Duration::from_secs(3600),
            batch_delay: Duration::ZERO,
        }
    }
}

/// Time spent per stage, in seconds of busy time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    /// Listing (rank 0) or loading the manifest.
    pub list: f64,
    /// Loading the model.
    pub load_model: f64,
    /// Waiting for decoded images (fetch + decode not keeping up).
    pub wait_input: f64,
    /// Forward passes.
    pub infer: f64,
    /// Committing parts and final files.
    pub write: f64,
}

/// What one rank did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankSummary {
    /// The rank.
    pub rank: usize,
    /// Images in this rank's shard.
    pub shard_images: u64,
    /// Classified.
    pub images_ok: u64,
    /// Bad inputs (errors file).
    pub images_failed: u64,
    /// Already committed by an earlier attempt, not redone.
    pub resumed: u64,
    /// Wall time of this attempt.
    pub wall_secs: f64,
    /// Per-stage busy time.
    pub stages: StageTimes,
    /// Input requests by kind.
    pub requests: StatsSnapshot,
}

/// The job total, written by rank 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Run id.
    pub run_id: String,
    /// Ranks.
    pub world_size: usize,
    /// Images listed.
    pub images: u64,
    /// Classified.
    pub images_ok: u64,
    /// Bad inputs.
    pub images_failed: u64,
    /// Longest rank wall time.
    pub wall_secs: f64,
    /// Images per second over the longest rank.
    pub images_per_sec: f64,
    /// Per-rank summaries.
    pub ranks: Vec<RankSummary>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The job had already finished: nothing was done.
    AlreadyFinished {
        /// Where its summary is.
        summary: String,
    },
    /// This rank ran (or had run) its shard.
    Finished {
        /// This rank's summary.
        rank: Box<RankSummary>,
        /// The job total, on rank 0.
        job: Option<Box<JobSummary>>,
    },
}

/// The default run id: a stable hash of what defines the job's results.
pub fn default_run_id(config: &JobConfig) -> String {
    let key = format!(
        "{}\n{}\n{}\n{}\n{:?}\n{}",
        config.input, config.output, config.model, config.top_k, config.format, config.fast_decode
    );
    format!("run-{:08x}", crc32c_of(key.as_bytes()))
}

/// Stable across processes and versions, unlike `DefaultHasher`.
fn crc32c_of(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// One position of the shard on its way through the stages.
struct Decoding {
    index: usize,
    meta: ObjectMeta,
    image: std::result::Result<
        oneshot::Receiver<std::result::Result<PreparedImage, PreprocessError>>,
        BadInput,
    >,
}

struct Decoded {
    index: usize,
    meta: ObjectMeta,
    image: std::result::Result<PreparedImage, BadInput>,
}

struct Scored {
    index: usize,
    result: std::result::Result<Classified, BadInput>,
}

/// Runs this process's part of the job.
pub async fn run(config: JobConfig) -> Result<Outcome> {
    let wall = Instant::now();
    let topology = Topology::from_env().context("reading the rank from the environment")?;
    let run_id = config
        .run_id
        .clone()
        .unwrap_or_else(|| default_run_id(&config));
    let input = Location::parse(&config.input).context("--input")?;
    let output = Location::parse(&config.output).context("--output")?;
    let out_store = output
        .open_for_write()
        .await
        .with_context(|| format!("opening output {}", config.output))?;
    let layout = Layout {
        prefix: output.prefix.clone(),
        run_id: run_id.clone(),
        rank: topology.rank,
        format: config.format,
    };
    tracing::info!(rank = topology.rank, world_size = topology.world_size, %run_id, "starting");

    if exists(out_store.as_ref(), &layout.job_summary()).await? {
        let summary = out_store.object_url(&layout.job_summary());
        tracing::info!("run {run_id} already finished ({summary}): nothing to do");
        return Ok(Outcome::AlreadyFinished { summary });
    }
    let rendezvous = Rendezvous::new(out_store.clone(), &output.prefix, &run_id, &topology)
        .context("setting up the rendezvous")?
        .with_options(dataflux_distributed::RendezvousOptions {
            timeout: config.rendezvous_timeout,
            ..Default::default()
        });

    let rank_summary = match read_json::<RankSummary>(out_store.as_ref(), &layout.success()).await?
    {
        Some(done) => {
            tracing::info!(
                "rank {} already finished in an earlier attempt",
                topology.rank
            );
            done
        }
        None => {
            run_shard(
                &config,
                &topology,
                &input,
                &out_store,
                &layout,
                &rendezvous,
                wall,
            )
            .await?
        }
    };

    // Every rank's summary to rank 0, which writes the job total.
    let gathered = rendezvous
        .all_gather("summaries", serde_json::to_vec(&rank_summary)?)
        .await
        .context("gathering rank summaries")?;
    let mut job = None;
    if topology.rank == 0 {
        let ranks: Vec<RankSummary> = gathered
            .iter()
            .map(|b| serde_json::from_slice(b))
            .collect::<std::result::Result<_, _>>()
            .context("decoding rank summaries")?;
        let summary = job_summary(&run_id, ranks);
        out_store
            .put(
                &layout.job_summary(),
                Bytes::from(serde_json::to_vec_pretty(&summary)?),
                PutMode::Overwrite,
            )
            .await?;
        job = Some(summary);
    }
    rendezvous
        .finish()
        .await
        .context("closing the rendezvous")?;
    Ok(Outcome::Finished {
        rank: Box::new(rank_summary),
        job: job.map(Box::new),
    })
}

fn job_summary(run_id: &str, ranks: Vec<RankSummary>) -> JobSummary {
    let wall = ranks.iter().map(|r| r.wall_secs).fold(0.0, f64::max);
    let ok: u64 = ranks.iter().map(|r| r.images_ok).sum();
    let failed: u64 = ranks.iter().map(|r| r.images_failed).sum();
    JobSummary {
        run_id: run_id.to_string(),
        world_size: ranks.len(),
        images: ranks.iter().map(|r| r.shard_images).sum(),
        images_ok: ok,
        images_failed: failed,
        wall_secs: wall,
        images_per_sec: if wall > 0.0 {
            (ok + failed) as f64 / wall
        } else {
            0.0
        },
        ranks,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    config: &JobConfig,
    topology: &Topology,
    input: &Location,
    out_store: &Arc<dyn Store>,
    layout: &Layout,
    rendezvous: &Rendezvous,
    wall: Instant,
) -> Result<RankSummary> {
    let mut stages = StageTimes::default();

    // list: rank 0 lists once (or reloads the run's manifest) and shares it.
    let t = Instant::now();
    let in_store = input
        .open()
        .await
        .with_context(|| format!("opening input {}", input.url))?;
    // The manifest itself is one object in the output (kept, so that a restart shards
    // exactly as before); the rendezvous only says that it is there.
    rendezvous
        .share("manifest", || async {
            manifest_for_run(
                in_store.clone(),
                &input.prefix,
                out_store.clone(),
                layout.manifest(),
            )
            .await
            .map(|_| Bytes::from_static(b"ready"))
        })
        .await
        .context("sharing the listing")?;
    let listing = manifest::load(out_store.as_ref(), &layout.manifest()).await?;
    stages.list = t.elapsed().as_secs_f64();
    warn_duplicate_stems(&listing);

    // shard
    let dataset_config = DatasetConfig {
        fetch: FetchOptions {
            compose: config.compose,
            max_composite_bytes: config.max_composite_bytes,
            run_id: format!("{}-r{}", layout.run_id, topology.rank),
            concurrency: config.concurrency,
            ..Default::default()
        },
        concurrency: config.concurrency,
        prefetch_bytes: config.prefetch_bytes,
        list: ListOptions::default(),
    };
    let dataset = Dataset::from_listing(in_store.clone(), listing, dataset_config)
        .shard(ShardSpec::new(topology.rank, topology.world_size))?;
    let (resume_at, _) = output::committed_end(committed_parts(out_store, layout).await?);
    if resume_at > 0 {
        tracing::info!(
            rank = topology.rank,
            resume_at,
            of = dataset.len(),
            "resuming after committed parts"
        );
    }
    dataset
        .fetcher()
        .sweep()
        .await
        .context("sweeping this rank's leftover composites")?;

    // model
    let t = Instant::now();
    let classifier = Arc::new(load_classifier(config, topology).await?);
    stages.load_model = t.elapsed().as_secs_f64();
    let threads = if config.decode_threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        config.decode_threads
    };
    let pool = Arc::new(DecodePool::new(threads)?);

    let progress = Progress::start(
        dataset.len() as u64,
        resume_at as u64,
        config.progress && topology.rank == 0,
    );
    let before = dataset.stats();

    // fetch → decode → batch → infer → write
    let items = fetch_stage(&dataset, resume_at, config.batch_size)?;
    let decoding = decode_stage(items, pool, classifier.clone(), threads * 4);
    let (batches, wait_input) = batch_stage(decoding, config.batch_size);
    let (scored, infer_secs) = infer_stage(batches, classifier, config.top_k, config.batch_delay);
    let written = write_stage(
        scored,
        out_store.clone(),
        layout.clone(),
        config,
        resume_at,
        dataset.len(),
        &progress,
    )
    .await;
    progress.finish();
    let (ok, failed, write_secs) = written?;
    stages.wait_input = wait_input.await.unwrap_or(0.0);
    stages.infer = infer_secs
        .await
        .map_err(|e| anyhow!("inference stage: {e}"))??;

    // final files, marker, clean-up
    let t = Instant::now();
    let totals = finalize(out_store, layout, config).await?;
    dataset.fetcher().settle(Duration::from_secs(60)).await;
    dataset
        .fetcher()
        .sweep()
        .await
        .context("sweeping this rank's composites")?;
    stages.write = write_secs + t.elapsed().as_secs_f64();
    let summary = RankSummary {
        rank: topology.rank,
        shard_images: dataset.len() as u64,
        images_ok: totals.0,
        images_failed: totals.1,
        resumed: resume_at as u64,
        wall_secs: wall.elapsed().as_secs_f64(),
        stages,
        requests: dataset.stats().since(&before),
    };
    debug_assert!(ok + failed <= summary.shard_images);
    out_store
        .put(
            &layout.success(),
            Bytes::from(serde_json::to_vec_pretty(&summary)?),
            PutMode::Overwrite,
        )
        .await?;
    delete_parts(out_store, layout).await?;
    Ok(summary)
}

/// Rank 0's listing: the run's saved manifest if there is one (a restart must shard exactly
/// as before), else a fresh listing saved create-only.
async fn manifest_for_run(
    in_store: Arc<dyn Store>,
    prefix: &str,
    out_store: Arc<dyn Store>,
    manifest_name: String,
) -> Result<(), dataflux::Error> {
    match out_store.head(&manifest_name).await {
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let listing = list(&in_store, prefix, &ListOptions::default()).await?;
    tracing::info!(objects = listing.objects.len(), strategy = ?listing.strategy, "listed input");
    match out_store
        .put(&manifest_name, manifest::encode(&listing)?, PutMode::Create)
        .await
    {
        Ok(_) | Err(dataflux::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn warn_duplicate_stems(listing: &Listing) {
    let mut stems: HashMap<&str, usize> = HashMap::new();
    for o in &listing.objects {
        *stems.entry(o.stem()).or_default() += 1;
    }
    let dups: Vec<&str> = stems
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(s, _)| *s)
        .collect();
    if !dups.is_empty() {
        tracing::warn!(
            count = dups.len(),
            example = dups[0],
            "several objects share an image_id (file stem) in different folders; all are kept (use --format jsonl to see object names)"
        );
    }
}

async fn load_classifier(config: &JobConfig, topology: &Topology) -> Result<Classifier> {
    let source: ModelSource = config
        .model
        .parse()
        .map_err(|e| anyhow!("--model {}: {e:?}", config.model))?;
    let device = match config.device.trim().to_ascii_lowercase().as_str() {
        // One process per GPU: plain `cuda` means this process's local GPU.
        "cuda" | "gpu" => DeviceSpec::Cuda(topology.local_rank),
        other => other
            .parse::<DeviceSpec>()
            .with_context(|| format!("--device {other}"))?,
    };
    let dtype = match config.dtype.as_deref() {
        None => None,
        Some("f32") => Some(DType::F32),
        Some("bf16") => Some(DType::BF16),
        Some("f16") => Some(DType::F16),
        Some(other) => bail!("--dtype {other}: expected f32, bf16 or f16"),
    };
    let mut options = LoadOptions::from_env();
    options.offline |= config.offline;
    let mut classifier = Classifier::load(&source, &options, device, dtype)
        .await
        .with_context(|| format!("loading model {}", config.model))?;
    if config.fast_decode {
        use_fast_decode(&mut classifier);
    }
    tracing::info!(model = %config.model, device = ?classifier.device(), dtype = ?classifier.dtype(), "model loaded");
    Ok(classifier)
}

/// Puts `classifier` in fast preprocessing mode (`--fast-decode`), saying in the log when this
/// build cannot decode JPEGs at reduced scale (built without the `turbojpeg` feature).
pub fn use_fast_decode(classifier: &mut Classifier) {
    classifier.set_preprocess_mode(PreprocessMode::Fast);
    if !scaled_jpeg_decoding() {
        tracing::warn!("--fast-decode: this build has no scaled JPEG decoder (cargo feature turbojpeg): large images are decoded at full size, then shrunk");
    }
}

/// fetch: the shard's objects from `resume_at` on, in order, with their bytes.
fn fetch_stage(
    dataset: &Dataset,
    resume_at: usize,
    queue: usize,
) -> Result<mpsc::Receiver<dataflux::Item>> {
    let stream = dataset.stream(dataset.cursor_at(resume_at))?;
    let (tx, rx) = mpsc::channel(queue.max(1));
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

fn fetch_error_kind(e: &dataflux::Error) -> &'static str {
    match e {
        dataflux::Error::NotFound { .. } => "not_found",
        dataflux::Error::Integrity { .. } => "integrity",
        dataflux::Error::PermissionDenied { .. } => "permission_denied",
        _ => "fetch",
    }
}

/// decode: each object goes to the CPU pool as soon as it arrives; its place in the queue
/// keeps the order. The queue bounds how many images are decoded ahead.
fn decode_stage(
    mut items: mpsc::Receiver<dataflux::Item>,
    pool: Arc<DecodePool>,
    classifier: Arc<Classifier>,
    queue: usize,
) -> mpsc::Receiver<Decoding> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    tokio::spawn(async move {
        while let Some(item) = items.recv().await {
            let image = match item.data {
                Ok(bytes) => Ok(pool.spawn(classifier.preprocessor(), bytes)),
                Err(e) => Err(BadInput {
                    object: item.meta.name.clone(),
                    kind: fetch_error_kind(&e).into(),
                    message: e.to_string(),
                }),
            };
            if tx
                .send(Decoding {
                    index: item.index,
                    meta: item.meta,
                    image,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// batch: `batch_size` decoded images (or their errors) at a time, in order.
fn batch_stage(
    mut decoding: mpsc::Receiver<Decoding>,
    batch_size: usize,
) -> (mpsc::Receiver<Vec<Decoded>>, tokio::task::JoinHandle<f64>) {
    let (tx, rx) = mpsc::channel(2);
    let handle = tokio::spawn(async move {
        let mut waited = Duration::ZERO;
        let mut batch = Vec::with_capacity(batch_size);
        loop {
            let t = Instant::now();
            let next = decoding.recv().await;
            let Some(d) = next else { break };
            let image = match d.image {
                Ok(rx) => match rx.await {
                    Ok(Ok(prepared)) => Ok(prepared),
                    Ok(Err(e)) => Err(BadInput {
                        object: d.meta.name.clone(),
                        kind: e.kind().into(),
                        message: e.to_string(),
                    }),
                    Err(_) => Err(BadInput {
                        object: d.meta.name.clone(),
                        kind: "decode".into(),
                        message: "decoder panicked".into(),
                    }),
                },
                Err(bad) => Err(bad),
            };
            waited += t.elapsed();
            batch.push(Decoded {
                index: d.index,
                meta: d.meta,
                image,
            });
            if batch.len() >= batch_size.max(1)
                && tx.send(std::mem::take(&mut batch)).await.is_err()
            {
                return waited.as_secs_f64();
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        waited.as_secs_f64()
    });
    (rx, handle)
}

/// infer: one forward pass per batch, off the async runtime.
fn infer_stage(
    mut batches: mpsc::Receiver<Vec<Decoded>>,
    classifier: Arc<Classifier>,
    top_k: usize,
    delay: Duration,
) -> (
    mpsc::Receiver<Vec<Scored>>,
    tokio::task::JoinHandle<Result<f64>>,
) {
    let (tx, rx) = mpsc::channel(2);
    let handle = tokio::spawn(async move {
        let mut busy = Duration::ZERO;
        while let Some(batch) = batches.recv().await {
            let classifier = classifier.clone();
            let t = Instant::now();
            let scored =
                tokio::task::spawn_blocking(move || score_batch(&classifier, batch, top_k))
                    .await
                    .map_err(|e| anyhow!("inference task: {e}"))??;
            busy += t.elapsed();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(scored).await.is_err() {
                break;
            }
        }
        Ok(busy.as_secs_f64())
    });
    (rx, handle)
}

fn score_batch(classifier: &Classifier, batch: Vec<Decoded>, top_k: usize) -> Result<Vec<Scored>> {
    let mut images = Vec::new();
    let mut slots = Vec::with_capacity(batch.len());
    for d in batch {
        match d.image {
            Ok(img) => {
                images.push(img);
                slots.push((d.index, d.meta, None));
            }
            Err(bad) => slots.push((d.index, d.meta, Some(bad))),
        }
    }
    let mut predictions = classifier
        .classify(&images, top_k)
        .context("model forward pass")?
        .into_iter();
    Ok(slots
        .into_iter()
        .map(|(index, meta, bad)| Scored {
            index,
            result: match bad {
                Some(b) => Err(b),
                None => Ok(Classified {
                    image_id: meta.stem().to_string(),
                    object: meta.name,
                    predictions: predictions.next().unwrap_or_default(),
                }),
            },
        })
        .collect())
}

/// write: rows accumulate into parts of `part_size` shard positions; each part is committed
/// whole (errors, then results) once every position in it has an outcome.
async fn write_stage(
    mut scored: mpsc::Receiver<Vec<Scored>>,
    store: Arc<dyn Store>,
    layout: Layout,
    config: &JobConfig,
    resume_at: usize,
    len: usize,
    progress: &Progress,
) -> Result<(u64, u64, f64)> {
    let part_size = config.part_size.max(1);
    let mut part: Range<usize> = resume_at..(resume_at + part_size).min(len);
    let mut good: Vec<Classified> = Vec::new();
    let mut bad: Vec<BadInput> = Vec::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut busy = Duration::ZERO;
    let mut next = resume_at;
    while let Some(batch) = scored.recv().await {
        for s in batch {
            if s.index != next {
                bail!(
                    "internal error: position {} arrived, {next} expected",
                    s.index
                );
            }
            next += 1;
            match s.result {
                Ok(c) => {
                    ok += 1;
                    good.push(c);
                }
                Err(b) => {
                    failed += 1;
                    tracing::debug!(object = %b.object, kind = %b.kind, "bad input: {}", b.message);
                    bad.push(b);
                }
            }
            progress.add(1);
            if next == part.end {
                let t = Instant::now();
                let results = Bytes::from(output::rows(config.format, config.top_k, &good));
                let errors = Bytes::from(output::error_rows(&bad));
                output::commit_part(store.as_ref(), &layout, &part, results, errors)
                    .await
                    .with_context(|| format!("committing part {part:?}"))?;
                busy += t.elapsed();
                good.clear();
                bad.clear();
                part = part.end..(part.end + part_size).min(len);
            }
        }
    }
    if next != len {
        bail!("the input stream stopped at position {next} of {len}");
    }
    Ok((ok, failed, busy.as_secs_f64()))
}

async fn committed_parts(store: &Arc<dyn Store>, layout: &Layout) -> Result<Vec<Range<usize>>> {
    let names = list_names(store, &layout.parts_dir()).await?;
    Ok(names.iter().filter_map(|n| layout.parse_part(n)).collect())
}

/// Every object name under `prefix` (the run's own objects: no temporary-prefix filter).
async fn list_names(store: &Arc<dyn Store>, prefix: &str) -> Result<Vec<String>> {
    let options = ListOptions {
        temp_prefix: String::new(),
        ..Default::default()
    };
    let listing = list(store, prefix, &options).await?;
    Ok(listing.objects.into_iter().map(|o| o.name).collect())
}

/// Concatenates the committed parts into the rank's final files; returns (ok, failed).
async fn finalize(
    store: &Arc<dyn Store>,
    layout: &Layout,
    config: &JobConfig,
) -> Result<(u64, u64)> {
    let (_, parts) = output::committed_end(committed_parts(store, layout).await?);
    let mut results = output::header(config.format, config.top_k);
    let mut errors = output::ERRORS_HEADER.to_vec();
    let (mut ok, mut failed) = (0u64, 0u64);
    for p in &parts {
        let r = store.get(&layout.part(p), None).await?;
        let e = store.get(&layout.errors_part(p), None).await?;
        ok += count_records(&r, config.format);
        failed += count_records(&e, Format::Csv);
        results.extend_from_slice(&r);
        errors.extend_from_slice(&e);
    }
    store
        .put(&layout.results(), Bytes::from(results), PutMode::Overwrite)
        .await?;
    store
        .put(&layout.errors(), Bytes::from(errors), PutMode::Overwrite)
        .await?;
    Ok((ok, failed))
}

fn count_records(bytes: &[u8], format: Format) -> u64 {
    match format {
        Format::Jsonl => bytes.iter().filter(|&&b| b == b'\n').count() as u64,
        Format::Csv => csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes)
            .records()
            .count() as u64,
    }
}

async fn delete_parts(store: &Arc<dyn Store>, layout: &Layout) -> Result<()> {
    for name in list_names(store, &layout.parts_dir()).await? {
        store.delete(&name).await?;
    }
    Ok(())
}

async fn exists(store: &dyn Store, name: &str) -> Result<bool> {
    match store.head(name).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    store: &dyn Store,
    name: &str,
) -> Result<Option<T>> {
    match store.get(name, None).await {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("reading {name}"))?,
        )),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The final summary for a person at a terminal.
pub fn summary_table(rank: &RankSummary, job: Option<&JobSummary>) -> String {
    let mut s = String::new();
    let rate = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    s.push_str(&format!("rank {} summary\n", rank.rank));
    s.push_str(&format!("  images in shard   {:>10}\n", rank.shard_images));
    s.push_str(&format!("  classified        {:>10}\n", rank.images_ok));
    s.push_str(&format!("  bad inputs        {:>10}\n", rank.images_failed));
    s.push_str(&format!("  resumed (skipped) {:>10}\n", rank.resumed));
    s.push_str(&format!("  wall time         {:>10.2} s\n", rank.wall_secs));
    let processed =
        rank.images_ok + rank.images_failed - rank.resumed.min(rank.images_ok + rank.images_failed);
    s.push_str(&format!(
        "  throughput        {:>10.1} images/s\n",
        rate(processed, rank.wall_secs)
    ));
    let st = &rank.stages;
    s.push_str(&format!(
        "  stages (busy s)   list {:.2}, model load {:.2}, waiting for input {:.2}, infer {:.2}, write {:.2}\n",
        st.list, st.load_model, st.wait_input, st.infer, st.write
    ));
    s.push_str(&format!("  input requests    {}\n", rank.requests));
    if let Some(job) = job {
        s.push_str(&format!(
            "job {}: {} ranks, {} images, {} classified, {} bad, {:.2} s, {:.1} images/s\n",
            job.run_id,
            job.world_size,
            job.images,
            job.images_ok,
            job.images_failed,
            job.wall_secs,
            job.images_per_sec
        ));
    }
    s
}
