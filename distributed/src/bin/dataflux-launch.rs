//! `dataflux-launch --nproc-per-node N [--nnodes M] [--node-rank R] -- <cmd> [args...]`:
//! one process per local GPU with torchrun's variables set. See
//! [`dataflux_distributed::launch`].

use clap::Parser;
use dataflux_distributed::launch::{self, LaunchArgs};
use dataflux_distributed::logs;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = LaunchArgs::parse();
    logs::init("info", args.log_format);
    let code = match launch::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dataflux-launch: {e}");
            1
        }
    };
    std::process::exit(code);
}
