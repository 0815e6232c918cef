#!/usr/bin/env bash
# The minimum supported Rust versions (each member's rust-version), checked with the one
# toolchain CI has (no other can be fetched):
#  1. no package of the resolved dependency graph (every feature of every member on, every
#     target platform) declares a rust-version newer than that of a member that builds it
#     (the workspace's, or a lower one a member declares: dataflux and dataflux-distributed
#     do not build hf-hub): offenders are listed, and the check fails;
#  2. clippy's incompatible_msrv lint finds no std API newer than each member's in our code.
# Called from .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

metadata=$(mktemp -t cargo-metadata.XXXXXX.json)
trap 'rm -f "$metadata"' EXIT
cargo metadata --format-version 1 --all-features --locked >"$metadata"

echo "== dependencies' rust-version against each member's"
python3 - "$metadata" Cargo.toml <<'EOF'
import json
import sys
import tomllib

metadata_path, manifest = sys.argv[1], sys.argv[2]
with open(manifest, "rb") as f:
    workspace = tomllib.load(f)["workspace"]["package"]["rust-version"]


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


with open(metadata_path) as f:
    meta = json.load(f)
nodes = {node["id"]: node for node in meta["resolve"]["nodes"]}
packages = {p["id"]: p for p in meta["packages"]}
# Who pulls each package in, to say where an offender comes from.
parents = {}
for node in nodes.values():
    for dep in node["deps"]:
        parents.setdefault(dep["pkg"], set()).add(node["id"])


def name(pid):
    return f'{packages[pid]["name"]} {packages[pid]["version"]}'


def closure(member):
    """What building `member` compiles: its dependencies of every kind (its tests too), and
    theirs except dev-dependencies."""
    seen, stack = set(), [(member, True)]
    while stack:
        pid, root = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if root or kinds & {None, "build"}:
                stack.append((dep["pkg"], False))
    return seen - {member}


# Each member against its own rust-version: the workspace's (rust-version.workspace = true)
# or one it declares.
failed = False
for member in sorted(meta["workspace_members"], key=name):
    ours_text = packages[member].get("rust_version") or workspace
    ours = version(ours_text)
    offenders = sorted(
        (
            pid
            for pid in closure(member)
            if packages[pid].get("rust_version")
            and version(packages[pid]["rust_version"]) > ours
        ),
        key=name,
    )
    if not offenders:
        print(f"{name(member)}: rust-version {ours_text}, no dependency needs more")
        continue
    failed = True
    print(f"{name(member)}: rust-version {ours_text}, but these dependencies need more:")
    for pid in offenders:
        via = ", ".join(sorted(name(p) for p in parents.get(pid, ())))
        print(f'  {name(pid)}: rust-version {packages[pid]["rust_version"]} (required by {via})')
if failed:
    print("Raise the rust-version (Cargo.toml), or pin older versions in Cargo.lock.")
    sys.exit(1)
EOF

echo "== cargo clippy -D clippy::incompatible_msrv (std APIs newer than rust-version)"
# shellcheck source=build-tools.sh
source "$(dirname "$0")/build-tools.sh"
ensure_build_tools
cargo clippy --workspace --all-targets --features dataflux-distributed/launcher --locked -- \
  -D warnings -D clippy::incompatible_msrv
