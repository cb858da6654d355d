"""The driver's contracts are real: the pools satisfy them, and the driver (``trainer/grpo.py`` and its step pipeline
``trainer/pipeline.py``) calls nothing else on them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from easyr1.core.protocols import conformance_problems, protocol_members
from easyr1.editing.protocol import DrainsMetrics, Editor
from easyr1.reward.judge.protocol import Judge
from easyr1.rollout.protocol import Rollout
from easyr1.trainer.contracts import TrainingActor

TRAINER = Path(__file__).resolve().parents[2] / "python" / "easyr1" / "trainer"
GRPO = TRAINER / "grpo.py"
DRIVER_FILES = (GRPO, TRAINER / "pipeline.py")
CONTRACTS = {
    "actor": [TrainingActor],
    "rollout": [Rollout, DrainsMetrics],  # drained for the val row when it keeps counters (the Ray pool)
    "editor": [Editor, DrainsMetrics],
    "judge": [Judge, DrainsMetrics],
}


def test_the_pools_satisfy_the_driver_contracts():
    from easyr1.actor.pool import ActorPool
    from easyr1.editing.pool import EditorPool
    from easyr1.rollout.pool import RolloutPool

    assert conformance_problems(ActorPool, TrainingActor) == []
    assert conformance_problems(RolloutPool, Rollout) == []
    assert conformance_problems(EditorPool, Editor) == [] and conformance_problems(EditorPool, DrainsMetrics) == []


def _component_calls() -> dict[str, set[str]]:
    """``self.c.<component>.<member>`` uses in the driver's files, by component."""
    used: dict[str, set[str]] = {}
    nodes = [node for path in DRIVER_FILES for node in ast.walk(ast.parse(path.read_text()))]
    for node in nodes:
        if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Attribute):
            continue
        inner = node.value
        if isinstance(inner.value, ast.Attribute) and inner.value.attr == "c" and inner.attr in CONTRACTS:
            used.setdefault(inner.attr, set()).add(node.attr)
    return used


def test_the_driver_calls_only_what_the_contracts_declare():
    used = _component_calls()
    assert {"actor", "rollout"} <= set(used), used  # the scan sees the driver's calls
    for component, members in used.items():
        declared = {m for protocol in CONTRACTS[component] for m in protocol_members(protocol)}
        assert members <= declared, (component, members - declared)


@pytest.mark.parametrize("component", ["editor", "judge"])
def test_no_getattr_probe_of_the_editor_or_judge(component):
    for path in DRIVER_FILES:
        assert f"getattr(self.c.{component}," not in path.read_text(), path.name


def test_the_http_judge_drains_its_metrics_through_the_protocol():
    from easyr1.reward.judge.openai_judge import OpenAIJudge

    assert conformance_problems(OpenAIJudge, DrainsMetrics) == []
