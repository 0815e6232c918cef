//! fetch: each chunk's objects, in order, through the rank's one fetcher (composed on GCS,
//! verified, at most the prefetch window ahead). A permanent failure is that object's error
//! row; a transient one (after the store's retries) gives the whole chunk back: its other
//! objects are not fetched, and the chunk is done again later, here or elsewhere.

use std::sync::Arc;

use bytes::Bytes;
use dataflux::{Dataset, DatasetConfig, Fetcher, Listing, Skipped, Strategy};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::carrier::{BadInput, Chunk, Failure, Item};
use crate::claims::Claims;
use crate::error::{Error, Result};
use crate::stages::claim::give_back;

pub(crate) async fn run(
    fetcher: Arc<Fetcher>,
    config: DatasetConfig,
    claims: Arc<Claims>,
    stop: CancellationToken,
    mut rx: mpsc::Receiver<Arc<Chunk>>,
    tx: mpsc::Sender<Item<Bytes>>,
) -> Result<()> {
    while let Some(chunk) = rx.recv().await {
        if stop.is_cancelled() {
            // Claimed but not started: give it back at once.
            give_back(&claims, chunk.id, chunk.backup).await;
            continue;
        }
        let listing = Listing {
            prefix: String::new(),
            objects: chunk.objects.clone(),
            skipped: Skipped::default(),
            strategy: Strategy::Sequential,
        };
        let dataset = Dataset::with_fetcher(fetcher.clone(), listing, config.clone());
        let mut stream = Box::pin(
            dataset
                .stream(dataset.start())
                .map_err(|e| Error::store("streaming a chunk", e))?,
        );
        let mut next = 0;
        let mut transient: Option<String> = None;
        while let Some(item) = stream.next().await {
            let value = match item.data {
                Ok(bytes) => Ok(bytes),
                Err(e) if e.is_temporary() => {
                    let reason = e.to_string();
                    tracing::warn!(chunk = chunk.id, object = %item.meta.name, error = %e,
                        "transient failure after retries: the chunk goes back");
                    transient = Some(reason.clone());
                    Err(Failure::Transient(reason))
                }
                Err(e) => Err(Failure::Bad(BadInput {
                    object: item.meta.name.clone(),
                    kind: error_kind(&e).into(),
                    message: e.to_string(),
                })),
            };
            next = item.index + 1;
            let out = Item {
                chunk: chunk.clone(),
                index: item.index,
                value,
            };
            if tx.send(out).await.is_err() {
                return Err(Error::Disconnected("fetch"));
            }
            if transient.is_some() {
                break;
            }
        }
        drop(stream);
        // The rest of a chunk given back (or a stream that ended early) is not fetched.
        let reason = transient.unwrap_or_else(|| "the fetch stream ended early".into());
        for index in next..chunk.objects.len() {
            let out = Item {
                chunk: chunk.clone(),
                index,
                value: Err(Failure::Transient(reason.clone())),
            };
            if tx.send(out).await.is_err() {
                return Err(Error::Disconnected("fetch"));
            }
        }
    }
    Ok(())
}

/// The error row's kind for a permanent fetch failure.
fn error_kind(e: &dataflux::Error) -> &'static str {
    match e {
        dataflux::Error::NotFound { .. } => "not_found",
        dataflux::Error::Integrity { .. } => "integrity",
        dataflux::Error::PermissionDenied { .. } => "permission_denied",
        dataflux::Error::TooLarge { .. } => "too_large",
        _ => "fetch",
    }
}
