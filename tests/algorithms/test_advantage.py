"""Advantage estimators against float64 references, plus properties and edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from easyr1.algorithms import (
    ADVANTAGE_ESTIMATORS,
    broadcast_to_tokens,
    compute_advantage,
    effective_sample_mask,
    place_sequence_reward,
    returns_to_go,
)
from easyr1.core.registries import ESTIMATORS

from . import reference as ref

FAST = settings(max_examples=50, deadline=None)
OUTCOME = ["grpo", "dr_grpo", "rloo"]


def random_batch(seed: int, groups: int, n: int, T: int = 6, p_invalid: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    B = groups * n
    scores = torch.rand(B, generator=g, dtype=torch.float64) * 10
    valid = torch.rand(B, generator=g) > p_invalid
    scores[~valid] = float("nan")  # invalid scores must never be read
    group_index = torch.arange(groups).repeat_interleave(n)[torch.randperm(B, generator=g)]
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return scores, group_index, valid, mask


@pytest.mark.parametrize("estimator", OUTCOME)
@pytest.mark.parametrize(("groups", "n"), [(1, 1), (1, 2), (3, 2), (4, 5), (7, 8), (2, 16)])
@pytest.mark.parametrize("seed", [0, 1])
def test_outcome_estimators_match_reference(estimator, groups, n, seed):
    scores, group_index, valid, _ = random_batch(seed, groups, n)
    got = compute_advantage(estimator, scores, group_index, valid)
    want = ref.outcome_advantage(estimator, scores.tolist(), group_index.tolist(), valid.tolist())
    assert got.shape == (groups * n,)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("groups", "n", "T"), [(1, 1, 1), (2, 3, 5), (4, 4, 9), (3, 8, 1)])
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.0])
def test_reinforce_plus_plus_matches_reference(groups, n, T, gamma):
    scores, _, valid, mask = random_batch(groups * 10 + n, groups, n, T)
    token_rewards = torch.randn(groups * n, T, dtype=torch.float64)
    token_rewards[~mask] = float("inf")  # padding garbage must be ignored
    got = compute_advantage(
        "reinforce_plus_plus",
        scores,
        None,
        valid,
        response_mask=mask,
        gamma=gamma,
        token_rewards=token_rewards,
    )
    want = ref.reinforce_plus_plus(
        scores.tolist(), valid.tolist(), mask.tolist(), gamma, token_rewards.nan_to_num(posinf=0.0).tolist()
    )
    assert got.shape == mask.shape
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-7, atol=1e-7)
    assert not got[~mask].any()


def test_reinforce_plus_plus_return_resets_at_every_masked_position():
    # A mask with holes (e.g. tool-output tokens inside a response): the return restarts after each hole.
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(6, dtype=torch.float64)
    mask = torch.rand(6, 9, generator=g) > 0.3
    token_rewards = torch.randn(6, 9, generator=g, dtype=torch.float64)
    got = compute_advantage(
        "reinforce_plus_plus", scores, None, response_mask=mask, gamma=0.8, token_rewards=token_rewards
    )
    want = ref.reinforce_plus_plus(scores.tolist(), [True] * 6, mask.tolist(), 0.8, token_rewards.tolist())
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize(("groups", "n", "T"), [(1, 1, 3), (2, 3, 5), (5, 4, 7)])
def test_reinforce_plus_plus_baseline_matches_reference(groups, n, T):
    scores, group_index, valid, mask = random_batch(groups + 100 * n, groups, n, T)
    got = compute_advantage("reinforce_plus_plus_baseline", scores, group_index, valid, response_mask=mask)
    want = ref.reinforce_plus_plus_baseline(scores.tolist(), group_index.tolist(), valid.tolist(), mask.tolist())
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-7, atol=1e-7)


def test_token_rewards_enter_outcome_score_as_masked_sum():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    penalty = torch.tensor([[-0.5, -0.25, 99.0]] * 4, dtype=torch.float64)
    got = compute_advantage("dr_grpo", scores, [0, 0, 0, 0], response_mask=mask, token_rewards=penalty)
    totals = [1 - 0.5 - 0.25, 2 - 0.5, 3 - 0.5 - 0.25 + 99.0, 4.0]  # masked entries (99 on rows 0, 1, 3) ignored
    want = ref.outcome_advantage("dr_grpo", totals, [0] * 4, [True] * 4)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


# ------------------------------------------------------------------------------------------- properties

score_lists = st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=2, max_size=8)


@FAST
@given(groups=st.lists(score_lists, min_size=1, max_size=5), data=st.data())
def test_group_zero_mean(groups, data):
    scores = torch.tensor([x for g in groups for x in g], dtype=torch.float64)
    index = [k for k, g in enumerate(groups) for _ in g]
    valid = torch.tensor(data.draw(st.lists(st.booleans(), min_size=len(index), max_size=len(index))))
    for estimator in OUTCOME:
        adv = compute_advantage(estimator, scores, index, valid)
        eff = effective_sample_mask(estimator, index, valid)
        assert not adv[~eff].any(), "excluded samples must have zero advantage"
        for k in range(len(groups)):
            members = torch.tensor([i == k for i in index]) & eff
            if members.any():
                assert abs(float(adv[members].sum())) < 1e-6 * max(1.0, float(adv[members].abs().max()))


@FAST
@given(
    group=st.lists(st.integers(0, 10), min_size=2, max_size=8).filter(lambda g: len(set(g)) > 1),
    scale=st.floats(0.1, 10.0),
    shift=st.floats(-100.0, 100.0),
)
def test_grpo_invariant_to_affine_transforms(group, scale, shift):
    scores = torch.tensor(group, dtype=torch.float64)
    base = compute_advantage("grpo", scores, [0] * len(group))
    moved = compute_advantage("grpo", scores * scale + shift, [0] * len(group))
    # ε = 1e-6 breaks exact invariance by at most ~ε/std relative; std >= ~0.35 here.
    torch.testing.assert_close(moved, base, rtol=1e-4, atol=1e-4)


@FAST
@given(value=st.floats(-1e6, 1e6, allow_nan=False), n=st.integers(1, 9), estimator=st.sampled_from(OUTCOME))
def test_all_equal_group_gives_exactly_zero(value, n, estimator):
    adv = compute_advantage(estimator, torch.full((n,), value, dtype=torch.float64), [7] * n)
    assert torch.equal(adv, torch.zeros(n, dtype=torch.float64))


@FAST
@given(value=st.floats(-1e6, 1e6, allow_nan=False), n=st.integers(1, 6), T=st.integers(1, 5))
def test_all_equal_token_level_baseline_is_zero(value, n, T):
    mask = torch.ones(n, T, dtype=torch.bool)
    adv = compute_advantage(
        "reinforce_plus_plus_baseline", torch.full((n,), value, dtype=torch.float64), [0] * n, response_mask=mask
    )
    assert torch.equal(adv, torch.zeros(n, T, dtype=torch.float64))


# ------------------------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("estimator", list(ADVANTAGE_ESTIMATORS))
def test_group_of_one_contributes_nothing_for_group_estimators(estimator):
    scores = torch.tensor([3.0, 1.0, 2.0])
    mask = torch.ones(3, 4, dtype=torch.bool)
    adv = compute_advantage(estimator, scores, [0, 1, 2], response_mask=mask)
    eff = effective_sample_mask(estimator, [0, 1, 2])
    if estimator == "reinforce_plus_plus":  # not group-relative: every valid sample takes part
        assert eff.all() and adv.abs().sum() > 0
    else:
        assert not eff.any()
        assert not adv.any()


def test_n_equals_two_gives_plus_minus_one_over_sqrt_two():
    adv = compute_advantage("grpo", torch.tensor([1.0, 4.0, 9.0, 2.0], dtype=torch.float64), [0, 0, 1, 1])
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(adv, torch.tensor([-s, s, s, -s], dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_invalid_samples_ignored_and_groups_below_two_valid_excluded():
    scores = torch.tensor([1.0, float("nan"), 3.0, 5.0, float("nan"), 0.0])
    valid = torch.tensor([True, False, True, True, False, False])
    index = ["a", "a", "a", "b", "b", "b"]
    adv = compute_advantage("grpo", scores, index, valid)
    assert torch.isfinite(adv).all()
    eff = effective_sample_mask("grpo", index, valid)
    assert eff.tolist() == [True, False, True, False, False, False]
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(adv, torch.tensor([-s, 0, s, 0, 0, 0]), rtol=1e-5, atol=1e-6)


def test_all_invalid_gives_zeros_without_nan():
    scores = torch.full((4,), float("nan"))
    valid = torch.zeros(4, dtype=torch.bool)
    mask = torch.ones(4, 3, dtype=torch.bool)
    for estimator in ADVANTAGE_ESTIMATORS:
        adv = compute_advantage(estimator, scores, [0, 0, 1, 1], valid, response_mask=mask)
        assert torch.equal(adv, torch.zeros_like(adv))
        assert not effective_sample_mask(estimator, [0, 0, 1, 1], valid).any()


def test_nan_score_on_valid_sample_is_an_error():
    with pytest.raises(ValueError, match=r"indices \[1\]"):
        compute_advantage("grpo", torch.tensor([1.0, float("nan")]), [0, 0])


def test_options_and_shapes_are_checked():
    with pytest.raises(TypeError, match="epsilon"):
        compute_advantage("grpo", torch.ones(2), [0, 0], epsilon=1e-6)
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        compute_advantage("gae", torch.ones(2), [0, 0])
    with pytest.raises(ValueError, match="response_mask"):
        compute_advantage("reinforce_plus_plus", torch.ones(2), [0, 0])
    with pytest.raises(ValueError, match="shape"):
        compute_advantage("grpo", torch.ones(2, 3), [0, 0])


def test_empty_responses_receive_no_reward_and_no_advantage():
    scores = torch.tensor([5.0, 1.0, 3.0])
    mask = torch.tensor([[0, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    placed = place_sequence_reward(scores, mask)
    assert placed.tolist() == [[0, 0, 0], [0, 1.0, 0], [3.0, 0, 0]]
    for estimator in ("reinforce_plus_plus", "reinforce_plus_plus_baseline"):
        adv = compute_advantage(estimator, scores, [0, 0, 0], response_mask=mask)
        assert not adv[0].any() and torch.isfinite(adv).all()
    assert compute_advantage("grpo", torch.zeros(0), []).shape == (0,)


def test_sequence_reward_only_on_last_valid_token_never_on_padding():
    scores = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    placed = place_sequence_reward(scores, mask)
    assert placed.tolist() == [[0, 0, 2.0, 0, 0], [0, 0, 0, 0, -1.0]]
    returns = returns_to_go(placed, mask, gamma=0.5)
    assert returns.tolist() == [[0.5, 1.0, 2.0, 0, 0], [-1 / 16, -1 / 8, -0.25, -0.5, -1.0]]


def test_broadcast_to_tokens_masks_padding():
    adv = torch.tensor([1.5, -2.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert broadcast_to_tokens(adv, mask).tolist() == [[1.5, 1.5, 0.0], [-2.0, 0.0, 0.0]]
    token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert broadcast_to_tokens(token, mask).tolist() == [[1.0, 2.0, 0.0], [4.0, 0.0, 0.0]]


def test_config_choices_match_registry():
    assert list(ESTIMATORS) == list(ADVANTAGE_ESTIMATORS)
    assert all(
        ADVANTAGE_ESTIMATORS[n].min_valid_per_group == ESTIMATORS.facts(n).min_valid_per_group for n in ESTIMATORS
    )


def test_output_dtype_follows_scores_and_no_grad():
    scores = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    adv = compute_advantage("grpo", scores, [0, 0, 0])
    assert adv.dtype == torch.float32 and not adv.requires_grad
    assert compute_advantage("grpo", [1, 2, 4], [0, 0, 0]).dtype == torch.float32
