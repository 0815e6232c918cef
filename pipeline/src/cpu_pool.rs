//! The CPU pool the job decodes on: `dataflux-inference`'s, the workspace's one
//! ([`dataflux_inference::CpuPool`]), re-exported under its old path.

pub use dataflux_inference::cpu_pool::{panic_message, CpuPool};
