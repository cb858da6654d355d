"""The Helm chart: lint, render with the default, small-cluster and large-cluster values, and check every object
against Kubernetes 1.30 and the KubeRay v1 CRDs, KubeRay's Go-side rules, the placement contract with the
training config, monitoring wiring and hardening."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml
from k8s_testkit import (
    CHART_DIR,
    NAMESPACE,
    POOLS,
    RELEASE,
    VALUES_FILES,
    by_kind,
    container_mounts,
    core_errors,
    crd_errors,
    documents,
    load_values,
    only,
    placement_errors,
    pod_hardening_errors,
    pod_template_core_errors,
    pod_templates,
    raycluster_name_errors,
    raycluster_spec_errors,
    render,
    under_any,
)

from easyr1.config import load_config

helm_python = pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency")
LAYOUTS = list(VALUES_FILES)


@cache
def rendered(layout: str) -> tuple[dict[str, str], tuple]:
    out = render(load_values(layout))
    return out, tuple(json.dumps(d, sort_keys=True) for d in documents(out))


def docs_of(layout: str) -> list[dict]:
    return [json.loads(d) for d in rendered(layout)[1]]


@pytest.fixture(scope="module")
def training_config(tmp_path_factory):
    """(path, loaded config) of the ConfigMap's config.yaml per layout, loaded once (loading takes a second)."""
    folder = tmp_path_factory.mktemp("training-configs")
    loaded: dict[str, tuple[Path, object]] = {}

    def get(layout: str):
        if layout not in loaded:
            cm = next(d for d in by_kind(docs_of(layout), "ConfigMap") if "config.yaml" in d.get("data", {}))
            path = folder / f"{layout}.yaml"
            path.write_text(cm["data"]["config.yaml"])
            loaded[layout] = (path, load_config(path))
        path, cfg = loaded[layout]
        return path, copy.deepcopy(cfg)

    return get


# ------------------------------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("layout", LAYOUTS)
def test_helm_lint_strict_is_clean(layout):
    report = helm_python.lint(str(CHART_DIR), load_values(layout), strict=True, kube_version="v1.30.0")
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and serious == [], report


# ---------------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_rendered_object_is_valid(layout, shared_dir):
    docs = docs_of(layout)
    kinds = sorted({d["kind"] for d in docs})
    assert {"RayCluster", "ConfigMap", "PodMonitor"} <= set(kinds), kinds
    problems = []
    for doc in docs:
        api = doc["apiVersion"]
        if api == "ray.io/v1":
            problems += crd_errors(shared_dir, doc)
            for where, template in pod_templates(doc):
                problems += [f"{where}: {p}" for p in pod_template_core_errors(template)]
        elif api == "monitoring.coreos.com/v1":
            assert doc["kind"] in ("PodMonitor", "PrometheusRule"), doc["kind"]  # checked by the monitoring tests
        else:
            problems += core_errors(doc)
    assert problems == []


def test_strict_crd_check_rejects_an_unknown_field(shared_dir):
    cluster = only(docs_of("default"), "RayCluster")
    cluster["spec"]["workerGroupSpecs"][0]["gpus"] = 2  # a values key leaking into the resource
    cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resource"] = {}
    problems = crd_errors(shared_dir, cluster)
    assert any("gpus" in p for p in problems) and any("resource" in p for p in problems)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_raycluster_meets_kuberay_go_rules(layout):
    cluster = only(docs_of(layout), "RayCluster")
    assert raycluster_name_errors(cluster["metadata"]["name"]) == []
    assert raycluster_spec_errors(cluster["spec"], cluster["metadata"].get("annotations")) == []
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_release_easyr1_gives_the_cluster_name_easyr1():
    assert only(docs_of("default"), "RayCluster")["metadata"]["name"] == "easyr1"
    other = documents(render(None, release="prod"))
    assert only(other, "RayCluster")["metadata"]["name"] == "prod-easyr1"
    pinned = documents(render({"fullnameOverride": "rl"}, release="prod"))
    assert only(pinned, "RayCluster")["metadata"]["name"] == "rl"


# ------------------------------------------------------------------------------------------- training config


@pytest.mark.parametrize("layout", LAYOUTS)
def test_configmap_config_loads_and_validates(layout, training_config, capsys):
    from easyr1.cli import main

    path, cfg = training_config(layout)
    assert main(["validate-config", str(path)]) == 0
    assert "valid" in capsys.readouterr().out
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["trainingConfig"]
    layout_values = (load_values(layout) or {}).get("trainingConfig", {})
    expected_lr = (
        layout_values.get("worker", {})
        .get("actor", {})
        .get("optim", {})
        .get("lr", values["worker"]["actor"]["optim"]["lr"])
    )
    assert cfg.worker.actor.optim.lr == pytest.approx(float(expected_lr))
    assert cfg.worker.rollout.n == layout_values.get("worker", {}).get("rollout", {}).get("n", 4)
    assert cfg.judge.api_key_file == "/var/run/secrets/easyr1/judge/api-key"
    assert cfg.cluster.address is None  # KubeRay provides RAY_ADDRESS


@pytest.mark.parametrize("layout", LAYOUTS)
def test_worker_groups_advertise_what_the_placement_asks_for(layout, training_config):
    _, cfg = training_config(layout)
    cluster = only(docs_of(layout), "RayCluster")
    assert [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]] == list(POOLS)
    assert {getattr(cfg.cluster, p).resource for p in POOLS} == set(POOLS)
    assert placement_errors(cfg, cluster["spec"]) == []


def test_placement_checker_catches_a_mismatch(training_config):
    _, cfg = training_config("default")
    cluster = only(docs_of("default"), "RayCluster")
    cfg.cluster.editor.resource = "image_editor"
    cfg.worker.actor.num_workers = 3
    problems = placement_errors(cfg, cluster["spec"])
    assert any("image_editor" in p for p in problems) and any("pool actor" in p for p in problems)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_config_paths_lie_on_mounted_volumes(layout, training_config):
    _, cfg = training_config(layout)
    cluster = only(docs_of(layout), "RayCluster")
    templates = dict(pod_templates(cluster))
    head_mounts = container_mounts(templates["head"])
    worker_mounts = [container_mounts(t) for where, t in templates.items() if where != "head"]
    for path in (cfg.data.train_files, cfg.judge.cache_dir, cfg.judge.api_key_file, cfg.trainer.output_dir):
        assert under_any(path, head_mounts), path
    for path in (cfg.worker.actor.model.model_path, cfg.worker.image_edit.model_path, cfg.trainer.output_dir):
        assert all(under_any(path, mounts) for mounts in worker_mounts), path


# --------------------------------------------------------------------------------------- template-time checks


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"trainingConfig": {"worker": {"actor": {"num_workers": 3}}}}, "workerGroups.actor holds 2"),
        ({"workerGroups": {"rollout": {"gpus": 1}}}, "workerGroups.rollout"),
        ({"trainingConfig": {"cluster": {"editor": {"resource": "actor"}}}}, "each pool needs a resource of its own"),
        ({"trainingConfig": {"cluster": {"actor": {"resource": None}}}}, "trainingConfig.cluster.actor.resource"),
        ({"trainingConfig": {"worker": {"rollout": {False: 8}}}}, "bare `n:` means false"),
        ({"trainingConfig": {"telemetry": {"prometheus": {"host": "127.0.0.1"}}}}, "loopback"),
        ({"workerGroups": {"editor": {"minReplicas": 5}}}, "minReplicas (5) is above maxReplicas"),
        ({"fullnameOverride": "1st"}, "DNS-1035"),
    ],
)
def test_render_refuses_layouts_that_cannot_run(values, message):
    with pytest.raises(helm_python.HelmError) as err:
        render(values)
    assert message in str(err.value)


def test_explicit_custom_resources_and_autoscaling_are_honoured(shared_dir):
    values = {
        "autoscaling": {"enabled": True},
        "workerGroups": {
            "editor": {
                "replicas": 0,
                "minReplicas": 0,
                "maxReplicas": 4,
                "customResources": {"editor": 2, "accelerator_h100": 1},
            }
        },
    }
    docs = documents(render(values))
    cluster = only(docs, "RayCluster")
    editor = cluster["spec"]["workerGroupSpecs"][2]
    assert json.loads(editor["rayStartParams"]["resources"].strip("'")) == {"editor": 2, "accelerator_h100": 1}
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    options = cluster["spec"]["autoscalerOptions"]
    assert options["resources"]["limits"] and options["securityContext"]["allowPrivilegeEscalation"] is False
    assert crd_errors(shared_dir, cluster) == [] and raycluster_spec_errors(cluster["spec"]) == []


# ------------------------------------------------------------------------------------------------ hardening


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pods_are_non_root_and_have_requests_and_limits(layout):
    cluster = only(docs_of(layout), "RayCluster")
    problems = []
    for where, template in pod_templates(cluster):
        problems += pod_hardening_errors(where, template)
    assert problems == []
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    merged_gpus = {
        p: (
            (load_values(layout) or {})
            .get("workerGroups", {})
            .get(p, {})
            .get("gpus", values["workerGroups"][p]["gpus"])
        )
        for p in POOLS
    }
    for pool, group in groups.items():
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == merged_gpus[pool]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert not any(k.endswith("gpu") for k in head)


def test_secrets_are_referenced_never_embedded():
    docs = docs_of("default")
    assert by_kind(docs, "Secret") == []
    head = only(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    judge = next(v for v in head["volumes"] if v["name"] == "judge-key")
    assert judge["secret"]["secretName"] == "easyr1-judge"
    env = {e["name"]: e for e in head["containers"][0]["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "easyr1-wandb",
        "key": "api-key",
        "optional": True,
    }
    workers = only(docs, "RayCluster")["spec"]["workerGroupSpecs"]
    assert all("WANDB_API_KEY" not in json.dumps(g) and "judge-key" not in json.dumps(g) for g in workers)
    env_mode = documents(render({"secrets": {"judge": {"mount": "env"}}}))
    head_env = {
        e["name"]: e
        for e in only(env_mode, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert head_env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "easyr1-judge"
    cm = next(d for d in by_kind(env_mode, "ConfigMap") if "config.yaml" in d["data"])
    assert "api_key_file" not in cm["data"]["config.yaml"]


def test_storage_claims_are_kept_or_reused():
    claims = by_kind(docs_of("default"), "PersistentVolumeClaim")
    assert {c["metadata"]["name"] for c in claims} == {"easyr1-models", "easyr1-data", "easyr1-checkpoints"}
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in claims)
    reused = documents(render({"storage": {"checkpoints": {"existingClaim": "team-ckpt"}}}))
    assert "easyr1-checkpoints" not in {c["metadata"]["name"] for c in by_kind(reused, "PersistentVolumeClaim")}
    head = only(reused, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    assert {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "team-ckpt", "readOnly": False}} in head[
        "volumes"
    ]


# ----------------------------------------------------------------------------------------------- monitoring


def _pod_labels(cluster: dict, where: str, template: dict) -> dict[str, str]:
    """The labels a pod gets: the template's plus those KubeRay adds."""
    name = cluster["metadata"]["name"]
    extra = {"ray.io/cluster": name, "ray.io/is-ray-node": "yes"}
    if where == "head":
        extra.update({"ray.io/node-type": "head", "ray.io/group": "headgroup"})
    else:
        extra.update({"ray.io/node-type": "worker", "ray.io/group": where.split()[-1]})
    return {**template["metadata"].get("labels", {}), **extra}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pod_monitors_scrape_the_driver_and_ray(layout, training_config):
    _, cfg = training_config(layout)
    docs = docs_of(layout)
    cluster = only(docs, "RayCluster")
    monitors = {m["metadata"]["name"]: m for m in by_kind(docs, "PodMonitor")}
    pods = [(where, _pod_labels(cluster, where, t), t["spec"]["containers"][0]) for where, t in pod_templates(cluster)]

    def selected(monitor):
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        wanted = monitor["spec"]["selector"]["matchLabels"]
        return [(where, c) for where, labels, c in pods if wanted.items() <= labels.items()]

    driver = monitors[f"{RELEASE}-driver"]
    targets = selected(driver)
    assert [w for w, _ in targets] == ["head"]
    port = driver["spec"]["podMetricsEndpoints"][0]["port"]
    ports = {p["name"]: p["containerPort"] for p in targets[0][1]["ports"]}
    assert ports[port] == cfg.telemetry.prometheus.port == 9400
    assert driver["spec"]["jobLabel"] == "ray.io/cluster"
    ray = monitors[f"{RELEASE}-ray"]
    targets = selected(ray)
    assert len(targets) == 1 + len(POOLS)
    for _, container in targets:
        assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def test_prometheus_rule_embeds_the_rules_file_and_passes_promtool(tmp_path):
    rules_file = CHART_DIR / "files" / "prometheus-rules.yaml"
    rules = by_kind(docs_of("default"), "PrometheusRule")
    assert rules_file.is_file(), f"{rules_file} is missing"
    spec = only(rules, "PrometheusRule")["spec"]
    assert spec == yaml.safe_load(rules_file.read_text())
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "check", "rules", str(extracted)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboards_ship_as_labelled_configmaps():
    files = sorted((CHART_DIR / "files" / "dashboards").glob("*.json"))
    maps = [
        d for d in by_kind(docs_of("default"), "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(maps) == len(files)
    shipped = {key: json.loads(text) for m in maps for key, text in m["data"].items()}
    assert shipped == {f.name: json.loads(f.read_text()) for f in files}
    for m in maps:
        assert m["metadata"]["annotations"]["grafana_folder"] == "easyr1"
        assert len(json.dumps(m)) < 1024 * 1024


def test_chart_renders_without_dashboards_or_rules(tmp_path):
    chart_copy = tmp_path / "chart"
    shutil.copytree(CHART_DIR, chart_copy, ignore=shutil.ignore_patterns("files"))
    docs = documents(render(None, chart_dir=chart_copy))
    assert by_kind(docs, "PrometheusRule") == []
    assert not [d for d in by_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    (chart_copy / "files" / "dashboards").mkdir(parents=True)
    (chart_copy / "files" / "dashboards" / "placeholder_board.json").write_text('{"title": "placeholder"}')
    (chart_copy / "files" / "prometheus-rules.yaml").write_text("groups:\n  - name: placeholder\n    rules: []\n")
    docs = documents(render(None, chart_dir=chart_copy))
    assert only(docs, "PrometheusRule")["spec"] == {"groups": [{"name": "placeholder", "rules": []}]}
    board = next(d for d in by_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"])
    assert board["metadata"]["name"] == "easyr1-dashboard-placeholder-board"


def test_monitoring_objects_can_be_turned_off():
    values = {
        "monitoring": {
            "podMonitors": {"enabled": False},
            "prometheusRule": {"enabled": False},
            "grafanaDashboards": {"enabled": False},
        }
    }
    kinds = {d["kind"] for d in documents(render(values))}
    assert kinds == {"RayCluster", "ConfigMap", "PersistentVolumeClaim"}


# ------------------------------------------------------------------------------------------- values schema


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"workerGroups": {"actor": {"gpus": "2"}}}, "/workerGroups/actor/gpus"),
        ({"workerGroups": {"editor": {"replicas": -1}}}, "/workerGroups/editor/replicas"),
        ({"workerGroups": {"critic": {"replicas": 1, "gpus": 1}}}, "critic"),
        ({"secrets": {"judge": {"apiKey": "sk-not-a-real-key"}}}, "/secrets/judge"),
        ({"trainingConfig": {"judge": {"api_key": "sk-not-a-real-key"}}}, "/trainingConfig/judge"),
        ({"workerGroups": {"actor": {"rayStartParams": {"resources": "'{}'"}}}}, "propertyName 'resources'"),
        ({"workerGroups": {"rollout": {"resources": {"limits": None}}}}, "/workerGroups/rollout/resources"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ],
)
def test_values_schema_rejects_bad_values(values, where):
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values)
    assert where in str(err.value)


def test_values_schema_is_draft7_and_accepts_the_shipped_values():
    import jsonschema

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
    chart = helm_python.Chart.load(str(CHART_DIR))
    try:
        for layout in LAYOUTS:
            chart.validate_schema(load_values(layout) or {})
    finally:
        chart.close()
