"""The improvement option: reward the change from the preliminary image to the final one."""

from __future__ import annotations

import math

import pytest
import torch

from easyr1.config import DIMENSIONS, RewardConfig
from easyr1.reward import combine_with_config, improvement, improvement_reward


def scores(*rows):
    return {d: torch.tensor([float(r[k]) for r in rows], dtype=torch.float64) for k, d in enumerate(DIMENSIONS)}


FINAL_A = [8, 6, 5, 2, 9]
NEUTRAL = [5, 5, 5, 5, 5]


def test_weighted_sum_improvement_by_hand():
    # R(final, f=4) = 6.5; R(preliminary all 5, f=5) = 0.75*5 + 0.25*10 = 6.25 -> 5 + 0.25/2
    reward, valid = improvement(scores(FINAL_A), scores(NEUTRAL), torch.tensor([4.0]), "weighted_sum")
    assert valid.item() and reward.item() == pytest.approx(5.125)


def test_no_change_with_a_perfect_answer_earns_the_middle():
    for strategy in ("weighted_sum", "gated", "multiplicative", "max_deviation"):
        reward, _ = improvement(scores(FINAL_A), scores(FINAL_A), torch.tensor([5.0]), strategy)
        assert reward.item() == pytest.approx(5.0), strategy


def test_format_still_counts_and_gate_bites():
    # gated, format 2 < 2.5: R(final) = 0, R(preliminary, 5) = 6.25 -> 5 - 3.125
    reward, _ = improvement(scores(NEUTRAL), scores(NEUTRAL), torch.tensor([2.0]), "gated")
    assert reward.item() == pytest.approx(1.875)


def test_max_deviation_improvement_by_hand():
    # final: 0.8*9 + 0.2*8 = 8.8; preliminary all 5 -> 0.8*5 + 0.2*10 = 6 -> 5 + 2.8/2
    reward, _ = improvement(scores(FINAL_A), scores(NEUTRAL), torch.tensor([4.0]), "max_deviation")
    assert reward.item() == pytest.approx(6.4)


def test_extremes_stay_in_range():
    best, _ = improvement(scores([10] * 5), scores([0] * 5), torch.tensor([5.0]), "max_deviation")
    worst, _ = improvement(scores([0] * 5), scores([10] * 5), torch.tensor([0.0]), "max_deviation")
    assert best.item() == pytest.approx(5 + (10 - 2) / 2)
    assert worst.item() == pytest.approx(0.0)


def test_invalid_on_either_side_is_masked():
    final = scores(FINAL_A, FINAL_A, FINAL_A)
    prelim = scores(NEUTRAL, NEUTRAL, NEUTRAL)
    final["logical_causal"][1] = math.nan
    prelim["cultural_social"][2] = math.nan
    reward, valid = improvement(final, prelim, torch.tensor([4.0, 4.0, 4.0]), "weighted_sum")
    assert valid.tolist() == [True, False, False]
    assert not math.isnan(reward[0].item()) and math.isnan(reward[1].item()) and math.isnan(reward[2].item())


def test_improvement_reward_helper():
    out = improvement_reward(torch.tensor([7.0, 3.0, math.nan]), torch.tensor([5.0, 7.0, 1.0]))
    assert out[:2].tolist() == [6.0, 3.0] and math.isnan(out[2].item())


def test_combine_with_config():
    config = RewardConfig()  # max_deviation 0.8/0.2 by default
    reward, valid = combine_with_config(scores(FINAL_A), torch.tensor([4.0]), config)
    assert valid.item() and reward.item() == pytest.approx(8.8)
    config.strategy = "weighted_sum"
    reward, _ = combine_with_config(scores(FINAL_A), torch.tensor([4.0]), config)
    assert reward.item() == pytest.approx(6.5)
    config.improvement = True
    with pytest.raises(ValueError, match="preliminary_scores"):
        combine_with_config(scores(FINAL_A), torch.tensor([4.0]), config)
    reward, _ = combine_with_config(scores(FINAL_A), torch.tensor([4.0]), config, preliminary_scores=scores(NEUTRAL))
    assert reward.item() == pytest.approx(5.125)
