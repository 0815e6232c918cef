//! Videos as sequences of sampled RGB frames.
//!
//! [`sniff`] recognises a video by its first bytes and [`sample`] decides which frames are
//! samples; both are plain Rust and always built, so that a build without video support can
//! still say that an object is a video. `decode` (feature `video`) demuxes and decodes with
//! FFmpeg's libraries through any [`std::io::Read`] + [`std::io::Seek`] source (a store's
//! ranged reads, or bytes in memory), and turns each sample into RGB with the stream's own
//! colour matrix and range.

#[cfg(feature = "video")]
pub mod decode;
pub mod sample;
pub mod sniff;

pub use sample::{Sampler, Sampling};
pub use sniff::{is_video, SNIFF_BYTES};

#[cfg(feature = "video")]
pub use decode::{decode_video, VideoError, VideoFrame, VideoOptions, VideoSummary};

/// Whether this build decodes videos (feature `video`).
pub const SUPPORTED: bool = cfg!(feature = "video");
