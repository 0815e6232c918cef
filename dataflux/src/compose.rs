//! Composed download: many small objects in one round trip.
//!
//! Objects are grouped greedily in listing order into groups of at most 32 (the GCS compose
//! limit) whose total stays within `max_composite_bytes` — checked *before* an object is
//! added, so no composite ever exceeds the cap. Each group is composed into a temporary
//! object `<temp-prefix><run-id>/<millis>-<n>-<uuid>` (the destination must not exist, each
//! source is pinned to its listed generation), downloaded once, split by the listed sizes and
//! verified piece by piece (length, and CRC32C where listed). The composite is deleted on
//! every path: explicitly on success and error, by a drop guard on panic or cancellation, and
//! by a sweep of the run's temporary prefix at start and end. [`cleanup_stale`] removes what
//! crashed processes of any run left behind.
//!
//! Nothing here fails a job: stores without compose, compose switched off, compose refused
//! (403: switched off for the run, logged once) and failed compositions all fall back to
//! individual GETs with bounded concurrency.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::list::{list, ListOptions, DEFAULT_TEMP_PREFIX};
use crate::location::folder_prefix;
use crate::meta::ObjectMeta;
use crate::store::Store;

/// The most sources one GCS compose request takes.
pub const MAX_COMPOSE_SOURCES: usize = 32;

/// How objects are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Use compose where the store has it.
    pub compose: bool,
    /// Sources per composite (at most 32).
    pub max_objects_per_compose: usize,
    /// No composite is larger than this; a larger object is fetched alone.
    pub max_composite_bytes: u64,
    /// Prefix of temporary objects (folder form), excluded from listings.
    pub temp_prefix: String,
    /// This run's id: its composites live under `<temp_prefix><run_id>/`.
    pub run_id: String,
    /// Concurrent individual GETs within a group.
    pub concurrency: usize,
    /// Part size for ranged GETs of objects larger than `max_composite_bytes`.
    pub range_chunk_bytes: u64,
    /// Objects larger than this are refused before download ([`Error::TooLarge`]): one huge
    /// file in the prefix must not be an out-of-memory at the same place on every restart.
    pub max_object_bytes: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            compose: true,
            max_objects_per_compose: MAX_COMPOSE_SOURCES,
            max_composite_bytes: 32 * 1024 * 1024,
            temp_prefix: DEFAULT_TEMP_PREFIX.to_string(),
            run_id: uuid::Uuid::new_v4().simple().to_string(),
            concurrency: 16,
            range_chunk_bytes: 8 * 1024 * 1024,
            max_object_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Chainable setters, one per field: callers build it as `FetchOptions::default().with_…(…)`, so
/// that new fields do not break them.
impl FetchOptions {
    /// Sets [`compose`](Self::compose): use compose where the store has it.
    #[must_use]
    pub fn with_compose(mut self, compose: bool) -> Self {
        self.compose = compose;
        self
    }

    /// Sets [`max_objects_per_compose`](Self::max_objects_per_compose): sources per composite (at
    /// most 32).
    #[must_use]
    pub fn with_max_objects_per_compose(mut self, max_objects_per_compose: usize) -> Self {
        self.max_objects_per_compose = max_objects_per_compose;
        self
    }

    /// Sets [`max_composite_bytes`](Self::max_composite_bytes): no composite is larger than this.
    #[must_use]
    pub fn with_max_composite_bytes(mut self, max_composite_bytes: u64) -> Self {
        self.max_composite_bytes = max_composite_bytes;
        self
    }

    /// Sets [`temp_prefix`](Self::temp_prefix): prefix of temporary objects (folder form), excluded
    /// from listings.
    #[must_use]
    pub fn with_temp_prefix(mut self, temp_prefix: impl Into<String>) -> Self {
        self.temp_prefix = temp_prefix.into();
        self
    }

    /// Sets [`run_id`](Self::run_id): this run's id.
    #[must_use]
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = run_id.into();
        self
    }

    /// Sets [`concurrency`](Self::concurrency): concurrent individual GETs within a group.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets [`range_chunk_bytes`](Self::range_chunk_bytes): part size for ranged GETs of objects
    /// larger than `max_composite_bytes`.
    #[must_use]
    pub fn with_range_chunk_bytes(mut self, range_chunk_bytes: u64) -> Self {
        self.range_chunk_bytes = range_chunk_bytes;
        self
    }

    /// Sets [`max_object_bytes`](Self::max_object_bytes): objects larger than this are refused
    /// before download ([`Error::TooLarge`]).
    #[must_use]
    pub fn with_max_object_bytes(mut self, max_object_bytes: u64) -> Self {
        self.max_object_bytes = max_object_bytes;
        self
    }
}

/// Groups `objects` in order: at most `max_objects` per group, and a group's total stays
/// within `max_bytes` (checked before adding); an object larger than `max_bytes` is a group
/// of its own.
///
/// ```
/// use dataflux::{compose::plan_groups, ObjectMeta};
/// let objs: Vec<_> = [40, 40, 30, 100, 5].iter().enumerate()
///     .map(|(i, &s)| ObjectMeta::new(format!("o{i}"), s)).collect();
/// assert_eq!(plan_groups(&objs, 32, 80), vec![0..2, 2..3, 3..4, 4..5]);
/// assert_eq!(plan_groups(&objs, 2, 1000), vec![0..2, 2..4, 4..5]);
/// ```
pub fn plan_groups(
    objects: &[ObjectMeta],
    max_objects: usize,
    max_bytes: u64,
) -> Vec<Range<usize>> {
    let max_objects = max_objects.clamp(1, MAX_COMPOSE_SOURCES);
    let mut groups = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, o) in objects.iter().enumerate() {
        let full = i - start >= max_objects || bytes.saturating_add(o.size) > max_bytes;
        if i > start && full {
            groups.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(o.size);
    }
    if start < objects.len() {
        groups.push(start..objects.len());
    }
    groups
}

/// Fetches groups of objects, composed where it pays and possible.
#[derive(Debug)]
pub struct Fetcher {
    store: Arc<dyn Store>,
    options: FetchOptions,
    compose_off: Arc<AtomicBool>,
    live: Arc<Mutex<HashSet<String>>>,
    undeletable: Arc<Mutex<Vec<String>>>,
    /// A delete failed: the run's temporary prefix must be swept to leave nothing behind.
    unswept: Arc<AtomicBool>,
    counter: AtomicU64,
}

impl Fetcher {
    /// A fetcher over `store`.
    pub fn new(store: Arc<dyn Store>, mut options: FetchOptions) -> Self {
        options.temp_prefix = folder_prefix(&options.temp_prefix);
        let compose_off = !(options.compose && store.capabilities().compose);
        Self {
            store,
            options,
            compose_off: Arc::new(AtomicBool::new(compose_off)),
            live: Default::default(),
            undeletable: Default::default(),
            unswept: Default::default(),
            counter: AtomicU64::new(0),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// The store objects come from.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether groups are being composed.
    pub fn composing(&self) -> bool {
        !self.compose_off.load(Ordering::Relaxed)
    }

    /// Groups `objects` as [`plan_groups`] does with this fetcher's limits.
    ///
    /// When not composing, every object is a group of its own, so that the caller's
    /// concurrency bounds the GETs in flight.
    pub fn plan(&self, objects: &[ObjectMeta]) -> Vec<Range<usize>> {
        if !self.composing() {
            return (0..objects.len()).map(|i| i..i + 1).collect();
        }
        plan_groups(
            objects,
            self.options.max_objects_per_compose,
            self.options.max_composite_bytes,
        )
    }

    /// The temporary folder of this run.
    pub fn run_prefix(&self) -> String {
        format!("{}{}/", self.options.temp_prefix, self.options.run_id)
    }

    /// Fetches one group (as planned), one result per object, in order. A bad object gives
    /// an error in its own slot and never fails the others.
    pub async fn fetch_group(&self, group: &[ObjectMeta]) -> Vec<Result<Bytes>> {
        let oversized = group.iter().any(|m| m.size > self.options.max_object_bytes);
        if group.len() > 1 && self.composing() && !oversized {
            match self.fetch_composed(group).await {
                Ok(out) => return out,
                Err(e) => {
                    if e.is_permission_denied() && !self.compose_off.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "compose refused: fetching objects one by one for the rest of this run");
                    } else {
                        tracing::debug!(error = %e, objects = group.len(), "compose failed: fetching this group one by one");
                    }
                    self.store.stats().add_fallback();
                }
            }
        }
        // Futures are built up front: a lazily mapping closure trips the compiler's
        // higher-ranked `Send` inference once this sits inside a spawned stream.
        let fetches: Vec<_> = group.iter().map(|m| self.fetch_one(m)).collect();
        futures::stream::iter(fetches)
            .buffered(self.options.concurrency.max(1))
            .collect()
            .await
    }

    /// Fetches one object on its own (ranged parts in parallel when it is large), verified;
    /// a body whose size or CRC32C does not match is fetched once more before the mismatch
    /// is reported. Objects over `max_object_bytes` are refused without a request.
    pub async fn fetch_one(&self, meta: &ObjectMeta) -> Result<Bytes> {
        if meta.size > self.options.max_object_bytes {
            return Err(Error::TooLarge {
                location: self.store.object_url(&meta.name),
                size: meta.size,
                limit: self.options.max_object_bytes,
            });
        }
        match self.fetch_verified(meta).await {
            Err(Error::Integrity { location, reason }) => {
                tracing::warn!(%location, %reason, "body does not match the listing: fetching it again");
                self.fetch_verified(meta).await
            }
            other => other,
        }
    }

    async fn fetch_verified(&self, meta: &ObjectMeta) -> Result<Bytes> {
        let chunk = self.options.range_chunk_bytes.max(1);
        let data = if meta.size > self.options.max_composite_bytes && meta.size > chunk {
            let parts: Vec<Range<u64>> = (0..meta.size)
                .step_by(chunk as usize)
                .map(|s| s..(s + chunk).min(meta.size))
                .collect();
            let gets: Vec<_> = parts
                .into_iter()
                .map(|r| self.store.get(&meta.name, Some(r)))
                .collect();
            let pieces: Vec<Bytes> = futures::stream::iter(gets)
                .buffered(self.options.concurrency.max(1))
                .try_collect()
                .await?;
            let mut buf = BytesMut::with_capacity(meta.size as usize);
            for p in pieces {
                buf.extend_from_slice(&p);
            }
            buf.freeze()
        } else {
            self.store.get(&meta.name, None).await?
        };
        verify(self.store.as_ref(), meta, &data)?;
        Ok(data)
    }

    async fn fetch_composed(&self, group: &[ObjectMeta]) -> Result<Vec<Result<Bytes>>> {
        let name = self.composite_name();
        // Compose, download and delete run in their own task: if the caller is dropped (a
        // stream dropped half way), a compose request already sent may still complete on the
        // server after a drop guard's delete; the task sees it through and deletes after it.
        let (store, sources) = (self.store.clone(), group.to_vec());
        let (live, unswept) = (self.live.clone(), self.unswept.clone());
        let (compose_off, undeletable) = (self.compose_off.clone(), self.undeletable.clone());
        let task_name = name.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let name = task_name;
            let guard = TempObject::new(store.clone(), name.clone(), live, unswept);
            let composed = store.compose(&sources, &name).await;
            let downloaded = match composed {
                Ok(_) => store.get(&name, None).await,
                Err(e) => Err(e),
            };
            // The bytes go back at once; the delete (one more round trip) does not hold
            // them up. It always runs, and `settle` waits for it.
            let _ = tx.send(downloaded);
            match guard.delete().await {
                Ok(()) => {}
                // Retention policy, object hold, no delete permission: composing would leave
                // garbage behind; fetch one by one from now on (the job still finishes).
                Err(e) if e.is_permission_denied() => {
                    if !compose_off.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, object = %name, "composites cannot be deleted here: fetching objects one by one for the rest of this run");
                    }
                    if let Ok(mut u) = undeletable.lock() {
                        u.push(name);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, object = %name, "could not delete a composite now; the end-of-run sweep will");
                }
            }
        });
        let data = rx
            .await
            .map_err(|_| Error::Task("compose task ended without an answer".into()))??;
        let expected: u64 = group.iter().map(|m| m.size).sum();
        if data.len() as u64 != expected {
            return Err(Error::Integrity {
                location: self.store.object_url(&name),
                reason: format!(
                    "composite of {} objects has {} bytes, listing says {expected}",
                    group.len(),
                    data.len()
                ),
            });
        }
        let mut out = Vec::with_capacity(group.len());
        let mut offset = 0usize;
        for meta in group {
            let piece = data.slice(offset..offset + meta.size as usize);
            offset += meta.size as usize;
            out.push(match verify(self.store.as_ref(), meta, &piece) {
                Ok(()) => Ok(piece),
                // A piece that does not check out is fetched again on its own.
                Err(_) => self.fetch_one(meta).await,
            });
        }
        Ok(out)
    }

    fn composite_name(&self) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let unique = uuid::Uuid::new_v4().simple().to_string();
        format!("{}{millis}-{n}-{}", self.run_prefix(), &unique[..12])
    }

    /// Deletes every temporary object of this run (leftovers of a crash with the same run
    /// id, or deletes that failed). Call at start and end; returns how many were deleted.
    pub async fn sweep(&self) -> Result<usize> {
        delete_under(&self.store, &self.run_prefix()).await
    }

    /// The end of a run: waits (up to `timeout`) for the deletes behind the downloads, then
    /// sweeps the run's temporary prefix ([`Fetcher::sweep`]) only where a delete failed or
    /// did not finish in time; returns how many objects the sweep deleted (0 where none was
    /// needed, which costs no request). Composites the store refuses to delete stay, named
    /// by [`Fetcher::undeletable`].
    pub async fn finish(&self, timeout: Duration) -> Result<usize> {
        let settled = self.settle(timeout).await;
        if settled && !self.unswept.load(Ordering::Relaxed) {
            return Ok(0);
        }
        self.sweep().await
    }

    /// Waits (up to `timeout`) until every composite this fetcher created has been deleted;
    /// returns whether none is left.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.live_temporaries() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Composites this fetcher could not delete because the store refused (retention, hold,
    /// permission): left behind, for the run's summary to name.
    pub fn undeletable(&self) -> Vec<String> {
        self.undeletable
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Temporary objects this fetcher has created and not yet deleted.
    pub fn live_temporaries(&self) -> usize {
        self.live.lock().map(|l| l.len()).unwrap_or(0)
    }
}

/// Checks a fetched object against its listing: length always, CRC32C where listed.
pub fn verify(store: &dyn Store, meta: &ObjectMeta, data: &[u8]) -> Result<()> {
    if data.len() as u64 != meta.size {
        return Err(Error::Integrity {
            location: store.object_url(&meta.name),
            reason: format!("{} bytes, listing says {}", data.len(), meta.size),
        });
    }
    if let Some(expected) = meta.crc32c {
        let actual = crc32c::crc32c(data);
        if actual != expected {
            return Err(Error::Integrity {
                location: store.object_url(&meta.name),
                reason: format!("CRC32C {actual:08x}, listing says {expected:08x}"),
            });
        }
    }
    Ok(())
}

/// The temporary composites under `temp_prefix` (every run) created more than `older_than`
/// ago, judged by the creation time in their names. Only names of this crate's exact format
/// (`<temp_prefix>…/<millis>-<n>-<12 hex digits>`) count: a user's `photos/2023-01-01.jpg` or
/// `scans/12345`, or a run's bookkeeping, never do. An empty `temp_prefix` is refused.
///
/// ```
/// # let rt = tokio::runtime::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use bytes::Bytes;
/// use dataflux::{compose::{cleanup_stale, stale_temporaries}, Location, PutMode};
/// let store = Location::parse("memory://cleanup-doc").unwrap().open().await.unwrap();
/// for name in ["dataflux-tmp/run1/1000-0-0123456789ab", "dataflux-tmp/run1/2023-01-01.jpg", "dataflux-tmp/12345"] {
///     store.put(name, Bytes::new(), PutMode::Create).await.unwrap();
/// }
/// let hour = std::time::Duration::from_secs(3600);
/// assert_eq!(stale_temporaries(&store, "dataflux-tmp/", hour).await.unwrap(),
///     ["dataflux-tmp/run1/1000-0-0123456789ab"]); // created in 1970
/// assert_eq!(cleanup_stale(&store, "dataflux-tmp/", hour).await.unwrap(), 1);
/// assert!(cleanup_stale(&store, "", hour).await.is_err());
/// # });
/// ```
pub async fn stale_temporaries(
    store: &Arc<dyn Store>,
    temp_prefix: &str,
    older_than: Duration,
) -> Result<Vec<String>> {
    let prefix = folder_prefix(temp_prefix);
    if prefix.is_empty() {
        return Err(Error::InvalidLocation {
            url: store.url().to_string(),
            reason: "an empty temporary prefix would take in the whole bucket".into(),
        });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let cutoff = now.saturating_sub(older_than.as_millis());
    let options = ListOptions {
        temp_prefix: String::new(),
        ..Default::default()
    };
    Ok(list(store, &prefix, &options)
        .await?
        .objects
        .into_iter()
        .filter(|o| created_millis(&o.name).is_some_and(|t| t < cutoff))
        .map(|o| o.name)
        .collect())
}

/// Deletes what [`stale_temporaries`] finds; returns how many were deleted.
pub async fn cleanup_stale(
    store: &Arc<dyn Store>,
    temp_prefix: &str,
    older_than: Duration,
) -> Result<usize> {
    let doomed = stale_temporaries(store, temp_prefix, older_than).await?;
    futures::stream::iter(doomed.iter().map(|n| store.delete(n)))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(doomed.len())
}

async fn delete_under(store: &Arc<dyn Store>, prefix: &str) -> Result<usize> {
    let options = ListOptions {
        temp_prefix: String::new(),
        ..Default::default()
    };
    let listing = list(store, prefix, &options).await?;
    let deletes: Vec<_> = listing
        .objects
        .iter()
        .map(|o| store.delete(&o.name))
        .collect();
    futures::stream::iter(deletes)
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(listing.objects.len())
}

/// The creation time a composite's name carries: `…/<millis>-<n>-<12 hex digits>`, exactly
/// as [`Fetcher`] names them; `None` for any other name.
fn created_millis(name: &str) -> Option<u128> {
    let base = name.rsplit('/').next()?;
    let mut parts = base.split('-');
    let (millis, n, unique) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let hex = unique.len() == 12
        && unique
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if parts.next().is_some() || !digits(millis) || !digits(n) || !hex {
        return None;
    }
    millis.parse().ok()
}

/// A temporary object that deletes itself if dropped without [`TempObject::delete`].
struct TempObject {
    store: Arc<dyn Store>,
    name: String,
    live: Arc<Mutex<HashSet<String>>>,
    /// Set when the delete fails: the end-of-run sweep must look.
    unswept: Arc<AtomicBool>,
    armed: bool,
}

impl TempObject {
    fn new(
        store: Arc<dyn Store>,
        name: String,
        live: Arc<Mutex<HashSet<String>>>,
        unswept: Arc<AtomicBool>,
    ) -> Self {
        if let Ok(mut l) = live.lock() {
            l.insert(name.clone());
        }
        Self {
            store,
            name,
            live,
            unswept,
            armed: true,
        }
    }

    async fn delete(mut self) -> Result<()> {
        self.armed = false;
        let result = self.store.delete(&self.name).await;
        if result.is_err() {
            self.unswept.store(true, Ordering::Relaxed);
        }
        // Deleted, or left to the end-of-run sweep: no longer in flight either way.
        if let Ok(mut l) = self.live.lock() {
            l.remove(&self.name);
        }
        result
    }
}

impl Drop for TempObject {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Panic or cancellation: delete in the background (the end-of-run sweep catches
        // what this misses, e.g. when the runtime is shutting down).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let name = std::mem::take(&mut self.name);
            let (live, unswept) = (self.live.clone(), self.unswept.clone());
            handle.spawn(async move {
                if store.delete(&name).await.is_err() {
                    unswept.store(true, Ordering::Relaxed);
                }
                if let Ok(mut l) = live.lock() {
                    l.remove(&name);
                }
            });
        } else {
            self.unswept.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(sizes: &[u64]) -> Vec<ObjectMeta> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| ObjectMeta::new(format!("o{i}"), s))
            .collect()
    }

    #[test]
    fn cap_is_checked_before_adding() {
        // DataFlux would put 60 + 60 in one group (cap checked after adding).
        assert_eq!(
            plan_groups(&sized(&[60, 60, 60]), 32, 100),
            vec![0..1, 1..2, 2..3]
        );
        assert_eq!(plan_groups(&sized(&[50, 50, 1]), 32, 100), vec![0..2, 2..3]);
    }

    #[test]
    fn at_most_32_per_group_and_big_objects_alone() {
        let groups = plan_groups(&sized(&[1; 70]), 64, 1 << 30);
        assert_eq!(groups, vec![0..32, 32..64, 64..70]);
        assert_eq!(
            plan_groups(&sized(&[10, 500, 10]), 32, 100),
            vec![0..1, 1..2, 2..3]
        );
        assert!(plan_groups(&[], 32, 100).is_empty());
    }

    #[test]
    fn composite_names_carry_their_creation_time() {
        assert_eq!(
            created_millis("tmp/run/1700000000000-3-abcdef012345"),
            Some(1_700_000_000_000)
        );
        for other in [
            "tmp/run/manual-upload",
            "tmp/2023-01-01.jpg",
            "tmp/12345",
            "tmp/run/1700000000000-3-abcdef",
            "tmp/run/1700000000000-3-ABCDEF012345",
            "tmp/run/1700000000000-3-abcdef012345-x",
        ] {
            assert_eq!(created_millis(other), None, "{other}");
        }
    }
}
