//! The options of a job's spec, as its errors name them.
//!
//! The library names an option by its field (`JobSpec::chunk_size`, `ModelSpec::task`); a
//! program with flags maps each [`Setting`] to its own flag, and [`Setting::rename_in`] turns
//! every name in an error's message into that flag, so that a user of `batch-inference` reads
//! `--chunk-size: must be at least 1` where a user of the library reads
//! `JobSpec::chunk_size: must be at least 1`.

/// An option of [`crate::JobSpec`] (or of the [`crate::ModelSpec`] and video
/// [`Sampling`](dataflux_inference::video::Sampling) inside it) that an error can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Setting {
    /// `JobSpec::input`.
    Input,
    /// `JobSpec::output`.
    Output,
    /// `JobSpec::run_id`.
    RunId,
    /// `JobSpec::chunk_size`.
    ChunkSize,
    /// `JobSpec::chunk_bytes`.
    ChunkBytes,
    /// `JobSpec::batch_size`.
    BatchSize,
    /// `JobSpec::concurrency`.
    Concurrency,
    /// `JobSpec::prefetch_bytes`.
    Prefetch,
    /// `JobSpec::max_object_bytes`.
    MaxObject,
    /// `JobSpec::lease`.
    Lease,
    /// `JobSpec::decode_threads`.
    DecodeThreads,
    /// `ModelSpec::checkpoint`: where the model comes from.
    Model,
    /// The node's cache of a checkpoint in a bucket (`CheckpointSource::Bucket`'s `cache`).
    ModelCache,
    /// `ModelSpec::task`.
    Task,
    /// `ModelSpec::top_k`.
    TopK,
    /// `ModelSpec::output_name`.
    OutputName,
    /// `ModelSpec::labels`.
    Labels,
    /// The video sampling's rate (`Sampling::fps`).
    VideoFps,
    /// The video sampling's cap (`Sampling::max_frames`).
    VideoMaxFrames,
    /// The video sampling's key frames (`Sampling::keyframes`).
    VideoKeyframes,
}

impl Setting {
    /// Every setting, for a program that maps them all.
    pub const ALL: [Setting; 20] = [
        Setting::Input,
        Setting::Output,
        Setting::RunId,
        Setting::ChunkSize,
        Setting::ChunkBytes,
        Setting::BatchSize,
        Setting::Concurrency,
        Setting::Prefetch,
        Setting::MaxObject,
        Setting::Lease,
        Setting::DecodeThreads,
        Setting::Model,
        Setting::ModelCache,
        Setting::Task,
        Setting::TopK,
        Setting::OutputName,
        Setting::Labels,
        Setting::VideoFps,
        Setting::VideoMaxFrames,
        Setting::VideoKeyframes,
    ];

    /// The option's name in the library, as messages print it.
    ///
    /// ```
    /// use dataflux_pipeline::Setting;
    /// assert_eq!(Setting::ChunkSize.name(), "JobSpec::chunk_size");
    /// assert_eq!(Setting::Task.to_string(), "ModelSpec::task");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Setting::Input => "JobSpec::input",
            Setting::Output => "JobSpec::output",
            Setting::RunId => "JobSpec::run_id",
            Setting::ChunkSize => "JobSpec::chunk_size",
            Setting::ChunkBytes => "JobSpec::chunk_bytes",
            Setting::BatchSize => "JobSpec::batch_size",
            Setting::Concurrency => "JobSpec::concurrency",
            Setting::Prefetch => "JobSpec::prefetch_bytes",
            Setting::MaxObject => "JobSpec::max_object_bytes",
            Setting::Lease => "JobSpec::lease",
            Setting::DecodeThreads => "JobSpec::decode_threads",
            Setting::Model => "ModelSpec::checkpoint",
            Setting::ModelCache => "CheckpointSource::Bucket::cache",
            Setting::Task => "ModelSpec::task",
            Setting::TopK => "ModelSpec::top_k",
            Setting::OutputName => "ModelSpec::output_name",
            Setting::Labels => "ModelSpec::labels",
            Setting::VideoFps => "Sampling::fps",
            Setting::VideoMaxFrames => "Sampling::max_frames",
            Setting::VideoKeyframes => "Sampling::keyframes",
        }
    }

    /// `message` with every setting's [`name`](Self::name) replaced by what `rename` calls
    /// it (a binary's flag). Names are replaced longest first, so none is cut by another.
    ///
    /// ```
    /// use dataflux_pipeline::Setting;
    /// let flag = |s: Setting| match s {
    ///     Setting::VideoFps => "--video-fps",
    ///     Setting::VideoKeyframes => "--video-keyframes",
    ///     _ => "--other",
    /// };
    /// assert_eq!(
    ///     Setting::rename_in("Sampling::fps: give a rate, or set Sampling::keyframes", flag),
    ///     "--video-fps: give a rate, or set --video-keyframes",
    /// );
    /// ```
    pub fn rename_in(message: &str, rename: impl Fn(Setting) -> &'static str) -> String {
        let mut all = Setting::ALL;
        all.sort_by_key(|s| std::cmp::Reverse(s.name().len()));
        all.iter().fold(message.to_string(), |text, &s| {
            if text.contains(s.name()) {
                text.replace(s.name(), rename(s))
            } else {
                text
            }
        })
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_none_is_cut_by_another() {
        let names: std::collections::BTreeSet<_> = Setting::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Setting::ALL.len());
        // Every name renamed alone gives exactly its own replacement.
        for s in Setting::ALL {
            let renamed =
                Setting::rename_in(&format!("<{s}>"), |t| if t == s { "FLAG" } else { "WRONG" });
            assert_eq!(renamed, "<FLAG>", "{s}");
        }
    }
}
