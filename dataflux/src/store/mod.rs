//! One trait over every object store `dataflux` reads and writes.
//!
//! Generic stores (local files, memory, S3) go through [`object_store`] in
//! [`generic`]; Google Cloud Storage goes through its JSON API in `gcs` (feature `gcs`)
//! because `object_store`'s GCS client speaks the XML API, which has no end offset, no
//! generations or CRC32C in listings, and no compose. The rest of the crate only
//! sees [`Store`].

pub mod counting;
#[cfg(feature = "gcs")]
pub mod gcs;
pub mod generic;
pub mod hooked;
pub mod http;
pub mod retrying;

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::meta::ObjectMeta;
use crate::stats::Stats;

/// What a store can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Lists honour an exclusive end bound on the server (GCS `endOffset`); otherwise the
    /// listing stops at the bound client-side.
    pub end_offset: bool,
    /// Server-side concatenation (GCS `compose`).
    pub compose: bool,
    /// Each list or get is a network round trip, so parallel listing pays off.
    pub remote: bool,
}

/// One page request: objects under `prefix` with names in `(after, upto]`.
///
/// Ranges are exclusive at the start and inclusive at the end so that both GCS (inclusive
/// `startOffset`, exclusive `endOffset`) and `object_store` (exclusive offset) can serve any
/// range exactly, whatever the split points are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<'a> {
    /// Only names starting with this (already normalized, e.g. `images/` or empty).
    pub prefix: &'a str,
    /// Only names strictly greater than this.
    pub after: Option<&'a str>,
    /// Only names less than or equal to this.
    pub upto: Option<&'a str>,
    /// At most this many objects (capped at 1,000, as GCS pages are). A store that is not
    /// [`Capabilities::remote`] (memory, a local directory) may answer the whole range in one
    /// page instead, with [`Page::more`] false: each of its calls walks the range whole anyway.
    pub max_results: usize,
    /// Continues the page that returned this [`Page::token`] (the other fields unchanged).
    pub token: Option<&'a str>,
}

impl<'a> PageRequest<'a> {
    /// The first page of `(after, upto]` under `prefix`.
    pub fn new(
        prefix: &'a str,
        after: Option<&'a str>,
        upto: Option<&'a str>,
        max_results: usize,
    ) -> Self {
        Self {
            prefix,
            after,
            upto,
            max_results,
            token: None,
        }
    }
}

/// One page of a listing, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Objects in `(after, upto]`, in ascending name order, directory markers included.
    pub objects: Vec<ObjectMeta>,
    /// Whether more objects may follow the last one inside the requested range.
    pub more: bool,
    /// Where a paging store (GCS) says the next page starts. A page may hold no objects and
    /// still have one (the API's contract: follow the token whatever the page holds).
    pub token: Option<String>,
}

/// One page of the folders directly under a prefix (GCS `prefixes` with `delimiter=/`, S3
/// `CommonPrefixes`): each is the prefix followed by one more name segment and `/`, in
/// ascending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPage {
    /// The folders, e.g. `images/2024-03-17/` under `images/`.
    pub folders: Vec<String>,
    /// Where the next page starts, if there is one.
    pub token: Option<String>,
}

impl FolderPage {
    /// A page of `folders` found under `prefix`, in the form and order the type promises:
    /// only names that extend `prefix` and end in `/`, ascending, each once.
    ///
    /// ```
    /// use dataflux::FolderPage;
    /// let page = FolderPage::new("i/", ["i/b/", "i/a/", "i/", "j/c/", "i/a/"], None);
    /// assert_eq!(page.folders, ["i/a/", "i/b/"]);
    /// ```
    pub fn new(
        prefix: &str,
        folders: impl IntoIterator<Item = impl Into<String>>,
        token: Option<String>,
    ) -> Self {
        let mut folders: Vec<String> = folders
            .into_iter()
            .map(Into::into)
            .filter(|f| f.len() > prefix.len() && f.starts_with(prefix) && f.ends_with('/'))
            .collect();
        folders.sort_unstable();
        folders.dedup();
        Self { folders, token }
    }
}

/// How a write treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Fail with [`crate::Error::AlreadyExists`] if the object exists (GCS `ifGenerationMatch=0`).
    Create,
}

/// The largest page any store is asked for (GCS never returns more).
pub const MAX_PAGE: usize = 1000;

/// An object store as `dataflux` uses it.
///
/// Behaviour is added by wrappers that are themselves stores: [`retrying::RetryStore`]
/// retries transient failures (the one retry layer), [`counting::CountingStore`] counts
/// requests in [`Store::stats`]; [`retrying::layered`] stacks both, as every store opened
/// from a [`crate::Location`] is. A base store (GCS, `object_store`) sends one request per
/// call and counts nothing.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// The store's URL for messages, e.g. `gs://bucket` or `file:///data`.
    fn url(&self) -> &str;

    /// What the store can do.
    fn capabilities(&self) -> Capabilities;

    /// The store's request counters (a base store counts nothing: see
    /// [`counting::CountingStore`]).
    fn stats(&self) -> &Stats {
        static NONE: Stats = Stats::new();
        &NONE
    }

    /// The URL of one object, for messages.
    fn object_url(&self, name: &str) -> String {
        let url = self.url();
        if url.ends_with("://") {
            format!("{url}{name}")
        } else {
            format!("{}/{}", url.trim_end_matches('/'), name)
        }
    }

    /// Lists one page (one request).
    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page>;

    /// Lists one page of the folders directly under `prefix` (folder form, e.g. `images/`):
    /// one request, continuing from `token`. Listing uses it to learn where a hierarchy of
    /// names can be cut. Stores without delimiter listings answer
    /// [`crate::Error::Unsupported`], the default.
    async fn list_folders(&self, prefix: &str, token: Option<&str>) -> Result<FolderPage> {
        let _ = (prefix, token);
        Err(crate::Error::Unsupported {
            operation: crate::Operation::List,
            store: self.url().to_string(),
        })
    }

    /// Reads a whole object, or `range` of it.
    async fn get(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes>;

    /// Reads an object's metadata.
    async fn head(&self, name: &str) -> Result<ObjectMeta>;

    /// Writes an object in one request.
    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta>;

    /// Deletes an object. Deleting a missing object is not an error.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Concatenates `sources` (each pinned to its listed generation) into a new object
    /// `dest` that must not exist yet. Only stores with [`Capabilities::compose`].
    async fn compose(&self, sources: &[ObjectMeta], dest: &str) -> Result<ObjectMeta> {
        let _ = (sources, dest);
        Err(crate::Error::Unsupported {
            operation: crate::Operation::Compose,
            store: self.url().to_string(),
        })
    }
}
