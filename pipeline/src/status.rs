//! A run's state read from its bookkeeping in the output bucket, from any machine and while
//! the ranks work: chunks committed, claimed (by which rank, how long since its lease was
//! renewed), lapsed and free; rows and bad inputs so far; the recent rate and the time left;
//! whether the run finished. Nothing is written. This is what `dataflux status` prints.
//!
//! Lease ages compare the store's timestamps with this machine's clock, so they are as right
//! as the two clocks agree; the job itself never does that (see the `claims` module's notes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dataflux::Store;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::plan::Index;
use crate::setting::Setting;
use crate::spec::OutputFormat;
use crate::store_ops::{self, store_call};
use crate::summary::JobSummary;

/// How far back the recent rate looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(300);

/// Commit headers read at once.
const READ_CONCURRENCY: usize = 16;

/// A chunk someone holds, or held until their lease lapsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimView {
    /// The chunk.
    pub chunk: usize,
    /// Which attempt at the chunk this claim is (0 first; more after takeovers).
    pub attempt: u32,
    /// The rank that claimed it, if its claim says.
    pub rank: Option<usize>,
    /// The claiming process (a fresh id per process).
    pub holder: Option<String>,
    /// Seconds since the claim was last written (claimed or renewed).
    pub lease_age_secs: Option<f64>,
}

/// What a run's bookkeeping says now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// The run id.
    pub run_id: String,
    /// Output shards, chunks and images once finished: the job summary.
    pub finished: Option<JobSummary>,
    /// Chunks in the plan.
    pub chunks: usize,
    /// Images in the plan.
    pub images: u64,
    /// Images per chunk (the last may hold fewer).
    pub chunk_size: usize,
    /// When the plan was written (the run's start).
    pub started: Option<DateTime<Utc>>,
    /// Chunks with a commit.
    pub committed: usize,
    /// Chunks under a live claim.
    pub claimed: Vec<ClaimView>,
    /// Chunks whose claim has lapsed (older than the lease), not yet taken over.
    pub lapsed: Vec<ClaimView>,
    /// Chunks nobody holds (never claimed, or given back).
    pub free: usize,
    /// Images in the committed chunks.
    pub images_committed: u64,
    /// Rows in the committed chunks.
    pub rows: u64,
    /// Error rows (bad inputs) in the committed chunks.
    pub bad: u64,
    /// Images committed per second over the last [`RATE_WINDOW`] (or since the start).
    pub images_per_sec: Option<f64>,
    /// Seconds left at that rate.
    pub eta_secs: Option<f64>,
    /// The most recent commit.
    pub last_commit: Option<DateTime<Utc>>,
}

impl RunStatus {
    /// Whether the run has finished (its job summary exists).
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }
}

/// The run ids with a plan under `prefix` (an output prefix in folder form, `out/` or
/// empty), the most recently started last.
pub async fn runs(store: &Arc<dyn Store>, prefix: &str, deadline: Duration) -> Result<Vec<String>> {
    let dir = format!("{prefix}_dataflux/");
    let options = dataflux::ListOptions::default().with_temp_prefix(String::new());
    let listed = store_call(deadline, "listing the runs", || async {
        match dataflux::list(store, &dir, &options).await {
            Ok(l) => Ok(l.objects),
            // No such folder (a local output never written): no runs.
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    })
    .await?;
    let mut found: Vec<(Option<DateTime<Utc>>, String)> = listed
        .into_iter()
        .filter_map(|o| {
            let run = o.name.strip_prefix(&dir)?.strip_suffix("/index.json")?;
            (!run.contains('/')).then(|| (o.updated, run.to_string()))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, r)| r).collect())
}

/// Reads run `run_id`'s state under `prefix`; claims older than `lease` count as lapsed.
/// [`Error::Config`] names `--run-id` when the run has no plan there.
pub async fn read(
    store: &Arc<dyn Store>,
    prefix: &str,
    run_id: &str,
    lease: Duration,
    deadline: Duration,
) -> Result<RunStatus> {
    let layout = Layout {
        prefix: prefix.to_string(),
        run_id: run_id.to_string(),
        // The format only names result files, which are not read here.
        format: OutputFormat::Csv,
    };
    let now = Utc::now();
    // The summary first: a finished run's commits and claims are gone.
    let summary_name = layout.job_summary();
    let summary = store_call(deadline, "reading the job summary", || {
        store_ops::get_or_none(store.as_ref(), &summary_name)
    })
    .await?;
    let index_name = layout.index();
    let index_meta = store_call(deadline, "reading the run's plan", || async {
        match store.head(&index_name).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await?;
    let index_bytes = store_call(deadline, "reading the run's plan", || {
        store_ops::get_or_none(store.as_ref(), &index_name)
    })
    .await?;
    let Some(index_bytes) = index_bytes else {
        return Err(Error::Config {
            setting: Setting::RunId,
            reason: format!("no run {run_id} at {}", store.object_url(&layout.run_dir())),
        });
    };
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| Error::Corrupt {
        location: store.object_url(&index_name),
        reason: e.to_string(),
    })?;
    let finished = match summary {
        Some(bytes) => {
            Some(
                serde_json::from_slice::<JobSummary>(&bytes).map_err(|e| Error::Corrupt {
                    location: store.object_url(&summary_name),
                    reason: e.to_string(),
                })?,
            )
        }
        None => None,
    };
    let chunks = index.chunks();
    let mut status = RunStatus {
        run_id: run_id.to_string(),
        finished,
        chunks,
        images: index.count as u64,
        chunk_size: index.chunk_size,
        started: index_meta.and_then(|m| m.updated),
        committed: 0,
        claimed: Vec::new(),
        lapsed: Vec::new(),
        free: 0,
        images_committed: 0,
        rows: 0,
        bad: 0,
        images_per_sec: None,
        eta_secs: None,
        last_commit: None,
    };
    if let Some(summary) = &status.finished {
        status.committed = chunks;
        status.images_committed = status.images;
        status.rows = summary.images_ok;
        status.bad = summary.images_failed;
        status.eta_secs = Some(0.0);
        return Ok(status);
    }

    // Commits: which chunks, when, and their counts (each header is read with a short ranged
    // read).
    let commits: Vec<(usize, dataflux::ObjectMeta)> =
        store_ops::list_all(store, &layout.commits_dir(), deadline)
            .await?
            .into_iter()
            .filter_map(|o| Some((layout.parse_commit(&o.name).filter(|&c| c < chunks)?, o)))
            .collect();
    let headers: Vec<Result<(u64, u64)>> = futures::stream::iter(commits.iter())
        .map(|(_, o)| read_commit_counts(store, o, deadline))
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    for counts in headers {
        let (ok, failed) = counts?;
        status.rows += ok;
        status.bad += failed;
    }
    let mut committed = vec![false; chunks];
    let window_start = now - chrono::Duration::from_std(RATE_WINDOW).unwrap_or_default();
    let mut recent_images = 0u64;
    for (c, o) in &commits {
        committed[*c] = true;
        let images = index.chunk_range(*c).len() as u64;
        status.images_committed += images;
        if let Some(t) = o.updated {
            status.last_commit = status.last_commit.max(Some(t));
            if t >= window_start {
                recent_images += images;
            }
        }
    }
    status.committed = committed.iter().filter(|&&c| c).count();

    // Claims: the latest attempt of each chunk not committed.
    let mut latest: BTreeMap<usize, (u32, dataflux::ObjectMeta)> = BTreeMap::new();
    for o in store_ops::list_all(store, &layout.claims_dir(), deadline).await? {
        let Some((c, attempt)) = layout.parse_claim(&o.name) else {
            continue;
        };
        if c >= chunks || committed[c] {
            continue;
        }
        match latest.get(&c) {
            Some((a, _)) if *a >= attempt => {}
            _ => {
                latest.insert(c, (attempt, o));
            }
        }
    }
    let lease = chrono::Duration::from_std(lease).unwrap_or_default();
    let views: Vec<(bool, ClaimView)> = futures::stream::iter(latest)
        .filter_map(|(chunk, (attempt, o))| async move {
            // An emptied claim was given back: the chunk is free.
            if o.size == 0 {
                return None;
            }
            let body = store_call(deadline, "reading a claim", || {
                store_ops::get_or_none(store.as_ref(), &o.name)
            })
            .await
            .ok()
            .flatten();
            let body = body.and_then(|b| crate::claims::read_claim(&b));
            let live = o.updated.is_none_or(|t| t + lease >= now);
            Some((
                live,
                ClaimView {
                    chunk,
                    attempt,
                    rank: body.as_ref().map(|b| b.1),
                    holder: body.map(|b| b.0),
                    lease_age_secs: o
                        .updated
                        .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                },
            ))
        })
        .collect()
        .await;
    for (live, view) in views {
        if live {
            status.claimed.push(view);
        } else {
            status.lapsed.push(view);
        }
    }
    status.free = chunks - status.committed - status.claimed.len() - status.lapsed.len();

    // The recent rate: images committed in the window, over the window (or the time since
    // the run started, if shorter).
    let span = status
        .started
        .map(|s| (now - s).max(chrono::Duration::zero()))
        .map_or(RATE_WINDOW.as_secs_f64(), |d| {
            (d.num_milliseconds() as f64 / 1000.0).min(RATE_WINDOW.as_secs_f64())
        });
    if span >= 1.0 && recent_images > 0 {
        let rate = recent_images as f64 / span;
        status.images_per_sec = Some(rate);
        status.eta_secs = Some((status.images - status.images_committed) as f64 / rate);
    }
    Ok(status)
}

/// A commit's row and error-row counts, from its header line.
async fn read_commit_counts(
    store: &Arc<dyn Store>,
    object: &dataflux::ObjectMeta,
    deadline: Duration,
) -> Result<(u64, u64)> {
    let head = store_call(deadline, "reading a commit", || async {
        match store.get(&object.name, Some(0..object.size.min(512))).await {
            Ok(b) => Ok(Some(b)),
            // Removed since the listing: the run is finishing.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await?;
    let Some(head) = head else { return Ok((0, 0)) };
    crate::commit_format::read_counts(&head).map_err(|e| Error::Corrupt {
        location: store.object_url(&object.name),
        reason: format!("commit header: {e}"),
    })
}
