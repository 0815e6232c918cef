#!/usr/bin/env bash
# Lints and tests dataflux-inference with the `turbojpeg` feature (fast mode's scaled JPEG
# decoding through libjpeg-turbo, built from the turbojpeg-sys crate's bundled source). Called
# from .ci/run.
#
# The build needs cmake, and nasm for libjpeg-turbo's SIMD code. When either is missing they
# are installed from Debian's packages (CI runs as root), keeping the downloaded .deb files in
# $DATAFLUX_CI_CACHE/apt so that a rerun installs without downloading.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in cmake nasm; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "the turbojpeg feature needs ${missing[*]}: install them (Debian/Ubuntu: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  archives="${DATAFLUX_CI_CACHE:-/var/cache/dataflux-ci}/apt"
  mkdir -p "$archives/partial"
  echo "== installing ${missing[*]} (Debian packages, cached in $archives)"
  apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends "${missing[@]}"; }
fi
cmake --version | head -n 1
nasm -v

# The whole workspace is selected, as in .ci/test, so that every dependency keeps the features
# it was built with there and only the crates that use dataflux-inference are rebuilt; only the
# preprocessing and parity tests run again.
cargo clippy --workspace --all-targets --features dataflux-inference/turbojpeg --locked -- -D warnings
cargo test --workspace --features dataflux-inference/turbojpeg --locked --test preprocess --test parity --test clip --test batch_inference_cli
