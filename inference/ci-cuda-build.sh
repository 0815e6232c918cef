#!/usr/bin/env bash
# Type-checks and builds dataflux-inference with the `cuda` feature on a machine without a GPU
# or a CUDA installation. Called from .ci/run.
#
# candle's `cuda` feature needs `nvcc` at build time (candle-kernels compiles its .cu files to
# PTX, and some to a static library with the host g++). We take nvcc, cicc (nvvm), the crt
# headers, the runtime headers and CCCL (for <nv/target>) from NVIDIA's PyPI wheels, pinned to
# CUDA 13.4 (the newest version cudarc 0.19.10 knows; 13.5's nvcc makes cudarc's build panic). No driver is needed: the library is an rlib, so nothing links
# against libcuda here. The binary batch-inference is then linked against stubs (see the end).
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

# Link the job's binary with `cuda` too. candle links the CUDA driver, cuBLAS, cuRAND and NVRTC
# by name; only the runtime (libcudart) comes with the wheels above (cuBLAS's wheel alone is
# ~0.5 GB, and the driver is in none). So the link uses stubs: one shared library per CUDA
# library, with that library's soname, exporting the functions the CUDA crates reference (read
# from their rlibs with nm). At run time the GPU machine's real libraries are loaded instead.
stubs="$CARGO_TARGET_DIR/cuda-link-stubs"
mkdir -p "$stubs"
nm -u --format=just-symbols "$CARGO_TARGET_DIR"/debug/deps/lib{cudarc,candle_core,candle_nn,candle_kernels,dataflux_inference}-*.rlib 2>/dev/null \
  | grep -E '^(cu|nvrtc)' | sort -u > "$stubs/symbols.txt"
for spec in cublasLt:libcublasLt.so.13 cublas:libcublas.so.13 curand:libcurand.so.10 nvrtc:libnvrtc.so.13 cuda:libcuda.so.1; do
  name=${spec%%:*} soname=${spec#*:}
  case $name in
    cublasLt) pattern='^cublasLt' ;;
    cublas) pattern='^cublas[^L]' ;;
    curand) pattern='^curand' ;;
    nvrtc) pattern='^nvrtc' ;;
    cuda) pattern='^cu[A-Z]' ;; # the driver API (cuInit, cuModuleLoad, …); cuda* is the runtime's
  esac
  grep -E "$pattern" "$stubs/symbols.txt" | sed 's/.*/void &(void) {}/' > "$stubs/$name.c" || true
  cc -shared -fPIC -o "$stubs/lib$name.so" "-Wl,-soname,$soname" "$stubs/$name.c"
  ln -sf "lib$name.so" "$stubs/$soname"
done
ln -sf "$CUDA_HOME/lib/libcudart.so.13" "$stubs/libcudart.so"
echo "link stubs: $(wc -l < "$stubs/symbols.txt") CUDA functions referenced"
LIBRARY_PATH="$stubs:$LIBRARY_PATH" time cargo build -p dataflux-examples --features cuda --bin batch-inference --locked
# The CUDA build runs the job on the CPU here (the stubs are never called): the sample images,
# every row written.
out=$(mktemp -d)
LD_LIBRARY_PATH="$stubs:$CUDA_HOME/lib" "$CARGO_TARGET_DIR/debug/batch-inference" --device cpu \
  --model inference/fixtures/tiny-vit --output "$out" --log-format text >/dev/null
rows=$(($(wc -l < "$out/results_$(ls "$out" | sed -n 's/^results_\(.*\)_shard_0.csv$/\1/p')_shard_0.csv") - 1))
rm -rf "$out"
[[ $rows -eq 6 ]] || { echo "the CUDA build of batch-inference wrote $rows rows, 6 expected" >&2; exit 1; }
echo "batch-inference --features cuda: linked, and ran on the CPU: $rows rows"
