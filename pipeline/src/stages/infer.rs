//! infer: the model on each batch, off the async runtime, with up to
//! [`BatchModel::concurrency`] batches in flight (results leave in order); items without a
//! value pass by the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use crate::carrier::{Chunk, Failure, Item, Part};
use crate::cpu_pool::panic_message;
use crate::error::{Error, Result};
use crate::model::{BatchModel, Row};

/// Returns the model's busy time: the time during which at least one batch was in the model.
pub(crate) async fn run<M: BatchModel>(
    model: Arc<M>,
    delay: Duration,
    mut rx: mpsc::Receiver<Vec<Item<M::Input>>>,
    tx: mpsc::Sender<Vec<Item<Row>>>,
) -> Result<Duration> {
    let depth = model.concurrency().max(1);
    let mut busy = Busy::default();
    let mut inflight = FuturesOrdered::new();
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                let (out, span) = match done {
                    Ok(done) => done,
                    Err(e) => {
                        // Let the batches still in the model finish: no thread outlives the stage.
                        while inflight.next().await.is_some() {}
                        return Err(e);
                    }
                };
                busy.add(span);
                if tx.send(out).await.is_err() {
                    while inflight.next().await.is_some() {}
                    return Err(Error::Disconnected("infer"));
                }
            }
            next = rx.recv(), if open && inflight.len() < depth => match next {
                Some(batch) => inflight.push_back(infer(model.clone(), delay, batch)),
                None => open = false,
            },
        }
    }
    Ok(busy.total)
}

/// When the model ran on a batch: `(start, end)`, or none for a batch without values.
type Span = Option<(Instant, Instant)>;

/// The union of the batches' spans, taken in the order they started.
#[derive(Default)]
struct Busy {
    total: Duration,
    until: Option<Instant>,
}

impl Busy {
    fn add(&mut self, span: Span) {
        let Some((start, end)) = span else { return };
        let from = self.until.map_or(start, |u| u.max(start));
        self.total += end.saturating_duration_since(from);
        self.until = Some(self.until.map_or(end, |u| u.max(end)));
    }
}

/// One batch through the model: the rows in the batch's order, failures passed through.
async fn infer<M: BatchModel>(
    model: Arc<M>,
    delay: Duration,
    batch: Vec<Item<M::Input>>,
) -> Result<(Vec<Item<Row>>, Span)> {
    let mut inputs = Vec::new();
    let mut slots: Vec<(Arc<Chunk>, usize, Part, Option<Failure>)> =
        Vec::with_capacity(batch.len());
    for item in batch {
        match item.value {
            Ok(input) => {
                inputs.push(input);
                slots.push((item.chunk, item.index, item.part, None));
            }
            Err(f) => slots.push((item.chunk, item.index, item.part, Some(f))),
        }
    }
    let n = inputs.len();
    let (mut rows, span) = if n == 0 {
        (Vec::new().into_iter(), None)
    } else {
        let out = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let rows = model.infer(inputs);
            (rows, (start, Instant::now()))
        })
        .await;
        let (rows, span) = match out {
            Ok((Ok(rows), span)) => (rows, span),
            Ok((Err(e), _)) => return Err(Error::Model(e.to_string())),
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
        (rows.into_iter(), Some(span))
    };
    let out = slots
        .into_iter()
        .map(|(chunk, index, part, failure)| Item {
            chunk,
            index,
            part,
            value: match failure {
                Some(f) => Err(f),
                None => Ok(rows.next().unwrap_or_default()),
            },
        })
        .collect();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok((out, span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_is_the_union_of_overlapping_batches() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut busy = Busy::default();
        busy.add(Some((at(0), at(100))));
        busy.add(Some((at(50), at(150)))); // overlaps the first by 50 ms
        busy.add(None);
        busy.add(Some((at(120), at(130)))); // inside the second
        busy.add(Some((at(200), at(260)))); // after a gap
        assert_eq!(busy.total, Duration::from_millis(210));
    }
}
