"""Dynamic-sampling group filter: std threshold and mean range over valid samples, with counts."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from easyr1.algorithms import filter_groups

FAST = settings(max_examples=50, deadline=None)


def reference_keep(scores, index, valid, std_threshold, low, high):
    members = defaultdict(list)
    order = []
    for i, g in enumerate(index):
        if g not in members:
            order.append(g)
        members[g].append(i)
    keep_group = {}
    for g in order:
        vals = [scores[i] for i in members[g] if valid[i]]
        if len(vals) < 2:
            keep_group[g] = False
            continue
        mean = math.fsum(vals) / len(vals)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        ok = std_threshold is None or std > std_threshold
        ok &= low is None or mean > low
        ok &= high is None or mean < high
        keep_group[g] = ok
    return [keep_group[g] for g in index], sum(keep_group.values()), len(order)


@FAST
@given(
    data=st.data(),
    groups=st.integers(1, 6),
    n=st.integers(1, 6),
    std_threshold=st.sampled_from([None, 0.0, 0.5, 2.0]),
    bounds=st.sampled_from([(None, None), (1.0, None), (None, 8.0), (2.0, 7.0)]),
)
def test_filter_matches_reference(data, groups, n, std_threshold, bounds):
    B = groups * n
    scores = data.draw(st.lists(st.integers(0, 10), min_size=B, max_size=B))  # judge-like 0–10 scores
    valid = data.draw(st.lists(st.booleans(), min_size=B, max_size=B))
    index = [f"uid-{i % groups}" for i in range(B)]
    raw = [float(s) if v else float("nan") for s, v in zip(scores, valid, strict=True)]
    result = filter_groups(raw, index, valid, std_threshold=std_threshold, low=bounds[0], high=bounds[1])
    keep, kept, total = reference_keep(raw, index, valid, std_threshold, *bounds)
    assert result.keep.tolist() == keep
    assert result.kept_groups == kept and result.dropped_groups == total - kept
    assert result.dropped_too_few_valid + result.dropped_low_std + result.dropped_mean_range == result.dropped_groups
    assert result.kept_samples == sum(keep)


def test_counts_per_reason():
    scores = torch.tensor([5.0, 5.0, 5.0, 1.0, 9.0, 3.0, 0.0, 0.5, 1.0, 7.0, float("nan")])
    index = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    valid = torch.tensor([True] * 10 + [False])
    result = filter_groups(scores, index, valid, std_threshold=0.05, low=1.0)
    assert result.group_keep.tolist() == [False, True, False, False]
    assert (result.dropped_low_std, result.dropped_mean_range, result.dropped_too_few_valid) == (1, 1, 1)
    assert result.keep.tolist() == [False] * 3 + [True] * 3 + [False] * 5
    metrics = result.as_metrics()
    assert metrics["filter/kept_groups"] == 1.0 and metrics["filter/kept_samples"] == 3.0


def test_no_rule_keeps_every_group_with_two_valid_samples():
    result = filter_groups([1.0, 1.0, 2.0], [0, 0, 1])
    assert result.keep.tolist() == [True, True, False]


def test_bad_inputs():
    with pytest.raises(ValueError, match="below"):
        filter_groups([1.0, 2.0], [0, 0], low=5.0, high=1.0)
    with pytest.raises(ValueError, match="non-finite"):
        filter_groups([1.0, float("nan")], [0, 0])
