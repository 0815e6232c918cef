//! `dataflux-launch --nproc-per-node N [--nnodes M] [--node-rank R] -- <cmd> [args...]`:
//! one process per local GPU with torchrun's variables set. See
//! [`dataflux_distributed::launch`].

use clap::Parser;
use dataflux_distributed::launch::{self, LaunchArgs};
use tracing_subscriber::EnvFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = LaunchArgs::parse();
    let code = match launch::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dataflux-launch: {e}");
            1
        }
    };
    std::process::exit(code);
}
