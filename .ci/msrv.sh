#!/usr/bin/env bash
# The minimum supported Rust version (the workspace's rust-version), checked with the one
# toolchain CI has (no other can be fetched):
#  1. no package of the resolved dependency graph (every feature of every member on, every
#     target platform) declares a rust-version newer than ours: offenders are listed, and
#     the check fails;
#  2. clippy's incompatible_msrv lint finds no std API newer than ours in our code.
# Called from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

metadata=$(mktemp -t cargo-metadata.XXXXXX.json)
trap 'rm -f "$metadata"' EXIT
cargo metadata --format-version 1 --all-features --locked >"$metadata"

echo "== dependencies' rust-version against the workspace's"
python3 - "$metadata" Cargo.toml <<'EOF'
import json
import sys
import tomllib

metadata_path, manifest = sys.argv[1], sys.argv[2]
with open(manifest, "rb") as f:
    ours_text = tomllib.load(f)["workspace"]["package"]["rust-version"]


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


ours = version(ours_text)
with open(metadata_path) as f:
    meta = json.load(f)
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
members = set(meta["workspace_members"])
# Who pulls each package in, to say where an offender comes from.
parents = {}
for node in meta["resolve"]["nodes"]:
    for dep in node["deps"]:
        parents.setdefault(dep["pkg"], set()).add(node["id"])
names = {p["id"]: f'{p["name"]} {p["version"]}' for p in meta["packages"]}

offenders = []
for package in meta["packages"]:
    if package["id"] not in resolved or not package.get("rust_version"):
        continue
    if package["id"] in members:
        if version(package["rust_version"]) != ours:
            offenders.append((package, "a workspace member with its own rust-version"))
        continue
    if version(package["rust_version"]) > ours:
        via = sorted(names[p] for p in parents.get(package["id"], ()))
        offenders.append((package, "required by " + ", ".join(via)))

if offenders:
    print(f"rust-version is {ours_text}, but these packages of the resolved graph need more:")
    for package, why in sorted(offenders, key=lambda o: o[0]["name"]):
        print(f'  {package["name"]} {package["version"]}: rust-version {package["rust_version"]} ({why})')
    print("Raise workspace.package.rust-version in Cargo.toml, or pin older versions in Cargo.lock.")
    sys.exit(1)
print(f"{len(resolved)} packages resolved, none needs more than Rust {ours_text}")
EOF

echo "== cargo clippy -D clippy::incompatible_msrv (std APIs newer than rust-version)"
# shellcheck source=build-tools.sh
source "$(dirname "$0")/build-tools.sh"
ensure_build_tools
cargo clippy --workspace --all-targets --features dataflux-distributed/launcher --locked -- \
  -D warnings -D clippy::incompatible_msrv
