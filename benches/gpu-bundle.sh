#!/usr/bin/env bash
# Builds what benches/gpu-check.sh runs on a GPU machine, on this CPU machine: batch-inference
# and gpu_check in release with --features cuda (nvcc and cudart from NVIDIA's PyPI wheels,
# link stubs: see inference/cuda-env.sh), stripped, with libcudart and the script, in
# target/gpu-bundle/ (about 80 MB; target/gpu-bundle.tar.gz, about 25 MB):
#
#   target/gpu-bundle/gpu-check.sh, gpu_baselines.py (the same-run PyTorch baselines)
#   target/gpu-bundle/bin/{batch-inference,gpu_check}
#   target/gpu-bundle/lib/libcudart.so.13
#
# Copy the archive to the GPU machine and run `tar xzf gpu-bundle.tar.gz && bash
# gpu-bundle/gpu-check.sh` there. The binaries need the machine's libcuda.so.1,
# libcublas.so.13 (with libcublasLt.so.13) and libcurand.so.10; the script says which are
# missing.
# Environment: CUDA_VENV (wheels; default /tmp/dataflux-cuda-venv), CARGO_TARGET_DIR (default
# target/cuda: a target directory of its own, since the cuda feature rebuilds candle).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}
# shellcheck source=inference/cuda-env.sh
source inference/cuda-env.sh
cuda_env_setup
# The link stubs first (from cudarc's declarations), then one cargo invocation.
cuda_link_stubs release
cargo build --release --features cuda --locked -p dataflux-examples --bin batch-inference \
  -p dataflux-benches --bin gpu_check
bundle=$PWD/target/gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
for exe in batch-inference gpu_check; do
  strip -o "$bundle/bin/$exe" "$CARGO_TARGET_DIR/release/$exe"
done
cp -L "$CUDA_HOME/lib/libcudart.so.13" "$bundle/lib/"
cp benches/gpu-check.sh benches/python/gpu_baselines.py "$bundle/"
# One archive for the copy (the device tool carries at most 64 MiB; this is about 25 MB).
tar -C "$(dirname "$bundle")" -czf "$bundle.tar.gz" "$(basename "$bundle")"
du -sh "$bundle"/bin/* "$bundle"/lib/* "$bundle.tar.gz"
echo "bundle: $bundle and $bundle.tar.gz (there: tar xzf gpu-bundle.tar.gz && bash gpu-bundle/gpu-check.sh)"
