//! batch: groups items into batches of `size` for the model, across chunk boundaries. A
//! partial batch leaves when a chunk's last item is in it and nothing else is waiting, or
//! when no item came for `linger`, so that the tail of a chunk is never held back.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::carrier::Item;
use crate::error::{Error, Result};

pub(crate) async fn run<T: Send>(
    size: usize,
    linger: Duration,
    mut rx: mpsc::Receiver<Item<T>>,
    tx: mpsc::Sender<Vec<Item<T>>>,
) -> Result<()> {
    let size = size.max(1);
    let mut batch: Vec<Item<T>> = Vec::with_capacity(size);
    loop {
        let next = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(linger, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    send(&tx, &mut batch, size).await?;
                    continue;
                }
            }
        };
        let Some(item) = next else { break };
        let ends_chunk = item.is_last_of_chunk();
        batch.push(item);
        if batch.len() >= size || (ends_chunk && rx.is_empty()) {
            send(&tx, &mut batch, size).await?;
        }
    }
    if !batch.is_empty() {
        send(&tx, &mut batch, size).await?;
    }
    Ok(())
}

async fn send<T>(
    tx: &mpsc::Sender<Vec<Item<T>>>,
    batch: &mut Vec<Item<T>>,
    size: usize,
) -> Result<()> {
    let full = std::mem::replace(batch, Vec::with_capacity(size));
    tx.send(full)
        .await
        .map_err(|_| Error::Disconnected("batch"))
}
