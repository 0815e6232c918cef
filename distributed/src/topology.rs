//! Which process this is: rank, world size, node, read from the environment.
//!
//! # Precedence
//!
//! [`Topology::from_env`] looks at three sources, first match wins:
//!
//! 1. **torchrun / `dataflux-launch`**: if `RANK` or `WORLD_SIZE` is set, both must be.
//!    `LOCAL_WORLD_SIZE` defaults to `WORLD_SIZE` (one node), `LOCAL_RANK` to
//!    `RANK % LOCAL_WORLD_SIZE`, `GROUP_RANK` to `RANK / LOCAL_WORLD_SIZE`.
//! 2. **Kubernetes Indexed Job**: if `JOB_COMPLETION_INDEX` is set, it is the node rank;
//!    `DATAFLUX_NNODES` (the Job's `completions`) must be set; `DATAFLUX_NPROC_PER_NODE`
//!    defaults to 1. With more than one process per node, each process needs `LOCAL_RANK`
//!    (start them with `dataflux-launch`, which sets `RANK` and so takes route 1).
//!    `RANK = JOB_COMPLETION_INDEX × DATAFLUX_NPROC_PER_NODE + LOCAL_RANK`.
//! 3. **Single process**: rank 0 of 1.
//!
//! `MASTER_ADDR` and `MASTER_PORT` are read on every route. A value that is not a
//! non-negative integer, a missing partner variable, or a rank not below its world size is
//! an [`Error`] that names the variable.

use std::ops::Range;

use dataflux::shard::{contiguous_range, ShardMode, ShardSpec};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Global rank (torchrun).
pub const RANK: &str = "RANK";
/// Number of processes in the job (torchrun).
pub const WORLD_SIZE: &str = "WORLD_SIZE";
/// Rank on this node (torchrun).
pub const LOCAL_RANK: &str = "LOCAL_RANK";
/// Processes on this node (torchrun).
pub const LOCAL_WORLD_SIZE: &str = "LOCAL_WORLD_SIZE";
/// Node rank (torchrun).
pub const GROUP_RANK: &str = "GROUP_RANK";
/// Address of rank 0's node (torchrun).
pub const MASTER_ADDR: &str = "MASTER_ADDR";
/// Port on rank 0's node (torchrun).
pub const MASTER_PORT: &str = "MASTER_PORT";
/// The pod's index in a Kubernetes Indexed Job.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Number of nodes (pods) in the job, for Indexed Jobs and `dataflux-launch`.
pub const DATAFLUX_NNODES: &str = "DATAFLUX_NNODES";
/// Processes (GPUs) per node, for Indexed Jobs and `dataflux-launch`.
pub const DATAFLUX_NPROC_PER_NODE: &str = "DATAFLUX_NPROC_PER_NODE";

/// Where a [`Topology`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// torchrun-style variables (`RANK`, `WORLD_SIZE`, …), as `dataflux-launch` sets them.
    Torchrun,
    /// A Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, `DATAFLUX_NNODES`).
    IndexedJob,
    /// Nothing set: one process.
    Single,
    /// Built in code with [`Topology::new`].
    Explicit,
}

/// This process's place in the job.
///
/// Computing a shard takes three lines:
///
/// ```
/// # std::env::remove_var("RANK"); std::env::remove_var("WORLD_SIZE");
/// # std::env::remove_var("JOB_COMPLETION_INDEX");
/// # let names: Vec<String> = (0..10).map(|i| format!("img/{i:03}.jpg")).collect();
/// use dataflux_distributed::Topology;
/// let topology = Topology::from_env()?;
/// let mine: Vec<&String> = topology.shard(names.len()).into_iter().map(|i| &names[i]).collect();
/// # assert_eq!(mine.len(), 10);
/// # Ok::<(), dataflux_distributed::Error>(())
/// ```
///
/// `names` must be sorted (a `dataflux::Listing` is), so that every rank sees the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes in the job, at least 1.
    pub world_size: usize,
    /// Rank on this node, `0..local_world_size`.
    pub local_rank: usize,
    /// Processes on this node, at least 1.
    pub local_world_size: usize,
    /// This node's rank (`GROUP_RANK`, `JOB_COMPLETION_INDEX`).
    pub node_rank: usize,
    /// `MASTER_ADDR`, when set.
    pub master_addr: Option<String>,
    /// `MASTER_PORT`, when set.
    pub master_port: Option<u16>,
    /// Which variables it came from.
    pub source: Source,
}

impl Topology {
    /// One process: rank 0 of 1.
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            node_rank: 0,
            master_addr: None,
            master_port: None,
            source: Source::Single,
        }
    }

    /// `rank` of `world_size` on one node, checked.
    pub fn new(rank: usize, world_size: usize) -> Result<Self> {
        check_world(WORLD_SIZE, world_size)?;
        check_below(RANK, rank, WORLD_SIZE, world_size)?;
        Ok(Self {
            rank,
            world_size,
            local_rank: rank,
            local_world_size: world_size,
            node_rank: 0,
            master_addr: None,
            master_port: None,
            source: Source::Explicit,
        })
    }

    /// Reads the process environment; see the [module docs](self) for the precedence.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`Topology::from_env`], with variables looked up through `var` (for tests).
    ///
    /// ```
    /// use dataflux_distributed::{Source, Topology};
    /// let env = |k: &str| match k {
    ///     "JOB_COMPLETION_INDEX" => Some("1".to_string()),
    ///     "DATAFLUX_NNODES" => Some("2".to_string()),
    ///     _ => None,
    /// };
    /// let t = Topology::from_vars(env).unwrap();
    /// assert_eq!((t.rank, t.world_size, t.source), (1, 2, Source::IndexedJob));
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let num = |name: &'static str| parse_var(name, var(name));
        let master_addr = var(MASTER_ADDR).filter(|s| !s.is_empty());
        let master_port = match num(MASTER_PORT)? {
            None => None,
            Some(p) => Some(u16::try_from(p).map_err(|_| Error::Inconsistent {
                variable: MASTER_PORT,
                value: p,
                reason: "is not a TCP port (0..=65535)".into(),
            })?),
        };
        let rank = num(RANK)?;
        let world = num(WORLD_SIZE)?;
        let mut topology = if rank.is_some() || world.is_some() {
            from_torchrun(
                rank,
                world,
                num(LOCAL_RANK)?,
                num(LOCAL_WORLD_SIZE)?,
                num(GROUP_RANK)?,
            )?
        } else if let Some(index) = num(JOB_COMPLETION_INDEX)? {
            from_indexed_job(
                index,
                num(DATAFLUX_NNODES)?,
                num(DATAFLUX_NPROC_PER_NODE)?,
                num(LOCAL_RANK)?,
            )?
        } else {
            Self::single()
        };
        topology.master_addr = master_addr;
        topology.master_port = master_port;
        Ok(topology)
    }

    /// Number of nodes (`world_size / local_world_size`, rounded up).
    pub fn nnodes(&self) -> usize {
        self.world_size.div_ceil(self.local_world_size.max(1))
    }

    /// Whether this is rank 0, the one that lists, publishes and cleans up.
    pub fn is_primary(&self) -> bool {
        self.rank == 0
    }

    /// The default shard spec: contiguous, unpadded.
    pub fn shard_spec(&self) -> ShardSpec {
        ShardSpec::new(self.rank, self.world_size)
    }

    /// A shard spec with a chosen dealing mode and padding (padding repeats items so that
    /// every rank gets the same count, as `DistributedSampler` does; only ask for it if a
    /// collective needs equal counts).
    pub fn shard_spec_with(&self, mode: ShardMode, pad: bool) -> ShardSpec {
        ShardSpec {
            mode,
            pad,
            ..self.shard_spec()
        }
    }

    /// The indices of a sorted listing of `len` items that this rank takes (contiguous,
    /// unpadded): disjoint from every other rank's, and together they cover `0..len`.
    pub fn shard(&self, len: usize) -> Vec<usize> {
        self.shard_spec().indices(len)
    }

    /// This rank's contiguous run of `0..len` (the same items as [`Topology::shard`]).
    pub fn shard_range(&self, len: usize) -> Range<usize> {
        contiguous_range(len, self.rank, self.world_size)
    }
}

fn parse_var(name: &'static str, value: Option<String>) -> Result<Option<usize>> {
    match value {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| Error::NotANumber {
            variable: name,
            value: v,
        }),
    }
}

fn check_world(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::Inconsistent {
            variable: name,
            value,
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

fn check_below(name: &'static str, value: usize, bound_name: &str, bound: usize) -> Result<()> {
    if value >= bound {
        return Err(Error::Inconsistent {
            variable: name,
            value,
            reason: format!("is not below {bound_name}={bound}"),
        });
    }
    Ok(())
}

fn from_torchrun(
    rank: Option<usize>,
    world: Option<usize>,
    local_rank: Option<usize>,
    local_world: Option<usize>,
    group_rank: Option<usize>,
) -> Result<Topology> {
    let (rank, world) = match (rank, world) {
        (Some(r), Some(w)) => (r, w),
        (Some(_), None) => {
            return Err(Error::MissingVariable {
                variable: WORLD_SIZE,
                because: "RANK is set".into(),
            })
        }
        _ => {
            return Err(Error::MissingVariable {
                variable: RANK,
                because: "WORLD_SIZE is set".into(),
            })
        }
    };
    check_world(WORLD_SIZE, world)?;
    check_below(RANK, rank, WORLD_SIZE, world)?;
    let local_world = local_world.unwrap_or(world);
    check_world(LOCAL_WORLD_SIZE, local_world)?;
    if local_world > world {
        return Err(Error::Inconsistent {
            variable: LOCAL_WORLD_SIZE,
            value: local_world,
            reason: format!("is larger than WORLD_SIZE={world}"),
        });
    }
    let local_rank = local_rank.unwrap_or(rank % local_world);
    check_below(LOCAL_RANK, local_rank, LOCAL_WORLD_SIZE, local_world)?;
    let node_rank = group_rank.unwrap_or(rank / local_world);
    let nnodes = world.div_ceil(local_world);
    if node_rank >= nnodes {
        return Err(Error::Inconsistent {
            variable: GROUP_RANK,
            value: node_rank,
            reason: format!("is not below the node count WORLD_SIZE/LOCAL_WORLD_SIZE={nnodes}"),
        });
    }
    Ok(Topology {
        rank,
        world_size: world,
        local_rank,
        local_world_size: local_world,
        node_rank,
        master_addr: None,
        master_port: None,
        source: Source::Torchrun,
    })
}

fn from_indexed_job(
    index: usize,
    nnodes: Option<usize>,
    nproc: Option<usize>,
    local_rank: Option<usize>,
) -> Result<Topology> {
    let nnodes = nnodes.ok_or_else(|| Error::MissingVariable {
        variable: DATAFLUX_NNODES,
        because: "JOB_COMPLETION_INDEX is set (set it to the Job's completions)".into(),
    })?;
    check_world(DATAFLUX_NNODES, nnodes)?;
    check_below(JOB_COMPLETION_INDEX, index, DATAFLUX_NNODES, nnodes)?;
    let nproc = nproc.unwrap_or(1);
    check_world(DATAFLUX_NPROC_PER_NODE, nproc)?;
    let local_rank = match local_rank {
        Some(l) => l,
        None if nproc == 1 => 0,
        None => {
            return Err(Error::MissingVariable {
                variable: LOCAL_RANK,
                because: format!(
                "DATAFLUX_NPROC_PER_NODE={nproc} (start one process per GPU with dataflux-launch)"
            ),
            })
        }
    };
    check_below(LOCAL_RANK, local_rank, DATAFLUX_NPROC_PER_NODE, nproc)?;
    let world = nnodes.checked_mul(nproc).ok_or(Error::Inconsistent {
        variable: DATAFLUX_NPROC_PER_NODE,
        value: nproc,
        reason: format!("times DATAFLUX_NNODES={nnodes} overflows"),
    })?;
    Ok(Topology {
        rank: index * nproc + local_rank,
        world_size: world,
        local_rank,
        local_world_size: nproc,
        node_rank: index,
        master_addr: None,
        master_port: None,
        source: Source::IndexedJob,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Result<Topology> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Topology::from_vars(move |k| map.get(k).cloned())
    }

    fn variable_of(e: &Error) -> &'static str {
        match e {
            Error::NotANumber { variable, .. }
            | Error::MissingVariable { variable, .. }
            | Error::Inconsistent { variable, .. } => variable,
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn nothing_set_is_a_single_process() {
        let t = vars(&[]).unwrap();
        assert_eq!(t, Topology::single());
        assert_eq!(t.shard(5), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn torchrun_variables_are_read_in_full() {
        let t = vars(&[
            ("RANK", "13"),
            ("WORLD_SIZE", "16"),
            ("LOCAL_RANK", "5"),
            ("LOCAL_WORLD_SIZE", "8"),
            ("GROUP_RANK", "1"),
            ("MASTER_ADDR", "job-0.svc"),
            ("MASTER_PORT", "29500"),
            // Ignored: torchrun's variables take precedence.
            ("JOB_COMPLETION_INDEX", "0"),
        ])
        .unwrap();
        assert_eq!(
            t,
            Topology {
                rank: 13,
                world_size: 16,
                local_rank: 5,
                local_world_size: 8,
                node_rank: 1,
                master_addr: Some("job-0.svc".into()),
                master_port: Some(29500),
                source: Source::Torchrun,
            }
        );
        assert_eq!(t.nnodes(), 2);
        assert!(!t.is_primary());
    }

    #[test]
    fn torchrun_defaults_to_one_node() {
        let t = vars(&[("RANK", "2"), ("WORLD_SIZE", "3")]).unwrap();
        assert_eq!((t.local_rank, t.local_world_size, t.node_rank), (2, 3, 0));
    }

    #[test]
    fn indexed_job_computes_rank_from_index() {
        let t = vars(&[("JOB_COMPLETION_INDEX", "3"), ("DATAFLUX_NNODES", "4")]).unwrap();
        assert_eq!((t.rank, t.world_size, t.node_rank), (3, 4, 3));
        let t = vars(&[
            ("JOB_COMPLETION_INDEX", "1"),
            ("DATAFLUX_NNODES", "2"),
            ("DATAFLUX_NPROC_PER_NODE", "8"),
            ("LOCAL_RANK", "7"),
        ])
        .unwrap();
        assert_eq!(
            (t.rank, t.world_size, t.local_rank, t.source),
            (15, 16, 7, Source::IndexedJob)
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("RANK", "4"), ("WORLD_SIZE", "4")], "RANK"),
            (&[("RANK", "0")], "WORLD_SIZE"),
            (&[("WORLD_SIZE", "2")], "RANK"),
            (&[("RANK", "x"), ("WORLD_SIZE", "2")], "RANK"),
            (&[("RANK", "0"), ("WORLD_SIZE", "-1")], "WORLD_SIZE"),
            (&[("RANK", "0"), ("WORLD_SIZE", "0")], "WORLD_SIZE"),
            (
                &[
                    ("RANK", "0"),
                    ("WORLD_SIZE", "4"),
                    ("LOCAL_WORLD_SIZE", "8"),
                ],
                "LOCAL_WORLD_SIZE",
            ),
            (
                &[
                    ("RANK", "0"),
                    ("WORLD_SIZE", "4"),
                    ("LOCAL_WORLD_SIZE", "2"),
                    ("LOCAL_RANK", "2"),
                ],
                "LOCAL_RANK",
            ),
            (
                &[
                    ("RANK", "0"),
                    ("WORLD_SIZE", "4"),
                    ("LOCAL_WORLD_SIZE", "2"),
                    ("GROUP_RANK", "2"),
                ],
                "GROUP_RANK",
            ),
            (&[("JOB_COMPLETION_INDEX", "0")], "DATAFLUX_NNODES"),
            (
                &[("JOB_COMPLETION_INDEX", "2"), ("DATAFLUX_NNODES", "2")],
                "JOB_COMPLETION_INDEX",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "a"), ("DATAFLUX_NNODES", "2")],
                "JOB_COMPLETION_INDEX",
            ),
            (
                &[
                    ("JOB_COMPLETION_INDEX", "0"),
                    ("DATAFLUX_NNODES", "2"),
                    ("DATAFLUX_NPROC_PER_NODE", "8"),
                ],
                "LOCAL_RANK",
            ),
            (
                &[
                    ("JOB_COMPLETION_INDEX", "0"),
                    ("DATAFLUX_NNODES", "2"),
                    ("DATAFLUX_NPROC_PER_NODE", "0"),
                ],
                "DATAFLUX_NPROC_PER_NODE",
            ),
            (&[("MASTER_PORT", "70000")], "MASTER_PORT"),
            (&[("MASTER_PORT", "http")], "MASTER_PORT"),
        ];
        for (pairs, expected) in cases {
            let err = vars(pairs).expect_err(&format!("{pairs:?} should fail"));
            assert_eq!(variable_of(&err), *expected, "{pairs:?}: {err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn shard_range_matches_shard() {
        let t = Topology::new(2, 3).unwrap();
        assert_eq!(t.shard_range(10), 7..10);
        assert_eq!(t.shard(10), vec![7, 8, 9]);
        let strided = t.shard_spec_with(ShardMode::Strided, false).indices(10);
        assert_eq!(strided, vec![2, 5, 8]);
        assert!(Topology::new(3, 3).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Disjoint, complete, balanced, and the same on a second call, for both modes.
        #[test]
        fn shards_partition_every_listing(
            len in 0usize..=10_000,
            world in 1usize..=1024,
            strided in any::<bool>(),
        ) {
            let mode = if strided { ShardMode::Strided } else { ShardMode::Contiguous };
            let mut seen = vec![0u16; len];
            let (mut min, mut max) = (usize::MAX, 0);
            for rank in 0..world {
                let t = Topology::new(rank, world).unwrap();
                let idx = t.shard_spec_with(mode, false).indices(len);
                prop_assert_eq!(&idx, &t.shard_spec_with(mode, false).indices(len), "stable");
                prop_assert!(idx.windows(2).all(|w| w[0] < w[1]), "ascending");
                if !strided {
                    prop_assert_eq!(idx.clone(), t.shard_range(len).collect::<Vec<_>>());
                }
                min = min.min(idx.len());
                max = max.max(idx.len());
                for i in idx {
                    seen[i] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "every item exactly once");
            prop_assert!(max - min <= 1, "balanced: {} vs {}", min, max);
        }

        /// Padding only on request: every rank gets ceil(len/world), the extra items repeat.
        #[test]
        fn padding_equalizes_counts(len in 1usize..=2_000, world in 1usize..=64) {
            let target = len.div_ceil(world);
            let mut seen = vec![0usize; len];
            for rank in 0..world {
                let idx = Topology::new(rank, world).unwrap()
                    .shard_spec_with(ShardMode::Contiguous, true).indices(len);
                prop_assert_eq!(idx.len(), target);
                for i in idx { seen[i] += 1; }
            }
            prop_assert!(seen.iter().all(|&c| c >= 1));
            prop_assert_eq!(seen.iter().sum::<usize>(), target * world);
        }
    }

    /// World sizes 1..=1024 each, exhaustively, at a few awkward lengths.
    #[test]
    fn every_world_size_partitions() {
        for world in 1..=1024 {
            for len in [0, 1, world - 1, world, world + 1, 10_000] {
                let mut next = 0;
                for rank in 0..world {
                    let r = Topology::new(rank, world).unwrap().shard_range(len);
                    assert_eq!(r.start, next, "world {world} len {len} rank {rank}");
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }
}
