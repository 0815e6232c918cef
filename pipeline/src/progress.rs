//! How far a running job has got, for a live display or periodic progress lines: this rank's
//! counts as they happen, and the whole job's as last seen in the run's bookkeeping (each
//! look at the claims and commits, by the claim stage or every [`Progress::with_refresh`]).
//!
//! A [`Progress`] is a cheap handle: the caller keeps one clone, hands another to
//! [`crate::Job::run_observed`], and reads [`Progress::snapshot`] whenever it draws.
//!
//! ```
//! use dataflux_pipeline::Progress;
//! let progress = Progress::default();
//! let s = progress.snapshot();
//! assert_eq!((s.rank_images, s.images_total), (0, None));
//! assert!(s.eta.is_none());
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a stretch the rates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The whole job's chunks, as one look at the run's bookkeeping found them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobTally {
    /// Chunks with a commit.
    pub committed: usize,
    /// Chunks under a live claim, not committed.
    pub claimed: usize,
    /// Chunks whose claim has lapsed (a rank died or stalled), not committed.
    pub lapsed: usize,
    /// Chunks nobody has claimed, or given back.
    pub free: usize,
    /// Images in the committed chunks.
    pub images_committed: u64,
}

/// One reading of a [`Progress`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ProgressSnapshot {
    /// Since this rank started.
    pub elapsed: Duration,
    /// Images in the run's plan (`None` until the plan is known).
    pub images_total: Option<u64>,
    /// Chunks in the run's plan (`None` until the plan is known).
    pub chunks_total: Option<u64>,
    /// Images this rank has run (a row or an error row), committed or not.
    pub rank_images: u64,
    /// Of those, bad inputs (error rows).
    pub rank_bad: u64,
    /// Chunks this rank has committed.
    pub rank_chunks: u64,
    /// This rank's images per second over the last minute.
    pub rank_rate: f64,
    /// The whole job's chunks, as last seen (`None` before the first look).
    pub job: Option<JobTally>,
    /// Images done in the whole job: the committed chunks' as last seen, plus what this rank
    /// has run since.
    pub job_images: u64,
    /// The whole job's images per second over the last minute (`None` until measurable).
    pub job_rate: Option<f64>,
    /// Time left at `job_rate` (`None` until both the plan and a rate are known).
    pub eta: Option<Duration>,
}

/// A live view of one rank's job (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    inner: Arc<Mutex<State>>,
    refresh: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    started: Option<Instant>,
    images_total: Option<u64>,
    chunks_total: Option<u64>,
    rank_images: u64,
    rank_bad: u64,
    rank_chunks: u64,
    job: Option<JobTally>,
    /// `rank_images` when `job` was last seen.
    rank_images_at_tally: u64,
    /// (when, rank images, job images), oldest first, within [`RATE_WINDOW`].
    samples: VecDeque<(Instant, u64, u64)>,
}

impl Progress {
    /// A progress handle whose job also looks at the whole run's bookkeeping every `every`
    /// (two listings and one existence check per look), besides the looks the claim stage
    /// takes anyway. Without it the job view only changes when the claim stage looks.
    #[must_use]
    pub fn with_refresh(mut self, every: Duration) -> Self {
        self.refresh = Some(every).filter(|d| !d.is_zero());
        self
    }

    /// How often the job refreshes the whole run's view, if it does.
    pub fn refresh(&self) -> Option<Duration> {
        self.refresh
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut s| f(&mut s))
    }

    /// The run's plan is known.
    pub(crate) fn plan(&self, chunks: usize, images: usize) {
        self.with_state(|s| {
            s.started.get_or_insert_with(Instant::now);
            s.chunks_total = Some(chunks as u64);
            s.images_total = Some(images as u64);
        });
    }

    /// This rank has run one image (`bad`: it has an error row).
    pub(crate) fn image(&self, bad: bool) {
        self.with_state(|s| {
            s.rank_images += 1;
            s.rank_bad += u64::from(bad);
        });
    }

    /// This rank has committed a chunk.
    pub(crate) fn chunk_committed(&self) {
        self.with_state(|s| s.rank_chunks += 1);
    }

    /// A look at the run's bookkeeping found `tally`.
    pub(crate) fn tally(&self, tally: JobTally) {
        self.with_state(|s| {
            s.job = Some(tally);
            s.rank_images_at_tally = s.rank_images;
        });
    }

    /// Reads the counts now (and records them for the rates).
    pub fn snapshot(&self) -> ProgressSnapshot {
        let now = Instant::now();
        self.with_state(|s| {
            let started = *s.started.get_or_insert(now);
            let job_images = match s.job {
                Some(t) => {
                    let since = s.rank_images.saturating_sub(s.rank_images_at_tally);
                    let done = t.images_committed + since;
                    s.images_total.map_or(done, |total| done.min(total))
                }
                None => s.rank_images,
            };
            s.samples.push_back((now, s.rank_images, job_images));
            while s
                .samples
                .front()
                .is_some_and(|(t, ..)| now.duration_since(*t) > RATE_WINDOW)
                && s.samples.len() > 2
            {
                s.samples.pop_front();
            }
            let rate = |pick: fn(&(Instant, u64, u64)) -> u64| -> Option<f64> {
                let first = s.samples.front()?;
                let last = s.samples.back()?;
                let secs = last.0.duration_since(first.0).as_secs_f64();
                (secs >= 1.0).then(|| pick(last).saturating_sub(pick(first)) as f64 / secs)
            };
            let rank_rate = rate(|x| x.1).unwrap_or(0.0);
            let job_rate = rate(|x| x.2);
            let eta = match (s.images_total, job_rate) {
                (Some(total), _) if job_images >= total => Some(Duration::ZERO),
                (Some(total), Some(r)) if r > 0.0 => Some(Duration::from_secs_f64(
                    ((total - job_images) as f64 / r).min(1e9),
                )),
                _ => None,
            };
            ProgressSnapshot {
                elapsed: now.duration_since(started),
                images_total: s.images_total,
                chunks_total: s.chunks_total,
                rank_images: s.rank_images,
                rank_bad: s.rank_bad,
                rank_chunks: s.rank_chunks,
                rank_rate,
                job: s.job,
                job_images,
                job_rate,
                eta,
            }
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_images_add_this_ranks_work_since_the_last_look() {
        let p = Progress::default();
        p.plan(4, 40);
        for _ in 0..5 {
            p.image(false);
        }
        p.tally(JobTally {
            committed: 2,
            claimed: 1,
            lapsed: 0,
            free: 1,
            images_committed: 20,
        });
        p.image(true);
        p.image(false);
        let s = p.snapshot();
        assert_eq!((s.rank_images, s.rank_bad), (7, 1));
        assert_eq!(s.job_images, 22);
        assert_eq!((s.images_total, s.chunks_total), (Some(40), Some(4)));
        assert_eq!(s.job.map(|j| j.free), Some(1));
    }

    #[test]
    fn a_finished_job_has_no_time_left_and_never_counts_past_the_plan() {
        let p = Progress::default();
        p.plan(1, 3);
        p.tally(JobTally {
            committed: 1,
            images_committed: 3,
            ..Default::default()
        });
        p.image(false);
        let s = p.snapshot();
        assert_eq!(s.job_images, 3);
        assert_eq!(s.eta, Some(Duration::ZERO));
    }

    #[test]
    fn a_zero_refresh_means_none() {
        assert_eq!(
            Progress::default().with_refresh(Duration::ZERO).refresh(),
            None
        );
        assert_eq!(
            Progress::default()
                .with_refresh(Duration::from_secs(3))
                .refresh(),
            Some(Duration::from_secs(3))
        );
    }
}
