#!/usr/bin/env bash
# Optional build tools. The binaries (dataflux-examples, default feature turbojpeg) build
# libjpeg-turbo's decoder with the `cc` crate: a C compiler is all they need, no cmake. With
# `nasm` on PATH that build includes libjpeg-turbo's SIMD code (same pixels, faster decoding),
# so CI installs it when it can: as root with apt-get, from Debian's package, keeping the .deb
# in $DATAFLUX_CI_CACHE/apt for the next run. Anywhere else a missing nasm is only a note.
# Sourced by .ci/test and .ci/msrv.sh.
ensure_build_tools() {
  command -v nasm >/dev/null 2>&1 && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: nasm is not installed: libjpeg-turbo is built without its SIMD code (same pixels, slower JPEG decoding)" >&2
    return 0
  fi
  local archives="${DATAFLUX_CI_CACHE:-/var/cache/dataflux-ci}/apt"
  mkdir -p "$archives/partial"
  echo "== installing nasm (Debian package, cached in $archives)"
  apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends nasm >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends nasm; } \
    || echo "note: nasm could not be installed: libjpeg-turbo is built without SIMD" >&2
}

# FFmpeg's libraries for the `video` feature, whose tests the test command runs: Debian's
# -dev packages (libavformat, libavcodec, libswscale, libavutil), found by pkg-config, and
# libclang for ffmpeg-sys-next's bindgen. Installed as root with apt-get (the .debs cached in
# $DATAFLUX_CI_CACHE/apt); anywhere else a missing one stops the tests with the command to run,
# unless DATAFLUX_NO_VIDEO=1 asks for a run without the video feature (said loudly).
FFMPEG_DEV_PACKAGES="libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libclang-dev pkg-config"
have_ffmpeg_dev() {
  pkg-config --exists libavformat libavcodec libswscale libavutil 2>/dev/null \
    && { ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' || [ -n "${LIBCLANG_PATH:-}" ]; }
}
ensure_ffmpeg_dev() {
  if [ "${DATAFLUX_NO_VIDEO:-}" = 1 ]; then
    echo "note: DATAFLUX_NO_VIDEO=1: building and testing WITHOUT the video feature" >&2
    return 0
  fi
  have_ffmpeg_dev && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "FFmpeg's -dev packages are needed for the video tests: sudo apt-get install $FFMPEG_DEV_PACKAGES" >&2
    echo "(or DATAFLUX_NO_VIDEO=1 to test without the video feature)" >&2
    return 1
  fi
  local archives="${DATAFLUX_CI_CACHE:-/var/cache/dataflux-ci}/apt"
  mkdir -p "$archives/partial"
  echo "== installing FFmpeg's -dev packages and libclang (Debian, cached in $archives)"
  # shellcheck disable=SC2086 # a list of package names
  DEBIAN_FRONTEND=noninteractive apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends $FFMPEG_DEV_PACKAGES >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends $FFMPEG_DEV_PACKAGES >/dev/null; }
  have_ffmpeg_dev || { echo "FFmpeg's -dev packages could not be installed" >&2; return 1; }
}
# The cargo features the test command adds: the video feature where FFmpeg is there.
video_features() {
  if [ "${DATAFLUX_NO_VIDEO:-}" = 1 ]; then echo ""; else echo ",dataflux-examples/video"; fi
}
