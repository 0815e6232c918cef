//! `upload-images`: upload a local folder of images to a bucket prefix, in parallel, with
//! retries, skipping objects already present with the same size.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dataflux_examples::logging::LogFormat;
use dataflux_examples::upload::{upload, UploadOptions};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Upload a local folder of images to gs://, s3://, file:// or a local path."
)]
struct Args {
    /// Log lines: text, json (Cloud Logging), or auto (text on a terminal, JSON otherwise).
    #[arg(long, env = "DATAFLUX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// The folder to upload.
    source: PathBuf,
    /// Destination URL with prefix, e.g. gs://my-bucket/coco/val2017.
    dest: String,
    /// Concurrent uploads.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Name objects like the GKE tutorial: COCO numbers without leading zeros.
    #[arg(long)]
    strip_leading_zeros: bool,
    /// Upload under a new random folder (the tutorial's `<uuid>/`).
    #[arg(long)]
    unique_folder: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    dataflux_examples::logging::init("info", args.log_format);
    let options = UploadOptions {
        concurrency: args.concurrency,
        strip_leading_zeros: args.strip_leading_zeros,
        unique_folder: args.unique_folder,
    };
    match upload(&args.source, &args.dest, &options).await {
        Ok(r) => {
            println!(
                "uploaded {} files ({} bytes), skipped {} already present",
                r.uploaded, r.bytes, r.skipped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
