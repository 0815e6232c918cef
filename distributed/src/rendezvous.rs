//! A small key-value rendezvous over an object store, scoped to one run.
//!
//! Every rank opens the same location (e.g. the job's output location) with the same run
//! id; keys live under `<prefix>dataflux-tmp/rendezvous/<run id>/`. `dataflux` listings skip
//! `dataflux-tmp/` at the bucket root by default; if the rendezvous shares a prefix with
//! the input, list with `ListOptions::temp_prefix` set to `<prefix>dataflux-tmp/` (or,
//! simpler, put the rendezvous under the output location). Writes are create-only ([`PutMode::Create`], GCS `ifGenerationMatch=0`), so two
//! ranks can never both win a key, and every read after the first write sees the same bytes.
//! Waiting is polling with exponential backoff and jitter; a timeout names the key, or the
//! ranks that never arrived.
//!
//! Object layout under the run's folder:
//!
//! | object                 | written by          | read by                          |
//! |------------------------|---------------------|----------------------------------|
//! | `kv/<key>`             | [`Rendezvous::set`] | [`Rendezvous::get`], [`Rendezvous::wait`] |
//! | `barrier/<name>/<rank>`| each rank           | everyone, by listing             |
//! | `gather/<name>/<rank>` | each rank           | everyone                         |
//! | `finish/<rank>`        | each rank           | rank 0, then it deletes the run  |
//!
//! **Restarts.** A rank that restarts re-runs the same calls: its arrivals are already there
//! (`AlreadyExists` is fine), [`Rendezvous::share`] returns the value first published, and
//! [`Rendezvous::all_gather`] returns the values first posted (its own included), so it
//! gets the same answers as the first time.
//!
//! **Names** of barriers and gathers must be the same on every rank and used once per run:
//! name them after the call site (`barrier("listed")`) and add an index inside loops.
//!
//! **Run ids** must be the same on every rank and unique per job (a reused id finds the
//! previous run's keys if it crashed before [`Rendezvous::finish`]); in Kubernetes, pass the
//! Job's uid as `DATAFLUX_RUN_ID`.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dataflux::{folder_prefix, Location, PutMode, Store, DEFAULT_TEMP_PREFIX};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::topology::Topology;

/// The variable holding the run id (same on every rank, unique per job).
pub const DATAFLUX_RUN_ID: &str = "DATAFLUX_RUN_ID";
/// torchrun's run id (`--rdzv-id`), used when `DATAFLUX_RUN_ID` is not set.
pub const TORCHELASTIC_RUN_ID: &str = "TORCHELASTIC_RUN_ID";

/// Folder (inside the temporary prefix) that holds every run's keys.
const FOLDER: &str = "rendezvous/";
/// Concurrent requests when reading gathered values or deleting a run.
const CONCURRENCY: usize = 16;
/// Longest key, barrier or gather name.
const MAX_NAME: usize = 200;

/// Timeouts and polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RendezvousOptions {
    /// How long `wait`, `barrier`, `all_gather` and `finish` wait before giving up.
    pub timeout: Duration,
    /// First pause between polls.
    pub poll_initial: Duration,
    /// Longest pause between polls (the pause grows by half each time, plus up to 25 %
    /// jitter so that ranks do not poll in lockstep).
    pub poll_max: Duration,
}

impl Default for RendezvousOptions {
    /// 30 minutes (rank 0 may be listing a big bucket), polls from 50 ms to 2 s.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30 * 60),
            poll_initial: Duration::from_millis(50),
            poll_max: Duration::from_secs(2),
        }
    }
}

/// Chainable setters, one per field: callers build it as
/// `RendezvousOptions::default().with_…(…)`, so that new fields do not break them.
impl RendezvousOptions {
    /// Sets [`timeout`](Self::timeout): how long `wait`, `barrier`, `all_gather` and `finish` wait
    /// before giving up.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`poll_initial`](Self::poll_initial): first pause between polls.
    #[must_use]
    pub fn with_poll_initial(mut self, poll_initial: Duration) -> Self {
        self.poll_initial = poll_initial;
        self
    }

    /// Sets [`poll_max`](Self::poll_max): longest pause between polls (the pause grows by half each
    /// time, plus up to 25 % jitter so that ranks do not poll in lockstep).
    #[must_use]
    pub fn with_poll_max(mut self, poll_max: Duration) -> Self {
        self.poll_max = poll_max;
        self
    }
}

/// A key-value rendezvous for one run, seen from one rank. See the [module docs](self).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), dataflux_distributed::Error> {
/// use dataflux_distributed::{Rendezvous, Topology};
/// let topology = Topology::single();
/// let rdzv = Rendezvous::open("memory://doc/out", "run-42", &topology).await?;
/// // Rank 0 computes the listing once; the others wait for it.
/// let listing = rdzv.share("listing", || async { Ok::<_, std::io::Error>("a\nb\n".into()) }).await?;
/// rdzv.barrier("listed").await?;
/// let counts = rdzv.all_gather("count", "2").await?;
/// assert_eq!((listing.as_ref(), counts.len()), (&b"a\nb\n"[..], 1));
/// rdzv.finish().await?; // rank 0 deletes the run's keys once every rank is done
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Rendezvous {
    store: Arc<dyn Store>,
    root: String,
    rank: usize,
    world_size: usize,
    options: RendezvousOptions,
    used: Mutex<HashSet<String>>,
}

impl Rendezvous {
    /// A rendezvous in `store` under `prefix` (a folder, e.g. the job's output prefix) for
    /// `run_id`, as rank `topology.rank` of `topology.world_size`.
    pub fn new(
        store: Arc<dyn Store>,
        prefix: &str,
        run_id: &str,
        topology: &Topology,
    ) -> Result<Self> {
        check_name(run_id)?;
        Ok(Self {
            store,
            root: format!(
                "{}{DEFAULT_TEMP_PREFIX}{FOLDER}{run_id}/",
                folder_prefix(prefix)
            ),
            rank: topology.rank,
            world_size: topology.world_size.max(1),
            options: RendezvousOptions::default(),
            used: Mutex::new(HashSet::new()),
        })
    }

    /// Opens `url` (`gs://bucket/prefix`, `file:///dir`, `memory://name`, …) for writing and
    /// builds a rendezvous under its prefix.
    pub async fn open(url: &str, run_id: &str, topology: &Topology) -> Result<Self> {
        let location = Location::parse(url)?;
        let store = location.open_for_write().await?;
        Self::new(store, &location.prefix, run_id, topology)
    }

    /// [`Rendezvous::open`] with the run id from [`run_id_from_env`].
    pub async fn open_from_env(url: &str, topology: &Topology) -> Result<Self> {
        Self::open(url, &run_id_from_env()?, topology).await
    }

    /// Replaces the timeouts and polling.
    pub fn with_options(mut self, options: RendezvousOptions) -> Self {
        self.options = options;
        self
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The folder (object-name prefix) holding this run's keys.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The store the keys live in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stores `value` under `key`. Writing the same bytes again (a restarted rank) is fine;
    /// different bytes give [`Error::Conflict`].
    pub async fn set(&self, key: &str, value: impl Into<Bytes>) -> Result<()> {
        let value = value.into();
        let stored = self.set_if_absent(key, value.clone()).await?;
        if stored != value {
            return Err(Error::Conflict {
                key: key.to_string(),
                rank: self.rank,
                existing: stored.len(),
                attempted: value.len(),
            });
        }
        Ok(())
    }

    /// Stores `value` under `key` unless a value is there already; returns the value that
    /// won (exactly one writer wins, whatever the race).
    pub async fn set_if_absent(&self, key: &str, value: impl Into<Bytes>) -> Result<Bytes> {
        check_name(key)?;
        let value = value.into();
        let name = self.kv_name(key);
        match self.store.put(&name, value.clone(), PutMode::Create).await {
            Ok(_) => Ok(value),
            Err(dataflux::Error::AlreadyExists { .. }) => Ok(self.store.get(&name, None).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// The value under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        check_name(key)?;
        self.get_object(&self.kv_name(key)).await
    }

    /// Waits (up to the timeout) for a value under `key`.
    pub async fn wait(&self, key: &str) -> Result<Bytes> {
        self.wait_timeout(key, self.options.timeout).await
    }

    /// Waits up to `timeout` for a value under `key`.
    pub async fn wait_timeout(&self, key: &str, timeout: Duration) -> Result<Bytes> {
        check_name(key)?;
        let name = self.kv_name(key);
        let start = Instant::now();
        let mut backoff = Backoff::new(&self.options);
        loop {
            if let Some(value) = self.get_object(&name).await? {
                return Ok(value);
            }
            if start.elapsed() >= timeout {
                return Err(Error::KeyTimeout {
                    key: key.to_string(),
                    location: self.store.object_url(&name),
                    waited: start.elapsed(),
                });
            }
            tracing::debug!(key, rank = self.rank, "waiting for rendezvous key");
            backoff.sleep().await;
        }
    }

    /// Rank 0 publishes what `produce` returns under `key` (unless a previous attempt of
    /// rank 0 already did, in which case that value is returned and `produce` is not
    /// called); every other rank waits for it. All ranks get the same bytes.
    ///
    /// Use it for whatever should be computed once: the listing manifest, the NCCL id.
    pub async fn share<F, Fut, E>(&self, key: &str, produce: F) -> Result<Bytes>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.rank != 0 {
            return self.wait(key).await;
        }
        if let Some(existing) = self.get(key).await? {
            return Ok(existing);
        }
        let value = produce().await.map_err(|e| Error::Produce {
            key: key.to_string(),
            source: e.into(),
        })?;
        self.set_if_absent(key, value).await
    }

    /// Waits until every rank has called `barrier(name)`.
    pub async fn barrier(&self, name: &str) -> Result<()> {
        self.claim("barrier", name)?;
        let dir = format!("{}barrier/{name}/", self.root);
        self.arrive(&dir, Bytes::new()).await?;
        self.await_ranks("barrier", name, &dir).await
    }

    /// Posts `value` (a small message) and returns every rank's, in rank order.
    ///
    /// The first value a rank posts is the one everyone gets: a restarted rank that posts
    /// something else gets (and returns) its first value, with a warning.
    pub async fn all_gather(&self, name: &str, value: impl Into<Bytes>) -> Result<Vec<Bytes>> {
        self.claim("all_gather", name)?;
        let dir = format!("{}gather/{name}/", self.root);
        let value = value.into();
        if let Some(previous) = self.arrive(&dir, value.clone()).await? {
            if previous != value {
                tracing::warn!(
                    name,
                    rank = self.rank,
                    "all_gather: this rank posted a different value before restarting; \
                     the first one is kept so that every rank sees the same result"
                );
            }
        }
        self.await_ranks("all_gather", name, &dir).await?;
        futures::stream::iter(0..self.world_size)
            .map(|rank| {
                let object = format!("{dir}{rank}");
                async move { Ok::<_, Error>(self.store.get(&object, None).await?) }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// Says this rank is done with the rendezvous. Rank 0 then waits for every rank to say
    /// so and deletes the run's keys; the other ranks return at once. Call it last, after
    /// the final read.
    pub async fn finish(&self) -> Result<()> {
        let dir = format!("{}finish/", self.root);
        self.arrive(&dir, Bytes::new()).await?;
        if self.rank == 0 {
            self.await_ranks("finish", "finish", &dir).await?;
            let removed = self.cleanup().await?;
            tracing::debug!(removed, root = %self.root, "rendezvous cleaned up");
        }
        Ok(())
    }

    /// Deletes every key of this run now, whoever may still be using them; returns how
    /// many objects were deleted. [`Rendezvous::finish`] calls it safely.
    pub async fn cleanup(&self) -> Result<usize> {
        let names = self.list_names(&self.root).await?;
        let count = names.len();
        futures::stream::iter(names)
            .map(|name| async move { self.store.delete(&name).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(count)
    }

    fn kv_name(&self, key: &str) -> String {
        format!("{}kv/{key}", self.root)
    }

    /// Marks `name` as used by `operation`; a second use is a bug on every rank.
    fn claim(&self, operation: &'static str, name: &str) -> Result<()> {
        check_name(name)?;
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !used.insert(format!("{operation}/{name}")) {
            return Err(Error::NameReused {
                operation,
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Posts this rank's object in `dir`; returns the value already there if a previous
    /// attempt of this rank posted one.
    async fn arrive(&self, dir: &str, value: Bytes) -> Result<Option<Bytes>> {
        let name = format!("{dir}{}", self.rank);
        match self.store.put(&name, value, PutMode::Create).await {
            Ok(_) => Ok(None),
            Err(dataflux::Error::AlreadyExists { .. }) => {
                Ok(Some(self.store.get(&name, None).await?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Polls `dir` until every rank's object is there.
    async fn await_ranks(&self, operation: &'static str, name: &str, dir: &str) -> Result<()> {
        let start = Instant::now();
        let mut backoff = Backoff::new(&self.options);
        loop {
            let arrived = self.arrived(dir).await?;
            if arrived.len() == self.world_size {
                return Ok(());
            }
            if start.elapsed() >= self.options.timeout {
                return Err(Error::RanksMissing {
                    operation,
                    name: name.to_string(),
                    missing: (0..self.world_size)
                        .filter(|r| !arrived.contains(r))
                        .collect(),
                    world_size: self.world_size,
                    waited: start.elapsed(),
                });
            }
            tracing::debug!(
                operation,
                name,
                arrived = arrived.len(),
                world_size = self.world_size,
                "waiting for ranks"
            );
            backoff.sleep().await;
        }
    }

    /// The ranks whose objects are in `dir` (other names are ignored).
    async fn arrived(&self, dir: &str) -> Result<BTreeSet<usize>> {
        Ok(self
            .list_names(dir)
            .await?
            .iter()
            .filter_map(|n| n.strip_prefix(dir)?.parse::<usize>().ok())
            .filter(|&r| r < self.world_size)
            .collect())
    }

    /// Every object name under `prefix` (the run's own objects: no temporary-name filter).
    async fn list_names(&self, prefix: &str) -> Result<Vec<String>> {
        let options = dataflux::ListOptions::default().with_temp_prefix(String::new());
        let listing = dataflux::list(&self.store, prefix, &options).await?;
        Ok(listing.objects.into_iter().map(|o| o.name).collect())
    }

    async fn get_object(&self, name: &str) -> Result<Option<Bytes>> {
        match self.store.get(name, None).await {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The run id: `DATAFLUX_RUN_ID`, else torchrun's `TORCHELASTIC_RUN_ID` unless it is
/// torchrun's default `none`.
pub fn run_id_from_env() -> Result<String> {
    run_id_from_vars(|name| std::env::var(name).ok())
}

/// [`run_id_from_env`] with variables looked up through `var`.
pub fn run_id_from_vars(var: impl Fn(&str) -> Option<String>) -> Result<String> {
    let id = var(DATAFLUX_RUN_ID)
        .filter(|v| !v.is_empty())
        .or_else(|| var(TORCHELASTIC_RUN_ID).filter(|v| !v.is_empty() && v != "none"))
        .ok_or(Error::MissingRunId)?;
    check_name(&id)?;
    Ok(id)
}

/// Keys, names and run ids become object-name segments: letters, digits, `-`, `_`, `.`.
fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME {
        Some("longer than 200 bytes")
    } else if name.starts_with('.') {
        Some("starts with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Exponential backoff with jitter between polls.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(options: &RendezvousOptions) -> Self {
        Self {
            next: options.poll_initial,
            max: options.poll_max.max(options.poll_initial),
        }
    }

    async fn sleep(&mut self) {
        let jitter = rand::rng().random_range(0.0..0.25);
        tokio::time::sleep(self.next.mul_f64(1.0 + jitter)).await;
        self.next = self.next.mul_f64(1.5).min(self.max);
    }
}

#[cfg(test)]
mod tests;
