//! Deterministic assignment of a sorted listing to ranks.
//!
//! Every rank computes the same answer from the same sorted listing, so shards are disjoint
//! and their union is the whole, with no coordination. Unlike PyTorch's
//! `DistributedSampler`, nothing is padded with duplicates unless asked.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// How items are dealt to ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ShardMode {
    /// Rank `r` takes one contiguous run; run lengths differ by at most one.
    #[default]
    Contiguous,
    /// Rank `r` takes items `r, r + world, r + 2·world, …`.
    Strided,
}

/// Which items a rank takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// This rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks (at least 1).
    pub world_size: usize,
    /// How items are dealt.
    pub mode: ShardMode,
    /// Pad every shard to the same length by repeating items from the start of the
    /// listing (what `DistributedSampler` does); off by default.
    pub pad: bool,
}

impl ShardSpec {
    /// A contiguous, unpadded shard.
    pub fn new(rank: usize, world_size: usize) -> Self {
        Self {
            rank,
            world_size,
            mode: ShardMode::Contiguous,
            pad: false,
        }
    }

    /// The indices (into the sorted listing of `len` items) this rank takes, in order.
    ///
    /// ```
    /// use dataflux::shard::{ShardMode, ShardSpec};
    /// assert_eq!(ShardSpec::new(0, 3).indices(10), vec![0, 1, 2, 3]);
    /// assert_eq!(ShardSpec::new(2, 3).indices(10), vec![7, 8, 9]);
    /// let strided = ShardSpec { mode: ShardMode::Strided, ..ShardSpec::new(1, 3) };
    /// assert_eq!(strided.indices(10), vec![1, 4, 7]);
    /// let padded = ShardSpec { pad: true, ..ShardSpec::new(2, 3) };
    /// assert_eq!(padded.indices(10), vec![7, 8, 9, 0]);
    /// ```
    pub fn indices(&self, len: usize) -> Vec<usize> {
        let world = self.world_size.max(1);
        let mut out: Vec<usize> = match self.mode {
            ShardMode::Contiguous => contiguous_range(len, self.rank, world).collect(),
            ShardMode::Strided => (self.rank..len).step_by(world).collect(),
        };
        if self.pad && len > 0 {
            let target = len.div_ceil(world);
            let mut filler = 0;
            while out.len() < target {
                out.push(filler % len);
                filler += 1;
            }
        }
        out
    }
}

/// The contiguous run of `0..len` that `rank` of `world_size` takes: the first
/// `len % world_size` ranks take one item more.
///
/// ```
/// assert_eq!(dataflux::shard::contiguous_range(10, 0, 4), 0..3);
/// assert_eq!(dataflux::shard::contiguous_range(10, 3, 4), 8..10);
/// assert_eq!(dataflux::shard::contiguous_range(2, 3, 4), 2..2);
/// ```
pub fn contiguous_range(len: usize, rank: usize, world_size: usize) -> Range<usize> {
    let world = world_size.max(1);
    if rank >= world {
        return len..len;
    }
    let base = len / world;
    let extra = len % world;
    let start = rank * base + rank.min(extra);
    let size = base + usize::from(rank < extra);
    start..start + size
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn shards_partition_the_listing(len in 0usize..=10_000, world in 1usize..=1024, strided in any::<bool>()) {
            let mode = if strided { ShardMode::Strided } else { ShardMode::Contiguous };
            let mut seen = vec![0u8; len];
            let (mut min, mut max) = (usize::MAX, 0);
            for rank in 0..world {
                let idx = ShardSpec { rank, world_size: world, mode, pad: false }.indices(len);
                min = min.min(idx.len());
                max = max.max(idx.len());
                for i in idx {
                    seen[i] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "every item exactly once");
            prop_assert!(max - min <= 1, "balanced");
        }
    }
}
