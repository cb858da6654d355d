"""Offline checks of the Helm chart and the RayJobs: render, schema validation (Kubernetes 1.30 core kinds and the
KubeRay v1 CRDs with unknown fields rejected), KubeRay's Go-side rules, and the placement contract between the
training config and the worker groups. Written from ../shared/notes/k8s-validation.md and KubeRay's validation
rules; each checker returns a list of problems (empty = fine) so tests can also feed it bad input.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm"
K8S_DIR = REPO_ROOT / "k8s"
KUBE_VERSION = "1.30.0"
RELEASE = "easyr1"
NAMESPACE = "easyr1"
# Values files rendered in the tests: the chart's defaults plus the example layouts under helm/ci/.
VALUES_FILES = {
    "default": None,
    "small-cluster": CHART_DIR / "ci" / "small-cluster-values.yaml",
    "large-cluster": CHART_DIR / "ci" / "large-cluster-values.yaml",
}
POOLS = ("actor", "rollout", "editor")
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_RAYCLUSTER_NAME = 53
MAX_RAYJOB_NAME = 47
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")", "<", ">", ">>"}


# ---------------------------------------------------------------------------------------------------- rendering


def load_values(name: str) -> dict[str, Any] | None:
    path = VALUES_FILES[name]
    return None if path is None else yaml.safe_load(path.read_text())


def render(
    values: dict[str, Any] | None = None,
    *,
    chart_dir: Path = CHART_DIR,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """The chart's templates rendered offline: {template path: text}."""
    import helm_python

    chart = helm_python.Chart.load(str(chart_dir))
    try:
        return chart.render(values, name=release, namespace=namespace, is_install=True)
    finally:
        chart.close()


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt and empty documents left out)."""
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def k8s_file(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]


# ---------------------------------------------------------------------------------------- schema validation


def _strict(node: Any) -> Any:
    """Reject unknown fields the way the API server does: additionalProperties=false on every object schema that
    lists its properties and does not preserve unknown fields."""
    if isinstance(node, dict):
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@cache
def crd_validator(shared_dir: Path, kind: str):
    """A Draft-7 validator of the KubeRay v1 CRD of ``kind`` (RayCluster, RayJob), strict about unknown fields."""
    import jsonschema

    files = {
        "RayCluster": "ray.io_rayclusters.yaml",
        "RayJob": "ray.io_rayjobs.yaml",
        "RayService": "ray.io_rayservices.yaml",
    }
    crd = yaml.load(
        (shared_dir / "kuberay-crds" / files[kind]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


def crd_errors(shared_dir: Path, doc: dict[str, Any]) -> list[str]:
    validator = crd_validator(shared_dir, doc["kind"])
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    return problems + metadata_errors(doc.get("metadata") or {})


def metadata_errors(meta: dict[str, Any]) -> list[str]:
    """ObjectMeta checks the CRD schema leaves open (it types metadata as a bare object)."""
    problems = []
    allowed = {"name", "namespace", "labels", "annotations", "generateName"}
    problems += [f"metadata.{k}: unexpected" for k in meta if k not in allowed]
    for key, value in (meta.get("labels") or {}).items():
        if (
            not QUALIFIED_NAME.match(key)
            or not isinstance(value, str)
            or not LABEL_VALUE.match(value)
            or len(value) > 63
        ):
            problems.append(f"metadata.labels: invalid {key}={value!r}")
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            problems.append(f"metadata.annotations.{key}: not a string")
    return problems


def core_errors(doc: dict[str, Any]) -> list[str]:
    """Kubernetes 1.30 schema of a core kind (strict: unknown fields are errors)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}: {exc.message}"]
    return []


def pod_templates(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, PodTemplateSpec) of every pod a RayCluster or RayJob makes."""
    if doc["kind"] == "RayJob":
        spec = doc["spec"]
        if spec.get("submitterPodTemplate"):
            yield "submitter", spec["submitterPodTemplate"]
        if spec.get("rayClusterSpec"):
            yield from _cluster_pod_templates(spec["rayClusterSpec"])
    elif doc["kind"] == "RayCluster":
        yield from _cluster_pod_templates(doc["spec"])


def _cluster_pod_templates(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", spec["headGroupSpec"]["template"]
    for group in spec.get("workerGroupSpecs") or []:
        yield f"worker group {group['groupName']}", group["template"]


def pod_template_core_errors(template: dict[str, Any]) -> list[str]:
    """A pod template embedded in a custom resource, checked as a core v1 PodTemplate."""
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "embedded"}, "template": template}
    return core_errors(wrapped)


# -------------------------------------------------------------------------------------- KubeRay Go-side rules


def _resources_map(raw: str) -> dict[str, float]:
    """rayStartParams["resources"] as KubeRay reads it: surrounding quotes trimmed, then JSON."""
    value = json.loads(raw.strip("'\"` "))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return {str(k): float(v) for k, v in value.items()}


def raycluster_name_errors(name: str) -> list[str]:
    problems = []
    if len(name) > MAX_RAYCLUSTER_NAME:
        problems.append(f"RayCluster name {name!r} is longer than {MAX_RAYCLUSTER_NAME}")
    if not DNS1035.match(name):
        problems.append(f"RayCluster name {name!r} is not a DNS-1035 label")
    return problems


def raycluster_spec_errors(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """KubeRay's ValidateRayClusterSpec plus the replica rules of the notes."""
    problems: list[str] = []
    annotations = annotations or {}
    head = spec.get("headGroupSpec") or {}
    groups = [("Head", head)] + [(g.get("groupName", "?"), g) for g in spec.get("workerGroupSpecs") or []]
    for name, group in groups:
        containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or []
        if not containers:
            problems.append(f"{name}: the pod template has no container")
        params = group.get("rayStartParams") or {}
        if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and group.get("resources"):
            problems.append(f"{name}: resources set both in rayStartParams and the group's resources field")
        if "labels" in params:
            problems.append(f"{name}: rayStartParams['labels'] is not supported (use the group's labels field)")
        for key, value in (group.get("labels") or {}).items():
            if not QUALIFIED_NAME.match(key) or not LABEL_VALUE.match(str(value)):
                problems.append(f"{name}: invalid Ray label {key}={value!r}")
        if "resources" in params:
            try:
                _resources_map(params["resources"])
            except ValueError as exc:
                problems.append(f"{name}: rayStartParams['resources'] is not a JSON object: {exc}")
        if params.get("redis-username"):
            problems.append(f"{name}: redis-username in rayStartParams")
    names = [g.get("groupName") for g in spec.get("workerGroupSpecs") or []]
    if len(names) != len(set(names)):
        problems.append(f"worker group names repeat: {names}")
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    head_containers = ((head.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    head_env = {e.get("name"): e.get("value") for e in head_containers[0].get("env") or []}
    gcs_ft = bool(spec.get("gcsFaultToleranceOptions")) or annotations.get("ray.io/ft-enabled") == "true"
    if "RAY_REDIS_ADDRESS" in head_env and not gcs_ft:
        problems.append("RAY_REDIS_ADDRESS set without GCS fault tolerance")
    if "REDIS_USERNAME" in head_env:
        problems.append("REDIS_USERNAME env is not supported")
    if not autoscaling and str(head_env.get("RAY_enable_autoscaler_v2")).lower() in ("1", "true"):
        problems.append("RAY_enable_autoscaler_v2 set while enableInTreeAutoscaling is false")
    for group in spec.get("workerGroupSpecs") or []:
        name = group.get("groupName", "?")
        if group.get("suspend"):
            problems.append(f"{name}: suspended worker groups need a feature gate")
        if not autoscaling and ("minReplicas" not in group or "maxReplicas" not in group):
            problems.append(f"{name}: minReplicas and maxReplicas must be set without autoscaling")
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if not 0 <= low <= high:
            problems.append(f"{name}: need 0 <= minReplicas ({low}) <= maxReplicas ({high})")
    auth = (spec.get("authOptions") or {}).get("mode")
    if auth == "token":
        version = spec.get("rayVersion") or ""
        parts = re.match(r"^(\d+)\.(\d+)\.(\d+)", version)
        if not parts or tuple(map(int, parts.groups())) < (2, 52, 0):
            problems.append(f"authOptions.mode=token needs rayVersion >= 2.52.0 (got {version!r})")
    return problems


def entrypoint_errors(entrypoint: str) -> list[str]:
    """The entrypoint must be one command: with `a && b` KubeRay submits only `a`."""
    if not entrypoint or not entrypoint.strip():
        return ["empty entrypoint"]
    lexer = shlex.shlex(entrypoint, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        return [f"entrypoint does not parse: {exc}"]
    operators = [t for t in tokens if t in SHELL_OPERATORS]
    return [f"entrypoint chains commands with {operators}: only the first one is submitted"] if operators else []


def rayjob_errors(job: dict[str, Any]) -> list[str]:
    """KubeRay's ValidateRayJobMetadata/ValidateRayJobSpec plus the notes' clusterSelector and entrypoint rules."""
    problems: list[str] = []
    name = (job.get("metadata") or {}).get("name", "")
    if len(name) > MAX_RAYJOB_NAME:
        problems.append(f"RayJob name {name!r} is longer than {MAX_RAYJOB_NAME}")
    if not DNS1035.match(name):
        problems.append(f"RayJob name {name!r} is not a DNS-1035 label")
    spec = job.get("spec") or {}
    shutdown = bool(spec.get("shutdownAfterJobFinishes"))
    mode = spec.get("submissionMode", "K8sJobMode")
    selector = spec.get("clusterSelector") or {}
    ttl = spec.get("ttlSecondsAfterFinished", 0)
    backoff = spec.get("backoffLimit")
    if spec.get("suspend") and not shutdown:
        problems.append("suspend needs shutdownAfterJobFinishes")
    if ttl < 0:
        problems.append("ttlSecondsAfterFinished must be >= 0")
    if not shutdown and ttl > 0:
        problems.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
    if spec.get("deletionStrategy"):
        problems.append("deletionStrategy needs the RayJobDeletionPolicy feature gate")
    if not spec.get("rayClusterSpec") and not selector:
        problems.append("one of rayClusterSpec or clusterSelector must be set")
    if selector:
        if not selector.get("ray.io/cluster"):
            problems.append("clusterSelector needs ray.io/cluster (the RayCluster's name)")
        if mode == "SidecarMode":
            problems.append("clusterSelector is not supported in SidecarMode")
        if spec.get("suspend"):
            problems.append("clusterSelector mode cannot be suspended")
        if backoff is not None and backoff > 0:
            problems.append("backoffLimit > 0 does not work with clusterSelector")
        if spec.get("rayClusterSpec"):
            problems.append("both clusterSelector and rayClusterSpec are set")
    if mode == "InteractiveMode" and backoff is not None and backoff > 0:
        problems.append("backoffLimit is incompatible with InteractiveMode")
    if mode == "SidecarMode" and (spec.get("submitterPodTemplate") or spec.get("submitterConfig")):
        problems.append("SidecarMode supports no submitterPodTemplate/submitterConfig")
    if spec.get("rayClusterSpec"):
        problems += [
            f"rayClusterSpec: {p}"
            for p in raycluster_spec_errors(spec["rayClusterSpec"], (job.get("metadata") or {}).get("annotations"))
        ]
    if spec.get("runtimeEnvYAML"):
        try:
            yaml.safe_load(spec["runtimeEnvYAML"])
        except yaml.YAMLError as exc:
            problems.append(f"runtimeEnvYAML is not YAML: {exc}")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        problems.append("activeDeadlineSeconds must be > 0")
    if backoff is not None and backoff < 0:
        problems.append("backoffLimit must be >= 0")
    if mode == "K8sJobMode" and spec.get("submitterPodTemplate"):
        restart = spec["submitterPodTemplate"].get("spec", {}).get("restartPolicy")
        if restart not in (None, "Never"):
            problems.append("the submitter pod's restartPolicy must be Never")
    problems += entrypoint_errors(spec.get("entrypoint", ""))
    return problems


# ------------------------------------------------------------------------------------------ placement contract


def _cpu_cores(quantity: Any) -> float:
    text = str(quantity)
    return math.ceil(float(text[:-1]) / 1000) if text.endswith("m") else math.ceil(float(text))


def group_capacity(group: dict[str, Any]) -> dict[str, Any]:
    """What a pod of a worker group gives Ray: GPUs (from the *gpu limit, as KubeRay), CPUs, custom resources."""
    container = group["template"]["spec"]["containers"][0]
    limits = (container.get("resources") or {}).get("limits") or {}
    params = group.get("rayStartParams") or {}
    gpus = next((float(v) for k, v in limits.items() if k.endswith("gpu")), 0.0)
    if params.get("num-gpus"):
        gpus = float(params["num-gpus"])
    cpus = float(params["num-cpus"]) if params.get("num-cpus") else float(_cpu_cores(limits.get("cpu", 0)))
    custom = _resources_map(params["resources"]) if params.get("resources") else {}
    custom.update({k: float(v) for k, v in (group.get("resources") or {}).items()})
    return {"gpus": gpus, "cpus": cpus, "custom": custom}


def pool_sizes(cfg: Any) -> dict[str, int]:
    """How many Ray actors the driver starts per pool."""
    return {
        "actor": cfg.worker.actor.num_workers,
        "rollout": cfg.worker.rollout.num_engines,
        "editor": cfg.worker.image_edit.num_replicas,
    }


def placement_errors(cfg: Any, cluster_spec: dict[str, Any]) -> list[str]:
    """Does every pool of ``cfg`` land on, and fit in, the worker group of the same name — and only there?"""
    problems: list[str] = []
    groups = {g["groupName"]: g for g in cluster_spec.get("workerGroupSpecs") or []}
    autoscaling = bool(cluster_spec.get("enableInTreeAutoscaling"))
    head_params = (cluster_spec.get("headGroupSpec") or {}).get("rayStartParams") or {}
    head_custom = _resources_map(head_params["resources"]) if head_params.get("resources") else {}
    sizes = pool_sizes(cfg)
    for pool in POOLS:
        place = getattr(cfg.cluster, pool)
        if not place.resource:
            problems.append(f"cluster.{pool}.resource is empty: the pool would not be pinned to its group")
            continue
        owners = [name for name, g in groups.items() if place.resource in group_capacity(g)["custom"]]
        if owners != [pool]:
            problems.append(
                f"resource {place.resource!r} of pool {pool} is advertised by groups {owners}, expected [{pool!r}]"
            )
            continue
        if place.resource in head_custom:
            problems.append(f"the head advertises {place.resource!r}: {pool} workers could land on the head")
        group = groups[pool]
        capacity = group_capacity(group)
        limits = [
            capacity["custom"][place.resource] / place.resource_per_worker if place.resource_per_worker else math.inf
        ]
        if place.num_gpus_per_worker:
            limits.append(capacity["gpus"] / place.num_gpus_per_worker)
        if place.num_cpus_per_worker:
            limits.append(capacity["cpus"] / place.num_cpus_per_worker)
        per_pod = math.floor(min(limits)) if min(limits) != math.inf else sizes[pool]
        pods = group["maxReplicas"] if autoscaling else group.get("replicas", group.get("minReplicas", 0))
        if per_pod * pods < sizes[pool]:
            problems.append(
                f"pool {pool}: {sizes[pool]} workers need {place.num_gpus_per_worker} GPUs, {place.num_cpus_per_worker} CPUs "
                f"and {place.resource_per_worker} {place.resource!r} each; group {pool} holds {per_pod} per pod × {pods} pods"
            )
    rollout = cfg.worker.rollout
    if rollout.name == "vllm" and cfg.cluster.rollout.num_gpus_per_worker != rollout.tensor_parallel_size:
        problems.append(
            f"a vLLM engine spans tensor_parallel_size={rollout.tensor_parallel_size} GPUs but "
            f"cluster.rollout.num_gpus_per_worker={cfg.cluster.rollout.num_gpus_per_worker}"
        )
    return problems


# ------------------------------------------------------------------------------------------------------ pods


def container_mounts(template: dict[str, Any]) -> list[str]:
    return [m["mountPath"] for m in template["spec"]["containers"][0].get("volumeMounts") or []]


def under_any(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def pod_hardening_errors(where: str, template: dict[str, Any]) -> list[str]:
    """Non-root, no privilege escalation, capabilities dropped, requests and limits on every container."""
    problems = []
    spec = template["spec"]
    pod_sc = spec.get("securityContext") or {}
    if not pod_sc.get("runAsNonRoot"):
        problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
    for container in (spec.get("initContainers") or []) + spec["containers"]:
        sc = container.get("securityContext") or {}
        label = f"{where}/{container['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{label}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{label}: privileged")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{label}: capabilities not dropped")
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for name in ("cpu", "memory"):
                if name not in (resources.get(kind) or {}):
                    problems.append(f"{label}: no {kind}.{name}")
        gpu_limits = {k: v for k, v in (resources.get("limits") or {}).items() if k.endswith("gpu")}
        gpu_requests = {k: v for k, v in (resources.get("requests") or {}).items() if k.endswith("gpu")}
        if gpu_limits != gpu_requests:
            problems.append(f"{label}: GPU requests {gpu_requests} differ from limits {gpu_limits}")
    return problems
