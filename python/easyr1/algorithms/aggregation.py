"""Loss aggregation: reduce a per-token loss matrix (B,T) to a scalar (config ``worker.actor.loss_agg_mode``).

Modes (``m`` the token mask, sums over the whole mini-batch):

* ``token-mean``: ``Σ L·m / Σ m``.
* ``seq-mean-token-sum``: mean over sequences of ``Σ_t L·m``.
* ``seq-mean-token-mean``: mean over sequences of ``Σ_t L·m / (Σ_t m + 1e-8)``.
* ``seq-mean-token-sum-norm`` (Dr.GRPO): ``Σ L·m / L_max`` with a constant ``L_max`` (``norm_length``).

"Sequences" are the rows with at least one unmasked token, so samples masked out entirely (invalid, or in a group
with fewer than 2 valid samples) do not dilute the mean.

Gradient accumulation and data parallelism: a mean over the *mini-batch* is not the sum of means over its
micro-batches. Give every micro-batch the same global denominator and scale by the data-parallel size:

1. ``global_normaliser = Σ over all micro-batches on all ranks of agg_normaliser(mask_k, mode)`` (sum locally, then
   all-reduce SUM across the data-parallel group).
2. For each micro-batch: ``agg_loss(L_k, m_k, mode, global_normaliser=..., dp_size=D, norm_length=L_max)`` and call
   ``backward()`` on it as is (do **not** divide by the number of micro-batches).
3. FSDP/DDP average gradients over the ``D`` ranks; the ``× D`` cancels that average.

The accumulated gradient then equals the gradient of one big-batch ``agg_loss`` exactly. For
``seq-mean-token-sum-norm`` the denominator is the constant ``norm_length`` (pass the configured maximum response
length so every micro-batch uses the same one; the default, the padded width ``T``, changes with padding).
"""

from __future__ import annotations

import torch

from .masking import as_bool_mask, masked_sum

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
"""Every aggregation mode :func:`agg_loss` accepts."""

SEQ_TOKEN_MEAN_EPS = 1e-8
"""Added to each sequence's token count in ``seq-mean-token-mean``."""


def _check_mode(mode: str) -> None:
    if mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {mode!r}; known: {', '.join(LOSS_AGG_MODES)}")


def agg_normaliser(mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The local denominator of ``mode`` for one micro-batch, as a 0-dim float64 tensor.

    ``token-mean``: number of unmasked tokens. ``seq-mean-*``: number of rows with at least one unmasked token.
    ``seq-mean-token-sum-norm``: 1 (its denominator is the constant ``norm_length``; ``global_normaliser`` is not
    used in that mode). Sum these over micro-batches and all-reduce (SUM) over ranks to get ``global_normaliser``.
    """
    _check_mode(mode)
    m = as_bool_mask(mask)
    if mode == "token-mean":
        count = m.sum()
    elif mode == "seq-mean-token-sum-norm":
        count = torch.ones((), device=m.device)
    else:
        count = m.any(dim=-1).sum() if m.dim() > 1 else m.sum()
    return count.to(torch.float64)


def agg_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    *,
    global_normaliser: float | torch.Tensor | None = None,
    dp_size: int = 1,
    norm_length: float | None = None,
) -> torch.Tensor:
    """Aggregate ``loss_mat`` (B,T) over ``mask`` (B,T) into a scalar with ``mode`` (see the module docstring).

    Args:
        loss_mat: (B,T) per-token loss. Values on masked positions are ignored (even NaN/inf).
        mask: (B,T) bool or 0/1 token mask (response mask AND sample mask).
        mode: one of :data:`LOSS_AGG_MODES`.
        global_normaliser: the denominator over the whole mini-batch on all ranks (see :func:`agg_normaliser`).
            None uses this batch's own denominator (single batch, no accumulation).
        dp_size: data-parallel world size D; the result is multiplied by D so that the gradient average done by
            FSDP/DDP yields the global mean. Leave 1 without data parallelism.
        norm_length: ``L_max`` of ``seq-mean-token-sum-norm``; default ``T`` (``mask.shape[-1]``).

    Returns:
        0-dim tensor. With no unmasked token at all it is exactly 0 (no NaN), and so is its gradient.
    """
    _check_mode(mode)
    m = as_bool_mask(mask, loss_mat)
    if m.dim() != 2:
        raise ValueError(f"loss_mat and mask must be (B,T), got {tuple(m.shape)}")
    if mode in ("token-mean", "seq-mean-token-sum"):
        numerator = masked_sum(loss_mat, m)
    elif mode == "seq-mean-token-mean":
        per_seq = masked_sum(loss_mat, m, dim=-1) / (m.sum(dim=-1).to(loss_mat.dtype) + SEQ_TOKEN_MEAN_EPS)
        numerator = per_seq.sum()
    else:
        length = float(m.shape[-1] if norm_length is None else norm_length)
        if length <= 0:
            raise ValueError(f"norm_length must be positive, got {length}")
        return masked_sum(loss_mat, m) / length * dp_size
    if global_normaliser is None:
        denominator = agg_normaliser(m, mode)
    else:
        denominator = torch.as_tensor(global_normaliser, dtype=torch.float64, device=loss_mat.device)
    denominator = denominator.to(device=loss_mat.device, dtype=loss_mat.dtype).clamp(min=1)
    return numerator / denominator * dp_size
