//! Request counters shared by a store and everything built on it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Operation;

/// Counters of requests by kind, bytes, retries and fallbacks. Cheap to update from many tasks.
#[derive(Debug, Default)]
pub struct Stats {
    list: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    compose: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    retries: AtomicU64,
    fallbacks: AtomicU64,
}

/// A point-in-time copy of [`Stats`], printable and comparable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// List requests (one per page).
    pub list: u64,
    /// Whole-object or ranged GETs.
    pub get: u64,
    /// Metadata reads.
    pub head: u64,
    /// Writes.
    pub put: u64,
    /// Deletes.
    pub delete: u64,
    /// Compose requests.
    pub compose: u64,
    /// Payload bytes downloaded.
    pub bytes_read: u64,
    /// Payload bytes uploaded.
    pub bytes_written: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    /// Composed groups fetched object by object instead (compose refused or failed).
    pub fallbacks: u64,
}

impl Stats {
    /// Zeroed counters.
    pub const fn new() -> Self {
        Self {
            list: AtomicU64::new(0),
            get: AtomicU64::new(0),
            head: AtomicU64::new(0),
            put: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            compose: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Counts one request of `op` (each attempt counts, retries included).
    pub fn record(&self, op: Operation) {
        let counter = match op {
            Operation::List => &self.list,
            Operation::Get => &self.get,
            Operation::Head => &self.head,
            Operation::Put => &self.put,
            Operation::Delete => &self.delete,
            Operation::Compose => &self.compose,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts downloaded bytes.
    pub fn add_bytes_read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts uploaded bytes.
    pub fn add_bytes_written(&self, n: u64) {
        self.bytes_written.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts one retry.
    pub fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts one fallback from compose to individual reads.
    pub fn add_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads all counters.
    ///
    /// ```
    /// let stats = dataflux::Stats::default();
    /// stats.record(dataflux::Operation::Get);
    /// stats.add_bytes_read(10);
    /// let s = stats.snapshot();
    /// assert_eq!((s.get, s.bytes_read, s.requests()), (1, 10, 1));
    /// ```
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            list: r(&self.list),
            get: r(&self.get),
            head: r(&self.head),
            put: r(&self.put),
            delete: r(&self.delete),
            compose: r(&self.compose),
            bytes_read: r(&self.bytes_read),
            bytes_written: r(&self.bytes_written),
            retries: r(&self.retries),
            fallbacks: r(&self.fallbacks),
        }
    }
}

impl StatsSnapshot {
    /// All requests of every kind.
    pub fn requests(&self) -> u64 {
        self.list + self.get + self.head + self.put + self.delete + self.compose
    }

    /// Counters accumulated since `earlier`.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            list: self.list - earlier.list,
            get: self.get - earlier.get,
            head: self.head - earlier.head,
            put: self.put - earlier.put,
            delete: self.delete - earlier.delete,
            compose: self.compose - earlier.compose,
            bytes_read: self.bytes_read - earlier.bytes_read,
            bytes_written: self.bytes_written - earlier.bytes_written,
            retries: self.retries - earlier.retries,
            fallbacks: self.fallbacks - earlier.fallbacks,
        }
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests {} (list {}, get {}, head {}, put {}, delete {}, compose {}), read {} B, written {} B, retries {}, fallbacks {}",
            self.requests(),
            self.list,
            self.get,
            self.head,
            self.put,
            self.delete,
            self.compose,
            self.bytes_read,
            self.bytes_written,
            self.retries,
            self.fallbacks
        )
    }
}
