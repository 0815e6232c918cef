#!/usr/bin/env python3
"""Re-vendor the Kueue schemas that k8s/validate.sh checks k8s/kueue.yaml against.

    python3 k8s/tests/vendor_kueue_schemas.py CRD_DIR VERSION [API_VERSION]

CRD_DIR holds Kueue's CustomResourceDefinitions (config/components/crd/bases/ of the
kubernetes-sigs/kueue repository at tag VERSION; the project keeps a copy of v0.19.2 in
shared/kueue-crds-v0.19.2/). For each kind k8s/kueue.yaml uses, the openAPIV3Schema of
API_VERSION (default v1beta2) is written unchanged to
k8s/tests/schemas/kueue-VERSION/<kind>.<api_version>.json.
"""
import json
import pathlib
import sys

import yaml

KINDS = ["ResourceFlavor", "AdmissionCheck", "ProvisioningRequestConfig", "ClusterQueue", "LocalQueue"]


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    crd_dir, version = pathlib.Path(sys.argv[1]), sys.argv[2]
    api_version = sys.argv[3] if len(sys.argv) == 4 else "v1beta2"
    out = pathlib.Path(__file__).resolve().parent / "schemas" / f"kueue-{version}"
    out.mkdir(parents=True, exist_ok=True)
    found = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        if kind not in KINDS:
            continue
        for v in crd["spec"]["versions"]:
            if v["name"] == api_version:
                schema = v["schema"]["openAPIV3Schema"]
                target = out / f"{kind.lower()}.{api_version}.json"
                target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                found[kind] = f"{path.name} -> {target.name}"
    missing = [k for k in KINDS if k not in found]
    for kind, line in found.items():
        print(f"{kind}: {line}")
    if missing:
        print(f"missing kinds {missing} in {crd_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
