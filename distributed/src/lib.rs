//! Ranks, sharding, rendezvous and NCCL for dataflux jobs (work in progress).
