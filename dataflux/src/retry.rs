//! Exponential backoff with full jitter for transient failures, up to a deadline per
//! operation (as Google's client libraries retry: exponential backoff within minutes).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};
use crate::stats::Stats;

/// How transient failures are retried. Permanent failures are returned at once.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// No retry starts later than this after the operation's first attempt: a GCS outage of
    /// seconds is ridden out, a store down for minutes is reported.
    pub deadline: Duration,
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
            max_attempts: u32::MAX,
            deadline: Duration::from_secs(120),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(16),
            multiplier: 2.0,
        }
    }
}

/// Chainable setters, one per field: callers build it as `RetryPolicy::default().with_…(…)`, so
/// that new fields do not break them.
impl RetryPolicy {
    /// Sets [`max_attempts`](Self::max_attempts): attempts in all, the first included (1 disables
    /// retries).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`deadline`](Self::deadline): no retry starts later than this after the operation's
    /// first attempt.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`initial_backoff`](Self::initial_backoff): upper bound of the first wait.
    #[must_use]
    pub fn with_initial_backoff(mut self, initial_backoff: Duration) -> Self {
        self.initial_backoff = initial_backoff;
        self
    }

    /// Sets [`max_backoff`](Self::max_backoff): upper bound of any wait.
    #[must_use]
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    /// Sets [`multiplier`](Self::multiplier): growth of the bound per attempt.
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): uniform in `[0, bound]` ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let bound = self.initial_backoff.as_secs_f64() * self.multiplier.powi(retry as i32);
        let bound = bound.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(rand::rng().random_range(0.0..=bound))
    }

    /// Runs `attempt` until it succeeds, fails permanently, or attempts or the deadline run
    /// out.
    ///
    /// ```
    /// # tokio_test();
    /// # fn tokio_test() {
    /// use dataflux::{Error, Operation, RetryPolicy, Stats};
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// let calls = AtomicU32::new(0);
    /// let policy = RetryPolicy::default().with_initial_backoff(std::time::Duration::ZERO);
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
        let started = tokio::time::Instant::now();
        let mut tries = 0u32;
        loop {
            tries += 1;
            let result = attempt().await;
            let left = self.deadline.saturating_sub(started.elapsed());
            match result {
                Ok(v) => return Ok(v),
                Err(e)
                    if e.is_transient() && tries < self.max_attempts.max(1) && !left.is_zero() =>
                {
                    let wait = self.backoff(tries - 1).min(left);
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
