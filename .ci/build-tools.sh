#!/usr/bin/env bash
# Makes sure cmake and nasm are on PATH: the binaries (dataflux-examples, default feature
# turbojpeg) build libjpeg-turbo from source, so that JPEG pixels equal PIL's. Sourced by
# .ci/test. When either is missing and we are root with apt-get (CI), they are installed from
# Debian's packages, keeping the .deb files in $DATAFLUX_CI_CACHE/apt for the next run.
# Anywhere else it says what to install and fails.
ensure_build_tools() {
  local missing=() tool
  for tool in cmake nasm; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  (( ${#missing[@]} )) || return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "the binaries build libjpeg-turbo and need ${missing[*]}: install them (Debian/Ubuntu: apt-get install ${missing[*]}), or build pure Rust with --no-default-features" >&2
    return 1
  fi
  local archives="${DATAFLUX_CI_CACHE:-/var/cache/dataflux-ci}/apt"
  mkdir -p "$archives/partial"
  echo "== installing ${missing[*]} (Debian packages, cached in $archives)"
  apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get -o Dir::Cache::Archives="$archives" install -y -qq --no-install-recommends "${missing[@]}"; }
}
