//! A [`Store`] that retries the transient failures of another, under a [`RetryPolicy`]: the
//! one retry layer of every store `dataflux` opens (`object_store`'s own retries are off).
//!
//! What is retried: failures the store marks transient (HTTP 408, 429 and 5xx, connection
//! resets, timeouts of connect, first byte, idle body or whole attempt), with exponential
//! backoff and full jitter, until the policy's deadline for the operation. What is not:
//! not found, permission denied, a missing bucket, a create-only write that found the object
//! (`AlreadyExists`), invalid requests. Every operation is safe to retry: reads, lists and
//! deletes are idempotent; overwrites write the same bytes again; create-only writes
//! (`PutMode::Create`, compose's `ifGenerationMatch=0`) and compose's generation-matched
//! sources cannot change anything twice. A create-only write whose first attempt succeeded
//! but whose answer was lost reports `AlreadyExists` on the retry: callers treat that as
//! "someone's copy is there", which is then their own.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Capabilities, FolderPage, Page, PageRequest, PutMode, Store};
use crate::error::Result;
use crate::meta::ObjectMeta;
use crate::retry::RetryPolicy;
use crate::stats::Stats;

/// Retries `inner`'s transient failures; retries are counted in `inner`'s stats.
#[derive(Debug)]
pub struct RetryStore {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
}

impl RetryStore {
    /// Retries what `inner` fails transiently, under `policy`.
    pub fn new(inner: Arc<dyn Store>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Store for RetryStore {
    fn url(&self) -> &str {
        self.inner.url()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn stats(&self) -> &Stats {
        self.inner.stats()
    }

    fn object_url(&self, name: &str) -> String {
        self.inner.object_url(name)
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page> {
        self.policy
            .run(self.stats(), || self.inner.list_page(req))
            .await
    }

    async fn list_folders(&self, prefix: &str, token: Option<&str>) -> Result<FolderPage> {
        self.policy
            .run(self.stats(), || self.inner.list_folders(prefix, token))
            .await
    }

    async fn get(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.policy
            .run(self.stats(), || self.inner.get(name, range.clone()))
            .await
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        self.policy
            .run(self.stats(), || self.inner.head(name))
            .await
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        self.policy
            .run(self.stats(), || self.inner.put(name, data.clone(), mode))
            .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.policy
            .run(self.stats(), || self.inner.delete(name))
            .await
    }

    async fn compose(&self, sources: &[ObjectMeta], dest: &str) -> Result<ObjectMeta> {
        self.policy
            .run(self.stats(), || self.inner.compose(sources, dest))
            .await
    }
}

/// `base` as `dataflux` opens every store: requests counted, transient failures retried
/// under `policy`.
pub fn layered(base: Arc<dyn Store>, policy: RetryPolicy) -> Arc<dyn Store> {
    Arc::new(RetryStore::new(
        Arc::new(super::counting::CountingStore::new(base)),
        policy,
    ))
}
