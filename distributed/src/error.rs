//! The one error type of the `dataflux-distributed` crate.

use std::time::Duration;

/// Errors returned by `dataflux-distributed`. Every variant names the variable, key, rank or
/// library involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable holds something that is not a number.
    #[error("environment variable {variable}={value:?} is not a non-negative integer")]
    NotANumber {
        /// The variable's name, e.g. `RANK`.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// A variable that the others require is not set.
    #[error("environment variable {variable} is not set, but {because}")]
    MissingVariable {
        /// The missing variable's name, e.g. `WORLD_SIZE`.
        variable: &'static str,
        /// Why it is needed, e.g. `RANK is set`.
        because: String,
    },
    /// Variables that are set but contradict each other (a rank not below its world size…).
    #[error("inconsistent topology: {variable}={value} {reason}")]
    Inconsistent {
        /// The variable at fault, e.g. `RANK`.
        variable: &'static str,
        /// Its value.
        value: usize,
        /// What it contradicts.
        reason: String,
    },
    /// A rendezvous key, barrier or gather name that cannot be used as an object name.
    #[error("invalid rendezvous name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A barrier or gather name was used twice by this process in one run.
    #[error("{operation} {name:?} was already used in this run; names must be unique per call site (add an index for loops)")]
    NameReused {
        /// `barrier` or `all_gather`.
        operation: &'static str,
        /// The reused name.
        name: String,
    },
    /// `set` found a different value already stored under the key.
    #[error("rendezvous key {key:?} already holds a different value ({existing} bytes, not the {attempted} bytes written by rank {rank})")]
    Conflict {
        /// The key.
        key: String,
        /// The rank that tried to write.
        rank: usize,
        /// Size of the stored value.
        existing: usize,
        /// Size of the value that was refused.
        attempted: usize,
    },
    /// Waiting for a key timed out.
    #[error("rendezvous key {key:?} at {location} did not appear within {waited:?}")]
    KeyTimeout {
        /// The key.
        key: String,
        /// The object that was polled, as a URL.
        location: String,
        /// How long this rank waited.
        waited: Duration,
    },
    /// A barrier or gather timed out because some ranks never arrived.
    #[error(
        "{operation} {name:?} timed out after {waited:?}: ranks {} of {world_size} never arrived",
        format_ranks(missing)
    )]
    RanksMissing {
        /// `barrier`, `all_gather` or `finish`.
        operation: &'static str,
        /// The barrier or gather name.
        name: String,
        /// The ranks that never arrived, ascending.
        missing: Vec<usize>,
        /// The world size.
        world_size: usize,
        /// How long this rank waited.
        waited: Duration,
    },
    /// The closure that produces a shared value failed.
    #[error("producing rendezvous value {key:?} failed: {source}")]
    Produce {
        /// The key being produced.
        key: String,
        /// The producer's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No run id in the environment.
    #[error("no rendezvous run id: set DATAFLUX_RUN_ID (the same value on every rank, unique per job, e.g. the Kubernetes Job's uid)")]
    MissingRunId,
    /// A shared library (libcuda, libnccl) could not be loaded.
    #[error("{library} could not be loaded: {reason}")]
    LibraryMissing {
        /// The library, e.g. `libnccl`.
        library: &'static str,
        /// What was tried.
        reason: String,
    },
    /// A CUDA driver or NCCL call failed.
    #[error("{operation} failed on rank {rank}: {message}")]
    Device {
        /// What was attempted, e.g. `ncclCommInitRank`.
        operation: &'static str,
        /// The calling rank.
        rank: usize,
        /// The library's message.
        message: String,
    },
    /// The launcher could not start or signal a child process.
    #[error("launching local rank {local_rank} ({command:?}) failed: {source}")]
    Spawn {
        /// The command that was run.
        command: String,
        /// The child's local rank.
        local_rank: usize,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The launcher could not install its signal handlers.
    #[error("installing the {signal} handler failed: {source}")]
    Signal {
        /// `SIGTERM` or `SIGINT`.
        signal: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An object-store request failed.
    #[error(transparent)]
    Store(#[from] dataflux::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// At most this many ranks are spelled out in a message.
const RANKS_SHOWN: usize = 32;

fn format_ranks(ranks: &[usize]) -> String {
    let shown: Vec<String> = ranks
        .iter()
        .take(RANKS_SHOWN)
        .map(usize::to_string)
        .collect();
    let mut out = format!("[{}", shown.join(", "));
    if ranks.len() > RANKS_SHOWN {
        out.push_str(&format!(", … {} more", ranks.len() - RANKS_SHOWN));
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ranks_are_named_and_long_lists_cut() {
        let e = Error::RanksMissing {
            operation: "barrier",
            name: "listing".into(),
            missing: vec![3, 5],
            world_size: 8,
            waited: Duration::from_secs(2),
        };
        assert_eq!(
            e.to_string(),
            "barrier \"listing\" timed out after 2s: ranks [3, 5] of 8 never arrived"
        );
        let long = format_ranks(&(0..40).collect::<Vec<_>>());
        assert!(long.ends_with("31, … 8 more]"), "{long}");
    }
}
