#!/usr/bin/env bash
# Lints and tests the pure-Rust build: the libraries without the `turbojpeg` feature (their
# default; JPEGs decoded by zune-jpeg) and the binaries with --no-default-features. The
# workspace build of .ci/test has libjpeg-turbo (the binaries' default, unified into every
# crate), so this is where the zune-jpeg path runs. Called from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# -p selects the packages whose features are unified: none of these asks for turbojpeg.
cargo clippy -p dataflux-inference -p dataflux-pipeline -p dataflux-examples --no-default-features \
  --all-targets --locked -- -D warnings
cargo test -p dataflux-inference -p dataflux-pipeline -p dataflux-examples --no-default-features --locked \
  --test preprocess --test parity --test clip --test batch_inference_cli
