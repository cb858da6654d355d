"""The registries in ``easyr1.core`` are the single source of the names the config accepts and of their facts."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from easyr1.config import EasyR1Config, load_config
from easyr1.config.editing import ImageEditConfig
from easyr1.config.reward import RewardConfig
from easyr1.config.rollout import RolloutConfig
from easyr1.core.dimensions import DEFAULT_WEIGHTS, DIMENSIONS
from easyr1.core.registries import (
    EDITOR_BACKENDS,
    ENGINES,
    ESTIMATORS,
    JUDGE_BACKENDS,
    STRATEGIES,
    EngineFacts,
    EstimatorFacts,
)
from easyr1.core.registry import Registry


def errors_of(cfg: EasyR1Config) -> dict[str, str]:
    return {e.key: e.allowed for e in cfg.validate()}


def config(estimator: str, n: int) -> EasyR1Config:
    cfg = load_config(None, [])
    cfg.algorithm.adv_estimator, cfg.worker.rollout.n = estimator, n
    return cfg


def test_registry_loads_lazily_refuses_duplicates_and_names_the_key():
    reg: Registry[int] = Registry("thing", "section.thing")
    reg.register("dumps", 1, "json:dumps")
    reg.register("direct", 2, len)
    assert reg.names() == ["dumps", "direct"] and "dumps" in reg and len(reg) == 2
    assert reg.load("dumps") is json.dumps and reg.load("direct") is len and reg.facts("direct") == 2
    with pytest.raises(ValueError, match="already registered"):
        reg.register("dumps", 3, "json:loads")
    with pytest.raises(ValueError, match=r"section\.thing='nope': unknown thing; known: 'dumps', 'direct'"):
        reg.load("nope")
    reg.register("bad", 0, "json")  # no attribute part: refused when loaded, not at registration
    with pytest.raises(ValueError, match="module:attribute"):
        reg.load("bad")


def test_importing_the_config_and_the_registries_pulls_in_no_torch_or_ray():
    probe = (
        "import sys, json, easyr1.core.registries, easyr1.config; "
        "print(json.dumps(sorted(m for m in ('torch', 'ray', 'PIL', 'numpy', 'transformers') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("registry", "section", "key"),
    [
        (ENGINES, lambda: RolloutConfig(), "name"),
        (EDITOR_BACKENDS, lambda: ImageEditConfig(), "backend"),
        (STRATEGIES, lambda: RewardConfig(), "strategy"),
    ],
)
def test_config_choices_follow_the_registry(registry, section, key):
    cfg = replace(section(), **{key: "newcomer"})
    assert any(e.key.endswith(key) for e in cfg.validate("s"))
    facts = registry.facts(registry.names()[0])
    registry.register("newcomer", facts, "json:dumps")
    try:
        assert not any(e.key.endswith(key) for e in cfg.validate("s"))
    finally:
        registry.unregister("newcomer")


def test_adv_estimator_choices_and_group_size_come_from_the_registry():
    cfg = config("triplets", 2)
    assert "algorithm.adv_estimator" in errors_of(cfg)
    ESTIMATORS.register("triplets", EstimatorFacts(min_valid_per_group=3), "json:dumps")
    try:
        errors = errors_of(cfg)
        assert "algorithm.adv_estimator" not in errors
        assert errors["worker.rollout.n"] == "triplets needs at least 3 samples per prompt"
    finally:
        ESTIMATORS.unregister("triplets")


@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_n_of_one_is_refused_exactly_for_group_estimators(name):
    """reinforce_plus_plus_baseline centres on its group too: it was missing from the old hand-written list."""
    cfg = config(name, 1)
    refused = "worker.rollout.n" in errors_of(cfg)
    assert refused == ESTIMATORS.facts(name).needs_groups
    assert refused == (name != "reinforce_plus_plus")


def test_every_registered_implementation_loads_and_matches_its_facts():
    from easyr1.algorithms import get_advantage_estimator

    for name in ESTIMATORS:
        spec = get_advantage_estimator(name)
        assert callable(spec.fn) and spec.token_level == ESTIMATORS.facts(name).token_level
    for name in ENGINES:
        cls = ENGINES.load(name)
        facts: EngineFacts = ENGINES.facts(name)
        assert callable(cls.actor_options) and callable(cls.engine_kwargs)
        assert facts.supports_log_probs == hasattr(cls, "log_probs")
        assert facts.owns_processes == hasattr(cls, "shutdown")
    for name in EDITOR_BACKENDS:
        assert callable(EDITOR_BACKENDS.load(name).edit)
    for name in JUDGE_BACKENDS:
        assert callable(JUDGE_BACKENDS.load(name).score_batch)
    assert JUDGE_BACKENDS.names() == ["openai", "sandbox"]


def test_a_registered_strategy_is_what_combine_runs():
    """Adding a strategy is one registration: ``combine`` and the config validation both follow it."""
    import torch

    from easyr1.reward import combine

    scores = {d: torch.tensor([3.0, 7.0]) for d in DIMENSIONS}
    fmt = torch.tensor([5.0, 0.0])
    with pytest.raises(ValueError, match="unknown strategy"):
        combine(scores, fmt, "format_only")
    STRATEGIES.register(
        "format_only", STRATEGIES.facts("max_deviation"), lambda judge, formats, settings: 2.0 * formats
    )
    try:
        reward, valid = combine(scores, fmt, "format_only")
        assert reward.tolist() == [10.0, 0.0] and valid.all()
        assert not list(RewardConfig(strategy="format_only").validate("r"))
    finally:
        STRATEGIES.unregister("format_only")


def test_engine_hooks_give_the_constructor_its_keywords():
    """The pool no longer branches on the engine's name: each engine class says what it needs."""
    import inspect

    cfg = load_config(None, [])
    for name in ENGINES:
        cls = ENGINES.load(name)
        kwargs = cls.engine_kwargs(cfg, device="cpu", threads=2)
        params = set(inspect.signature(cls.__init__).parameters) - {"_ray_trace_ctx"}  # Ray adds it
        assert set(kwargs) | {"self", "model_path", "engine_index"} == set(params), name
    assert ENGINES.load("hf").engine_kwargs(cfg, device="cpu", threads=2)["threads"] == 2
    assert ENGINES.load("hf").actor_options(cfg) == {}


def test_memory_plan_picks_its_engine_model_from_the_facts():
    from easyr1.memory_plan.estimate import plan_rollout
    from easyr1.memory_plan.shapes import policy_shape

    shape = policy_shape("Qwen/Qwen2.5-VL-7B-Instruct")  # the published config kept in the repo
    cfg = load_config(None, ["worker.rollout.name=hf"])
    hf_notes = plan_rollout(cfg, shape, gpu_bytes=80 * 2**30).notes
    ENGINES.register("reserving", replace(ENGINES.facts("hf"), reserves_memory=True), "json:dumps")
    try:
        cfg.worker.rollout.name = "reserving"
        assert plan_rollout(cfg, shape, gpu_bytes=80 * 2**30).notes != hf_notes
    finally:
        ENGINES.unregister("reserving")


def test_dimensions_and_default_weights_are_defined_once():
    from easyr1.config import aliases, reward

    assert reward.DIMENSIONS is DIMENSIONS
    assert reward.RewardConfig().weights == dict(DEFAULT_WEIGHTS)
    assert not hasattr(aliases, "_DIMENSIONS")
    assert {f"worker.reward.combined_gpt_{d}_weight" for d in DIMENSIONS} <= set(aliases.ALIASES)
