//! [`Job::run`]: one process's part of a run, from the plan to the outputs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataflux::{DatasetConfig, FetchOptions, Fetcher, ListOptions, PutMode, Store};
use dataflux_distributed::Topology;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::claims::Claims;
use crate::cpu_pool::{panic_message, CpuPool};
use crate::error::{Error, Result};
use crate::finalize::Finalizer;
use crate::layout::Layout;
use crate::model::{BatchModel, Column, ColumnKind};
use crate::plan::Planner;
use crate::progress::Progress;
use crate::run_store::RunStore;
use crate::setting::Setting;
use crate::spec::{default_run_id, JobSpec};
use crate::stages::commit::{CommitConfig, CommitCounts};
use crate::stages::{batch, claim, commit, decode, fetch, infer};
use crate::store_ops::store_call;
use crate::summary::{Finished, Outcome, RankSummary, StageTimes};

/// A partial batch leaves after this long without a new item.
const BATCH_LINGER: Duration = Duration::from_millis(100);

/// The stores a job reads and writes (opened from the spec's locations by [`Job::run`];
/// given directly, for example wrapped in a fault-injecting store, to [`Job::run_on`]).
#[derive(Debug, Clone)]
pub struct Stores {
    /// Where the images are.
    pub input: Arc<dyn Store>,
    /// Where results (and the run's bookkeeping) go.
    pub output: Arc<dyn Store>,
}

/// The batch job.
#[derive(Debug)]
pub struct Job;

/// The job's tasks, as the supervisor knows them: the six stages of the diagram, the lease
/// renewer, and the progress view's look at the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Claim,
    Fetch,
    Decode,
    Batch,
    Infer,
    Commit,
    Renew,
    Progress,
}

impl Stage {
    /// The name errors give the stage.
    fn name(self) -> &'static str {
        match self {
            Stage::Claim => "claim",
            Stage::Fetch => "fetch",
            Stage::Decode => "decode",
            Stage::Batch => "batch",
            Stage::Infer => "infer",
            Stage::Commit => "commit",
            Stage::Renew => "renew",
            Stage::Progress => "progress",
        }
    }
}

/// Every spawned task of a job, each known by its stage; all are joined before the job ends.
#[derive(Default)]
struct Tasks {
    set: JoinSet<Result<StageOut>>,
    stages: HashMap<tokio::task::Id, Stage>,
}

impl Tasks {
    /// Spawns `stage`'s task.
    fn spawn(
        &mut self,
        stage: Stage,
        task: impl std::future::Future<Output = Result<StageOut>> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.stages.insert(id, stage);
    }

    /// Which stage task `id` runs.
    fn stage(&self, id: tokio::task::Id) -> Option<Stage> {
        self.stages.get(&id).copied()
    }
}

enum StageOut {
    Done,
    Busy(Duration),
    Counts(CommitCounts),
}

impl Job {
    /// Runs this process's part of the job described by `spec` with `model`, as `topology`'s
    /// rank: [`Job::preflight`], then [`Job::run_on`].
    pub async fn run<M: BatchModel>(
        spec: &JobSpec,
        model: Arc<M>,
        topology: &Topology,
        cancel: CancellationToken,
    ) -> Result<Outcome> {
        let stores = Self::preflight(spec).await?;
        Self::run_on(stores, spec, model, topology, cancel).await
    }

    /// What can be checked before any work (before a model is even loaded): the settings,
    /// that the input opens and that the output can be written. Returns the opened stores.
    pub async fn preflight(spec: &JobSpec) -> Result<Stores> {
        spec.validate()?;
        // The job's deadline is its stores' retry policy: the one retry layer.
        let retry = dataflux::RetryPolicy::default().with_deadline(spec.store_deadline);
        let input = spec
            .input
            .open_with_retry(retry)
            .await
            .map_err(|e| Error::Config {
                setting: Setting::Input,
                reason: format!("{}: {e}", spec.input.url),
            })?;
        let output = spec
            .output
            .open_for_write_with_retry(retry)
            .await
            .map_err(|source| Error::OutputNotWritable {
                location: spec.output.url.clone(),
                source,
            })?;
        check_writable(
            &output,
            &spec.output.prefix,
            spec.store_deadline,
            &spec.output.url,
        )
        .await?;
        Ok(Stores { input, output })
    }

    /// The run id `spec` and `model` run under: the spec's, else one derived from what
    /// defines the results (never from the world size).
    pub fn run_id<M: BatchModel>(spec: &JobSpec, model: &M) -> String {
        spec.run_id
            .clone()
            .unwrap_or_else(|| default_run_id(&spec.definition(model.task(), model.definition())))
    }

    /// Runs the job over given stores (`spec.input`'s and `spec.output`'s prefixes apply).
    ///
    /// Cancelling `cancel` (SIGTERM) stops claiming; chunks in flight get `spec.grace` to
    /// commit, then are released; the result is then [`Outcome::Interrupted`].
    pub async fn run_on<M: BatchModel>(
        stores: Stores,
        spec: &JobSpec,
        model: Arc<M>,
        topology: &Topology,
        cancel: CancellationToken,
    ) -> Result<Outcome> {
        let progress = Progress::default();
        Self::run_observed(stores, spec, model, topology, cancel, &progress).await
    }

    /// [`Job::run_on`], telling `progress` how far this rank and the whole job have got
    /// (for a live display or progress lines; see [`Progress`]).
    pub async fn run_observed<M: BatchModel>(
        stores: Stores,
        spec: &JobSpec,
        model: Arc<M>,
        topology: &Topology,
        cancel: CancellationToken,
        progress: &Progress,
    ) -> Result<Outcome> {
        let wall = Instant::now();
        spec.validate()?;
        let definition = spec.definition(model.task(), model.definition());
        let run_id = Self::run_id(spec, model.as_ref());
        let layout = Layout {
            prefix: spec.output.prefix.clone(),
            run_id: run_id.clone(),
            format: spec.format,
        };
        let Stores { input, output } = stores;
        tracing::info!(rank = topology.rank, world_size = topology.world_size, %run_id, "starting");

        let t = Instant::now();
        let summary_name = layout.job_summary();
        let run = RunStore {
            store: output.clone(),
            layout: layout.clone(),
            deadline: spec.store_deadline,
            poll: spec.poll,
            wait_timeout: spec.wait_timeout,
        };
        let planner = Planner {
            input: &input,
            input_prefix: &spec.input.prefix,
            run: &run,
            definition: &definition,
            chunk_size: spec.chunk_size,
            chunk_bytes: spec.chunk_bytes,
            lister: topology.rank == 0,
        };
        // The plan (checked against this job's definition first) and whether the run has
        // finished, asked at once.
        let (index, finished) = tokio::join!(planner.index(), run.finished());
        let (index, finished) = (index?, finished?);
        progress.plan(index.chunks(), index.count);
        let mut stages = StageTimes {
            plan: t.elapsed().as_secs_f64(),
            ..Default::default()
        };
        if finished {
            let summary = output.object_url(&summary_name);
            tracing::info!("run {run_id} already finished ({summary}): nothing to do");
            return Ok(Outcome::AlreadyFinished { summary });
        }

        let claims = Arc::new(Claims::new(
            run.clone(),
            topology.rank,
            topology.world_size,
            index.chunks(),
            spec.lease,
        ));
        let pool = Arc::new(
            CpuPool::new(spec.decode_threads).map_err(|e| Error::Config {
                setting: Setting::DecodeThreads,
                reason: e.to_string(),
            })?,
        );
        let temp_prefix = ListOptions::default().temp_prefix;
        let fetcher = Arc::new(Fetcher::new(
            input.clone(),
            FetchOptions::default()
                .with_compose(spec.compose)
                .with_max_composite_bytes(spec.max_composite_bytes)
                // A group never exceeds the prefetch window.
                .with_max_object_bytes(spec.max_object_bytes.min(spec.prefetch_bytes))
                .with_temp_prefix(temp_prefix.clone())
                // Per process: a zombie never sweeps the live process's composites.
                .with_run_id(format!("{run_id}/{}", claims.holder()))
                .with_concurrency(spec.concurrency),
        ));
        let dataset_config = DatasetConfig::default()
            .with_concurrency(spec.concurrency)
            .with_prefetch_bytes(spec.prefetch_bytes);
        tracing::info!(
            chunks = index.chunks(),
            images = index.count,
            holder = claims.holder(),
            decode_threads = pool.threads(),
            "claiming chunks"
        );
        let before = input.stats().snapshot();

        // claim → fetch → decode → batch → infer → commit, one bounded channel between each.
        let (chunk_tx, chunk_rx) = mpsc::channel(1);
        let (bytes_tx, bytes_rx) = mpsc::channel(spec.batch_size.max(16));
        let (input_tx, input_rx) = mpsc::channel(spec.batch_size);
        let (batch_tx, batch_rx) = mpsc::channel(2);
        let (row_tx, row_rx) = mpsc::channel(2);
        let renew_stop = CancellationToken::new();
        let mut tasks = Tasks::default();
        let claim_config = claim::ClaimConfig {
            index: index.clone(),
            speculate: spec.speculate,
            progress: progress.clone(),
        };
        let queue = pool.threads() * 4;
        {
            let c = claims.clone();
            let stop = cancel.clone();
            tasks.spawn(Stage::Claim, async move {
                claim::run(claim_config, c, stop, chunk_tx)
                    .await
                    .map(|_| StageOut::Done)
            });
            let (f, c, stop, cfg) = (
                fetcher.clone(),
                claims.clone(),
                cancel.clone(),
                dataset_config,
            );
            // With videos sampled, larger objects are read by ranges as they are decoded.
            let remote_above = spec.video.map(|_| {
                crate::video::INLINE_BYTES
                    .min(spec.prefetch_bytes)
                    .min(spec.max_object_bytes)
            });
            tasks.spawn(Stage::Fetch, async move {
                fetch::run(f, cfg, remote_above, c, stop, chunk_rx, bytes_tx)
                    .await
                    .map(|_| StageOut::Done)
            });
            let (m, p) = (model.clone(), pool.clone());
            let decode_config = decode::DecodeConfig {
                queue,
                // One decoder thread per video: as many videos at once as the pool has
                // threads.
                max_videos: pool.threads(),
                video: spec.video.map(|sampling| crate::video::VideoConfig {
                    sampling,
                    max_object_bytes: spec.max_object_bytes,
                    handle: tokio::runtime::Handle::current(),
                }),
                store: input.clone(),
            };
            tasks.spawn(Stage::Decode, async move {
                decode::run(m, p, decode_config, bytes_rx, input_tx)
                    .await
                    .map(|_| StageOut::Done)
            });
            let size = spec.batch_size;
            tasks.spawn(Stage::Batch, async move {
                batch::run(size, BATCH_LINGER, input_rx, batch_tx)
                    .await
                    .map(|_| StageOut::Done)
            });
            let (m, delay) = (model.clone(), spec.batch_delay);
            tasks.spawn(Stage::Infer, async move {
                infer::run(m, delay, batch_rx, row_tx)
                    .await
                    .map(StageOut::Busy)
            });
            let cfg = CommitConfig {
                format: spec.format,
                columns: job_columns(spec, model.as_ref()),
                frames: spec.video.is_some(),
                deadline: spec.store_deadline,
                progress: progress.clone(),
            };
            let c = claims.clone();
            tasks.spawn(Stage::Commit, async move {
                commit::run(cfg, c, row_rx).await.map(StageOut::Counts)
            });
            let (c, stop, every) = (claims.clone(), renew_stop.clone(), spec.lease / 3);
            tasks.spawn(Stage::Renew, async move {
                // The store's clock first (takeovers wait for it), then renewals.
                c.tick_clock().await?;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(StageOut::Done),
                        _ = tokio::time::sleep(every) => c.renew().await,
                    }
                }
            });
            if let Some(every) = progress.refresh() {
                let (c, stop, p, index) = (
                    claims.clone(),
                    renew_stop.clone(),
                    progress.clone(),
                    index.clone(),
                );
                tasks.spawn(Stage::Progress, async move {
                        // The whole run's view for the display; a failed look is only skipped.
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return Ok(StageOut::Done),
                                _ = tokio::time::sleep(every) => {}
                            }
                            tokio::select! {
                                _ = stop.cancelled() => return Ok(StageOut::Done),
                                looked = claim::look(&c, &index, &p) => {
                                    if let Err(e) = looked {
                                        tracing::debug!(error = %e, "progress: could not look at the run's chunks");
                                    }
                                }
                            }
                        }
                    });
            }
        }

        // Supervise: the first error (or panic) ends the job; a stop request starts the grace.
        let mut counts = CommitCounts::default();
        let mut failure: Option<Error> = None;
        let mut grace_until: Option<tokio::time::Instant> = None;
        let mut timed_out = false;
        loop {
            let grace = async {
                match grace_until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                joined = tasks.set.join_next_with_id() => match joined {
                    None => break,
                    Some(Ok((id, Ok(out)))) => {
                        match out {
                            StageOut::Busy(d) => stages.infer = d.as_secs_f64(),
                            StageOut::Counts(c) => counts = c,
                            StageOut::Done => {}
                        }
                        if tasks.stage(id) == Some(Stage::Commit) {
                            renew_stop.cancel();
                        }
                    }
                    Some(Ok((_, Err(e)))) => {
                        failure = Some(e);
                        break;
                    }
                    Some(Err(join)) => {
                        let stage = tasks.stage(join.id()).map_or("a stage", Stage::name);
                        failure = Some(if join.is_panic() {
                            Error::StagePanicked { stage, message: panic_message(&*join.into_panic()) }
                        } else {
                            Error::Disconnected(stage)
                        });
                        break;
                    }
                },
                _ = cancel.cancelled(), if grace_until.is_none() => {
                    tracing::info!(grace_secs = spec.grace.as_secs_f64(), "stop requested: no new chunks; committing or releasing those in flight");
                    grace_until = Some(tokio::time::Instant::now() + spec.grace);
                }
                _ = grace => {
                    tracing::warn!("grace period over: releasing the chunks still in flight");
                    timed_out = true;
                    break;
                }
            }
        }
        if failure.is_some() || timed_out {
            tasks.set.abort_all();
            // Every task is joined; a real error is preferred to its knock-on effects.
            while let Some(joined) = tasks.set.join_next().await {
                if let Ok(Err(e)) = joined {
                    if matches!(failure, None | Some(Error::Disconnected(_))) {
                        failure = Some(e);
                    }
                }
            }
            claims.release_all().await;
        }
        fetcher.settle(Duration::from_secs(30)).await;
        let undeletable = fetcher.undeletable();
        if !undeletable.is_empty() {
            tracing::warn!(count = undeletable.len(), first = %undeletable[0], "composites the store would not delete are left behind");
        }
        if let Err(e) = fetcher.sweep().await {
            tracing::warn!(error = %e, "could not remove this process's composites (the run's end removes them)");
        }
        let requests = input.stats().snapshot().since(&before);
        let rank_summary = |stages: StageTimes| RankSummary {
            rank: topology.rank,
            world_size: topology.world_size,
            holder: claims.holder().to_string(),
            counts,
            wall_secs: wall.elapsed().as_secs_f64(),
            stages,
            requests,
            undeletable: undeletable.clone(),
        };
        if let Some(e) = failure {
            return Err(e);
        }
        if cancel.is_cancelled() {
            return Ok(Outcome::Interrupted {
                rank: Box::new(rank_summary(stages)),
            });
        }

        let t = Instant::now();
        let finalizer = Finalizer {
            input: &input,
            run: &run,
            index: &index,
            claims: &claims,
            format: spec.format,
            columns: &job_columns(spec, model.as_ref()),
            rank: topology.rank,
            world: topology.world_size,
            temp_prefix: &temp_prefix,
        };
        let finalized = finalizer
            .run(|| {
                let mut s = stages;
                s.finalize = t.elapsed().as_secs_f64();
                rank_summary(s)
            })
            .await?;
        stages.finalize = t.elapsed().as_secs_f64();
        match finalized {
            None => Ok(Outcome::AlreadyFinished {
                summary: output.object_url(&summary_name),
            }),
            Some((shards, job)) => Ok(Outcome::Finished(Box::new(Finished {
                rank: rank_summary(stages),
                shards,
                job,
            }))),
        }
    }
}

/// Writes and removes a probe object: an output that cannot be written is a configuration
/// error, found before any work.
async fn check_writable(
    output: &Arc<dyn Store>,
    prefix: &str,
    deadline: Duration,
    url: &str,
) -> Result<()> {
    let name = format!("{prefix}_dataflux/.probe-{}", uuid::Uuid::new_v4().simple());
    let probe = store_call(deadline, "probing the output", || {
        output.put(&name, Bytes::from_static(b"probe"), PutMode::Overwrite)
    })
    .await;
    match probe {
        Ok(_) => {}
        Err(Error::Store { source, .. }) => {
            return Err(Error::OutputNotWritable {
                location: url.to_string(),
                source,
            })
        }
        Err(e) => return Err(e),
    }
    store_call(deadline, "removing the output probe", || {
        output.delete(&name)
    })
    .await
}

/// The columns of the job's rows after `image_id`: with videos sampled, the sample's `frame`
/// and `time_s` first, then the model's.
fn job_columns<M: BatchModel>(spec: &JobSpec, model: &M) -> Vec<Column> {
    let mut columns = Vec::new();
    if spec.video.is_some() {
        columns.push(Column::new("frame", ColumnKind::Int64));
        columns.push(Column::new("time_s", ColumnKind::Seconds));
    }
    columns.extend(model.columns());
    columns
}
