//! DataFlux-style datasets over object stores.
//!
//! `dataflux` lists millions of objects fast (parallel work-stealing listing, raced against a
//! sequential one), reads small objects fast (GCS compose), and serves them as datasets that
//! shard across ranks and resume where they stopped. It knows nothing of models.
//!
//! Every store — GCS through its JSON API, and local directories, memory and S3 through
//! [`object_store`] — sits behind one trait, [`Store`]; open one from a URL with
//! [`Location`].
//!
//! # Cargo features
//!
//! - `gcs` (default): Google Cloud Storage through its JSON API (`gs://`, `store::gcs`).
//! - `s3` (default): S3 through `object_store`'s `aws` client (`s3://`).
//! - `testing`: the fault-injecting HTTP proxy of the test kit (`dataflux-testkit`), as
//!   `dataflux::testing`.
//!
//! Local directories (`file://`, a bare path) and memory stores (`memory://`) are always
//! there. A `gs://` or `s3://` location in a build without its feature is refused by
//! [`Location::parse`] with [`Error::BackendDisabled`], which names the feature.

#![warn(missing_docs)]

pub mod compose;
pub mod dataset;
pub mod error;
mod folders;
pub mod list;
pub mod location;
pub mod manifest;
pub mod meta;
pub mod retry;
pub mod shard;
pub mod split;
pub mod stats;
pub mod store;
/// The fault-injecting HTTP proxy of the test kit ([`dataflux_testkit::fault_proxy`]).
#[cfg(feature = "testing")]
pub use dataflux_testkit::fault_proxy as testing;

pub use compose::{FetchOptions, Fetcher};
pub use dataset::{Cursor, Dataset, DatasetConfig, Item};
pub use error::{Error, Operation, Result};
pub use list::{list, ListOptions, Listing, Skipped, Strategy, DEFAULT_TEMP_PREFIX};
pub use location::{folder_prefix, Backend, Location};
pub use meta::ObjectMeta;
pub use retry::RetryPolicy;
pub use shard::{ShardMode, ShardSpec};
pub use stats::{Stats, StatsSnapshot};
pub use store::{Capabilities, FolderPage, Page, PageRequest, PutMode, Store};
