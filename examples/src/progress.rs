//! Progress for a person: an indicatif bar with images/s and ETA at a terminal, plain
//! periodic log lines elsewhere (a pod's log).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Counts processed images and shows them.
#[derive(Debug)]
pub struct Progress {
    done: Arc<AtomicU64>,
    total: u64,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing progress towards `total` (of which `already` were done before a
    /// restart). `visible` is false on ranks other than 0.
    pub fn start(total: u64, already: u64, visible: bool) -> Self {
        let done = Arc::new(AtomicU64::new(already));
        let mut bar = None;
        let mut ticker = None;
        if visible && std::io::stderr().is_terminal() {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {pos}/{len} images {per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_position(already);
            bar = Some(b);
        } else if visible {
            let done = done.clone();
            ticker = Some(tokio::spawn(async move {
                let start = Instant::now();
                let mut interval = tokio::time::interval(Duration::from_secs(10));
                interval.tick().await;
                loop {
                    interval.tick().await;
                    let n = done.load(Ordering::Relaxed);
                    let rate = (n - already) as f64 / start.elapsed().as_secs_f64().max(1e-9);
                    let eta = if rate > 0.0 {
                        (total.saturating_sub(n)) as f64 / rate
                    } else {
                        f64::INFINITY
                    };
                    tracing::info!(
                        "progress: {n}/{total} images, {rate:.1} images/s, ETA {eta:.0} s"
                    );
                }
            }));
        }
        Self {
            done,
            total,
            bar,
            ticker,
        }
    }

    /// Adds `n` processed images.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Images processed so far (including those done before a restart).
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Stops showing progress.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        if let Some(t) = self.ticker {
            t.abort();
        }
    }
}
