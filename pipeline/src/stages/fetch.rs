//! fetch: each chunk's objects, in order, through the rank's one fetcher (composed on GCS,
//! verified, at most the prefetch window ahead). A permanent failure is that object's error
//! row; a transient one (after the store's retries) gives the whole chunk back: its other
//! objects are not fetched, and the chunk is done again later, here or elsewhere. When the
//! job samples videos, objects above [`crate::video::INLINE_BYTES`] are not fetched whole:
//! they pass on as [`Payload::Remote`], to be read by ranges as they are decoded.

use std::sync::Arc;

use dataflux::{Dataset, DatasetConfig, Fetcher, Listing, Skipped, Strategy};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::carrier::{Chunk, Failure, Item, Part, Payload};
use crate::claims::Claims;
use crate::error::{Error, Result};

pub(crate) async fn run(
    fetcher: Arc<Fetcher>,
    config: DatasetConfig,
    remote_above: Option<u64>,
    claims: Arc<Claims>,
    stop: CancellationToken,
    mut rx: mpsc::Receiver<Arc<Chunk>>,
    tx: mpsc::Sender<Item<Payload>>,
) -> Result<()> {
    let send = |index: usize, chunk: &Arc<Chunk>, value: Result<Payload, Failure>| {
        let out = Item {
            chunk: chunk.clone(),
            index,
            part: Part::WHOLE,
            value,
        };
        let tx = tx.clone();
        async move { tx.send(out).await.map_err(|_| Error::Disconnected("fetch")) }
    };
    while let Some(chunk) = rx.recv().await {
        if stop.is_cancelled() {
            // Claimed but not started: give it back at once.
            claims.give_back(&chunk).await;
            continue;
        }
        let remote = |i: usize| remote_above.is_some_and(|limit| chunk.objects[i].size > limit);
        // The objects fetched whole, and where each is in the chunk.
        let whole: Vec<usize> = (0..chunk.objects.len()).filter(|&i| !remote(i)).collect();
        let listing = Listing {
            prefix: String::new(),
            objects: whole.iter().map(|&i| chunk.objects[i].clone()).collect(),
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
        while next < chunk.objects.len() {
            if remote(next) {
                send(next, &chunk, Ok(Payload::Remote)).await?;
                next += 1;
                continue;
            }
            let Some(item) = stream.next().await else {
                break;
            };
            let index = whole.get(item.index).copied().unwrap_or(next);
            let value = match item.data {
                Ok(bytes) => Ok(Payload::Bytes(bytes)),
                Err(e) => {
                    let failure = Failure::of_fetch(&item.meta.name, &e);
                    if let Failure::Transient(reason) = &failure {
                        tracing::warn!(chunk = chunk.id, object = %item.meta.name, error = %e,
                            "transient failure after retries: the chunk goes back");
                        transient = Some(reason.clone());
                    }
                    Err(failure)
                }
            };
            next = index + 1;
            send(index, &chunk, value).await?;
            if transient.is_some() {
                break;
            }
        }
        drop(stream);
        // The rest of a chunk given back (or a stream that ended early) is not fetched.
        let reason = transient.unwrap_or_else(|| "the fetch stream ended early".into());
        for index in next..chunk.objects.len() {
            send(index, &chunk, Err(Failure::Transient(reason.clone()))).await?;
        }
    }
    Ok(())
}
