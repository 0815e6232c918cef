//! The job's stages, in the order the data flows: `claim` → `fetch` → `decode` →
//! `batch` → `infer` → [`commit`]. Each is a function from a bounded channel to a bounded
//! channel, spawned into the job's one `JoinSet`: an error or a panic in any of them ends the
//! job with it, and no task outlives the job.

pub(crate) mod batch;
pub(crate) mod claim;
pub mod commit;
pub(crate) mod decode;
pub(crate) mod fetch;
pub(crate) mod infer;
