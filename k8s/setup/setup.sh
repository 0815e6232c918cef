#!/usr/bin/env bash
# Create everything the GKE batch job needs, following the GKE batch-inference tutorial:
# networks (gVNIC + RoCE), a multi-network cluster with Workload Identity and the GCS Fuse
# CSI driver, the A3 Ultra DWS flex-start node pool (0 nodes until a job is admitted), the
# network objects, the NCCL gIB installer, a pinned Kueue with the DWS queues, buckets,
# IAM, the service account and an Artifact Registry repository for the image.
#
#   DATAFLUX_ENV=my.env k8s/setup/setup.sh        (default env file: k8s/setup/.env)
#
# Re-runnable: each resource is looked up first and only created when missing.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require gcloud kubectl envsubst

step "Enable APIs (project ${PROJECT})"
run gc services enable container.googleapis.com compute.googleapis.com storage.googleapis.com \
  artifactregistry.googleapis.com iam.googleapis.com

step "gVNIC network ${GVNIC_NETWORK_PREFIX}-net, subnet and internal firewall rule"
if exists gc compute networks describe "${GVNIC_NETWORK_PREFIX}-net"; then skip "network ${GVNIC_NETWORK_PREFIX}-net"; else
  run gc compute networks create "${GVNIC_NETWORK_PREFIX}-net" --subnet-mode=custom
fi
if exists gc compute networks subnets describe "${GVNIC_NETWORK_PREFIX}-sub" --region="${REGION}"; then skip "subnet ${GVNIC_NETWORK_PREFIX}-sub"; else
  run gc compute networks subnets create "${GVNIC_NETWORK_PREFIX}-sub" \
    --network="${GVNIC_NETWORK_PREFIX}-net" --region="${REGION}" --range="${GVNIC_SUBNET_RANGE}"
fi
if exists gc compute firewall-rules describe "${GVNIC_NETWORK_PREFIX}-internal"; then skip "firewall ${GVNIC_NETWORK_PREFIX}-internal"; else
  run gc compute firewall-rules create "${GVNIC_NETWORK_PREFIX}-internal" \
    --network="${GVNIC_NETWORK_PREFIX}-net" --action=ALLOW \
    --rules=tcp:0-65535,udp:0-65535,icmp --source-ranges="${RDMA_SUBNET_BASE}.0.0/16"
fi

step "RoCE network ${RDMA_NETWORK_PREFIX}-net (profile ${ZONE}-vpc-roce) with 8 subnets"
if exists gc compute networks describe "${RDMA_NETWORK_PREFIX}-net"; then skip "network ${RDMA_NETWORK_PREFIX}-net"; else
  # Older Cloud SDKs only have --network-profile under `gcloud beta`.
  run gc compute networks create "${RDMA_NETWORK_PREFIX}-net" \
    --network-profile="${ZONE}-vpc-roce" --subnet-mode=custom
fi
for n in 0 1 2 3 4 5 6 7; do
  if exists gc compute networks subnets describe "${RDMA_NETWORK_PREFIX}-sub-${n}" --region="${REGION}"; then
    skip "subnet ${RDMA_NETWORK_PREFIX}-sub-${n}"
  else
    run gc compute networks subnets create "${RDMA_NETWORK_PREFIX}-sub-${n}" \
      --network="${RDMA_NETWORK_PREFIX}-net" --region="${REGION}" \
      --range="${RDMA_SUBNET_BASE}.$((n + 1)).0/24"
  fi
done

step "GKE cluster ${CLUSTER_NAME} (multi-networking, dataplane v2, Workload Identity, GCS Fuse CSI)"
if exists gc container clusters describe "${CLUSTER_NAME}" --location="${REGION}"; then skip "cluster ${CLUSTER_NAME}"; else
  version_flags=(--release-channel="${RELEASE_CHANNEL}")
  [[ -n "${CLUSTER_VERSION}" ]] && version_flags+=(--cluster-version="${CLUSTER_VERSION}")
  run gc container clusters create "${CLUSTER_NAME}" \
    --location="${REGION}" --node-locations="${ZONE}" \
    "${version_flags[@]}" \
    --machine-type="${DEFAULT_POOL_MACHINE_TYPE}" --num-nodes="${DEFAULT_POOL_NODES}" \
    --workload-pool="${PROJECT}.svc.id.goog" \
    --enable-dataplane-v2 --enable-ip-alias --enable-multi-networking \
    --addons=GcsFuseCsiDriver
fi
run gc container clusters get-credentials "${CLUSTER_NAME}" --location="${REGION}"

step "DWS node pool ${NODEPOOL_NAME}: ${MACHINE_TYPE}, flex-start + queued provisioning, 0..${MAX_NODES} nodes"
if exists gc container node-pools describe "${NODEPOOL_NAME}" --cluster="${CLUSTER_NAME}" --location="${REGION}"; then
  skip "node pool ${NODEPOOL_NAME}"
else
  networks=(--additional-node-network="network=${GVNIC_NETWORK_PREFIX}-net,subnetwork=${GVNIC_NETWORK_PREFIX}-sub")
  for n in 0 1 2 3 4 5 6 7; do
    networks+=(--additional-node-network="network=${RDMA_NETWORK_PREFIX}-net,subnetwork=${RDMA_NETWORK_PREFIX}-sub-${n}")
  done
  run gc container node-pools create "${NODEPOOL_NAME}" \
    --cluster="${CLUSTER_NAME}" --location="${REGION}" --node-locations="${ZONE}" \
    --machine-type="${MACHINE_TYPE}" \
    --accelerator="type=${GPU_TYPE},count=${GPUS_PER_NODE},gpu-driver-version=latest" \
    --enable-queued-provisioning --flex-start \
    --reservation-affinity=none --location-policy=ANY \
    --enable-autoscaling --num-nodes=0 --total-min-nodes=0 --total-max-nodes="${MAX_NODES}" \
    --no-enable-autorepair --no-enable-autoupgrade \
    "${networks[@]}"
fi

step "Network objects (GKENetworkParamSet / Network: gvnic-1, rdma-0..7)"
render "${K8S_DIR}/networks.yaml" | run kubectl apply -f -

step "NCCL + gIB installer DaemonSet (RDMA plugin on every A3 Ultra node)"
run kubectl apply -f "${NCCL_INSTALLER_URL}"

step "Kueue ${KUEUE_VERSION}"
run kubectl apply --server-side -f "${KUEUE_MANIFEST_URL}"
run kubectl -n kueue-system rollout status deployment/kueue-controller-manager --timeout=300s

step "Kueue objects: ResourceFlavor, ProvisioningRequestConfig, AdmissionCheck, ClusterQueue, LocalQueue"
# Kueue's webhook may need a few seconds after the rollout before it answers.
for attempt in 1 2 3 4 5 6; do
  if render "${K8S_DIR}/kueue.yaml" | run kubectl apply -f -; then break; fi
  [[ ${attempt} -eq 6 ]] && exit 1
  echo "  Kueue webhook not ready yet; retrying in 10 s"
  sleep 10
done

step "Buckets gs://${DATA_BUCKET} and gs://${OUTPUT_BUCKET}"
for bucket in "${DATA_BUCKET}" "${OUTPUT_BUCKET}"; do
  if exists gc storage buckets describe "gs://${bucket}"; then skip "bucket gs://${bucket}"; else
    run gc storage buckets create "gs://${bucket}" --location="${REGION}" --uniform-bucket-level-access
  fi
done

step "Kubernetes service account ${NAMESPACE}/${KSA_NAME}"
if exists kubectl get namespace "${NAMESPACE}"; then skip "namespace ${NAMESPACE}"; else run kubectl create namespace "${NAMESPACE}"; fi
if exists kubectl -n "${NAMESPACE}" get serviceaccount "${KSA_NAME}"; then skip "service account ${KSA_NAME}"; else
  run kubectl -n "${NAMESPACE}" create serviceaccount "${KSA_NAME}"
fi

step "IAM: roles/storage.objectUser for ${KSA_NAME} on both buckets (Workload Identity)"
# objectUser = objects get/list/create/update/delete: reading the images, composing them
# into temporary objects in the data bucket (create), deleting those composites (delete),
# and writing / resuming results in the output bucket. Bindings are idempotent.
principal="$(ksa_principal)"
for bucket in "${DATA_BUCKET}" "${OUTPUT_BUCKET}"; do
  run gc storage buckets add-iam-policy-binding "gs://${bucket}" \
    --member="${principal}" --role=roles/storage.objectUser >/dev/null
done

step "Hugging Face token Secret ${HF_SECRET_NAME} (only when HF_TOKEN is set)"
if [[ -n "${HF_TOKEN:-}" ]]; then
  echo "+ kubectl create secret generic ${HF_SECRET_NAME} --from-literal=hf_token=*** | kubectl apply -f -"
  kubectl -n "${NAMESPACE}" create secret generic "${HF_SECRET_NAME}" --from-literal=hf_token="${HF_TOKEN}" \
    --dry-run=client -o yaml | kubectl apply -f -
else
  skip "HF_TOKEN not set: public models only"
fi

step "Artifact Registry repository ${AR_REPO} (${REGION})"
if exists gc artifacts repositories describe "${AR_REPO}" --location="${REGION}"; then skip "repository ${AR_REPO}"; else
  run gc artifacts repositories create "${AR_REPO}" --repository-format=docker --location="${REGION}"
fi

cat <<NEXT

Setup done. Next:
  1. build and push the image:  gcloud builds submit --project=${PROJECT} --tag ${IMAGE} --machine-type=e2-highcpu-32 --timeout=2h .
  2. upload images to ${INPUT_URL}
  3. submit:  k8s/render.sh k8s/batch-inference.yaml | kubectl apply -f -
  4. watch:   kubectl get workloads,provisioningrequests -n ${NAMESPACE}; kubectl logs -n ${NAMESPACE} -f -l batch.kubernetes.io/job-name=${JOB_NAME}
NEXT
