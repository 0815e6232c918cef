//! infer: one call of the model per batch, off the async runtime; items without a value
//! pass by the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::carrier::Item;
use crate::cpu_pool::panic_message;
use crate::error::{Error, Result};
use crate::model::{BatchModel, Row};

/// Busy time of the model.
pub(crate) async fn run<M: BatchModel>(
    model: Arc<M>,
    delay: Duration,
    mut rx: mpsc::Receiver<Vec<Item<M::Input>>>,
    tx: mpsc::Sender<Vec<Item<Row>>>,
) -> Result<Duration> {
    let mut busy = Duration::ZERO;
    while let Some(batch) = rx.recv().await {
        let mut inputs = Vec::new();
        let mut slots = Vec::with_capacity(batch.len());
        for item in batch {
            match item.value {
                Ok(input) => {
                    inputs.push(input);
                    slots.push((item.chunk, item.index, None));
                }
                Err(f) => slots.push((item.chunk, item.index, Some(f))),
            }
        }
        let n = inputs.len();
        let mut rows = if n == 0 {
            Vec::new().into_iter()
        } else {
            let m = model.clone();
            let t = Instant::now();
            let out = tokio::task::spawn_blocking(move || m.infer(inputs)).await;
            busy += t.elapsed();
            let rows = match out {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => return Err(Error::Model(e.to_string())),
                Err(join) if join.is_panic() => {
                    return Err(Error::StagePanicked {
                        stage: "infer",
                        message: panic_message(&*join.into_panic()),
                    })
                }
                Err(join) => return Err(Error::Model(join.to_string())),
            };
            if rows.len() != n {
                return Err(Error::Model(format!(
                    "{} rows for a batch of {n}",
                    rows.len()
                )));
            }
            rows.into_iter()
        };
        let out: Vec<Item<Row>> = slots
            .into_iter()
            .map(|(chunk, index, failure)| Item {
                chunk,
                index,
                value: match failure {
                    Some(f) => Err(f),
                    None => Ok(rows.next().unwrap_or_default()),
                },
            })
            .collect();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if tx.send(out).await.is_err() {
            return Err(Error::Disconnected("infer"));
        }
    }
    Ok(busy)
}
