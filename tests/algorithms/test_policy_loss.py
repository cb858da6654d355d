"""PPO-clip (clip-higher, dual-clip) and GSPO losses against float64 references; boundaries, masking, extremes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from easyr1.algorithms import LOSS_AGG_MODES, get_policy_loss, gspo_loss, policy_agg_mode, policy_loss

from . import reference as ref

FAST = settings(max_examples=50, deadline=None)


def random_inputs(seed: int, B: int, T: int, spread: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    new = old + torch.randn(B, T, generator=g, dtype=torch.float64) * spread
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    return old, new, adv, mask


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize(("B", "T"), [(1, 1), (3, 7), (8, 16)])
@pytest.mark.parametrize(("lo", "hi", "dual"), [(0.2, 0.2, 3.0), (0.2, 0.28, 3.0), (0.1, 0.3, None)])
def test_ppo_matches_reference(mode, B, T, lo, hi, dual):
    old, new, adv, mask = random_inputs(B * 100 + T, B, T)
    loss, metrics = policy_loss(
        old, new, adv, mask, clip_ratio_low=lo, clip_ratio_high=hi, clip_ratio_dual=dual, loss_agg_mode=mode
    )
    token_loss, clip, dual_flag = ref.ppo_token_losses(
        old.tolist(), new.tolist(), adv.tolist(), mask.tolist(), lo, hi, dual
    )
    assert loss.item() == pytest.approx(ref.aggregate(token_loss, mask.tolist(), mode), rel=1e-9, abs=1e-12)
    n = int(mask.sum())
    flat = [(i, t) for i in range(B) for t in range(T) if mask[i, t]]
    clipfrac = sum(clip[i][t] for i, t in flat) / n if n else 0.0
    lower = sum(dual_flag[i][t] for i, t in flat) / n if n else 0.0
    kl = math.fsum(-(new[i, t].item() - old[i, t].item()) for i, t in flat) / n if n else 0.0
    assert metrics["pg_clipfrac"].item() == pytest.approx(clipfrac)
    assert metrics["pg_clipfrac_lower"].item() == pytest.approx(lower)
    assert metrics["ppo_kl"].item() == pytest.approx(kl, abs=1e-12)
    assert metrics["tokens"].item() == n
    ratios = [math.exp(new[i, t].item() - old[i, t].item()) for i, t in flat]
    if ratios:
        assert metrics["ratio_max"].item() == pytest.approx(max(ratios))
        assert metrics["ratio_min"].item() == pytest.approx(min(ratios))
        assert metrics["ratio_mean"].item() == pytest.approx(sum(ratios) / n)


def test_ppo_gradient_is_consistent_with_forward():
    old, new, adv, mask = random_inputs(3, 4, 5, spread=0.5)
    new.requires_grad_(True)

    def fn(lp):
        return policy_loss(old, lp, adv, mask, clip_ratio_high=0.28)[0]

    assert torch.autograd.gradcheck(fn, (new,))


@FAST
@given(
    log_ratio=st.floats(-3.0, 3.0),
    adv=st.floats(-5.0, 5.0).filter(lambda a: abs(a) > 1e-3),
    lo=st.sampled_from([0.1, 0.2]),
    hi=st.sampled_from([0.2, 0.28]),
    dual=st.sampled_from([2.0, 3.0, None]),
)
def test_clip_boundaries(log_ratio, adv, lo, hi, dual):
    old = torch.zeros(1, 1, dtype=torch.float64)
    new = torch.full((1, 1), log_ratio, dtype=torch.float64, requires_grad=True)
    loss, metrics = policy_loss(
        old, new, torch.tensor([adv], dtype=torch.float64), torch.ones(1, 1), clip_ratio_low=lo, clip_ratio_high=hi,
        clip_ratio_dual=dual,
    )  # fmt: skip
    loss.backward()
    r = math.exp(log_ratio)
    grad = new.grad.item()
    if adv > 0 and r > 1 + hi:  # gain capped: constant loss, no gradient
        assert loss.item() == pytest.approx(-adv * (1 + hi)) and grad == 0.0
        assert metrics["pg_clipfrac"].item() == 1.0
    elif adv < 0 and r < 1 - lo:  # pushing further down is capped too
        assert loss.item() == pytest.approx(-adv * (1 - lo)) and grad == 0.0
        assert metrics["pg_clipfrac"].item() == 1.0
    elif adv < 0 and dual is not None and r > dual:  # dual-clip bounds the loss of a negative advantage
        assert loss.item() == pytest.approx(-adv * dual) and grad == 0.0
        assert metrics["pg_clipfrac_lower"].item() == 1.0
    else:  # unclipped: L = −A·r, dL/dlogπ = −A·r
        assert loss.item() == pytest.approx(-adv * r)
        assert grad == pytest.approx(-adv * r)
        assert metrics["pg_clipfrac"].item() == 0.0 and metrics["pg_clipfrac_lower"].item() == 0.0


@FAST
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(LOSS_AGG_MODES), loss_type=st.sampled_from(["ppo", "gspo"]))
def test_masked_tokens_never_contribute(seed, mode, loss_type):
    old, new, adv, mask = random_inputs(seed, 4, 6)
    fn = get_policy_loss(loss_type)
    clean = new.clone().requires_grad_(True)
    loss_clean, _ = fn(old, clean, adv, mask, loss_agg_mode=mode)
    loss_clean.backward()

    g = torch.Generator().manual_seed(seed + 1)
    garbage = torch.tensor([float("nan"), float("inf"), float("-inf"), 1e30, -1e30], dtype=torch.float64)
    pick = torch.randint(0, 5, mask.shape, generator=g)
    dirty_new = torch.where(mask, new, garbage[pick]).requires_grad_(True)
    dirty_old = torch.where(mask, old, garbage[pick.flip(0)])
    dirty_adv = torch.where(mask, adv, garbage[pick.flip(1)])
    loss_dirty, metrics = fn(dirty_old, dirty_new, dirty_adv, mask, loss_agg_mode=mode)
    loss_dirty.backward()

    assert torch.equal(loss_dirty, loss_clean)
    assert torch.equal(dirty_new.grad, clean.grad)
    assert not dirty_new.grad[~mask].any()
    assert all(torch.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("loss_type", ["ppo", "gspo"])
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_all_invalid_mask_gives_zero_loss_and_no_nan(loss_type, mode):
    old = torch.full((3, 4), float("nan"))
    new = torch.full((3, 4), -float("inf"), requires_grad=True)
    loss, metrics = get_policy_loss(loss_type)(old, new, torch.ones(3), torch.zeros(3, 4), loss_agg_mode=mode)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(new.grad, torch.zeros(3, 4))
    assert all(torch.isfinite(v) for v in metrics.values())
    assert metrics["tokens"].item() == 0 and metrics["ratio_mean"].item() == 1.0


@pytest.mark.parametrize("loss_type", ["ppo", "gspo"])
@pytest.mark.parametrize("scale", [50.0, 1e4])
def test_extreme_log_ratios_stay_finite(loss_type, scale):
    old, new, adv, mask = random_inputs(11, 5, 8)
    new = (old + torch.randn(5, 8, dtype=torch.float64) * scale).to(torch.float32).requires_grad_(True)
    loss, metrics = get_policy_loss(loss_type)(old.float(), new, adv.float(), mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(new.grad).all()
    assert all(torch.isfinite(v) for v in metrics.values())


def _gspo_reference(old, new, adv, mask, lo, hi):
    """Loss value and d loss / d logπ from the GSPO formulas, with Python floats."""
    B, T = old.shape
    active = [i for i in range(B) if mask[i].any()]
    loss, grad = 0.0, [[0.0] * T for _ in range(B)]
    for i in active:
        toks = [t for t in range(T) if mask[i, t]]
        ell = math.fsum(new[i, t].item() - old[i, t].item() for t in toks) / len(toks)
        s = math.exp(min(ell, 10.0))
        seq = 0.0
        for t in toks:
            a = adv[i, t].item()
            l1, l2 = -a * s, -a * min(max(s, 1 - lo), 1 + hi)
            seq += max(l1, l2)
            if l1 >= l2 and ell < 10.0:  # unclipped branch: d(−A·s_it)/dlogπ_it = −A·s_i
                grad[i][t] = -a * s / (len(toks) + 1e-8) / len(active)
        loss += seq / (len(toks) + 1e-8)
    return (loss / len(active) if active else 0.0), grad


@pytest.mark.parametrize(("B", "T", "lo", "hi"), [(1, 1, 0.2, 0.2), (4, 6, 3e-4, 4e-4), (6, 9, 0.2, 0.28)])
def test_gspo_matches_reference(B, T, lo, hi):
    old, new, adv, mask = random_inputs(B + T, B, T, spread=0.05)
    adv = adv[:, :1].expand(B, T).contiguous()  # sequence-level advantages, as GRPO gives
    new.requires_grad_(True)
    loss, metrics = gspo_loss(old, new, adv, mask, clip_ratio_low=lo, clip_ratio_high=hi, loss_agg_mode="token-mean")
    loss.backward()
    want_loss, want_grad = _gspo_reference(old, new.detach(), adv, mask, lo, hi)
    assert loss.item() == pytest.approx(want_loss, rel=1e-9, abs=1e-12)
    torch.testing.assert_close(new.grad, torch.tensor(want_grad, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert metrics["pg_clipfrac_lower"].item() == 0.0


def test_policy_agg_mode_and_registry():
    assert policy_agg_mode("gspo", "token-mean") == "seq-mean-token-mean"
    assert policy_agg_mode("ppo", "token-mean") == "token-mean"
    with pytest.raises(ValueError, match="unknown loss_type"):
        get_policy_loss("gpg")
    with pytest.raises(ValueError, match="clip_ratio_dual"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), clip_ratio_dual=1.0)
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), loss_agg_mode="mean")


def test_on_policy_first_step_has_unit_ratio_and_pure_pg_gradient():
    # One mini-batch, one epoch: old = sg(new), ratio 1, gradient = −A / N (token-mean).
    _, new, adv, mask = random_inputs(5, 3, 4)
    new.requires_grad_(True)
    loss, metrics = policy_loss(new.detach(), new, adv, mask)
    loss.backward()
    n = mask.sum()
    torch.testing.assert_close(new.grad, torch.where(mask, -adv / n, torch.zeros_like(adv)))
    assert metrics["pg_clipfrac"].item() == 0.0 and metrics["ppo_kl"].item() == 0.0
