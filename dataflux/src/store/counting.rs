//! A [`Store`] that counts every request it forwards (each attempt of a retried request is
//! one request) and the payload bytes, in its [`Stats`].

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Capabilities, FolderPage, Page, PageRequest, PutMode, Store};
use crate::error::{Operation, Result};
use crate::meta::ObjectMeta;
use crate::stats::Stats;

/// Counts the requests sent to `inner`.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use dataflux::store::{counting::CountingStore, generic::GenericStore, PutMode, Store};
/// let base = GenericStore::new(Arc::new(object_store::memory::InMemory::new()), "memory://", false);
/// let store = CountingStore::new(Arc::new(base));
/// store.put("a", Bytes::from_static(b"abc"), PutMode::Overwrite).await.unwrap();
/// store.get("a", None).await.unwrap();
/// let s = store.stats().snapshot();
/// assert_eq!((s.put, s.get, s.bytes_written, s.bytes_read), (1, 1, 3, 3));
/// # });
/// ```
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    stats: Stats,
}

impl CountingStore {
    /// Counts what goes to `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            stats: Stats::default(),
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Store for CountingStore {
    fn url(&self) -> &str {
        self.inner.url()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn object_url(&self, name: &str) -> String {
        self.inner.object_url(name)
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page> {
        self.stats.record(Operation::List);
        self.inner.list_page(req).await
    }

    async fn list_folders(&self, prefix: &str, token: Option<&str>) -> Result<FolderPage> {
        self.stats.record(Operation::List);
        self.inner.list_folders(prefix, token).await
    }

    async fn get(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.stats.record(Operation::Get);
        let bytes = self.inner.get(name, range).await?;
        self.stats.add_bytes_read(bytes.len() as u64);
        Ok(bytes)
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        self.stats.record(Operation::Head);
        self.inner.head(name).await
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        self.stats.record(Operation::Put);
        let size = data.len() as u64;
        let meta = self.inner.put(name, data, mode).await?;
        self.stats.add_bytes_written(size);
        Ok(meta)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.stats.record(Operation::Delete);
        self.inner.delete(name).await
    }

    async fn compose(&self, sources: &[ObjectMeta], dest: &str) -> Result<ObjectMeta> {
        self.stats.record(Operation::Compose);
        self.inner.compose(sources, dest).await
    }
}
