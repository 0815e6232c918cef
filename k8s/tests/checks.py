#!/usr/bin/env python3
"""Offline checks of the rendered k8s/ manifests, driven by k8s/validate.sh.

    checks.py split OUT_DIR FILE...      one file per object: OUT_DIR/core/ (for
                                         kubernetes-validate) and OUT_DIR/custom/
    checks.py crd FILE...                custom objects (Kueue, GKE networking) against
                                         their vendored schemas, made strict
    checks.py policy FILE...             what the schemas cannot say: enums, the Job's
                                         Kueue/DWS/NCCL wiring, references between objects
    checks.py env-names FILE...          env var names the Jobs' containers set
    checks.py env-check REPO_ROOT FILE...
                                         every such name is read by our Rust code or
                                         consumed by something else (allow-list)

Each command prints one line per problem and exits 1 if there was any.
"""
from __future__ import annotations

import copy
import json
import pathlib
import re
import sys
from typing import Any, Iterable

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
KUEUE_SCHEMA_DIR = SCHEMAS / "kueue-v0.19.2"

# API groups kubernetes-validate has schemas for (built-in kinds).
CORE_GROUPS = {
    "", "apps", "batch", "policy", "rbac.authorization.k8s.io", "networking.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "autoscaling", "coordination.k8s.io",
}
# Custom kinds we validate ourselves: (apiVersion, kind) -> (schema file, namespaced)
CUSTOM = {
    ("kueue.x-k8s.io/v1beta2", "ResourceFlavor"): (KUEUE_SCHEMA_DIR / "resourceflavor.v1beta2.json", False),
    ("kueue.x-k8s.io/v1beta2", "AdmissionCheck"): (KUEUE_SCHEMA_DIR / "admissioncheck.v1beta2.json", False),
    ("kueue.x-k8s.io/v1beta2", "ProvisioningRequestConfig"): (
        KUEUE_SCHEMA_DIR / "provisioningrequestconfig.v1beta2.json", False),
    ("kueue.x-k8s.io/v1beta2", "ClusterQueue"): (KUEUE_SCHEMA_DIR / "clusterqueue.v1beta2.json", False),
    ("kueue.x-k8s.io/v1beta2", "LocalQueue"): (KUEUE_SCHEMA_DIR / "localqueue.v1beta2.json", True),
    ("networking.gke.io/v1", "GKENetworkParamSet"): (SCHEMAS / "gke-networking" / "gkenetworkparamset.v1.json", False),
    ("networking.gke.io/v1", "Network"): (SCHEMAS / "gke-networking" / "network.v1.json", False),
}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
METADATA_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN.pattern},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


# --------------------------------------------------------------------------- loading
def load_docs(paths: Iterable[str]) -> list[tuple[str, int, dict]]:
    docs = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc is None:
                    continue
                if not isinstance(doc, dict):
                    raise SystemExit(f"{p}: document {i} is not a mapping")
                docs.append((p, i, doc))
    return docs


def ident(path: str, doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{pathlib.Path(path).name}: {doc.get('kind', '?')}/{meta.get('name', '?')}"


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


# --------------------------------------------------------------------------- split
def cmd_split(out_dir: str, paths: list[str]) -> list[str]:
    problems = []
    out = pathlib.Path(out_dir)
    (out / "core").mkdir(parents=True, exist_ok=True)
    (out / "custom").mkdir(parents=True, exist_ok=True)
    for path, i, doc in load_docs(paths):
        api, kind = doc.get("apiVersion"), doc.get("kind")
        if not isinstance(api, str) or not isinstance(kind, str):
            problems.append(f"{path} document {i}: apiVersion and kind are required")
            continue
        if (api, kind) in CUSTOM:
            sub = "custom"
        elif group_of(api) in CORE_GROUPS:
            sub = "core"
        else:
            problems.append(f"{ident(path, doc)}: no schema for {api} {kind} (not a built-in kind nor a vendored one)")
            continue
        name = (doc.get("metadata") or {}).get("name", "unnamed")
        target = out / sub / f"{pathlib.Path(path).stem}-{i:02d}-{kind.lower()}-{name}.yaml"
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        print(target)
    return problems


# --------------------------------------------------------------------------- crd
def strict(schema: Any) -> Any:
    """Reject unknown fields: a structural schema prunes them silently in a cluster, so a
    misspelled field would be dropped without an error. Add additionalProperties: false
    wherever properties are listed and unknown fields are not explicitly preserved."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if isinstance(out.get("pattern"), str):
        # Go's RE2 accepts "^(?i)..."; Python wants inline flags first: "(?i)^..."
        out["pattern"] = re.sub(r"^\^\(\?([a-zA-Z]+)\)", r"(?\1)^", out["pattern"])
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def list_semantics(schema: dict, value: Any, where: str) -> list[str]:
    """x-kubernetes-list-type map/set: keys (or items) must be unique."""
    problems: list[str] = []
    if not isinstance(schema, dict):
        return problems
    if isinstance(value, list):
        lt = schema.get("x-kubernetes-list-type")
        if lt == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = set()
            for item in value:
                k = tuple(json.dumps(item.get(x) if isinstance(item, dict) else None) for x in keys)
                if k in seen:
                    problems.append(f"{where}: duplicate entry for key {keys}={[json.loads(x) for x in k]}")
                seen.add(k)
        elif lt == "set":
            dumped = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(dumped)) != len(dumped):
                problems.append(f"{where}: duplicate items in a set")
        for n, item in enumerate(value):
            problems += list_semantics(schema.get("items", {}), item, f"{where}[{n}]")
    elif isinstance(value, dict):
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                problems += list_semantics(props[k], v, f"{where}.{k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += list_semantics(schema["additionalProperties"], v, f"{where}.{k}")
    return problems


def cmd_crd(paths: list[str]) -> list[str]:
    problems = []
    cache: dict[pathlib.Path, dict] = {}
    for path, _, doc in load_docs(paths):
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in CUSTOM:
            problems.append(f"{ident(path, doc)}: not a custom kind with a vendored schema: {key}")
            continue
        schema_path, namespaced = CUSTOM[key]
        if schema_path not in cache:
            cache[schema_path] = strict(json.loads(schema_path.read_text()))
        schema = copy.deepcopy(cache[schema_path])
        schema.setdefault("properties", {})["metadata"] = METADATA_SCHEMA
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        found = []
        validator = jsonschema.Draft202012Validator(schema)
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            loc = ".".join(str(p) for p in err.absolute_path) or "(root)"
            found.append(f"{ident(path, doc)}: {loc}: {err.message}")
        found += [f"{ident(path, doc)}: {p}" for p in list_semantics(schema, doc, "")]
        ns = (doc.get("metadata") or {}).get("namespace")
        if not namespaced and ns is not None:
            found.append(f"{ident(path, doc)}: metadata.namespace set on a cluster-scoped kind")
        if found:
            problems += found
        else:
            print(f"PASS {ident(path, doc)} against {schema_path.relative_to(HERE)}")
    return problems


# --------------------------------------------------------------------------- policy
ENUMS_POD = {
    "restartPolicy": {"Always", "OnFailure", "Never"},
}
TOLERATION_OPERATORS = {"Exists", "Equal"}
TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}
PROTOCOLS = {"TCP", "UDP", "SCTP"}
FAILURE_ACTIONS = {"Ignore", "FailIndex", "FailJob", "Count"}
ONE_WEEK = 7 * 24 * 3600
RDMA_NICS = 8


def env_map(container: dict) -> dict[str, dict]:
    return {e.get("name"): e for e in container.get("env", []) or []}


def policy_pod_spec(where: str, spec: dict) -> list[str]:
    p = []
    for key, allowed in ENUMS_POD.items():
        if key in spec and spec[key] not in allowed:
            p.append(f"{where}: spec.{key}={spec[key]!r} not one of {sorted(allowed)}")
    for n, t in enumerate(spec.get("tolerations", []) or []):
        if t.get("operator", "Equal") not in TOLERATION_OPERATORS:
            p.append(f"{where}: tolerations[{n}].operator={t.get('operator')!r} not one of {sorted(TOLERATION_OPERATORS)}")
        if "effect" in t and t["effect"] not in TAINT_EFFECTS:
            p.append(f"{where}: tolerations[{n}].effect={t['effect']!r} not one of {sorted(TAINT_EFFECTS)}")
    for c in (spec.get("containers", []) or []) + (spec.get("initContainers", []) or []):
        if "imagePullPolicy" in c and c["imagePullPolicy"] not in PULL_POLICIES:
            p.append(f"{where}: container {c.get('name')}: imagePullPolicy={c['imagePullPolicy']!r}")
        for port in c.get("ports", []) or []:
            if port.get("protocol", "TCP") not in PROTOCOLS:
                p.append(f"{where}: container {c.get('name')}: port protocol={port.get('protocol')!r}")
    return p


def policy_job(where: str, job: dict, objs: dict[tuple[str, str], list[dict]]) -> list[str]:
    p = []
    spec = job.get("spec", {})
    meta = job.get("metadata", {})
    ns = meta.get("namespace", "default")
    name = meta.get("name")
    if spec.get("completionMode") != "Indexed":
        p.append(f"{where}: spec.completionMode must be 'Indexed' (ranks come from JOB_COMPLETION_INDEX), got {spec.get('completionMode')!r}")
    if spec.get("suspend") is not True:
        p.append(f"{where}: spec.suspend must be true so that Kueue decides when it starts")
    if spec.get("completions") != spec.get("parallelism"):
        p.append(f"{where}: completions ({spec.get('completions')}) != parallelism ({spec.get('parallelism')}): every rank must run at once")
    if not isinstance(spec.get("backoffLimitPerIndex"), int):
        p.append(f"{where}: spec.backoffLimitPerIndex must be set (retry a failed index alone)")
    rules = (spec.get("podFailurePolicy") or {}).get("rules")
    if not rules:
        p.append(f"{where}: spec.podFailurePolicy.rules missing")
    for n, r in enumerate(rules or []):
        if r.get("action") not in FAILURE_ACTIONS:
            p.append(f"{where}: podFailurePolicy.rules[{n}].action={r.get('action')!r} not one of {sorted(FAILURE_ACTIONS)}")
        codes = r.get("onExitCodes")
        if codes and codes.get("operator") not in {"In", "NotIn"}:
            p.append(f"{where}: podFailurePolicy.rules[{n}].onExitCodes.operator={codes.get('operator')!r}")
    # Kueue
    queue = (meta.get("labels") or {}).get("kueue.x-k8s.io/queue-name")
    lqs = {(o["metadata"].get("namespace", "default"), o["metadata"]["name"]) for o in objs.get(("kueue.x-k8s.io/v1beta2", "LocalQueue"), [])}
    if not queue:
        p.append(f"{where}: label kueue.x-k8s.io/queue-name missing: Kueue would ignore the Job")
    elif (ns, queue) not in lqs:
        p.append(f"{where}: queue {queue!r} is not a LocalQueue in namespace {ns!r} (have {sorted(lqs)})")
    mrd = (meta.get("annotations") or {}).get("provreq.kueue.x-k8s.io/maxRunDurationSeconds")
    if mrd is None or not str(mrd).isdigit() or not 0 < int(mrd) <= ONE_WEEK:
        p.append(f"{where}: annotation provreq.kueue.x-k8s.io/maxRunDurationSeconds must be seconds in 1..{ONE_WEEK}, got {mrd!r}")
    tmpl = spec.get("template", {})
    pod = tmpl.get("spec", {})
    p += policy_pod_spec(where, pod)
    if pod.get("restartPolicy") != "Never":
        p.append(f"{where}: template restartPolicy must be Never (backoffLimitPerIndex, podFailurePolicy)")
    # networks
    ann = (tmpl.get("metadata") or {}).get("annotations") or {}
    if ann.get("networking.gke.io/default-interface") != "eth0":
        p.append(f"{where}: annotation networking.gke.io/default-interface must be eth0")
    try:
        ifaces = json.loads(ann.get("networking.gke.io/interfaces", ""))
        want = [("eth0", "default"), ("eth1", "gvnic-1")] + [(f"eth{i + 2}", f"rdma-{i}") for i in range(RDMA_NICS)]
        got = [(i.get("interfaceName"), i.get("network")) for i in ifaces]
        if got != want:
            p.append(f"{where}: networking.gke.io/interfaces must map {want}, got {got}")
        networks = {o["metadata"]["name"] for o in objs.get(("networking.gke.io/v1", "Network"), [])}
        if networks:
            for _, net in got[1:]:
                if net not in networks:
                    p.append(f"{where}: interface network {net!r} has no Network object")
    except (ValueError, TypeError, AttributeError) as e:
        p.append(f"{where}: annotation networking.gke.io/interfaces is not a JSON list of interfaces: {e}")
    # placement
    pool = (pod.get("nodeSelector") or {}).get("cloud.google.com/gke-nodepool")
    flavors = objs.get(("kueue.x-k8s.io/v1beta2", "ResourceFlavor"), [])
    pools = {(f.get("spec", {}).get("nodeLabels") or {}).get("cloud.google.com/gke-nodepool") for f in flavors}
    if not pool:
        p.append(f"{where}: nodeSelector cloud.google.com/gke-nodepool missing (the DWS node pool)")
    elif flavors and pool not in pools:
        p.append(f"{where}: node pool {pool!r} is not the ResourceFlavor's ({sorted(x for x in pools if x)})")
    if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []) or []):
        p.append(f"{where}: toleration for nvidia.com/gpu missing")
    subdomain = pod.get("subdomain")
    svc = [o for o in objs.get(("v1", "Service"), []) if o["metadata"]["name"] == subdomain]
    if not svc:
        p.append(f"{where}: template subdomain {subdomain!r} has no Service of that name")
    elif svc[0].get("spec", {}).get("clusterIP") != "None":
        p.append(f"{where}: Service {subdomain} must be headless (clusterIP: None)")
    elif (svc[0]["spec"].get("selector") or {}).get("batch.kubernetes.io/job-name") != name:
        p.append(f"{where}: Service {subdomain} must select batch.kubernetes.io/job-name={name}")
    containers = pod.get("containers", []) or []
    if len(containers) != 1:
        p.append(f"{where}: expected exactly one container, got {len(containers)}")
        return p
    c = containers[0]
    env = env_map(c)
    cmd = c.get("command", []) or []
    gpus = (c.get("resources", {}).get("limits") or {}).get("nvidia.com/gpu")
    if cmd[:2] != ["dataflux-launch", "--nproc-per-node"] or cmd[3:] != ["--", "batch-inference"]:
        p.append(f"{where}: command must be dataflux-launch --nproc-per-node N -- batch-inference, got {cmd}")
    else:
        if str(cmd[2]) != str(gpus):
            p.append(f"{where}: --nproc-per-node {cmd[2]} != nvidia.com/gpu limit {gpus}")
    if str(env.get("DATAFLUX_NPROC_PER_NODE", {}).get("value")) != str(gpus):
        p.append(f"{where}: DATAFLUX_NPROC_PER_NODE != nvidia.com/gpu limit {gpus}")
    if str(env.get("DATAFLUX_NNODES", {}).get("value")) != str(spec.get("completions")):
        p.append(f"{where}: DATAFLUX_NNODES != completions {spec.get('completions')}")
    if env.get("MASTER_ADDR", {}).get("value") != f"{name}-0.{subdomain}":
        p.append(f"{where}: MASTER_ADDR must be {name}-0.{subdomain} (index 0 via the headless Service)")
    port = str(env.get("MASTER_PORT", {}).get("value"))
    if svc and port not in {str(x.get("port")) for x in svc[0]["spec"].get("ports", [])}:
        p.append(f"{where}: MASTER_PORT {port} is not a port of Service {subdomain}")
    for var in ("DATAFLUX_INPUT", "DATAFLUX_OUTPUT"):
        if not str(env.get(var, {}).get("value", "")).startswith("gs://"):
            p.append(f"{where}: {var} must be a gs:// URL")
    checks = {
        "DATAFLUX_DTYPE": r"bf16|f16|f32",
        "DATAFLUX_FORMAT": r"csv|jsonl",
        "DATAFLUX_DEVICE": r"auto|cpu|cuda(:[0-9]+)?",
        "DATAFLUX_BATCH_SIZE": r"[1-9][0-9]*",
        "DATAFLUX_TOP_K": r"[1-9][0-9]*",
    }
    for var, rx in checks.items():
        if var in env and not re.fullmatch(rx, str(env[var].get("value", ""))):
            p.append(f"{where}: {var}={env[var].get('value')!r} does not match {rx}")
    if "DATAFLUX_RUN_ID" not in env:
        p.append(f"{where}: DATAFLUX_RUN_ID missing (a retried index must keep the run id)")
    mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts", []) or []}
    vols = {v.get("name"): v for v in pod.get("volumes", []) or []}
    shm = vols.get(mounts.get("/dev/shm"), {})
    if (shm.get("emptyDir") or {}).get("medium") != "Memory":
        p.append(f"{where}: /dev/shm must be an emptyDir with medium: Memory")
    if "/usr/local/gib" not in mounts:
        p.append(f"{where}: the gIB plugin (/usr/local/gib) is not mounted")
    return p


def policy_kueue(objs: dict[tuple[str, str], list[dict]], jobs: list[dict]) -> list[str]:
    p = []
    kv = "kueue.x-k8s.io/v1beta2"
    names = {k: {o["metadata"]["name"]: o for o in objs.get((kv, k), [])}
             for k in ("ResourceFlavor", "AdmissionCheck", "ProvisioningRequestConfig", "ClusterQueue", "LocalQueue")}
    for n, ac in names["AdmissionCheck"].items():
        spec = ac.get("spec", {})
        if spec.get("controllerName") != "kueue.x-k8s.io/provisioning-request":
            p.append(f"AdmissionCheck/{n}: controllerName must be kueue.x-k8s.io/provisioning-request")
        ref = spec.get("parameters") or {}
        if ref.get("kind") != "ProvisioningRequestConfig" or ref.get("name") not in names["ProvisioningRequestConfig"]:
            p.append(f"AdmissionCheck/{n}: parameters must name an existing ProvisioningRequestConfig, got {ref}")
    for n, prc in names["ProvisioningRequestConfig"].items():
        spec = prc.get("spec", {})
        if spec.get("provisioningClassName") != "queued-provisioning.gke.io":
            p.append(f"ProvisioningRequestConfig/{n}: provisioningClassName must be queued-provisioning.gke.io")
        if "nvidia.com/gpu" not in (spec.get("managedResources") or []):
            p.append(f"ProvisioningRequestConfig/{n}: managedResources must include nvidia.com/gpu")
    gpu_quota = 0
    for n, cq in names["ClusterQueue"].items():
        spec = cq.get("spec", {})
        for g, rg in enumerate(spec.get("resourceGroups", []) or []):
            covered = rg.get("coveredResources", [])
            for f in rg.get("flavors", []) or []:
                if f.get("name") not in names["ResourceFlavor"]:
                    p.append(f"ClusterQueue/{n}: flavor {f.get('name')!r} has no ResourceFlavor")
                res = [r.get("name") for r in f.get("resources", []) or []]
                # the CRD's CEL rule (sizes) and Kueue's webhook (names, order)
                if res != covered:
                    p.append(f"ClusterQueue/{n}: resourceGroups[{g}] flavor {f.get('name')}: resources {res} != coveredResources {covered}")
                for r in f.get("resources", []) or []:
                    if r.get("name") == "nvidia.com/gpu":
                        gpu_quota += int(str(r.get("nominalQuota", 0)))
        checks = [c.get("name") for c in ((spec.get("admissionChecksStrategy") or {}).get("admissionChecks") or [])]
        if not checks:
            p.append(f"ClusterQueue/{n}: no admission check: DWS would never be asked for nodes")
        for c in checks:
            if c not in names["AdmissionCheck"]:
                p.append(f"ClusterQueue/{n}: admission check {c!r} has no AdmissionCheck")
    for n, lq in names["LocalQueue"].items():
        if lq.get("spec", {}).get("clusterQueue") not in names["ClusterQueue"]:
            p.append(f"LocalQueue/{n}: clusterQueue {lq.get('spec', {}).get('clusterQueue')!r} has no ClusterQueue")
    for job in jobs:
        spec = job.get("spec", {})
        for c in spec.get("template", {}).get("spec", {}).get("containers", []) or []:
            gpus = int(str((c.get("resources", {}).get("limits") or {}).get("nvidia.com/gpu", 0)))
            need = gpus * int(spec.get("parallelism") or 1)
            if names["ClusterQueue"] and need > gpu_quota:
                p.append(f"Job/{job['metadata']['name']}: needs {need} GPUs but the ClusterQueue quota is {gpu_quota}: it would never be admitted")
    return p


def cmd_policy(paths: list[str]) -> list[str]:
    objs: dict[tuple[str, str], list[dict]] = {}
    docs = load_docs(paths)
    for _, _, doc in docs:
        objs.setdefault((doc.get("apiVersion"), doc.get("kind")), []).append(doc)
    problems = []
    jobs = []
    for path, _, doc in docs:
        if doc.get("kind") == "Job":
            jobs.append(doc)
            problems += policy_job(ident(path, doc), doc, objs)
        elif doc.get("kind") == "Service":
            for n, port in enumerate(doc.get("spec", {}).get("ports", []) or []):
                if port.get("protocol", "TCP") not in PROTOCOLS:
                    problems.append(f"{ident(path, doc)}: ports[{n}].protocol={port.get('protocol')!r}")
    if not jobs:
        problems.append("no Job among the rendered manifests")
    problems += policy_kueue(objs, jobs)
    if not problems:
        print(f"PASS policy: {len(jobs)} Job(s), {sum(len(v) for v in objs.values())} objects")
    return problems


# --------------------------------------------------------------------------- env
ALLOWED_PREFIXES = ("NCCL_", "HF_")            # libnccl / gIB; Hugging Face hub client
ALLOWED_NAMES = {"RUST_LOG", "RUST_BACKTRACE", "LD_LIBRARY_PATH", "PATH"}
SOURCE_DIRS = ["examples/src", "distributed/src", "dataflux/src", "inference/src"]
LAUNCHER_VARS = {"DATAFLUX_NNODES", "DATAFLUX_NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT"}


def job_env_names(paths: list[str]) -> list[str]:
    names = []
    for _, _, doc in load_docs(paths):
        if doc.get("kind") != "Job":
            continue
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in (pod.get("containers", []) or []) + (pod.get("initContainers", []) or []):
            names += [e["name"] for e in c.get("env", []) or []]
    return sorted(set(names))


def cmd_env_names(paths: list[str]) -> list[str]:
    for n in job_env_names(paths):
        print(n)
    return []


def cmd_env_check(root: str, paths: list[str]) -> list[str]:
    rootp = pathlib.Path(root)
    sources = []
    for d in SOURCE_DIRS:
        sources += [(f, f.read_text(encoding="utf-8", errors="replace")) for f in sorted((rootp / d).rglob("*.rs"))]
    problems = []
    for name in job_env_names(paths):
        if name.startswith(ALLOWED_PREFIXES) or name in ALLOWED_NAMES:
            print(f"ok   {name}: consumed outside our code (allow-list)")
            continue
        hits = [str(f.relative_to(rootp)) for f, text in sources if f'"{name}"' in text]
        if hits:
            print(f"ok   {name}: read in {', '.join(hits)}")
            continue
        where = ("distributed/src (dataflux-launch)" if name in LAUNCHER_VARS
                 else "examples/src (batch-inference) or the library it configures")
        problems.append(f"{name} is set by the Job but no Rust source reads it: expected the string "
                        f"literal \"{name}\" in {where}; searched {', '.join(SOURCE_DIRS)} "
                        f"({len(sources)} .rs files)")
    return problems


# --------------------------------------------------------------------------- main
def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "split" and len(args) >= 2:
        problems = cmd_split(args[0], args[1:])
    elif cmd == "crd" and args:
        problems = cmd_crd(args)
    elif cmd == "policy" and args:
        problems = cmd_policy(args)
    elif cmd == "env-names" and args:
        problems = cmd_env_names(args)
    elif cmd == "env-check" and len(args) >= 2:
        problems = cmd_env_check(args[0], args[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for prob in problems:
        print(f"FAIL {prob}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
