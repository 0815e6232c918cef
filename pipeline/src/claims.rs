//! The chunk protocol, in one place: claims with leases, renewal, release, takeover, and
//! create-only commits.
//!
//! - **Claim**: a rank claims chunk `c` by creating `claims/<c>.<attempt>` create-only; of
//!   several ranks (or two processes of one rank) trying the same attempt, one wins.
//! - **Lease**: the holder rewrites its claim every third of the lease. A claim whose last
//!   write is older than the lease, by the store's own timestamps (each process reads the
//!   store's clock by writing a probe object and reading its timestamp back), has lapsed:
//!   another rank takes it over by creating the next attempt. Node clocks are never compared.
//! - **Release**: a holder that gives a chunk back (a transient outage, a stop request)
//!   empties its claim; an empty claim is free at once.
//! - **Commit**: a chunk's rows and error rows are one object `commits/<c>`, created
//!   create-only. A commit that finds one there (a zombie, a takeover race, a backup task)
//!   discards its own copy: a chunk's rows are written once and never changed.
//!
//! Nothing here trusts a claim for correctness: claims only avoid doing work twice; the
//! create-only commit is what makes every image's row exist exactly once.
//!
//! Apart from the protocol: which chunk to take next is [`crate::pick`] (pure, unit-tested),
//! the store's clock [`crate::store_clock`], a commit's bytes [`crate::commit_format`], and
//! the run's store [`crate::run_store`]. A process's state is one `Mutex<State>` (never held
//! across an await) besides the async lock over the claims it holds.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use dataflux::PutMode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::carrier::Chunk;
pub(crate) use crate::commit_format::Commit;
use crate::error::{Error, Result};
use crate::progress::JobTally;
use crate::run_store::RunStore;
use crate::store_clock::Reading;
use crate::store_ops::{self, store_call};

/// What is known of every chunk at one look at the store.
#[derive(Debug, Clone)]
pub(crate) struct Board {
    /// The run's job summary exists: another attempt finished the run.
    pub finished: bool,
    committed: Vec<bool>,
    latest: Vec<Option<Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    attempt: u32,
    updated: Option<DateTime<Utc>>,
    released: bool,
}

impl Board {
    /// Whether every chunk is committed, as seen then or committed here since.
    pub fn all_committed(&self, here: &HashSet<usize>) -> bool {
        self.committed
            .iter()
            .enumerate()
            .all(|(c, &done)| done || here.contains(&c))
    }
}

/// What a rank should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Claim `chunk` as `attempt`.
    Claim { chunk: usize, attempt: u32 },
    /// Run `chunk`, which a live rank holds, as a backup.
    Backup { chunk: usize },
}

#[derive(Serialize, Deserialize)]
struct ClaimBody<'a> {
    holder: &'a str,
    rank: usize,
}

/// Who a claim object says holds the chunk: `(holder, rank)`, `None` for an emptied (given
/// back) or unreadable claim.
pub(crate) fn read_claim(body: &[u8]) -> Option<(String, usize)> {
    let b: ClaimBody<'_> = serde_json::from_slice(body).ok()?;
    Some((b.holder.to_string(), b.rank))
}

/// One process's side of the protocol.
pub(crate) struct Claims {
    /// The run's bookkeeping store.
    run: RunStore,
    holder: String,
    rank: usize,
    world: usize,
    chunks: usize,
    lease: Duration,
    /// Chunks this process holds → its claim's name. Renewal and release take the lock
    /// for their writes, so a release is never followed by a renewal of the same claim.
    held: tokio::sync::Mutex<HashMap<usize, String>>,
    /// Everything else this process knows, under one lock never held across an await.
    state: Mutex<State>,
    /// Woken on every commit or release.
    pub changed: Notify,
}

/// What a [`Claims`] keeps besides its held claims.
#[derive(Default)]
struct State {
    /// The chunks of `held`, readable without waiting for a renewal's writes.
    held_snapshot: HashSet<usize>,
    /// Backup copies running here.
    backups: usize,
    /// The store's clock as last read.
    clock: Option<Reading>,
    /// Chunks this process committed (or found committed when it tried).
    committed_here: HashSet<usize>,
    /// Chunks this process gave back after a transient failure: not before, and how often.
    deferred: HashMap<usize, (Instant, u32)>,
    /// When this process first saw each chunk held by someone else.
    seen_held: HashMap<usize, Instant>,
    /// Mean seconds from claim to commit here, and how many chunks measured.
    chunk_secs: (f64, u32),
}

impl Claims {
    pub fn new(run: RunStore, rank: usize, world: usize, chunks: usize, lease: Duration) -> Self {
        Self {
            run,
            holder: uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
            rank,
            world,
            chunks,
            lease,
            held: Default::default(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        }
    }

    /// Chunks committed by this process (or found committed when it tried to).
    pub fn committed_here(&self) -> HashSet<usize> {
        self.with_state(|s| s.committed_here.clone())
    }

    /// The run's bookkeeping store.
    pub fn run(&self) -> &RunStore {
        &self.run
    }

    /// This process's id in claims and temporaries.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Reads the store's clock ([`crate::store_clock::probe`]).
    pub async fn tick_clock(&self) -> Result<()> {
        match crate::store_clock::probe(&self.run, &self.holder).await? {
            Some(reading) => self.with_state(|s| s.clock = Some(reading)),
            None => tracing::warn!(
                "the store reports no object timestamps: lapsed leases cannot be taken over"
            ),
        }
        Ok(())
    }

    /// The store's time now, from the last reading.
    fn now(&self) -> Option<DateTime<Utc>> {
        self.with_state(|s| s.clock)?.now()
    }

    /// Looks at every claim and commit of the run (two listings).
    pub async fn scan(&self) -> Result<Board> {
        let mut board = Board {
            finished: false,
            committed: vec![false; self.chunks],
            latest: vec![None; self.chunks],
        };
        for o in store_ops::list_all(
            &self.run.store,
            &self.run.layout.commits_dir(),
            self.run.deadline,
        )
        .await?
        {
            if let Some(c) = self
                .run
                .layout
                .parse_commit(&o.name)
                .filter(|&c| c < self.chunks)
            {
                board.committed[c] = true;
            }
        }
        for o in store_ops::list_all(
            &self.run.store,
            &self.run.layout.claims_dir(),
            self.run.deadline,
        )
        .await?
        {
            let Some((c, attempt)) = self.run.layout.parse_claim(&o.name) else {
                continue;
            };
            if c >= self.chunks {
                continue;
            }
            let seen = Seen {
                attempt,
                updated: o.updated,
                released: o.size == 0,
            };
            match board.latest[c] {
                Some(s) if s.attempt >= attempt => {}
                _ => board.latest[c] = Some(seen),
            }
        }
        // Last: the summary is written before the run's commits are removed, so a board
        // that misses removed commits sees the summary.
        board.finished = self.run.finished().await?;
        Ok(board)
    }

    /// The whole run's chunks as `board` saw them, with this process's commits since;
    /// `images(c)` is chunk `c`'s image count.
    pub fn tally(&self, board: &Board, images: impl Fn(usize) -> usize) -> JobTally {
        let now = self.now();
        let here = self.committed_here();
        let mut tally = JobTally::default();
        for c in 0..self.chunks.min(board.committed.len()) {
            if board.committed[c] || here.contains(&c) {
                tally.committed += 1;
                tally.images_committed += images(c) as u64;
                continue;
            }
            match &board.latest[c] {
                None => tally.free += 1,
                Some(seen) if seen.released => tally.free += 1,
                Some(seen) if self.lapsed(seen, now) => tally.lapsed += 1,
                Some(_) => tally.claimed += 1,
            }
        }
        tally
    }

    fn lapsed(&self, seen: &Seen, now: Option<DateTime<Utc>>) -> bool {
        if seen.released {
            return true;
        }
        match (seen.updated, now, chrono::Duration::from_std(self.lease)) {
            (Some(updated), Some(now), Ok(lease)) => updated + lease < now,
            _ => false,
        }
    }

    /// The next chunk to work on: this rank's own range first, in order; then the range of
    /// another rank with the most unclaimed chunks, from its end (its owner works from the
    /// start); then, when idle and `speculate`, a backup of a chunk held far longer than a
    /// chunk takes here. `None`: nothing to do now.
    pub fn pick(&self, board: &Board, speculate: bool, backed_up: &HashSet<usize>) -> Option<Pick> {
        let now = self.now();
        let deferred = self.with_state(|s| s.deferred.clone());
        let held = self.held_now();
        let claimable = |c: usize| -> Option<u32> {
            if board.committed[c] || held.contains(&c) {
                return None;
            }
            if deferred
                .get(&c)
                .is_some_and(|(until, _)| Instant::now() < *until)
            {
                return None;
            }
            match &board.latest[c] {
                None => Some(0),
                Some(s) if self.lapsed(s, now) => Some(s.attempt + 1),
                Some(_) => None,
            }
        };
        if let Some((chunk, attempt)) =
            crate::pick::next_claim(self.rank, self.world, self.chunks, claimable)
        {
            return Some(Pick::Claim { chunk, attempt });
        }
        // Chunks held elsewhere (any range: another world size may hold them).
        let mut state = self.state.lock().ok()?;
        for c in 0..self.chunks {
            if !board.committed[c] && !held.contains(&c) && board.latest[c].is_some() {
                state.seen_held.entry(c).or_insert_with(Instant::now);
            } else {
                state.seen_held.remove(&c);
            }
        }
        let idle = held.is_empty() && state.backups == 0;
        let (mean, measured) = state.chunk_secs;
        if !(speculate && idle && measured > 0) {
            return None;
        }
        let patience = Duration::from_secs_f64((2.0 * mean).max(0.05));
        let chunk = crate::pick::next_backup(
            &state.seen_held,
            backed_up,
            patience,
            self.rank,
            Instant::now(),
        )?;
        Some(Pick::Backup { chunk })
    }

    fn held_now(&self) -> HashSet<usize> {
        self.with_state(|s| s.held_snapshot.clone())
    }

    /// `f` on the state, under its lock (a poisoned lock's state is used as it is: every
    /// field stays valid on its own).
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// Tries to claim `chunk` as `attempt`; `true` if this process now holds it.
    pub async fn try_claim(&self, chunk: usize, attempt: u32) -> Result<bool> {
        let name = self.run.layout.claim(chunk, attempt);
        let body = self.claim_body()?;
        let mut held = self.held.lock().await;
        let won = store_call(self.run.deadline, "claiming a chunk", || {
            store_ops::create(self.run.store.as_ref(), &name, body.clone())
        })
        .await?;
        if !won {
            return Ok(false);
        }
        // Committed since the board was read: nothing to do.
        let commit = self.run.layout.commit(chunk);
        if store_call(self.run.deadline, "checking a commit", || {
            store_ops::exists(self.run.store.as_ref(), &commit)
        })
        .await?
        {
            self.delete_claim(&name).await;
            return Ok(false);
        }
        held.insert(chunk, name);
        self.sync_held(&held);
        Ok(true)
    }

    fn claim_body(&self) -> Result<Bytes> {
        serde_json::to_vec(&ClaimBody {
            holder: &self.holder,
            rank: self.rank,
        })
        .map(Bytes::from)
        .map_err(|e| Error::Corrupt {
            location: self.run.layout.claims_dir(),
            reason: e.to_string(),
        })
    }

    fn sync_held(&self, held: &HashMap<usize, String>) {
        self.with_state(|s| s.held_snapshot = held.keys().copied().collect());
    }

    /// Rewrites every claim this process holds, and reads the store's clock again.
    pub async fn renew(&self) {
        {
            let held = self.held.lock().await;
            let Ok(body) = self.claim_body() else { return };
            for name in held.values() {
                if let Err(e) = self
                    .run
                    .store
                    .put(name, body.clone(), PutMode::Overwrite)
                    .await
                {
                    tracing::warn!(claim = %name, error = %e, "could not renew a claim");
                }
            }
        }
        if let Err(e) = self.tick_clock().await {
            tracing::warn!(error = %e, "could not read the store's clock");
        }
    }

    /// Keeps this process from claiming `chunk` again for a while after a transient
    /// failure (0.5 s, doubling up to 32 s): other ranks may take it at once.
    fn defer(&self, chunk: usize) {
        self.with_state(|s| {
            let n = s.deferred.get(&chunk).map(|(_, n)| n + 1).unwrap_or(0);
            let wait = Duration::from_millis(500) * 2u32.saturating_pow(n.min(6));
            s.deferred.insert(chunk, (Instant::now() + wait, n));
        });
    }

    /// Gives `chunk` back at once (its claim is emptied).
    pub async fn release(&self, chunk: usize) {
        let mut held = self.held.lock().await;
        if let Some(name) = held.remove(&chunk) {
            if let Err(e) = self
                .run
                .store
                .put(&name, Bytes::new(), PutMode::Overwrite)
                .await
            {
                tracing::warn!(claim = %name, error = %e, "could not release a claim: it will lapse");
            }
        }
        self.sync_held(&held);
        drop(held);
        self.changed.notify_waiters();
    }

    /// Releases everything this process holds (a stop, an error).
    pub async fn release_all(&self) {
        let chunks: Vec<usize> = self.held.lock().await.keys().copied().collect();
        for c in chunks {
            self.release(c).await;
        }
    }

    /// Marks a backup task started (it ends with its commit or [`Claims::give_back`]).
    pub fn backup_started(&self) {
        self.with_state(|s| s.backups += 1);
    }

    /// Hands back a chunk that will not be processed here: a claim is emptied (another rank,
    /// or this one later, takes it at once); a backup copy is simply dropped.
    pub async fn give_back(&self, chunk: &Chunk) {
        if chunk.backup {
            self.backup_abandoned();
        } else {
            self.release(chunk.id).await;
        }
    }

    /// Hands back a chunk that failed transiently: a claimed one is first deferred, so that
    /// this process does not take it straight back.
    pub async fn give_back_failed(&self, chunk: &Chunk) {
        if !chunk.backup {
            self.defer(chunk.id);
        }
        self.give_back(chunk).await;
    }

    /// Commits `chunk` create-only with `body`; `true` if this copy is the commit, `false`
    /// if the chunk was already committed (this copy is discarded). The claim is then
    /// dropped.
    pub async fn commit(&self, chunk: &Chunk, body: Bytes) -> Result<bool> {
        let (backup, took) = (chunk.backup, chunk.taken.elapsed());
        let chunk = chunk.id;
        let name = self.run.layout.commit(chunk);
        let ours = store_call(self.run.deadline, "committing a chunk", || {
            store_ops::create(self.run.store.as_ref(), &name, body.clone())
        })
        .await?;
        if backup {
            self.with_state(|s| s.backups = s.backups.saturating_sub(1));
        } else {
            self.with_state(|s| {
                let (mean, n) = s.chunk_secs;
                s.chunk_secs = (
                    (mean * f64::from(n) + took.as_secs_f64()) / f64::from(n + 1),
                    n + 1,
                );
            });
            // The claim stays until the run's clean-up: a committed chunk is never claimed
            // again, and one request less per chunk.
            let mut held = self.held.lock().await;
            held.remove(&chunk);
            self.sync_held(&held);
        }
        self.with_state(|s| {
            s.deferred.remove(&chunk);
            s.committed_here.insert(chunk);
        });
        self.changed.notify_waiters();
        Ok(ours)
    }

    /// A backup that could not finish (transient failure, stop).
    fn backup_abandoned(&self) {
        self.with_state(|s| s.backups = s.backups.saturating_sub(1));
        self.changed.notify_waiters();
    }

    async fn delete_claim(&self, name: &str) {
        if let Err(e) = self.run.store.delete(name).await {
            tracing::debug!(claim = %name, error = %e, "could not delete a claim (removed at the end)");
        }
    }

    /// Reads a committed chunk.
    pub async fn read_commit(&self, chunk: usize) -> Result<Commit> {
        let name = self.run.layout.commit(chunk);
        let bytes = store_call(self.run.deadline, "reading a commit", || {
            self.run.store.get(&name, None)
        })
        .await?;
        Commit::decode(bytes).map_err(|reason| Error::Corrupt {
            location: self.run.store.object_url(&name),
            reason,
        })
    }
}
