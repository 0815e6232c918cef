#!/usr/bin/env bash
# Type-checks and builds dataflux-inference with the `cuda` feature on a machine without a GPU
# or a CUDA installation. Called from .ci/run.
#
# candle's `cuda` feature needs `nvcc` at build time (candle-kernels compiles its .cu files to
# PTX, and some to a static library with the host g++). We take nvcc, cicc (nvvm), the crt
# headers, the runtime headers and CCCL (for <nv/target>) from NVIDIA's PyPI wheels, pinned to
# CUDA 13.4 (the newest version cudarc 0.19.10 knows; 13.5's nvcc makes cudarc's build panic). No driver is needed: the library is an rlib, so nothing links
# against libcuda here. Binaries and tests built with `cuda` do need the CUDA libraries to link.
#
# Environment: CUDA_VENV (default /tmp/dataflux-cuda-venv) caches the wheels between runs.
set -euo pipefail

CUDA_VERSION_PIN=13.4.92
CCCL_VERSION_PIN=13.3.4.3.1
CUDA_VENV=${CUDA_VENV:-/tmp/dataflux-cuda-venv}
PYTHON=${PYTHON:-python3}

if [[ ! -x "$CUDA_VENV/bin/pip" ]]; then
  "$PYTHON" -m venv "$CUDA_VENV"
fi
"$CUDA_VENV/bin/pip" install --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==$CUDA_VERSION_PIN" \
  "nvidia-nvvm==$CUDA_VERSION_PIN" \
  "nvidia-cuda-crt==$CUDA_VERSION_PIN" \
  "nvidia-cuda-runtime==$CUDA_VERSION_PIN" \
  "nvidia-cuda-cccl==$CCCL_VERSION_PIN"

CUDA_HOME=$("$CUDA_VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
export CUDA_HOME CUDA_PATH="$CUDA_HOME" CUDA_ROOT="$CUDA_HOME" CUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME"
export PATH="$CUDA_HOME/bin:$PATH"
export LIBRARY_PATH="$CUDA_HOME/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CPATH="$CUDA_HOME/include${CPATH:+:$CPATH}"
# No GPU to ask: build for H100/H200 (sm_90). cudarc reads the version from here too.
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13040

nvcc --version | tail -n 2
cd "$(dirname "$0")/.."
time cargo build -p dataflux-inference --features cuda --locked
