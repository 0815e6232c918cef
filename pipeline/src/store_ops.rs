//! The few store conveniences the job needs ("get or none", "create unless present", "delete
//! everything under"), and the job-level deadline on the run's own bookkeeping requests.
//!
//! Each store retries a transient failure a few times itself; what still fails transiently
//! here is retried with backoff until the job's deadline, so a GCS outage of seconds or
//! minutes delays the job instead of ending it, and only an outage past the deadline does
//! ([`Error::StoreUnavailable`], retriable: the rank restarts and carries on).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataflux::{list, ListOptions, PutMode, Store};

use crate::error::{Error, Result};

/// Runs `op` until it succeeds, fails permanently, or has failed transiently for longer
/// than `deadline`.
pub(crate) async fn with_deadline<T, F, Fut>(deadline: Duration, what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = dataflux::Result<T>>,
{
    let started = Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_temporary() => {
                let failing_for = started.elapsed();
                if failing_for >= deadline {
                    return Err(Error::StoreUnavailable {
                        failing_for,
                        deadline,
                        last: format!("{what}: {e}"),
                    });
                }
                tracing::warn!(error = %e, "{what}: the store is failing, trying again in {wait:?}");
                tokio::time::sleep(wait.min(deadline.saturating_sub(failing_for))).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(Error::store(what, e)),
        }
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
    let listing = with_deadline(deadline, "listing the run's objects", || {
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
            with_deadline(deadline, "deleting the run's temporaries", || {
                store.delete(&o.name)
            })
            .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(n)
}
