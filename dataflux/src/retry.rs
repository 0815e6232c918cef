//! Exponential backoff with full jitter for transient failures.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};
use crate::stats::Stats;

/// How transient failures are retried. Permanent failures are returned at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Upper bound of the first wait.
    pub initial_backoff: Duration,
    /// Upper bound of any wait.
    pub max_backoff: Duration,
    /// Growth of the bound per attempt.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): uniform in `[0, bound]` ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let bound = self.initial_backoff.as_secs_f64() * self.multiplier.powi(retry as i32);
        let bound = bound.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(rand::rng().random_range(0.0..=bound))
    }

    /// Runs `attempt` until it succeeds, fails permanently, or attempts run out.
    ///
    /// ```
    /// # tokio_test();
    /// # fn tokio_test() {
    /// use dataflux::{Error, Operation, RetryPolicy, Stats};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let calls = AtomicU32::new(0);
    /// let policy = RetryPolicy { initial_backoff: std::time::Duration::ZERO, ..Default::default() };
    /// let out = rt.block_on(policy.run(&Stats::default(), || async {
    ///     if calls.fetch_add(1, Ordering::SeqCst) < 2 {
    ///         Err(Error::Request { operation: Operation::Get, location: "gs://b/o".into(),
    ///             status: Some(503), transient: true, message: "busy".into() })
    ///     } else {
    ///         Ok(7)
    ///     }
    /// }));
    /// assert_eq!(out.unwrap(), 7);
    /// assert_eq!(calls.load(Ordering::SeqCst), 3);
    /// # }
    /// ```
    pub async fn run<T, F, Fut>(&self, stats: &Stats, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut tries = 0u32;
        loop {
            tries += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && tries < self.max_attempts.max(1) => {
                    let wait = self.backoff(tries - 1);
                    tracing::debug!(error = %e, attempt = tries, ?wait, "transient failure, retrying");
                    stats.add_retry();
                    tokio::time::sleep(wait).await;
                }
                Err(e) if e.is_transient() && tries > 1 => {
                    return Err(Error::RetriesExhausted {
                        attempts: tries,
                        last: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }
}
