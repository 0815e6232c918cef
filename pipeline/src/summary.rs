//! What a job reports: per rank, per output shard, and for the whole run.

use serde::{Deserialize, Serialize};

use crate::stages::commit::CommitCounts;

/// Seconds spent per part of the job on this rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    /// Finding or making the run's plan (rank 0 lists the input).
    pub plan: f64,
    /// The model's forward passes.
    pub infer: f64,
    /// Writing the output shards (and, on rank 0, the summary and clean-up).
    pub finalize: f64,
}

/// What one process did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankSummary {
    /// Its rank.
    pub rank: usize,
    /// The world size it ran with.
    pub world_size: usize,
    /// Its id in claims (two processes of one rank have different ones).
    pub holder: String,
    /// Its commits.
    pub counts: CommitCounts,
    /// Wall time of this attempt.
    pub wall_secs: f64,
    /// Time per part.
    pub stages: StageTimes,
    /// Input requests by kind.
    pub requests: dataflux::StatsSnapshot,
    /// Composites the store refused to delete (retention, hold, permission), left behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeletable: Vec<String>,
}

/// One output shard: `results_<run>_shard_<shard>` and its errors file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// The shard.
    pub shard: usize,
    /// Output shards in the run.
    pub shards: usize,
    /// Its chunks, `[start, end)`.
    pub chunks: (usize, usize),
    /// Rows.
    pub images_ok: u64,
    /// Error rows.
    pub images_failed: u64,
}

/// The run's total, written last by rank 0 (`_job_summary_<run>.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The run id.
    pub run_id: String,
    /// Output shards (the world size of the attempt that first finished).
    pub shards: usize,
    /// Chunks.
    pub chunks: usize,
    /// Images listed.
    pub images: u64,
    /// Rows.
    pub images_ok: u64,
    /// Error rows.
    pub images_failed: u64,
    /// Rank 0's wall time in the attempt that finished.
    pub wall_secs: f64,
    /// Images per second over that time.
    pub images_per_sec: f64,
    /// Every shard.
    pub shard_summaries: Vec<ShardSummary>,
    /// Rank 0's own summary.
    pub rank0: RankSummary,
}

/// How [`crate::Job::run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run had finished before: nothing was done.
    AlreadyFinished {
        /// Where its summary is.
        summary: String,
    },
    /// Every chunk is committed and this rank wrote its output shards.
    Finished(Box<Finished>),
    /// Stopped on request (SIGTERM) before the run finished: in-flight chunks were committed
    /// within the grace period or released. Running the job again carries on.
    Interrupted {
        /// What this process did.
        rank: Box<RankSummary>,
    },
}

/// A finished rank's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// What this process did.
    pub rank: RankSummary,
    /// The output shards it wrote.
    pub shards: Vec<ShardSummary>,
    /// The run's total (rank 0).
    pub job: Option<JobSummary>,
}

impl Finished {
    /// Whether the shards this rank wrote (or, on rank 0, the whole run) have error rows.
    pub fn has_bad_inputs(&self) -> bool {
        self.shards.iter().any(|s| s.images_failed > 0)
            || self.job.as_ref().is_some_and(|j| j.images_failed > 0)
    }
}

/// The final summary for a person at a terminal.
pub fn summary_table(f: &Finished) -> String {
    let r = &f.rank;
    let c = &r.counts;
    let mut s = format!(
        "rank {} of {}: {} chunks committed ({} images, {} bad), {} discarded, {} released, {:.2} s\n",
        r.rank,
        r.world_size,
        c.chunks_committed,
        c.images_ok,
        c.images_failed,
        c.chunks_discarded,
        c.chunks_released,
        r.wall_secs
    );
    s.push_str(&format!(
        "  busy: plan {:.2} s, infer {:.2} s, finalize {:.2} s; input requests {}\n",
        r.stages.plan, r.stages.infer, r.stages.finalize, r.requests
    ));
    for sh in &f.shards {
        s.push_str(&format!(
            "  shard {} of {}: {} rows, {} error rows\n",
            sh.shard, sh.shards, sh.images_ok, sh.images_failed
        ));
    }
    if let Some(j) = &f.job {
        s.push_str(&format!(
            "job {}: {} images, {} with results, {} bad, {} shards, {:.2} s, {:.1} images/s\n",
            j.run_id,
            j.images,
            j.images_ok,
            j.images_failed,
            j.shards,
            j.wall_secs,
            j.images_per_sec
        ));
    }
    s
}
