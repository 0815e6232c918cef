//! What one rank may use: the process's CPU quota and memory limit (cgroup v2, else v1, else
//! the machine), divided by the ranks on the node (`LOCAL_WORLD_SIZE`). Eight ranks on a
//! 224-vCPU node get 28 decode threads each, not 224; each rank's prefetch window is sized
//! for its share of the pod's memory, not for all of it.

use std::path::Path;

/// Bytes of the prefetch window a rank takes at most, whatever the memory allows.
pub const MAX_PREFETCH_BYTES: u64 = 256 * 1024 * 1024;
/// Smallest prefetch window.
pub const MIN_PREFETCH_BYTES: u64 = 16 * 1024 * 1024;
/// Fraction of a rank's memory share given to fetched-but-not-decoded bytes (the rest is
/// the model, decoded batches, and the allocator's slack).
pub const PREFETCH_SHARE: f64 = 0.125;

/// One rank's share of the process's resources: computed by [`Budget::detect`] or
/// [`Budget::from_limits`]; a caller may override the shares with the `with_…` setters.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Budget {
    /// CPUs the process may use in all (the cgroup quota, else the cores it sees).
    pub cpus: f64,
    /// Its memory limit, if any.
    pub memory_bytes: Option<u64>,
    /// Ranks sharing them.
    pub local_world_size: usize,
    /// Decode threads for this rank.
    pub decode_threads: usize,
    /// Async runtime workers for this rank (I/O: a few are plenty).
    pub async_workers: usize,
    /// Prefetch window for this rank.
    pub prefetch_bytes: u64,
}

impl Budget {
    /// Reads the limits of this process and divides them by `local_world_size`.
    pub fn detect(local_world_size: usize) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let cpus = cgroup_cpus(Path::new("/sys/fs/cgroup")).map_or(cores, |q| q.min(cores));
        Self::from_limits(
            cpus,
            cgroup_memory(Path::new("/sys/fs/cgroup")),
            local_world_size,
        )
    }

    /// The budget of one of `local_world_size` ranks sharing `cpus` and `memory_bytes`.
    ///
    /// ```
    /// use dataflux_distributed::budget::Budget;
    /// let b = Budget::from_limits(224.0, Some(2 << 40), 8);
    /// assert_eq!((b.decode_threads, b.prefetch_bytes), (28, 256 << 20));
    /// let b = Budget::from_limits(2.0, Some(1 << 30), 1);
    /// assert_eq!((b.decode_threads, b.async_workers, b.prefetch_bytes), (2, 2, 128 << 20));
    /// ```
    pub fn from_limits(cpus: f64, memory_bytes: Option<u64>, local_world_size: usize) -> Self {
        let ranks = local_world_size.max(1);
        let share = (cpus / ranks as f64).max(1.0);
        let decode_threads = share.floor() as usize;
        let prefetch_bytes = match memory_bytes {
            Some(m) => ((m as f64 / ranks as f64 * PREFETCH_SHARE) as u64)
                .clamp(MIN_PREFETCH_BYTES, MAX_PREFETCH_BYTES),
            None => MAX_PREFETCH_BYTES,
        };
        Self {
            cpus,
            memory_bytes,
            local_world_size: ranks,
            decode_threads,
            async_workers: (share.ceil() as usize).clamp(2, 8),
            prefetch_bytes,
        }
    }
}

impl Default for Budget {
    /// One rank with one CPU and no memory limit: [`Budget::from_limits`]`(1.0, None, 1)`.
    fn default() -> Self {
        Self::from_limits(1.0, None, 1)
    }
}

/// Chainable setters for the shares, to override what was computed:
/// `Budget::detect(8).with_decode_threads(4)`.
impl Budget {
    /// Sets [`decode_threads`](Self::decode_threads): decode threads for this rank.
    #[must_use]
    pub fn with_decode_threads(mut self, decode_threads: usize) -> Self {
        self.decode_threads = decode_threads;
        self
    }

    /// Sets [`async_workers`](Self::async_workers): async runtime workers for this rank (I/O: a few
    /// are plenty).
    #[must_use]
    pub fn with_async_workers(mut self, async_workers: usize) -> Self {
        self.async_workers = async_workers;
        self
    }

    /// Sets [`prefetch_bytes`](Self::prefetch_bytes): prefetch window for this rank.
    #[must_use]
    pub fn with_prefetch_bytes(mut self, prefetch_bytes: u64) -> Self {
        self.prefetch_bytes = prefetch_bytes;
        self
    }
}

/// CPUs of a cgroup v2 `cpu.max` (`"200000 100000"`: 2) or v1 quota; `None` when unlimited.
fn cgroup_cpus(root: &Path) -> Option<f64> {
    if let Ok(max) = std::fs::read_to_string(root.join("cpu.max")) {
        return parse_cpu_max(&max);
    }
    let quota = std::fs::read_to_string(root.join("cpu/cpu.cfs_quota_us")).ok()?;
    let period = std::fs::read_to_string(root.join("cpu/cpu.cfs_period_us")).ok()?;
    let (q, p): (f64, f64) = (quota.trim().parse().ok()?, period.trim().parse().ok()?);
    (q > 0.0 && p > 0.0).then(|| q / p)
}

fn parse_cpu_max(s: &str) -> Option<f64> {
    let mut parts = s.split_whitespace();
    let (quota, period) = (parts.next()?, parts.next().unwrap_or("100000"));
    let (q, p): (f64, f64) = (quota.parse().ok()?, period.parse().ok()?);
    (q > 0.0 && p > 0.0).then(|| q / p)
}

/// A cgroup's memory limit (v2 `memory.max`, else v1); `None` when unlimited.
fn cgroup_memory(root: &Path) -> Option<u64> {
    let raw = std::fs::read_to_string(root.join("memory.max"))
        .or_else(|_| std::fs::read_to_string(root.join("memory/memory.limit_in_bytes")))
        .ok()?;
    parse_memory(&raw)
}

fn parse_memory(s: &str) -> Option<u64> {
    // v1 writes "unlimited" as a page-rounded i64::MAX.
    s.trim().parse::<u64>().ok().filter(|&m| m < (1 << 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_parse() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("250000 100000\n"), Some(2.5));
        assert_eq!(parse_memory("max\n"), None);
        assert_eq!(parse_memory("9223372036854771712\n"), None);
        assert_eq!(parse_memory("17179869184\n"), Some(16 << 30));
    }

    #[test]
    fn a_node_is_divided_between_its_ranks() {
        let b = Budget::from_limits(224.0, Some(1800 << 30), 8);
        assert_eq!((b.decode_threads, b.async_workers), (28, 8));
        // A small pod: every rank still gets a thread and the smallest window.
        let b = Budget::from_limits(2.0, Some(256 << 20), 8);
        assert_eq!(
            (b.decode_threads, b.async_workers, b.prefetch_bytes),
            (1, 2, MIN_PREFETCH_BYTES)
        );
        let dir = std::env::temp_dir().join(format!("budget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.max"), "400000 100000\n").unwrap();
        std::fs::write(dir.join("memory.max"), "8589934592\n").unwrap();
        assert_eq!(cgroup_cpus(&dir), Some(4.0));
        assert_eq!(cgroup_memory(&dir), Some(8 << 30));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
