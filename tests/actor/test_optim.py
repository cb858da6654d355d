"""``optim.strategy: adamw_bf16`` (issue 16, defect 6): AdamW whose two states are bf16, the same update as
``torch.optim.AdamW`` up to the rounding of the states, and a state dict that round-trips in bf16."""

from __future__ import annotations

import copy

import pytest
import torch

from easyr1.actor.optim import build_optimizer
from easyr1.config.actor import OptimConfig


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 16, generator=g), torch.randn(8, 4, generator=g)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def _optim(strategy: str, lr: float = 1e-2) -> OptimConfig:
    return OptimConfig(strategy=strategy, lr=lr, weight_decay=0.1)


def test_adamw_bf16_keeps_bf16_states_and_follows_fp32_adamw() -> None:
    lr, steps = 1e-2, 5
    initial = [p.detach().clone() for p in _model().parameters()]
    ref_model, model = _model(), _model()
    ref = build_optimizer(ref_model.parameters(), _optim("adamw", lr))
    opt = build_optimizer(model.parameters(), _optim("adamw_bf16", lr))
    assert type(opt) is not torch.optim.AdamW
    _train(ref_model, ref, steps)
    _train(model, opt, steps)
    for p in model.parameters():
        state = opt.state[p]
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16
        assert p.dtype == torch.float32  # the master weights keep their dtype
    for p0, p_ref, p in zip(initial, ref_model.parameters(), model.parameters(), strict=True):
        assert (p_ref - p0).abs().max() > 0.5 * lr  # the parameters really moved…
        # …and bf16 states (m and v rounded by ≤ 2^-9 relative) change each step's update by well under 2 % of lr.
        assert (p - p_ref).abs().max() <= 0.02 * lr * steps
        torch.testing.assert_close(opt.state[p]["exp_avg"].float(), ref.state[p_ref]["exp_avg"], rtol=2e-2, atol=1e-4)


def test_fp32_states_reproduce_torch_adamw_exactly() -> None:
    """The same class with fp32 states is torch's AdamW (checks the arithmetic, the bias correction and the
    decoupled weight decay); a tiny chunk size exercises the chunked update."""
    from easyr1.actor.optim import BF16AdamW

    ref_model, model = _model(), _model()
    ref = torch.optim.AdamW(ref_model.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    opt = BF16AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, state_dtype=torch.float32, chunk_numel=7)
    _train(ref_model, ref, 4)
    _train(model, opt, 4)
    for p_ref, p in zip(ref_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, p_ref, rtol=0, atol=1e-6)


def test_adamw_bf16_state_dict_round_trips_in_bf16() -> None:
    model = _model()
    opt = build_optimizer(model.parameters(), _optim("adamw_bf16"))
    _train(model, opt, 2)
    saved = copy.deepcopy(opt.state_dict())
    params_saved = copy.deepcopy(model.state_dict())
    _train(model, opt, 2)  # move away

    model2 = _model()
    model2.load_state_dict(params_saved)
    opt2 = build_optimizer(model2.parameters(), _optim("adamw_bf16"))
    opt2.load_state_dict(saved)
    for p in model2.parameters():
        assert opt2.state[p]["exp_avg"].dtype == opt2.state[p]["exp_avg_sq"].dtype == torch.bfloat16
    for key, state in saved["state"].items():
        loaded = opt2.state_dict()["state"][key]
        assert torch.equal(loaded["exp_avg"], state["exp_avg"]) and torch.equal(loaded["step"], state["step"])
    # Resumed training continues exactly like the uninterrupted run.
    model.load_state_dict(params_saved)
    opt.load_state_dict(saved)
    _train(model, opt, 2)
    _train(model2, opt2, 2)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        build_optimizer(_model().parameters(), _optim("sgd"))
