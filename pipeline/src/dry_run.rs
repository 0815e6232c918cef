//! `--dry-run`: list the input, then say what the job would do and what it would cost —
//! objects and bytes, the chunk plan, and the requests it would make by kind with their GCS
//! operation classes — having written nothing.
//!
//! Prices: Google Cloud Storage list prices for Standard storage in a region, as published
//! on cloud.google.com/storage/pricing and checked for this estimate on 2026-12-01: Class A
//! (insert, compose, list) $0.0050 per 1,000 operations, Class B (get, metadata) $0.0004 per
//! 1,000, deletes free. Network egress is not included (a job in the bucket's region pays
//! none).

use std::fmt;

use dataflux::compose::{plan_groups, MAX_COMPOSE_SOURCES};
use dataflux::{list, ListOptions};

use crate::error::{Error, Result};
use crate::layout::shard_chunks;
use crate::setting::Setting;
use crate::spec::JobSpec;

/// Class A operations, US dollars per 1,000.
pub const CLASS_A_PER_1000: f64 = 0.005;
/// Class B operations, US dollars per 1,000.
pub const CLASS_B_PER_1000: f64 = 0.0004;

/// Requests a run makes, by kind (at least: retries, lease renewals and the listing's
/// parallel split points come on top).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// List pages.
    pub list: u64,
    /// Object reads.
    pub get: u64,
    /// Metadata reads.
    pub head: u64,
    /// Writes.
    pub put: u64,
    /// Composes.
    pub compose: u64,
    /// Deletes.
    pub delete: u64,
}

impl Requests {
    /// Class A operations (list, insert, compose).
    pub fn class_a(&self) -> u64 {
        self.list + self.put + self.compose
    }
    /// Class B operations (get, metadata).
    pub fn class_b(&self) -> u64 {
        self.get + self.head
    }
    /// US dollars at the list prices above.
    pub fn cost_usd(&self) -> f64 {
        self.class_a() as f64 / 1000.0 * CLASS_A_PER_1000
            + self.class_b() as f64 / 1000.0 * CLASS_B_PER_1000
    }
}

/// What a run would do.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    /// Objects listed.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects per chunk.
    pub chunk_size: usize,
    /// Chunks.
    pub chunks: usize,
    /// Ranks the plan is for.
    pub world_size: usize,
    /// Each rank's own chunk range, `[start, end)`.
    pub ranges: Vec<(usize, usize)>,
    /// Composed groups (GCS, compose on), else 0.
    pub composed_groups: u64,
    /// Requests, all ranks together.
    pub requests: Requests,
}

/// Lists `spec.input` and plans a run of `world_size` ranks; writes nothing.
pub async fn dry_run(spec: &JobSpec, world_size: usize) -> Result<DryRun> {
    spec.validate()?;
    let input = spec.input.open().await.map_err(|e| Error::Config {
        setting: Setting::Input,
        reason: format!("{}: {e}", spec.input.url),
    })?;
    let listing = list(&input, &spec.input.prefix, &ListOptions::default())
        .await
        .map_err(|e| Error::store("listing the input", e))?;
    let objects = &listing.objects;
    let n = objects.len();
    let world = world_size.max(1);
    let starts = match spec.chunk_bytes {
        Some(bytes) => {
            let sizes: Vec<u64> = objects.iter().map(|o| o.size).collect();
            crate::plan::chunk_starts(&sizes, spec.chunk_size, bytes)
        }
        None => (0..n).step_by(spec.chunk_size.max(1)).collect(),
    };
    let chunks = starts.len();
    let composing = spec.compose && input.capabilities().compose;
    let mut requests = Requests {
        list: (n as u64).div_ceil(dataflux::store::MAX_PAGE as u64).max(1),
        ..Default::default()
    };
    let mut composed_groups = 0u64;
    let bounds = starts
        .iter()
        .copied()
        .chain(std::iter::once(n))
        .collect::<Vec<_>>();
    for chunk in bounds.windows(2).map(|w| &objects[w[0]..w[1]]) {
        if composing {
            for g in plan_groups(chunk, MAX_COMPOSE_SOURCES, spec.max_composite_bytes) {
                if g.len() > 1 {
                    composed_groups += 1;
                    requests.compose += 1;
                    requests.delete += 1;
                }
                requests.get += 1;
            }
        } else {
            requests.get += chunk.len() as u64;
        }
    }
    let (c, w) = (chunks as u64, world as u64);
    // The plan: probe (put, delete), index read and create, one manifest per chunk.
    requests.put += 2 + c;
    requests.delete += 1;
    requests.get += 1;
    // Per rank: the clock probe (put, head), the board (two lists, a summary head).
    requests.put += w;
    requests.head += 2 * w;
    requests.list += 2 * w;
    // Per chunk: claim, commit check, manifest read, commit.
    requests.put += 2 * c;
    requests.head += c;
    requests.get += c;
    // The outputs: every commit read once, three files per shard, the summary; clean-up.
    requests.get += c;
    requests.put += 3 * w + 2;
    requests.list += 4;
    requests.delete += 2 * c + w + 1;
    Ok(DryRun {
        objects: n as u64,
        bytes: objects.iter().map(|o| o.size).sum(),
        chunk_size: spec.chunk_size,
        chunks,
        world_size: world,
        ranges: (0..world)
            .map(|r| {
                let range = shard_chunks(r, world, chunks);
                (range.start, range.end)
            })
            .collect(),
        composed_groups,
        requests,
    })
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.requests;
        writeln!(f, "dry run: nothing was written")?;
        writeln!(
            f,
            "  objects     {:>12}  ({} bytes)",
            self.objects, self.bytes
        )?;
        writeln!(
            f,
            "  chunks      {:>12}  of {} objects; {} ranks",
            self.chunks, self.chunk_size, self.world_size
        )?;
        for (rank, (a, b)) in self.ranges.iter().enumerate().take(16) {
            writeln!(f, "    rank {rank:>4} starts with chunks {a}..{b}")?;
        }
        if self.ranges.len() > 16 {
            writeln!(f, "    … {} more ranks", self.ranges.len() - 16)?;
        }
        writeln!(f, "  composed groups {:>8}", self.composed_groups)?;
        writeln!(
            f,
            "  requests    list {}, get {}, head {}, put {}, compose {}, delete {} (at least: retries, lease renewals and listing splits come on top)",
            r.list, r.get, r.head, r.put, r.compose, r.delete
        )?;
        writeln!(
            f,
            "  GCS classes A {} (${:.4}/1,000), B {} (${:.4}/1,000), deletes free: ${:.4} at list prices (Standard, 2026-12-01; no egress)",
            r.class_a(),
            CLASS_A_PER_1000,
            r.class_b(),
            CLASS_B_PER_1000,
            r.cost_usd()
        )
    }
}
