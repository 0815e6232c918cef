//! The few store conveniences the job needs ("get or none", "create unless present", "delete
//! everything under"), and the job-level deadline on the run's own bookkeeping requests.
//!
//! Retrying is the store's own (one retry layer, `dataflux::store::retrying`), with the job's
//! deadline as its policy: a GCS outage of seconds or minutes delays the job instead of
//! ending it, and only an outage past the deadline does ([`Error::StoreUnavailable`],
//! retriable: the rank restarts and carries on).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataflux::{list, ListOptions, PutMode, Store};

use crate::error::{Error, Result};

/// Runs one bookkeeping request and types its failure. There is no retry here: the store's
/// own retry layer (`dataflux::store::retrying`) is the only one, and [`crate::Job::preflight`]
/// opens the job's stores with the job's deadline as its policy. So a transient failure that
/// reaches this point has outlasted the deadline: it becomes [`Error::StoreUnavailable`]
/// (retriable: the rank restarts and carries on); a permanent one, [`Error::Store`].
pub(crate) async fn store_call<T, F, Fut>(deadline: Duration, what: &str, op: F) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = dataflux::Result<T>>,
{
    let started = Instant::now();
    match op().await {
        Ok(v) => Ok(v),
        Err(e) if e.is_temporary() => Err(Error::StoreUnavailable {
            failing_for: started.elapsed(),
            deadline,
            last: format!("{what}: {e}"),
        }),
        Err(e) => Err(Error::store(what, e)),
    }
}

/// Waiting for what another rank writes (rank 0's index, the other ranks' shards): look, and
/// if it is not there yet, [`Poller::wait`], until the timeout.
pub(crate) struct Poller {
    started: Instant,
    every: Duration,
    timeout: Duration,
}

impl Poller {
    /// Looks every `every` (at most every 500 ms) for up to `timeout`.
    pub fn new(every: Duration, timeout: Duration) -> Self {
        Self {
            started: Instant::now(),
            every: every.min(Duration::from_millis(500)),
            timeout,
        }
    }

    /// Sleeps until the next look; `Err(waited)` once the timeout has passed.
    pub async fn wait(&self) -> std::result::Result<(), Duration> {
        let waited = self.started.elapsed();
        if waited > self.timeout {
            return Err(waited);
        }
        tokio::time::sleep(self.every).await;
        Ok(())
    }
}

/// Reads an object, `None` when there is none.
pub(crate) async fn get_or_none(store: &dyn Store, name: &str) -> dataflux::Result<Option<Bytes>> {
    match store.get(name, None).await {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an object exists.
pub(crate) async fn exists(store: &dyn Store, name: &str) -> dataflux::Result<bool> {
    match store.head(name).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates an object unless one is there; `false` if one was.
pub(crate) async fn create(store: &dyn Store, name: &str, data: Bytes) -> dataflux::Result<bool> {
    match store.put(name, data, PutMode::Create).await {
        Ok(_) => Ok(true),
        Err(dataflux::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every object under `prefix` (the run's own folder: no temporary-name filter).
pub(crate) async fn list_all(
    store: &Arc<dyn Store>,
    prefix: &str,
    deadline: Duration,
) -> Result<Vec<dataflux::ObjectMeta>> {
    let options = ListOptions::default().with_temp_prefix(String::new());
    let listing = store_call(deadline, "listing the run's objects", || {
        list(store, prefix, &options)
    })
    .await?;
    Ok(listing.objects)
}

/// Deletes every object under `prefix`.
pub(crate) async fn delete_all(
    store: &Arc<dyn Store>,
    prefix: &str,
    deadline: Duration,
) -> Result<usize> {
    use futures::{StreamExt, TryStreamExt};
    let names = list_all(store, prefix, deadline).await?;
    let n = names.len();
    futures::stream::iter(names)
        .map(|o| async move {
            store_call(deadline, "deleting the run's temporaries", || {
                store.delete(&o.name)
            })
            .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(n)
}
