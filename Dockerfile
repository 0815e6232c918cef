# syntax=docker/dockerfile:1.7
# Image for the GKE batch job (k8s/batch-inference.yaml): /usr/local/bin/batch-inference,
# /usr/local/bin/dataflux-launch, /usr/local/bin/upload-images and /usr/local/bin/dataflux (list, fetch, gc, status), built with CUDA and
# NCCL for H100/H200 (compute capability 9.0), ONNX Runtime with its CUDA provider (PyPI's
# onnxruntime-gpu with NVIDIA's cuDNN wheel, in /opt/onnxruntime; ORT_DYLIB_PATH points at it)
# for models exported to ONNX, videos (feature video: Ubuntu 24.04's FFmpeg 6.1 libraries), and
# the sample images in /usr/local/share/dataflux/samples.
#
#   docker build -t "$IMAGE" . && docker push "$IMAGE"
#   # or without a local Docker engine:
#   gcloud builds submit --tag "$IMAGE" --machine-type=e2-highcpu-32 --timeout=2h .
#
# NOTE: not built in this repository's CI (its machines have no Docker engine and no GPU);
# k8s/validate.sh only checks that this file installs what the Job runs, as the Job's user.
# Kept deliberately plain so that it is easy to review.

ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=ubuntu24.04

# ---------------------------------------------------------------------------- builder
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU_VERSION} AS builder
ARG RUST_VERSION=1.95.0
# CUDA_COMPUTE_CAP: candle's CUDA kernels are compiled for sm_90 only (H100 / H200).
# nasm gives libjpeg-turbo (feature turbojpeg, the binaries' default: PIL-exact JPEG pixels, built
# with the cc crate and linked statically) its SIMD code; no cmake is needed. FFmpeg's -dev
# packages and libclang: the video feature (ffmpeg-sys-next's bindings, linked dynamically).
ENV DEBIAN_FRONTEND=noninteractive \
    RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH} \
    CUDA_COMPUTE_CAP=90 \
    CARGO_TERM_COLOR=never
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config nasm \
    libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libclang-dev \
 && rm -rf /var/lib/apt/lists/* \
 && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
 && rustc --version && nvcc --version

WORKDIR /src
COPY . .
# The cargo registry and target/ are cache mounts, so the binaries are copied out to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dataflux-examples --features cuda,nccl,turbojpeg,onnx,video \
 && cargo build --release --locked -p dataflux-distributed --features nccl,launcher --bin dataflux-launch \
 && mkdir -p /out \
 && cp target/release/batch-inference target/release/upload-images target/release/dataflux target/release/dataflux-launch /out/

# ---------------------------------------------------------------------------- runtime
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU_VERSION}
ENV DEBIAN_FRONTEND=noninteractive
# libnccl2 is the fallback NCCL; on GKE A3 Ultra the Job puts the gIB build of NCCL from
# /usr/local/gib/lib64 first on LD_LIBRARY_PATH. ca-certificates: HTTPS to GCS and the HF hub.
# libav*: FFmpeg 6.1's libraries, which batch-inference's video feature links.
# ONNX Runtime: onnxruntime-gpu 1.31.1 is built for CUDA 13 and cuDNN 9; the CUDA runtime
# libraries come from this base image, cuDNN from NVIDIA's wheel (batch-inference preloads
# site-packages/nvidia/*/lib of the environment VIRTUAL_ENV names before registering the CUDA
# provider, and a provider that cannot register is an error, never a run on the CPU).
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libnccl2 python3 python3-venv \
    libavformat60 libavcodec60 libswscale7 libavutil58 \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/onnxruntime \
 && /opt/onnxruntime/bin/pip install --no-cache-dir "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" nvidia-cudnn-cu13 \
 && ln -s "$(find /opt/onnxruntime -name "libonnxruntime.so.${ONNXRUNTIME_GPU_VERSION}" | head -n 1)" /opt/onnxruntime/libonnxruntime.so \
 && groupadd --gid 10001 dataflux \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin dataflux \
 && mkdir -p /var/cache/dataflux \
 && chown 10001:10001 /var/cache/dataflux
COPY --from=builder /out/batch-inference /out/dataflux /out/dataflux-launch /out/upload-images /usr/local/bin/
# The sample images, batch-inference's default --input (found at ../share/dataflux/samples
# from the binary).
COPY examples/samples /usr/local/share/dataflux/samples
ENV HF_HOME=/var/cache/dataflux/huggingface \
    RUST_LOG=info \
    ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so \
    VIRTUAL_ENV=/opt/onnxruntime
# Numeric, so that the pod's runAsNonRoot can verify it (k8s/batch-inference.yaml).
USER 10001:10001
WORKDIR /home/dataflux
CMD ["batch-inference", "--help"]
