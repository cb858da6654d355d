"""Masked reductions shared by the estimators, losses and metrics.

Masks are ``bool`` or 0/1 tensors; a position counts when its mask entry is non-zero. Every reduction selects with
``torch.where`` rather than multiplying by the mask, so a NaN or ``inf`` sitting on a masked-out position (padding,
a failed sample) never leaks into the result or its gradient.
"""

from __future__ import annotations

import torch

WHITEN_EPS = 1e-8
"""Added to the variance before the inverse square root in :func:`masked_whiten`."""


def as_bool_mask(mask: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``mask != 0`` as a bool tensor, checking that it matches ``like``'s shape when given."""
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(mask)
    if like is not None and mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match tensor shape {tuple(like.shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` over positions where ``mask`` is set (all dims, or ``dim``)."""
    m = as_bool_mask(mask, values)
    picked = torch.where(m, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return picked.sum() if dim is None else picked.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None, empty: float = 0.0) -> torch.Tensor:
    """Mean of ``values`` over masked positions; ``empty`` where nothing is selected (never NaN)."""
    m = as_bool_mask(mask, values)
    count = m.sum() if dim is None else m.sum(dim=dim)
    total = masked_sum(values, m, dim)
    mean = total / count.clamp(min=1).to(total.dtype)
    return torch.where(count > 0, mean, torch.full_like(mean, empty))


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over all masked positions (Bessel-corrected when ``unbiased``); 0 with fewer than 2 positions."""
    m = as_bool_mask(mask, values)
    count = m.sum()
    mean = masked_mean(values, m)
    sq = masked_sum((values - mean) ** 2, m)
    denom = (count - 1) if unbiased else count
    var = sq / denom.clamp(min=1).to(sq.dtype)
    return torch.where(count > 1, var, torch.zeros_like(var))


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = WHITEN_EPS) -> torch.Tensor:
    """``(x − mean_m) / sqrt(var_m + eps)`` over all masked positions (unbiased var), zero elsewhere.

    With no masked position the result is all zeros; with one, that position becomes 0 (``x = mean``).
    """
    m = as_bool_mask(mask, values)
    mean = masked_mean(values, m)
    var = masked_var(values, m, unbiased=True)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    return torch.where(m, whitened, torch.zeros_like(whitened))
