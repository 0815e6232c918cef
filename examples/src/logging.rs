//! Log set-up shared by the binaries: `dataflux_distributed::logs` (text or JSON lines, with
//! the process's `rank` and `run_id` on every line).

pub use dataflux_distributed::logs::{set_field, LogFormat};

/// Sends `tracing` events to stderr in `format`, filtered by `RUST_LOG`, else at
/// `default_level`.
pub fn init(default_level: &str, format: LogFormat) {
    // ONNX Runtime (through `ort`) logs its every graph rewrite at info: warnings only, unless
    // RUST_LOG says otherwise.
    dataflux_distributed::logs::init(&format!("{default_level},ort=warn"), format);
}
