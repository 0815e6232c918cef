//! Which decoded frames become samples.
//!
//! With a rate `F`, sample `k` is the last frame whose presentation time is ≤ `k / F`, for
//! every `k` with `k / F` before the video's end; times count from the first frame. With key
//! frames only, the candidates are the key frames: with a rate, sample `k` is the last key
//! frame at or before `k / F`; without one, every key frame is a sample, at its own time. At
//! most `max_frames` samples are taken from a video.

/// Two times closer than this are the same instant (floating-point noise in `k / F`).
const EPSILON_S: f64 = 1e-7;

/// How frames are sampled from a video.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Sampling {
    /// Samples per second of video (fractional allowed: 0.2 is one every 5 s); `None` with
    /// [`keyframes`](Self::keyframes) takes every key frame.
    pub fps: Option<f64>,
    /// At most this many samples per video.
    pub max_frames: Option<u64>,
    /// Only key frames are candidates (and only they are decoded).
    pub keyframes: bool,
}

impl Sampling {
    /// `fps` samples per second.
    pub fn fps(fps: f64) -> Self {
        Sampling {
            fps: Some(fps),
            ..Sampling::default()
        }
    }

    /// Every key frame.
    pub fn keyframes() -> Self {
        Sampling {
            keyframes: true,
            ..Sampling::default()
        }
    }

    /// Sets [`max_frames`](Self::max_frames).
    #[must_use]
    pub fn with_max_frames(mut self, max_frames: Option<u64>) -> Self {
        self.max_frames = max_frames;
        self
    }

    /// Sets [`keyframes`](Self::keyframes).
    #[must_use]
    pub fn with_keyframes(mut self, keyframes: bool) -> Self {
        self.keyframes = keyframes;
        self
    }

    /// Whether this sampling takes any frame at all (a rate above zero, or key frames).
    pub fn is_enabled(&self) -> bool {
        self.fps.is_some_and(|f| f > 0.0 && f.is_finite()) || (self.fps.is_none() && self.keyframes)
    }
}

/// The state of one video's sampling: which sample comes next.
///
/// ```
/// use dataflux_inference::video::{Sampler, Sampling};
/// // 1 sample/s over frames at 0.0, 0.4, 0.8, 1.2, 1.6 (the video ends at 2.0 s).
/// let mut s = Sampler::new(Sampling::fps(1.0));
/// let mut got = Vec::new();
/// let mut prev = None;
/// for t in [0.0, 0.4, 0.8, 1.2, 1.6] {
///     for k in s.due_before(t) { got.push((k, prev.unwrap())); }
///     prev = Some(t);
/// }
/// for k in s.due_until_end(2.0) { got.push((k, prev.unwrap())); }
/// assert_eq!(got, [(0, 0.0), (1, 0.8)]);
/// ```
#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    next: u64,
}

impl Sampler {
    /// A sampler at the start of a video.
    pub fn new(sampling: Sampling) -> Self {
        Sampler { sampling, next: 0 }
    }

    /// The sampling.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// How many samples have been decided so far (the next sample's `k`).
    pub fn taken(&self) -> u64 {
        self.next
    }

    /// Whether no further sample can be taken (`max_frames` reached).
    pub fn is_full(&self) -> bool {
        self.sampling.max_frames.is_some_and(|m| self.next >= m)
    }

    /// The time of sample `k`: `k / F` (with a rate).
    pub fn time_of(&self, k: u64) -> Option<f64> {
        self.sampling.fps.map(|f| k as f64 / f)
    }

    /// The time of the next sample, if there is a rate and room for one.
    pub fn next_time(&self) -> Option<f64> {
        if self.is_full() {
            return None;
        }
        self.time_of(self.next)
    }

    /// With a rate: the samples that a candidate frame at time `t` shows to be decided, i.e.
    /// every not yet taken `k` with `k / F < t`. Their frame is the previous candidate (the
    /// last one at or before `k / F`). Without a rate: nothing (see [`Self::take_each`]).
    pub fn due_before(&mut self, t: f64) -> std::ops::Range<u64> {
        self.due(|time| time < t - EPSILON_S)
    }

    /// With a rate, at the end of the video (`duration` seconds from the first frame): every
    /// remaining `k` with `k / F < duration`, all shown by the last candidate.
    pub fn due_until_end(&mut self, duration: f64) -> std::ops::Range<u64> {
        self.due(|time| time < duration - EPSILON_S)
    }

    /// Without a rate (every key frame): the `k` of this candidate, if there is room.
    pub fn take_each(&mut self) -> Option<u64> {
        if self.sampling.fps.is_some() || self.is_full() {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    /// With a rate: whether a frame at `t`, followed by the next one `interval` later, is the
    /// last frame at or before some sample still to come (`k / F` in `[t, t + interval)`).
    ///
    /// ```
    /// use dataflux_inference::video::{Sampler, Sampling};
    /// let s = Sampler::new(Sampling::fps(1.0));
    /// // 10 fps: the frame at 0.0 shows sample 0; the one at 0.5 shows none.
    /// assert!(s.shows_a_sample(0.0, 0.1, 1.0));
    /// assert!(!s.shows_a_sample(0.5, 0.1, 1.0));
    /// assert!(s.shows_a_sample(0.95, 0.1, 1.0)); // the last before 1.0
    /// ```
    pub fn shows_a_sample(&self, t: f64, interval: f64, fps: f64) -> bool {
        if self.is_full() {
            return false;
        }
        let first = ((t - EPSILON_S) * fps).ceil().max(0.0) as u64;
        let k = first.max(self.next);
        if self.sampling.max_frames.is_some_and(|m| k >= m) {
            return false;
        }
        (k as f64 / fps) < t + interval - EPSILON_S
    }

    fn due(&mut self, before: impl Fn(f64) -> bool) -> std::ops::Range<u64> {
        let start = self.next;
        while let Some(time) = self.next_time() {
            if !before(time) {
                break;
            }
            self.next += 1;
        }
        start..self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a sampler over candidate times; returns `(k, frame time)`.
    fn run(sampling: Sampling, frames: &[f64], duration: f64) -> Vec<(u64, f64)> {
        let mut s = Sampler::new(sampling);
        let mut out = Vec::new();
        let mut prev: Option<f64> = None;
        for &t in frames {
            if sampling.fps.is_none() {
                if let Some(k) = s.take_each() {
                    out.push((k, t));
                }
                continue;
            }
            for k in s.due_before(t) {
                if let Some(p) = prev {
                    out.push((k, p));
                }
            }
            prev = Some(t);
        }
        if let Some(p) = prev {
            for k in s.due_until_end(duration) {
                out.push((k, p));
            }
        }
        out
    }

    fn frames(fps: f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64 / fps).collect()
    }

    #[test]
    fn one_per_second_takes_the_frame_at_or_before_each_second() {
        // 3 s at 10 fps: samples at 0, 1, 2 s are frames 0, 10, 20 exactly.
        let got = run(Sampling::fps(1.0), &frames(10.0, 30), 3.0);
        assert_eq!(got, [(0, 0.0), (1, 1.0), (2, 2.0)]);
    }

    #[test]
    fn a_sample_time_between_frames_takes_the_earlier_frame() {
        // Frames every 0.4 s; 1 s falls between 0.8 and 1.2: frame 0.8.
        let got = run(Sampling::fps(1.0), &[0.0, 0.4, 0.8, 1.2, 1.6], 2.0);
        assert_eq!(got, [(0, 0.0), (1, 0.8)]);
    }

    #[test]
    fn fractional_rates_and_the_end_of_the_video() {
        // 0.2/s over 12 s: samples at 0, 5, 10 s; 15 s is past the end.
        let got = run(Sampling::fps(0.2), &frames(1.0, 12), 12.0);
        assert_eq!(got, [(0, 0.0), (1, 5.0), (2, 10.0)]);
        // A sample exactly at the end is not taken: 2 s at 1/s gives k = 0, 1.
        assert_eq!(run(Sampling::fps(1.0), &frames(2.0, 4), 2.0).len(), 2);
    }

    #[test]
    fn a_rate_above_the_frame_rate_repeats_frames() {
        // 1 fps video, 3 samples/s over 2 s: 6 samples, each frame three times.
        let got = run(Sampling::fps(3.0), &[0.0, 1.0], 2.0);
        let ks: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(ks, [0, 1, 2, 3, 4, 5]);
        assert_eq!(got[2].1, 0.0);
        assert_eq!(got[3].1, 1.0, "k=3 is at 1.0 s: the frame at 1.0 itself");
    }

    #[test]
    fn max_frames_caps_the_samples() {
        let got = run(
            Sampling::fps(2.0).with_max_frames(Some(3)),
            &frames(10.0, 50),
            5.0,
        );
        assert_eq!(got, [(0, 0.0), (1, 0.5), (2, 1.0)]);
    }

    #[test]
    fn every_key_frame_without_a_rate() {
        let got = run(
            Sampling::keyframes().with_max_frames(Some(2)),
            &[0.0, 2.0, 4.0],
            6.0,
        );
        assert_eq!(got, [(0, 0.0), (1, 2.0)]);
    }

    #[test]
    fn enabled_only_with_a_positive_rate_or_key_frames() {
        assert!(Sampling::fps(0.5).is_enabled());
        assert!(!Sampling::fps(0.0).is_enabled());
        assert!(Sampling::keyframes().is_enabled());
        assert!(!Sampling::default().is_enabled());
    }
}
