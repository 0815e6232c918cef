# shellcheck shell=bash
# Helpers shared by setup.sh and cleanup.sh (sourced, not run).

SETUP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_DIR="$(cd "${SETUP_DIR}/.." && pwd)"
ENV_FILE="${DATAFLUX_ENV:-${SETUP_DIR}/.env}"
[[ -f "${ENV_FILE}" ]] || { echo "env file ${ENV_FILE} not found" >&2; exit 1; }
# shellcheck source=SCRIPTDIR/.env
source "${ENV_FILE}"
export DATAFLUX_ENV="${ENV_FILE}"

step_no=0
step() { # step "what happens next"
  step_no=$((step_no + 1))
  printf '\n=== [%02d] %s\n' "${step_no}" "$*"
}
run() { # run CMD...: print, then run
  printf '+ %s\n' "$*"
  "$@"
}
skip() { printf '  = %s (already done)\n' "$*"; }
exists() { "$@" >/dev/null 2>&1; } # exists CMD...: true when a describe command succeeds
require() {
  local tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null || { echo "required tool ${tool} not found" >&2; exit 1; }
  done
}
render() { bash "${K8S_DIR}/render.sh" "$@"; }
gc() { gcloud --project="${PROJECT}" --quiet "$@"; }
# Workload Identity principal of the job's Kubernetes service account (no Google SA).
ksa_principal() {
  local number
  number="$(gcloud projects describe "${PROJECT}" --format='value(projectNumber)')"
  echo "principal://iam.googleapis.com/projects/${number}/locations/global/workloadIdentityPools/${PROJECT}.svc.id.goog/subject/ns/${NAMESPACE}/sa/${KSA_NAME}"
}
