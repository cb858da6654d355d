"""Every Ray pod waits the trainer's stop grace (trainer.stop_grace_s) plus a margin before Kubernetes kills it."""

from __future__ import annotations

import copy

import pytest
from k8s_testkit import VALUES_FILES, by_kind, documents, load_values, pod_templates, render

from easyr1.config import TrainerConfig

pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency")


def graces(values: dict | None) -> list[int]:
    docs = documents(render(values))
    (cluster,) = by_kind(docs, "RayCluster")
    return [template["spec"]["terminationGracePeriodSeconds"] for _, template in pod_templates(cluster)]


@pytest.mark.parametrize("layout", list(VALUES_FILES))
def test_pods_wait_the_trainers_grace_plus_margin(layout: str) -> None:
    values = load_values(layout)
    found = graces(values)
    assert found and len(set(found)) == 1
    assert found[0] == 600 + 60
    assert TrainerConfig().stop_grace_s == 600  # the chart's default follows the config's


def test_grace_follows_the_training_config_and_margin() -> None:
    values = copy.deepcopy(load_values("default") or {})
    values.setdefault("trainingConfig", {}).setdefault("trainer", {})["stop_grace_s"] = 120
    values["terminationGraceMarginSeconds"] = 30
    assert set(graces(values)) == {150}
