"""Policy-gradient losses: PPO clip (with DAPO clip-higher and dual-clip) and GSPO (config ``worker.actor.loss_type``).

PPO, per token, with ``δ = clamp(logπ − logπ_old, −20, 20)`` and ``r = exp(δ)``::

    L1 = −A·r,  L2 = −A·clamp(r, 1−ε_low, 1+ε_high),  Lc = max(L1, L2)
    dual-clip (c > 1):  L = min(Lc, −A·c) where A < 0, else Lc

GSPO (sequence-level ratio): ``ℓ_i = Σ_t m·δ / max(Σ_t m, 1)`` (δ unclamped), token log-ratio
``logπ − sg(logπ) + sg(ℓ_i)`` clamped ≤ 10, PPO clip without dual-clip, aggregated with ``seq-mean-token-mean``
whatever ``loss_agg_mode`` says (use :func:`policy_agg_mode` to get the mode for ``agg_normaliser``).

Both return ``(loss, metrics)``; metrics are detached 0-dim tensors, means over this call's unmasked tokens:

* ``pg_clipfrac``: fraction of tokens where the clipped term is active (``L2 > L1``).
* ``pg_clipfrac_ratio_high`` / ``pg_clipfrac_ratio_low``: the same split by side (ratio clipped at ``1+ε_high`` for
  ``A > 0``, at ``1−ε_low`` for ``A < 0``).
* ``pg_clipfrac_lower``: fraction where the dual-clip bound is active (``Lc > −A·c`` and ``A < 0``).
* ``ppo_kl``: ``mean_m(−δ)``, an approximate KL(π_old‖π).
* ``ratio_mean``, ``ratio_max``, ``ratio_min``: importance-ratio statistics (per token for PPO, per sequence for
  GSPO); 1.0 when nothing is unmasked.
* ``tokens``: number of unmasked tokens (weight for averaging the metrics over micro-batches).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .advantage import broadcast_to_tokens
from .aggregation import agg_loss
from .masking import as_bool_mask, masked_mean

PPO_LOG_RATIO_CLAMP = 20.0
"""Clamp of ``logπ − logπ_old`` before the exponential in PPO."""
GSPO_LOG_RATIO_MAX = 10.0
"""Upper clamp of GSPO's token log-ratio."""


def _prepare(
    old_logprob: torch.Tensor, logprob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if old_logprob.shape != logprob.shape or logprob.dim() != 2:
        raise ValueError(f"old_logprob {tuple(old_logprob.shape)} and logprob {tuple(logprob.shape)} must be (B,T)")
    m = as_bool_mask(mask, logprob)
    zero = torch.zeros((), dtype=logprob.dtype, device=logprob.device)
    # Masked positions are replaced by 0 so padding garbage (−inf, NaN) can neither leak nor poison gradients.
    lp = torch.where(m, logprob, zero)
    old = torch.where(m, old_logprob.detach().to(logprob.dtype), zero)
    adv = broadcast_to_tokens(advantages.detach().to(logprob.dtype), m)
    return m, lp, old, adv


def _ratio_stats(ratio: torch.Tensor, m: torch.Tensor) -> dict[str, torch.Tensor]:
    one = torch.ones((), dtype=ratio.dtype, device=ratio.device)
    if ratio.numel() == 0:
        return {"ratio_mean": one, "ratio_max": one, "ratio_min": one}
    has = m.any()
    r = ratio.detach()
    return {
        "ratio_mean": masked_mean(r, m, empty=1.0),
        "ratio_max": torch.where(has, torch.where(m, r, torch.full_like(r, float("-inf"))).max(), one),
        "ratio_min": torch.where(has, torch.where(m, r, torch.full_like(r, float("inf"))).min(), one),
    }


def _check_clips(clip_ratio_low: float, clip_ratio_high: float) -> None:
    if not 0.0 <= clip_ratio_low <= 1.0 or clip_ratio_high < 0.0:
        raise ValueError(
            f"need 0 <= clip_ratio_low <= 1 and clip_ratio_high >= 0, got {clip_ratio_low}, {clip_ratio_high}"
        )


def policy_loss(
    old_logprob: torch.Tensor,
    logprob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_dual: float | None = 3.0,
    loss_agg_mode: str = "token-mean",
    global_normaliser: float | torch.Tensor | None = None,
    dp_size: int = 1,
    norm_length: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped policy loss with separate low/high clip ratios and dual-clip (see the module docstring).

    Args:
        old_logprob: (B,T) log-probs of the sampled tokens under the rollout policy (no gradient).
        logprob: (B,T) log-probs under the current policy (carries the gradient).
        advantages: (B,) outcome advantages or (B,T) token advantages (no gradient).
        mask: (B,T) bool/0-1 token mask: response mask AND the effective sample mask.
        clip_ratio_low: ε_low (``worker.actor.clip_ratio_low``).
        clip_ratio_high: ε_high (``worker.actor.clip_ratio_high``; DAPO clip-higher 0.28).
        clip_ratio_dual: dual-clip constant c > 1 (``worker.actor.clip_ratio_dual``); None disables dual-clip.
        loss_agg_mode: aggregation mode, see :func:`easyr1.algorithms.agg_loss`.
        global_normaliser, dp_size, norm_length: passed to :func:`easyr1.algorithms.agg_loss` for exact
            gradient accumulation under data parallelism.

    Returns:
        ``(loss, metrics)``: 0-dim loss (0 with no unmasked token) and the metrics listed in the module docstring.
    """
    _check_clips(clip_ratio_low, clip_ratio_high)
    if clip_ratio_dual is not None and clip_ratio_dual <= 1.0:
        raise ValueError(f"clip_ratio_dual must be > 1, got {clip_ratio_dual}")
    m, lp, old, adv = _prepare(old_logprob, logprob, advantages, mask)

    log_ratio = torch.clamp(lp - old, -PPO_LOG_RATIO_CLAMP, PPO_LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    loss1 = -adv * ratio
    loss2 = -adv * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    clipped_loss = torch.maximum(loss1, loss2)
    clip_active = loss2 > loss1
    if clip_ratio_dual is not None:
        loss3 = -adv * clip_ratio_dual
        negative = adv < 0
        token_loss = torch.where(negative, torch.minimum(clipped_loss, loss3), clipped_loss)
        dual_active = (clipped_loss > loss3) & negative
    else:
        token_loss = clipped_loss
        dual_active = torch.zeros_like(m)

    loss = agg_loss(
        token_loss, m, loss_agg_mode, global_normaliser=global_normaliser, dp_size=dp_size, norm_length=norm_length
    )
    with torch.no_grad():
        flt = token_loss.dtype
        metrics = {
            "pg_clipfrac": masked_mean(clip_active.to(flt), m),
            "pg_clipfrac_ratio_high": masked_mean((clip_active & (adv > 0)).to(flt), m),
            "pg_clipfrac_ratio_low": masked_mean((clip_active & (adv < 0)).to(flt), m),
            "pg_clipfrac_lower": masked_mean(dual_active.to(flt), m),
            "ppo_kl": masked_mean(-log_ratio.detach(), m),
            **_ratio_stats(ratio, m),
            "tokens": m.sum().to(flt),
        }
    return loss, metrics


def gspo_loss(
    old_logprob: torch.Tensor,
    logprob: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_dual: float | None = None,
    loss_agg_mode: str = "seq-mean-token-mean",
    global_normaliser: float | torch.Tensor | None = None,
    dp_size: int = 1,
    norm_length: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GSPO: PPO clip on the sequence-level ratio (same arguments and result as :func:`policy_loss`).

    ``clip_ratio_dual`` and ``loss_agg_mode`` are accepted for a uniform signature and ignored: GSPO has no
    dual-clip and always aggregates with ``seq-mean-token-mean`` (so ``global_normaliser`` must be computed with
    that mode: ``agg_normaliser(mask, policy_agg_mode("gspo", mode))``). The GSPO paper uses tiny clip ranges
    (ε_low = 3e-4, ε_high = 4e-4). ``ratio_*`` metrics are per sequence.
    """
    del clip_ratio_dual, loss_agg_mode, norm_length
    _check_clips(clip_ratio_low, clip_ratio_high)
    m, lp, old, adv = _prepare(old_logprob, logprob, advantages, mask)

    log_ratio = lp - old
    lengths = m.sum(dim=-1).clamp(min=1).to(lp.dtype)
    seq_log_ratio = log_ratio.sum(dim=-1) / lengths
    token_log_ratio = lp - lp.detach() + seq_log_ratio.detach()[:, None]
    ratio = torch.exp(torch.clamp(token_log_ratio, max=GSPO_LOG_RATIO_MAX))
    loss1 = -adv * ratio
    loss2 = -adv * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    token_loss = torch.maximum(loss1, loss2)
    clip_active = loss2 > loss1

    loss = agg_loss(token_loss, m, "seq-mean-token-mean", global_normaliser=global_normaliser, dp_size=dp_size)
    with torch.no_grad():
        flt = token_loss.dtype
        has_tokens = m.any(dim=-1)
        seq_ratio = torch.exp(torch.clamp(seq_log_ratio, max=GSPO_LOG_RATIO_MAX))
        metrics = {
            "pg_clipfrac": masked_mean(clip_active.to(flt), m),
            "pg_clipfrac_ratio_high": masked_mean((clip_active & (adv > 0)).to(flt), m),
            "pg_clipfrac_ratio_low": masked_mean((clip_active & (adv < 0)).to(flt), m),
            "pg_clipfrac_lower": torch.zeros((), dtype=flt, device=lp.device),
            "ppo_kl": masked_mean(-log_ratio.detach(), m),
            **_ratio_stats(seq_ratio, has_tokens),
            "tokens": m.sum().to(flt),
        }
    return loss, metrics


PolicyLossFn = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]

POLICY_LOSSES: dict[str, PolicyLossFn] = {"ppo": policy_loss, "gspo": gspo_loss}
"""Registry for ``worker.actor.loss_type``: both take the arguments of :func:`policy_loss`."""


def get_policy_loss(loss_type: str) -> PolicyLossFn:
    """The policy-loss function for ``worker.actor.loss_type`` (``ppo`` or ``gspo``)."""
    try:
        return POLICY_LOSSES[loss_type]
    except KeyError:
        raise ValueError(f"unknown loss_type {loss_type!r}; known: {', '.join(POLICY_LOSSES)}") from None


def policy_agg_mode(loss_type: str, loss_agg_mode: str) -> str:
    """The aggregation mode the policy loss really uses (GSPO forces ``seq-mean-token-mean``)."""
    return "seq-mean-token-mean" if loss_type == "gspo" else loss_agg_mode
