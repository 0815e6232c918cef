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
