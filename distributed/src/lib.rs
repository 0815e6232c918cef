//! Ranks, sharding, rendezvous and NCCL for dataflux jobs that run as N pods × G GPUs.
//!
//! - [`Topology`]: which process this is, from torchrun's variables, a Kubernetes Indexed
//!   Job, or nothing (one process); and which items of a sorted listing it takes
//!   ([`Topology::shard`]), disjoint from every other rank's, with no duplicates.
//! - [`Rendezvous`]: a small key-value store over the job's bucket (or a local directory, or
//!   memory) for one run: rank 0 lists once and shares the listing, ranks exchange the NCCL
//!   id and gather per-rank summaries.
//! - `launch` (feature `launcher`): the library behind `dataflux-launch`, which starts one
//!   process per GPU.
//! - [`Budget`]: one rank's share of the pod's CPU quota and memory limit.
//! - `nccl` (feature `nccl`): a NCCL communicator built from the topology and the
//!   rendezvous.
//! - [`logs`]: log lines for pods; with feature `cli`, `logs::init` sets them up for a
//!   binary and `LogFormat` is a clap value.
//!
//! The library itself needs neither clap, tracing-subscriber nor nix: features `cli` and
//! `launcher` bring them, for binaries. Build the launcher with
//! `cargo build -p dataflux-distributed --features launcher --bin dataflux-launch`.
//!
//! Computing this rank's shard of a sorted listing:
//!
//! ```
//! # std::env::remove_var("RANK"); std::env::remove_var("WORLD_SIZE");
//! # std::env::remove_var("JOB_COMPLETION_INDEX");
//! # let names: Vec<String> = (0..10).map(|i| format!("img/{i:03}.jpg")).collect();
//! let topology = dataflux_distributed::Topology::from_env()?;
//! let range = topology.shard_range(names.len());
//! let mine = &names[range];
//! # assert_eq!(mine.len(), 10);
//! # Ok::<(), dataflux_distributed::Error>(())
//! ```

#![warn(missing_docs)]

pub mod budget;
pub mod error;
#[cfg(feature = "launcher")]
pub mod launch;
pub mod logs;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod rendezvous;
pub mod topology;

pub use budget::Budget;
pub use error::{Error, Result};
pub use rendezvous::{run_id_from_env, Rendezvous, RendezvousOptions, DATAFLUX_RUN_ID};
pub use topology::{Source, Topology};
