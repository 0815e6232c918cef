#!/usr/bin/env bash
# Offline validation of everything in k8s/ (what CI runs: `bash k8s/validate.sh`).
#
#   bash k8s/validate.sh [--skip-env-check]
#
# 1. renders the manifests with the sample values of k8s/setup/.env (k8s/render.sh);
# 2. built-in objects (Service, Job, PV, PVC): kubernetes-validate --strict against the
#    Kubernetes ${K8S_VERSION} schemas it ships;
# 3. custom objects: Kueue kinds against the vendored Kueue v0.19.2 CRD schemas, GKE
#    networking kinds against hand-written schemas, both made strict (unknown fields fail);
# 4. policy: what schemas cannot say (enum values, the Job's Kueue / DWS / multi-network /
#    NCCL / launcher wiring, references between objects) -- k8s/tests/checks.py;
# 5. the Dockerfile installs what the Job runs, as the user the Job runs as;
# 6. shellcheck on every script in k8s/ (and the sourced .env); setup.sh and cleanup.sh
#    run against stand-ins for gcloud and kubectl (k8s/tests/setup_dry_run.sh);
# 7. every env var the Job sets is read by our Rust code or allow-listed (skip with
#    --skip-env-check while the binaries are not written yet);
# 8. negative tests: a deliberately broken copy of each manifest kind must be rejected.
# Installs its tools when missing. Last line: "N passed, M failed"; exit 1 on any failure.
set -euo pipefail

K8S_VERSION="1.35.0"          # GKE regular channel, late 2026; kubernetes-validate has 1.30..1.37
KUBERNETES_VALIDATE_PIN="1.37.0"
JSONSCHEMA_PIN="4.26.0"
PYYAML_PIN="6.0.3"

K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${K8S_DIR}/.." && pwd)"
CHECKS="${K8S_DIR}/tests/checks.py"
skip_env_check=0
for arg in "$@"; do
  case "${arg}" in
    --skip-env-check) skip_env_check=1 ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "validate.sh: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done

# ------------------------------------------------------------------------------ tools
ensure_tools() {
  local missing=()
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  command -v envsubst >/dev/null || missing+=(gettext-base)
  if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
      echo "== installing ${missing[*]} (apt-get)"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "validate.sh: please install ${missing[*]} (Debian: apt-get install -y ${missing[*]})" >&2
      exit 1
    fi
  fi
  # Python tools in a cached virtualenv, pinned.
  local venv="${ROOT}/.ci/cache/k8s-venv"
  PY="${venv}/bin/python"
  if ! "${PY}" - "${KUBERNETES_VALIDATE_PIN}" "${JSONSCHEMA_PIN}" "${PYYAML_PIN}" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
want = dict(zip(["kubernetes-validate", "jsonschema", "pyyaml"], sys.argv[1:]))
sys.exit(0 if all(version(k) == v for k, v in want.items()) else 1)
EOF
  then
    echo "== installing kubernetes-validate==${KUBERNETES_VALIDATE_PIN} jsonschema==${JSONSCHEMA_PIN} pyyaml==${PYYAML_PIN} into ${venv}"
    python3 -m venv "${venv}"
    "${PY}" -m pip install -q --disable-pip-version-check --cache-dir "${ROOT}/.ci/cache/pip" \
      "kubernetes-validate==${KUBERNETES_VALIDATE_PIN}" "jsonschema==${JSONSCHEMA_PIN}" "pyyaml==${PYYAML_PIN}"
  fi
  KV="${venv}/bin/kubernetes-validate"
}

# ------------------------------------------------------------------------------ bookkeeping
passed=0
failed=0
check() { # check NAME CMD...: CMD must succeed
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    passed=$((passed + 1))
    echo "PASS ${name}"
  else
    failed=$((failed + 1))
    echo "FAIL ${name}"
    printf '     | %s\n' "${out//$'\n'/$'\n'     | }"
  fi
}
expect_fail() { # expect_fail NAME CMD...: CMD must fail (a negative test)
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    failed=$((failed + 1))
    echo "FAIL ${name}: the broken copy was accepted"
  else
    passed=$((passed + 1))
    echo "PASS ${name}: rejected ($(grep -m1 -E 'FAIL|ERROR' <<<"${out}" | sed -E 's/^ *(FAIL|ERROR) *//' | cut -c1-200))"
  fi
}

# kubernetes-validate exits 0 when it has no schema for a kind (a WARN): treat any
# warning or error as a failure.
kv_strict() {
  local out rc=0
  out="$("${KV}" --strict --kubernetes-version "${K8S_VERSION}" "$@" 2>&1)" || rc=$?
  # "ERROR /tmp/.../x.yaml did not validate for resource job/y against version 1.35: why"
  sed -E 's#^(ERROR|WARN) ([^ ]*/)?([^ /]*) did not validate for resource ([^ ]*) against version [^:]*:#\1 \3: \4:#' <<<"${out}"
  [[ ${rc} -eq 0 ]] && ! grep -qE '^(WARN|ERROR)' <<<"${out}"
}

# All layers over one rendered tree (used by the negative tests).
validate_tree() {
  local tree="$1" rc=0
  rm -rf "${tree}.split"
  "${PY}" "${CHECKS}" split "${tree}.split" "${tree}"/*.yaml "${tree}"/optional/*.yaml >/dev/null || rc=1
  kv_strict "${tree}.split"/core/*.yaml || rc=1
  "${PY}" "${CHECKS}" crd "${tree}.split"/custom/*.yaml || rc=1
  "${PY}" "${CHECKS}" policy "${tree}"/*.yaml || rc=1
  return "${rc}"
}

no_placeholders() { ! grep -rnE '\$\{[A-Za-z_][A-Za-z0-9_]*\}' "$1"; }

dockerfile_matches_job() {
  local dockerfile="${ROOT}/Dockerfile" job="$1" uid rc=0
  [[ -f "${dockerfile}" ]] || { echo "no Dockerfile at the repository root"; return 1; }
  for bin in batch-inference dataflux-launch upload-images; do
    grep -qE "/usr/local/bin/(${bin}\b|\s*$)|${bin}.*/usr/local/bin" "${dockerfile}" ||
      { echo "Dockerfile does not install ${bin} into /usr/local/bin"; rc=1; }
  done
  uid="$(grep -oE '^USER [0-9]+' "${dockerfile}" | awk '{print $2}')"
  grep -q "runAsUser: ${uid:-none}\b" "${job}" ||
    { echo "Dockerfile USER ${uid:-<not numeric>} != the Job's runAsUser"; rc=1; }
  grep -q -- '--features cuda,nccl' "${dockerfile}" || { echo "Dockerfile does not build --features cuda,nccl"; rc=1; }
  grep -q 'CUDA_COMPUTE_CAP=90' "${dockerfile}" || { echo "Dockerfile does not set CUDA_COMPUTE_CAP=90"; rc=1; }
  grep -q -- '--features cuda,nccl,turbojpeg,onnx' "${dockerfile}" || { echo "Dockerfile does not build the onnx feature"; rc=1; }
  grep -q 'onnxruntime-gpu==' "${dockerfile}" || { echo "Dockerfile does not install onnxruntime-gpu"; rc=1; }
  grep -q 'ORT_DYLIB_PATH=' "${dockerfile}" || { echo "Dockerfile does not set ORT_DYLIB_PATH"; rc=1; }
  return "${rc}"
}

# ------------------------------------------------------------------------------ run
ensure_tools
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
rendered="${work}/rendered"

echo "== render (k8s/setup/.env sample values)"
check "render all manifests" env DATAFLUX_ENV="${K8S_DIR}/setup/.env" bash "${K8S_DIR}/render.sh" -o "${rendered}"
check "no unrendered \${VARIABLE} left" no_placeholders "${rendered}"
check "split into one object per file" "${PY}" "${CHECKS}" split "${work}/split" "${rendered}"/*.yaml "${rendered}"/optional/*.yaml

echo "== built-in kinds: kubernetes-validate --strict, Kubernetes ${K8S_VERSION}"
for f in "${work}"/split/core/*.yaml; do
  check "kubernetes-validate $(basename "${f}")" kv_strict "${f}"
done

echo "== custom kinds: vendored Kueue v0.19.2 / GKE networking schemas (strict)"
for f in "${work}"/split/custom/*.yaml; do
  check "schema $(basename "${f}")" "${PY}" "${CHECKS}" crd "${f}"
done

echo "== policy and cross references"
check "policy (Job wiring, enums, Kueue references)" "${PY}" "${CHECKS}" policy "${rendered}"/*.yaml
check "Dockerfile installs the Job's binaries, runs as the Job's user" dockerfile_matches_job "${rendered}/batch-inference.yaml"

echo "== shellcheck"
while IFS= read -r -d '' script; do
  check "shellcheck ${script#"${ROOT}"/}" shellcheck -x "${script}"
done < <(find "${K8S_DIR}" -name '*.sh' -print0 | sort -z)
check "shellcheck k8s/setup/.env" shellcheck -s bash "${K8S_DIR}/setup/.env"
for stub in "${K8S_DIR}"/tests/stubs/*; do
  check "shellcheck ${stub#"${ROOT}"/}" shellcheck "${stub}"
done

echo "== setup.sh / cleanup.sh against stub gcloud and kubectl"
check "setup.sh makes the tutorial's calls, re-runs create nothing, cleanup keeps buckets" \
  bash "${K8S_DIR}/tests/setup_dry_run.sh"

echo "== env vars the Job sets"
"${PY}" "${CHECKS}" env-names "${rendered}/batch-inference.yaml" | paste -sd' ' | fold -s -w 100 | sed 's/^/     /'
if [[ ${skip_env_check} -eq 1 ]]; then
  echo "SKIP env check (--skip-env-check)"
else
  failed_before=${failed}
  check "every env var the Job sets is read by our Rust code or allow-listed" \
    "${PY}" "${CHECKS}" env-check "${ROOT}" "${rendered}/batch-inference.yaml"
  # The negative test means something only once the real names are all found.
  if [[ ${failed} -eq ${failed_before} ]]; then
    cp -r "${rendered}" "${work}/bad-env"
    sed -i 's/- name: DATAFLUX_MODEL$/- name: DATAFLUX_MODLE/' "${work}/bad-env/batch-inference.yaml"
    expect_fail "negative: misspelled env var DATAFLUX_MODLE" \
      "${PY}" "${CHECKS}" env-check "${ROOT}" "${work}/bad-env/batch-inference.yaml"
  fi
fi

echo "== negative tests: broken copies must fail"
check "the unbroken tree passes all layers" validate_tree "${rendered}"
n=0
negative() { # negative DESCRIPTION FILE SED_SCRIPT
  local desc="$1" file="$2" script="$3" tree
  n=$((n + 1))
  tree="${work}/broken-${n}"
  cp -r "${rendered}" "${tree}"
  sed -i "${script}" "${tree}/${file}"
  if cmp -s "${rendered}/${file}" "${tree}/${file}"; then
    failed=$((failed + 1))
    echo "FAIL negative: ${desc}: the sed script '${script}' changed nothing in ${file}"
    return
  fi
  expect_fail "negative: ${desc}" validate_tree "${tree}"
}
negative "Job completionMode: Indexd" batch-inference.yaml 's/completionMode: Indexed/completionMode: Indexd/'
negative "Job misspelled field backoffLimitPerIndx" batch-inference.yaml 's/backoffLimitPerIndex:/backoffLimitPerIndx:/'
negative "Job maxRunDurationSeconds not a number" batch-inference.yaml 's/\(maxRunDurationSeconds: \)"[0-9]*"/\1"forever"/'
negative "Job interface on unknown network rdma-9" batch-inference.yaml 's/"network":"rdma-7"/"network":"rdma-9"/'
negative "Job without suspend" batch-inference.yaml 's/suspend: true/suspend: false/'
negative "Service misspelled field clusterIp" batch-inference.yaml 's/clusterIP: None/clusterIp: None/'
negative "ClusterQueue misspelled field namespaceSelectr" kueue.yaml 's/namespaceSelector:/namespaceSelectr:/'
negative "ClusterQueue flavor missing a covered resource" kueue.yaml '/- name: memory$/,+1d'
negative "ResourceFlavor misspelled field nodeLabel" kueue.yaml 's/nodeLabels:/nodeLabel:/'
negative "ProvisioningRequestConfig misspelled managedResource" kueue.yaml 's/managedResources:/managedResource:/'
negative "AdmissionCheck without controllerName" kueue.yaml 's/controllerName:/controller:/'
negative "LocalQueue pointing to a missing ClusterQueue" kueue.yaml 's/^  clusterQueue: /  clusterQueue: missing-/'
negative "GKENetworkParamSet deviceMode: Rdma" networks.yaml '0,/deviceMode: RDMA/s//deviceMode: Rdma/'
negative "Network type: Devices" networks.yaml '0,/type: Device$/s//type: Devices/'
negative "PersistentVolume misspelled field persistentVolumeReclaimPolicie" optional/gcsfuse-output.yaml 's/persistentVolumeReclaimPolicy:/persistentVolumeReclaimPolicie:/'
negative "PersistentVolumeClaim misspelled field volumeNam" optional/gcsfuse-output.yaml 's/volumeName:/volumeNam:/'

echo
echo "${passed} passed, ${failed} failed"
[[ ${failed} -eq 0 ]]
