//! Locations as URLs: `gs://bucket/prefix` (feature `gcs`), `s3://bucket/prefix` (feature
//! `s3`), `file:///abs/dir`, a bare local path, and `memory://name/prefix`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
#[cfg(feature = "gcs")]
use crate::store::gcs::GcsStore;
use crate::store::generic::GenericStore;
#[cfg(any(feature = "gcs", feature = "s3"))]
use crate::store::http::HttpTimeouts;
use crate::store::retrying::layered;
use crate::store::Store;

/// Where a location's objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A GCS bucket (JSON API; opened only with feature `gcs`).
    Gcs {
        /// Bucket name.
        bucket: String,
    },
    /// An S3 bucket (configured from the usual `AWS_*` variables; opened only with feature
    /// `s3`).
    S3 {
        /// Bucket name.
        bucket: String,
    },
    /// A local directory: object names are paths relative to it.
    Local {
        /// Absolute directory path.
        root: PathBuf,
    },
    /// A process-wide in-memory store, shared by every location with the same name.
    Memory {
        /// Store name (empty for the default one).
        name: String,
    },
}

/// A parsed location: a backend plus a prefix inside it.
///
/// Prefixes are folders: `gs://b/images` and `gs://b/images/` both mean the objects under
/// `images/` (never `images2/…`), on every backend.
///
/// ```
/// use dataflux::{Backend, Location};
/// # #[cfg(feature = "gcs")] {
/// let l = Location::parse("gs://my-bucket/coco/val").unwrap();
/// assert_eq!(l.backend, Backend::Gcs { bucket: "my-bucket".into() });
/// assert_eq!(l.prefix, "coco/val/");
/// # }
/// let l = Location::parse("memory://test").unwrap();
/// assert_eq!((l.backend, l.prefix.as_str()), (Backend::Memory { name: "test".into() }, ""));
/// assert!(Location::parse("ftp://x/y").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The URL as given.
    pub url: String,
    /// Where the objects live.
    pub backend: Backend,
    /// Object-name prefix, empty or ending in `/`.
    pub prefix: String,
}

/// Normalizes a prefix to folder form: no leading `/`, a trailing `/` unless empty.
pub fn folder_prefix(prefix: &str) -> String {
    let p = prefix.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

impl Location {
    /// Parses a URL or a bare local path. A `gs://` or `s3://` URL in a build without the
    /// backend's feature is an [`Error::BackendDisabled`] naming it.
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidLocation {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.is_empty() {
                return Err(invalid("empty location"));
            }
            let root = std::path::absolute(url).map_err(|e| invalid(&e.to_string()))?;
            return Ok(Self {
                url: url.to_string(),
                backend: Backend::Local { root },
                prefix: String::new(),
            });
        };
        if let Some(feature) = missing_feature(scheme) {
            return Err(Error::BackendDisabled {
                url: url.to_string(),
                feature,
            });
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let backend = match scheme {
            "gs" | "s3" if authority.is_empty() => return Err(invalid("missing bucket name")),
            "gs" => Backend::Gcs {
                bucket: authority.to_string(),
            },
            "s3" => Backend::S3 {
                bucket: authority.to_string(),
            },
            "file" => {
                if !authority.is_empty() && authority != "localhost" {
                    return Err(invalid("file URLs take an absolute path: file:///dir"));
                }
                return Ok(Self {
                    url: url.to_string(),
                    backend: Backend::Local {
                        root: PathBuf::from(format!("/{path}")),
                    },
                    prefix: String::new(),
                });
            }
            "memory" => Backend::Memory {
                name: authority.to_string(),
            },
            other => {
                return Err(invalid(&format!(
                    "unsupported scheme {other:?} (use gs://, s3://, file:// or memory://)"
                )))
            }
        };
        Ok(Self {
            url: url.to_string(),
            backend,
            prefix: folder_prefix(path),
        })
    }

    /// Opens the store to read from it. A local directory must exist.
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        self.open_inner(false, RetryPolicy::default()).await
    }

    /// [`Location::open`] with `retry` as the store's retry policy (a job's own deadline, say).
    pub async fn open_with_retry(&self, retry: RetryPolicy) -> Result<Arc<dyn Store>> {
        self.open_inner(false, retry).await
    }

    /// Opens the store to write to it, creating a local directory if needed.
    pub async fn open_for_write(&self) -> Result<Arc<dyn Store>> {
        self.open_inner(true, RetryPolicy::default()).await
    }

    /// [`Location::open_for_write`] with `retry` as the store's retry policy.
    pub async fn open_for_write_with_retry(&self, retry: RetryPolicy) -> Result<Arc<dyn Store>> {
        self.open_inner(true, retry).await
    }

    async fn open_inner(&self, create: bool, retry: RetryPolicy) -> Result<Arc<dyn Store>> {
        let store: Arc<dyn Store> = match &self.backend {
            #[cfg(feature = "gcs")]
            Backend::Gcs { bucket } => {
                Arc::new(GcsStore::connect_with(bucket, &HttpTimeouts::from_env()).await?)
            }
            #[cfg(feature = "s3")]
            Backend::S3 { bucket } => Arc::new(open_s3(&self.url, bucket)?),
            #[cfg(not(feature = "gcs"))]
            Backend::Gcs { .. } => return Err(self.disabled("gcs")),
            #[cfg(not(feature = "s3"))]
            Backend::S3 { .. } => return Err(self.disabled("s3")),
            Backend::Local { root } => Arc::new(open_local(&self.url, root, create)?),
            Backend::Memory { name } => {
                let inner = memory_stores()
                    .lock()
                    .map_err(|_| Error::Task("memory store registry poisoned".into()))?
                    .entry(name.clone())
                    .or_default()
                    .clone();
                Arc::new(GenericStore::new(inner, format!("memory://{name}"), false))
            }
        };
        Ok(layered(store, retry))
    }

    /// The error for a backend this build leaves out.
    #[cfg(not(all(feature = "gcs", feature = "s3")))]
    fn disabled(&self, feature: &'static str) -> Error {
        Error::BackendDisabled {
            url: self.url.clone(),
            feature,
        }
    }
}

/// The feature a scheme needs when this build lacks it.
fn missing_feature(scheme: &str) -> Option<&'static str> {
    match scheme {
        "gs" if !cfg!(feature = "gcs") => Some("gcs"),
        "s3" if !cfg!(feature = "s3") => Some("s3"),
        _ => None,
    }
}

/// An S3 bucket from the `AWS_*` variables, with our timeouts and `Retry-After` handling.
#[cfg(feature = "s3")]
fn open_s3(url: &str, bucket: &str) -> Result<GenericStore> {
    let mut builder = object_store::aws::AmazonS3Builder::from_env();
    for (key, value) in HttpTimeouts::from_env().client_config() {
        builder = builder.with_config(object_store::aws::AmazonS3ConfigKey::Client(key), value);
    }
    let s3 = builder
        .with_bucket_name(bucket)
        .with_http_connector(crate::store::http::RetryAfterConnector)
        // Exactly one retry layer: ours (RetryStore), not object_store's too.
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .map_err(|e| Error::InvalidLocation {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let s3 = Arc::new(s3);
    Ok(GenericStore::new(s3.clone(), format!("s3://{bucket}"), true).with_paginated_listing(s3))
}

fn open_local(url: &str, root: &Path, create: bool) -> Result<GenericStore> {
    if create {
        std::fs::create_dir_all(root).map_err(|e| Error::InvalidLocation {
            url: url.to_string(),
            reason: format!("cannot create {}: {e}", root.display()),
        })?;
    } else if !root.is_dir() {
        return Err(Error::NotFound {
            location: format!("{} (no such directory)", root.display()),
        });
    }
    let fs = LocalFileSystem::new_with_prefix(root)
        .map_err(|e| Error::InvalidLocation {
            url: url.to_string(),
            reason: e.to_string(),
        })?
        .with_automatic_cleanup(true);
    Ok(GenericStore::new(
        Arc::new(fs),
        format!("file://{}", root.display()),
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        #[cfg(feature = "gcs")]
        {
            let l = Location::parse("gs://bkt").unwrap();
            assert_eq!(
                l.backend,
                Backend::Gcs {
                    bucket: "bkt".into()
                }
            );
            assert_eq!(l.prefix, "");
        }
        #[cfg(feature = "s3")]
        {
            let l = Location::parse("s3://bkt/a/b/").unwrap();
            assert_eq!(
                l.backend,
                Backend::S3 {
                    bucket: "bkt".into()
                }
            );
            assert_eq!(l.prefix, "a/b/");
        }
        let l = Location::parse("file:///tmp/x").unwrap();
        assert_eq!(
            l.backend,
            Backend::Local {
                root: "/tmp/x".into()
            }
        );
        let l = Location::parse("rel/dir").unwrap();
        assert!(
            matches!(l.backend, Backend::Local { root } if root.is_absolute() && root.ends_with("rel/dir"))
        );
    }

    #[test]
    fn refuses_bad_urls_with_reason() {
        let mut bad = vec!["ftp://a/b", "file://host/x", ""];
        if cfg!(feature = "gcs") {
            bad.extend(["gs://", "gs:///x"]);
        }
        for bad in bad {
            let err = Location::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidLocation { ref url, .. } if url == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_backend_left_out_is_named_by_its_feature() {
        for (url, feature, enabled) in [
            ("gs://b/x", "gcs", cfg!(feature = "gcs")),
            ("s3://b/x", "s3", cfg!(feature = "s3")),
        ] {
            match Location::parse(url) {
                Ok(_) => assert!(enabled, "{url}"),
                Err(err) => {
                    assert!(!enabled, "{url}: {err}");
                    assert!(
                        matches!(err, Error::BackendDisabled { feature: f, .. } if f == feature),
                        "{err}"
                    );
                    assert!(err.to_string().contains(&format!("`{feature}` feature")));
                }
            }
        }
    }

    #[tokio::test]
    async fn missing_local_dir_is_not_found_unless_writing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let l = Location::parse(missing.to_str().unwrap()).unwrap();
        assert!(l.open().await.unwrap_err().is_not_found());
        l.open_for_write().await.unwrap();
        assert!(missing.is_dir());
    }
}
