//! A bounded pool of CPU threads for preprocessing, awaited from async code. A panic inside
//! a job is caught and returned as that job's error: rayon's `spawn` would abort the process
//! (a panicking decoder would crash-loop the rank).

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};

/// The pool.
#[derive(Debug)]
pub struct CpuPool {
    pool: rayon::ThreadPool,
}

impl CpuPool {
    /// `threads` threads (0: one per core), named `preprocess-N`.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("preprocess-{i}"))
            .build()
            .map_err(|e| Error::Config {
                setting: "--decode-threads",
                reason: format!("cannot start {threads} threads: {e}"),
            })?;
        Ok(Self { pool })
    }

    /// Threads in the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `job` on the pool; `Err(message)` if it panicked.
    pub async fn run<R, F>(&self, job: F) -> std::result::Result<R, String>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let out = catch_unwind(AssertUnwindSafe(job)).map_err(|p| panic_message(&*p));
            // The receiver may be gone (the job was stopped): nothing to do then.
            let _ = tx.send(out);
        });
        rx.await
            .unwrap_or_else(|_| Err("the pool dropped the job".into()))
    }
}

/// A panic payload's message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}
