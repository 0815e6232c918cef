//! The run's outputs, built from commits only, once every chunk is committed.
//!
//! The number of output shards is fixed once per run by the first rank to get here
//! (`final.json`, create-only: the world size of its attempt). Shard `s` is the
//! concatenation of the commits of a contiguous range of chunks, so its bytes depend on the
//! commits alone, never on which rank did what; every live rank `r` of a world of `W` writes
//! the shards `s ≡ r (mod W)`, so that any complete attempt writes them all, whatever the
//! world size that fixed their number. Rank 0 then waits for every shard's `_SUCCESS`,
//! writes the job summary (the run is finished from then on) and removes the run's
//! temporaries: claims, commits, clock probes, composites.

use std::sync::Arc;

use bytes::Bytes;
use dataflux::{FetchOptions, Fetcher, PutMode, Store};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::error::{Error, Result};
use crate::layout::shard_chunks;
use crate::model::Column;
use crate::output::{shard_results, ERRORS_HEADER};
use crate::plan::Index;
use crate::run_store::RunStore;
use crate::spec::OutputFormat;
use crate::store_ops::{self, get_or_none, store_call};
use crate::summary::{JobSummary, RankSummary, ShardSummary};

#[derive(Serialize, Deserialize)]
struct FinalPlan {
    shards: usize,
}

/// What finalizing needs.
pub(crate) struct Finalizer<'a> {
    pub input: &'a Arc<dyn Store>,
    pub run: &'a RunStore,
    pub index: &'a Index,
    pub claims: &'a Claims,
    pub format: OutputFormat,
    pub columns: &'a [Column],
    pub rank: usize,
    pub world: usize,
    pub temp_prefix: &'a str,
}

/// What finalizing did: `None` if the run turned out to be finished by another attempt.
pub(crate) type Finalized = Option<(Vec<ShardSummary>, Option<JobSummary>)>;

impl Finalizer<'_> {
    pub async fn run(&self, rank_summary: impl Fn() -> RankSummary) -> Result<Finalized> {
        if self.finished().await? {
            self.clean_up().await?;
            return Ok(None);
        }
        let shards = self.shard_count().await?;
        let mut written = Vec::new();
        for shard in (self.rank..shards).step_by(self.world.max(1)) {
            match self.write_shard(shard, shards).await {
                Ok(s) => written.push(s),
                // Commits are removed once the run is finished: another attempt got there.
                Err(e) if self.finished().await? => {
                    tracing::info!(error = %e, "the run finished elsewhere meanwhile");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        if self.rank != 0 {
            return Ok(Some((written, None)));
        }
        let all = self.wait_for_shards(shards, &written).await?;
        let rank0 = rank_summary();
        let images_ok = all.iter().map(|s| s.images_ok).sum::<u64>();
        let images_failed = all.iter().map(|s| s.images_failed).sum::<u64>();
        let job = JobSummary {
            run_id: self.run.layout.run_id.clone(),
            shards,
            chunks: self.index.chunks(),
            images: self.index.count as u64,
            images_ok,
            images_failed,
            wall_secs: rank0.wall_secs,
            images_per_sec: if rank0.wall_secs > 0.0 {
                (images_ok + images_failed) as f64 / rank0.wall_secs
            } else {
                0.0
            },
            shard_summaries: all,
            rank0,
        };
        self.put_json(&self.run.layout.job_summary(), &job).await?;
        self.clean_up().await?;
        Ok(Some((written, Some(job))))
    }

    async fn finished(&self) -> Result<bool> {
        self.run.finished().await
    }

    /// The run's number of output shards: fixed here (this attempt's world size) unless an
    /// earlier finisher fixed it.
    async fn shard_count(&self) -> Result<usize> {
        let name = self.run.layout.final_plan();
        let ours = serde_json::to_vec(&FinalPlan { shards: self.world })
            .map_err(|e| self.corrupt(&name, e))?;
        let created = store_call(self.run.deadline, "fixing the output shards", || {
            store_ops::create(self.run.store.as_ref(), &name, Bytes::from(ours.clone()))
        })
        .await?;
        if created {
            return Ok(self.world);
        }
        let bytes = store_call(self.run.deadline, "reading the output shards", || {
            self.run.store.get(&name, None)
        })
        .await?;
        let plan: FinalPlan = serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&name, e))?;
        if plan.shards != self.world {
            tracing::info!(
                shards = plan.shards,
                world_size = self.world,
                "the run's output shards were fixed by an attempt of another world size"
            );
        }
        Ok(plan.shards.max(1))
    }

    async fn write_shard(&self, shard: usize, shards: usize) -> Result<ShardSummary> {
        let range = shard_chunks(shard, shards, self.index.chunks());
        let commits: Vec<_> = futures::stream::iter(range.clone())
            .map(|c| self.claims.read_commit(c))
            .buffered(16)
            .try_collect()
            .await?;
        let parts: Vec<Bytes> = commits.iter().map(|c| c.results.clone()).collect();
        let results = shard_results(self.format, self.columns, &parts)?;
        let mut errors = ERRORS_HEADER.to_vec();
        let (mut ok, mut failed) = (0u64, 0u64);
        for c in &commits {
            errors.extend_from_slice(&c.errors);
            ok += c.ok;
            failed += c.failed;
        }
        let summary = ShardSummary {
            shard,
            shards,
            chunks: (range.start, range.end),
            images_ok: ok,
            images_failed: failed,
        };
        let results = Bytes::from(results);
        let errors = Bytes::from(errors);
        let (results_name, errors_name) = (
            self.run.layout.results(shard),
            self.run.layout.errors(shard),
        );
        futures::try_join!(
            store_call(self.run.deadline, "writing a results file", || {
                self.run
                    .store
                    .put(&results_name, results.clone(), PutMode::Overwrite)
            }),
            store_call(self.run.deadline, "writing an errors file", || {
                self.run
                    .store
                    .put(&errors_name, errors.clone(), PutMode::Overwrite)
            }),
        )?;
        self.put_json(&self.run.layout.success(shard), &summary)
            .await?;
        tracing::info!(
            shard,
            shards,
            rows = ok,
            error_rows = failed,
            "wrote an output shard"
        );
        Ok(summary)
    }

    async fn wait_for_shards(
        &self,
        shards: usize,
        mine: &[ShardSummary],
    ) -> Result<Vec<ShardSummary>> {
        let poller = self.run.poller();
        let mut found: Vec<Option<ShardSummary>> = vec![None; shards];
        for s in mine.iter().filter(|s| s.shard < shards) {
            found[s.shard] = Some(s.clone());
        }
        loop {
            for (s, slot) in found.iter_mut().enumerate().filter(|(_, f)| f.is_none()) {
                let name = self.run.layout.success(s);
                let bytes = store_call(self.run.deadline, "reading a shard's marker", || {
                    get_or_none(self.run.store.as_ref(), &name)
                })
                .await?;
                if let Some(b) = bytes {
                    *slot = Some(serde_json::from_slice(&b).map_err(|e| self.corrupt(&name, e))?);
                }
            }
            if found.iter().all(Option::is_some) {
                return Ok(found.into_iter().flatten().collect());
            }
            if let Err(waited) = poller.wait().await {
                let missing: Vec<usize> = (0..shards).filter(|&s| found[s].is_none()).collect();
                return Err(Error::Timeout {
                    what: format!("the ranks writing output shards {missing:?}"),
                    waited,
                });
            }
        }
    }

    /// Removes the run's temporaries (any attempt's): claims, commits, clock probes, the
    /// final plan, composites in the input.
    async fn clean_up(&self) -> Result<()> {
        let (claims, commits, clock) = (
            self.run.layout.claims_dir(),
            self.run.layout.commits_dir(),
            self.run.layout.clock_dir(),
        );
        let name = self.run.layout.final_plan();
        let (a, b, c, ()) = futures::try_join!(
            store_ops::delete_all(&self.run.store, &claims, self.run.deadline),
            store_ops::delete_all(&self.run.store, &commits, self.run.deadline),
            store_ops::delete_all(&self.run.store, &clock, self.run.deadline),
            store_call(self.run.deadline, "removing the final plan", || self
                .run
                .store
                .delete(&name)),
        )?;
        let mut removed = a + b + c;
        let sweeper = Fetcher::new(
            self.input.clone(),
            FetchOptions::default()
                .with_temp_prefix(self.temp_prefix)
                .with_run_id(self.run.layout.run_id.clone()),
        );
        removed += store_call(self.run.deadline, "sweeping the run's composites", || {
            sweeper.sweep()
        })
        .await?;
        tracing::info!(removed, "removed the run's temporaries");
        Ok(())
    }

    async fn put_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let body =
            Bytes::from(serde_json::to_vec_pretty(value).map_err(|e| self.corrupt(name, e))?);
        store_call(self.run.deadline, "writing a summary", || {
            self.run.store.put(name, body.clone(), PutMode::Overwrite)
        })
        .await?;
        Ok(())
    }

    fn corrupt(&self, name: &str, e: serde_json::Error) -> Error {
        Error::Corrupt {
            location: self.run.store.object_url(name),
            reason: e.to_string(),
        }
    }
}
