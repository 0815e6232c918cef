//! The library half of the dataflux-rs binaries: everything a test wants to reach.
//!
//! - [`pipeline`]: the batch inference job (list → shard → fetch → decode → batch → infer → write).
//! - [`output`]: result rows, committed parts, final files and summaries.
//! - [`progress`]: progress bar or log lines.
//! - [`upload`]: the image uploader.
//! - [`logging`]: log set-up for the binaries.

pub mod logging;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod upload;
