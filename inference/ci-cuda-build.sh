#!/usr/bin/env bash
# Builds dataflux-inference with the `cuda` feature on a machine without a GPU or a CUDA
# installation, links the binaries a GPU machine runs (batch-inference, and gpu_check for
# benches/gpu-check.sh) against link stubs (see inference/cuda-env.sh), runs the sample job with
# the CUDA build on the CPU, and runs benches/gpu-check.sh up to the point where it needs a GPU.
# Called from .ci/run.
#
# Environment: CUDA_VENV (default /tmp/dataflux-cuda-venv) caches the wheels between runs;
# CARGO_TARGET_DIR must be set.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=inference/cuda-env.sh
source inference/cuda-env.sh
cuda_env_setup

# The link stubs first (from every function cudarc declares; no build needed), then one cargo
# invocation builds the CUDA library and links both binaries against them.
cuda_link_stubs debug
time cargo build --features cuda --locked -p dataflux-examples --bin batch-inference -p dataflux-benches --bin gpu_check

# The CUDA build runs the job on the CPU here (the stubs are never called): the sample images,
# every row written.
out=$(mktemp -d)
LD_LIBRARY_PATH="$CUDA_STUBS:$CUDA_HOME/lib" "$CARGO_TARGET_DIR/debug/batch-inference" --device cpu \
  --model inference/fixtures/tiny-vit --output "$out" --log-format text >/dev/null
rows=$(($(wc -l < "$out/results_$(ls "$out" | sed -n 's/^results_\(.*\)_shard_0.csv$/\1/p')_shard_0.csv") - 1))
rm -rf "$out"
[[ $rows -eq 6 ]] || { echo "the CUDA build of batch-inference wrote $rows rows, 6 expected" >&2; exit 1; }
echo "batch-inference --features cuda: linked, and ran on the CPU: $rows rows"

# The GPU check, as a GPU machine would run it, but small (a tiny model, 100 images): it must
# prepare everything, then say that no GPU is here and stop.
results=$(mktemp -d)
log=$(GPU_CHECK_LIBS="$CUDA_STUBS:$CUDA_HOME/lib" GPU_CHECK_SHAPE=tiny GPU_CHECK_IMAGES=100 GPU_CHECK_AGREE=8 \
  GPU_CHECK_OUT="$results" bash benches/gpu-check.sh "$CARGO_TARGET_DIR/debug" 2>&1) || { echo "$log"; exit 1; }
echo "$log" | sed 's/^/  gpu-check: /'
grep -q '^NO GPU' <<<"$log" || { echo "gpu-check.sh did not report the missing GPU" >&2; exit 1; }
[[ -s "$results/reference.safetensors" && -s "$results/gpu-check.jsonl" ]] \
  || { echo "gpu-check.sh did not prepare the CPU reference" >&2; exit 1; }
rm -rf "$results"
