//! claim: picks chunks (this rank's range first, then others' unclaimed or lapsed chunks,
//! then backups when idle), claims them and hands them on with their objects, until every
//! chunk of the run is committed or the job is asked to stop.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::carrier::Chunk;
use crate::claims::{Board, Claims, Pick};
use crate::error::{Error, Result};
use crate::plan::{load_chunk, Index};
use crate::progress::Progress;

/// The run's plan, whether to back up, and who hears of each look (the run's store, and how
/// often to look again, are the claims').
pub(crate) struct ClaimConfig {
    pub index: Index,
    pub speculate: bool,
    pub progress: Progress,
}

/// One look at the run's claims and commits, also told to the progress view.
pub(crate) async fn look(claims: &Claims, index: &Index, progress: &Progress) -> Result<Board> {
    let board = claims.scan().await?;
    progress.tally(claims.tally(&board, |c| index.chunk_range(c).len()));
    Ok(board)
}

pub(crate) async fn run(
    config: ClaimConfig,
    claims: Arc<Claims>,
    stop: CancellationToken,
    tx: mpsc::Sender<Arc<Chunk>>,
) -> Result<()> {
    let mut board = look(&claims, &config.index, &config.progress).await?;
    let mut backed_up: HashSet<usize> = HashSet::new();
    loop {
        if stop.is_cancelled() || board.finished {
            return Ok(());
        }
        let pick = claims.pick(&board, config.speculate, &backed_up);
        let (chunk, backup) = match pick {
            Some(Pick::Claim { chunk, attempt }) => {
                if !claims.try_claim(chunk, attempt).await? {
                    board = look(&claims, &config.index, &config.progress).await?;
                    continue;
                }
                (chunk, false)
            }
            Some(Pick::Backup { chunk }) => {
                tracing::info!(chunk, "running a backup of a chunk held elsewhere for long");
                backed_up.insert(chunk);
                claims.backup_started();
                (chunk, true)
            }
            None => {
                if board.all_committed(&claims.committed_here()) {
                    return Ok(());
                }
                // Wait for a commit or release here, or look again after `poll`.
                let changed = claims.changed.notified();
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep(claims.run().poll) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
                board = look(&claims, &config.index, &config.progress).await?;
                continue;
            }
        };
        let mut item = Chunk {
            id: chunk,
            start: config.index.chunk_range(chunk).start,
            objects: Vec::new(),
            backup,
            taken: Instant::now(),
        };
        match load_chunk(claims.run(), &config.index, chunk).await {
            Ok(objects) => item.objects = objects,
            Err(e) => {
                claims.give_back(&item).await;
                return Err(e);
            }
        }
        if let Err(mpsc::error::SendError(item)) = tx.send(Arc::new(item)).await {
            claims.give_back(&item).await;
            return Err(Error::Disconnected("claim"));
        }
    }
}
