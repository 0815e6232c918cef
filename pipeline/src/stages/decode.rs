//! decode: each object's bytes become the model's input on the CPU pool, as soon as they
//! arrive; results leave in arrival order. At most `queue` images are in the pool at once.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use crate::carrier::{BadInput, Failure, Item};
use crate::cpu_pool::CpuPool;
use crate::error::{Error, Result};
use crate::model::BatchModel;

pub(crate) async fn run<M: BatchModel>(
    model: Arc<M>,
    pool: Arc<CpuPool>,
    queue: usize,
    mut rx: mpsc::Receiver<Item<Bytes>>,
    tx: mpsc::Sender<Item<M::Input>>,
) -> Result<()> {
    let mut inflight = FuturesOrdered::new();
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                if tx.send(done).await.is_err() {
                    return Err(Error::Disconnected("decode"));
                }
            }
            next = rx.recv(), if open && inflight.len() < queue.max(1) => match next {
                Some(item) => inflight.push_back(decode(model.clone(), pool.clone(), item)),
                None => open = false,
            },
        }
    }
    Ok(())
}

async fn decode<M: BatchModel>(
    model: Arc<M>,
    pool: Arc<CpuPool>,
    item: Item<Bytes>,
) -> Item<M::Input> {
    let object = item.object().name.clone();
    let value = match item.value {
        Err(f) => Err(f),
        Ok(ref bytes) => {
            let bytes = bytes.clone();
            match pool.run(move || model.preprocess(&bytes)).await {
                Ok(Ok(input)) => Ok(input),
                Ok(Err(rejection)) => Err(Failure::Bad(BadInput {
                    object,
                    kind: rejection.kind,
                    message: rejection.message,
                })),
                Err(panic) => Err(Failure::Bad(BadInput {
                    object,
                    kind: "panic".into(),
                    message: format!("preprocessing panicked: {panic}"),
                })),
            }
        }
    };
    Item {
        chunk: item.chunk,
        index: item.index,
        value,
    }
}
