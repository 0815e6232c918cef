//! NCCL collectives on device buffers (feature `nccl`), with cudarc.
//!
//! A [`Communicator`] is built from the [`Topology`] (rank, world size, local rank = GPU)
//! and the NCCL unique id that rank 0 makes and shares through the [`Rendezvous`]. libcuda
//! and libnccl are loaded at run time; when either is missing, construction returns
//! [`Error::LibraryMissing`] instead of panicking (cudarc panics on a failed dynamic load,
//! so the libraries are probed first).
//!
//! ```no_run
//! # async fn demo() -> dataflux_distributed::Result<()> {
//! use dataflux_distributed::nccl::{Communicator, ReduceOp};
//! use dataflux_distributed::{Rendezvous, Topology};
//! let topology = Topology::from_env()?;
//! let rdzv = Rendezvous::open_from_env("gs://my-bucket/out", &topology).await?;
//! let comm = Communicator::new(&topology, &rdzv).await?;
//! let mut images_done = comm.to_device(&[42u64])?;
//! comm.all_reduce_in_place(&mut images_done, &ReduceOp::Sum)?;
//! let total = comm.to_host(&images_done)?[0]; // images done by the whole job
//! comm.barrier()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use bytes::Bytes;
pub use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use cudarc::nccl::{Comm, Id};
pub use cudarc::nccl::{NcclType, ReduceOp};

use crate::error::{Error, Result};
use crate::rendezvous::Rendezvous;
use crate::topology::Topology;

/// The rendezvous key under which rank 0 shares the NCCL unique id.
pub const NCCL_ID_KEY: &str = "nccl-id";
/// Size of an NCCL unique id.
const ID_BYTES: usize = 128;

/// Checks that libcuda and libnccl can be loaded, without panicking.
pub fn check_libraries() -> Result<()> {
    // SAFETY: both only try to open the library with `libloading` and drop it; no symbol
    // is called.
    let cuda = unsafe { cudarc::driver::sys::is_culib_present() };
    if !cuda {
        return Err(Error::LibraryMissing {
            library: "libcuda",
            reason: "no CUDA driver library (libcuda.so) on the loader path; this needs an NVIDIA GPU and driver".into(),
        });
    }
    // SAFETY: as above.
    let nccl = unsafe { cudarc::nccl::sys::is_culib_present() };
    if !nccl {
        return Err(Error::LibraryMissing {
            library: "libnccl",
            reason: "no NCCL library (libnccl.so) on the loader path (install libnccl2 or the nvidia-nccl wheel and set LD_LIBRARY_PATH)".into(),
        });
    }
    Ok(())
}

/// An NCCL communicator for every rank of the job, one GPU per rank.
///
/// Collectives are enqueued on [`Communicator::stream`]; they return once enqueued, except
/// [`Communicator::barrier`], which waits for the stream.
#[derive(Debug)]
pub struct Communicator {
    comm: Comm,
    rank: usize,
    world_size: usize,
}

impl Communicator {
    /// Builds the communicator on GPU `topology.local_rank`, exchanging the NCCL id under
    /// [`NCCL_ID_KEY`]. Every rank must call it; it blocks until all have.
    pub async fn new(topology: &Topology, rendezvous: &Rendezvous) -> Result<Self> {
        Self::with_device(topology, rendezvous, topology.local_rank, NCCL_ID_KEY).await
    }

    /// Builds a communicator on GPU `device`, exchanging the id under `key` (one key per
    /// communicator in a run).
    pub async fn with_device(
        topology: &Topology,
        rendezvous: &Rendezvous,
        device: usize,
        key: &str,
    ) -> Result<Self> {
        let (rank, world_size) = (topology.rank, topology.world_size);
        if i32::try_from(world_size).is_err() {
            return Err(Error::Inconsistent {
                variable: "WORLD_SIZE",
                value: world_size,
                reason: "does not fit NCCL's int".into(),
            });
        }
        check_libraries()?;
        let device_err = |operation: &'static str| {
            move |e: cudarc::driver::DriverError| Error::Device {
                operation,
                rank,
                message: e.to_string(),
            }
        };
        let context = CudaContext::new(device).map_err(device_err("cuCtxCreate"))?;
        let stream = context.new_stream().map_err(device_err("cuStreamCreate"))?;
        let shared = rendezvous
            .share(key, || async {
                let id = Id::new().map_err(|e| nccl_error("ncclGetUniqueId", rank, e))?;
                Ok::<_, Error>(Bytes::from(
                    id.internal().iter().map(|&c| c as u8).collect::<Vec<u8>>(),
                ))
            })
            .await?;
        let internal: [u8; ID_BYTES] = shared.as_ref().try_into().map_err(|_| Error::Device {
            operation: "ncclCommInitRank",
            rank,
            message: format!(
                "the shared NCCL id under {key:?} has {} bytes, not {ID_BYTES}",
                shared.len()
            ),
        })?;
        let id = Id::uninit(internal.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(stream, rank, world_size, id)
            .map_err(|e| nccl_error("ncclCommInitRank", rank, e))?;
        Ok(Self {
            comm,
            rank,
            world_size,
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The stream collectives run on (allocate and copy buffers with it).
    pub fn stream(&self) -> Arc<CudaStream> {
        self.comm.stream()
    }

    /// Copies `data` to a new buffer on this rank's GPU.
    pub fn to_device<T: cudarc::driver::DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        self.stream().clone_htod(data).map_err(|e| Error::Device {
            operation: "cuMemcpyHtoD",
            rank: self.rank,
            message: e.to_string(),
        })
    }

    /// Waits for the stream, then copies `buffer` back to the host.
    pub fn to_host<T: cudarc::driver::DeviceRepr>(&self, buffer: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream().clone_dtoh(buffer).map_err(|e| Error::Device {
            operation: "cuMemcpyDtoH",
            rank: self.rank,
            message: e.to_string(),
        })
    }

    /// Reduces `send` from every rank into `recv` on every rank.
    pub fn all_reduce<S, R, T>(&self, send: &S, recv: &mut R, op: &ReduceOp) -> Result<()>
    where
        S: DevicePtr<T>,
        R: DevicePtrMut<T>,
        T: NcclType,
    {
        self.comm
            .all_reduce(send, recv, op)
            .map(drop)
            .map_err(|e| nccl_error("ncclAllReduce", self.rank, e))
    }

    /// Reduces `buffer` from every rank into itself on every rank.
    pub fn all_reduce_in_place<R: DevicePtrMut<T>, T: NcclType>(
        &self,
        buffer: &mut R,
        op: &ReduceOp,
    ) -> Result<()> {
        self.comm
            .all_reduce_in_place(buffer, op)
            .map(drop)
            .map_err(|e| nccl_error("ncclAllReduce", self.rank, e))
    }

    /// Copies `buffer` on rank `root` into `buffer` on every other rank.
    pub fn broadcast<R: DevicePtrMut<T>, T: NcclType>(
        &self,
        buffer: &mut R,
        root: usize,
    ) -> Result<()> {
        let root = self.root(root)?;
        self.comm
            .broadcast_in_place(buffer, root)
            .map(drop)
            .map_err(|e| nccl_error("ncclBroadcast", self.rank, e))
    }

    /// Concatenates every rank's `send` (same length on each) into `recv`
    /// (`world_size × send.len()`), in rank order.
    pub fn all_gather<S, R, T>(&self, send: &S, recv: &mut R) -> Result<()>
    where
        S: DevicePtr<T>,
        R: DevicePtrMut<T>,
        T: NcclType,
    {
        if recv.len() != send.len() * self.world_size {
            return Err(Error::Device {
                operation: "ncclAllGather",
                rank: self.rank,
                message: format!(
                    "receive buffer holds {} elements, not world size {} × {}",
                    recv.len(),
                    self.world_size,
                    send.len()
                ),
            });
        }
        self.comm
            .all_gather(send, recv)
            .map(drop)
            .map_err(|e| nccl_error("ncclAllGather", self.rank, e))
    }

    /// Waits until every rank gets here: an all-reduce of one number, then a stream sync.
    pub fn barrier(&self) -> Result<()> {
        let stream = self.stream();
        let device_err = |operation: &'static str| {
            let rank = self.rank;
            move |e: cudarc::driver::DriverError| Error::Device {
                operation,
                rank,
                message: e.to_string(),
            }
        };
        let mut token = stream
            .alloc_zeros::<u8>(1)
            .map_err(device_err("cuMemAlloc"))?;
        self.all_reduce_in_place(&mut token, &ReduceOp::Sum)?;
        stream
            .synchronize()
            .map_err(device_err("cuStreamSynchronize"))
    }

    fn root(&self, root: usize) -> Result<i32> {
        if root >= self.world_size {
            return Err(Error::Inconsistent {
                variable: "root",
                value: root,
                reason: format!("is not below the world size {}", self.world_size),
            });
        }
        i32::try_from(root).map_err(|_| Error::Inconsistent {
            variable: "root",
            value: root,
            reason: "does not fit NCCL's int".into(),
        })
    }
}

fn nccl_error(operation: &'static str, rank: usize, e: cudarc::nccl::result::NcclError) -> Error {
    Error::Device {
        operation,
        rank,
        message: format!("{:?}", e.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a GPU this is the typed error, not a panic; with one, a one-rank
    /// communicator works end to end.
    #[tokio::test]
    async fn construction_reports_missing_libraries() {
        let topology = Topology::single();
        let rdzv = Rendezvous::open("memory://nccl-test", "nccl", &topology)
            .await
            .unwrap();
        // SAFETY: only probes the loader.
        let cuda = unsafe { cudarc::driver::sys::is_culib_present() };
        // SAFETY: as above.
        let nccl = unsafe { cudarc::nccl::sys::is_culib_present() };
        match Communicator::new(&topology, &rdzv).await {
            Err(Error::LibraryMissing { library, .. }) => {
                let expected = if !cuda { "libcuda" } else { "libnccl" };
                assert!(!(cuda && nccl), "libraries present but reported missing");
                assert_eq!(library, expected);
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(comm) => {
                assert!(cuda && nccl);
                let mut data = comm.to_device(&[3.0f32, 4.0]).unwrap();
                comm.all_reduce_in_place(&mut data, &ReduceOp::Sum).unwrap();
                comm.broadcast(&mut data, 0).unwrap();
                comm.barrier().unwrap();
                assert_eq!(comm.to_host(&data).unwrap(), vec![3.0, 4.0]);
            }
        }
    }

    #[test]
    fn missing_library_message_names_it() {
        if let Err(e) = check_libraries() {
            assert!(
                e.to_string().starts_with("libcuda") || e.to_string().starts_with("libnccl"),
                "{e}"
            );
        }
    }
}
