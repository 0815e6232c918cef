//! The one error type of the job.

use std::time::Duration;

/// Why a job stopped without finishing. [`Error::is_config`] tells the errors a user must fix
/// before anything runs (a binary exits 2 on them); [`Error::is_retriable`] those after which
/// running the same job again carries on (Kubernetes restarts the pod).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting of the spec is unusable. The message names it (and any other setting it
    /// mentions) by its name in the library; a binary maps names to flags with
    /// [`Setting::rename_in`](crate::Setting::rename_in).
    #[error("{setting}: {reason}")]
    Config {
        /// The setting.
        setting: crate::Setting,
        /// Why it was refused.
        reason: String,
    },
    /// The output location cannot be written (checked before any work).
    #[error("{} {location}: cannot write there: {source}", crate::Setting::Output)]
    OutputNotWritable {
        /// The output, as a URL.
        location: String,
        /// What the store said.
        #[source]
        source: dataflux::Error,
    },
    /// The run id names a run that was defined differently (another input, model, task or
    /// format): its results would mix two jobs.
    #[error("run {run_id} was started with {}; use another {} or the original settings", describe_changes(.changes), crate::Setting::RunId)]
    DefinitionChanged {
        /// The run id.
        run_id: String,
        /// `(what, was, now)` for every difference.
        changes: Vec<(String, String, String)>,
    },
    /// A store request failed for good (permission, bucket missing, or transient failures
    /// past the job's deadline).
    #[error("{what}: {source}")]
    Store {
        /// What the job was doing.
        what: String,
        /// The store's error.
        #[source]
        source: dataflux::Error,
    },
    /// The store stayed unreachable past the job-level deadline; nothing committed is lost.
    #[error("the store has been failing for {:.0} s (deadline {:.0} s): {last}", .failing_for.as_secs_f64(), .deadline.as_secs_f64())]
    StoreUnavailable {
        /// How long the failures lasted.
        failing_for: Duration,
        /// The deadline that ran out.
        deadline: Duration,
        /// The last failure.
        last: String,
    },
    /// Waiting for another rank (the run's index from rank 0, the other shards' files)
    /// took longer than the spec allows.
    #[error("timed out after {:.0} s waiting for {what}", .waited.as_secs_f64())]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// An object of the run's own bookkeeping is not what this version wrote.
    #[error("invalid run object {location}: {reason}")]
    Corrupt {
        /// The object, as a URL.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The model failed on a whole batch (not one bad image: the device, the weights).
    #[error("model failed: {0}")]
    Model(String),
    /// A stage panicked; the job stopped with it.
    #[error("stage {stage} panicked: {message}")]
    StagePanicked {
        /// The stage.
        stage: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A stage ended early because the next one was gone (follows another stage's error).
    #[error("stage {0} lost its downstream")]
    Disconnected(&'static str),
    /// A checkpoint file downloaded from a bucket is not what the listing says (short or
    /// corrupt); nothing of it was kept, and running again downloads it again.
    #[error("model {location}: {reason}")]
    ModelFetch {
        /// The checkpoint and the file.
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// Result rows could not be encoded (a model whose rows do not match its columns).
    #[error("cannot encode results: {0}")]
    Results(#[from] crate::output::ParquetError),
    /// The Hugging Face hub could not be reached to fetch the checkpoint (no network, DNS, a
    /// proxy or firewall): one line, with the way to run without it.
    #[error("cannot reach the Hugging Face hub at {endpoint} to fetch {repo} ({reason}); to run without it, set {} to a directory or a bucket (gs://…, s3://…, file://…)", crate::Setting::Model)]
    HubUnreachable {
        /// Repository id.
        repo: String,
        /// The hub's URL.
        endpoint: String,
        /// The innermost cause.
        reason: String,
    },
    /// Loading the model or preparing the CPU pool failed.
    #[error(transparent)]
    Inference(dataflux_inference::Error),
}

impl From<dataflux_inference::Error> for Error {
    /// [`Error::HubUnreachable`] for an unreachable hub, [`Error::Inference`] otherwise.
    fn from(e: dataflux_inference::Error) -> Self {
        match e {
            dataflux_inference::Error::HubUnreachable {
                repo,
                endpoint,
                reason,
            } => Error::HubUnreachable {
                repo,
                endpoint,
                reason,
            },
            other => Error::Inference(other),
        }
    }
}

fn describe_changes(changes: &[(String, String, String)]) -> String {
    changes
        .iter()
        .map(|(what, was, now)| format!("{what} {was:?}, now {now:?}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// Errors in the job's configuration, found before any work (exit code 2).
    pub fn is_config(&self) -> bool {
        match self {
            Error::Config { .. }
            | Error::OutputNotWritable { .. }
            | Error::DefinitionChanged { .. } => true,
            Error::Inference(e) => e.is_config(),
            _ => false,
        }
    }

    /// Errors after which the same job, run again, carries on from what is committed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::StoreUnavailable { .. } | Error::Timeout { .. } | Error::ModelFetch { .. } => {
                true
            }
            Error::Store { source, .. } => source.is_temporary(),
            _ => false,
        }
    }

    pub(crate) fn store(what: impl Into<String>, source: dataflux::Error) -> Self {
        Error::Store {
            what: what.into(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_hub_says_how_to_run_offline_in_one_line() {
        let e = Error::from(dataflux_inference::Error::HubUnreachable {
            repo: "google/vit-base-patch16-224".into(),
            endpoint: "https://huggingface.co".into(),
            reason: "Connection refused (os error 111)".into(),
        });
        let message = e.to_string();
        assert!(matches!(e, Error::HubUnreachable { .. }), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.contains("https://huggingface.co")
                && message.contains("Connection refused")
                && message.contains("set ModelSpec::checkpoint to a directory or a bucket"),
            "{message}"
        );
        assert!(!e.is_config() && !e.is_retriable());
    }
}
