//! infer: the model on each batch, off the async runtime, with up to
//! [`BatchModel::concurrency`] batches in flight (results leave in order); items without a
//! value pass by the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::StreamExt;
use tokio::sync::mpsc;

use crate::carrier::{Chunk, Failure, Item, Part};
use crate::cpu_pool::panic_message;
use crate::error::{Error, Result};
use crate::model::{BatchModel, Row};

/// Returns the model's busy time: the time during which at least one batch was in the model.
pub(crate) async fn run<M: BatchModel>(
    model: Arc<M>,
    delay: Duration,
    rx: mpsc::Receiver<Vec<Item<M::Input>>>,
    tx: mpsc::Sender<Vec<Item<Row>>>,
) -> Result<Duration> {
    let depth = model.concurrency().max(1);
    // Set on an error: no new batch is taken, and the ones in the model are waited for, so
    // that no thread outlives the stage.
    let stop = Arc::new(AtomicBool::new(false));
    // The stream borrows the receiver: it stays open until the stage returns its error, so
    // that the stage before does not end first with a lost downstream.
    let mut rx = rx;
    let batches = futures::stream::unfold((&mut rx, stop.clone()), |(rx, stop)| async move {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        rx.recv().await.map(|batch| (batch, (rx, stop)))
    });
    let mut results = batches
        .map(|batch| infer(model.clone(), delay, batch))
        .buffered(depth)
        .boxed();
    let mut busy = Busy::default();
    let mut failed = None;
    while let Some(done) = results.next().await {
        if failed.is_some() {
            continue;
        }
        match done {
            Ok((out, span)) => {
                busy.add(span);
                if tx.send(out).await.is_err() {
                    failed = Some(Error::Disconnected("infer"));
                }
            }
            Err(e) => failed = Some(e),
        }
        if failed.is_some() {
            stop.store(true, Ordering::Relaxed);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(busy.total),
    }
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
    use crate::model::{Column, Rejection, Value};
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicUsize;

    /// Takes 50 ms per batch, two batches at once; fails on the batch holding `fail`.
    struct Slow {
        fail: u32,
        started: AtomicUsize,
        finished: AtomicUsize,
    }

    impl BatchModel for Slow {
        type Input = u32;
        fn task(&self) -> &str {
            "slow"
        }
        fn definition(&self) -> BTreeMap<String, String> {
            BTreeMap::new()
        }
        fn columns(&self) -> Vec<Column> {
            Vec::new()
        }
        fn preprocess(&self, _: &[u8]) -> Result<u32, Rejection> {
            Ok(0)
        }
        fn infer(&self, batch: Vec<u32>) -> Result<Vec<Row>, crate::ModelError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            self.finished.fetch_add(1, Ordering::SeqCst);
            if batch.contains(&self.fail) {
                return Err("the device fell over".into());
            }
            Ok(batch
                .iter()
                .map(|&v| vec![Value::Int64(i64::from(v))])
                .collect())
        }
        fn concurrency(&self) -> usize {
            2
        }
    }

    fn batch(values: std::ops::Range<u32>) -> Vec<Item<u32>> {
        let objects = values
            .clone()
            .map(|v| dataflux::ObjectMeta {
                name: format!("o{v}"),
                size: 1,
                generation: None,
                crc32c: None,
                updated: None,
            })
            .collect();
        let chunk = Arc::new(Chunk {
            id: 0,
            start: 0,
            objects,
            backup: false,
            taken: Instant::now(),
        });
        values
            .enumerate()
            .map(|(index, v)| Item {
                chunk: chunk.clone(),
                index,
                part: Part::WHOLE,
                value: Ok(v),
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_leave_in_order_and_a_failure_waits_for_the_batches_in_the_model() {
        // In order, and all rows through.
        let model = Arc::new(Slow {
            fail: u32::MAX,
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        });
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel(8);
        for b in 0..4 {
            in_tx.send(batch(b * 3..b * 3 + 3)).await.unwrap();
        }
        drop(in_tx);
        run(model.clone(), Duration::ZERO, in_rx, out_tx)
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(out) = out_rx.recv().await {
            for item in out {
                seen.push(item.value.unwrap()[0].clone());
            }
        }
        assert_eq!(seen, (0..12).map(Value::Int64).collect::<Vec<_>>());

        // The second batch fails while the third is in the model: the error comes back only
        // once the third is done, and no batch after it is taken.
        let model = Arc::new(Slow {
            fail: 4,
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        });
        let (in_tx, in_rx) = mpsc::channel(8);
        let (out_tx, _out_rx) = mpsc::channel(8);
        for b in 0..6 {
            in_tx.send(batch(b * 3..b * 3 + 3)).await.unwrap();
        }
        let err = run(model.clone(), Duration::ZERO, in_rx, out_tx)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Model(ref m) if m.contains("fell over")),
            "{err}"
        );
        let (started, finished) = (
            model.started.load(Ordering::SeqCst),
            model.finished.load(Ordering::SeqCst),
        );
        assert_eq!(started, finished, "a batch was still in the model");
        assert!(started <= 4, "{started} batches taken after the failure");
    }

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
