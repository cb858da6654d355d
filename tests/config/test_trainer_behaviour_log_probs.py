"""``trainer.behaviour_log_probs``: ``actor`` by default; ``rollout`` only with ``worker.rollout.temperature: 1.0``
(the engines' log-probs are temperature 1), in any ``trainer.pipeline``; an unknown value is refused. Each error is
one line that names the field."""

from __future__ import annotations

import pytest

from easyr1.config import ConfigValidationError, load_config


def test_default_is_the_actor():
    assert load_config(None, []).trainer.behaviour_log_probs == "actor"


@pytest.mark.parametrize("pipeline", ["staged", "streaming", "off_policy_1"])
def test_rollout_loads_with_temperature_one_in_every_mode(pipeline):
    cfg = load_config(None, [f"trainer.pipeline={pipeline}", "trainer.behaviour_log_probs=rollout"])
    assert cfg.trainer.behaviour_log_probs == "rollout" and cfg.worker.rollout.temperature == 1.0


def test_rollout_needs_temperature_one():
    with pytest.raises(ConfigValidationError) as info:
        load_config(
            None,
            ["trainer.pipeline=off_policy_1", "trainer.behaviour_log_probs=rollout", "worker.rollout.temperature=0.7"],
        )
    (error,) = info.value.errors
    assert error.key == "trainer.behaviour_log_probs"
    assert "worker.rollout.temperature=1.0" in str(error) and "0.7" in str(error) and "\n" not in str(error)
    # The actor's log-probs follow the sampling temperature: any temperature loads.
    load_config(None, ["trainer.pipeline=off_policy_1", "worker.rollout.temperature=0.7"])


def test_unknown_value_is_refused():
    with pytest.raises(ConfigValidationError, match=r"trainer\.behaviour_log_probs") as info:
        load_config(None, ["trainer.behaviour_log_probs=engine"])
    assert [e.key for e in info.value.errors] == ["trainer.behaviour_log_probs"]
