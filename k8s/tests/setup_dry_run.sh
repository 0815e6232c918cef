#!/usr/bin/env bash
# Runs k8s/setup/setup.sh and cleanup.sh against stand-ins for gcloud and kubectl
# (k8s/tests/stubs/) and checks the calls they make: the tutorial's flags on a fresh
# project, and no create call at all when everything already exists (re-runnable).
#
#   bash k8s/tests/setup_dry_run.sh
set -euo pipefail
TESTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SETUP_DIR="$(cd "${TESTS_DIR}/../setup" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export PATH="${TESTS_DIR}/stubs:${PATH}"
export DATAFLUX_ENV="${SETUP_DIR}/.env"
export HF_TOKEN=""
rc=0

expect() { # expect LOG REGEX WHAT
  if ! grep -qE -- "$2" "$1"; then
    echo "missing: $3 (no call matching /$2/)"
    rc=1
  fi
}

# 1. fresh project: everything is created
export STUB_LOG="${work}/fresh.log" STUB_EXISTS=0
bash "${SETUP_DIR}/setup.sh" >"${work}/fresh.out" 2>&1 || { cat "${work}/fresh.out"; exit 1; }
log="${STUB_LOG}"
expect "${log}" 'networks create [a-z0-9-]+-gvnic-net --subnet-mode=custom' "gVNIC network"
expect "${log}" 'networks create [a-z0-9-]+-rdma-net --network-profile=[a-z0-9-]+-vpc-roce' "RoCE network (vpc-roce profile)"
[[ "$(grep -cE 'subnets create [a-z0-9-]+-rdma-sub-[0-7] ' "${log}")" -eq 8 ]] || { echo "missing: 8 RDMA subnets"; rc=1; }
expect "${log}" 'clusters create .*--workload-pool=.*--enable-multi-networking.*--addons=GcsFuseCsiDriver' "cluster flags"
expect "${log}" 'node-pools create .*--enable-queued-provisioning --flex-start' "DWS node pool"
expect "${log}" 'node-pools create .*--num-nodes=0 .*--no-enable-autorepair --no-enable-autoupgrade' "autoscaling from 0, no repair/upgrade"
nets="$(grep 'node-pools create' "${log}" | grep -o 'additional-node-network' | wc -l)"
[[ "${nets}" -eq 9 ]] || { echo "missing: 9 additional node networks (1 gVNIC + 8 RDMA), got ${nets}"; rc=1; }
expect "${log}" 'kubectl apply --server-side -f https://github.com/kubernetes-sigs/kueue/releases/download/v[0-9.]+/manifests.yaml' "pinned Kueue"
expect "${log}" 'kubectl apply -f https://.*nccl-rdma-installer.yaml' "NCCL gIB installer"
expect "${log}" 'add-iam-policy-binding gs://.* --member=principal://iam.googleapis.com/projects/123456789012/.*--role=roles/storage.objectUser' "IAM objectUser"
expect "${log}" 'storage buckets create gs://' "buckets"
expect "${log}.stdin" 'kind: ClusterQueue' "Kueue objects applied"
expect "${log}.stdin" 'kind: GKENetworkParamSet' "network objects applied"
if grep -q '[$]{' "${log}.stdin"; then echo "unrendered variables sent to kubectl"; rc=1; fi

# 2. everything exists: nothing is created again
export STUB_LOG="${work}/again.log" STUB_EXISTS=1
bash "${SETUP_DIR}/setup.sh" >"${work}/again.out" 2>&1 || { cat "${work}/again.out"; exit 1; }
if grep -E ' create ' "${STUB_LOG}"; then echo "re-run created resources again (above)"; rc=1; fi

# 3. cleanup of an existing setup deletes cluster and networks, keeps the buckets
export STUB_LOG="${work}/cleanup.log" STUB_EXISTS=1
bash "${SETUP_DIR}/cleanup.sh" >"${work}/cleanup.out" 2>&1 || { cat "${work}/cleanup.out"; exit 1; }
expect "${STUB_LOG}" 'clusters delete' "cluster deleted"
expect "${STUB_LOG}" 'networks delete [a-z0-9-]+-rdma-net' "RoCE network deleted"
if grep -qE 'storage rm' "${STUB_LOG}"; then echo "cleanup deleted buckets without --delete-buckets"; rc=1; fi

[[ ${rc} -eq 0 ]] && echo "setup.sh / cleanup.sh dry run: all expected calls made"
exit "${rc}"
