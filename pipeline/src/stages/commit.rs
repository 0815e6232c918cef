//! commit: collects each chunk's rows and error rows and, once every image of the chunk has
//! one, commits them create-only (or, if any image failed transiently, gives the chunk back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::carrier::{BadInput, Chunk, Failure, Item};
use crate::claims::{Claims, Commit};
use crate::error::{Error, Result};
use crate::model::Value;
use crate::model::{Column, Row};
use crate::output::{chunk_results, error_rows, Record};
use crate::progress::Progress;
use crate::spec::OutputFormat;

/// What this rank's commits came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitCounts {
    /// Chunks whose commit is this rank's.
    pub chunks_committed: u64,
    /// Chunks this rank finished after another had committed them (its copy discarded).
    pub chunks_discarded: u64,
    /// Chunks given back after transient failures.
    pub chunks_released: u64,
    /// Images with a row in this rank's commits.
    pub images_ok: u64,
    /// Images with an error row in this rank's commits.
    pub images_failed: u64,
}

pub(crate) struct CommitConfig {
    pub format: OutputFormat,
    /// Rows start with the sample's `frame` and `time_s` (the job samples videos; a still
    /// image is frame 0 at 0 s).
    pub frames: bool,
    pub columns: Vec<Column>,
    pub deadline: Duration,
    pub progress: Progress,
}

struct Open {
    chunk: Arc<Chunk>,
    rows: Vec<(usize, Row)>,
    bad: Vec<BadInput>,
    transient: Option<String>,
    seen: usize,
}

pub(crate) async fn run(
    config: CommitConfig,
    claims: Arc<Claims>,
    mut rx: mpsc::Receiver<Vec<Item<Row>>>,
) -> Result<CommitCounts> {
    let mut counts = CommitCounts::default();
    let mut open: Option<Open> = None;
    let mut failing_since: Option<Instant> = None;
    while let Some(batch) = rx.recv().await {
        for item in batch {
            let current = open.get_or_insert_with(|| Open {
                chunk: item.chunk.clone(),
                rows: Vec::new(),
                bad: Vec::new(),
                transient: None,
                seen: 0,
            });
            if !Arc::ptr_eq(&current.chunk, &item.chunk) || item.index != current.seen {
                return Err(Error::Model(format!(
                    "internal: item {} of chunk {} arrived while chunk {} expected item {}",
                    item.index, item.chunk.id, current.chunk.id, current.seen
                )));
            }
            if item.part.last {
                current.seen += 1;
            }
            match item.value {
                Ok(row) => {
                    config.progress.image(false);
                    let row = if config.frames {
                        let (k, t) = item.part.frame.map_or((0, 0.0), |f| (f.k, f.time_s));
                        let mut full = Vec::with_capacity(row.len() + 2);
                        full.push(Value::Int64(i64::try_from(k).unwrap_or(i64::MAX)));
                        full.push(Value::Seconds(t));
                        full.extend(row);
                        full
                    } else {
                        row
                    };
                    current.rows.push((item.index, row));
                }
                Err(Failure::Bad(b)) => {
                    config.progress.image(true);
                    tracing::debug!(object = %b.object, kind = %b.kind, "bad input: {}", b.message);
                    current.bad.push(b);
                }
                Err(Failure::Transient(reason)) => {
                    current.transient.get_or_insert(reason);
                }
            }
            if current.seen == current.chunk.objects.len() {
                if let Some(done) = open.take() {
                    finish(&config, &claims, done, &mut counts, &mut failing_since).await?;
                }
            }
        }
    }
    if let Some(partial) = open {
        // The stream ended inside a chunk (a stop): it is not committed.
        claims.give_back(&partial.chunk).await;
    }
    Ok(counts)
}

async fn finish(
    config: &CommitConfig,
    claims: &Claims,
    done: Open,
    counts: &mut CommitCounts,
    failing_since: &mut Option<Instant>,
) -> Result<()> {
    let chunk = &done.chunk;
    if let Some(reason) = done.transient {
        claims.give_back_failed(chunk).await;
        counts.chunks_released += 1;
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() > config.deadline {
            return Err(Error::StoreUnavailable {
                failing_for: since.elapsed(),
                deadline: config.deadline,
                last: reason,
            });
        }
        return Ok(());
    }
    *failing_since = None;
    let records: Vec<Record<'_>> = done
        .rows
        .iter()
        .map(|(i, row)| {
            let object = &chunk.objects[*i];
            Record {
                object: &object.name,
                image_id: object.stem(),
                row,
            }
        })
        .collect();
    let commit = Commit {
        ok: done.rows.len() as u64,
        failed: done.bad.len() as u64,
        results: Bytes::from(chunk_results(config.format, &config.columns, &records)?),
        errors: Bytes::from(error_rows(&done.bad)),
    };
    let ours = claims.commit(chunk, commit.encode()).await?;
    if ours {
        config.progress.chunk_committed();
        counts.chunks_committed += 1;
        counts.images_ok += commit.ok;
        counts.images_failed += commit.failed;
        tracing::info!(
            chunk = chunk.id,
            images = chunk.objects.len(),
            bad = commit.failed,
            secs = chunk.taken.elapsed().as_secs_f64(),
            "committed a chunk"
        );
    } else {
        counts.chunks_discarded += 1;
        tracing::info!(
            chunk = chunk.id,
            "chunk already committed elsewhere: this copy is discarded"
        );
    }
    Ok(())
}
