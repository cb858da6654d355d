"""``worker.reward`` validation of the fields the reward rules rely on."""

from __future__ import annotations

from easyr1.config import DIMENSIONS, RewardConfig


def errors(config: RewardConfig) -> list[str]:
    return [e.key for e in config.validate("worker.reward")]


def test_defaults_are_valid_and_match_the_functions():
    from easyr1.reward import DEFAULT_WEIGHTS, FormatRule

    config = RewardConfig()
    assert errors(config) == []
    assert config.weights == DEFAULT_WEIGHTS
    assert FormatRule.from_config(config) == FormatRule()


def test_weights_need_all_six_keys():
    config = RewardConfig(weights={d: 0.2 for d in DIMENSIONS})
    assert errors(config) == ["worker.reward.weights.format"]
    config = RewardConfig(weights={**RewardConfig().weights, "beauty": 1.0})
    assert errors(config) == ["worker.reward.weights.beauty"]


def test_strict_mode_settings_are_checked():
    assert errors(RewardConfig(re_edit_total_factor=0.5)) == ["worker.reward.re_edit_total_factor"]
    assert errors(RewardConfig(max_blocks=1)) == ["worker.reward.max_blocks"]
    assert errors(RewardConfig(format_mode="loose")) == ["worker.reward.format_mode"]
