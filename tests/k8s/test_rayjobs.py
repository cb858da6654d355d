"""k8s/rayjob.yaml (against the chart's RayCluster) and k8s/rayjob-standalone.yaml (its own rayClusterSpec):
KubeRay v1 CRD with unknown fields rejected, KubeRay's Go-side rules, one-command entrypoints, and the links to the
chart — the cluster name in clusterSelector, the config path the entrypoint reads."""

from __future__ import annotations

import copy
import shlex

import pytest
from k8s_testkit import (
    by_kind,
    core_errors,
    crd_errors,
    documents,
    entrypoint_errors,
    k8s_file,
    only,
    placement_errors,
    pod_hardening_errors,
    pod_template_core_errors,
    pod_templates,
    rayjob_errors,
    render,
)

from easyr1.config import load_config

JOB_FILES = ["rayjob.yaml", "rayjob-standalone.yaml"]


def rayjob(name: str) -> dict:
    return only(k8s_file(name), "RayJob")


@pytest.mark.parametrize("name", JOB_FILES)
def test_rayjob_is_valid_against_the_crd_and_go_rules(name, shared_dir):
    job = rayjob(name)
    assert job["apiVersion"] == "ray.io/v1"
    assert crd_errors(shared_dir, job) == []
    assert rayjob_errors(job) == []
    for doc in k8s_file(name):
        if doc["kind"] != "RayJob":
            assert core_errors(doc) == []


@pytest.mark.parametrize("name", JOB_FILES)
def test_embedded_pods_are_valid_and_hardened(name):
    job = rayjob(name)
    problems = []
    for where, template in pod_templates(job):
        problems += [f"{where}: {p}" for p in pod_template_core_errors(template)]
        problems += pod_hardening_errors(where, template)
    assert problems == []


@pytest.mark.parametrize("name", JOB_FILES)
def test_entrypoint_is_one_easyr1_train_command(name):
    entrypoint = rayjob(name)["spec"]["entrypoint"]
    assert entrypoint_errors(entrypoint) == []
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["easyr1", "train"] and len(argv) == 3


def test_cluster_selector_names_the_cluster_helm_install_easyr1_creates():
    job = rayjob("rayjob.yaml")
    docs = documents(render(None, release="easyr1"))
    cluster = only(docs, "RayCluster")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert "rayClusterSpec" not in job["spec"]
    assert job["spec"].get("backoffLimit", 0) == 0 and not job["spec"].get("shutdownAfterJobFinishes")


def test_entrypoint_reads_the_config_the_chart_mounts_on_the_head():
    config_path = shlex.split(rayjob("rayjob.yaml")["spec"]["entrypoint"])[2]
    docs = documents(render(None, release="easyr1"))
    head = only(docs, "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if m["name"] == "training-config")
    volume = next(v for v in head["volumes"] if v["name"] == "training-config")
    configmap = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == volume["configMap"]["name"])
    assert config_path.startswith(mount["mountPath"] + "/")
    assert config_path[len(mount["mountPath"]) + 1 :] in configmap["data"]


def test_standalone_job_config_loads_and_fits_its_own_cluster(tmp_path):
    docs = k8s_file("rayjob-standalone.yaml")
    job = only(docs, "RayJob")
    spec = job["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]["template"]["spec"]
    mount = next(m for m in head["containers"][0]["volumeMounts"] if m["name"] == "training-config")
    volume = next(v for v in head["volumes"] if v["name"] == "training-config")
    configmap = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == volume["configMap"]["name"])
    config_path = shlex.split(job["spec"]["entrypoint"])[2]
    key = config_path[len(mount["mountPath"]) + 1 :]
    path = tmp_path / key
    path.write_text(configmap["data"][key])
    cfg = load_config(path)
    assert placement_errors(cfg, spec) == []
    assert cfg.judge.api_key_file.startswith(
        next(m["mountPath"] for m in head["containers"][0]["volumeMounts"] if m["name"] == "judge-key")
    )
    assert job["spec"]["shutdownAfterJobFinishes"] is True and job["spec"]["ttlSecondsAfterFinished"] > 0


# ------------------------------------------------------------------------------------ the checkers themselves


def test_go_rules_flag_broken_rayjobs():
    good = rayjob("rayjob.yaml")
    cases = {
        "backoffLimit > 0 does not work with clusterSelector": {"backoffLimit": 2},
        "ttlSecondsAfterFinished needs shutdownAfterJobFinishes": {"ttlSecondsAfterFinished": 60},
        "activeDeadlineSeconds must be > 0": {"activeDeadlineSeconds": 0},
        "only the first one is submitted": {"entrypoint": "pip install foo && easyr1 train /etc/easyr1/config.yaml"},
        "clusterSelector needs ray.io/cluster": {"clusterSelector": {"app": "easyr1"}},
    }
    for message, change in cases.items():
        job = copy.deepcopy(good)
        job["spec"].update(change)
        assert any(message in p for p in rayjob_errors(job)), message
    job = copy.deepcopy(good)
    job["metadata"]["name"] = "easyr1-train-" + "x" * 40
    assert any("longer than 47" in p for p in rayjob_errors(job))
    job = copy.deepcopy(good)
    del job["spec"]["clusterSelector"]
    assert any("one of rayClusterSpec or clusterSelector" in p for p in rayjob_errors(job))


def test_go_rules_flag_broken_cluster_specs():
    job = rayjob("rayjob-standalone.yaml")
    spec = job["spec"]["rayClusterSpec"]
    broken = copy.deepcopy(job)
    group = broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["resources"] = {"actor": "2"}  # also in rayStartParams
    group["rayStartParams"]["labels"] = "pool=actor"
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][1]["minReplicas"] = 3
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][2]["rayStartParams"]["resources"] = '"{\\"editor\\": 1}"'
    problems = rayjob_errors(broken)
    assert any("both in rayStartParams" in p for p in problems)
    assert any("rayStartParams['labels']" in p for p in problems)
    assert any("minReplicas (3) <= maxReplicas (1)" in p for p in problems)
    assert any("editor: rayStartParams['resources'] is not a JSON object" in p for p in problems)
    assert rayjob_errors(job) == [] and spec


def test_strict_crd_check_rejects_unknown_rayjob_fields(shared_dir):
    job = rayjob("rayjob.yaml")
    job["spec"]["clusterSelecter"] = job["spec"]["clusterSelector"]
    job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["resource"] = {}
    problems = crd_errors(shared_dir, job)
    assert any("clusterSelecter" in p for p in problems) and any("'resource'" in p for p in problems)
