"""The four combination strategies against hand-computed values, masking, and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from easyr1.config import DIMENSIONS
from easyr1.reward import combine, max_deviation_dimension, normalise_weights

# Rows: physical_geometric, environment_context, cultural_social, logical_causal, target_attribution | format (0-5)
ROWS = {
    "A": ([8, 6, 5, 2, 9], 4.0),
    "B": ([3, 7, 5, 5, 5], 2.0),  # format below the gate; tie between the first two dimensions
    "C": ([10, 10, 10, 10, 10], 5.0),
    "D": ([0, 0, 0, 0, 0], 0.0),
    "E": ([5, 5, 5, 5, 5], 2.5),  # format exactly at the gate
}
# Worked out by hand from the formulas in docs/reward.md (default weights 0.15 x 5 + 0.25, gate 2.5, 0.8/0.2).
EXPECTED = {
    "weighted_sum": {"A": 0.15 * 30 + 0.25 * 8, "B": 0.15 * 25 + 0.25 * 4, "C": 10.0, "D": 0.0, "E": 5.0},
    "gated": {"A": 6.5, "B": 0.0, "C": 10.0, "D": 0.0, "E": 5.0},
    "multiplicative": {
        "A": 10 * math.sqrt(0.6 * 0.8),
        "B": 10 * math.sqrt(0.5 * 0.4),
        "C": 10.0,
        "D": 10 * math.sqrt(1e-8 * 1e-8),
        "E": 10 * math.sqrt(0.5 * 0.5),
    },
    "max_deviation": {"A": 0.8 * 9 + 0.2 * 8, "B": 0.8 * 3 + 0.2 * 4, "C": 10.0, "D": 0.0, "E": 0.8 * 5 + 0.2 * 5},
}


def batch(names, dtype=torch.float64):
    judge = {d: torch.tensor([float(ROWS[n][0][k]) for n in names], dtype=dtype) for k, d in enumerate(DIMENSIONS)}
    fmt = torch.tensor([ROWS[n][1] for n in names], dtype=dtype)
    return judge, fmt


@pytest.mark.parametrize("strategy", list(EXPECTED))
def test_strategies_match_hand_computed_values(strategy):
    names = list(ROWS)
    judge, fmt = batch(names)
    reward, valid = combine(judge, fmt, strategy)
    assert valid.dtype == torch.bool and bool(valid.all())
    expected = torch.tensor([EXPECTED[strategy][n] for n in names], dtype=torch.float64)
    torch.testing.assert_close(reward, expected, rtol=0, atol=1e-12)


def test_the_hand_values_spelled_out():
    assert EXPECTED["weighted_sum"]["A"] == pytest.approx(6.5)
    assert EXPECTED["multiplicative"]["A"] == pytest.approx(6.928203230275509)
    assert EXPECTED["max_deviation"]["A"] == pytest.approx(8.8)
    assert EXPECTED["max_deviation"]["B"] == pytest.approx(3.2)


def test_all_four_strategies_run_different_code():
    judge, fmt = batch(["A", "B"])
    results = {s: combine(judge, fmt, s)[0] for s in EXPECTED}
    names = list(results)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not torch.allclose(results[first], results[second]), (first, second)


def test_custom_weights_are_normalised():
    weights = {**{d: 0.0 for d in DIMENSIONS}, "physical_geometric": 1.0, "target_attribution": 1.0, "format": 2.0}
    judge, fmt = batch(["A"])
    reward, _ = combine(judge, fmt, "weighted_sum", weights=weights)
    assert reward.item() == pytest.approx(0.25 * 8 + 0.25 * 9 + 0.5 * 8)
    # multiplicative: judge mean over the judge weights only; the format weight plays no part.
    reward, _ = combine(judge, fmt, "multiplicative", weights=weights)
    assert reward.item() == pytest.approx(10 * math.sqrt(0.85 * 0.8))
    assert normalise_weights(weights)["format"] == 0.5
    assert sum(normalise_weights().values()) == pytest.approx(1.0)


def test_gate_threshold_and_max_deviation_weights():
    judge, fmt = batch(["A", "B"])
    reward, _ = combine(judge, fmt, "gated", gate_threshold=4.5)
    assert reward.tolist() == [0.0, 0.0]
    reward, _ = combine(judge, fmt, "gated", gate_threshold=0.0)
    torch.testing.assert_close(reward, torch.tensor([6.5, 4.75], dtype=torch.float64))
    reward, _ = combine(judge, fmt, "max_deviation", max_deviation_weights=(3.0, 1.0))
    torch.testing.assert_close(reward, torch.tensor([0.75 * 9 + 0.25 * 8, 0.75 * 3 + 0.25 * 4], dtype=torch.float64))
    reward, _ = combine(judge, fmt, "max_deviation", max_deviation_weights=(1.0, 0.0))
    torch.testing.assert_close(reward, torch.tensor([9.0, 3.0], dtype=torch.float64))


def test_max_deviation_ties_go_to_the_first_dimension():
    judge = {d: torch.tensor([5.0]) for d in DIMENSIONS}
    judge["cultural_social"] = torch.tensor([8.0])
    judge["target_attribution"] = torch.tensor([2.0])  # same distance from 5, later in the order
    assert max_deviation_dimension(judge).item() == DIMENSIONS.index("cultural_social")
    reward, _ = combine(judge, torch.tensor([5.0]), "max_deviation")
    assert reward.item() == pytest.approx(0.8 * 8 + 0.2 * 10)


@pytest.mark.parametrize("strategy", list(EXPECTED))
@pytest.mark.parametrize(
    ("dimension", "value", "fmt"),
    [
        ("logical_causal", math.nan, 4.0),
        ("physical_geometric", math.inf, 4.0),
        ("cultural_social", 10.5, 4.0),
        ("environment_context", -0.5, 4.0),
        (None, None, math.nan),
        (None, None, 5.5),
        (None, None, -1.0),
    ],
)
def test_invalid_inputs_are_masked_never_filled(strategy, dimension, value, fmt):
    judge, formats = batch(["A", "C"])
    formats[0] = fmt
    if dimension is not None:
        judge[dimension][0] = value
    reward, valid = combine(judge, formats, strategy)
    assert valid.tolist() == [False, True]
    assert math.isnan(reward[0].item())
    assert reward[1].item() == pytest.approx(10.0)


def test_dtypes():
    judge, fmt = batch(["A"], dtype=torch.float32)
    reward, _ = combine(judge, fmt, "weighted_sum")
    assert reward.dtype == torch.float32
    judge = {d: [8, 6, 5, 2, 9][k : k + 1] for k, d in enumerate(DIMENSIONS)}  # plain lists of ints
    reward, valid = combine(judge, [4], "weighted_sum")
    assert reward.dtype == torch.float32 and reward.item() == pytest.approx(6.5) and valid.item()


def test_empty_batch():
    judge = {d: torch.empty(0) for d in DIMENSIONS}
    reward, valid = combine(judge, torch.empty(0), "max_deviation")
    assert reward.shape == valid.shape == (0,)


def test_bad_inputs_raise_with_a_clear_message():
    judge, fmt = batch(["A"])
    with pytest.raises(ValueError, match="unknown strategy"):
        combine(judge, fmt, "average")
    with pytest.raises(ValueError, match="missing \\['target_attribution'\\]"):
        combine({d: v for d, v in judge.items() if d != "target_attribution"}, fmt, "gated")
    with pytest.raises(ValueError, match="unknown \\['beauty'\\]"):
        combine({**judge, "beauty": fmt}, fmt, "gated")
    with pytest.raises(ValueError, match="same length"):
        combine({**judge, "cultural_social": torch.ones(2)}, fmt, "gated")
    with pytest.raises(ValueError, match="format_scores has 2"):
        combine(judge, torch.ones(2), "gated")
    with pytest.raises(ValueError, match="shape"):
        combine(judge, torch.ones(1, 1), "gated")
    with pytest.raises(ValueError, match="exactly the keys"):
        combine(judge, fmt, "weighted_sum", weights={"format": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        combine(judge, fmt, "weighted_sum", weights={**normalise_weights(), "format": -1.0})
    with pytest.raises(ValueError, match="all be zero"):
        combine(judge, fmt, "weighted_sum", weights=dict.fromkeys(normalise_weights(), 0.0))
    with pytest.raises(ValueError, match="gate_threshold"):
        combine(judge, fmt, "gated", gate_threshold=7.0)
    with pytest.raises(ValueError, match="max_deviation_weights"):
        combine(judge, fmt, "max_deviation", max_deviation_weights=(0.0, 0.0))
    only_format = {**dict.fromkeys(DIMENSIONS, 0.0), "format": 1.0}
    with pytest.raises(ValueError, match="multiplicative needs"):
        combine(judge, fmt, "multiplicative", weights=only_format)
