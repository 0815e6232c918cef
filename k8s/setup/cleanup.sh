#!/usr/bin/env bash
# Tear down what setup.sh created, in reverse order. Safe to re-run: what is already gone
# is skipped.
#
#   DATAFLUX_ENV=my.env k8s/setup/cleanup.sh [--delete-buckets] [--delete-images]
#
# Buckets (your images and results) and the Artifact Registry repository are kept unless
# asked for. The DWS node pool already has 0 nodes when no job runs: GKE removes the nodes
# after each job, so deleting the cluster is what stops the remaining (control plane and
# default pool) costs.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require gcloud kubectl envsubst

delete_buckets=0
delete_images=0
for arg in "$@"; do
  case "${arg}" in
    --delete-buckets) delete_buckets=1 ;;
    --delete-images) delete_images=1 ;;
    *) echo "cleanup.sh: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done

if exists gc container clusters describe "${CLUSTER_NAME}" --location="${REGION}"; then
  run gc container clusters get-credentials "${CLUSTER_NAME}" --location="${REGION}"

  step "Job ${JOB_NAME} and its Service"
  render "${K8S_DIR}/batch-inference.yaml" | run kubectl delete --ignore-not-found --wait=true -f -

  step "Kueue objects"
  render "${K8S_DIR}/kueue.yaml" | run kubectl delete --ignore-not-found -f -

  step "Node pool ${NODEPOOL_NAME}"
  if exists gc container node-pools describe "${NODEPOOL_NAME}" --cluster="${CLUSTER_NAME}" --location="${REGION}"; then
    run gc container node-pools delete "${NODEPOOL_NAME}" --cluster="${CLUSTER_NAME}" --location="${REGION}"
  else skip "node pool ${NODEPOOL_NAME} gone"; fi

  step "Cluster ${CLUSTER_NAME} (Kueue, the network objects and the installer go with it)"
  run gc container clusters delete "${CLUSTER_NAME}" --location="${REGION}"
else
  step "Cluster ${CLUSTER_NAME}"
  skip "cluster ${CLUSTER_NAME} gone"
fi

step "RoCE subnets and network ${RDMA_NETWORK_PREFIX}-net"
for n in 0 1 2 3 4 5 6 7; do
  if exists gc compute networks subnets describe "${RDMA_NETWORK_PREFIX}-sub-${n}" --region="${REGION}"; then
    run gc compute networks subnets delete "${RDMA_NETWORK_PREFIX}-sub-${n}" --region="${REGION}"
  else skip "subnet ${RDMA_NETWORK_PREFIX}-sub-${n} gone"; fi
done
if exists gc compute networks describe "${RDMA_NETWORK_PREFIX}-net"; then
  run gc compute networks delete "${RDMA_NETWORK_PREFIX}-net"
else skip "network ${RDMA_NETWORK_PREFIX}-net gone"; fi

step "gVNIC firewall rule, subnet and network ${GVNIC_NETWORK_PREFIX}-net"
if exists gc compute firewall-rules describe "${GVNIC_NETWORK_PREFIX}-internal"; then
  run gc compute firewall-rules delete "${GVNIC_NETWORK_PREFIX}-internal"
else skip "firewall ${GVNIC_NETWORK_PREFIX}-internal gone"; fi
if exists gc compute networks subnets describe "${GVNIC_NETWORK_PREFIX}-sub" --region="${REGION}"; then
  run gc compute networks subnets delete "${GVNIC_NETWORK_PREFIX}-sub" --region="${REGION}"
else skip "subnet ${GVNIC_NETWORK_PREFIX}-sub gone"; fi
if exists gc compute networks describe "${GVNIC_NETWORK_PREFIX}-net"; then
  run gc compute networks delete "${GVNIC_NETWORK_PREFIX}-net"
else skip "network ${GVNIC_NETWORK_PREFIX}-net gone"; fi

step "Buckets"
if [[ ${delete_buckets} -eq 1 ]]; then
  for bucket in "${DATA_BUCKET}" "${OUTPUT_BUCKET}"; do
    if exists gc storage buckets describe "gs://${bucket}"; then
      run gc storage rm --recursive "gs://${bucket}"
    else skip "bucket gs://${bucket} gone"; fi
  done
else
  skip "kept gs://${DATA_BUCKET} and gs://${OUTPUT_BUCKET} (pass --delete-buckets to delete them)"
fi

step "Artifact Registry repository ${AR_REPO}"
if [[ ${delete_images} -eq 1 ]]; then
  if exists gc artifacts repositories describe "${AR_REPO}" --location="${REGION}"; then
    run gc artifacts repositories delete "${AR_REPO}" --location="${REGION}"
  else skip "repository ${AR_REPO} gone"; fi
else
  skip "kept repository ${AR_REPO} (pass --delete-images to delete it)"
fi
echo
echo "Cleanup done."
