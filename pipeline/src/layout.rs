//! The names of everything a run writes under the output prefix (`<run>`: the run id, `<c>`:
//! a chunk number, `<s>`: an output shard):
//!
//! - `_dataflux/<run>/index.json`: the run's definition and chunk plan (create-only, kept).
//! - `_dataflux/<run>/manifest/<listing>/<c>.json`: the listing, one object per chunk (kept).
//! - `_dataflux/<run>/claims/<c>.<attempt>`: leases on chunks (removed at the end).
//! - `_dataflux/<run>/commits/<c>`: a chunk's rows and error rows (create-only; removed at the end).
//! - `_dataflux/<run>/clock/<holder>`: each process's probe of the store's clock (removed).
//! - `_dataflux/<run>/final.json`: how many output shards the run has (create-only; removed).
//! - `results_<run>_shard_<s>.<ext>`, `errors_<run>_shard_<s>.csv`, `_SUCCESS_<run>_shard_<s>.json`.
//! - `_job_summary_<run>.json`: written last; its presence means the run is finished.

use crate::spec::OutputFormat;

/// Names of one run's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Output prefix, folder form (`out/` or empty).
    pub prefix: String,
    /// The run id.
    pub run_id: String,
    /// Result format (the results' file extension).
    pub format: OutputFormat,
}

impl Layout {
    /// The run's private folder.
    pub fn run_dir(&self) -> String {
        format!("{}_dataflux/{}/", self.prefix, self.run_id)
    }
    /// The run's index.
    pub fn index(&self) -> String {
        format!("{}index.json", self.run_dir())
    }
    /// The folder of one listing's chunk manifests.
    pub fn manifest_dir(&self, listing: &str) -> String {
        format!("{}manifest/{listing}/", self.run_dir())
    }
    /// One chunk's manifest.
    pub fn manifest_chunk(&self, listing: &str, chunk: usize) -> String {
        format!("{}{chunk:08}.json", self.manifest_dir(listing))
    }
    /// The claims folder.
    pub fn claims_dir(&self) -> String {
        format!("{}claims/", self.run_dir())
    }
    /// Claim `attempt` on `chunk`.
    pub fn claim(&self, chunk: usize, attempt: u32) -> String {
        format!("{}{chunk:08}.{attempt:05}", self.claims_dir())
    }
    /// Parses a claim name into `(chunk, attempt)`.
    ///
    /// ```
    /// use dataflux_pipeline::{Layout, OutputFormat};
    /// let l = Layout { prefix: "o/".into(), run_id: "r".into(), format: OutputFormat::Csv };
    /// assert_eq!(l.parse_claim(&l.claim(12, 3)), Some((12, 3)));
    /// assert_eq!(l.parse_claim("o/_dataflux/r/claims/x"), None);
    /// ```
    pub fn parse_claim(&self, name: &str) -> Option<(usize, u32)> {
        let (chunk, attempt) = name.strip_prefix(&self.claims_dir())?.split_once('.')?;
        Some((chunk.parse().ok()?, attempt.parse().ok()?))
    }
    /// The commits folder.
    pub fn commits_dir(&self) -> String {
        format!("{}commits/", self.run_dir())
    }
    /// The commit of `chunk`.
    pub fn commit(&self, chunk: usize) -> String {
        format!("{}{chunk:08}", self.commits_dir())
    }
    /// Parses a commit name into its chunk.
    pub fn parse_commit(&self, name: &str) -> Option<usize> {
        name.strip_prefix(&self.commits_dir())?.parse().ok()
    }
    /// The clock probes' folder.
    pub fn clock_dir(&self) -> String {
        format!("{}clock/", self.run_dir())
    }
    /// A process's clock probe.
    pub fn clock(&self, holder: &str) -> String {
        format!("{}{holder}", self.clock_dir())
    }
    /// The number of output shards, fixed by the first rank to finish.
    pub fn final_plan(&self) -> String {
        format!("{}final.json", self.run_dir())
    }
    /// Results of output shard `shard`.
    pub fn results(&self, shard: usize) -> String {
        format!(
            "{}results_{}_shard_{shard}.{}",
            self.prefix,
            self.run_id,
            self.format.extension()
        )
    }
    /// Error rows of output shard `shard`.
    pub fn errors(&self, shard: usize) -> String {
        format!("{}errors_{}_shard_{shard}.csv", self.prefix, self.run_id)
    }
    /// Output shard `shard` is written; its counts.
    pub fn success(&self, shard: usize) -> String {
        format!("{}_SUCCESS_{}_shard_{shard}.json", self.prefix, self.run_id)
    }
    /// The job summary, written last.
    pub fn job_summary(&self) -> String {
        format!("{}_job_summary_{}.json", self.prefix, self.run_id)
    }
}

/// The chunks of output shard `shard` of `shards` over `chunks` chunks: contiguous, in
/// order, disjoint, covering `0..chunks`.
///
/// ```
/// use dataflux_pipeline::layout::shard_chunks;
/// assert_eq!((0..3).map(|s| shard_chunks(s, 3, 10)).collect::<Vec<_>>(), [0..3, 3..6, 6..10]);
/// assert_eq!(shard_chunks(1, 2, 0), 0..0);
/// ```
pub fn shard_chunks(shard: usize, shards: usize, chunks: usize) -> std::ops::Range<usize> {
    let shards = shards.max(1);
    let at = |s: usize| s * chunks / shards;
    at(shard)..at(shard + 1)
}
