//! Datasets: a sorted listing plus a fetcher, read by index, by batch, or as a stream.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::compose::{FetchOptions, Fetcher};
use crate::error::{Error, Result};
use crate::list::{list, ListOptions, Listing};
use crate::location::Location;
use crate::meta::ObjectMeta;
use crate::shard::ShardSpec;
use crate::stats::StatsSnapshot;
use crate::store::Store;

/// How a dataset lists and fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatasetConfig {
    /// Listing options.
    pub list: ListOptions,
    /// Fetch options (compose, caps, temporary prefix, run id).
    pub fetch: FetchOptions,
    /// Groups fetched at once by [`Dataset::stream`].
    pub concurrency: usize,
    /// Bytes fetched ahead of the consumer by [`Dataset::stream`] at most.
    pub prefetch_bytes: u64,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            list: ListOptions::default(),
            fetch: FetchOptions::default(),
            concurrency: 16,
            prefetch_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Chainable setters, one per field: callers build it as `DatasetConfig::default().with_…(…)`, so
/// that new fields do not break them.
impl DatasetConfig {
    /// Sets [`list`](Self::list): listing options.
    #[must_use]
    pub fn with_list(mut self, list: ListOptions) -> Self {
        self.list = list;
        self
    }

    /// Sets [`fetch`](Self::fetch): fetch options (compose, caps, temporary prefix, run id).
    #[must_use]
    pub fn with_fetch(mut self, fetch: FetchOptions) -> Self {
        self.fetch = fetch;
        self
    }

    /// Sets [`concurrency`](Self::concurrency): groups fetched at once by [`Dataset::stream`].
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets [`prefetch_bytes`](Self::prefetch_bytes): bytes fetched ahead of the consumer by
    /// [`Dataset::stream`] at most.
    #[must_use]
    pub fn with_prefetch_bytes(mut self, prefetch_bytes: u64) -> Self {
        self.prefetch_bytes = prefetch_bytes;
        self
    }
}

/// One streamed object: its position in the dataset, its listing entry and its bytes (or
/// why they could not be had).
#[derive(Debug)]
pub struct Item {
    /// Position in the dataset (`0..len`).
    pub index: usize,
    /// The object as listed.
    pub meta: ObjectMeta,
    /// Its verified bytes, or the reason they could not be read.
    pub data: Result<Bytes>,
}

/// A saveable stream position: a stream started from it neither re-reads nor skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The next index to read.
    pub position: usize,
    /// Identifies the dataset the position belongs to.
    pub fingerprint: u64,
}

/// Identifies a list of objects (names, sizes, generations), stable across processes and
/// versions: what [`Dataset::fingerprint`] and saved run plans use.
pub fn fingerprint(objects: &[ObjectMeta]) -> u64 {
    let mut crc = 0u32;
    for o in objects {
        crc = crc32c::crc32c_append(crc, o.name.as_bytes());
        crc = crc32c::crc32c_append(crc, &o.size.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &o.generation.unwrap_or(0).to_le_bytes());
    }
    ((objects.len() as u64) << 32) | u64::from(crc)
}

/// A sorted listing of objects under a prefix, read through a [`Fetcher`].
///
/// ```
/// # let rt = tokio::runtime::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use bytes::Bytes;
/// use futures::StreamExt;
/// use dataflux::{Dataset, DatasetConfig, Location, PutMode, ShardSpec};
/// let store = Location::parse("memory://dataset-doc").unwrap().open().await.unwrap();
/// for i in 0..10 {
///     store.put(&format!("imgs/{i}.jpg"), Bytes::from(vec![i as u8; 3]), PutMode::Overwrite).await.unwrap();
/// }
/// let ds = Dataset::open("memory://dataset-doc/imgs", DatasetConfig::default()).await.unwrap();
/// assert_eq!(ds.len(), 10);
/// assert_eq!(&ds.get(2).await.unwrap()[..], &[2, 2, 2]);
/// let mine = ds.shard(ShardSpec::new(1, 3)).unwrap(); // indices 4..7
/// let names: Vec<String> = mine.stream(mine.start()).unwrap()
///     .map(|item| item.meta.name).collect().await;
/// assert_eq!(names, ["imgs/4.jpg", "imgs/5.jpg", "imgs/6.jpg"]);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Dataset {
    prefix: String,
    objects: Arc<[ObjectMeta]>,
    fetcher: Arc<Fetcher>,
    config: DatasetConfig,
}

impl Dataset {
    /// Opens `url` (`gs://bucket/prefix`, `file:///dir`, a local path, `memory://…`) and lists it.
    pub async fn open(url: &str, config: DatasetConfig) -> Result<Self> {
        let location = Location::parse(url)?;
        let store = location.open().await?;
        let mut list_options = config.list.clone();
        list_options.temp_prefix = config.fetch.temp_prefix.clone();
        let listing = list(&store, &location.prefix, &list_options).await?;
        Ok(Self::from_listing(store, listing, config))
    }

    /// A dataset over an existing listing (for example one loaded from a manifest).
    pub fn from_listing(store: Arc<dyn Store>, listing: Listing, config: DatasetConfig) -> Self {
        let fetcher = Arc::new(Fetcher::new(store, config.fetch.clone()));
        Self::with_fetcher(fetcher, listing, config)
    }

    /// A dataset over `listing` that reads through an existing `fetcher`, so that several
    /// datasets (for example the chunks of a batch job) share its temporaries and its
    /// compose switch. `config.fetch` is ignored: the fetcher's options are in force.
    pub fn with_fetcher(fetcher: Arc<Fetcher>, listing: Listing, config: DatasetConfig) -> Self {
        Self {
            prefix: listing.prefix,
            objects: listing.objects.into(),
            fetcher,
            config,
        }
    }

    /// The objects, in order.
    pub fn objects(&self) -> &[ObjectMeta] {
        &self.objects
    }

    /// The listed prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The fetcher (store, options, temporary-object sweep).
    pub fn fetcher(&self) -> &Arc<Fetcher> {
        &self.fetcher
    }

    /// Request counters of the underlying store.
    pub fn stats(&self) -> StatsSnapshot {
        self.fetcher.store().stats().snapshot()
    }

    /// The dataset's listing, to save as a manifest.
    pub fn listing(&self) -> Listing {
        Listing {
            prefix: self.prefix.clone(),
            objects: self.objects.to_vec(),
            skipped: Default::default(),
            strategy: crate::Strategy::Sequential,
        }
    }

    fn meta(&self, index: usize) -> Result<&ObjectMeta> {
        self.objects.get(index).ok_or(Error::IndexOutOfRange {
            index,
            len: self.objects.len(),
        })
    }

    /// Reads object `index`.
    pub async fn get(&self, index: usize) -> Result<Bytes> {
        self.fetcher.fetch_one(self.meta(index)?).await
    }

    /// Reads several objects, composed into as few round trips as the caps allow, up to the
    /// dataset's concurrency groups at once; one result per index, in order.
    pub async fn get_many(&self, indices: &[usize]) -> Result<Vec<Result<Bytes>>> {
        let metas: Vec<ObjectMeta> = indices
            .iter()
            .map(|&i| self.meta(i).cloned())
            .collect::<Result<_>>()?;
        // Groups concurrently (as many as the dataset's concurrency), results in order.
        let groups: Vec<Vec<Result<Bytes>>> = stream::iter(self.fetcher.plan(&metas))
            .map(|group| self.fetcher.fetch_group(&metas[group]))
            .buffered(self.config.concurrency.max(1))
            .collect()
            .await;
        let out: Vec<Result<Bytes>> = groups.into_iter().flatten().collect();
        self.fetcher
            .settle(std::time::Duration::from_secs(30))
            .await;
        Ok(out)
    }

    /// The subset a rank takes (disjoint across ranks, union the whole; see [`ShardSpec`]).
    pub fn shard(&self, spec: ShardSpec) -> Result<Dataset> {
        if spec.world_size == 0 || spec.rank >= spec.world_size {
            return Err(Error::IndexOutOfRange {
                index: spec.rank,
                len: spec.world_size,
            });
        }
        let objects: Vec<ObjectMeta> = spec
            .indices(self.objects.len())
            .into_iter()
            .map(|i| self.objects[i].clone())
            .collect();
        Ok(Dataset {
            prefix: self.prefix.clone(),
            objects: objects.into(),
            fetcher: self.fetcher.clone(),
            config: self.config.clone(),
        })
    }

    /// Identifies this dataset's contents (names, sizes, generations), stable across
    /// processes and versions.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.objects)
    }

    /// A cursor at the start.
    pub fn start(&self) -> Cursor {
        self.cursor_at(0)
    }

    /// A cursor before object `position`.
    pub fn cursor_at(&self, position: usize) -> Cursor {
        Cursor {
            position,
            fingerprint: self.fingerprint(),
        }
    }

    /// Streams objects from `from` to the end **in order**, fetching groups concurrently
    /// (composed where possible) while holding at most `prefetch_bytes` ahead of the
    /// consumer. A bad object is an [`Item`] with an error; the stream goes on.
    ///
    /// Fails if the cursor belongs to another dataset.
    pub fn stream(&self, from: Cursor) -> Result<impl Stream<Item = Item> + Send + 'static> {
        if from.fingerprint != self.fingerprint() {
            return Err(Error::Manifest {
                location: self.prefix.clone(),
                reason: "cursor belongs to a different listing".into(),
            });
        }
        let start = from.position.min(self.objects.len());
        let objects = self.objects.clone();
        let tail = &objects[start..];
        let groups: Vec<(usize, usize)> = self
            .fetcher
            .plan(tail)
            .into_iter()
            .map(|r| (start + r.start, start + r.end))
            .collect();
        // Permits are KiB so that a u32 semaphore covers terabytes.
        let window_kib =
            (self.config.prefetch_bytes / 1024).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        let window = Arc::new(Semaphore::new(window_kib as usize));
        let fetcher = self.fetcher.clone();
        let stream = stream::iter(groups)
            .map(move |(a, b)| {
                let objects = objects.clone();
                let fetcher = fetcher.clone();
                let window = window.clone();
                async move {
                    let bytes: u64 = objects[a..b].iter().map(|m| m.size).sum();
                    let kib = (bytes / 1024).clamp(1, u64::from(window_kib)) as u32;
                    let permit = window.acquire_many_owned(kib).await.ok();
                    let results = fetcher.fetch_group(&objects[a..b]).await;
                    let items: Vec<Item> = results
                        .into_iter()
                        .zip(a..b)
                        .map(|(data, index)| Item {
                            index,
                            meta: objects[index].clone(),
                            data,
                        })
                        .collect();
                    (items, permit)
                }
            })
            .buffered(self.config.concurrency.max(1))
            .flat_map(|(items, permit)| {
                // The window reopens once the consumer takes the group.
                drop(permit);
                stream::iter(items)
            });
        Ok(stream)
    }
}
