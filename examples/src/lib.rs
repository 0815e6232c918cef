//! The library half of the dataflux-rs binaries: what they share at their edge. The batch
//! job itself is the `dataflux-pipeline` crate.
//!
//! - [`cli`]: flags into typed values (configuration errors exit 2), exit codes, signals.
//! - [`upload`]: the image uploader.
//! - [`logging`]: log set-up for the binaries.
//! - [`progress`]: the job's live display and progress lines.

pub mod cli;
pub mod logging;
pub mod progress;
pub mod upload;
