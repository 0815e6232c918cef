//! The one error type of the `dataflux` crate.

use std::fmt;

/// What a failed request was doing, for error messages and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Listing objects.
    List,
    /// Reading an object or a range of it.
    Get,
    /// Reading an object's metadata.
    Head,
    /// Writing an object.
    Put,
    /// Deleting an object.
    Delete,
    /// Composing objects into one (GCS only).
    Compose,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::List => "list",
            Operation::Get => "get",
            Operation::Head => "head",
            Operation::Put => "put",
            Operation::Delete => "delete",
            Operation::Compose => "compose",
        })
    }
}

/// Errors returned by `dataflux`. Every variant names the object, bucket or URL involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A location URL could not be understood.
    #[error("invalid location {url:?}: {reason}")]
    InvalidLocation {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The location's backend was left out of this build: `feature` is the cargo feature of
    /// the `dataflux` crate that has it (`gcs` for `gs://`, `s3` for `s3://`).
    #[error("location {url:?} needs the `{feature}` feature of the dataflux crate, which this build was compiled without")]
    BackendDisabled {
        /// The URL as given.
        url: String,
        /// The missing cargo feature.
        feature: &'static str,
    },
    /// The bucket does not exist (permanent: not retried).
    #[error("bucket {bucket:?} not found")]
    BucketNotFound {
        /// The bucket's name.
        bucket: String,
    },
    /// The credentials in use may not do this (permanent: not retried).
    #[error("permission denied: {operation} on {location}: {message}")]
    PermissionDenied {
        /// What was attempted.
        operation: Operation,
        /// The bucket or object, as a URL.
        location: String,
        /// The store's message.
        message: String,
    },
    /// The object does not exist.
    #[error("object {location} not found")]
    NotFound {
        /// The object, as a URL.
        location: String,
    },
    /// A create-only write found the object already there.
    #[error("object {location} already exists")]
    AlreadyExists {
        /// The object, as a URL.
        location: String,
    },
    /// A request failed. `transient` says whether retrying may help (408, 429, 5xx, resets,
    /// timeouts); the retry layer has already retried transient failures when this is returned.
    #[error("{operation} on {location} failed{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Request {
        /// What was attempted.
        operation: Operation,
        /// The bucket or object, as a URL.
        location: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// Whether the failure is worth retrying.
        transient: bool,
        /// The store's message.
        message: String,
    },
    /// Retries of a transient failure ran out.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: Box<Error>,
    },
    /// The store cannot do this (for example compose outside GCS).
    #[error("{operation} is not supported by {store}")]
    Unsupported {
        /// What was attempted.
        operation: Operation,
        /// The store, as a URL.
        store: String,
    },
    /// Downloaded bytes do not match what the listing promised.
    #[error("integrity check failed for {location}: {reason}")]
    Integrity {
        /// The object, as a URL.
        location: String,
        /// What did not match.
        reason: String,
    },
    /// An object is larger than the configured cap; it was not downloaded.
    #[error("object {location} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The object, as a URL.
        location: String,
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// A saved listing (manifest) could not be read.
    #[error("invalid manifest {location}: {reason}")]
    Manifest {
        /// The manifest, as a URL.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An index past the end of a dataset.
    #[error("index {index} out of range for a dataset of {len} objects")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Error {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Request {
                transient: true,
                ..
            }
        )
    }

    /// Whether the failure was transient, even if retries have since run out: the same
    /// request may succeed later (an outage, a timeout), so the object is not bad input.
    ///
    /// ```
    /// use dataflux::{Error, Operation};
    /// let busy = Error::Request { operation: Operation::Get, location: "gs://b/o".into(),
    ///     status: Some(503), transient: true, message: "busy".into() };
    /// let exhausted = Error::RetriesExhausted { attempts: 6, last: Box::new(busy) };
    /// assert!(!exhausted.is_transient() && exhausted.is_temporary());
    /// assert!(!Error::NotFound { location: "gs://b/o".into() }.is_temporary());
    /// ```
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Request { transient, .. } => *transient,
            Error::RetriesExhausted { last, .. } => last.is_temporary(),
            Error::Task(_) => true,
            _ => false,
        }
    }

    /// Whether the object was missing.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::RetriesExhausted { last, .. } => last.is_not_found(),
            _ => false,
        }
    }

    /// Whether permission was denied.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, Error::PermissionDenied { .. })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an HTTP status is worth retrying (GCS's retry strategy: 408, 429 and 5xx).
pub(crate) fn status_is_transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}
