"""The rollout protocols are the real contract: every registered engine class satisfies them, and the pool calls
nothing on an engine or on the actor pool that they do not declare."""

from __future__ import annotations

import ast
import inspect

import pytest

from easyr1.core.protocols import conformance_problems, protocol_members
from easyr1.core.registries import ENGINES
from easyr1.rollout import pool as pool_module
from easyr1.rollout.pool import RolloutPool
from easyr1.rollout.protocol import (
    EngineFactory,
    OwnsProcesses,
    Rollout,
    RolloutEngine,
    ScoresResponses,
    WeightReceiver,
    WeightSource,
)


@pytest.mark.parametrize("name", ENGINES.names())
def test_every_registered_engine_class_satisfies_the_engine_protocols(name):
    cls = ENGINES.load(name)
    facts = ENGINES.facts(name)
    assert conformance_problems(cls, RolloutEngine) == []
    assert conformance_problems(cls, EngineFactory) == []
    assert (conformance_problems(cls, OwnsProcesses) == []) == facts.owns_processes
    assert (conformance_problems(cls, ScoresResponses) == []) == facts.supports_log_probs


def test_the_engine_protocol_declares_weight_receiving():
    assert set(protocol_members(WeightReceiver)) < set(protocol_members(RolloutEngine))
    assert {"ping", "generate", "weight_dtype", "num_sync_ranks", "init_weight_sync", "receive_weights"} <= set(
        protocol_members(RolloutEngine)
    )


def test_the_pool_is_the_drivers_rollout():
    assert conformance_problems(RolloutPool, Rollout) == []


def _pool_source() -> ast.Module:
    return ast.parse(inspect.getsource(pool_module))


def test_the_pool_calls_only_declared_engine_methods():
    """Every ``<engine>.<method>.remote(...)`` in rollout/pool.py names a protocol member."""
    called = {
        node.value.attr
        for node in ast.walk(_pool_source())
        if isinstance(node, ast.Attribute) and node.attr == "remote" and isinstance(node.value, ast.Attribute)
    }
    declared = set(protocol_members(RolloutEngine)) | set(protocol_members(OwnsProcesses))
    assert called and called <= declared, sorted(called - declared)


def test_the_pool_uses_only_declared_actor_pool_members():
    used = {
        node.attr
        for node in ast.walk(_pool_source())
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "actor_pool"
    }
    assert used and used <= set(protocol_members(WeightSource)), sorted(used - set(protocol_members(WeightSource)))


def test_the_actor_pool_is_a_weight_source():
    from easyr1.actor.pool import ActorPool

    assert conformance_problems(ActorPool, WeightSource) == []
