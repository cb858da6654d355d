"""KL estimators, straight-through variants, the reward penalty and the coefficient controllers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from easyr1.algorithms import (
    KL_KINDS,
    AdaptiveKLController,
    FixedKLController,
    agg_loss,
    compute_advantage,
    kl_penalty,
    kl_reward_penalty,
    make_kl_controller,
)
from easyr1.config.algorithm import KL_PENALTIES

from . import reference as ref

FAST = settings(max_examples=50, deadline=None)
POINTWISE = [k for k in KL_KINDS if k != "full"]


def test_config_choices_match_implemented_kinds():
    assert set(KL_PENALTIES) == set(KL_KINDS) - {"full"}


@pytest.mark.parametrize("kind", POINTWISE)
@pytest.mark.parametrize("scale", [0.1, 3.0, 40.0])
def test_values_match_reference(kind, scale):
    g = torch.Generator().manual_seed(int(scale * 10))
    x = torch.randn(5, 7, generator=g, dtype=torch.float64) * scale
    y = torch.randn(5, 7, generator=g, dtype=torch.float64) * scale
    got = kl_penalty(x, y, kind)
    want = [
        [ref.kl_value(a, b, kind) for a, b in zip(rx, ry, strict=True)]
        for rx, ry in zip(x.tolist(), y.tolist(), strict=True)
    ]
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@FAST
@given(
    x=st.floats(-1e4, 1e4, allow_nan=False),
    y=st.floats(-1e4, 1e4, allow_nan=False),
    kind=st.sampled_from(POINTWISE),
)
def test_extreme_log_ratios_stay_finite(x, y, kind):
    xt = torch.tensor([[x]], dtype=torch.float32, requires_grad=True)
    value = kl_penalty(xt, torch.tensor([[y]], dtype=torch.float32), kind)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(xt.grad).all()
    if kind.rstrip("+") in ("low_var_kl", "k3"):
        assert -10.0 <= value.item() <= 10.0


@pytest.mark.parametrize("base", ["kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"])
def test_straight_through_has_value_of_k_and_gradient_of_k2(base):
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 6, dtype=torch.float64)
    value = kl_penalty(x, y, base + "+")
    torch.testing.assert_close(value, kl_penalty(x, y, base))
    value.sum().backward()
    torch.testing.assert_close(x.grad, (x - y).detach())  # d/dx ½(x − y)²


def test_reference_logprob_gets_no_gradient():
    x = torch.randn(2, 3, requires_grad=True)
    y = torch.randn(2, 3, requires_grad=True)
    kl_penalty(x, y, "low_var_kl").sum().backward()
    assert y.grad is None and x.grad is not None


def test_full_kl_over_vocabulary():
    g = torch.Generator().manual_seed(0)
    logits_p = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    logits_q = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    logits_p[0, 0, 1] = float("-inf")  # a zero-probability entry adds 0
    p, q = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    got = kl_penalty(p, q, "full")
    assert got.shape == (2, 3)
    for i in range(2):
        for t in range(3):
            want = math.fsum(
                math.exp(a) * (a - b) for a, b in zip(p[i, t].tolist(), q[i, t].tolist(), strict=True) if a > -math.inf
            )
            assert got[i, t].item() == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert (got >= -1e-12).all()


def test_unknown_kind_and_shape_mismatch():
    with pytest.raises(ValueError, match="unknown KL kind"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")
    with pytest.raises(ValueError, match="differ"):
        kl_penalty(torch.zeros(1, 2), torch.zeros(1, 3), "k1")


def test_kl_loss_term_ignores_padding():
    x = torch.tensor([[0.5, float("nan")], [-0.5, -float("inf")]], requires_grad=True)
    y = torch.zeros(2, 2)
    mask = torch.tensor([[1, 0], [1, 0]])
    loss = agg_loss(kl_penalty(x, y, "low_var_kl"), mask, "token-mean")
    loss.backward()
    k = [ref.kl_value(0.5, 0.0, "k3"), ref.kl_value(-0.5, 0.0, "k3")]
    assert loss.item() == pytest.approx(sum(k) / 2, rel=1e-6)
    assert torch.isfinite(x.grad).all() and not x.grad[:, 1].any()


def test_reward_penalty_values_and_current_kl():
    old = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    refp = torch.tensor([[-1.5, -1.0, 9.0], [-2.0, -0.5, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    penalty, current = kl_reward_penalty(old, refp, mask, "kl", coef=0.5)
    want = [[-0.5 * 0.5, -0.5 * -1.0, 0.0], [-0.5 * 1.0, -0.5 * -0.5, 0.0], [0.0, 0.0, 0.0]]
    torch.testing.assert_close(penalty, torch.tensor(want, dtype=torch.float64))
    seq_means = [(0.5 - 1.0) / 2, (1.0 - 0.5 + 0.0) / 3]  # the empty third row is not a sequence
    assert current.item() == pytest.approx(sum(seq_means) / 2)


def test_reward_penalty_feeds_token_level_advantages():
    scores = torch.tensor([1.0, 0.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    old = torch.full((2, 3), -1.0, dtype=torch.float64)
    refp = torch.full((2, 3), -1.2, dtype=torch.float64)
    penalty, _ = kl_reward_penalty(old, refp, mask, "k1", coef=0.1)
    adv = compute_advantage("reinforce_plus_plus", scores, None, response_mask=mask, token_rewards=penalty, gamma=1.0)
    want = ref.reinforce_plus_plus([1.0, 0.0], [True, True], mask.tolist(), 1.0, penalty.tolist())
    torch.testing.assert_close(adv, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-9)


def test_adaptive_controller_follows_formula():
    ctrl = AdaptiveKLController(value=0.1, target=0.05, horizon=1000)
    ctrl.update(current_kl=0.055, n_steps=100)  # error 0.1 → ×(1 + 0.1·0.1)
    assert ctrl.value == pytest.approx(0.1 * 1.01)
    ctrl.update(current_kl=10.0, n_steps=100)  # error clipped to +0.2
    assert ctrl.value == pytest.approx(0.1 * 1.01 * 1.02)
    ctrl.update(current_kl=0.0, n_steps=500)  # error clipped to −0.2
    assert ctrl.value == pytest.approx(0.1 * 1.01 * 1.02 * 0.9)
    with pytest.raises(ValueError):
        AdaptiveKLController(value=0.1, target=0.0, horizon=10)


def test_fixed_controller_and_factory():
    fixed = make_kl_controller("fixed", 0.02)
    assert isinstance(fixed, FixedKLController)
    fixed.update(5.0, 100)
    assert fixed.value == 0.02
    adaptive = make_kl_controller("adaptive", 0.02, 0.1, 500)
    assert isinstance(adaptive, AdaptiveKLController) and adaptive.horizon == 500
    with pytest.raises(ValueError, match="kl_type"):
        make_kl_controller("pid", 0.1)
