# Sourced by inference/ci-cuda-build.sh and benches/gpu-bundle.sh: the environment for building
# with `--features cuda` on a machine without a GPU or a CUDA installation.
#
# candle's `cuda` feature needs `nvcc` at build time (candle-kernels compiles its .cu files to
# PTX, and some to a static library with the host g++). We take nvcc, cicc (nvvm), the crt
# headers, the runtime headers and CCCL (for <nv/target>) from NVIDIA's PyPI wheels, pinned to
# CUDA 13.4 (the newest version cudarc 0.19.10 knows; 13.5's nvcc makes cudarc's build panic).
#
# Binaries are linked against stubs (cuda_link_stubs): candle links the CUDA driver, cuBLAS,
# cuRAND and NVRTC by name, and only the runtime (libcudart) comes with the wheels above
# (cuBLAS's wheel alone is ~0.5 GB, and the driver is in none). Each stub is a shared library
# with the real library's soname exporting the functions the CUDA crates reference (read from
# their rlibs with nm), so the binary's NEEDED entries are the real names and a GPU machine's
# libraries are loaded at run time. The stubs are for linking (and for running on the CPU
# here) only: a stub called does nothing.
#
# Environment: CUDA_VENV (default /tmp/dataflux-cuda-venv) caches the wheels between runs;
# CARGO_TARGET_DIR must be set.

CUDA_VERSION_PIN=13.4.92
CCCL_VERSION_PIN=13.3.4.3.1

cuda_env_setup() {
  CUDA_VENV=${CUDA_VENV:-/tmp/dataflux-cuda-venv}
  local python=${PYTHON:-python3}
  if [[ ! -x "$CUDA_VENV/bin/pip" ]]; then
    "$python" -m venv "$CUDA_VENV"
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
  # candle-kernels' build (cudaforge) compiles its 26 .cu files on half the cores by default: one
  # on a 2-core machine, 15 minutes of a cold CI run. Every core, unless told otherwise.
  export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
  nvcc --version | tail -n 2
}

# cuda_link_stubs PROFILE: builds the stubs from the rlibs in $CARGO_TARGET_DIR/PROFILE/deps
# (build dataflux-inference with `cuda` in that profile first) into CUDA_STUBS, puts them on
# LIBRARY_PATH for the link, and links libcudart.so to the wheel's.
cuda_link_stubs() {
  local profile=$1
  CUDA_STUBS="$CARGO_TARGET_DIR/cuda-link-stubs"
  mkdir -p "$CUDA_STUBS"
  # The functions referenced: those nm finds in the rlibs when they are built already (a
  # release build with LTO keeps bitcode there, which this nm cannot read), and every function
  # cudarc declares for the libraries (a superset, enough before any build: a stub exporting
  # more than is referenced changes nothing). cudarc's source must be in the registry (cargo
  # fetch, or any earlier build of the workspace).
  local cudarc_version cudarc_src
  cudarc_version=$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
  cudarc_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version" 2>/dev/null | head -n 1)
  if [[ ! -d $cudarc_src/src ]]; then
    # Not unpacked yet: fetch the crate and read it from the archive.
    cargo fetch --locked >/dev/null
    local archive
    archive=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"cudarc-$cudarc_version.crate" 2>/dev/null | head -n 1)
    if [[ -f $archive ]]; then
      tar xzf "$archive" -C "$CUDA_STUBS"
      cudarc_src="$CUDA_STUBS/cudarc-$cudarc_version"
    fi
  fi
  [[ -d $cudarc_src/src ]] || { echo "cudarc $cudarc_version's source is not in the cargo registry" >&2; return 1; }
  {
    nm -u --format=just-symbols "$CARGO_TARGET_DIR/$profile"/deps/lib{cudarc,candle_core,candle_nn,candle_kernels,dataflux_inference}-*.rlib 2>/dev/null || true
    grep -rhoE '^\s*fn (cu|nvrtc)[A-Za-z0-9_]*\(' "$cudarc_src/src" | sed -E 's/.*fn ([A-Za-z0-9_]+)\(/\1/'
  } | grep -E '^(cu|nvrtc)' | sort -u > "$CUDA_STUBS/symbols.txt"
  local spec name soname pattern
  for spec in cublasLt:libcublasLt.so.13 cublas:libcublas.so.13 curand:libcurand.so.10 nvrtc:libnvrtc.so.13 cuda:libcuda.so.1; do
    name=${spec%%:*} soname=${spec#*:}
    case $name in
      cublasLt) pattern='^cublasLt' ;;
      cublas) pattern='^cublas[^L]' ;;
      curand) pattern='^curand' ;;
      nvrtc) pattern='^nvrtc' ;;
      cuda) pattern='^cu[A-Z]' ;; # the driver API (cuInit, cuModuleLoad, …); cuda* is the runtime's
    esac
    grep -E "$pattern" "$CUDA_STUBS/symbols.txt" | sed 's/.*/void &(void) {}/' > "$CUDA_STUBS/$name.c" || true
    cc -shared -fPIC -o "$CUDA_STUBS/lib$name.so" "-Wl,-soname,$soname" "$CUDA_STUBS/$name.c"
    ln -sf "lib$name.so" "$CUDA_STUBS/$soname"
  done
  ln -sf "$CUDA_HOME/lib/libcudart.so.13" "$CUDA_STUBS/libcudart.so"
  export CUDA_STUBS LIBRARY_PATH="$CUDA_STUBS:$LIBRARY_PATH"
  echo "link stubs: $(wc -l < "$CUDA_STUBS/symbols.txt") CUDA functions (referenced, or declared by cudarc)"
}
