//! The workspace's one pool of CPU threads ([`CpuPool`]), separate from any async runtime:
//! image preprocessing in parallel batches or one by one, and any CPU job awaited from async
//! code, a panic in a job becoming its error.

use rayon::prelude::*;

use crate::error::{Error, PreprocessError, Result};
use crate::preprocess::{PreparedImage, Preprocessor};

/// A panic payload's message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

/// Runs one image's preprocessing; a panic (a decoder bug on a hostile file) becomes that
/// image's error.
fn guarded(
    f: impl FnOnce() -> Result<PreparedImage, PreprocessError>,
) -> Result<PreparedImage, PreprocessError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(PreprocessError::Decode {
            reason: format!("the decoder panicked: {}", panic_message(&*payload)),
        })
    })
}

/// A bounded pool of CPU threads for decoding, resizing and any other CPU work, separate from
/// any async runtime: the one CPU pool of the workspace (the batch job's decode stage runs on
/// it too). A job that panics becomes that job's error, never an abort (rayon's `spawn`
/// aborts the process on a panic, and a panicking decoder would crash-loop a rank).
#[derive(Debug)]
pub struct CpuPool {
    pool: rayon::ThreadPool,
}

/// The pool's former name.
pub type DecodePool = CpuPool;

impl CpuPool {
    /// A pool of `threads` threads (0: one per core), named `decode-N`.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("decode-{i}"))
            .build()
            .map_err(|e| Error::Worker {
                reason: format!("cannot start {threads} decode threads: {e}"),
            })?;
        Ok(CpuPool { pool })
    }

    /// Runs `job` on the pool and awaits it from async code; `Err(message)` if it panicked.
    pub async fn run<R, F>(&self, job: F) -> std::result::Result<R, String>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                .map_err(|p| panic_message(&*p));
            // The receiver may be gone (the job was stopped): nothing to do then.
            let _ = tx.send(out);
        });
        rx.await
            .unwrap_or_else(|_| Err("the pool dropped the job".into()))
    }

    /// Number of threads in the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Preprocesses a batch in parallel on the pool, blocking the caller until done; one result
    /// per input, in order. Call from a blocking context (a thread, `spawn_blocking`), not from
    /// an async task.
    pub fn preprocess_batch<B: AsRef<[u8]> + Sync>(
        &self,
        preprocessor: &Preprocessor,
        images: &[B],
    ) -> Vec<Result<PreparedImage, PreprocessError>> {
        self.pool.install(|| {
            images
                .par_iter()
                .map(|b| guarded(|| preprocessor.preprocess(b.as_ref())))
                .collect()
        })
    }

    /// Queues one image on the pool and returns at once; await the receiver from async code.
    /// A decoder that panics gives that image a [`PreprocessError::Decode`], never an abort
    /// (rayon's `spawn` aborts the process on a panic).
    pub fn spawn<B: AsRef<[u8]> + Send + 'static>(
        &self,
        preprocessor: &Preprocessor,
        bytes: B,
    ) -> tokio::sync::oneshot::Receiver<Result<PreparedImage, PreprocessError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let preprocessor = preprocessor.clone();
        self.pool.spawn(move || {
            // The receiver may have been dropped; nothing to do then.
            let _ = tx.send(guarded(|| preprocessor.preprocess(bytes.as_ref())));
        });
        rx
    }
}
