//! Log set-up shared by the binaries: `tracing` to stderr, filtered by `RUST_LOG`.

/// Sends `tracing` events to stderr, filtered by `RUST_LOG`, else at `default_level`.
pub fn init(default_level: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
}
