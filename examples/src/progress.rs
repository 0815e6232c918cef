//! The job's progress where a person or a log reader sees it: on a terminal, a live display of
//! the whole job and of this rank; elsewhere (JSON logs, a pipe), one `progress` log line every
//! `--progress-secs`; with `--quiet`, nothing.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use dataflux_distributed::logs::{self, LogFormat};
use dataflux_pipeline::{Progress, ProgressSnapshot};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// How often a terminal display redraws.
const DRAW_EVERY: Duration = Duration::from_millis(500);
/// How often a terminal display's job view looks at the run's bookkeeping at most.
const LIVE_REFRESH: Duration = Duration::from_secs(10);

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live display on the terminal (text logs to a terminal).
    Live,
    /// A `progress` log line every so often.
    Lines(Duration),
    /// Nothing (`--quiet`, or `--progress-secs 0` without a terminal).
    Off,
}

impl Mode {
    /// The mode for these flags: live on a terminal with text logs, lines every `every`
    /// otherwise, nothing when `quiet`.
    pub fn pick(quiet: bool, format: LogFormat, every: Duration) -> Mode {
        if quiet {
            Mode::Off
        } else if format.resolved() == LogFormat::Text && std::io::stderr().is_terminal() {
            Mode::Live
        } else if every.is_zero() {
            Mode::Off
        } else {
            Mode::Lines(every)
        }
    }

    /// The job's progress handle for this mode: how often it looks at the whole run.
    pub fn progress(self) -> Progress {
        match self {
            Mode::Live => Progress::default().with_refresh(LIVE_REFRESH),
            Mode::Lines(every) => Progress::default().with_refresh(every),
            Mode::Off => Progress::default(),
        }
    }
}

/// A running display; [`Display::stop`] clears it and joins its task.
pub struct Display {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Display {
    /// Starts showing `progress` as `mode` says, for rank `rank` of `world`.
    pub fn start(progress: Progress, mode: Mode, rank: usize, world: usize) -> Display {
        let stop = CancellationToken::new();
        let task = match mode {
            Mode::Off => None,
            Mode::Lines(every) => Some(tokio::spawn(lines(progress, every, stop.clone()))),
            Mode::Live => Some(tokio::spawn(live(progress, rank, world, stop.clone()))),
        };
        Display { stop, task }
    }

    /// Stops and clears the display (before the final summary is printed).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn lines(progress: Progress, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let s = progress.snapshot();
        let job = s.job.unwrap_or_default();
        tracing::info!(
            images_done = s.job_images,
            images_total = s.images_total,
            percent = percent(&s).map(|p| (p * 10.0).round() / 10.0),
            images_per_sec = s.job_rate.map(|r| (r * 10.0).round() / 10.0),
            eta_secs = s.eta.map(|d| d.as_secs()),
            chunks_free = job.free,
            chunks_claimed = job.claimed,
            chunks_lapsed = job.lapsed,
            chunks_committed = job.committed,
            chunks_total = s.chunks_total,
            rank_images = s.rank_images,
            rank_bad = s.rank_bad,
            rank_chunks = s.rank_chunks,
            rank_images_per_sec = (s.rank_rate * 10.0).round() / 10.0,
            "progress: {}",
            job_line(&s)
        );
    }
}

async fn live(progress: Progress, rank: usize, world: usize, stop: CancellationToken) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let bar = ProgressStyle::with_template("{prefix:>9} [{bar:30.cyan/blue}] {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let text = ProgressStyle::with_template("{prefix:>9} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    // No bar until the plan gives the total.
    let job = multi.add(ProgressBar::new(0).with_style(text.clone()));
    job.set_prefix("job");
    let mine = multi.add(ProgressBar::new(0).with_style(text));
    mine.set_prefix(format!("rank {rank}/{world}"));
    // Log lines clear the display, print, and let it redraw.
    let hook = multi.clone();
    logs::set_stderr_hook(Some(Arc::new(move |line: &[u8]| {
        hook.suspend(|| {
            use std::io::Write;
            let _ = std::io::stderr().write_all(line);
        })
    })));
    loop {
        let s = progress.snapshot();
        if let Some(total) = s.images_total {
            if job.length() != Some(total) {
                job.set_length(total);
                job.set_style(bar.clone());
            }
        }
        job.set_position(s.job_images);
        job.set_message(job_line(&s));
        mine.set_message(rank_line(&s));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(DRAW_EVERY) => {}
        }
    }
    logs::set_stderr_hook(None);
    job.finish_and_clear();
    mine.finish_and_clear();
    let _ = multi.clear();
}

fn percent(s: &ProgressSnapshot) -> Option<f64> {
    s.images_total
        .filter(|&t| t > 0)
        .map(|t| 100.0 * s.job_images as f64 / t as f64)
}

/// `1,234/10,000 images (12.3%) · 45.2 img/s · ETA 3m 14s · chunks 2 free, 3 claimed, 5 committed`
fn job_line(s: &ProgressSnapshot) -> String {
    let mut out = match s.images_total {
        Some(total) => format!(
            "{}/{} images ({:.1}%)",
            s.job_images,
            total,
            percent(s).unwrap_or(100.0)
        ),
        None => format!("{} images (planning)", s.job_images),
    };
    match s.job_rate {
        Some(r) => out.push_str(&format!(" · {r:.1} img/s")),
        None => out.push_str(" · measuring"),
    }
    if let Some(eta) = s.eta {
        out.push_str(&format!(" · ETA {}", duration(eta)));
    }
    if let Some(j) = s.job {
        out.push_str(&format!(
            " · chunks {} free, {} claimed, {} committed",
            j.free, j.claimed, j.committed
        ));
        if j.lapsed > 0 {
            out.push_str(&format!(", {} lapsed", j.lapsed));
        }
    }
    out
}

/// `412 images (1 bad) · 15.1 img/s · 2 chunks committed · 1m 3s`
fn rank_line(s: &ProgressSnapshot) -> String {
    format!(
        "{} images ({} bad) · {:.1} img/s · {} chunks committed · {}",
        s.rank_images,
        s.rank_bad,
        s.rank_rate,
        s.rank_chunks,
        duration(s.elapsed)
    )
}

/// `3h 2m`, `4m 10s`, `12s`.
fn duration(d: Duration) -> String {
    human_secs(d.as_secs_f64())
}

/// Seconds as a person says them: `3h 2m`, `4m 10s`, `12s` (rounded; negative is `0s`).
///
/// ```
/// assert_eq!(dataflux_examples::progress::human_secs(250.4), "4m 10s");
/// ```
pub fn human_secs(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(250)), "4m 10s");
        assert_eq!(duration(Duration::from_secs(3 * 3600 + 125)), "3h 2m");
    }

    #[test]
    fn quiet_wins_and_a_pipe_gets_lines() {
        let every = Duration::from_secs(30);
        assert_eq!(Mode::pick(true, LogFormat::Text, every), Mode::Off);
        assert_eq!(
            Mode::pick(false, LogFormat::Json, every),
            Mode::Lines(every)
        );
        assert_eq!(
            Mode::pick(false, LogFormat::Json, Duration::ZERO),
            Mode::Off
        );
    }
}
