#!/usr/bin/env bash
# Fill the ${VARIABLES} of the k8s/ manifest templates from an env file (envsubst, as the
# GKE tutorial does).
#
#   k8s/render.sh [-e ENV_FILE] [-o OUT_DIR] [TEMPLATE...]
#
# ENV_FILE defaults to $DATAFLUX_ENV, else k8s/setup/.env. TEMPLATEs default to every
# manifest (networks.yaml, kueue.yaml, batch-inference.yaml, optional/gcsfuse-output.yaml).
# Without -o the rendered YAML goes to stdout, so `k8s/render.sh k8s/kueue.yaml | kubectl
# apply -f -` works; with -o each template is written to OUT_DIR under its path relative
# to k8s/. Only ${NAME} forms are replaced (never $(NAME), which Kubernetes expands
# itself), and a template that names an unset or empty variable is an error.
set -euo pipefail

K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="${DATAFLUX_ENV:-${K8S_DIR}/setup/.env}"
out_dir=""

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while getopts "e:o:h" opt; do
  case "${opt}" in
    e) env_file="${OPTARG}" ;;
    o) out_dir="${OPTARG}" ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

command -v envsubst >/dev/null || { echo "render.sh: envsubst not found (apt-get install gettext-base)" >&2; exit 1; }
[[ -f "${env_file}" ]] || { echo "render.sh: env file ${env_file} not found" >&2; exit 1; }
# shellcheck source=SCRIPTDIR/setup/.env
source "${env_file}"

templates=("$@")
if [[ ${#templates[@]} -eq 0 ]]; then
  templates=(
    "${K8S_DIR}/networks.yaml"
    "${K8S_DIR}/kueue.yaml"
    "${K8S_DIR}/batch-inference.yaml"
    "${K8S_DIR}/optional/gcsfuse-output.yaml"
  )
fi

for template in "${templates[@]}"; do
  [[ -f "${template}" ]] || { echo "render.sh: template ${template} not found" >&2; exit 1; }
  mapfile -t names < <(grep -oE '\$\{[A-Za-z_][A-Za-z0-9_]*\}' "${template}" | tr -d '{}$' | sort -u)
  missing=()
  for name in "${names[@]}"; do
    [[ -n "${!name:-}" ]] || missing+=("${name}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    echo "render.sh: ${template} uses unset or empty variable(s): ${missing[*]} (set them in ${env_file})" >&2
    exit 1
  fi
  shell_format=""
  for name in "${names[@]}"; do
    export "${name?}"
    shell_format+="\${${name}} "
  done
  if [[ -n "${out_dir}" ]]; then
    abs="$(cd "$(dirname "${template}")" && pwd)/$(basename "${template}")"
    rel="${abs#"${K8S_DIR}"/}"
    mkdir -p "$(dirname "${out_dir}/${rel}")"
    envsubst "${shell_format}" <"${template}" >"${out_dir}/${rel}"
  else
    envsubst "${shell_format}" <"${template}"
    # keep documents of consecutive templates apart
    [[ ${#templates[@]} -gt 1 ]] && echo "---"
  fi
done
exit 0
